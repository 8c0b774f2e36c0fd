"""MigrationBox API: estates, plans, waves, phase runs, approvals, events, endpoints.

Everything is read-only except registering an estate's endpoints (``POST
/estates/{estate}/endpoints``), which validates the whole body and stores nothing when
any record is refused.

Mounted at ``/migrationbox`` inside Airflow's API server (see ``plugins/``). Airflow
mounts plugin apps WITHOUT its own auth, so the plugin passes two of Airflow's own
FastAPI security dependencies, and the auth manager in use (SimpleAuthManager in the
embedded default, FAB in the production profile) decides with its ``is_authorized_dag``:

* ``auth`` guards every route (reads): ``requires_access_dag("GET")``, whoever may list
  DAGs (the viewer role and up);
* ``operate`` guards, on top, the routes that change or act: registering endpoints and
  checking them (the check logs into every endpoint with the connections' credentials):
  ``requires_access_dag("PUT")`` with no DAG named, i.e. edit rights on *all* DAGs (the
  operator role and the admin; an approver's per-DAG rights are not enough).

The app can also be built without them (``auth=None``) for tests of the routes themselves.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import asdict, is_dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

#: Integer parameters stop at the store's 64-bit integers: a larger one cannot name a
#: row, and the database driver would fail on it (a 500 instead of a 422).
MAX_ID = 2**63 - 1
WaveNumber = Annotated[int, Path(ge=0, le=MAX_ID, description="the wave's number")]
OptionalId = Annotated[int | None, Query(ge=0, le=MAX_ID)]
# Names never hold NUL (PostgreSQL refuses it in text: a 500 instead of a 422).
_NAME = r"^[^\x00]*$"
EstateName = Annotated[str, Path(pattern=_NAME, max_length=255, description="estate name")]
OptionalName = Annotated[str | None, Query(pattern=_NAME, max_length=1024)]
#: Request bodies larger than this are refused before parsing (an endpoints file of
#: thousands of records is a few hundred KiB).
MAX_BODY_BYTES = 16 * 1024 * 1024


def _json_body(raw: bytes) -> Any:
    """The request body as JSON, or a 400 saying exactly why not.

    Stricter than FastAPI's own parsing, whose message is "There was an error parsing
    the body" for everything: the body must be UTF-8 JSON without NaN/Infinity (no
    JSON), without a key twice in one object (which value is meant cannot be known),
    and nested less deeply than the parser's limit.
    """
    if len(raw) > MAX_BODY_BYTES:
        raise HTTPException(413, f"body is {len(raw)} bytes; at most {MAX_BODY_BYTES}")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise HTTPException(400, f"body is not UTF-8 text (byte {exc.start}: {exc.reason})"
                            ) from None

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        obj = dict(items)
        if len(obj) != len(items):
            seen: set[str] = set()
            twice: set[str] = set()
            for key, _ in items:
                (twice if key in seen else seen).add(key)
            raise ValueError(f"key(s) {', '.join(map(repr, sorted(twice)))} appear more than once "
                             "in one object")
        return obj

    def constant(name: str) -> Any:
        raise ValueError(f"{name} is not a JSON number (use null for a missing value)")

    try:
        data = json.loads(text, object_pairs_hook=pairs, parse_constant=constant)
    except json.JSONDecodeError as exc:
        raise HTTPException(400, f"body is not JSON: {exc.msg} (line {exc.lineno}, column "
                            f"{exc.colno})") from None
    except RecursionError:
        raise HTTPException(400, "body is not usable JSON: nested too deeply") from None
    except ValueError as exc:  # duplicate keys, NaN, integers of over 4300 digits
        raise HTTPException(400, f"body is not usable JSON: {exc}") from None
    where = _unpaired_surrogate(data)
    if where is not None:
        where = where.encode("utf-8", "backslashreplace").decode("utf-8")  # printable
        raise HTTPException(400, f"body is not usable JSON: {where or 'the body'} holds an "
                            "unpaired surrogate escape (\\ud800-\\udfff), which is not "
                            "Unicode text")
    return data


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _unpaired_surrogate(data: Any) -> str | None:
    """The path of the first key or string holding an unpaired surrogate, else None.

    ``json`` turns ``"\\ud800"`` into a string no database or file can encode; found
    here, it is a 400 naming the field instead of a 500 from the store.
    """
    stack: list[tuple[Any, str]] = [(data, "")]
    while stack:
        node, path = stack.pop()
        if isinstance(node, str):
            if _LONE_SURROGATE.search(node):
                return path
        elif isinstance(node, dict):
            for key, value in node.items():
                inner = f"{path}.{key}" if path else key
                if _LONE_SURROGATE.search(key):
                    return inner
                stack.append((value, inner))
        elif isinstance(node, list):
            stack.extend((value, f"{path}[{i}]") for i, value in enumerate(node))
    return None


def _plain(value: Any) -> Any:
    if is_dataclass(value):
        return asdict(value)
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    return value


def build_app(
    auth: Callable[..., Any] | None = None, operate: Callable[..., Any] | None = None
) -> FastAPI:
    """The API; ``auth`` guards every route but ``/health``, ``operate`` in addition the
    routes that write or act (see the module docstring)."""
    from migrationbox.store import repository
    from migrationbox.store.db import session_scope

    deps = [Depends(auth)] if auth is not None else []
    acting = [Depends(operate)] if operate is not None else []
    app = FastAPI(
        title="MigrationBox",
        description="Estates, plans, waves and their progress, from the MigrationBox store.",
        version="1",
    )
    router = APIRouter(dependencies=deps)

    @router.get("/estates")
    def estates() -> list[dict[str, Any]]:
        with session_scope(read_only=True) as s:
            return [_plain(e) for e in repository.list_estates(s)]

    @router.get("/estates/{estate}/plans")
    def plans(estate: EstateName) -> list[dict[str, Any]]:
        with session_scope(read_only=True) as s:
            return [_plain(p) for p in repository.list_plans(s, estate)]

    @router.get("/estates/{estate}/plan")
    def plan(estate: EstateName, version: OptionalId = None) -> dict[str, Any]:
        with session_scope(read_only=True) as s:
            doc = repository.get_plan(s, estate, version)
        if doc is None:
            raise HTTPException(404, f"no plan for estate {estate!r}"
                                     + (f" version {version}" if version else ""))
        return doc.model_dump(mode="json")

    @router.get("/estates/{estate}/waves")
    def waves(estate: EstateName, version: OptionalId = None) -> list[dict[str, Any]]:
        with session_scope(read_only=True) as s:
            return [_plain(w) for w in repository.waves(s, estate, version)]

    @router.get("/estates/{estate}/waves/{wave}/runs")
    def runs(estate: EstateName, wave: WaveNumber,
             dag_run_id: OptionalName = None) -> dict[str, Any]:
        with session_scope(read_only=True) as s:
            return {
                "phase_runs": [_plain(r) for r in repository.phase_runs(s, estate, wave,
                                                                           dag_run_id)],
                "approvals": [_plain(a) for a in repository.approvals(s, estate, wave,
                                                                         dag_run_id=dag_run_id)],
            }

    @router.get("/estates/{estate}/events")
    def events(estate: EstateName, wave: OptionalId = None, since_id: OptionalId = None,
               limit: int = Query(default=200, ge=1, le=5000)) -> list[dict[str, Any]]:
        with session_scope(read_only=True) as s:
            return [_plain(e) for e in repository.events(s, estate, wave, since_id, limit)]

    def _stored_endpoints(estate: str, server: str | None) -> list[Any]:
        from migrationbox.endpoints.model import Endpoint

        with session_scope(read_only=True) as s:
            if not repository.server_ids(s, estate):
                raise HTTPException(404, f"estate {estate!r} is not in the store")
            rows = repository.endpoints(s, estate, server)
        return [Endpoint(r.server_id, r.kind, r.name, r.source_uri, r.target_uri,
                         dict(r.details)) for r in rows]

    @router.get("/estates/{estate}/endpoints")
    def endpoints(estate: EstateName, server: OptionalName = None) -> dict[str, Any]:
        """The registered endpoints (an endpoints file, importable as it is)."""
        return {"estate": estate,
                "endpoints": [e.to_dict() for e in _stored_endpoints(estate, server)]}

    @router.get("/estates/{estate}/endpoints/check", dependencies=acting)
    def check_endpoints(estate: EstateName, server: OptionalName = None) -> dict[str, Any]:
        """Try every endpoint (reachable, authenticated, readable, room on the target)."""
        from migrationbox.endpoints.checks import check_endpoints as run_checks

        checks = run_checks(_stored_endpoints(estate, server))
        return {"estate": estate, "ok": all(c.ok for c in checks),
                "endpoints": [c.to_dict() for c in checks]}

    @router.post("/estates/{estate}/endpoints", response_model=None, dependencies=acting,
                 openapi_extra={
        "requestBody": {"required": True, "content": {"application/json": {"schema": {
            "description": '{"endpoints": [...]} or a list of endpoint records'}}}}})
    async def import_endpoints(estate: EstateName, request: Request) -> Any:
        """Register endpoints: ``{"endpoints": [...]}`` or a list. All or nothing: any
        refused record refuses the body (422, each record's server and field named); a
        body that is not JSON is a 400 saying why."""
        body = _json_body(await request.body())
        return await run_in_threadpool(_import_endpoints, estate, body)

    def _import_endpoints(estate: str, body: Any) -> Any:
        from migrationbox.endpoints.registry import (
            EndpointsFileError,
            records_from_json,
            store_report,
            validate_records,
        )

        try:
            file_estate, records = records_from_json(body, "body")
        except EndpointsFileError as exc:
            raise HTTPException(422, str(exc)) from exc
        if file_estate is not None and file_estate != estate:
            raise HTTPException(422, f"body is for estate {file_estate!r}, not {estate!r}")
        with session_scope() as s:
            known = repository.server_ids(s, estate)
            if not known:
                raise HTTPException(404, f"estate {estate!r} is not in the store")
            report = validate_records(estate, records, "body", known)
            if report.quarantined:
                return JSONResponse(status_code=422, content={
                    "detail": f"{report.summary()}; nothing was stored",
                    "issues": report.issue_lines(),
                    "report": report.to_dict()})
            store_report(s, report)
        return report.to_dict()

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    app.include_router(router)
    return app
