"""Remediation executor and incident store behaviour that the chaos tests do not force:
half-done actions, failed verification, refused pre-checks, incident ids and dedupe."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import create_engine

from migrationbox.healer.remediation import RemediationContext, RemediationError, execute


class Scale:
    """A remediation with a real effect on ``state`` (a dict standing for the resource)."""

    action = "horizontal_scale"
    risky = False

    def __init__(self, state: dict[str, Any], fail_after_first_step: bool = False,
                 refuse: str | None = None) -> None:
        self.state, self.fail, self.refuse = state, fail_after_first_step, refuse

    def precheck(self, ctx: RemediationContext) -> str | None:
        return self.refuse

    def apply(self, ctx: RemediationContext, log) -> dict[str, Any]:
        before = self.state["instances"]
        self.state["instances"] += 1
        log(f"launched one: {before} -> {self.state['instances']}")
        if self.fail:
            err = RemediationError("second launch: InsufficientInstanceCapacity")
            err.undo = {"before": before}  # type: ignore[attr-defined]
            raise err
        self.state["instances"] += 1
        return {"before": before}

    def rollback(self, ctx: RemediationContext, undo: dict[str, Any], log) -> None:
        self.state["instances"] = undo["before"]
        log(f"back to {undo['before']}")


def _ctx(check) -> RemediationContext:
    return RemediationContext(estate="e", server_id="web-01", action="horizontal_scale",
                              params={}, remediation_id="r1", check=check,
                              verify_timeout_s=0.3, verify_interval_s=0.1)


def test_success_is_verified() -> None:
    state = {"instances": 1}
    out = execute(Scale(state), _ctx(lambda: (state["instances"] >= 3, "cpu 30")))
    assert out.success and out.verified and not out.rolled_back
    assert state["instances"] == 3


def test_half_done_action_is_rolled_back_and_says_why() -> None:
    state = {"instances": 1}
    out = execute(Scale(state, fail_after_first_step=True), _ctx(lambda: (True, "")))
    assert not out.success and out.rolled_back
    assert "InsufficientInstanceCapacity" in (out.error or "")
    assert state["instances"] == 1
    assert [t for _, t in out.steps][-1] == "rolled back"


def test_unrecovered_metric_is_rolled_back() -> None:
    state = {"instances": 1}
    out = execute(Scale(state), _ctx(lambda: (False, "cpu still 97")))
    assert not out.success and out.rolled_back
    assert out.rollback_reason and "did not recover" in out.rollback_reason
    assert state["instances"] == 1


def test_refused_precheck_does_nothing() -> None:
    state = {"instances": 9}
    out = execute(Scale(state, refuse="cap of 10 instances"), _ctx(lambda: (True, "")))
    assert out.refused == "cap of 10 instances" and not out.success
    assert state["instances"] == 9


def test_a_check_that_raises_counts_as_not_recovered() -> None:
    state = {"instances": 1}

    def broken() -> tuple[bool, str]:
        raise ConnectionError("monitoring API down")

    out = execute(Scale(state), _ctx(broken))
    assert not out.success and out.rolled_back
    assert any("monitoring API down" in t for _, t in out.steps)


@pytest.fixture()
def store(tmp_path):
    from migrationbox.healer.store import IncidentStore

    return IncidentStore(create_engine(f"sqlite:///{tmp_path / 'h.db'}"))


def _incident(incident_id: str, status: str = "open"):
    from migrationbox.healer.incident import Incident

    return Incident(incident_id=incident_id, title="t", resource="web-01", severity="P2",
                    status=status, summary="s", detected_at=datetime.now(UTC))


def test_incident_ids_follow_the_plan_and_dedupe(store) -> None:
    a = store.create("e", "high_cpu", _incident, seen_on="web-01")
    b = store.create("e", "high_cpu", _incident, seen_on="web-01")
    day = datetime.now(UTC).date().isoformat()
    assert a.incident_id == f"INC-{day}-001" and b.incident_id == f"INC-{day}-002"
    assert store.open_for("e", "web-01", "high_cpu").incident_id == b.incident_id
    from migrationbox.healer.incident import IncidentStatus

    a.status = b.status = IncidentStatus.resolved
    store.save(a)
    store.save(b)
    assert store.open_for("e", "web-01", "high_cpu") is None
    c = store.create("e", "high_cpu", lambda i: _incident(i, "alerted"), seen_on="web-01")
    assert store.open_for("e", "web-01", "high_cpu", within=timedelta(minutes=15)
                          ).incident_id == c.incident_id
    assert store.open_for("e", "web-01", "high_cpu", within=timedelta(minutes=15),
                          now=datetime.now(UTC) + timedelta(hours=1)) is None
    assert store.list("e")[0].incident_id == c.incident_id
    assert store.get("INC-1999-01-01-001") is None


def test_approved_risky_remediation_runs_and_its_refusal_is_reported(tmp_path) -> None:
    """``restore_from_backup`` waits for a person; once approved, its pre-check refuses
    (this server has no database to restore) and the incident says so instead of
    pretending."""
    from migrationbox.healer.incident import IncidentStatus
    from migrationbox.healer.runtime import Healer
    from migrationbox.healer.sensing import Target

    healer = Healer(create_engine(f"sqlite:///{tmp_path / 'h.db'}"), notifiers=[])

    def awaiting(incident_id: str):
        inc = _incident(incident_id)
        inc.status = IncidentStatus.awaiting_approval
        return inc

    inc = healer.incidents.create("e", "data_corruption", awaiting, seen_on="web-01")
    done = healer.execute_approved(inc.incident_id, "alice",
                                   targets=[Target(estate="e", server_id="web-01", wave=1)])
    assert done.status is IncidentStatus.failed
    assert done.remediation is not None and done.remediation.approved_by == "alice"
    assert "no database behind this server" in (done.remediation.rollback_reason or "")
    _, report = healer.incidents.get(inc.incident_id)
    assert "approved by alice" in report
    # approving again is a no-op: the incident is no longer awaiting approval
    again = healer.execute_approved(inc.incident_id, "bob")
    assert again.status is IncidentStatus.failed and again.remediation.approved_by == "alice"
    assert healer.log.records() == []  # a refusal is not an outcome to learn from


def test_rejected_or_unanswered_approval_runs_nothing_and_says_who(tmp_path, monkeypatch
                                                                  ) -> None:
    """The approval DAG's last task: "Reject", or the timeout's default, leaves the
    incident with people and records who (or that nobody) decided."""
    from migrationbox.healer.incident import IncidentStatus
    from migrationbox.healer.jobs import apply_approval
    from migrationbox.healer.runtime import Healer

    monkeypatch.setenv("MIGRATIONBOX_STORE_URL", f"sqlite:///{tmp_path / 'h.db'}")
    monkeypatch.setenv("MIGRATIONBOX_HOME", str(tmp_path / "mb"))
    from migrationbox.store.db import engine

    healer = Healer(engine(), notifiers=[])

    def awaiting(incident_id: str):
        inc = _incident(incident_id)
        inc.status = IncidentStatus.awaiting_approval
        return inc

    first = healer.incidents.create("e", "database_deadlock", awaiting, seen_on="db-01")
    second = healer.incidents.create("e", "data_corruption", awaiting, seen_on="db-01")
    out = apply_approval(first.incident_id, {"chosen_options": ["Reject"],
                                             "responded_by_user": {"id": "7", "name": "carol"}})
    assert out == {"incident_id": first.incident_id, "executed": False, "why": "rejected",
                   "status": "alerted"}
    timed_out = apply_approval(second.incident_id, {"chosen_options": ["Reject"],
                                                    "responded_by_user": None})
    assert timed_out["why"] == "no answer before the approval timed out"
    inc, report = healer.incidents.get(first.incident_id)
    assert inc.status is IncidentStatus.alerted
    assert "not approved: rejected (carol)" in report
    assert healer.log.records() == []
    # deciding twice changes nothing
    again = apply_approval(first.incident_id, {"chosen_options": ["Approve"],
                                               "responded_by_user": {"name": "dave"}})
    assert again["status"] == "alerted"


def test_heal_conf_variable_defaults_and_run_conf_override() -> None:
    from pydantic import ValidationError

    from migrationbox.healer.jobs import approval_requests, effective_conf

    conf = effective_conf({"window_s": 60, "interval_s": 2}, {"interval_s": 5})
    assert conf == {"window_s": 60, "interval_s": 5}
    assert effective_conf(None, None) == {}
    with pytest.raises(ValidationError, match="interval_s"):
        effective_conf({"interval_s": 0}, {})
    with pytest.raises(ValidationError, match="windw_s"):
        effective_conf({}, {"windw_s": 5})
    assert approval_requests({"pending_approvals": ["INC-1", "INC-2"]}) == [
        {"trigger_run_id": "approval__INC-1", "conf": {"incident_id": "INC-1"}},
        {"trigger_run_id": "approval__INC-2", "conf": {"incident_id": "INC-2"}}]
    assert approval_requests({"pending_approvals": []}) == []


def test_probe_history_is_pruned_to_its_retention(tmp_path) -> None:
    from migrationbox.healer.health import HealthResult, HealthStatus
    from migrationbox.healer.store import ProbeStore

    store = ProbeStore(create_engine(f"sqlite:///{tmp_path / 'p.db'}"))
    now = datetime.now(UTC)
    for hours in (50, 30, 2, 0):
        store.add("e", HealthResult("web-01", HealthStatus.healthy, now - timedelta(hours=hours)))
    assert store.prune(now - timedelta(hours=24)) == 2
    assert [round((now - r.observed_at).total_seconds() / 3600) for r in
            store.last("e", "web-01", 10)] == [0, 2]
