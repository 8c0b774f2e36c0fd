"""Read-only MigrationBox API: estates, plans, waves, phase runs, approvals, events.

Mounted at ``/migrationbox`` inside Airflow's API server (see ``plugins/``). Airflow
mounts plugin apps WITHOUT its own auth, so every route here depends on Airflow's
``requires_authenticated`` (the same bearer token or UI cookie as the REST API). The app
can also be built with ``auth=None`` for tests of the routes themselves.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, is_dataclass
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query


def _plain(value: Any) -> Any:
    if is_dataclass(value):
        return asdict(value)
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    return value


def build_app(auth: Callable[..., Any] | None = None) -> FastAPI:
    from migrationbox.store import repository
    from migrationbox.store.db import session_scope

    deps = [Depends(auth)] if auth is not None else []
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
    def plans(estate: str) -> list[dict[str, Any]]:
        with session_scope(read_only=True) as s:
            return [_plain(p) for p in repository.list_plans(s, estate)]

    @router.get("/estates/{estate}/plan")
    def plan(estate: str, version: int | None = None) -> dict[str, Any]:
        with session_scope(read_only=True) as s:
            doc = repository.get_plan(s, estate, version)
        if doc is None:
            raise HTTPException(404, f"no plan for estate {estate!r}"
                                     + (f" version {version}" if version else ""))
        return doc.model_dump(mode="json")

    @router.get("/estates/{estate}/waves")
    def waves(estate: str, version: int | None = None) -> list[dict[str, Any]]:
        with session_scope(read_only=True) as s:
            return [_plain(w) for w in repository.waves(s, estate, version)]

    @router.get("/estates/{estate}/waves/{wave}/runs")
    def runs(estate: str, wave: int, dag_run_id: str | None = None) -> dict[str, Any]:
        with session_scope(read_only=True) as s:
            return {
                "phase_runs": [_plain(r) for r in repository.phase_runs(s, estate, wave,
                                                                           dag_run_id)],
                "approvals": [_plain(a) for a in repository.approvals(s, estate, wave,
                                                                         dag_run_id=dag_run_id)],
            }

    @router.get("/estates/{estate}/events")
    def events(estate: str, wave: int | None = None, since_id: int | None = None,
               limit: int = Query(default=200, ge=1, le=5000)) -> list[dict[str, Any]]:
        with session_scope(read_only=True) as s:
            return [_plain(e) for e in repository.events(s, estate, wave, since_id, limit)]

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    app.include_router(router)
    return app
