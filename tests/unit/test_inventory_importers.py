"""Discovery importers: RVTools (xlsx or CSV tabs) and the Migration Hub import CSV.

The sample exports are written by ``scripts/generate_import_samples.py`` and described
in ``tests/fixtures/inventory/rvtools/README.md``; the smaller files built here cover
header variants, missing tabs, damaged workbooks and encodings.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import shutil
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openpyxl import Workbook

from migrationbox.cli import validate as validate_cli
from migrationbox.inventory.importers import migration_hub, rvtools
from migrationbox.inventory.importers.tables import Row, Table, norm
from migrationbox.inventory.loaders import LoadNote, ParseError, RawRecord, load_records
from migrationbox.inventory.validation import (
    Reason,
    validate_inventory,
    validate_records,
    write_quarantine,
)

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "inventory"
XLSX = FIXTURES / "rvtools" / "RVTools_export.xlsx"
CSV_TABS = FIXTURES / "rvtools" / "csv"
ADS = FIXTURES / "ads" / "migration_hub_import.csv"
SAMPLE_ESTATE = ROOT / "include" / "estates" / "rvtools-sample"


def _by_id(report: Any) -> dict[str, Any]:
    return {s.server_id: s for s in report.valid}


def _quarantined(report: Any) -> dict[str, Any]:
    return {q.record: q for q in report.quarantined}


def _workbook(path: Path, sheets: dict[str, list[list[Any]]]) -> Path:
    book = Workbook()
    book.remove(book.active)
    for title, rows in sheets.items():
        sheet = book.create_sheet(title)
        for row in rows:
            sheet.append(row)
    book.save(path)
    return path


def _csv(path: Path, rows: list[list[Any]], *, encoding: str = "utf-8",
         delimiter: str = ",") -> Path:
    out = io.StringIO()
    csv.writer(out, delimiter=delimiter, lineterminator="\r\n").writerows(rows)
    path.write_bytes(out.getvalue().encode(encoding))
    return path


VINFO_4X = ["VM", "Powerstate", "Template", "DNS Name", "CPUs", "Memory",
            "Total disk capacity MiB", "Primary IP Address", "Provisioned MiB", "In Use MiB",
            "Annotation", "Datacenter", "Cluster", "Host",
            "OS according to the configuration file", "OS according to the VMware Tools",
            "VM UUID"]


def _vinfo(vm: str, ip: str = "10.1.0.5", **cells: Any) -> list[Any]:
    row = {"VM": vm, "Powerstate": "poweredOn", "Template": False,
           "DNS Name": f"{vm}.corp.example.com", "CPUs": 2, "Memory": 4096,
           "Total disk capacity MiB": 40960, "Primary IP Address": ip,
           "Provisioned MiB": 45056, "In Use MiB": 20480, "Annotation": "",
           "Datacenter": "DC1", "Cluster": "CL1", "Host": "esx01",
           "OS according to the configuration file": "Red Hat Enterprise Linux 8 (64-bit)",
           "OS according to the VMware Tools": "", "VM UUID": f"uuid-{vm}"}
    row.update(cells)
    return [row[c] for c in VINFO_4X]


# ------------------------------------------------------------------- RVTools workbook


@pytest.fixture(scope="module")
def xlsx_report() -> Any:
    return validate_inventory(XLSX)


def test_rvtools_workbook_summary_and_messages(xlsx_report: Any) -> None:
    report = xlsx_report
    assert (len(report.valid), len(report.quarantined)) == (14, 5)
    lines = report.issue_lines()
    name = str(XLSX)
    assert f"{name} vInfo row 8 (VM 'web-03'): CPUs: not a number: 'four'" in lines
    assert f"{name} vInfo row 20 (VM 'dev-01'): Memory: not a number: '8 GB'" in lines
    assert (f"{name} vInfo row 12 (VM 'cache-01'): vNetwork row 13: IPv4 Address: "
            "not an IP address: '10.10.4.300'") in lines
    assert (f"{name} vInfo row 21 (VM 'k8s-node-01'): CPUs (hardware.cpu_cores): "
            "Input should be greater than or equal to 1 (got 0)") in lines
    legacy = _quarantined(report)["VM 'legacy-01'"]
    (issue,) = legacy.issues
    assert issue.field == "Primary IP Address" and issue.reason is Reason.missing_field
    assert "poweredOff" in issue.message and "VMware Tools" in issue.message
    assert {q.reasons.pop() for q in report.quarantined if len(q.reasons) == 1} >= {
        Reason.wrong_type, Reason.invalid_value, Reason.missing_field}
    # the bad rows do not hide their neighbours
    assert {"web-01", "web-02", "app-01"} <= set(_by_id(report))


def test_rvtools_workbook_fields_of_a_multi_disk_multi_nic_sql_server(xlsx_report: Any) -> None:
    sql = _by_id(xlsx_report)["sql-01"]
    assert sql.hostname == "sql-01.corp.example.com"
    assert sql.hardware.cpu_cores == 8 and sql.hardware.ram_gb == 64
    assert sql.hardware.disk_total_gb == 900  # 100 + 500 + 200 + 100 GiB from vDisk
    assert sql.hardware.virtualization == "vmware"
    assert sql.ip_addresses == ["10.10.2.20", "10.10.9.20"]
    assert (sql.os.type, sql.os.distribution, sql.os.version) == (
        "Windows", "Windows Server", "2019")
    assert sql.os.architecture == "x86_64"  # from the configured "(64-bit)" name
    assert sql.datacenter == "DC-AMS-1"
    assert sql.tags == {"power_state": "poweredOn", "cluster": "CL-PROD-01"}
    assert sql.performance_baseline is None  # RVTools has no utilisation: not invented
    vmware = sql.model_extra["vmware"]
    assert [d["capacity_gb"] for d in vmware["disks"]] == [100, 500, 200, 100]
    assert vmware["disks"][1]["datastore"] == "DS-01-01" and vmware["disks"][1]["thin"] is False
    assert [(n["network"], n["ip_addresses"]) for n in vmware["nics"]] == [
        ("VLAN20-Data", ["10.10.2.20"]), ("VLAN90-Backup", ["10.10.9.20"])]
    assert vmware["annotation"].startswith("SQL Server 2019 Standard")
    assert vmware["host"].startswith("esx") and vmware["vm_uuid"]
    assert sql.model_extra["discovery"] == {"source": "rvtools", "file": XLSX.name,
                                            "sheet": "vInfo", "row": 4}


def test_rvtools_workbook_linux_variants_and_fallbacks(xlsx_report: Any) -> None:
    servers = _by_id(xlsx_report)
    web = servers["web-01"]
    assert (web.os.distribution, web.os.version) == ("Ubuntu", "22.04.4 LTS")  # VMware Tools
    assert web.os.model_extra["configured_name"] == "Ubuntu Linux (64-bit)"
    assert (servers["app-01"].os.distribution, servers["app-01"].os.version) == (
        "Red Hat Enterprise Linux", "8.9")
    assert servers["app-01"].hardware.disk_total_gb == 260
    assert servers["mq-01"].os.distribution == "CentOS"
    mon = servers["mon-01"]  # no DNS name, no VMware Tools OS
    assert mon.hostname == "mon-01" and mon.os.distribution == "SUSE Linux Enterprise"
    assert mon.os.version == "15"
    proxy = servers["proxy-01"]  # IPv6 kept, link-local dropped, second NIC's IPv4 too
    assert proxy.ip_addresses == ["172.16.5.20", "2001:db8:5::20", "10.10.3.20"]
    assert servers["file-01"].os.version == "2016"


def test_rvtools_powered_off_imported_and_flagged_template_skipped(xlsx_report: Any) -> None:
    batch = _by_id(xlsx_report)["batch-01"]
    assert batch.tags["power_state"] == "poweredOff"
    assert batch.os.distribution == "Oracle Linux"  # from the configuration: Tools not running
    assert "tpl-rhel8" not in _by_id(xlsx_report)
    assert "VM 'tpl-rhel8'" not in _quarantined(xlsx_report)
    notes = {(w.record, w.reason) for w in xlsx_report.warnings}
    assert ("VM 'tpl-rhel8'", Reason.skipped_record) in notes
    assert ("VM 'batch-01'", Reason.powered_off) in notes
    assert ("vDisk row 30", Reason.import_note) in notes  # a disk of a VM not in vInfo


def test_rvtools_csv_tabs_give_the_same_records_as_the_workbook(xlsx_report: Any) -> None:
    report = validate_inventory(CSV_TABS)
    assert report.files == [str(CSV_TABS / f"RVTools_tab{t}.csv")
                            for t in ("vDisk", "vInfo", "vNetwork")]
    assert (len(report.valid), len(report.quarantined)) == (14, 5)

    def comparable(server: Any) -> dict[str, Any]:
        data = server.model_dump()
        data.pop("discovery")
        return data

    assert {s.server_id: comparable(s) for s in report.valid} == {
        s.server_id: comparable(s) for s in xlsx_report.valid}
    lines = report.issue_lines()
    vinfo = CSV_TABS / "RVTools_tabvInfo.csv"
    assert f"{vinfo} row 8 (VM 'web-03'): CPUs: not a number: 'four'" in lines
    assert any("RVTools_tabvNetwork.csv row 13: IPv4 Address: not an IP address" in line
               for line in lines)


def test_sample_estate_loads_clean() -> None:
    report = validate_inventory(SAMPLE_ESTATE)
    assert report.ok and len(report.valid) == 14
    assert {w.reason for w in report.warnings} == {Reason.skipped_record, Reason.powered_off}


def test_generator_is_deterministic(tmp_path: Path) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "gen", ROOT / "scripts" / "generate_import_samples.py")
    assert spec and spec.loader
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    target = tmp_path / "again.xlsx"
    gen.write_workbook(target, gen.rvtools_tabs(gen.VMS))
    assert target.read_bytes() == XLSX.read_bytes()


# ------------------------------------------------------------------- RVTools variants


def test_older_rvtools_headers_and_renamed_sheets(tmp_path: Path) -> None:
    """RVTools 3.x: MB instead of MiB, a single "OS" column; sheets renamed by the user."""
    old = ["VM", "Powerstate", "Template", "DNS Name", "CPUs", "Memory", "Provisioned MB",
           "In Use MB", "Primary IP Address", "OS", "Datacenter", "Cluster"]
    disk = ["VM", "Disk", "Capacity MB", "Thin", "Path"]
    net = ["VM", "Network adapter", "Network", "Mac Address", "IP Address"]
    path = _workbook(tmp_path / "export.xlsx", {
        "VMs": [["RVTools export of vc01"], old,
                ["old-01", "poweredOn", "False", "", 4, 8192, 110000, 60000, "",
                 "Microsoft Windows Server 2012 (64-bit)", "DC", "CL"]],
        "Disks": [disk, ["old-01", "Hard disk 1", 61440, "True", "[ds1] old-01/old-01.vmdk"],
                  ["old-01", "Hard disk 2", 40960, "False", "[ds2] old-01/old-01_1.vmdk"]],
        "Nets": [net, ["old-01", "Network adapter 1", "VLAN5", "00:50:56:00:00:01",
                       "192.168.5.9"]],
    })
    report = validate_inventory(path)
    (server,) = report.valid
    assert server.server_id == "old-01" and server.hostname == "old-01"
    assert server.hardware.ram_gb == 8 and server.hardware.disk_total_gb == 100
    assert server.ip_addresses == ["192.168.5.9"]
    assert (server.os.type, server.os.version) == ("Windows", "2012")
    assert server.model_extra["vmware"]["provisioned_gb"] == pytest.approx(107.422, abs=1e-3)
    assert not report.quarantined


def test_full_workbook_other_tabs_ignored_and_vpartition_read(tmp_path: Path) -> None:
    """A real export has 27 tabs: vCPU, vPartition, vHost... must not be taken for others."""
    path = _workbook(tmp_path / "full.xlsx", {
        "vInfo": [VINFO_4X, _vinfo("p-01"), _vinfo("p-02", "10.1.0.7")],
        "vCPU": [["VM", "Powerstate", "Template", "CPUs", "Sockets", "Cores p/s"],
                 ["p-01", "poweredOn", "False", 64, 64, 1]],
        "vMemory": [["VM", "Powerstate", "Template", "Size MiB", "Consumed"],
                    ["p-01", "poweredOn", "False", 999999, 1]],
        "vDisk": [["VM", "Disk", "Capacity MiB", "Thin", "VM UUID"],
                  ["p-01", "Hard disk 1", 102400, "True", "uuid-p-01"]],
        "vPartition": [["VM", "Powerstate", "Disk", "Capacity MiB", "Consumed MiB",
                        "Free MiB", "Free %", "VM UUID"],
                       ["p-01", "poweredOn", "/", 40960, 10240, 30720, 75, "uuid-p-01"],
                       ["p-01", "poweredOn", "/var/lib/pgsql", 51200, 30720, 20480, 40,
                        "uuid-p-01"],
                       ["p-02", "poweredOn", "C:\\", 40960, "lots", 0, 0, "uuid-p-02"]],
        "vHost": [["Host", "Datacenter", "Cluster", "CPU Model", "# CPU"],
                  ["esx01", "DC1", "CL1", "Xeon", 2]],
    })
    report = validate_inventory(path)
    p1 = _by_id(report)["p-01"]
    assert p1.hardware.cpu_cores == 2 and p1.hardware.disk_total_gb == 100
    assert p1.storage is not None
    assert [(f.mount_point, f.size_gb, f.used_gb) for f in p1.storage.filesystems] == [
        ("/", 40, 10), ("/var/lib/pgsql", 50, 30)]
    assert p1.data_size_gb == 40  # used space: what replication moves
    (line,) = report.issue_lines()
    assert line.endswith("vInfo row 3 (VM 'p-02'): vPartition row 4: Consumed MiB: "
                         "not a number: 'lots'")


def test_workbook_with_only_vinfo_notes_the_missing_tabs(tmp_path: Path) -> None:
    path = _workbook(tmp_path / "info-only.xlsx", {
        "vInfo": [VINFO_4X, _vinfo("a-01"), _vinfo("a-02", "10.1.0.6")]})
    report = validate_inventory(path)
    assert sorted(_by_id(report)) == ["a-01", "a-02"]
    assert _by_id(report)["a-01"].hardware.disk_total_gb == 40  # vInfo's total
    notes = {w.field: w.message for w in report.warnings}
    assert "no vDisk tab" in notes["vDisk"] and "no vNetwork tab" in notes["vNetwork"]


def test_workbook_without_vinfo_is_a_clear_file_error(tmp_path: Path) -> None:
    path = _workbook(tmp_path / "disks.xlsx", {
        "vDisk": [["VM", "Disk", "Capacity MiB"], ["x", "Hard disk 1", 1024]]})
    report = validate_inventory(path)
    (item,) = report.quarantined
    assert item.record == "(file)" and item.reasons == {Reason.unrecognised_file}
    assert "without a vInfo tab (found vDisk)" in item.issues[0].message


def test_empty_workbook_is_reported(tmp_path: Path) -> None:
    path = _workbook(tmp_path / "empty.xlsx", {"Sheet1": []})
    report = validate_inventory(path)
    (item,) = report.quarantined
    assert "the workbook is empty" in item.issues[0].message
    assert item.reasons == {Reason.unrecognised_file}


def test_unrecognised_workbook_names_its_columns(tmp_path: Path) -> None:
    path = _workbook(tmp_path / "budget.xlsx", {"Q1": [["Item", "Cost"], ["disks", 12]]})
    (item,) = validate_inventory(path).quarantined
    message = item.issues[0].message
    assert "not a recognised discovery export" in message and "'Item', 'Cost'" in message


@pytest.mark.parametrize("damage", ["truncated", "not_a_zip", "zip_without_workbook"])
def test_damaged_workbook_is_a_clear_error_without_traceback(
        tmp_path: Path, damage: str, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "estate"
    folder.mkdir()
    bad = folder / "RVTools_export.xlsx"
    if damage == "truncated":
        data = XLSX.read_bytes()
        bad.write_bytes(data[: len(data) // 2])
    elif damage == "not_a_zip":
        bad.write_text("VM,CPUs\nweb,2\n")
    else:
        import zipfile

        with zipfile.ZipFile(bad, "w") as archive:
            archive.writestr("hello.txt", "hi")
    shutil.copy(FIXTURES / "plan_example_peers.json", folder / "peers.json")
    report = validate_inventory(folder)
    (item,) = [q for q in report.quarantined if q.file == str(bad)]
    assert item.reasons == {Reason.unreadable_file}
    assert "xlsx" in item.issues[0].message
    assert len(report.valid) == 2  # the JSON beside it still loads
    code = validate_cli.run(argparse.Namespace(path=str(folder), format="text",
                                               quarantine_dir=None,
                                               unknown_dependencies="ignore"))
    out = capsys.readouterr()
    assert code == 1 and "Traceback" not in out.out + out.err
    assert f"{bad}  record (file)  (record): " in out.out


def test_csv_encodings_latin1_and_utf8_bom(tmp_path: Path) -> None:
    latin = tmp_path / "latin"
    latin.mkdir()
    _csv(latin / "RVTools_tabvInfo.csv",
         [VINFO_4X, _vinfo("srv-01", Annotation="Büro Zürich, Müller")], encoding="latin-1")
    report = validate_inventory(latin)
    (server,) = report.valid
    assert server.model_extra["vmware"]["annotation"] == "Büro Zürich, Müller"
    assert any("not UTF-8" in w.message and "Windows-1252" in w.message
               for w in report.warnings)

    bom = tmp_path / "bom"
    bom.mkdir()
    _csv(bom / "export_vInfo.csv", [VINFO_4X, _vinfo("srv-02", Annotation="naïve ✓")],
         encoding="utf-8-sig")
    report = validate_inventory(bom)
    (server,) = report.valid  # the BOM does not hide the "VM" column
    assert server.server_id == "srv-02"
    assert server.model_extra["vmware"]["annotation"] == "naïve ✓"
    assert not any("UTF-8" in w.message for w in report.warnings)


def test_utf16_tab_separated_export(tmp_path: Path) -> None:
    """Excel's "Unicode text" export: UTF-16 with a byte-order mark, tab-separated."""
    header = ["ExternalId", "HostName", "IPAddress", "CPU.NumberOfProcessors",
              "RAM.TotalSizeInMB", "OS.Name"]
    path = _csv(tmp_path / "servers.csv", [header, ["ü-1", "u1.example.com", "10.6.0.1", 2,
                                                    2048, "Ubuntu"]],
                encoding="utf-16", delimiter="\t")
    (server,) = validate_inventory(path).valid
    assert server.server_id == "u-1" and server.model_extra["identifiers"]["external_id"] == "ü-1"


def test_semicolon_csv_tabs_paired_by_name(tmp_path: Path) -> None:
    _csv(tmp_path / "site1_vInfo.csv", [VINFO_4X, _vinfo("s1-a")], delimiter=";")
    _csv(tmp_path / "site1_vDisk.csv", [["VM", "Disk", "Capacity MiB", "VM UUID"],
                                        ["s1-a", "Hard disk 1", 10240, "uuid-s1-a"],
                                        ["s1-a", "Hard disk 2", 5120, "uuid-s1-a"]],
         delimiter=";")
    _csv(tmp_path / "site2_vInfo.csv", [VINFO_4X, _vinfo("s2-a", "10.2.0.5")])
    _csv(tmp_path / "site2_vDisk.csv", [["VM", "Disk", "Capacity MiB"],
                                        ["s2-a", "Hard disk 1", 2048]])
    report = validate_inventory(tmp_path)
    servers = _by_id(report)
    assert servers["s1-a"].hardware.disk_total_gb == 15
    assert servers["s2-a"].hardware.disk_total_gb == 2
    assert not report.quarantined


def test_vdisk_csv_alone_and_unrecognised_csv_are_reported(tmp_path: Path) -> None:
    _csv(tmp_path / "RVTools_tabvDisk.csv", [["VM", "Disk", "Capacity MiB"], ["a", "d", 1]])
    _csv(tmp_path / "notes.csv", [["when", "who"], ["monday", "ops"]])
    _csv(tmp_path / "endpoints.csv", [["server_id", "kind", "name", "source_uri"],
                                      ["a", "disk", "root", "ssh://a/dev/sda"]])
    shutil.copy(FIXTURES / "plan_example_peers.json", tmp_path / "peers.json")
    report = validate_inventory(tmp_path)
    problems = {Path(q.file).name: q for q in report.quarantined}
    assert "no vInfo tab beside it" in problems["RVTools_tabvDisk.csv"].issues[0].message
    assert "not a recognised discovery export" in problems["notes.csv"].issues[0].message
    assert "'when', 'who'" in problems["notes.csv"].issues[0].message
    assert "endpoints.csv" not in problems  # an endpoints file is skipped with a note
    assert any(w.reason is Reason.skipped_record and w.file.endswith("endpoints.csv")
               for w in report.warnings)
    assert len(report.valid) == 2


def test_duplicate_vm_names_across_rows_are_quarantined_together(tmp_path: Path) -> None:
    path = _workbook(tmp_path / "dup.xlsx", {
        "vInfo": [VINFO_4X, _vinfo("web-01"), _vinfo("web-01", "10.1.0.9", **{
            "VM UUID": "other"}), _vinfo("ok-01", "10.1.0.10")]})
    report = validate_inventory(path)
    assert list(_by_id(report)) == ["ok-01"]
    lines = report.issue_lines()
    assert any("vInfo row 2 (VM 'web-01'): server_id: server_id 'web-01' is also used by"
               in line and "row 3" in line for line in lines)


def test_quarantine_folder_holds_imported_rows(tmp_path: Path, xlsx_report: Any) -> None:
    written = write_quarantine(xlsx_report, tmp_path / "q")
    reasons = [p for p in written if p.name.endswith(".reason.txt")]
    assert len(reasons) == 5
    web = next(p for p in reasons if "web-03" in p.name)
    text = web.read_text()
    assert "vInfo row 8" in text and "CPUs: not a number: 'four'" in text
    record = json.loads(web.with_name(web.name.replace(".reason.txt", ".record.json"))
                        .read_text())
    assert record["hardware"]["cpu_cores"] == "four"  # the cell as the user typed it
    index = json.loads((tmp_path / "q" / "quarantine.json").read_text())
    assert any(q.get("sheet") == "vInfo" for q in index["quarantined"])


def test_imported_record_is_sized_like_for_like(xlsx_report: Any) -> None:
    from migrationbox.sizing.features import profile_from_record

    profile = profile_from_record(_by_id(xlsx_report)["app-01"])
    assert (profile.vcpu, profile.memory_gib) == (4, 16)
    assert profile.cpu.avg == 100 and "like-for-like" in profile.stats_source


# ------------------------------------------------------------------- Migration Hub CSV


@pytest.fixture(scope="module")
def ads_report() -> Any:
    return validate_inventory(ADS)


def test_migration_hub_csv_fields(ads_report: Any) -> None:
    assert (len(ads_report.valid), len(ads_report.quarantined)) == (13, 3)
    app = _by_id(ads_report)["CMDB-1003"]
    assert app.hostname == "pay-app01.corp.example.com"
    assert app.ip_addresses == ["10.20.2.21", "10.20.9.21"]
    assert app.hardware.cpu_cores == 16  # logical cores, before cores (8) and sockets (2)
    assert app.hardware.ram_gb == 32 and app.hardware.virtualization == "vmware"
    assert (app.os.type, app.os.distribution, app.os.version) == (
        "Linux", "Red Hat Enterprise Linux", "9.2")
    base = app.performance_baseline
    assert base is not None
    assert (base.cpu_avg_utilization_pct, base.cpu_peak_utilization_pct) == (15, 60)
    assert base.memory_avg_utilization_pct == pytest.approx(36.62, abs=0.01)  # 12000/32768
    assert base.memory_peak_utilization_pct == 62.5
    assert base.disk_iops_avg == 53  # reads 45 + writes 8 per second
    assert base.disk_read_mbps == pytest.approx(1159 * 1024 / 1e6, abs=1e-3)
    assert base.network_throughput_mbps == pytest.approx(7600 * 1024 * 8 / 1e6, abs=1e-3)
    assert [a.name for a in app.applications] == ["Payments", "Ledger"]
    assert app.tags == {"application": "Payments", "application_2": "Ledger",
                        "wave": "Wave 2", "owner": "finance", "tier": "app"}
    assert app.model_extra["identifiers"]["vmware_moref_id"] == "vm-2003"
    db = _by_id(ads_report)["CMDB-1004"]
    assert (db.os.type, db.os.version, db.os.model_extra["edition"]) == (
        "Windows", "10.0.17763", "Datacenter")


def test_migration_hub_row_without_utilisation_is_not_measured(ads_report: Any) -> None:
    report_server = _by_id(ads_report)["CMDB-1011"]
    assert report_server.performance_baseline is None
    assert report_server.hardware.ram_gb == 16


def test_migration_hub_bad_rows(ads_report: Any) -> None:
    lines = ads_report.issue_lines()
    name = str(ADS)
    assert f"{name} row 15 (server 'CMDB-1014'): CPU.UsagePct.Avg: not a number: 'high'" in lines
    assert (f"{name} row 16 (server 'CMDB-1015'): IPAddress: not an IP address: "
            "'10.20.4.999'") in lines
    assert (f"{name} row 17 (server 'CMDB-1016'): RAM.UsedSizeInMB.Avg: 70000 MB used is "
            "more than RAM.TotalSizeInMB (65536)") in lines
    assert len(lines) == 4
    assert any("no disk sizes" in w.message for w in ads_report.warnings)


def test_migration_hub_detected_by_header_with_variants(tmp_path: Path) -> None:
    header = ["HostName", "IPAddresses", "CPU.NumberOfProcessors", "RAM.TotalSizeInMB",
              "OS.Name", "OS.Version", "CPU.UsagePct.Avg", "RAM.UsedSizeInMB.Avg",
              "DiskReadOpsPerSecond.Avg", "DiskWriteOpsPerSecond.Avg", "Owner"]
    path = _csv(tmp_path / "servers.csv", [
        header, ["h1.example.com", "10.3.0.1", 2, 4096, "Windows", "NT 6.2.8", 140, 1024, 5, 6,
                 "me"],
        ["h2.example.com", "10.3.0.2", 2, 4096, "Linux", "16.04.3", 10, 2048, "", 4, "you"]])
    report = validate_inventory(path)
    h2 = _by_id(report)["h2.example.com"]
    assert h2.performance_baseline is not None and h2.performance_baseline.disk_iops_avg == 4
    assert (h2.os.type, h2.os.version) == ("Linux", "16.04.3")
    (line,) = report.issue_lines()
    assert line.endswith("row 2 (server 'h1.example.com'): CPU.UsagePct.Avg "
                         "(performance_baseline.cpu_avg_utilization_pct): Input should be "
                         "less than or equal to 100 (got 140.0)")
    assert any("ignored: Owner" in w.message for w in report.warnings)


def test_migration_hub_row_naming_no_server(tmp_path: Path) -> None:
    path = _csv(tmp_path / "import.csv", [
        ["ExternalId", "HostName", "IPAddress", "CPU.NumberOfProcessors", "RAM.TotalSizeInMB",
         "OS.Name"],
        ["", "", "10.4.0.1", 2, 2048, "Linux"],
        ["e-2", "e2.example.com", "10.4.0.2", 2, 2048, ""]])
    report = validate_inventory(path)
    assert not report.valid
    fields = {(q.record, i.field, i.reason) for q in report.quarantined for i in q.issues}
    assert ("row 2", "ExternalId", Reason.missing_field) in fields
    assert ("server 'e-2'", "OS.Name", Reason.missing_field) in fields


def test_migration_hub_template_in_a_workbook(tmp_path: Path) -> None:
    path = _workbook(tmp_path / "import.xlsx", {"Servers": [
        ["ExternalId", "HostName", "IPAddress", "CPU.NumberOfProcessors", "RAM.TotalSizeInMB",
         "OS.Name", "OS.Version"],
        ["x-1", "x1.example.com", "10.5.0.1", 4, 8192, "Ubuntu", "22.04"]]})
    (server,) = validate_inventory(path).valid
    assert server.server_id == "x-1" and server.os.version == "22.04"


def test_loader_returns_records_errors_and_notes(tmp_path: Path) -> None:
    shutil.copy(ADS, tmp_path / "a.csv")
    (tmp_path / "broken.xlsx").write_bytes(b"PK\x03\x04garbage")
    loaded = load_records(tmp_path)
    assert len(loaded.records) == 16 and all(isinstance(r, RawRecord) for r in loaded.records)
    assert [Path(e.file).name for e in loaded.errors] == ["broken.xlsx"]
    assert all(isinstance(n, LoadNote) for n in loaded.notes) and loaded.notes


# ------------------------------------------------------------------- properties

CELL = st.one_of(
    st.none(), st.text(max_size=30), st.integers(min_value=-10**12, max_value=10**12),
    st.floats(allow_nan=True, allow_infinity=True), st.booleans(),
    st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2100, 1, 1)),
    st.sampled_from(["poweredOn", "poweredOff", "True", "False", "10.0.0.1",
                     "10.0.0.1, fe80::1", "Microsoft Windows Server 2019 (64-bit)",
                     "4", "4,5", "1,024", "", " "]),
)


def _table(name: str, columns: list[str], rows: list[list[Any]]) -> Table:
    keys = [norm(c) for c in columns]
    return Table(name, columns, [Row(i + 2, dict(zip(keys, r, strict=True)))
                                 for i, r in enumerate(rows)])


def _outcome(items: list[Any], rows: int) -> None:
    records = [i for i in items if isinstance(i, RawRecord)]
    assert not [i for i in items if isinstance(i, ParseError)]
    for record in records:  # no row fell into the importer's safety net
        assert not [p for p in record.problems if p.field == "(row)"], record.problems
    report = validate_records(items)
    assert len(report.valid) + len(report.quarantined) == len(records)
    skipped = [w for w in report.warnings if w.reason is Reason.skipped_record]
    assert len(records) + len(skipped) == rows  # each row: a record, or skipped (noted)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(CELL, min_size=len(VINFO_4X), max_size=len(VINFO_4X)),
                min_size=1, max_size=4),
       st.lists(st.lists(CELL, min_size=4, max_size=4), max_size=4),
       st.lists(st.lists(CELL, min_size=4, max_size=4), max_size=4),
       st.lists(st.lists(CELL, min_size=4, max_size=4), max_size=4))
def test_rvtools_arbitrary_cells_never_raise(vinfo: list[list[Any]], vdisk: list[list[Any]],
                                             vnet: list[list[Any]],
                                             vpart: list[list[Any]]) -> None:
    names = [r[0] for r in vinfo]
    disk_rows = [[names[i % len(names)], *r[1:]] for i, r in enumerate(vdisk)]
    net_rows = [[names[i % len(names)], *r[1:]] for i, r in enumerate(vnet)]
    part_rows = [[names[i % len(names)], *r[1:]] for i, r in enumerate(vpart)]
    tables = {
        rvtools.VINFO: _table("vInfo", VINFO_4X, vinfo),
        rvtools.VDISK: _table("vDisk", ["VM", "Disk", "Capacity MiB", "Thin"], disk_rows),
        rvtools.VNETWORK: _table("vNetwork", ["VM", "Network", "IPv4 Address", "Connected"],
                                 net_rows),
        rvtools.VPARTITION: _table("vPartition", ["VM", "Disk", "Capacity MiB", "Consumed MiB"],
                                   part_rows),
    }
    items = list(rvtools.import_tabs(tables, "prop.xlsx"))
    _outcome(items, len(vinfo))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(CELL, min_size=len(migration_hub.FIELDS),
                         max_size=len(migration_hub.FIELDS)), min_size=1, max_size=4))
def test_migration_hub_arbitrary_cells_never_raise(rows: list[list[Any]]) -> None:
    table = _table("import.csv", list(migration_hub.FIELDS), rows)
    table.from_csv = True
    items = list(migration_hub.import_table(table, "import.csv"))
    records = [i for i in items if isinstance(i, RawRecord)]
    assert len(records) == len(rows)
    _outcome(items, len(rows))
