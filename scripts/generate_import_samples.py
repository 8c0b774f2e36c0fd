"""Write the sample exports the discovery importers are tested and demonstrated with.

    .venv/bin/python scripts/generate_import_samples.py

Writes, deterministically (fixed data, fixed timestamps inside the .xlsx zip):

* ``tests/fixtures/inventory/rvtools/RVTools_export.xlsx``: an RVTools 4.x export with
  the vInfo, vDisk and vNetwork tabs of a small VMware estate (20 VMs: Windows and
  SQL Server, Linux variants, a template, powered-off VMs, multi-disk and multi-NIC VMs)
  and a few bad rows, described in ``tests/fixtures/inventory/rvtools/README.md``;
* ``tests/fixtures/inventory/rvtools/csv/RVTools_tab{vInfo,vDisk,vNetwork}.csv``: the
  same tabs as RVTools' CSV export writes them;
* ``tests/fixtures/inventory/ads/migration_hub_import.csv``: the AWS Migration Hub
  import template filled for 16 servers, three of them bad;
* ``include/estates/rvtools-sample/RVTools_export.xlsx``: the RVTools estate without its
  bad rows, for trying ``migrationbox validate`` / ``plan`` on an imported estate.

The data is made up (RFC 1918 addresses, example.com names); the column names and value
formats are RVTools' and Migration Hub's own.
"""

from __future__ import annotations

import csv
import io
import re
import zipfile
from datetime import datetime
from pathlib import Path
from typing import Any

from openpyxl import Workbook

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "inventory"
FIXED = datetime(2026, 1, 5, 9, 30, 0)
VCENTER = "vcenter01.corp.example.com"

VINFO_COLUMNS = [
    "VM", "Powerstate", "Template", "SRM Placeholder", "Config status", "DNS Name",
    "Connection state", "Guest state", "Heartbeat", "PowerOn", "Creation date", "CPUs",
    "Memory", "NICs", "Disks", "Total disk capacity MiB", "Primary IP Address",
    "Network #1", "Network #2", "Resource pool", "Folder", "Provisioned MiB", "In Use MiB",
    "Annotation", "Datacenter", "Cluster", "Host", "OS according to the configuration file",
    "OS according to the VMware Tools", "VM ID", "SMBIOS UUID", "VM UUID", "VI SDK Server",
]
VDISK_COLUMNS = [
    "VM", "Powerstate", "Template", "Disk", "Disk Key", "Capacity MiB", "Raw", "Disk Mode",
    "Thin", "Controller", "Unit #", "Path", "Annotation", "Datacenter", "Cluster", "Host",
    "OS according to the configuration file", "VM ID", "VM UUID", "VI SDK Server",
]
VNETWORK_COLUMNS = [
    "VM", "Powerstate", "Template", "NIC label", "Adapter", "Network", "Switch", "Connected",
    "Starts Connected", "Mac Address", "Type", "IPv4 Address", "IPv6 Address", "Annotation",
    "Datacenter", "Cluster", "Host", "VM ID", "VM UUID", "VI SDK Server",
]

GiB = 1024
W2019 = "Microsoft Windows Server 2019 (64-bit)"
W2022 = "Microsoft Windows Server 2022 (64-bit)"
W2016 = "Microsoft Windows Server 2016 or later (64-bit)"
W2012 = "Microsoft Windows Server 2012 (64-bit)"
RHEL8 = "Red Hat Enterprise Linux 8 (64-bit)"
RHEL9 = "Red Hat Enterprise Linux 9 (64-bit)"
UBUNTU = "Ubuntu Linux (64-bit)"

# name, power, template, dns, cpus, memory MiB, config OS, tools OS, cluster, annotation,
# disks [(GiB, thin)], nics [(network, ipv4, ipv6)], bad: {column: raw value}
VMS: list[dict[str, Any]] = [
    dict(vm="dc-01", os=W2019, tools="Microsoft Windows Server 2019 Standard", cpus=2,
         mem=4 * GiB, disks=[(80, True)], nics=[("VLAN10-Infra", "10.10.1.10", "")],
         note="Domain controller, FSMO roles"),
    dict(vm="dc-02", os=W2019, tools="Microsoft Windows Server 2019 Standard", cpus=2,
         mem=4 * GiB, disks=[(80, True)], nics=[("VLAN10-Infra", "10.10.1.11", "")],
         note="Domain controller"),
    dict(vm="sql-01", os=W2019, tools="Microsoft Windows Server 2019 Datacenter", cpus=8,
         mem=64 * GiB, disks=[(100, False), (500, False), (200, False), (100, False)],
         nics=[("VLAN20-Data", "10.10.2.20", ""), ("VLAN90-Backup", "10.10.9.20", "")],
         note="SQL Server 2019 Standard - ERP database (data E:, log L:, tempdb T:)"),
    dict(vm="sql-02", os=W2022, tools="Microsoft Windows Server 2022 Datacenter", cpus=8,
         mem=32 * GiB, disks=[(100, False), (750, False), (150, False)],
         nics=[("VLAN20-Data", "10.10.2.21", "")],
         note="SQL Server 2022 Enterprise - reporting"),
    dict(vm="web-01", os=UBUNTU, tools="Ubuntu 22.04.4 LTS", cpus=2, mem=4 * GiB,
         disks=[(40, True)], nics=[("VLAN30-Web", "10.10.3.31", "")], note="nginx, shop"),
    dict(vm="web-02", os=UBUNTU, tools="Ubuntu 22.04.4 LTS", cpus=2, mem=4 * GiB,
         disks=[(40, True)], nics=[("VLAN30-Web", "10.10.3.32", "")], note="nginx, shop"),
    dict(vm="web-03", os=UBUNTU, tools="Ubuntu 22.04.4 LTS", cpus=2, mem=4 * GiB,
         disks=[(40, True)], nics=[("VLAN30-Web", "10.10.3.33", "")], note="nginx, shop",
         bad={"CPUs": "four"}),
    dict(vm="app-01", os=RHEL8, tools="Red Hat Enterprise Linux 8.9 (Ootpa)", cpus=4,
         mem=16 * GiB, disks=[(60, True), (200, True)],
         nics=[("VLAN40-App", "10.10.4.41", "")], note="Java order service"),
    dict(vm="app-02", os=RHEL9, tools="Red Hat Enterprise Linux 9.3 (Plow)", cpus=4,
         mem=16 * GiB, disks=[(60, True), (200, True)],
         nics=[("VLAN40-App", "10.10.4.42", "")], note="Java order service"),
    dict(vm="mq-01", os="CentOS 7 (64-bit)", tools="CentOS Linux 7.9.2009 (Core)", cpus=2,
         mem=8 * GiB, disks=[(50, True)], nics=[("VLAN40-App", "10.10.4.50", "")],
         note="RabbitMQ"),
    dict(vm="cache-01", os="Debian GNU/Linux 12 (64-bit)", tools="Debian GNU/Linux 12 (bookworm)",
         cpus=2, mem=8 * GiB, disks=[(30, True)], nics=[("VLAN40-App", "10.10.4.300", "")],
         primary="10.10.4.30", note="Redis"),
    dict(vm="mon-01", os="SUSE Linux Enterprise 15 (64-bit)", tools="", cpus=4, mem=8 * GiB,
         disks=[(100, True)], nics=[("VLAN10-Infra", "10.10.1.60", "")], dns="",
         note="Monitoring"),
    dict(vm="file-01", os=W2016, tools="Microsoft Windows Server 2016 Standard", cpus=2,
         mem=8 * GiB, disks=[(100, True), (2048, True)],
         nics=[("VLAN10-Infra", "10.10.1.70", ""), ("VLAN90-Backup", "10.10.9.70", "")],
         note="File shares \\\\file-01\\dept"),
    dict(vm="legacy-01", power="poweredOff", os=W2012, tools="", cpus=2, mem=4 * GiB,
         disks=[(60, False)], nics=[("VLAN40-App", "", "")],
         note="Old invoicing app - switched off 2025-09, keep until audit"),
    dict(vm="batch-01", power="poweredOff", os="Oracle Linux 8 (64-bit)",
         tools="Oracle Linux Server 8.8", cpus=4, mem=16 * GiB, disks=[(80, True)],
         nics=[("VLAN40-App", "10.10.4.80", "")], note="Month-end batch, started on demand"),
    dict(vm="tpl-rhel8", template=True, power="poweredOff", os=RHEL8, tools="", cpus=2,
         mem=4 * GiB, disks=[(40, True)], nics=[("VLAN40-App", "", "")], dns="",
         note="Golden image 2025-06"),
    dict(vm="jump-01", os=W2022, tools="Microsoft Windows Server 2022 Standard", cpus=2,
         mem=8 * GiB, disks=[(80, True)], cluster="CL-DMZ",
         nics=[("DMZ-Mgmt", "172.16.5.10", ""), ("VLAN10-Infra", "10.10.1.90", "")],
         note="RDP jump host"),
    dict(vm="proxy-01", os=UBUNTU, tools="Ubuntu 20.04.6 LTS", cpus=2, mem=4 * GiB,
         disks=[(30, True)], cluster="CL-DMZ",
         nics=[("DMZ-Web", "172.16.5.20", "2001:db8:5::20, fe80::250:56ff:fe8a:1"),
               ("VLAN30-Web", "10.10.3.20", "")],
         note="HAProxy in front of the shop"),
    dict(vm="dev-01", os="Other 4.x or later Linux (64-bit)", tools="", cpus=2,
         mem="8 GB", disks=[(50, True)], nics=[("VLAN50-Dev", "10.10.5.10", "")], dns="",
         note="Developer sandbox"),
    dict(vm="k8s-node-01", os=UBUNTU, tools="Ubuntu 22.04.4 LTS", cpus=0, mem=16 * GiB,
         disks=[(100, True)], nics=[("VLAN40-App", "10.10.4.91", "")],
         note="Kubernetes worker (CPU count lost in a bad copy)"),
]
# a vDisk row for a VM that was deleted between the tabs being read: a note, not an error
ORPHAN_DISK = dict(vm="old-test-vm", disk=("Hard disk 1", 20))
BAD_VMS = {"web-03", "cache-01", "dev-01", "k8s-node-01", "legacy-01"}


def _uuid(i: int, kind: str) -> str:
    return f"{kind}{i:07x}-6c2e-4b1a-9d3f-{i:012x}"


def _mac(i: int, n: int) -> str:
    return f"00:50:56:8a:{i:02x}:{n:02x}"


def rvtools_tabs(vms: list[dict[str, Any]]) -> dict[str, list[list[Any]]]:
    info: list[list[Any]] = [VINFO_COLUMNS]
    disk: list[list[Any]] = [VDISK_COLUMNS]
    net: list[list[Any]] = [VNETWORK_COLUMNS]
    for i, vm in enumerate(vms, start=1):
        name = vm["vm"]
        power = vm.get("power", "poweredOn")
        template = bool(vm.get("template"))
        cluster = vm.get("cluster", "CL-PROD-01")
        host = f"esx{(i % 4) + 1:02d}.corp.example.com"
        dns = vm.get("dns", f"{name}.corp.example.com")
        running = power == "poweredOn"
        vm_id, uuid = f"vm-{1000 + i}", _uuid(i, "5")
        total_mib = sum(gib for gib, _ in vm["disks"]) * GiB
        mem = vm["mem"]
        provisioned = total_mib + (mem if isinstance(mem, int) else 0)
        in_use = int(sum(gib * (0.45 if thin else 1.0) for gib, thin in vm["disks"]) * GiB)
        ips = [ip for _n, ip, _v6 in vm["nics"] if ip]
        networks = [n for n, _ip, _v6 in vm["nics"]] + ["", ""]
        row = {
            "VM": name, "Powerstate": power, "Template": template, "SRM Placeholder": False,
            "Config status": "green", "DNS Name": dns if running else "",
            "Connection state": "connected", "Guest state": "running" if running else "notRunning",
            "Heartbeat": "green" if running else "gray",
            "PowerOn": "2025-11-30 04:12:09" if running else "",
            "Creation date": f"2021-{(i % 12) + 1:02d}-14 10:21:33",
            "CPUs": vm["cpus"], "Memory": mem, "NICs": len(vm["nics"]),
            "Disks": len(vm["disks"]), "Total disk capacity MiB": total_mib,
            "Primary IP Address": vm.get("primary", ips[0] if ips else ""),
            "Network #1": networks[0], "Network #2": networks[1],
            "Resource pool": f"/Resources/{cluster}", "Folder": f"/Production/{name[:3]}",
            "Provisioned MiB": provisioned, "In Use MiB": in_use,
            "Annotation": vm.get("note", ""), "Datacenter": "DC-AMS-1", "Cluster": cluster,
            "Host": host, "OS according to the configuration file": vm["os"],
            "OS according to the VMware Tools": vm.get("tools", "") if running else "",
            "VM ID": vm_id, "SMBIOS UUID": _uuid(i, "4"), "VM UUID": uuid,
            "VI SDK Server": VCENTER,
        }
        row.update(vm.get("bad", {}))
        info.append([row[c] for c in VINFO_COLUMNS])
        for n, (gib, thin) in enumerate(vm["disks"], start=1):
            drow = {
                "VM": name, "Powerstate": power, "Template": template,
                "Disk": f"Hard disk {n}", "Disk Key": 2000 + n - 1, "Capacity MiB": gib * GiB,
                "Raw": False, "Disk Mode": "persistent", "Thin": thin,
                "Controller": "SCSI controller 0" if n < 3 else "SCSI controller 1",
                "Unit #": (n - 1) % 2,
                "Path": f"[DS-{cluster[-2:]}-{(n % 2) + 1:02d}] {name}/{name}"
                        + ("" if n == 1 else f"_{n - 1}") + ".vmdk",
                "Annotation": vm.get("note", ""), "Datacenter": "DC-AMS-1",
                "Cluster": cluster, "Host": host,
                "OS according to the configuration file": vm["os"], "VM ID": vm_id,
                "VM UUID": uuid, "VI SDK Server": VCENTER,
            }
            disk.append([drow[c] for c in VDISK_COLUMNS])
        for n, (network, ipv4, ipv6) in enumerate(vm["nics"], start=1):
            nrow = {
                "VM": name, "Powerstate": power, "Template": template,
                "NIC label": f"Network adapter {n}", "Adapter": "Vmxnet3", "Network": network,
                "Switch": "dvs-DMZ" if network.startswith("DMZ") else "dvs-Prod",
                "Connected": running, "Starts Connected": True, "Mac Address": _mac(i, n),
                "Type": "Assigned", "IPv4 Address": ipv4, "IPv6 Address": ipv6,
                "Annotation": vm.get("note", ""), "Datacenter": "DC-AMS-1",
                "Cluster": cluster, "Host": host, "VM ID": vm_id, "VM UUID": uuid,
                "VI SDK Server": VCENTER,
            }
            net.append([nrow[c] for c in VNETWORK_COLUMNS])
    orphan = dict.fromkeys(VDISK_COLUMNS, "")
    orphan.update({"VM": ORPHAN_DISK["vm"], "Powerstate": "poweredOff", "Template": False,
                   "Disk": ORPHAN_DISK["disk"][0], "Capacity MiB": ORPHAN_DISK["disk"][1] * GiB,
                   "Thin": True, "VI SDK Server": VCENTER})
    disk.append([orphan[c] for c in VDISK_COLUMNS])
    return {"vInfo": info, "vDisk": disk, "vNetwork": net}


def _fixed_zip(path: Path) -> None:
    """Rewrite an .xlsx with fixed member timestamps so reruns give the same bytes."""
    source = zipfile.ZipFile(path)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as target:
        for item in sorted(source.infolist(), key=lambda i: i.filename):
            info = zipfile.ZipInfo(item.filename, date_time=FIXED.timetuple()[:6])
            info.compress_type = zipfile.ZIP_DEFLATED
            data = source.read(item.filename)
            if item.filename == "docProps/core.xml":  # openpyxl stamps "modified" on save
                data = re.sub(rb"(<dcterms:modified[^>]*>)[^<]*", rb"\g<1>"
                              + FIXED.strftime("%Y-%m-%dT%H:%M:%SZ").encode(), data)
            target.writestr(info, data)
    source.close()
    path.write_bytes(buffer.getvalue())


def write_workbook(path: Path, tabs: dict[str, list[list[Any]]]) -> None:
    book = Workbook()
    book.remove(book.active)
    for title, rows in tabs.items():
        sheet = book.create_sheet(title)
        for row in rows:
            sheet.append(row)
    book.properties.creator = "RVTools"
    book.properties.created = FIXED
    book.properties.modified = FIXED
    path.parent.mkdir(parents=True, exist_ok=True)
    book.save(path)
    _fixed_zip(path)


def _csv_text(rows: list[list[Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    for row in rows:
        writer.writerow(["True" if v is True else "False" if v is False else v for v in row])
    return out.getvalue()


def write_csv_tabs(folder: Path, tabs: dict[str, list[list[Any]]]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for title, rows in tabs.items():
        (folder / f"RVTools_tab{title}.csv").write_text(_csv_text(rows), encoding="utf-8",
                                                        newline="")


ADS_COLUMNS = [
    "ExternalId", "SMBiosId", "IPAddress", "MACAddress", "HostName", "VMware.MoRefId",
    "VMware.VCenterId", "CPU.NumberOfProcessors", "CPU.NumberOfCores",
    "CPU.NumberOfLogicalCores", "OS.Name", "OS.Version", "VMware.VMName",
    "RAM.TotalSizeInMB", "RAM.UsedSizeInMB.Avg", "RAM.UsedSizeInMB.Max", "CPU.UsagePct.Avg",
    "CPU.UsagePct.Max", "DiskReadsPerSecondInKB.Avg", "DiskWritesPerSecondInKB.Avg",
    "DiskReadsPerSecondInKB.Max", "DiskWritesPerSecondInKB.Max", "DiskReadsOpsPerSecond.Avg",
    "DiskWritesOpsPerSecond.Avg", "DiskReadsOpsPerSecond.Max", "DiskWritesOpsPerSecond.Max",
    "NetworkReadsPerSecondInKB.Avg", "NetworkWritesPerSecondInKB.Avg",
    "NetworkReadsPerSecondInKB.Max", "NetworkWritesPerSecondInKB.Max", "Applications",
    "ApplicationWave", "Tags", "ServerId",
]

# id, host, ips, sockets/cores/logical, os name, os version, ram MB, ram avg/max MB,
# cpu avg/max, disk KB/s r/w, iops r/w, net KB/s r/w, apps, wave, tags, vmware?
ADS_SERVERS: list[dict[str, Any]] = [
    dict(id="CMDB-1001", host="pay-web01.corp.example.com", ip="10.20.1.11", cpu=(1, 2, 4),
         os=("Ubuntu", "22.04.4"), ram=(8192, 3900, 6100), cpu_pct=(18.5, 71.2),
         disk=(820, 310), iops=(42, 18), net=(2100, 3900), apps="Payments", wave="Wave 1",
         tags="owner:payments-team, tier:web", vm="vm-2001"),
    dict(id="CMDB-1002", host="pay-web02.corp.example.com", ip="10.20.1.12", cpu=(1, 2, 4),
         os=("Ubuntu", "22.04.4"), ram=(8192, 3700, 5900), cpu_pct=(16.1, 64.0),
         disk=(790, 295), iops=(40, 17), net=(2050, 3800), apps="Payments", wave="Wave 1",
         tags="owner:payments-team, tier:web", vm="vm-2002"),
    dict(id="CMDB-1003", host="pay-app01.corp.example.com", ip="10.20.2.21, 10.20.9.21",
         cpu=(2, 8, 16), os=("Red Hat Enterprise Linux", "9.2"), ram=(32768, 12000, 20480),
         cpu_pct=(15.0, 60.0), disk=(1159, 199), iops=(45, 8), net=(4500, 3100),
         apps="Payments,Ledger", wave="Wave 2", tags="owner:finance, tier:app", vm="vm-2003"),
    dict(id="CMDB-1004", host="pay-db01.corp.example.com", ip="10.20.3.31", cpu=(2, 16, 32),
         os=("Microsoft Windows Server 2019 Datacenter", "10.0.17763"),
         ram=(131072, 98304, 122880), cpu_pct=(38.2, 91.5), disk=(84506, 6197),
         iops=(1083, 535), net=(9100, 7200), apps="Payments,Ledger", wave="Wave 3",
         tags="owner:dba, tier:db, sql:SQL Server 2019 Enterprise", vm="vm-2004"),
    dict(id="CMDB-1005", host="ledger-app01.corp.example.com", ip="10.20.2.41",
         cpu=(1, 4, 8), os=("Red Hat Enterprise Linux", "8.9"), ram=(16384, 9100, 13000),
         cpu_pct=(22.4, 58.9), disk=(640, 420), iops=(31, 22), net=(1200, 900),
         apps="Ledger", wave="Wave 2", tags="owner:finance, tier:app", vm="vm-2005"),
    dict(id="CMDB-1006", host="crm-web01.corp.example.com", ip="10.20.1.51", cpu=(1, 2, 2),
         os=("Microsoft Windows Server 2016 Standard", "10.0.14393"), ram=(8192, 5200, 7400),
         cpu_pct=(11.0, 44.0), disk=(300, 120), iops=(20, 11), net=(700, 1500),
         apps="CRM", wave="Wave 1", tags="owner:sales-it", vm=""),
    dict(id="CMDB-1007", host="crm-db01.corp.example.com", ip="10.20.3.52", cpu=(2, 8, 16),
         os=("Microsoft Windows Server 2016 Standard", "10.0.14393"),
         ram=(65536, 50000, 61000), cpu_pct=(27.5, 83.0), disk=(22000, 4100),
         iops=(640, 210), net=(3100, 2800), apps="CRM", wave="Wave 3",
         tags="owner:dba, tier:db, sql:SQL Server 2016 Standard", vm=""),
    dict(id="CMDB-1008", host="ci-runner01.corp.example.com", ip="10.20.5.61", cpu=(1, 4, 8),
         os=("Debian", "12"), ram=(16384, 6000, 15800), cpu_pct=(35.0, 99.0),
         disk=(5400, 7900), iops=(210, 340), net=(5200, 800), apps="", wave="",
         tags="owner:platform", vm="vm-2008"),
    dict(id="CMDB-1009", host="mail-relay01.corp.example.com", ip="10.20.1.71",
         cpu=(1, 1, 2), os=("CentOS", "7.9.2009"), ram=(4096, 1500, 2100),
         cpu_pct=(3.2, 12.0), disk=(55, 30), iops=(4, 6), net=(150, 160), apps="Mail",
         wave="Wave 1", tags="owner:infra", vm="vm-2009"),
    dict(id="CMDB-1010", host="ldap01.corp.example.com", ip="10.20.1.81", cpu=(1, 2, 2),
         os=("SUSE Linux Enterprise Server", "15 SP5"), ram=(4096, 2000, 2600),
         cpu_pct=(4.0, 20.0), disk=(40, 20), iops=(3, 2), net=(90, 120), apps="Directory",
         wave="Wave 1", tags="owner:infra, critical:yes", vm="vm-2010"),
    dict(id="CMDB-1011", host="report01.corp.example.com", ip="10.20.2.91", cpu=(1, 4, 4),
         os=("Microsoft Windows Server 2022 Standard", "10.0.20348"), ram=(16384, None, None),
         cpu_pct=(None, None), disk=(None, None), iops=(None, None), net=(None, None),
         apps="Reporting", wave="Wave 2", tags="owner:bi", vm="",
         remark="no utilisation collected: performance_baseline is null"),
    dict(id="CMDB-1012", host="files01.corp.example.com", ip="10.20.1.95", cpu=(1, 2, 2),
         os=("Microsoft Windows Server 2012 R2 Standard", "6.3.9600"), ram=(8192, 4100, 6000),
         cpu_pct=(6.0, 35.0), disk=(1500, 900), iops=(60, 40), net=(800, 600),
         apps="File shares", wave="Wave 2", tags="owner:infra", vm="vm-2012"),
    dict(id="CMDB-1013", host="kafka01.corp.example.com", ip="10.20.4.11", cpu=(1, 4, 8),
         os=("Amazon Linux", "2023"), ram=(32768, 21000, 26000), cpu_pct=(28.0, 70.0),
         disk=(9000, 15000), iops=(300, 800), net=(30000, 29000), apps="Payments,Ledger",
         wave="Wave 2", tags="owner:platform", vm="vm-2013"),
    # bad rows
    dict(id="CMDB-1014", host="bi-etl01.corp.example.com", ip="10.20.2.92", cpu=(1, 4, 8),
         os=("Red Hat Enterprise Linux", "8.9"), ram=(16384, 8000, 12000),
         cpu_pct=("high", 90.0), disk=(900, 400), iops=(50, 20), net=(600, 300),
         apps="Reporting", wave="Wave 2", tags="owner:bi", vm="",
         remark="CPU.UsagePct.Avg: not a number"),
    dict(id="CMDB-1015", host="cache01.corp.example.com", ip="10.20.4.999", cpu=(1, 2, 4),
         os=("Ubuntu", "20.04.6"), ram=(8192, 4000, 5000), cpu_pct=(9.0, 30.0),
         disk=(100, 50), iops=(10, 5), net=(4000, 4000), apps="Payments", wave="Wave 1",
         tags="owner:payments-team", vm="", remark="IPAddress: not an IP address"),
    dict(id="CMDB-1016", host="olap01.corp.example.com", ip="10.20.3.61", cpu=(2, 8, 16),
         os=("Microsoft Windows Server 2019 Standard", "10.0.17763"),
         ram=(65536, 70000, 72000), cpu_pct=(40.0, 95.0), disk=(12000, 3000),
         iops=(400, 100), net=(2000, 1000), apps="Reporting", wave="Wave 3",
         tags="owner:bi", vm="", remark="RAM.UsedSizeInMB.Avg above RAM.TotalSizeInMB"),
]


def ads_rows(servers: list[dict[str, Any]]) -> list[list[Any]]:
    rows: list[list[Any]] = [ADS_COLUMNS]
    for n, s in enumerate(servers, start=1):
        vm = s.get("vm") or ""
        ram_total, ram_avg, ram_max = s["ram"]
        values = {
            "ExternalId": s["id"], "SMBiosId": "", "IPAddress": s["ip"],
            "MACAddress": f"00:50:56:9c:10:{n:02x}", "HostName": s["host"],
            "VMware.MoRefId": vm, "VMware.VCenterId": "vc-ams-1" if vm else "",
            "CPU.NumberOfProcessors": s["cpu"][0], "CPU.NumberOfCores": s["cpu"][1],
            "CPU.NumberOfLogicalCores": s["cpu"][2], "OS.Name": s["os"][0],
            "OS.Version": s["os"][1], "VMware.VMName": s["host"].split(".")[0] if vm else "",
            "RAM.TotalSizeInMB": ram_total, "RAM.UsedSizeInMB.Avg": ram_avg,
            "RAM.UsedSizeInMB.Max": ram_max, "CPU.UsagePct.Avg": s["cpu_pct"][0],
            "CPU.UsagePct.Max": s["cpu_pct"][1],
            "DiskReadsPerSecondInKB.Avg": s["disk"][0], "DiskWritesPerSecondInKB.Avg": s["disk"][1],
            "DiskReadsPerSecondInKB.Max": _max(s["disk"][0]),
            "DiskWritesPerSecondInKB.Max": _max(s["disk"][1]),
            "DiskReadsOpsPerSecond.Avg": s["iops"][0], "DiskWritesOpsPerSecond.Avg": s["iops"][1],
            "DiskReadsOpsPerSecond.Max": _max(s["iops"][0]),
            "DiskWritesOpsPerSecond.Max": _max(s["iops"][1]),
            "NetworkReadsPerSecondInKB.Avg": s["net"][0],
            "NetworkWritesPerSecondInKB.Avg": s["net"][1],
            "NetworkReadsPerSecondInKB.Max": _max(s["net"][0]),
            "NetworkWritesPerSecondInKB.Max": _max(s["net"][1]),
            "Applications": s["apps"], "ApplicationWave": s["wave"], "Tags": s["tags"],
            "ServerId": "",
        }
        rows.append(["" if values[c] is None else values[c] for c in ADS_COLUMNS])
    return rows


def _max(value: Any) -> Any:
    return round(value * 3.2) if isinstance(value, (int, float)) else value


def main() -> None:
    tabs = rvtools_tabs(VMS)
    write_workbook(FIXTURES / "rvtools" / "RVTools_export.xlsx", tabs)
    write_csv_tabs(FIXTURES / "rvtools" / "csv", tabs)
    clean = rvtools_tabs([vm for vm in VMS if vm["vm"] not in BAD_VMS])
    clean["vDisk"] = clean["vDisk"][:-1]  # without the orphan disk row
    write_workbook(ROOT / "include" / "estates" / "rvtools-sample" / "RVTools_export.xlsx",
                   clean)
    ads = FIXTURES / "ads" / "migration_hub_import.csv"
    ads.parent.mkdir(parents=True, exist_ok=True)
    ads.write_text(_csv_text(ads_rows(ADS_SERVERS)), encoding="utf-8", newline="")
    for path in (FIXTURES / "rvtools", FIXTURES / "ads",
                 ROOT / "include" / "estates" / "rvtools-sample"):
        print(f"wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
