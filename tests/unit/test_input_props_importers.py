"""No discovery export crashes validation: properties over whole files, bytes and all.

``test_inventory_importers.py`` already drives the importers with arbitrary *cells*
(``import_tabs``/``import_table``). These properties start one step earlier, from the
bytes of the files a user drops in a folder: RVTools CSV tabs and workbooks and the
Migration Hub import CSV, re-encoded (UTF-16, Latin-1, UTF-8 with BOM), truncated at
any byte, or carrying huge values (1e308, 10**30, thousands of digits, Infinity, NaN).
Whatever arrives, ``validate`` ends in a report: each row is a record, a skipped row or
a quarantine naming file, row and column; a broken file is one quarantine naming it;
the valid JSON record beside the export still loads.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openpyxl import Workbook

from migrationbox.inventory.validation import Reason, validate_inventory

SETTINGS = settings(max_examples=40, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])

VINFO = ["VM", "Powerstate", "Template", "DNS Name", "CPUs", "Memory",
         "Total disk capacity MiB", "Primary IP Address", "OS according to the configuration file",
         "VM UUID"]
HUB = ["ExternalId", "HostName", "IPAddress", "CPU.NumberOfProcessors", "RAM.TotalSizeInMB",
       "OS.Name", "OS.Version", "CPU.UsagePct.Avg", "RAM.UsedSizeInMB.Avg"]

HUGE = st.sampled_from(["1e308", "-1e308", "1e309", "Infinity", "NaN", "-0", "1" + "0" * 30,
                        "9" * 5000, "18446744073709551616", "1,024", "4,5", "0x10", "",
                        "\u0661\u0662", "caf\u00e9", "\u00e9\u00e8" * 3000, "\x00"])


def vinfo_row(i: int) -> list[str]:
    return [f"vm-{i:02d}", "poweredOn", "False", f"vm-{i:02d}.corp.example.com", "2", "4096",
            "40960", f"10.9.0.{i + 1}", "Red Hat Enterprise Linux 8 (64-bit)", f"uuid-{i}"]


def hub_row(i: int) -> list[str]:
    return [f"x-{i}", f"x{i}.example.com", f"10.8.0.{i + 1}", "2", "4096", "Ubuntu", "22.04",
            "20", "1024"]


@st.composite
def export(draw: st.DrawFn) -> tuple[str, bytes, int]:
    """(file name, bytes, number of data rows) of a hostile RVTools or Migration Hub CSV."""
    kind = draw(st.sampled_from(["rvtools", "hub"]))
    header, make = (VINFO, vinfo_row) if kind == "rvtools" else (HUB, hub_row)
    rows = [make(i) for i in range(draw(st.integers(1, 4)))]
    for _ in range(draw(st.integers(0, 4))):
        rows[draw(st.integers(0, len(rows) - 1))][draw(
            st.integers(1, len(header) - 1))] = draw(HUGE)
    out = io.StringIO()
    delimiter = draw(st.sampled_from([",", ";", "\t"]))
    csv.writer(out, delimiter=delimiter, lineterminator="\r\n").writerows([header, *rows])
    encoding = draw(st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "latin-1", "cp1252"]))
    raw = out.getvalue().encode(encoding, errors="replace")
    if draw(st.booleans()):
        raw = raw[:draw(st.integers(0, len(raw)))]
    name = "RVTools_tabvInfo.csv" if kind == "rvtools" else "migration_hub_import.csv"
    return name, raw, len(rows)


def _good_json(folder: Path) -> None:
    (folder / "good.json").write_text(json.dumps({
        "server_id": "good-1", "hostname": "good-1.corp.example.com",
        "ip_addresses": ["10.1.0.5"], "os": {"type": "Linux"},
        "hardware": {"cpu_cores": 2, "ram_gb": 4},
        "performance_baseline": {"cpu_avg_utilization_pct": 20,
                                 "memory_avg_utilization_pct": 40}}))


def _assert_named(report: Any) -> None:
    assert "good-1" in {s.server_id for s in report.valid}
    for item in report.quarantined:
        assert item.file and item.record and item.issues
        assert all(i.field and i.message for i in item.issues)
    for line in report.issue_lines():
        assert len(line) < 2000, "a cell was quoted whole"  # messages cut long values
    json.dumps(report.to_dict())


@SETTINGS
@given(made=export())
def test_any_export_csv_ends_in_a_report_and_the_json_beside_it_loads(
        tmp_path_factory: Any, made: tuple[str, bytes, int]) -> None:
    name, raw, rows = made
    folder = tmp_path_factory.mktemp("estate")
    _good_json(folder)
    (folder / name).write_bytes(raw)
    report = validate_inventory(folder, unknown_dependencies="ignore")
    _assert_named(report)
    from_export = [s for s in report.valid if s.server_id != "good-1"]
    rows_seen = len(from_export) + len([q for q in report.quarantined
                                        if q.file.endswith(name) and q.part is not None])
    skipped = [w for w in report.warnings if w.reason is Reason.skipped_record]
    assert rows_seen + len(skipped) <= rows  # never more records than rows


@st.composite
def workbook_bytes(draw: st.DrawFn) -> bytes:
    book = Workbook()
    sheet = book.active
    sheet.title = "vInfo"
    sheet.append(VINFO)
    for i in range(draw(st.integers(1, 3))):
        row: list[Any] = vinfo_row(i)
        row[4], row[5] = 2, 4096
        if draw(st.booleans()):
            row[draw(st.integers(1, len(row) - 1))] = draw(st.one_of(
                HUGE.filter(lambda v: "\x00" not in v),  # a workbook cannot hold NUL
                st.sampled_from([10**30, 1e308, float("inf"), -(2**70)])))
        sheet.append(row)
    out = io.BytesIO()
    book.save(out)
    raw = out.getvalue()
    cut = draw(st.sampled_from(["whole", "truncated", "flipped"]))
    if cut == "truncated":
        raw = raw[:draw(st.integers(0, len(raw) - 1))]
    elif cut == "flipped":
        at = draw(st.integers(0, len(raw) - 1))
        raw = raw[:at] + bytes([raw[at] ^ 0xFF]) + raw[at + 1:]
    return raw


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(raw=workbook_bytes())
def test_any_workbook_bytes_end_in_a_report_and_the_json_beside_it_loads(
        tmp_path_factory: Any, raw: bytes) -> None:
    folder = tmp_path_factory.mktemp("estate")
    _good_json(folder)
    (folder / "RVTools_export.xlsx").write_bytes(raw)
    report = validate_inventory(folder, unknown_dependencies="ignore")
    _assert_named(report)


def test_huge_numbers_in_cells_are_quarantined_naming_the_column(tmp_path: Path) -> None:
    rows = [vinfo_row(0), vinfo_row(1), vinfo_row(2)]
    rows[0][4] = "9" * 5000  # CPUs
    rows[1][5] = "1e309"  # Memory
    out = io.StringIO()
    csv.writer(out).writerows([VINFO, *rows])
    (tmp_path / "RVTools_tabvInfo.csv").write_text(out.getvalue())
    report = validate_inventory(tmp_path, unknown_dependencies="ignore")
    assert [s.server_id for s in report.valid] == ["vm-02"]
    fields = {(q.line, i.field.split(" ")[0]) for q in report.quarantined for i in q.issues}
    assert (2, "CPUs") in fields and (3, "Memory") in fields
    assert all(len(line) < 300 for line in report.issue_lines())
