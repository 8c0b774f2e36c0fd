"""AWS Migration Hub / Application Discovery Service import CSV -> discovery records.

The import template (``import_template.csv`` from the Migration Hub console, fields
documented in the ADS user guide under "Migration Hub import") is the inventory sheet
many estates already keep for AWS: one row per server, identified by any of
``ExternalId``, ``HostName``, ``IPAddress``, ``MACAddress`` or ``VMware.MoRefId`` with
``VMware.VCenterId``. Unlike RVTools it carries utilisation (average and maximum CPU
percent, used RAM, disk and network rates), which becomes ``performance_baseline``.

Mapping decisions:

* ``server_id`` is ``ExternalId`` (the user's own key), else ``ServerId``, else the
  host name; ``hostname`` is ``HostName``, else ``VMware.VMName``;
* vCPUs are ``CPU.NumberOfLogicalCores`` (what a cloud instance counts), else
  ``CPU.NumberOfCores``, else ``CPU.NumberOfProcessors``;
* ``Applications`` become the server's applications (one per name) and the
  ``application`` tags group servers by them; no server-to-server dependency is invented
  from a shared application, since the template says nothing of who calls whom;
* the template has no disk sizes, so ``disk_total_gb`` is left at 0 and a note says so;
* columns the template does not define are ignored (as Migration Hub does), with a note.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from migrationbox.inventory.importers.cells import (
    Cells,
    blank,
    mib_to_gb,
    server_id_from,
    shown,
    text,
)
from migrationbox.inventory.importers.os_names import parse_os
from migrationbox.inventory.importers.tables import Row, Table, norm
from migrationbox.inventory.loaders import LoadNote, Origin, RawRecord, SourceProblem

TOOL = "aws-migration-hub-import"

FIELDS = (
    "ExternalId", "SMBiosId", "IPAddress", "MACAddress", "HostName", "VMware.MoRefId",
    "VMware.VCenterId", "CPU.NumberOfProcessors", "CPU.NumberOfCores",
    "CPU.NumberOfLogicalCores", "OS.Name", "OS.Version", "VMware.VMName",
    "RAM.TotalSizeInMB", "RAM.UsedSizeInMB.Avg", "RAM.UsedSizeInMB.Max",
    "CPU.UsagePct.Avg", "CPU.UsagePct.Max",
    "DiskReadsPerSecondInKB.Avg", "DiskWritesPerSecondInKB.Avg",
    "DiskReadsPerSecondInKB.Max", "DiskWritesPerSecondInKB.Max",
    "DiskReadsOpsPerSecond.Avg", "DiskWritesOpsPerSecond.Avg",
    "DiskReadsOpsPerSecond.Max", "DiskWritesOpsPerSecond.Max",
    "NetworkReadsPerSecondInKB.Avg", "NetworkWritesPerSecondInKB.Avg",
    "NetworkReadsPerSecondInKB.Max", "NetworkWritesPerSecondInKB.Max",
    "Applications", "ApplicationWave", "Tags", "ServerId",
)
# spellings seen in exports and hand-made sheets for the same fields
VARIANTS: dict[str, tuple[str, ...]] = {
    "DiskReadsOpsPerSecond.Avg": ("DiskReadOpsPerSecond.Avg",),
    "DiskWritesOpsPerSecond.Avg": ("DiskWriteOpsPerSecond.Avg",),
    "DiskReadsOpsPerSecond.Max": ("DiskReadOpsPerSecond.Max",),
    "DiskWritesOpsPerSecond.Max": ("DiskWriteOpsPerSecond.Max",),
    "IPAddress": ("IPAddresses",),
}
IDENTITY = ("ExternalId", "HostName", "IPAddress", "MACAddress", "VMware.MoRefId", "ServerId")
_KNOWN = {norm(f) for f in FIELDS} | {norm(v) for vs in VARIANTS.values() for v in vs}
_KB = 1024  # the template's KB


def looks_like_template(names: set[str]) -> bool:
    """A header of the import template: an identity column and two more of its fields."""
    ids = {norm(c) for c in IDENTITY} | {norm("IPAddresses")}
    return bool(names & ids) and len(names & _KNOWN) >= 3


class _Sheet:
    def __init__(self, table: Table) -> None:
        self.table = table
        self.col = {f: table.column(f, *VARIANTS.get(f, ())) for f in FIELDS}

    def get(self, row: Row, name: str) -> Any:
        column = self.col.get(name)
        return row.cells.get(norm(column)) if column else None

    def name(self, field: str) -> str:
        return self.col.get(field) or field


def import_table(table: Table, file: str) -> Iterator[RawRecord | LoadNote]:
    sheet = _Sheet(table)
    for message in table.notes:
        yield LoadNote(file, "(file)", table.name, message, "import_note")
    ignored = [c for c in table.columns if norm(c) not in _KNOWN]
    if ignored:
        yield LoadNote(file, "(file)", "(columns)",
                       "columns the Migration Hub import template does not define are "
                       f"ignored: {', '.join(ignored)}", "import_note")
    yield LoadNote(file, "(file)", "(columns)",
                   "the Migration Hub import template has no disk sizes: disk_total_gb is "
                   "left at 0 (add disks from another source before sizing storage)",
                   "import_note")
    for index, row in enumerate(table.rows):
        try:
            yield from _server(sheet, row, index, file)
        except Exception as exc:  # a safety net: one odd row must not stop the file
            problem = SourceProblem("(row)", f"importer error on this row: "
                                    f"{type(exc).__name__}: {exc}", "invalid_value")
            yield RawRecord(Origin(file, index, row.number, table.part,
                                   f"row {row.number}"),
                            {"source_row": {k: str(v) for k, v in row.cells.items()}},
                            (problem,))


def _pct_of(part: float | None, whole: float | None) -> float | None:
    if part is None or not whole:
        return None
    return round(part / whole * 100, 2)


def _server(sheet: _Sheet, row: Row, index: int, file: str) -> Iterator[RawRecord | LoadNote]:
    cells = Cells()
    g = lambda f: sheet.get(row, f)  # noqa: E731
    external = text(g("ExternalId"))
    host = text(g("HostName"))
    vm_name = text(g("VMware.VMName"))
    key = external or text(g("ServerId")) or host or vm_name
    label = f"server {shown(key)}" if key else f"row {row.number}"
    origin = Origin(file, index, row.number, sheet.table.part, label)

    data: dict[str, Any] = {}
    server_id = server_id_from(key) if key else ""
    if not key:
        cells.problem("ExternalId", "empty, and so are ServerId, HostName and VMware.VMName: "
                      "the row names no server", "missing_field")
    elif not server_id:
        cells.problem(sheet.name("ExternalId") if external else sheet.name("HostName"),
                      f"no usable server_id in {shown(key)}", "invalid_value")
    data["server_id"] = server_id or None
    cells.source("server_id", sheet.name("ExternalId") if external else (
        sheet.name("ServerId") if text(g("ServerId")) else sheet.name("HostName")))
    data["hostname"] = host or vm_name or key
    cells.source("hostname", sheet.name("HostName") if host else sheet.name("VMware.VMName"))

    addresses = cells.addresses(g("IPAddress"), sheet.name("IPAddress"))
    data["ip_addresses"] = list(dict.fromkeys(addresses))
    cells.source("ip_addresses", sheet.name("IPAddress"))
    if not addresses and not any(p.field == sheet.name("IPAddress") for p in cells.problems):
        cells.problem(sheet.name("IPAddress"), "empty: the server's IP addresses are needed "
                      "to plan its network", "missing_field")

    hardware: dict[str, Any] = {}
    counts = {}
    for field, name in (("CPU.NumberOfLogicalCores", "logical_cores"),
                        ("CPU.NumberOfCores", "cores"),
                        ("CPU.NumberOfProcessors", "processors")):
        value = cells.integer(g(field), sheet.name(field))
        if value is not None:
            counts[name] = value
    for name in ("logical_cores", "cores", "processors"):
        if name in counts:
            hardware["cpu_cores"] = counts[name]
            cells.source("hardware.cpu_cores", sheet.name(
                {"logical_cores": "CPU.NumberOfLogicalCores", "cores": "CPU.NumberOfCores",
                 "processors": "CPU.NumberOfProcessors"}[name]))
            break
    else:
        if not any(p.field.startswith("CPU.Number") for p in cells.problems):
            cells.problem("CPU.NumberOfLogicalCores", "empty, and so are CPU.NumberOfCores "
                          "and CPU.NumberOfProcessors", "missing_field")
    extras = {"logical_cores": "cpu_logical_cores", "cores": "cpu_physical_cores",
              "processors": "cpu_sockets"}  # never "cpu_cores": that is the vCPU count
    hardware.update({extras[k]: v for k, v in counts.items()})
    total_mb = cells.number(g("RAM.TotalSizeInMB"), sheet.name("RAM.TotalSizeInMB"))
    if total_mb is not None:
        hardware["ram_gb"] = mib_to_gb(total_mb)
    elif blank(g("RAM.TotalSizeInMB")):
        cells.problem(sheet.name("RAM.TotalSizeInMB"), "empty", "missing_field")
    cells.source("hardware.ram_gb", sheet.name("RAM.TotalSizeInMB"))
    if text(g("VMware.MoRefId")):
        hardware["virtualization"] = "vmware"
    data["hardware"] = hardware

    section = parse_os(text(g("OS.Name")), text(g("OS.Version")))
    if section is None:
        cells.problem(sheet.name("OS.Name"), "empty: the operating system is unknown",
                      "missing_field")
        section = {"type": ""}
    data["os"] = section
    cells.source("os", sheet.name("OS.Name"))

    baseline, notes = _baseline(sheet, row, cells, total_mb)
    data["performance_baseline"] = baseline
    for path, column in (("performance_baseline.cpu_avg_utilization_pct", "CPU.UsagePct.Avg"),
                         ("performance_baseline.cpu_peak_utilization_pct", "CPU.UsagePct.Max"),
                         ("performance_baseline.memory_avg_utilization_pct",
                          "RAM.UsedSizeInMB.Avg"),
                         ("performance_baseline.memory_peak_utilization_pct",
                          "RAM.UsedSizeInMB.Max")):
        cells.source(path, sheet.name(column))

    apps = [a.strip() for a in (text(g("Applications")) or "").split(",") if a.strip()]
    data["applications"] = [{"name": a} for a in dict.fromkeys(apps)]
    cells.source("applications", sheet.name("Applications"))
    data["network_dependencies"] = []
    tags: dict[str, str] = {}
    for i, app in enumerate(dict.fromkeys(apps)):
        tags["application" if i == 0 else f"application_{i + 1}"] = app
    wave = text(g("ApplicationWave"))
    if wave:
        tags["wave"] = wave
    for item in (text(g("Tags")) or "").split(","):
        if not item.strip():
            continue
        name, sep, value = item.partition(":")
        if not sep or not name.strip():
            notes.append(f"Tags: {shown(item.strip())} is not name:value: left out")
            continue
        tags[name.strip()] = value.strip()
    data["tags"] = tags
    identifiers = {k: text(g(f)) for k, f in (("external_id", "ExternalId"),
                                               ("server_id", "ServerId"),
                                               ("smbios_id", "SMBiosId"),
                                               ("vmware_moref_id", "VMware.MoRefId"),
                                               ("vmware_vcenter_id", "VMware.VCenterId"),
                                               ("vmware_vm_name", "VMware.VMName"))
                   if text(g(f))}
    macs = [m.strip() for m in (text(g("MACAddress")) or "").split(",") if m.strip()]
    if macs:
        identifiers["mac_addresses"] = macs  # type: ignore[assignment]
    data["identifiers"] = identifiers
    data["discovery"] = {"source": TOOL, "file": Path(file).name, "row": row.number}
    for message in notes:
        yield LoadNote(file, label, "(row)", f"row {row.number}: {message}", "import_note")
    yield RawRecord(origin, data, tuple(cells.problems), tuple(cells.columns.items()))


def _baseline(sheet: _Sheet, row: Row, cells: Cells,
              total_mb: float | None) -> tuple[dict[str, Any] | None, list[str]]:
    """``performance_baseline`` from the utilisation columns, or None when they are empty."""
    notes: list[str] = []

    def num(field: str) -> float | None:
        return cells.number(sheet.get(row, field), sheet.name(field))

    cpu_avg, cpu_max = num("CPU.UsagePct.Avg"), num("CPU.UsagePct.Max")
    ram_avg, ram_max = num("RAM.UsedSizeInMB.Avg"), num("RAM.UsedSizeInMB.Max")
    rates = {f: num(f) for f in FIELDS if f.startswith(("Disk", "Network"))}
    if cpu_avg is None and ram_avg is None:
        if any(v is not None for v in (cpu_max, ram_max, *rates.values())):
            notes.append("maximum or rate columns without CPU.UsagePct.Avg and "
                         "RAM.UsedSizeInMB.Avg: utilisation left out (the averages are needed)")
        return None, notes
    if cpu_avg is None or ram_avg is None or not total_mb:
        given, missing = (("CPU.UsagePct.Avg", "RAM.UsedSizeInMB.Avg") if ram_avg is None
                          else ("RAM.UsedSizeInMB.Avg", "CPU.UsagePct.Avg"))
        if ram_avg is not None and cpu_avg is not None:
            given, missing = "RAM.UsedSizeInMB.Avg", "RAM.TotalSizeInMB"
        if blank(sheet.get(row, missing)):  # a bad cell is reported as such, not noted
            notes.append(f"{given} without {missing}: utilisation left out (both are needed)")
        return None, notes
    for field, used in (("RAM.UsedSizeInMB.Avg", ram_avg), ("RAM.UsedSizeInMB.Max", ram_max)):
        if used is not None and used > total_mb:
            cells.problem(sheet.name(field), f"{used:g} MB used is more than "
                          f"{sheet.name('RAM.TotalSizeInMB')} ({total_mb:g})", "invalid_value")
    baseline: dict[str, Any] = {
        "cpu_avg_utilization_pct": cpu_avg,
        "memory_avg_utilization_pct": _pct_of(ram_avg, total_mb),
    }
    if cpu_max is not None:
        baseline["cpu_peak_utilization_pct"] = cpu_max
    if ram_max is not None:
        baseline["memory_peak_utilization_pct"] = _pct_of(ram_max, total_mb)

    def both(a: str, b: str) -> float | None:
        values = [v for v in (rates.get(a), rates.get(b)) if v is not None]
        return sum(values) if values else None

    iops = both("DiskReadsOpsPerSecond.Avg", "DiskWritesOpsPerSecond.Avg")
    if iops is not None:
        baseline["disk_iops_avg"] = round(iops, 2)
    for key, field in (("disk_read_mbps", "DiskReadsPerSecondInKB.Avg"),
                       ("disk_write_mbps", "DiskWritesPerSecondInKB.Avg")):
        if rates.get(field) is not None:
            baseline[key] = round(rates[field] * _KB / 1e6, 3)  # type: ignore[operator]
    network = both("NetworkReadsPerSecondInKB.Avg", "NetworkWritesPerSecondInKB.Avg")
    if network is not None:
        baseline["network_throughput_mbps"] = round(network * _KB * 8 / 1e6, 3)
    return baseline, notes
