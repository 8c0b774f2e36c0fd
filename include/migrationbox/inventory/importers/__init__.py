"""Importers: other discovery tools' exports -> the same raw records as discovery JSON.

Each format has its own module (``rvtools``, ``migration_hub``); this module recognises
a file by its column headers (names vary: users rename exports) and hands it over. The
records come out as ``loaders.RawRecord``\\ s with their sheet, row and source columns,
so ``validation`` quarantines and reports them exactly like JSON records. Nothing here
raises for bad input: an unreadable or unrecognised file is a ``ParseError`` naming it.

RVTools CSV exports come as one file per tab (``RVTools_tabvInfo.csv``,
``RVTools_tabvDisk.csv``, ...). The vInfo file reads its vDisk and vNetwork siblings
from the same folder (paired by the file name with the tab name taken out, or, with a
single vInfo file in the folder, all of them); the sibling files then yield nothing of
their own.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from migrationbox.inventory.importers import migration_hub, rvtools
from migrationbox.inventory.importers.tables import (
    Table,
    TableError,
    header_of_csv,
    read_csv,
    read_workbook,
)
from migrationbox.inventory.loaders import LoadNote, ParseError, RawRecord

__all__ = ["classify", "iter_import"]

_EXPECTED = ("expected an RVTools export (vInfo tab: VM, Powerstate, CPUs, Memory, ...) or "
             "the AWS Migration Hub import template (ExternalId, HostName, IPAddress, "
             "CPU.NumberOfProcessors, RAM.TotalSizeInMB, ...)")


def classify(names: set[str]) -> str | None:
    """``vInfo`` / ``vDisk`` / ``vNetwork`` / ``migration-hub`` for a normalised header."""
    kind = rvtools.tab_kind(names)
    if kind:
        return kind
    if migration_hub.looks_like_template(names):
        return "migration-hub"
    return None


def _looks_like_header(names: set[str]) -> bool:
    return classify(names) is not None


def iter_import(path: Path) -> Iterator[RawRecord | ParseError | LoadNote]:
    """Records, notes and file-level errors of one .xlsx or .csv file."""
    if path.suffix.lower() == ".xlsx":
        yield from _workbook(path)
    else:
        yield from _csv(path)


def _unrecognised(path: Path, what: str) -> ParseError:
    return ParseError(str(path), None, None, f"not a recognised discovery export: {what}; "
                      f"{_EXPECTED}", kind="unrecognised_file")


def _columns(table: Table) -> str:
    shown = ", ".join(repr(c) for c in table.columns[:8])
    more = f", ... ({len(table.columns)} columns)" if len(table.columns) > 8 else ""
    return shown + more if shown else "no header row"


def _workbook(path: Path) -> Iterator[RawRecord | ParseError | LoadNote]:
    try:
        tables = read_workbook(path, _looks_like_header)
    except TableError as exc:
        yield ParseError(str(path), None, None, str(exc), kind="unreadable_file")
        return
    tabs: dict[str, Table] = {}
    hub: list[Table] = []
    for table in tables:
        kind = classify(table.normalised)
        if kind == "migration-hub":
            hub.append(table)
        elif kind and kind not in tabs:
            tabs[kind] = table
    if tabs:
        yield from rvtools.import_tabs(tabs, str(path))
    elif hub:
        for table in hub:
            yield from migration_hub.import_table(table, str(path))
    elif not tables or all(not t.columns for t in tables):
        yield _unrecognised(path, "the workbook is empty")
    else:
        sheets = "; ".join(f"sheet {t.name!r}: {_columns(t)}" for t in tables[:5])
        yield _unrecognised(path, f"no sheet has the columns of a known export ({sheets})")


def _tab_key(path: Path, kind: str) -> str:
    return path.name.lower().replace(kind.lower(), "")


def _csv(path: Path) -> Iterator[RawRecord | ParseError | LoadNote]:
    header = header_of_csv(path)
    kind = classify(header)
    if kind is None and {"serverid", "kind", "sourceuri"} <= header:
        yield LoadNote(str(path), "(file)", "(columns)",
                       "an endpoints file (for `migrationbox endpoints import`), not "
                       "discovery data: skipped", "skipped_record")
        return
    if kind is None:
        try:
            table = read_csv(path)
        except TableError as exc:
            yield ParseError(str(path), None, None, str(exc), kind="unreadable_file")
            return
        yield _unrecognised(path, f"columns {_columns(table)}")
        return
    if kind == "migration-hub":
        try:
            table = read_csv(path, _looks_like_header)
        except TableError as exc:
            yield ParseError(str(path), None, None, str(exc), kind="unreadable_file")
            return
        yield from migration_hub.import_table(table, str(path))
        return
    siblings = _rvtools_siblings(path)
    if kind != rvtools.VINFO:
        if _partner(path, kind, siblings) is None:
            yield ParseError(str(path), None, None,
                             f"an RVTools {kind} tab with no vInfo tab beside it: vInfo lists "
                             "the VMs, export it too (RVTools_tabvInfo.csv)",
                             kind="unrecognised_file")
        return  # read together with its vInfo file
    tables: dict[str, Table] = {}
    try:
        tables[rvtools.VINFO] = read_csv(path, _looks_like_header)
    except TableError as exc:
        yield ParseError(str(path), None, None, str(exc), kind="unreadable_file")
        return
    for other, other_kind in siblings:
        if other_kind == rvtools.VINFO or other_kind in tables:
            continue
        if _partner(other, other_kind, siblings) != path:
            continue
        try:
            tables[other_kind] = read_csv(other, _looks_like_header)
        except TableError as exc:
            yield ParseError(str(other), None, None, str(exc), kind="unreadable_file")
    yield from rvtools.import_tabs(tables, str(path))


def _rvtools_siblings(path: Path) -> list[tuple[Path, str]]:
    found = []
    for other in sorted(path.parent.iterdir()):
        if other.suffix.lower() != ".csv" or other.name.startswith(".") or not other.is_file():
            continue
        kind = rvtools.tab_kind(header_of_csv(other))
        if kind:
            found.append((other, kind))
    return found


def _partner(path: Path, kind: str, siblings: list[tuple[Path, str]]) -> Path | None:
    """The vInfo file a vDisk/vNetwork CSV belongs with, if any."""
    infos = [p for p, k in siblings if k == rvtools.VINFO]
    key = _tab_key(path, kind)
    for info in infos:
        if _tab_key(info, rvtools.VINFO) == key:
            return info
    return infos[0] if len(infos) == 1 else None
