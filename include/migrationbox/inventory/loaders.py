"""Read discovery records from disk without judging them.

Loading and validating are separate steps so that one malformed file cannot hide the
good records beside it: the loader returns every record it could parse, each tagged
with where it came from, plus a list of files (or JSON Lines lines) it could not parse,
with line and column. Validation (``validation.py``) then decides what is acceptable.

Accepted inputs:

* a folder: every ``*.json``, ``*.jsonl`` and ``*.ndjson`` file below it, in sorted
  order; hidden files/folders and folders holding a ``.migrationbox-quarantine``
  marker (written by ``migrationbox validate --quarantine-dir``) are skipped;
* a ``.json`` file holding one record, a list of records, or an object with a
  ``servers`` list (an exported estate);
* a JSON Lines file (``.jsonl`` / ``.ndjson``): one record per non-blank line;
* exports of other discovery tools (``.xlsx`` workbooks and ``.csv`` files), recognised
  by their column headers and turned into records by ``inventory.importers``: an RVTools
  export (vInfo, vDisk, vNetwork) and the AWS Migration Hub / Application Discovery
  Service import template. Their records carry the sheet and row they came from, and
  what the importer noticed (a skipped template, a powered-off VM) as ``LoadNote`` items.
"""

from __future__ import annotations

import gc
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from migrationbox.errors import InputError

JSON_SUFFIXES = frozenset({".json"})
JSONL_SUFFIXES = frozenset({".jsonl", ".ndjson"})
IMPORT_SUFFIXES = frozenset({".xlsx", ".csv"})
QUARANTINE_MARKER = ".migrationbox-quarantine"

_decoder = msgspec.json.Decoder()


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while building many objects.

    Building 100,000 records allocates millions of containers; CPython's generational
    GC then runs over and over on objects that are all still alive, which makes bulk
    loading super-linear. Reference counting still frees garbage meanwhile.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class UnreadablePath(InputError, OSError):
    """The input path does not exist, cannot be read, or holds no record files."""


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a record came from: the file and its position inside it.

    ``index`` is the position of the record in the file (0 for a single-record file,
    the list index for a list file, the record's ordinal for JSON Lines); ``line`` is the
    1-based line number for JSON Lines records and ``None`` otherwise. Imported records
    (spreadsheets, CSV) also name the ``part`` (sheet or tab, e.g. ``vInfo``) whose
    ``line`` is the row a spreadsheet shows, and a ``label`` such as ``VM 'web-03'``:
    the name the source tool gives the record, which is what its owner searches for.
    """

    file: str
    index: int
    line: int | None = None
    part: str | None = None
    label: str | None = None

    def __str__(self) -> str:
        if self.part is not None:  # "" for a CSV file, which has no sheets
            return " ".join(x for x in (self.file, self.part, f"row {self.line}") if x)
        if self.line is not None:
            return f"{self.file}:{self.line}"
        return f"{self.file}#{self.index}"


@dataclass(frozen=True, slots=True)
class SourceProblem:
    """A cell an importer could not turn into a record field (``CPUs: not a number``).

    ``field`` names the source column (with its sheet and row when the cell lies in
    another sheet than the record's own row); ``reason`` is a ``validation.Reason``
    value. Validation quarantines the record with these next to its schema issues.
    """

    field: str
    message: str
    reason: str = "wrong_type"


@dataclass(frozen=True, slots=True)
class LoadNote:
    """Something an importer decided that a person should know; not an error.

    A template that was skipped, a powered-off VM imported, a missing optional tab,
    a file read as Windows-1252. ``reason`` is a ``validation.Reason`` value.
    """

    file: str
    record: str
    field: str
    message: str
    reason: str = "import_note"


@dataclass(frozen=True, slots=True)
class RawRecord:
    """A parsed but unvalidated record (any JSON value) with its origin.

    Imported records may carry ``problems`` found while reading their cells, and
    ``columns``: which source column each record field came from (pairs of field path
    and column), so that schema issues name the column a person can fix.
    """

    origin: Origin
    data: Any
    problems: tuple[SourceProblem, ...] = ()
    columns: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class ParseError:
    """Text that is not JSON: the file (and line/column) and the parser's message."""

    file: str
    line: int | None
    column: int | None
    message: str
    text: str | None = None  # the offending JSON Lines line, kept for quarantine
    kind: str = "malformed_json"  # or "unreadable_file", "unrecognised_file"

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        return f"{where}: {self.message}"


@dataclass(slots=True)
class LoadResult:
    records: list[RawRecord]
    errors: list[ParseError]
    files: list[str]
    notes: list[LoadNote] = field(default_factory=list)


def _decode(text: bytes) -> Any:
    """Parse JSON quickly; on failure re-parse with the stdlib to get line/column.

    Raises ``json.JSONDecodeError`` (with line and column) or ``UnicodeDecodeError``.
    """
    try:
        return _decoder.decode(text)
    except msgspec.DecodeError:
        decoded = text.decode("utf-8")  # raises UnicodeDecodeError for non-UTF-8 input
        return json.loads(decoded)  # raises JSONDecodeError with line/column


def _json_error(file: str, exc: json.JSONDecodeError, line_offset: int = 0) -> ParseError:
    return ParseError(
        file=file,
        line=exc.lineno + line_offset,
        column=exc.colno,
        message=f"malformed JSON: {exc.msg}",
    )


def record_files(path: Path) -> list[Path]:
    """The record files a path stands for, in a stable order."""
    if not path.exists():
        raise UnreadablePath(f"{path}: no such file or folder")
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise UnreadablePath(f"{path}: not a regular file or folder")
    found: list[Path] = []
    skipped_dirs: set[Path] = set()
    for candidate in sorted(path.rglob("*")):
        rel = candidate.relative_to(path)
        if any(part.startswith(".") for part in rel.parts):
            continue
        if candidate.is_dir():
            if (candidate / QUARANTINE_MARKER).exists():
                skipped_dirs.add(candidate)
            continue
        if any(parent in skipped_dirs for parent in candidate.parents):
            continue
        if candidate.suffix.lower() in JSON_SUFFIXES | JSONL_SUFFIXES | IMPORT_SUFFIXES:
            found.append(candidate)
    if (path / QUARANTINE_MARKER).exists():
        raise UnreadablePath(f"{path}: is a quarantine folder, not an estate")
    return found


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise UnreadablePath(f"{path}: {exc.strerror or exc}") from exc


def iter_file(path: Path) -> Iterator[RawRecord | ParseError | LoadNote]:
    """Yield the records of one file, or parse errors naming file and line.

    Spreadsheets and CSV files go to ``inventory.importers`` (which also yields
    ``LoadNote`` items); a file none of them recognises is a ``ParseError``.
    """
    name = str(path)
    if path.suffix.lower() in IMPORT_SUFFIXES:
        from migrationbox.inventory.importers import iter_import

        yield from iter_import(path)
        return
    raw = _read_bytes(path)
    if path.suffix.lower() in JSONL_SUFFIXES:
        ordinal = 0
        for lineno, line in enumerate(raw.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                data = _decode(line)
            except json.JSONDecodeError as exc:
                err = _json_error(name, exc, line_offset=lineno - 1)
                yield ParseError(err.file, err.line, err.column, err.message,
                                 text=line.decode("utf-8", errors="replace"))
            except UnicodeDecodeError as exc:
                yield ParseError(name, lineno, exc.start + 1, f"not UTF-8 text: {exc.reason}",
                                 text=line.decode("utf-8", errors="replace"))
            else:
                yield RawRecord(Origin(name, ordinal, lineno), data)
            ordinal += 1
        return
    if not raw.strip():
        yield ParseError(name, None, None, "empty file: expected a JSON record or list")
        return
    try:
        data = _decode(raw)
    except json.JSONDecodeError as exc:
        yield _json_error(name, exc)
        return
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        yield ParseError(name, line, None, f"not UTF-8 text at byte {exc.start}: {exc.reason}")
        return
    if isinstance(data, dict) and "server_id" not in data and isinstance(
        data.get("servers"), list
    ):
        data = data["servers"]  # an exported estate: {"name": ..., "servers": [...]}
    if isinstance(data, list):
        for index, item in enumerate(data):
            yield RawRecord(Origin(name, index), item)
    else:
        yield RawRecord(Origin(name, 0), data)


def iter_records(path: str | Path) -> Iterator[RawRecord | ParseError | LoadNote]:
    """Stream records and parse errors from a file or folder (see module docstring)."""
    for file in record_files(Path(path)):
        yield from iter_file(file)


def load_records(path: str | Path) -> LoadResult:
    """Load every record under ``path``; raises ``UnreadablePath`` if it cannot be read."""
    files = record_files(Path(path))
    if not files:
        raise UnreadablePath(f"{path}: no .json, .jsonl, .ndjson, .xlsx or .csv files found")
    records: list[RawRecord] = []
    errors: list[ParseError] = []
    notes: list[LoadNote] = []
    single = len(files) == 1 and files[0] == Path(path)
    with gc_paused():
        for file in files:
            try:
                items = list(iter_file(file))
            except UnreadablePath as exc:
                if single:
                    raise  # the path itself cannot be read
                # one unreadable file in a folder must not hide the others
                reason = str(exc).removeprefix(f"{file}: ")
                items = [ParseError(str(file), None, None, f"cannot read file: {reason}",
                                    kind="unreadable_file")]
            for item in items:
                if isinstance(item, RawRecord):
                    records.append(item)
                elif isinstance(item, LoadNote):
                    notes.append(item)
                else:
                    errors.append(item)
    return LoadResult(records=records, errors=errors, files=[str(f) for f in files], notes=notes)
