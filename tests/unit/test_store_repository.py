"""Repository behaviour on a real store: SQLite always, PostgreSQL when reachable."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from migrationbox.store import db
from migrationbox.store import repository as repo
from migrationbox.store.models import (
    EstateRow,
    MoveGroupRow,
    PhaseRunRow,
    PlanRow,
    ServerRow,
    WaveRow,
)
from migrationbox.store.testing import store_url, tiny_estate, tiny_plan


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path) -> Iterator[str]:
    try:
        with store_url(request.param, tmp_path) as value:
            yield value
    except LookupError as exc:
        pytest.skip(f"PostgreSQL tests skipped: {exc}")


def _count(url: str, model) -> int:
    with db.session_scope(url) as s:
        return s.scalar(select(func.count()).select_from(model))


def test_estate_round_trip_keeps_every_field_and_order(url):
    estate = tiny_estate()
    with db.session_scope(url) as s:
        estate_id = repo.save_estate(s, estate)
    with db.session_scope(url, read_only=True) as s:
        loaded = repo.get_estate(s, "tiny")
        summaries = repo.list_estates(s)
    assert isinstance(estate_id, int)
    assert loaded == estate
    assert [x.server_id for x in loaded.servers] == ["web-01", "db-01", "dns-01"]
    assert loaded.servers[0].model_extra["agent_extra_field"] == {"kept": True}
    assert loaded.servers[0].discovered_at == datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert [(e.name, e.server_count, e.plan_count) for e in summaries] == [("tiny", 3, 0)]
    assert summaries[0].updated_at.tzinfo is not None


def test_save_estate_is_idempotent_and_replaces_servers(url):
    with db.session_scope(url) as s:
        first = repo.save_estate(s, tiny_estate())
    with db.session_scope(url) as s:
        again = repo.save_estate(s, tiny_estate())
    assert first == again
    assert _count(url, ServerRow) == 3
    with db.session_scope(url) as s:
        repo.save_estate(s, tiny_estate(server_ids=("web-01", "dns-01", "lb-01")))
    with db.session_scope(url) as s:
        ids = [x.server_id for x in repo.get_estate(s, "tiny").servers]
    assert ids == ["web-01", "dns-01", "lb-01"]
    assert _count(url, ServerRow) == 3
    assert _count(url, EstateRow) == 1


def test_bad_estate_leaves_stored_servers_untouched(url):
    with db.session_scope(url) as s:
        repo.save_estate(s, tiny_estate())
    bad = tiny_estate(server_ids=("web-01", "db-01", "db-01"))
    with db.session_scope(url) as s:
        with pytest.raises(repo.DuplicateServersError, match=r"'db-01' x2"):
            repo.save_estate(s, bad)
        # the session stays usable after the refusal
        assert repo.get_estate(s, "tiny") is not None
    with db.session_scope(url) as s:
        ids = [x.server_id for x in repo.get_estate(s, "tiny").servers]
    assert ids == ["web-01", "db-01", "dns-01"]


def test_failed_replacement_rolls_back_to_previous_servers(url, monkeypatch):
    """A failure half-way through replacing servers must not leave a partial list."""
    with db.session_scope(url) as s:
        repo.save_estate(s, tiny_estate())
    original = repo._server_values
    calls = {"n": 0}

    def exploding(server):
        calls["n"] += 1
        values = original(server)
        if calls["n"] == 2:
            values["hostname"] = None  # NOT NULL violation, raised by the database
        return values

    monkeypatch.setattr(repo, "_server_values", exploding)
    with db.session_scope(url) as s:
        with pytest.raises(Exception, match=r"(?i)not.null|null value"):
            repo.save_estate(s, tiny_estate(server_ids=("a-01", "b-01")))
        assert [x.server_id for x in repo.get_estate(s, "tiny").servers] == [
            "web-01", "db-01", "dns-01"]
    assert _count(url, ServerRow) == 3


def test_plan_round_trip_and_versions_increment(url):
    estate = tiny_estate()
    plan = tiny_plan(estate)
    with db.session_scope(url) as s:
        repo.save_estate(s, estate)
        v1 = repo.save_plan(s, plan)
    with db.session_scope(url) as s:
        v2 = repo.save_plan(s, plan)
    assert (v1.version, v2.version) == (1, 2)
    assert v1.model_dump(exclude={"version"}) == plan.model_dump(exclude={"version"})
    with db.session_scope(url, read_only=True) as s:
        latest = repo.get_plan(s, "tiny")
        first = repo.get_plan(s, "tiny", version=1)
        assert repo.get_plan(s, "tiny", version=3) is None
        assert repo.get_plan(s, "nope") is None
        summaries = repo.list_plans(s, "tiny")
        wave_rows = repo.waves(s, "tiny")
    assert latest == v2 and first == v1
    assert latest.created_at == plan.created_at
    assert [(p.version, p.status, p.wave_count, p.server_count) for p in summaries] == [
        (1, "superseded", 3, 3), (2, "planned", 3, 3)]
    assert [(w.number, w.name, w.server_count, w.needs_approval, w.status) for w in wave_rows] == [
        (1, "Wave 1", 1, False, "pending"), (2, "Wave 2", 1, True, "pending"),
        (3, "Wave 3", 1, True, "pending")]
    assert wave_rows[2].predicted_monthly_usd == 30.0 and wave_rows[2].estimated_hours == 3.75
    assert _count(url, MoveGroupRow) == 6


def test_plan_naming_unknown_servers_is_refused_and_nothing_stored(url):
    estate = tiny_estate()
    with db.session_scope(url) as s:
        repo.save_estate(s, estate)
        repo.save_plan(s, tiny_plan(estate))
    bad = tiny_plan(estate, extra_server_ids=("ghost-02", "ghost-01"))
    with db.session_scope(url) as s, pytest.raises(repo.UnknownServersError) as err:
        repo.save_plan(s, bad)
    assert err.value.server_ids == ["ghost-01", "ghost-02"]
    message = str(err.value)
    assert "'ghost-01'" in message and "'ghost-02'" in message and "waves[" in message
    assert "Nothing was stored" in message
    assert (_count(url, PlanRow), _count(url, WaveRow), _count(url, MoveGroupRow)) == (1, 3, 3)
    with db.session_scope(url) as s:
        assert [p.status for p in repo.list_plans(s, "tiny")] == ["planned"]


def test_plan_for_unknown_estate_is_refused(url):
    with db.session_scope(url) as s, pytest.raises(repo.UnknownEstateError, match="'tiny'"):
        repo.save_plan(s, tiny_plan(tiny_estate()))
    assert _count(url, PlanRow) == 0


def test_set_wave_status(url):
    estate = tiny_estate()
    with db.session_scope(url) as s:
        repo.save_estate(s, estate)
        repo.save_plan(s, tiny_plan(estate))
        repo.save_plan(s, tiny_plan(estate))
        record = repo.set_wave_status(s, "tiny", 2, "running")
        repo.set_wave_status(s, estate="tiny", plan_version=1, wave=1, status="completed")
        with pytest.raises(repo.StoreError, match=r"waves\.status: 'bogus'"):
            repo.set_wave_status(s, "tiny", 1, "bogus")
        with pytest.raises(repo.PlanNotFoundError, match="no wave 9"):
            repo.set_wave_status(s, "tiny", 9, "running")
    assert (record.plan_version, record.number, record.status) == (2, 2, "running")
    with db.session_scope(url) as s:
        assert [w.status for w in repo.waves(s, "tiny")] == ["pending", "running", "pending"]
        assert [w.status for w in repo.waves(s, "tiny", 1)] == ["completed", "pending", "pending"]
        assert repo.wave_statuses(s, "tiny", 1) == {1: "completed", 2: "pending", 3: "pending"}
        assert repo.wave_statuses(s, "tiny") == {1: "pending", 2: "running", 3: "pending"}
        assert repo.wave_statuses(s, "unknown") == {}


def test_phase_runs_upsert_per_run_wave_phase(url):
    estate = tiny_estate()
    t0 = datetime(2025, 2, 1, 10, 0, tzinfo=UTC)
    key = {"estate": "tiny", "plan_version": 1, "wave": 1, "dag_run_id": "manual__1"}
    with db.session_scope(url) as s:
        repo.save_estate(s, estate)
        repo.record_phase_start(s, **key, phase="preflight", started_at=t0, details={"try": 1})
        failed = repo.record_phase_end(s, **key, phase="preflight", status="failed",
                                       summary="no backup", finished_at=t0 + timedelta(seconds=5))
        # Airflow retries the task: same row, second attempt
        repo.record_phase_start(s, **key, phase="preflight", started_at=t0 + timedelta(minutes=1))
        ok = repo.record_phase_end(s, **key, phase="preflight", status="success",
                                   summary="ok", details={"checks": 6},
                                   finished_at=t0 + timedelta(minutes=1, seconds=3))
        # an end without a start still records, and another run is separate
        repo.record_phase_end(s, **key, phase="provision", status="skipped")
        repo.record_phase_start(s, **{**key, "dag_run_id": "manual__2"}, phase="preflight")
        with pytest.raises(repo.StoreError, match=r"phase_runs\.status"):
            repo.record_phase_end(s, **key, phase="preflight", status="done")
        with pytest.raises(repo.UnknownEstateError):
            repo.record_phase_start(s, **{**key, "estate": "other"}, phase="preflight")
    assert failed.status == "failed" and failed.duration_s == 5
    assert (ok.status, ok.attempts, ok.summary, ok.duration_s) == ("success", 2, "ok", 3)
    assert ok.details == {"checks": 6}
    assert _count(url, PhaseRunRow) == 3
    with db.session_scope(url, read_only=True) as s:
        run1 = repo.phase_runs(s, "tiny", 1, dag_run_id="manual__1")
        everything = repo.phase_runs(s, "tiny", 1)
        assert repo.phase_runs(s, "tiny", 2) == []
    assert [(r.phase, r.status) for r in run1] == [("preflight", "success"),
                                                   ("provision", "skipped")]
    assert len(everything) == 3


def test_approvals_upsert_per_gate(url):
    with db.session_scope(url) as s:
        repo.save_estate(s, tiny_estate())
        repo.record_approval(s, estate="tiny", wave=1, dag_run_id="r1", gate="cutover",
                             decision="rejected", approved_by="ana", comment="not yet")
        repo.record_approval(s, estate="tiny", wave=1, dag_run_id="r1", gate="cutover",
                             decision="approved", approved_by="bea")
        repo.record_approval(s, estate="tiny", wave=1, dag_run_id="r1", gate="decommission",
                             decision="pending")
        repo.record_approval(s, estate="tiny", wave=1, dag_run_id="r1", gate="budget",
                             decision="failed", approved_by="timeout or error")
        with pytest.raises(repo.StoreError, match=r"approvals\.decision: 'maybe'"):
            repo.record_approval(s, estate="tiny", wave=1, dag_run_id="r1", gate="x",
                                 decision="maybe")
    with db.session_scope(url) as s:
        rows = repo.approvals(s, "tiny", wave=1, dag_run_id="r1")
        assert repo.approvals(s, "tiny", dag_run_id="other") == []
    assert [(a.gate, a.decision, a.approved_by, a.comment) for a in rows] == [
        ("cutover", "approved", "bea", None), ("decommission", "pending", None, None),
        ("budget", "failed", "timeout or error", None)]
    assert rows[0].responded_at is not None and rows[1].responded_at is None


def test_endpoints_upsert_merges_sides(url):
    with db.session_scope(url) as s:
        repo.save_estate(s, tiny_estate())
        repo.upsert_endpoint(s, estate="tiny", server_id="db-01", kind="database", name="app",
                             source_uri="postgresql://lab/app", details={"rows": 10})
        merged = repo.upsert_endpoint(s, estate="tiny", server_id="db-01", kind="database",
                                      name="app", target_uri="postgresql://target/app",
                                      details={"engine": "postgres"})
        repo.upsert_endpoint(s, estate="tiny", server_id="web-01", kind="http", name="health",
                             source_uri="http://127.0.0.1:1/health")
        with pytest.raises(repo.StoreError, match=r"server_endpoints\.kind: 'ftp'"):
            repo.upsert_endpoint(s, estate="tiny", server_id="x", kind="ftp", name="n")
    assert (merged.source_uri, merged.target_uri) == ("postgresql://lab/app",
                                                      "postgresql://target/app")
    assert merged.details == {"rows": 10, "engine": "postgres"}
    assert dataclasses.asdict(merged) == vars(merged)  # plain data, convertible for XCom
    with db.session_scope(url) as s:
        assert len(repo.endpoints(s, "tiny")) == 2
        assert [e.name for e in repo.endpoints(s, "tiny", kind="http")] == ["health"]
        assert [e.kind for e in repo.endpoints(s, "tiny", server_id="db-01")] == ["database"]


def test_cloud_resource_ledger(url):
    common = {"estate": "tiny", "created_by_run": "r1"}
    with db.session_scope(url) as s:
        repo.save_estate(s, tiny_estate())
        repo.record_cloud_resource(s, **common, wave=1, resource_type="vpc",
                                   resource_id="vpc-1", tags={"wave": "tiny/wave-01"})
        repo.record_cloud_resource(s, **common, wave=1, resource_type="instance",
                                   resource_id="i-1", name="web-01")
        again = repo.record_cloud_resource(s, estate="tiny", wave=1, resource_type="instance",
                                           resource_id="i-1", created_by_run="r2")
        repo.record_cloud_resource(s, **common, wave=2, resource_type="instance",
                                   resource_id="i-2")
        assert repo.mark_resource_deleted(s, estate="tiny", resource_type="instance",
                                          resource_id="i-1")
        assert repo.mark_resource_deleted(s, estate="tiny", resource_type="instance",
                                          resource_id="i-1")
        assert not repo.mark_resource_deleted(s, estate="tiny", resource_type="instance",
                                              resource_id="i-404")
    assert (again.name, again.created_by_run) == ("web-01", "r1")
    with db.session_scope(url) as s:
        live = repo.cloud_resources(s, "tiny", wave=1)
        every = repo.cloud_resources(s, "tiny", wave=1, live_only=False)
        all_waves = repo.cloud_resources(s, "tiny")
    assert [r.resource_id for r in live] == ["vpc-1"]
    assert live[0].tags == {"wave": "tiny/wave-01"}
    assert [(r.resource_id, r.live) for r in every] == [("vpc-1", True), ("i-1", False)]
    assert [r.resource_id for r in all_waves] == ["vpc-1", "i-2"]
    # re-created under the same deterministic id: live again, still one row
    with db.session_scope(url) as s:
        back = repo.record_cloud_resource(s, **common, wave=1, resource_type="instance",
                                          resource_id="i-1")
    assert back.live and back.id == every[1].id


def test_events_cursor(url):
    with db.session_scope(url) as s:
        repo.save_estate(s, tiny_estate())
        first = repo.add_event(s, estate="tiny", wave=1, run_id="r1", phase="preflight",
                               kind="phase_start",
                               message="preflight started",
                               data={"at": datetime(2025, 1, 1, tzinfo=UTC)})
        repo.add_event(s, estate="tiny", wave=2, message="other wave")
        repo.add_event(s, estate="tiny", wave=1, dag_run_id="r1", message="preflight ok",
                       kind="phase_end")
    with db.session_scope(url) as s:
        wave1 = repo.events(s, "tiny", wave=1)
        newer = repo.events(s, "tiny", since_id=first.id)
        assert repo.events(s, "unknown") == []
    assert [e.message for e in wave1] == ["preflight started", "preflight ok"]
    assert wave1[0].data == {"at": "2025-01-01T00:00:00Z"}
    assert [e.dag_run_id for e in wave1] == ["r1", "r1"]
    assert [e.message for e in newer] == ["other wave", "preflight ok"]
    assert all(e.at.tzinfo is not None for e in wave1)
