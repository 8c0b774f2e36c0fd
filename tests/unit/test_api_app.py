"""The MigrationBox API routes, on a real store (auth is exercised in the Airflow test)."""

from __future__ import annotations

from fastapi.testclient import TestClient

from migrationbox.store import repository
from migrationbox.store.db import session_scope
from migrationbox.store.testing import tiny_estate, tiny_plan


def test_routes_serve_estates_plans_waves_and_events(tmp_path, monkeypatch):
    monkeypatch.setenv("MIGRATIONBOX_STORE_URL", f"sqlite:///{tmp_path / 'api.db'}")
    from migrationbox.api.app import build_app

    estate = tiny_estate()
    with session_scope() as s:
        repository.save_estate(s, estate)
        plan = repository.save_plan(s, tiny_plan(estate))
        repository.add_event(s, estate=estate.name, wave=1, message="replicate started",
                             kind="phase_started", phase="replicate")
    client = TestClient(build_app())
    assert client.get("/health").json() == {"status": "ok"}
    assert [e["name"] for e in client.get("/estates").json()] == [estate.name]
    body = client.get(f"/estates/{estate.name}/plan").json()
    assert body["version"] == plan.version and body["waves"]
    assert client.get(f"/estates/{estate.name}/waves").json()[0]["number"] == 1
    events = client.get(f"/estates/{estate.name}/events", params={"wave": 1}).json()
    assert [e["message"] for e in events] == ["replicate started"]
    missing = client.get("/estates/nope/plan")
    assert missing.status_code == 404 and "nope" in missing.json()["detail"]
