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
* text is UTF-8 (a leading byte-order mark is accepted) or UTF-16 with a byte-order
  mark (what Windows PowerShell 5.1 writes); anything else is refused naming the byte;
* exports of other discovery tools (``.xlsx`` workbooks and ``.csv`` files), recognised
  by their column headers and turned into records by ``inventory.importers``: an RVTools
  export (vInfo, vDisk, vNetwork) and the AWS Migration Hub / Application Discovery
  Service import template. Their records carry the sheet and row they came from, and
  what the importer noticed (a skipped template, a powered-off VM) as ``LoadNote`` items.

What is strict JSON's business is judged per record, never by dropping a file: a key
that appears twice in one object (``json`` and msgspec silently keep the last one),
``NaN``/``Infinity`` literals and numbers beyond a 64-bit float, and nesting deeper than
``MAX_DEPTH`` levels each become a ``SourceProblem`` of the record they sit in, naming
the field path, so validation quarantines that record and loads the ones beside it.
Duplicate keys are refused rather than "last one wins": which value the agent meant
cannot be known, as with two records sharing a server_id. Only a document the parser
cannot finish at all (truncated, or nested past the interpreter's recursion limit) is a
``ParseError`` for the whole file (or JSON Lines line).
"""

from __future__ import annotations

import gc
import json
import math
import re
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
RECORD_FIELD = "(record)"

#: Records nested deeper than this are refused: no discovery field needs more than a
#: handful of levels, and deeper data breaks every recursive consumer downstream.
MAX_DEPTH = 64
#: Problems listed per record before "... and N more" (a list of 10,000 NaNs).
MAX_PROBLEMS = 20
#: Integers longer than this are refused (Python refuses to parse >4300 digits anyway).
MAX_INT_DIGITS = 400

_decoder = msgspec.json.Decoder()
_encoder = msgspec.json.Encoder()
# every key ends with a quote, optional blanks and a colon; strings may also hold '":',
# so the count is an upper bound of the keys, which is all the fast path needs
_KEY_END = re.compile(rb'"[ \t\r\n]*:')
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
# a \uD800-\uDFFF escape: half of a pair (fine) or an unpaired one (not Unicode text)
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89abcdefABCDEF]")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


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


class DocumentTooDeep(InputError):
    """The parser gave up on nesting (past the interpreter's recursion limit)."""


@dataclass(slots=True)
class _Decoded:
    """A parsed JSON document and what the strict re-parse found (when one was needed)."""

    data: Any
    duplicates: dict[int, list[str]] | None = None  # id(dict) -> keys seen twice
    strict: bool = False  # parsed by the strict path: walk the records for problems


def _text_of(raw: bytes) -> str:
    """UTF-8 (with or without a byte-order mark) or UTF-16 with one; raises otherwise."""
    if raw.startswith(_UTF16_BOMS):
        return raw.decode("utf-16")
    return raw.decode("utf-8-sig")


def _normalise(raw: bytes) -> bytes:
    """UTF-8 bytes without a byte-order mark (UTF-16 with a BOM re-encoded)."""
    if raw.startswith(_UTF16_BOMS):
        try:
            return raw.decode("utf-16").encode("utf-8")
        except UnicodeDecodeError:
            return raw  # reported by _decode as not UTF-8 text
    return raw.removeprefix(b"\xef\xbb\xbf")


def _parse_int(text: str) -> int | float:
    return int(text) if len(text.lstrip("-")) <= MAX_INT_DIGITS else math.inf


def _strict_loads(raw: bytes) -> _Decoded:
    """The stdlib parser, noting duplicate keys; NaN/Infinity and huge numbers arrive as
    non-finite floats for the record walk to report."""
    duplicates: dict[int, list[str]] = {}

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        obj = dict(items)
        if len(obj) != len(items):
            seen: set[str] = set()
            twice: list[str] = []
            for key, _ in items:
                if key in seen and key not in twice:
                    twice.append(key)
                seen.add(key)
            duplicates[id(obj)] = twice
        return obj

    try:
        data = json.loads(_text_of(raw), object_pairs_hook=pairs, parse_int=_parse_int)
    except RecursionError as exc:
        raise DocumentTooDeep("nested too deeply for the parser") from exc
    return _Decoded(data, duplicates, strict=True)


def _too_deep(value: Any, limit: int) -> bool:
    """Whether ``value`` nests deeper than ``limit`` (iterative: no recursion limit)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        children = node.values() if type(node) is dict else node
        for child in children:
            if type(child) is dict or type(child) is list:
                stack.append((child, depth + 1))
    return False


def _key_count_bound(raw: bytes) -> int:
    """At least the number of keys written in ``raw`` (plus any '":' inside strings)."""
    if b'"\t' in raw or b'"\n' in raw or b'"\r' in raw:
        return len(_KEY_END.findall(raw))
    return raw.count(b'":') + raw.count(b'" :')


def _decode(raw: bytes, *, check_keys: bool = True) -> _Decoded:
    """Parse JSON quickly; fall back to the strict stdlib path when needed.

    msgspec parses valid documents fast. The stdlib parser runs instead when msgspec
    refuses the text (for line/column of real syntax errors, and for NaN or huge numbers
    the stdlib accepts), when the document may nest deeper than ``MAX_DEPTH``, and when
    it may hide a duplicate key: the keys msgspec kept (counted in its compact
    re-encoding, where every key ends in '":') are fewer than the key ends in the text.
    Both counts include '":' inside strings, so they agree on a document without
    duplicates; C-speed counting keeps this cheap on 100,000-record estates.
    ``check_keys=False`` leaves that check to the caller (JSON Lines: once per file).
    Raises ``json.JSONDecodeError`` (with line and column), ``UnicodeDecodeError`` or
    ``DocumentTooDeep``.
    """
    try:
        data = _decoder.decode(raw)
    except RecursionError as exc:
        raise DocumentTooDeep("nested too deeply for the parser") from exc
    except msgspec.DecodeError:
        return _strict_loads(raw)
    if type(data) is not dict and type(data) is not list:
        return _Decoded(data)
    if check_keys and _key_count_bound(raw) > _encoder.encode(data).count(b'":'):
        return _strict_loads(raw)
    if b"\\u" in raw and _SURROGATE_ESCAPE.search(raw):  # may hold an unpaired one
        return _strict_loads(raw)
    containers = raw.count(b"{") + raw.count(b"[")
    if containers > MAX_DEPTH and _too_deep(data, MAX_DEPTH + 2):  # + estate wrapper, list
        return _strict_loads(raw)
    return _Decoded(data)


def _key_path(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _non_finite(value: float) -> str:
    if math.isnan(value):
        return "NaN is not a JSON number (use null for a missing value)"
    return "number out of range (beyond a 64-bit float); use a realistic value"


_LONE_MESSAGE = ("text holds an unpaired surrogate escape (\\ud800-\\udfff), which is not "
                 "Unicode; the agent mis-encoded it (shown here as \ufffd)")


def record_problems(data: Any, duplicates: dict[int, list[str]] | None
                    ) -> tuple[Any, tuple[SourceProblem, ...]]:
    """What strict JSON refuses inside one record, with field paths, and a safe copy.

    Refused: a key twice in one object, NaN/Infinity and numbers beyond a float, text
    with an unpaired surrogate escape (it cannot be written to a file or a terminal),
    and nesting deeper than ``MAX_DEPTH``.

    The copy cuts nesting at ``MAX_DEPTH`` (so a quarantine file can be written); values
    are otherwise kept as read, so the quarantined record shows what arrived.
    """
    problems: list[SourceProblem] = []
    dups = duplicates or {}

    def visit(node: Any, path: str, depth: int) -> Any:
        kind = type(node)
        if kind is float:
            if not math.isfinite(node):
                problems.append(SourceProblem(path or "(record)", _non_finite(node),
                                              "invalid_value"))
            return node
        if kind is str:
            if _LONE_SURROGATE.search(node):
                problems.append(SourceProblem(path or "(record)", _LONE_MESSAGE,
                                              "invalid_value"))
                return _LONE_SURROGATE.sub("\ufffd", node)
            return node
        if kind is not dict and kind is not list:
            return node
        if depth > MAX_DEPTH:
            problems.append(SourceProblem(path or "(record)",
                                          f"nested deeper than {MAX_DEPTH} levels",
                                          "invalid_value"))
            return f"(cut: nested deeper than {MAX_DEPTH} levels)"
        if kind is list:
            return [visit(v, f"{path}[{i}]", depth + 1) for i, v in enumerate(node)]
        for key in dups.get(id(node), ()):
            problems.append(SourceProblem(
                _key_path(path, key),
                f"key {key!r} appears more than once in this object; which value is meant "
                "cannot be known (remove the extra copies)", "duplicate_key"))
        out: dict[str, Any] = {}
        for key, value in node.items():
            if _LONE_SURROGATE.search(key):
                key = _LONE_SURROGATE.sub("\ufffd", key)
                problems.append(SourceProblem(_key_path(path, key), "the key: " + _LONE_MESSAGE,
                                              "invalid_value"))
            out[key] = visit(value, _key_path(path, key), depth + 1)
        return out

    copy = visit(data, "", 1)
    if len(problems) > MAX_PROBLEMS:
        more = len(problems) - MAX_PROBLEMS
        problems = [*problems[:MAX_PROBLEMS], SourceProblem(
            "(record)", f"... and {more} more problems of the same kinds", "invalid_value")]
    return copy, tuple(problems)


def _raw_record(origin: Origin, data: Any, decoded: _Decoded) -> RawRecord:
    if not decoded.strict:
        return RawRecord(origin, data)
    copy, problems = record_problems(data, decoded.duplicates)
    return RawRecord(origin, copy if problems else data, problems)


def _not_utf8(exc: UnicodeDecodeError, raw: bytes) -> str:
    hint = ("; it looks like UTF-16 without a byte-order mark" if b"\x00" in raw[:4096]
            else "; save the file as UTF-8")
    return f"not UTF-8 text at byte {exc.start}: {exc.reason}{hint}"


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
    raw = _normalise(_read_bytes(path))
    if path.suffix.lower() in JSONL_SUFFIXES:
        yield from _iter_lines(name, raw)
        return
    if not raw.strip():
        yield ParseError(name, None, None, "empty file: expected a JSON record or list")
        return
    try:
        decoded = _decode(raw)
    except json.JSONDecodeError as exc:
        yield _json_error(name, exc)
        return
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        yield ParseError(name, line, None, _not_utf8(exc, raw))
        return
    except DocumentTooDeep as exc:
        yield ParseError(name, None, None, f"malformed JSON: {exc} (a record may nest at most "
                         f"{MAX_DEPTH} levels)")
        return
    data = decoded.data
    if isinstance(data, dict) and "server_id" not in data and isinstance(
        data.get("servers"), list
    ):
        twice = (decoded.duplicates or {}).get(id(data))
        if twice:
            yield ParseError(name, None, None, "malformed estate file: key(s) "
                             f"{', '.join(repr(k) for k in twice)} appear more than once at "
                             "the top level; which one is meant cannot be known")
            return
        data = data["servers"]  # an exported estate: {"name": ..., "servers": [...]}
    if isinstance(data, list):
        if not data:
            yield LoadNote(name, "(file)", RECORD_FIELD, "the file holds no records "
                           "(an empty list)", "import_note")
        for index, item in enumerate(data):
            yield _raw_record(Origin(name, index), item, decoded)
    else:
        yield _raw_record(Origin(name, 0), data, decoded)


def _line_item(name: str, lineno: int, line: bytes, ordinal: int,
               parse: Any) -> RawRecord | ParseError:
    """One JSON Lines line as a record, or a parse error naming its line."""
    try:
        decoded = parse(line)
    except json.JSONDecodeError as exc:
        err = _json_error(name, exc, line_offset=lineno - 1)
        return ParseError(err.file, err.line, err.column, err.message, text=_shown(line))
    except UnicodeDecodeError as exc:
        return ParseError(name, lineno, exc.start + 1, _not_utf8(exc, line), text=_shown(line))
    except DocumentTooDeep as exc:
        return ParseError(name, lineno, None, f"malformed JSON: {exc} (a record may nest at "
                          f"most {MAX_DEPTH} levels)", text=_shown(line))
    return _raw_record(Origin(name, ordinal, lineno), decoded.data, decoded)


def _shown(line: bytes) -> str:
    return line[:2000].decode("utf-8", errors="replace")


def _iter_lines(name: str, raw: bytes) -> Iterator[RawRecord | ParseError]:
    """The records of a JSON Lines file, one per non-blank line.

    The duplicate-key check runs once for the whole file (key ends in the text of the
    fast-parsed lines against the keys msgspec kept for them); only when the file may
    hide one are its lines checked, and re-parsed strictly, one by one.
    """
    items: list[RawRecord | ParseError] = []
    lines: list[bytes] = []
    ordinal = 0
    for lineno, line in enumerate(raw.splitlines(), start=1):
        if not line.strip():
            continue
        items.append(_line_item(name, lineno, line, ordinal,
                                lambda text: _decode(text, check_keys=False)))
        lines.append(line)
        ordinal += 1
    fast = [i for i, item in enumerate(items) if isinstance(item, RawRecord)
            and not item.problems and type(item.data) in (dict, list)]
    if fast:
        kept = _encoder.encode([items[i].data for i in fast]).count(b'":')
        if _key_count_bound(b",".join(lines[i] for i in fast)) > kept:
            for i in fast:
                record = items[i]
                assert isinstance(record, RawRecord)
                if _key_count_bound(lines[i]) > _encoder.encode(record.data).count(b'":'):
                    items[i] = _line_item(name, record.origin.line or 0, lines[i],
                                          record.origin.index, _strict_loads)
    yield from items


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
