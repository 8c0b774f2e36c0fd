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
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from migrationbox.endpoints.model import (
    Endpoint,
    EndpointError,
    EndpointSpec,
    validation_problems,
)
from migrationbox.errors import InputError, NotFoundError

#: Quarantine reasons, as in inventory validation.
REASONS = ("invalid_value", "unknown_server", "duplicate_endpoint", "not_an_object")


@dataclass
class RawEndpoint:
    """One record as read, with where it came from."""

    index: int
    data: Any
    line: int | None = None


@dataclass
class EndpointIssue:
    field: str
    message: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message, "reason": self.reason}


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


def _clean(row: Mapping[str, Any]) -> dict[str, Any]:
    """A CSV row as an endpoint dict: ``details.x`` columns folded, blanks left out."""
    out: dict[str, Any] = {}
    details: dict[str, Any] = {}
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
                parsed = json.loads(text)
            except json.JSONDecodeError:
                parsed = text  # left for the model to refuse, naming the field
            if isinstance(parsed, dict):
                details.update(parsed)
            else:
                out["details"] = parsed
        elif key.startswith("details."):
            sub = key.removeprefix("details.")
            details[sub] = _json_list(text) if sub in ("tables", "schemas") else text
        else:
            out[key] = text
    if details and "details" not in out:
        out["details"] = details
    return out


def _json_list(text: str) -> Any:
    """A CSV cell holding a list: JSON (``["a", "b"]``) or names split by spaces/commas.
    Anything else is handed on as it is, for the model to refuse with the field's name."""
    if text.startswith("["):
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return text
    return [part for part in text.replace(",", " ").split() if part]


def read_records(text: str, fmt: str, origin: str) -> tuple[str | None, list[RawEndpoint]]:
    """(estate named in the file or None, records) from JSON or CSV text."""
    if fmt == "csv":
        reader = csv.DictReader(io.StringIO(text))
        if not reader.fieldnames or "server_id" not in [f.strip() for f in reader.fieldnames]:
            raise EndpointsFileError(f"{origin}: a CSV endpoints file needs a header row with "
                                     "server_id,kind,name,source_uri,target_uri")
        rows = []
        for index, row in enumerate(reader):
            rows.append(RawEndpoint(index, _clean(row), line=reader.line_num))
        return None, rows
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise EndpointsFileError(f"{origin}: not valid JSON (line {exc.lineno}, column "
                                 f"{exc.colno}: {exc.msg})") from exc
    return records_from_json(data, origin)


def records_from_json(data: Any, origin: str) -> tuple[str | None, list[RawEndpoint]]:
    estate = None
    if isinstance(data, dict):
        estate = data.get("estate")
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
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise EndpointsFileError(f"cannot read {p}: {exc.strerror or exc}") from exc
    fmt = "csv" if p.suffix.lower() == ".csv" else "json"
    return read_records(text, fmt, str(p))


# ----------------------------------------------------------------------------- validation


def validate_records(estate: str, records: Iterable[RawEndpoint], origin: str,
                     known_servers: set[str] | None) -> ImportReport:
    """Check every record; ``known_servers`` None skips the estate-membership check."""
    report = ImportReport(estate)
    seen: dict[tuple[str, str, str], int] = {}
    for raw in records:
        sid = str(raw.data.get("server_id") or f"#{raw.index}") if isinstance(raw.data, dict) \
            else f"#{raw.index}"

        def quarantine(issues: list[EndpointIssue], raw: RawEndpoint = raw,
                       sid: str = sid) -> None:
            report.quarantined.append(
                QuarantinedEndpoint(origin, raw.index, raw.line, sid, issues))

        if not isinstance(raw.data, dict):
            quarantine([EndpointIssue("(record)", "expected an object with server_id, kind, "
                                      "name, source_uri, target_uri, details", "not_an_object")])
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
