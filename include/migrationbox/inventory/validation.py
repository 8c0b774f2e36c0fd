"""Validate discovery records: quarantine the bad ones, keep the rest.

A discovery run across hundreds of servers always has a few broken agents. Refusing
the whole estate for one bad file stalls the migration, and silently dropping records
hides servers from the plan. So every problem is attached to exactly one record (its
file, its server_id or ``#index``, the field path and a message), that record is
quarantined, and the others load. Callers who need all-or-nothing use ``load_estate``.

Checks, in order:

1. parse (``loaders``): malformed JSON names file, line and column;
2. schema (``ServerRecord``): field paths such as ``hardware.cpu_cores`` or
   ``network_dependencies[2].destination``;
3. estate: duplicate server_ids and duplicate hostnames (every copy is quarantined,
   naming the others: which copy is right cannot be known);
4. dependencies: every ``network_dependencies`` destination must name exactly one
   server of the estate, unless it carries ``"external": true``. A destination that
   names a record which was itself quarantined is a warning, not an error, so one bad
   DNS server record does not cascade through the whole estate.

Records imported from other tools' exports (``inventory.importers``: RVTools, the
Migration Hub import CSV) take the same path. Cells the importer could not read arrive
as the record's ``problems``; schema issues are shown against the source column
(``CPUs (hardware.cpu_cores)``), and the location is the file, sheet and row. What the
importer decided (a template skipped, a powered-off VM) arrives as warnings.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from migrationbox.errors import InputError
from migrationbox.inventory.loaders import (
    QUARANTINE_MARKER,
    LoadNote,
    Origin,
    ParseError,
    RawRecord,
    gc_paused,
    load_records,
)
from migrationbox.inventory.models import Estate, ServerRecord
from migrationbox.inventory.resolve import AddressBook, looks_like_host_port, split_host_port

UnknownPolicy = Literal["error", "warn", "ignore"]
RECORD_FIELD = "(record)"


class Reason(StrEnum):
    malformed_json = "malformed_json"
    unreadable_file = "unreadable_file"
    not_an_object = "not_an_object"
    missing_field = "missing_field"
    wrong_type = "wrong_type"
    invalid_value = "invalid_value"
    self_dependency = "self_dependency"
    duplicate_server_id = "duplicate_server_id"
    hostname_collision = "hostname_collision"
    unknown_dependency = "unknown_dependency"
    ambiguous_dependency = "ambiguous_dependency"
    quarantined_dependency = "quarantined_dependency"
    ambiguous_name = "ambiguous_name"
    duplicate_key = "duplicate_key"  # a key twice in one JSON object (loaders)
    # imports of other tools' exports (inventory.importers)
    unrecognised_file = "unrecognised_file"
    skipped_record = "skipped_record"
    powered_off = "powered_off"
    import_note = "import_note"


@dataclass(frozen=True, slots=True)
class Issue:
    """One problem with one field of one record."""

    field: str
    message: str
    reason: Reason

    def to_dict(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message, "reason": str(self.reason)}


@dataclass(slots=True)
class Quarantined:
    """A record that was set aside, with everything needed to find and fix it."""

    file: str
    record: str  # server_id if readable, else "#<index>"
    index: int | None
    line: int | None
    issues: list[Issue]
    data: Any = None  # the parsed record, when it parsed
    text: str | None = None  # the raw text, when it did not
    part: str | None = None  # sheet of an imported workbook ("" for a CSV file)

    @property
    def location(self) -> str:
        if self.part is not None and self.line is not None:
            return " ".join(x for x in (self.file, self.part, f"row {self.line}") if x)
        return f"{self.file}:{self.line}" if self.line is not None else self.file

    @property
    def reasons(self) -> set[Reason]:
        return {issue.reason for issue in self.issues}

    def to_dict(self) -> dict[str, Any]:
        result = {
            "file": self.file,
            "record": self.record,
            "index": self.index,
            "line": self.line,
            "issues": [issue.to_dict() for issue in self.issues],
        }
        if self.part is not None:
            result["sheet"] = self.part or None
            result["location"] = self.location
        return result


@dataclass(frozen=True, slots=True)
class Notice:
    """A warning about a valid record: it loads, but someone should look."""

    file: str
    record: str
    field: str
    message: str
    reason: Reason

    def to_dict(self) -> dict[str, str]:
        return {
            "file": self.file,
            "record": self.record,
            "field": self.field,
            "message": self.message,
            "reason": str(self.reason),
        }


@dataclass(slots=True)
class ValidationReport:
    valid: list[ServerRecord]
    quarantined: list[Quarantined]
    warnings: list[Notice] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    origins: dict[str, Origin] = field(default_factory=dict)  # server_id -> origin

    @property
    def ok(self) -> bool:
        return not self.quarantined

    def reason_counts(self) -> dict[str, int]:
        """Quarantined records per reason (a record with two reasons counts twice)."""
        counts: Counter[str] = Counter()
        for item in self.quarantined:
            counts.update(str(reason) for reason in item.reasons)
        return dict(sorted(counts.items()))

    def summary(self) -> str:
        text = f"{len(self.valid)} valid, {len(self.quarantined)} quarantined"
        counts = self.reason_counts()
        if counts:
            text += " (" + ", ".join(f"{reason}: {n}" for reason, n in counts.items()) + ")"
        if self.warnings:
            text += f", {len(self.warnings)} warning" + ("s" if len(self.warnings) != 1 else "")
        return text

    def issue_lines(self) -> list[str]:
        """One line per problem: file, record, field path, message.

        Imported records read ``RVTools.xlsx vInfo row 17 (VM 'web-03'): CPUs: ...``.
        """
        return [
            f"{item.location} ({item.record}): {issue.field}: {issue.message}"
            if item.part is not None else
            f"{item.location}  record {item.record}  {issue.field}: {issue.message}"
            for item in self.quarantined
            for issue in item.issues
        ]

    def to_dict(self) -> dict[str, Any]:
        return {
            "valid": len(self.valid),
            "valid_server_ids": [s.server_id for s in self.valid],
            "quarantined": [item.to_dict() for item in self.quarantined],
            "warnings": [w.to_dict() for w in self.warnings],
            "reason_counts": self.reason_counts(),
            "summary": self.summary(),
            "files": self.files,
        }


class InventoryError(InputError):
    """The inventory cannot be used as a whole; the message lists every issue.

    Raised by ``load_estate`` with the ``ValidationReport`` (kept as ``.report``);
    callers may also raise it with a plain message, in which case ``.report`` is None.
    """

    def __init__(self, report: ValidationReport | str, source: str = "inventory") -> None:
        if isinstance(report, str):
            self.report: ValidationReport | None = None
            super().__init__(report)
            return
        self.report = report
        lines = report.issue_lines()
        shown = lines[:50]
        more = f"\n  ... and {len(lines) - len(shown)} more" if len(lines) > len(shown) else ""
        super().__init__(
            f"{source}: {report.summary()}\n  " + "\n  ".join(shown) + more
        )


# ---------------------------------------------------------------------------- schema


def field_path(loc: tuple[int | str, ...]) -> str:
    """``('network_dependencies', 2, 'destination')`` -> ``network_dependencies[2].destination``."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path or RECORD_FIELD


def _reason_for(error_type: str) -> Reason:
    if error_type == "missing":
        return Reason.missing_field
    if error_type.endswith(("_type", "_parsing")) or error_type in {
        "int_from_float",
        "model_attributes_type",
    }:
        return Reason.wrong_type
    return Reason.invalid_value


def _short(value: Any) -> str | None:
    if isinstance(value, (str, int, float, bool)) or value is None:
        text = repr(value)
        return text if len(text) <= 60 else text[:57] + "..."
    return type(value).__name__ if isinstance(value, (list, dict)) else None


def _clip(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _self_dependency_fields(data: Mapping[str, Any]) -> list[str]:
    """Which dependencies point at the record itself (the model reports it record-wide)."""
    names: set[str] = set()
    for key in ("server_id", "hostname"):
        if isinstance(data.get(key), str):
            names.add(data[key].strip())
    if isinstance(data.get("hostname"), str):
        names.add(data["hostname"].strip().split(".", 1)[0])
    if isinstance(data.get("ip_addresses"), list):
        names.update(ip for ip in data["ip_addresses"] if isinstance(ip, str))
    deps = data.get("network_dependencies")
    fields = []
    for i, dep in enumerate(deps if isinstance(deps, list) else []):
        destination = dep.get("destination") if isinstance(dep, Mapping) else None
        if isinstance(destination, str) and split_host_port(destination)[0] in names:
            fields.append(f"network_dependencies[{i}].destination")
    return fields


def _json_type(value: Any) -> str:
    """What a JSON author calls the value's type (``null``, not ``NoneType``)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"{str(value).lower()} (a boolean)"
    if isinstance(value, (int, float)):
        return f"a number ({_short(value)})"
    if isinstance(value, str):
        return f"a string ({_short(value)})"
    if isinstance(value, list):
        return f"an array of {len(value)} item" + ("s" if len(value) != 1 else "")
    return type(value).__name__


def schema_issues(exc: ValidationError, data: Any) -> list[Issue]:
    """Translate pydantic errors into field paths and plain messages."""
    issues: list[Issue] = []
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        msg = str(err["msg"]).removeprefix("Value error, ")
        error_type = str(err["type"])
        if not loc and error_type == "model_type":
            issues.append(Issue(RECORD_FIELD,
                                f"expected a JSON object, got {_json_type(data)}",
                                Reason.not_an_object))
            continue
        if not loc and "points at the server itself" in msg and isinstance(data, Mapping):
            for path in _self_dependency_fields(data) or ["network_dependencies"]:
                issues.append(Issue(path, msg.split(": ", 1)[-1], Reason.self_dependency))
            continue
        reason = _reason_for(error_type)
        if reason is Reason.missing_field and len(loc) == 1 and isinstance(data, Mapping):
            close = difflib.get_close_matches(str(loc[0]), [str(k) for k in data], n=1)
            if close:
                msg += f" (found {close[0]!r}: a misspelling?)"
        elif reason is not Reason.missing_field:
            shown = _short(err.get("input"))
            if shown is not None and shown not in msg:
                msg += f" (got {shown})"
        issues.append(Issue(field_path(loc), msg, reason))
    return issues


# ---------------------------------------------------------------------------- estate


@dataclass(slots=True)
class _Entry:
    origin: Origin
    data: Any
    server: ServerRecord | None
    issues: list[Issue]

    @property
    def label(self) -> str:
        if self.origin.label:
            return self.origin.label
        sid = self.data.get("server_id") if isinstance(self.data, Mapping) else None
        if isinstance(sid, str) and sid.strip():
            return sid.strip()
        return f"#{self.origin.index}"

    @property
    def where(self) -> str:
        return str(self.origin)


def _mark_shared(
    entries: list[_Entry], key_of: Any, reason: Reason, what: str
) -> None:
    """Quarantine every entry whose key (server_id, hostname) another entry shares."""
    groups: dict[str, list[_Entry]] = defaultdict(list)
    for entry in entries:
        key = key_of(entry)
        if key:
            groups[key].append(entry)
    for key, group in groups.items():
        if len(group) < 2:
            continue
        for entry in group:
            # long keys and labels are cut and many sharers counted, so one line stays
            # readable whatever a file holds (a 5000-digit hostname, 1000 copies)
            rest = [o for o in group if o is not entry]
            others = ", ".join(f"{o.where} ({_clip(o.label)})" for o in rest[:3])
            if len(rest) > 3:
                others += f" and {len(rest) - 3} more"
            entry.issues.append(
                Issue(what, f"{what} {_short(key)} is also used by {others}", reason)
            )


def _id_key(entry: _Entry) -> str | None:
    sid = entry.data.get("server_id") if isinstance(entry.data, Mapping) else None
    return sid.strip() if isinstance(sid, str) and sid.strip() else None


def _hostname_key(entry: _Entry) -> str | None:
    host = entry.data.get("hostname") if isinstance(entry.data, Mapping) else None
    if not isinstance(host, str) or not host.strip():
        return None
    return host.strip().lower().rstrip(".")


def _dependency_findings(
    entry: _Entry, book: AddressBook, quarantined: AddressBook, policy: UnknownPolicy
) -> tuple[list[Issue], list[Notice]]:
    server = entry.server
    assert server is not None
    errors: list[Issue] = []
    notices: list[Notice] = []

    def notice(path: str, message: str, reason: Reason) -> None:
        notices.append(Notice(entry.origin.file, server.server_id, path, message, reason))

    for i, dep in enumerate(server.network_dependencies):
        path = f"network_dependencies[{i}].destination"
        extra = dep.model_extra or {}
        if "external" in extra and not isinstance(extra["external"], bool):
            errors.append(Issue(f"network_dependencies[{i}].external",
                                f"must be true or false (got {_short(extra['external'])})",
                                Reason.wrong_type))
            continue
        found = book.candidates(dep.host)
        if len(found) == 1:
            continue
        if len(found) > 1:
            errors.append(Issue(path, f"destination {dep.destination!r} matches several "
                                f"servers: {', '.join(sorted(found))}",
                                Reason.ambiguous_dependency))
            continue
        if extra.get("external") is True:
            continue
        gone = quarantined.candidates(dep.host)
        if gone:
            notice(path, f"destination {dep.destination!r} points at "
                   f"{', '.join(sorted(gone))}, which was quarantined; the dependency is "
                   "left out of planning until that record is fixed",
                   Reason.quarantined_dependency)
            continue
        message = (f"destination {dep.destination!r} matches no server of the estate "
                   "(mark it \"external\": true if it lies outside the estate)")
        if policy == "error":
            errors.append(Issue(path, message, Reason.unknown_dependency))
        elif policy == "warn":
            notice(path, message, Reason.unknown_dependency)
    for a, app in enumerate(server.applications):
        for d, item in enumerate(app.dependencies):
            host = split_host_port(item)[0]
            found = book.candidates(host)
            path = f"applications[{a}].dependencies[{d}]"
            if len(found) > 1:
                notice(path, f"{item!r} matches several servers: {', '.join(sorted(found))}; "
                       "no dependency is recorded", Reason.ambiguous_dependency)
            elif not found and looks_like_host_port(item) and policy != "ignore":
                notice(path, f"{item!r} looks like a server but matches none of the estate",
                       Reason.unknown_dependency)
    return errors, notices


def _name_notices(entries: list[_Entry], book: AddressBook) -> list[Notice]:
    """Short hostnames and IPs shared by several servers make bare names ambiguous."""
    by_id = {e.server.server_id: e for e in entries if e.server is not None}
    notices = []
    for kind, what in (("short_hostname", "short hostname"), ("ip", "IP address")):
        for name, ids in sorted(book.collisions(kind).items()):
            for sid in sorted(ids):
                entry = by_id[sid]
                others = ", ".join(sorted(ids - {sid}))
                field_name = "hostname" if kind == "short_hostname" else "ip_addresses"
                notices.append(Notice(entry.origin.file, sid, field_name,
                                      f"{what} {name!r} is shared with {others}; "
                                      "dependencies naming it cannot be resolved",
                                      Reason.ambiguous_name))
    return notices


def _parse_message(error: ParseError) -> str:
    if error.line is None:
        return error.message
    where = f"line {error.line}" + (f", column {error.column}" if error.column else "")
    return f"{error.message} (at {where})"


def _source_column(path: str, columns: dict[str, str]) -> str | None:
    """The source column a field path came from: the path itself or its nearest parent."""
    candidate = re.sub(r"\[\d+\]", "", path)
    while candidate:
        if candidate in columns:
            return columns[candidate]
        candidate = candidate.rpartition(".")[0]
    return None


def imported_issues(raw: RawRecord, schema: list[Issue]) -> list[Issue]:
    """An imported record's issues: its unreadable cells, then schema issues by column.

    JSON records arrive here too when the loader found problems (a duplicate key, NaN,
    nesting too deep): those come first, and a schema issue on the same field is dropped.

    A schema issue on a column the importer already reported is dropped (``CPUs: not a
    number: 'four'`` says it; ``cpu_cores: Input should be a valid integer`` would not
    add anything).
    """
    issues = [Issue(p.field, p.message, Reason(p.reason)) for p in raw.problems]
    if any(p.field == "(row)" for p in raw.problems):
        return issues
    reported = {p.field for p in raw.problems}
    columns = dict(raw.columns)
    for issue in schema:
        column = _source_column(issue.field, columns)
        if column is None:
            if issue.field not in reported:  # a JSON field the loader already named
                issues.append(issue)
        elif column not in reported:
            issues.append(Issue(f"{column} ({issue.field})", issue.message, issue.reason))
    return issues


def validate_records(
    items: Iterable[RawRecord | ParseError | LoadNote | Mapping[str, Any]],
    *,
    unknown_dependencies: UnknownPolicy = "error",
    files: list[str] | None = None,
) -> ValidationReport:
    """Validate records already loaded (or built in memory: plain dicts are accepted)."""
    with gc_paused():
        return _validate_records(items, unknown_dependencies, files)


def _validate_records(
    items: Iterable[RawRecord | ParseError | LoadNote | Mapping[str, Any]],
    unknown_dependencies: UnknownPolicy,
    files: list[str] | None,
) -> ValidationReport:
    entries: list[_Entry] = []
    parse_failures: list[Quarantined] = []
    load_notes: list[Notice] = []
    for position, item in enumerate(items):
        if isinstance(item, LoadNote):
            load_notes.append(Notice(item.file, item.record, item.field, item.message,
                                     Reason(item.reason)))
            continue
        if isinstance(item, ParseError):
            parse_failures.append(Quarantined(
                file=item.file,
                record=f"line {item.line}" if item.text is not None else "(file)",
                index=None,
                line=item.line,
                issues=[Issue(RECORD_FIELD, _parse_message(item), Reason(item.kind))],
                text=item.text,
            ))
            continue
        raw = item if isinstance(item, RawRecord) else RawRecord(Origin("<memory>", position),
                                                                 item)
        try:
            server = ServerRecord.model_validate(raw.data)
        except ValidationError as exc:
            issues = schema_issues(exc, raw.data)
            if raw.problems or raw.columns:
                issues = imported_issues(raw, issues)
            entries.append(_Entry(raw.origin, raw.data, None, issues))
        else:
            issues = imported_issues(raw, []) if raw.problems else []
            entries.append(_Entry(raw.origin, raw.data, server if not issues else None,
                                  issues))

    _mark_shared(entries, _id_key, Reason.duplicate_server_id, "server_id")
    distinct_ids = [e for e in entries if not any(
        i.reason is Reason.duplicate_server_id for i in e.issues)]
    _mark_shared(distinct_ids, _hostname_key, Reason.hostname_collision, "hostname")

    # dependencies: repeat until stable, since quarantining a record can turn another
    # record's dependency on it from "resolved" into "points at a quarantined record"
    notices: list[Notice] = []
    while True:
        good = [e for e in entries if e.server is not None and not e.issues]
        bad = [e for e in entries if e.issues]
        book = AddressBook.from_servers(e.server for e in good if e.server is not None)
        gone = AddressBook.from_raw(e.data for e in bad if isinstance(e.data, Mapping))
        found_errors = False
        notices = []
        for entry in good:
            errors, warnings = _dependency_findings(entry, book, gone, unknown_dependencies)
            if errors:
                entry.issues.extend(errors)
                found_errors = True
            notices.extend(warnings)
        if not found_errors:
            notices.extend(_name_notices(good, book))
            break

    valid = [e.server for e in entries if e.server is not None and not e.issues]
    quarantined = parse_failures + [
        Quarantined(
            file=e.origin.file,
            record=e.label,
            index=e.origin.index,
            line=e.origin.line,
            issues=e.issues,
            data=e.data,
            part=e.origin.part,
        )
        for e in entries
        if e.issues
    ]
    quarantined.sort(key=lambda q: (q.file, q.line if q.line is not None else (
        q.index if q.index is not None else -1)))
    origins = {e.server.server_id: e.origin for e in entries
               if e.server is not None and not e.issues}
    return ValidationReport(valid=valid, quarantined=quarantined,
                            warnings=load_notes + notices, files=files or [], origins=origins)


def validate_inventory(
    path: str | Path, *, unknown_dependencies: UnknownPolicy = "error"
) -> ValidationReport:
    """Load and validate a folder, JSON / JSON Lines file, or an importable export.

    Raises ``loaders.UnreadablePath`` if the path cannot be read at all; every other
    problem ends up in the report.
    """
    loaded = load_records(path)
    return validate_records([*loaded.errors, *loaded.notes, *loaded.records],
                            unknown_dependencies=unknown_dependencies, files=loaded.files)


_NAME_SANITISER = re.compile(r"[^a-z0-9_-]+")


def estate_name_for(path: str | Path) -> str:
    """A valid estate name derived from a path ("include/estates/sample" -> "sample")."""
    p = Path(path)
    stem = p.name if p.is_dir() or not p.suffix else p.stem
    name = _NAME_SANITISER.sub("-", stem.lower()).strip("-_")[:63]
    return name or "estate"


def load_estate(
    path: str | Path,
    name: str | None = None,
    *,
    unknown_dependencies: UnknownPolicy = "error",
) -> Estate:
    """All-or-nothing load: the estate, or ``InventoryError`` listing every issue."""
    report = validate_inventory(path, unknown_dependencies=unknown_dependencies)
    if report.quarantined:
        raise InventoryError(report, source=str(path))
    if not report.valid:
        raise InventoryError(report, source=f"{path}: no records")
    return Estate(name=name or estate_name_for(path), servers=report.valid)


# ---------------------------------------------------------------------------- quarantine


_FILE_SANITISER = re.compile(r"[^A-Za-z0-9._-]+")


def _quarantine_base(item: Quarantined) -> str:
    digest = hashlib.sha1(item.file.encode()).hexdigest()[:6]
    stem = _FILE_SANITISER.sub("_", Path(item.file).stem)[:40]
    where = f"L{item.line}" if item.line is not None else (
        f"{item.index}" if item.index is not None else "file")
    label = _FILE_SANITISER.sub("_", item.record)[:60]
    return f"{stem}-{digest}-{where}-{label}"


def write_quarantine(report: ValidationReport, folder: str | Path) -> list[Path]:
    """Write each quarantined record and a reason file into ``folder``.

    Re-running replaces the previous quarantine in that folder (it is marked with
    ``.migrationbox-quarantine`` so loaders skip it and so a folder that is not a
    quarantine is never emptied). Returns the files written.
    """
    target = Path(folder)
    marker = target / QUARANTINE_MARKER
    if target.exists() and any(target.iterdir()) and not marker.exists():
        raise FileExistsError(f"{target} exists and is not a quarantine folder; "
                              "pick an empty or new folder")
    target.mkdir(parents=True, exist_ok=True)
    for old in target.iterdir():
        if old.is_file() and old.name != QUARANTINE_MARKER:
            old.unlink()
    marker.write_text("written by migrationbox validate --quarantine-dir\n")
    written: list[Path] = []
    for item in report.quarantined:
        base = _quarantine_base(item)
        if item.data is not None:
            record_file = target / f"{base}.record.json"
            record_file.write_text(json.dumps(item.data, indent=2, default=str) + "\n")
        elif item.text is not None:
            record_file = target / f"{base}.record.txt"
            record_file.write_text(item.text + "\n")
        else:  # a whole file failed to parse: keep a copy of it
            record_file = target / f"{base}.record.txt"
            source = Path(item.file)
            record_file.write_bytes(source.read_bytes() if source.is_file() else b"")
        reason_file = target / f"{base}.reason.txt"
        reason_file.write_text(
            f"file: {item.location}\nrecord: {item.record}\n"
            + "".join(f"{i.field}: {i.message} [{i.reason}]\n" for i in item.issues)
        )
        written += [record_file, reason_file]
    index = target / "quarantine.json"
    index.write_text(json.dumps({"summary": report.summary(),
                                 "quarantined": [q.to_dict() for q in report.quarantined]},
                                indent=2) + "\n")
    written.append(index)
    return written
