"""Registering an estate's endpoints: read a file, validate each record, store the good.

Formats (documented with examples in ``docs/endpoints.md`` and
``include/estates/endpoints.example.json`` / ``.csv``):

* JSON: ``{"estate": "E", "endpoints": [{...}, ...]}`` or a bare list of endpoints;
* CSV: one endpoint a row, columns ``server_id,kind,name,source_uri,target_uri`` and
  ``details.<key>`` columns (``details.ssh_conn_id``, ``details.conn_id``, ...); a
  ``details`` column may also hold a JSON object. Empty cells are left out.

As with discovery records, one bad record never stops the others: each problem is
attached to its record (index, line, server, field) and that record is quarantined. A
record naming a server the stored estate does not have is quarantined too. Registering
a server's endpoints replaces that server's endpoints (so a re-import is idempotent);
servers not in the file keep theirs.

No file content crashes an import. A problem inside one record (a number that is not
finite or has thousands of digits, a ``details`` cell that is not usable JSON, nesting
past ``MAX_DEPTH``, a lone surrogate escape or NUL character that no store can hold)
quarantines that record, naming its field. A problem that leaves the records
themselves unknown (not UTF-8 or UTF-16 text, not JSON, JSON nested past the parser's
limit, a CSV cell past the CSV field limit or a quote never closed) refuses the file
with an ``EndpointsFileError`` naming the file and line.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from migrationbox.endpoints.model import (
    KINDS,
    Endpoint,
    EndpointError,
    EndpointSpec,
    validation_problems,
)
from migrationbox.errors import InputError, NotFoundError

#: Quarantine reasons, as in inventory validation.
REASONS = ("invalid_value", "unknown_server", "duplicate_endpoint", "not_an_object")
#: Deepest nesting a record may have (as discovery files): endpoint details are flat maps.
MAX_DEPTH = 64
#: Longest integer read (Python's own int-from-text limit); longer ones are refused.
MAX_INT_DIGITS = 4300
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
_MAX_ISSUES = 10  # per record: the first few say enough, the rest would flood the report


@dataclass
class EndpointIssue:
    field: str
    message: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message, "reason": self.reason}


@dataclass
class RawEndpoint:
    """One record as read, with where it came from."""

    index: int
    data: Any
    line: int | None = None
    #: found while reading (a ``details`` cell that is not usable JSON): quarantines it
    problems: list[EndpointIssue] = field(default_factory=list)


@dataclass
class QuarantinedEndpoint:
    origin: str
    index: int
    line: int | None
    server_id: str
    issues: list[EndpointIssue]

    def location(self) -> str:
        return f"{self.origin}:{self.line}" if self.line is not None else \
            f"{self.origin}[{self.index}]"

    def to_dict(self) -> dict[str, Any]:
        return {"origin": self.origin, "index": self.index, "line": self.line,
                "server_id": self.server_id, "issues": [i.to_dict() for i in self.issues]}


@dataclass
class ImportReport:
    estate: str
    valid: list[Endpoint] = field(default_factory=list)
    quarantined: list[QuarantinedEndpoint] = field(default_factory=list)
    stored_servers: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.quarantined

    def summary(self) -> str:
        stored = f", stored for {len(self.stored_servers)} server(s)" if self.stored_servers \
            else ""
        return (f"estate {self.estate}: {len(self.valid)} endpoint(s) valid, "
                f"{len(self.quarantined)} quarantined{stored}")

    def issue_lines(self) -> list[str]:
        return [f"{q.location()}  server {q.server_id}  {i.field}: {i.message}"
                for q in self.quarantined for i in q.issues]

    def to_dict(self) -> dict[str, Any]:
        return {
            "estate": self.estate,
            "valid": len(self.valid),
            "stored_servers": self.stored_servers,
            "quarantined": [q.to_dict() for q in self.quarantined],
            "summary": self.summary(),
        }


class EndpointsFileError(InputError):
    """The endpoints file cannot be read at all (missing, not JSON/CSV, other estate)."""


# ----------------------------------------------------------------------------- reading


class _LongInt:
    """An integer written with more than ``MAX_INT_DIGITS`` digits, kept for the report
    (``int()`` of it raises ``ValueError``, which would otherwise lose the whole file)."""

    __slots__ = ("digits",)

    def __init__(self, digits: int) -> None:
        self.digits = digits


def _parse_int(text: str) -> int | _LongInt:
    digits = len(text.lstrip("-"))
    return int(text) if digits <= MAX_INT_DIGITS else _LongInt(digits)


def _loads(text: str) -> Any:
    """``json.loads`` keeping NaN, Infinity and long integers for the per-record check.
    Raises ``json.JSONDecodeError`` or ``RecursionError``."""
    return json.loads(text, parse_int=_parse_int)


def _printable(text: object) -> str:
    """``text`` safe to print and store (a JSON string may hold a lone surrogate)."""
    return str(text).encode("utf-8", "backslashreplace").decode("utf-8")


def _unstorable(text: str) -> str | None:
    if "\x00" in text:
        return "holds a NUL character, which a database text column cannot store"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "holds an unpaired surrogate escape (\\ud800-\\udfff), which is not Unicode"
    return None


def value_problems(data: Any) -> list[EndpointIssue]:
    """What in one record no rule of the model can check and no store can hold.

    Walks iteratively (no recursion limit): numbers that are not finite or too long,
    strings and keys with a lone surrogate or NUL, nesting past ``MAX_DEPTH``. Each
    problem names its field (``details.tables.2``); at most ``_MAX_ISSUES`` a record.
    """
    out: list[EndpointIssue] = []
    stack: list[tuple[Any, str, int]] = [(data, "", 0)]
    while stack and len(out) < _MAX_ISSUES:
        node, where, depth = stack.pop()
        name = where or "(record)"
        problem: str | None = None
        if isinstance(node, _LongInt):
            problem = f"an integer of {node.digits} digits (at most {MAX_INT_DIGITS})"
        elif isinstance(node, float) and not math.isfinite(node):
            problem = f"{node} is not a finite number"
        elif isinstance(node, str):
            problem = _unstorable(node)
        elif isinstance(node, (dict, list)):
            if depth >= MAX_DEPTH:  # named by its field, not 64 list indexes
                name = ".".join(where.split(".")[:2])
                problem = f"nested more than {MAX_DEPTH} levels deep"
            elif isinstance(node, dict):
                for key, value in reversed(node.items()):
                    key_text = _printable(key)
                    path = f"{where}.{key_text}" if where else key_text
                    key_problem = _unstorable(str(key))
                    if key_problem:
                        out.append(EndpointIssue(path, f"key {key_problem}", "invalid_value"))
                    stack.append((value, path, depth + 1))
            else:
                stack.extend((value, f"{where}.{i}" if where else str(i), depth + 1)
                             for i, value in reversed(list(enumerate(node))))
        if problem:
            out.append(EndpointIssue(name, problem, "invalid_value"))
    return out[:_MAX_ISSUES]


def _clean(row: Mapping[str, Any]) -> tuple[dict[str, Any], list[EndpointIssue]]:
    """A CSV row as an endpoint dict (``details.x`` columns folded, blanks left out) and
    the problems of cells that hold JSON the parser cannot take."""
    out: dict[str, Any] = {}
    details: dict[str, Any] = {}
    problems: list[EndpointIssue] = []
    for key, value in row.items():
        if key is None:  # more cells than headers
            out["(extra cells)"] = value
            continue
        key = key.strip()
        text = value.strip() if isinstance(value, str) else value
        if text in ("", None):
            continue
        if key == "details":
            try:
                parsed = _loads(text)
            except json.JSONDecodeError:
                parsed = text  # left for the model to refuse, naming the field
            except RecursionError:
                problems.append(EndpointIssue("details", "JSON nested too deeply for the "
                                              "parser", "invalid_value"))
                continue
            if isinstance(parsed, dict):
                details.update(parsed)
            else:
                out["details"] = parsed
        elif key.startswith("details."):
            sub = key.removeprefix("details.")
            try:
                details[sub] = _json_list(text) if sub in ("tables", "schemas") else text
            except RecursionError:
                problems.append(EndpointIssue(key, "JSON nested too deeply for the parser",
                                              "invalid_value"))
        else:
            out[key] = text
    if details and "details" not in out:
        out["details"] = details
    return out, problems


def _json_list(text: str) -> Any:
    """A CSV cell holding a list: JSON (``["a", "b"]``) or names split by spaces/commas.
    Anything else is handed on as it is, for the model to refuse with the field's name."""
    if text.startswith("["):
        try:
            return _loads(text)
        except json.JSONDecodeError:
            return text
    return [part for part in text.replace(",", " ").split() if part]


def read_records(text: str, fmt: str, origin: str) -> tuple[str | None, list[RawEndpoint]]:
    """(estate named in the file or None, records) from JSON or CSV text."""
    if fmt == "csv":
        return None, _csv_records(text, origin)
    try:
        data = _loads(text)
    except json.JSONDecodeError as exc:
        raise EndpointsFileError(f"{origin}: not valid JSON (line {exc.lineno}, column "
                                 f"{exc.colno}: {exc.msg})") from exc
    except RecursionError:
        raise EndpointsFileError(f"{origin}: JSON nested too deeply for the parser (an "
                                 f"endpoint record nests at most {MAX_DEPTH} levels)") from None
    return records_from_json(data, origin)


def _csv_records(text: str, origin: str) -> list[RawEndpoint]:
    """The rows of a CSV endpoints file; a row the CSV reader cannot split refuses the
    file (after an unclosed quote or an oversized cell the reader's idea of where the
    next row starts is a guess, and a guessed row must not be stored)."""
    # newline="": the reader sees the file's own line ends (a bare CR ends a row, as in
    # old Mac exports, instead of raising "new-line character seen in unquoted field")
    reader = csv.DictReader(io.StringIO(text, newline=""))

    def unreadable(where: str, exc: csv.Error, column: str = "") -> EndpointsFileError:
        hint = ("; a cell this long is not an endpoint, or a quote is never closed"
                if "field limit" in str(exc) else "")
        return EndpointsFileError(f"{origin}: {where}{column}: cannot be read as CSV "
                                  f"({exc}{hint}); nothing was stored")

    try:
        header = reader.fieldnames
    except csv.Error as exc:
        raise unreadable("the header row", exc) from None
    if not header or "server_id" not in [f.strip() for f in header]:
        raise EndpointsFileError(f"{origin}: a CSV endpoints file needs a header row with "
                                 "server_id,kind,name,source_uri,target_uri")
    rows: list[RawEndpoint] = []
    while True:
        start = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise unreadable(f"line {start}", exc,
                             _oversized_column(text, start, header)) from None
        data, problems = _clean(row)
        rows.append(RawEndpoint(len(rows), data, line=reader.line_num, problems=problems))
    return rows


def _oversized_column(text: str, line: int, header: Sequence[str] | None) -> str:
    """", column X" when line ``line`` is a plain comma-separated row whose X cell is
    past the CSV field limit (best effort: quoted rows are not split here)."""
    lines = text.splitlines()
    if not header or line - 1 >= len(lines) or '"' in lines[line - 1]:
        return ""
    limit = csv.field_size_limit()
    for name, cell in zip(header, lines[line - 1].split(","), strict=False):
        if len(cell) > limit:
            return f", column {_printable(name.strip())}"
    return ""


def records_from_json(data: Any, origin: str) -> tuple[str | None, list[RawEndpoint]]:
    estate = None
    if isinstance(data, dict):
        estate = data.get("estate")
        if estate is not None and not isinstance(estate, str):
            raise EndpointsFileError(f"{origin}: 'estate' must be the estate's name (a "
                                     f"string), got {type(estate).__name__.lstrip('_')}")
        unknown = sorted(set(data) - {"estate", "endpoints"})
        if unknown:
            raise EndpointsFileError(f"{origin}: unknown top-level key(s) {unknown}; "
                                     "expected 'estate' and 'endpoints'")
        data = data.get("endpoints")
    if not isinstance(data, list):
        raise EndpointsFileError(f"{origin}: expected a list of endpoints (or an object with "
                                 f"'endpoints'), got {type(data).__name__}")
    return estate, [RawEndpoint(i, item) for i, item in enumerate(data)]


def read_file(path: str | Path) -> tuple[str | None, list[RawEndpoint]]:
    """(estate named in the file or None, records) from a JSON or CSV file.

    UTF-8 (with or without a byte-order mark) or UTF-16 with one, as discovery files;
    other bytes refuse the file naming the line, so a Latin-1 export is re-saved rather
    than guessed at.
    """
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise EndpointsFileError(f"cannot read {p}: {exc.strerror or exc}") from exc
    encoding = "utf-16" if raw.startswith(_UTF16_BOMS) else "utf-8-sig"
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].decode(encoding, "replace").count("\n") + 1
        what = "UTF-16" if encoding == "utf-16" else "UTF-8"
        raise EndpointsFileError(
            f"{p}: line {line}: not {what} text ({exc.reason} at byte offset {exc.start}); "
            f"save the file as UTF-8") from None
    fmt = "csv" if p.suffix.lower() == ".csv" else "json"
    return read_records(text, fmt, str(p))


# ----------------------------------------------------------------------------- validation


def validate_records(estate: str, records: Iterable[RawEndpoint], origin: str,
                     known_servers: set[str] | None) -> ImportReport:
    """Check every record; ``known_servers`` None skips the estate-membership check."""
    report = ImportReport(estate)
    seen: dict[tuple[str, str, str], int] = {}
    for raw in records:
        server = raw.data.get("server_id") if isinstance(raw.data, dict) else None
        sid = (_printable(server) if isinstance(server, str) and server
               else str(server) if isinstance(server, int | float) and server else
               f"#{raw.index}")

        def quarantine(issues: list[EndpointIssue], raw: RawEndpoint = raw,
                       sid: str = sid) -> None:
            report.quarantined.append(QuarantinedEndpoint(
                origin, raw.index, raw.line, sid,
                [EndpointIssue(_printable(i.field), _printable(i.message), i.reason)
                 for i in issues]))

        if not isinstance(raw.data, dict):
            quarantine([EndpointIssue("(record)", "expected an object with server_id, kind, "
                                      "name, source_uri, target_uri, details", "not_an_object")])
            continue
        problems = raw.problems + value_problems(raw.data)
        kind = raw.data.get("kind")
        if kind is not None and not isinstance(kind, str):
            # checked here: EndpointSpec's name default looks the kind up in a dict,
            # which raises TypeError for a list or object
            problems.append(EndpointIssue("kind", f"must be one of {', '.join(KINDS)}",
                                          "invalid_value"))
        if problems:
            quarantine(problems[:_MAX_ISSUES])
            continue
        try:
            spec = EndpointSpec.model_validate(raw.data)
        except ValidationError as exc:
            quarantine([EndpointIssue(f, m, "invalid_value") for f, m in
                        validation_problems(exc)])
            continue
        if known_servers is not None and spec.server_id not in known_servers:
            quarantine([EndpointIssue("server_id", f"estate {estate!r} has no server "
                                      f"{spec.server_id!r}; store the estate's inventory first "
                                      "or fix the id", "unknown_server")])
            continue
        key = (spec.server_id, spec.kind, spec.name)
        if key in seen:
            quarantine([EndpointIssue("name", f"{spec.kind} endpoint {spec.name!r} of "
                                      f"{spec.server_id} is already given by record "
                                      f"#{seen[key]}", "duplicate_endpoint")])
            continue
        seen[key] = raw.index
        report.valid.append(spec.to_endpoint())
    return report


def store_report(session: Any, report: ImportReport) -> ImportReport:
    """Replace the endpoints of every server with valid records (per server, atomically).

    A server one of whose records was quarantined keeps what it had, so that a typo in
    one of its endpoints never silently deletes the others: fix the file and re-import.
    """
    from migrationbox.store import repository

    held_back = {q.server_id for q in report.quarantined}
    per_server: dict[str, list[Endpoint]] = {}
    for ep in report.valid:
        per_server.setdefault(ep.server_id, []).append(ep)
    for server_id, items in sorted(per_server.items()):
        if server_id in held_back:
            continue
        repository.replace_server_endpoints(
            session, estate=report.estate, server_id=server_id,
            items=[{"kind": e.kind, "name": e.name, "source_uri": e.source_uri,
                    "target_uri": e.target_uri, "details": e.details} for e in items])
        report.stored_servers.append(server_id)
    return report


def import_records(session: Any, estate: str, records: list[RawEndpoint], origin: str,
                   file_estate: str | None = None) -> ImportReport:
    """Validate against the stored estate and store what is valid; returns the report."""
    from migrationbox.store import repository

    if file_estate is not None and file_estate != estate:
        raise EndpointsFileError(f"{origin}: the file is for estate {file_estate!r}, not "
                                 f"{estate!r}; nothing was stored")
    known = repository.server_ids(session, estate)
    if not known:
        raise NotFoundError(f"estate {estate!r} is not in the store or has no servers; store "
                            "its inventory first (`migrationbox plan`)")
    return store_report(session, validate_records(estate, records, origin, known))


def register_endpoints(session: Any, estate: str, endpoints: Iterable[Endpoint],
                       origin: str = "endpoints") -> ImportReport:
    """Register endpoints built in code (the lab's) through the same rules as a file.

    All or nothing: when any is refused nothing is stored and the error lists them all,
    since code that builds endpoints the rules refuse has a bug.
    """
    from migrationbox.store import repository

    records = [RawEndpoint(i, e.to_dict()) for i, e in enumerate(endpoints)]
    known = repository.server_ids(session, estate)
    if not known:
        raise NotFoundError(f"estate {estate!r} is not in the store or has no servers")
    report = validate_records(estate, records, origin, known)
    if report.quarantined:
        raise EndpointError(f"{report.summary()}:\n  " + "\n  ".join(report.issue_lines()))
    return store_report(session, report)
