"""RVTools exports (vInfo, vDisk, vNetwork tabs) -> discovery records, one per VM.

RVTools is what most VMware estates hand over before a migration: an .xlsx workbook
with one sheet per tab, or one CSV file per tab (``RVTools_tabvInfo.csv`` ...). It knows
the allocation (vCPUs, memory, disks, NICs), the guest OS and where each VM runs, but
not how busy it is, so imported records carry ``performance_baseline: null`` ("not
measured") rather than invented figures; sizing then falls back to the allocation.

Decisions a user should know (each one is also a ``LoadNote`` when it happens):

* templates and SRM placeholders are skipped: they are not servers to migrate;
* powered-off and suspended VMs are imported and tagged ``power_state``: someone has to
  decide whether they move, and dropping them would hide them from that decision;
* vInfo is required; without vDisk the disk total comes from vInfo's
  ``Total disk capacity MiB``, without vNetwork the IPs from ``Primary IP Address``;
* vPartition (the guest's own view of its filesystems, when VMware Tools runs) is read
  when present: ``storage.filesystems`` with used space, which is what replication moves.

Column names follow RVTools 4.x (``Provisioned MiB``); the ``MB`` spelling of 3.x and the
older ``OS`` column are accepted too.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from migrationbox.inventory.importers.cells import (
    Cells,
    blank,
    clipped,
    mib_to_gb,
    server_id_from,
    shown,
    text,
)
from migrationbox.inventory.importers.os_names import parse_os
from migrationbox.inventory.importers.tables import Row, Table, norm
from migrationbox.inventory.loaders import (
    LoadNote,
    Origin,
    ParseError,
    RawRecord,
    SourceProblem,
)

VINFO, VDISK, VNETWORK, VPARTITION = "vInfo", "vDisk", "vNetwork", "vPartition"
TOOL = "rvtools"

# column -> the spellings seen across RVTools versions (first is the current one)
COLUMNS: dict[str, tuple[str, ...]] = {
    "vm": ("VM", "VM Name", "Name"),
    "power": ("Powerstate", "Power State"),
    "template": ("Template",),
    "srm": ("SRM Placeholder",),
    "dns": ("DNS Name",),
    "cpus": ("CPUs", "Num CPU", "vCPUs"),
    "memory": ("Memory", "Memory MiB", "Memory MB"),
    "total_disk": ("Total disk capacity MiB", "Total disk capacity MB"),
    "provisioned": ("Provisioned MiB", "Provisioned MB"),
    "in_use": ("In Use MiB", "In Use MB"),
    "primary_ip": ("Primary IP Address", "IP Address"),
    "os_config": ("OS according to the configuration file", "OS", "Guest OS",
                  "Configured OS"),
    "os_tools": ("OS according to the VMware Tools", "Tools OS"),
    "annotation": ("Annotation", "Notes"),
    "datacenter": ("Datacenter",),
    "cluster": ("Cluster",),
    "host": ("Host",),
    "folder": ("Folder",),
    "resource_pool": ("Resource pool",),
    "vm_id": ("VM ID",),
    "vm_uuid": ("VM UUID",),
    "smbios_uuid": ("SMBIOS UUID", "BIOS UUID"),
    "vcenter": ("VI SDK Server",),
    "firmware": ("Firmware",),
    "hw_version": ("HW version", "HW Version"),
    # vDisk
    "disk": ("Disk", "Disk Label", "Label"),
    "capacity": ("Capacity MiB", "Capacity MB"),
    "thin": ("Thin",),
    "disk_mode": ("Disk Mode",),
    "disk_path": ("Path", "Disk Path"),
    "controller": ("Controller",),
    "raw": ("Raw",),
    # vPartition
    "consumed": ("Consumed MiB", "Consumed MB"),
    "free": ("Free MiB", "Free MB"),
    # vNetwork
    "nic": ("NIC label", "Network adapter", "Adapter Label"),
    "adapter": ("Adapter",),
    "network": ("Network", "Portgroup"),
    "switch": ("Switch",),
    "connected": ("Connected",),
    "mac": ("Mac Address", "MAC Address"),
    "ipv4": ("IPv4 Address", "IP Address"),
    "ipv6": ("IPv6 Address",),
}


def tab_kind(names: set[str]) -> str | None:
    """Which RVTools tab a header (normalised column names) belongs to, if any."""
    if not names & {norm(v) for v in COLUMNS["vm"]}:
        return None
    has = lambda key: bool(names & {norm(v) for v in COLUMNS[key]})  # noqa: E731
    if has("cpus") and has("memory") and has("power"):
        return VINFO
    if has("capacity") and (has("consumed") or has("free")):
        return VPARTITION  # also has "Disk" and "Capacity MiB": test it before vDisk
    if has("capacity") and (has("disk") or has("disk_path")):
        return VDISK
    if has("network") and (has("mac") or has("ipv4") or has("adapter") or has("nic")):
        return VNETWORK
    return None


class _Tab:
    """A table with RVTools column lookup by logical key."""

    def __init__(self, table: Table, kind: str) -> None:
        self.table = table
        self.kind = kind
        self.col = {key: table.column(*variants) for key, variants in COLUMNS.items()}

    def get(self, row: Row, key: str) -> Any:
        column = self.col.get(key)
        return row.cells.get(norm(column)) if column else None

    def name(self, key: str) -> str:
        return self.col.get(key) or COLUMNS[key][0]


def _join_key(tab: _Tab, row: Row) -> tuple[str, str] | None:
    uuid = text(tab.get(row, "vm_uuid"))
    if uuid:
        return ("uuid", uuid.lower())
    vm = text(tab.get(row, "vm"))
    return ("name", vm) if vm else None


def _datastore(path: str | None) -> str | None:
    match = re.match(r"^\[([^\]]+)\]", path or "")
    return match.group(1) if match else None


def import_tabs(tables: dict[str, Table], file: str) -> Iterator[RawRecord | LoadNote | ParseError]:
    """Records from the RVTools tabs found in one export (``tables`` keyed by tab kind)."""
    if VINFO not in tables:
        found = ", ".join(sorted(tables)) or "no RVTools tab"
        yield ParseError(file, None, None,
                         f"RVTools export without a vInfo tab (found {found}): vInfo lists "
                         "the VMs, export it too", kind="unrecognised_file")
        return
    info = _Tab(tables[VINFO], VINFO)
    disks = _Tab(tables[VDISK], VDISK) if VDISK in tables else None
    nets = _Tab(tables[VNETWORK], VNETWORK) if VNETWORK in tables else None
    parts = _Tab(tables[VPARTITION], VPARTITION) if VPARTITION in tables else None
    for table in tables.values():
        for message in table.notes:
            yield LoadNote(file, "(file)", table.name, message, "import_note")
    if disks is None:
        yield LoadNote(file, "(file)", VDISK,
                       f"no vDisk tab: each VM's disk total comes from vInfo "
                       f"'{info.name('total_disk')}'; per-disk sizes are unknown",
                       "import_note")
    if nets is None:
        yield LoadNote(file, "(file)", VNETWORK,
                       f"no vNetwork tab: IP addresses come from vInfo "
                       f"'{info.name('primary_ip')}' only; NICs and networks are unknown",
                       "import_note")
    if info.col["os_config"] is None and info.col["os_tools"] is None:
        yield LoadNote(file, "(file)", VINFO,
                       "vInfo has no OS column ('OS according to the configuration file' or "
                       "'OS according to the VMware Tools'): every VM will lack its OS",
                       "import_note")

    # index vInfo rows for the vDisk / vNetwork joins
    by_key: dict[tuple[str, str], int] = {}
    names: dict[str, list[int]] = {}
    for index, row in enumerate(info.table.rows):
        key = _join_key(info, row)
        if key:
            by_key.setdefault(key, index)
        vm = text(info.get(row, "vm"))
        if vm:
            names.setdefault(vm, []).append(index)
    children: dict[int, dict[str, list[Row]]] = {}
    for tab in (t for t in (disks, nets, parts) if t is not None):
        for row in tab.table.rows:
            key = _join_key(tab, row)
            target = by_key.get(key) if key else None
            if target is None:
                vm = text(tab.get(row, "vm"))
                matches = names.get(vm or "", [])
                target = matches[0] if len(matches) == 1 else None
            if target is None:
                vm = text(tab.get(row, "vm"))
                if vm and not _skipped(info, info.table.rows, names.get(vm, [])):
                    yield LoadNote(file, tab.table.where(row), tab.name("vm"),
                                   f"VM {shown(vm)} is not in vInfo (or is there twice): "
                                   "row ignored", "import_note")
                continue
            children.setdefault(target, {}).setdefault(tab.kind, []).append(row)

    for index, row in enumerate(info.table.rows):
        try:
            yield from _vm(info, disks, nets, parts, row, index, children.get(index, {}),
                           file)
        except Exception as exc:  # a safety net: one odd row must not stop the file
            yield RawRecord(Origin(file, index, row.number, info.table.part,
                                   info.table.where(row)),
                            {"source_row": {k: str(v) for k, v in row.cells.items()}},
                            (_importer_error(exc),))


def _importer_error(exc: Exception) -> SourceProblem:
    return SourceProblem("(row)", f"importer error on this row: {type(exc).__name__}: {exc}",
                         "invalid_value")


def _skipped(info: _Tab, rows: list[Row], indexes: list[int]) -> bool:
    """True when the VM a vDisk/vNetwork row names is a skipped template/placeholder."""
    probe = Cells()
    return bool(indexes) and all(
        probe.flag(info.get(rows[i], "template"), "Template")
        or probe.flag(info.get(rows[i], "srm"), "SRM Placeholder") for i in indexes)


def _vm(info: _Tab, disks: _Tab | None, nets: _Tab | None, parts: _Tab | None, row: Row,
        index: int, kids: dict[str, list[Row]], file: str) -> Iterator[RawRecord | LoadNote]:
    cells = Cells()
    vm = text(info.get(row, "vm"))
    label = f"VM {shown(vm)}" if vm else info.table.where(row)
    origin = Origin(file, index, row.number, info.table.part, label)
    if cells.flag(info.get(row, "template"), info.name("template")):
        yield LoadNote(file, label, info.name("template"),
                       f"a template, not a server ({info.table.where(row)}): skipped",
                       "skipped_record")
        return
    if cells.flag(info.get(row, "srm"), info.name("srm")):
        yield LoadNote(file, label, info.name("srm"),
                       f"an SRM placeholder ({info.table.where(row)}: a recovery-site "
                       "stand-in for a VM protected elsewhere): skipped", "skipped_record")
        return

    data: dict[str, Any] = {}
    if vm is None:
        cells.problem(info.name("vm"), "empty: every vInfo row needs the VM name",
                      "missing_field")
        server_id = None
    else:
        server_id = server_id_from(vm)
        if not server_id:
            cells.problem(info.name("vm"), f"no usable server_id in VM name {shown(vm)}",
                          "invalid_value")
    data["server_id"] = server_id
    cells.source("server_id", info.name("vm"))
    dns = text(info.get(row, "dns"))
    data["hostname"] = dns or vm
    cells.source("hostname", info.name("dns") if dns else info.name("vm"))

    power = text(info.get(row, "power"))
    hardware: dict[str, Any] = {"virtualization": "vmware"}
    cpus_raw = info.get(row, "cpus")
    cpus = cells.integer(cpus_raw, info.name("cpus"))
    hardware["cpu_cores"] = cpus if cpus is not None else (None if blank(cpus_raw)
                                                           else cpus_raw)
    cells.source("hardware.cpu_cores", info.name("cpus"))
    memory_raw = info.get(row, "memory")
    memory = cells.number(memory_raw, info.name("memory"))
    hardware["ram_gb"] = mib_to_gb(memory) if memory is not None else (
        None if blank(memory_raw) else memory_raw)
    cells.source("hardware.ram_gb", info.name("memory"))
    if blank(cpus_raw):
        cells.problem(info.name("cpus"), "empty", "missing_field")
    if blank(memory_raw):
        cells.problem(info.name("memory"), "empty", "missing_field")

    vmware: dict[str, Any] = {"vm_name": vm, "power_state": power}
    for key in ("cluster", "host", "folder", "resource_pool", "vm_id", "vm_uuid",
                "smbios_uuid", "vcenter", "firmware", "hw_version", "annotation"):
        value = text(info.get(row, key))
        if value is not None:
            vmware[key] = value
    provisioned = cells.number(info.get(row, "provisioned"), info.name("provisioned"))
    in_use = cells.number(info.get(row, "in_use"), info.name("in_use"))
    if provisioned is not None:
        vmware["provisioned_gb"] = mib_to_gb(provisioned)
    if in_use is not None:
        vmware["in_use_gb"] = mib_to_gb(in_use)

    # disks: vDisk rows when the tab exists, else vInfo's total
    disk_rows = kids.get(VDISK, [])
    if disks is not None:
        listed = []
        total = 0.0
        for drow in disk_rows:
            where = f"{disks.table.where(drow)}: "
            capacity = cells.number(disks.get(drow, "capacity"), disks.name("capacity"),
                                    where=where)
            if capacity is None and blank(disks.get(drow, "capacity")):
                cells.problem(f"{where}{disks.name('capacity')}", "empty", "missing_field")
            entry: dict[str, Any] = {"label": text(disks.get(drow, "disk"))}
            if capacity is not None:
                entry["capacity_gb"] = mib_to_gb(capacity)
                total += capacity
            thin = cells.flag(disks.get(drow, "thin"), disks.name("thin"), where=where)
            if thin is not None:
                entry["thin"] = thin
            for key in ("disk_mode", "disk_path", "controller"):
                value = text(disks.get(drow, key))
                if value is not None:
                    entry[key.removeprefix("disk_")] = value
            datastore = _datastore(text(disks.get(drow, "disk_path")))
            if datastore:
                entry["datastore"] = datastore
            listed.append(entry)
        vmware["disks"] = listed
        hardware["disk_total_gb"] = mib_to_gb(total) or 0
        cells.source("hardware.disk_total_gb", disks.name("capacity"))
    else:
        total_disk = cells.number(info.get(row, "total_disk"), info.name("total_disk"))
        if total_disk is not None:
            hardware["disk_total_gb"] = mib_to_gb(total_disk)
            cells.source("hardware.disk_total_gb", info.name("total_disk"))

    if parts is not None and kids.get(VPARTITION):
        filesystems = []
        for prow in kids[VPARTITION]:
            where = f"{parts.table.where(prow)}: "
            capacity = cells.number(parts.get(prow, "capacity"), parts.name("capacity"),
                                    where=where)
            consumed = cells.number(parts.get(prow, "consumed"), parts.name("consumed"),
                                    where=where)
            if capacity is None:
                if blank(parts.get(prow, "capacity")):
                    cells.problem(f"{where}{parts.name('capacity')}", "empty", "missing_field")
                continue
            system: dict[str, Any] = {
                "mount_point": text(parts.get(prow, "disk")) or f"partition {len(filesystems)}",
                "size_gb": mib_to_gb(capacity)}
            if consumed is not None:
                system["used_gb"] = mib_to_gb(consumed)
            filesystems.append(system)
        data["storage"] = {"filesystems": filesystems}
        cells.source("storage", parts.name("capacity"))

    # addresses: the primary IP first, then every NIC's
    addresses = cells.addresses(info.get(row, "primary_ip"), info.name("primary_ip"))
    ip_column = info.name("primary_ip")
    if nets is not None:
        nics = []
        for nrow in kids.get(VNETWORK, []):
            where = f"{nets.table.where(nrow)}: "
            ipv4 = cells.addresses(nets.get(nrow, "ipv4"), nets.name("ipv4"), where=where)
            ipv6 = cells.addresses(nets.get(nrow, "ipv6"), nets.name("ipv6"), where=where)
            nic: dict[str, Any] = {"label": text(nets.get(nrow, "nic"))}
            for key in ("adapter", "network", "switch", "mac"):
                value = text(nets.get(nrow, key))
                if value is not None:
                    nic[key] = value
            connected = cells.flag(nets.get(nrow, "connected"), nets.name("connected"),
                                   where=where)
            if connected is not None:
                nic["connected"] = connected
            nic["ip_addresses"] = ipv4 + ipv6
            nics.append(nic)
            addresses += ipv4 + ipv6
            if ipv4 or ipv6:
                ip_column = f"{nets.name('ipv4')} (vNetwork)"
        vmware["nics"] = nics
    data["ip_addresses"] = list(dict.fromkeys(addresses))
    cells.source("ip_addresses", ip_column)
    if not data["ip_addresses"] and not any(p.field.endswith(("IPv4 Address", "IPv6 Address",
                                                              ip_column))
                                            for p in cells.problems):
        state = f" (Powerstate {clipped(power)})" if power and power != "poweredOn" else ""
        cells.problem(ip_column, "no IP address known: RVTools lists guest IPs only "
                      f"while VMware Tools runs{state}; add the address in a JSON record "
                      "for this server or export again with the VM running",
                      "missing_field")

    # OS: what VMware Tools reports when it ran, else what the VM is configured as
    tools_os = text(info.get(row, "os_tools"))
    config_os = text(info.get(row, "os_config"))
    section = parse_os(tools_os or config_os)
    os_column = info.name("os_tools") if tools_os else info.name("os_config")
    if section is None:
        cells.problem(os_column, "empty: the guest OS is unknown (VMware Tools did not "
                      "report it and the configuration names none)", "missing_field")
        section = {"type": ""}
    elif tools_os and config_os and config_os != tools_os:
        section["configured_name"] = config_os
        configured = parse_os(config_os) or {}
        if "architecture" not in section and "architecture" in configured:
            section["architecture"] = configured["architecture"]  # "(64-bit)" is only there
    data["os"] = section
    cells.source("os", os_column)

    data["hardware"] = hardware
    data["applications"] = []
    data["network_dependencies"] = []
    data["performance_baseline"] = None  # RVTools has no utilisation: not measured
    datacenter = text(info.get(row, "datacenter"))
    if datacenter:
        data["datacenter"] = datacenter
    tags = {"power_state": power} if power else {}
    if vmware.get("cluster"):
        tags["cluster"] = vmware["cluster"]
    if vm and vm != server_id:
        tags["vm_name"] = vm
    data["tags"] = tags
    data["vmware"] = vmware
    data["discovery"] = {"source": TOOL, "file": Path(file).name, "sheet": info.table.name,
                         "row": row.number}
    if power and power != "poweredOn" and server_id:
        yield LoadNote(file, label, info.name("power"),
                       f"{clipped(power)} when RVTools ran ({info.table.where(row)}): tagged "
                       f"power_state={clipped(power)}; decide whether it migrates",
                       "powered_off")
    yield RawRecord(origin, data, tuple(cells.problems), tuple(cells.columns.items()))
