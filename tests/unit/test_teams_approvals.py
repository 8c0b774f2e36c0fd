"""Approvals from a Teams card: cards posted once per gate and conversation, only the
estate's approvers answer, the answer goes to Airflow's HITL API, the cards follow, and
the SLA clock reminds, escalates and auto-approves (only under its criteria) on an
injected clock. A fake Airflow client and a fake Sender; the store is real (SQLite)."""

from __future__ import annotations

import argparse
import copy
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from migrationbox.platform.rest import AirflowApiError
from migrationbox.store import db, repository
from migrationbox.store.models import TeamsApprovalCardRow
from migrationbox.teams import approvals, sla, state
from migrationbox.teams.cards import validate_card
from migrationbox.teams.contracts import ConversationRef, Inbound, Reply

# Tuesday 2026-12-08 10:00 UTC: inside business hours
T0 = datetime(2026, 12, 8, 10, 0, tzinfo=UTC)


# -- fakes ---------------------------------------------------------------------------


class FakeAirflow:
    """hitl_details / respond_hitl as Airflow 3.3 answers them (the fields used)."""

    def __init__(self) -> None:
        self.details: list[dict[str, Any]] = []
        self.responses: list[dict[str, Any]] = []

    def add_gate(self, estate: str, wave: int, task_id: str, *, run_id: str = "manual__1",
                 created: datetime = T0, ti_state: str = "awaiting_input",
                 params: dict[str, Any] | None = None) -> None:
        self.details.append({
            "task_instance": {"dag_id": f"migrate__{estate}__wave_{wave:02d}",
                              "dag_run_id": run_id, "task_id": task_id, "map_index": -1,
                              "state": ti_state},
            "options": ["Approve", "Reject"], "subject": f"{task_id}?",
            "created_at": created.isoformat(), "params": params or {},
            "response_received": False, "responded_by_user": None, "responded_at": None,
            "chosen_options": None, "params_input": {}})

    def hitl_details(self, dag_id: str, run_id: str, pending_only: bool = False
                     ) -> list[dict[str, Any]]:
        out = []
        for d in self.details:
            ti = d["task_instance"]
            if dag_id != "~" and ti["dag_id"] != dag_id:
                continue
            if run_id != "~" and ti["dag_run_id"] != run_id:
                continue
            if pending_only and d["response_received"]:
                continue
            out.append(copy.deepcopy(d))
        return out

    def respond_hitl(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1,
                     chosen_options: tuple[str, ...] | list[str] = ("Approve",),
                     params_input: dict[str, Any] | None = None,
                     by: str = "teams-bot") -> dict[str, Any]:
        for d in self.details:
            ti = d["task_instance"]
            if (ti["dag_id"], ti["dag_run_id"], ti["task_id"]) == (dag_id, run_id, task_id):
                if d["response_received"]:
                    raise AirflowApiError("PATCH", "hitlDetails", 409, "already updated")
                if set(chosen_options) - set(d["options"]):
                    raise AirflowApiError("PATCH", "hitlDetails", 400, "invalid option")
                d.update(response_received=True, chosen_options=list(chosen_options),
                         params_input=dict(params_input or {}),
                         responded_by_user={"id": by, "name": by},
                         responded_at=datetime.now(UTC).isoformat())
                ti["state"] = "scheduled"
                self.responses.append({"task_id": task_id, "chosen": list(chosen_options),
                                       "params_input": dict(params_input or {})})
                return copy.deepcopy(d)
        raise AirflowApiError("PATCH", "hitlDetails", 404, "no such task")

    def waiting(self) -> list[str]:
        return [d["task_instance"]["task_id"] for d in self.details
                if not d["response_received"]]


class FakeSender:
    def __init__(self) -> None:
        self.sent: list[tuple[str, Reply, str]] = []
        self.updates: list[tuple[str, str, Reply]] = []
        self.fail_for: set[str] = set()

    def send(self, ref: ConversationRef, reply: Reply) -> str:
        if ref.conversation_id in self.fail_for:
            raise ConnectionError("connector unreachable")
        if reply.card is not None:
            validate_card(reply.card)
        activity = f"act-{len(self.sent) + 1}"
        self.sent.append((ref.conversation_id, reply, activity))
        return activity

    def update(self, ref: ConversationRef, activity_id: str, reply: Reply) -> None:
        assert reply.card is not None
        validate_card(reply.card)
        self.updates.append((ref.conversation_id, activity_id, reply))

    def cards(self) -> list[dict[str, Any]]:
        return [r.card for _, r, _ in self.sent if r.card is not None]

    def texts(self) -> list[str]:
        return [r.text for _, r, _ in self.sent if r.text]


# -- the store: an estate planned from a small inventory ------------------------------


def _record(sid: str, role: str, ip: str, ports: list[int], kind: str, env: str) -> dict:
    return {
        "server_id": sid, "hostname": f"{sid}.corp.local", "ip_addresses": [ip],
        "os": {"type": "Linux", "distribution": "Ubuntu", "version": "22.04"},
        "hardware": {"cpu_cores": 4, "ram_gb": 16, "disk_total_gb": 100},
        "applications": [{"name": role, "ports": ports, "kind": kind, "data_size_gb": 1.0}],
        "network_dependencies": [],
        "performance_baseline": {"cpu_avg_utilization_pct": 30,
                                 "memory_avg_utilization_pct": 50},
        "environment": env, "role": role,
    }


def _plan(url: str, root: Path, estate: str, env: str) -> None:
    from migrationbox.inventory.validation import load_estate
    from migrationbox.service import plan_estate

    folder = root / "inventory"
    folder.mkdir(parents=True)
    for r in (_record("web-01", "web", "10.40.0.11", [443], "web", env),
              _record("db-01", "postgresql-primary", "10.40.0.13", [5432], "database", env)):
        (folder / f"{r['server_id']}.json").write_text(json.dumps(r))
    planned = plan_estate(folder, estate=estate, store=False, spec_folder=root / "specs",
                          publish=False)
    with db.session_scope(url) as s:
        repository.save_estate(s, load_estate(folder, estate))
        repository.save_plan(s, planned.plan)


def _ref(cid: str) -> ConversationRef:
    return ConversationRef(conversation_id=cid, service_url="https://smba.example/emea/",
                           bot_id="28:bot", tenant_id="t-1", is_group=True,
                           conversation_type="channel")


def _user(aad: str | None, name: str, conv: str = "19:acme") -> Inbound:
    return Inbound(activity_id="a-1", user_id=f"29:{name}", user_aad_id=aad,
                   user_name=name, conversation=_ref(conv))


SARAH = _user("aad-sarah", "Sarah DevOps")
BOB = _user("aad-bob", "Bob Backup")
MALLORY = _user("aad-mallory", "Mallory")


@pytest.fixture(autouse=True)
def _no_settle_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    """The 5 s an answer waits for a freshly parked gate (approvals.SETTLE_SECONDS) is a
    real sleep; these tests' gates are fakes, so it is skipped (and checked on its own)."""
    from migrationbox.teams import approvals as mod

    monkeypatch.setattr(mod, "_sleep", lambda seconds: None)


@pytest.fixture
def url(tmp_path: Path) -> str:
    u = f"sqlite:///{tmp_path / 'store.db'}"
    _plan(u, tmp_path / "acme", "acme", "production")
    _plan(u, tmp_path / "sandbox", "sandbox", "development")
    with db.session_scope(u) as s:
        state.remember_conversation(s, _ref("19:acme"), estate="acme")
        state.remember_conversation(s, _ref("19:general"))
        state.remember_conversation(s, _ref("19:globex"), estate="globex")
        state.remember_conversation(s, _ref("19:sandbox"), estate="sandbox")
        for estate in ("acme", "sandbox"):
            state.set_approvers(s, estate, [("aad-sarah", "Sarah DevOps", "primary"),
                                            ("aad-bob", "Bob Backup", "backup")])
        repository.record_phase_end(s, estate="acme", plan_version=1, wave=1,
                                    dag_run_id="manual__1", phase="preflight",
                                    status="success", summary="9 checks passed")
        repository.add_event(s, estate="acme", wave=1, run_id="manual__1",
                             phase="previous_wave_completed", kind="gate_passed",
                             message="gate previous_wave_completed: first wave", data={})
    return u


def _rows(url: str) -> list[TeamsApprovalCardRow]:
    from sqlalchemy import select

    with db.session_scope(url, read_only=True) as s:
        rows = list(s.scalars(select(TeamsApprovalCardRow).order_by(TeamsApprovalCardRow.id)))
        s.expunge_all()
    return rows


CUTOVER = "cutover.approve_cutover"
RISKS = "risk.approve_plan_risks"


# -- posting -------------------------------------------------------------------------


def test_a_waiting_gate_is_posted_once_to_each_conversation_of_its_estate(url: str):
    air, sender = FakeAirflow(), FakeSender()
    air.add_gate("acme", 1, CUTOVER)
    air.add_gate("acme", 1, RISKS, ti_state="running")  # not parked yet: not posted
    assert approvals.post_waiting_gates(store_url=url, client=air, sender=sender) == 2
    assert {c for c, _, _ in sender.sent} == {"19:acme", "19:general"}
    card = sender.cards()[0]
    text = json.dumps(card)
    for evidence in ("Traffic Cutover", "cutover@wave-1", "Risk Level", "high",
                     "preflight: 9 checks passed", "gate previous_wave_completed",
                     "Sarah DevOps", "Bob Backup (backup)", "urgent (respond by 2026-12-08 "
                     "11:00 UTC)", "6/7", "weighted-DNS canary"):
        assert evidence in text, evidence
    rows = _rows(url)
    assert [(r.gate, r.urgency, r.activity_id) for r in rows] == [
        ("cutover", "urgent", "act-1"), ("cutover", "urgent", "act-2")]
    assert rows[0].respond_by == T0 + timedelta(hours=1)
    assert approvals.post_waiting_gates(store_url=url, client=air, sender=sender) == 0
    assert len(sender.sent) == 2


def test_a_failed_send_is_retried_on_the_next_scan(url: str):
    air, sender = FakeAirflow(), FakeSender()
    air.add_gate("acme", 1, CUTOVER)
    sender.fail_for = {"19:general"}
    assert approvals.post_waiting_gates(store_url=url, client=air, sender=sender) == 1
    assert [r.conversation_id for r in _rows(url)] == ["19:acme"]
    sender.fail_for = set()
    assert approvals.post_waiting_gates(store_url=url, client=air, sender=sender) == 1
    assert sorted(r.conversation_id for r in _rows(url)) == ["19:acme", "19:general"]


# -- answering -----------------------------------------------------------------------


def _answer(url: str, air: FakeAirflow, sender: FakeSender, user: Inbound, decision: str,
            gate: str = "cutover", reason: str | None = None,
            when: datetime | None = None) -> approvals.GateAnswer:
    return approvals.answer_gate(store_url=url, client=air, estate="acme", gate=gate,
                                 decision=decision,  # type: ignore[arg-type]
                                 user=user, reason=reason, when=when, sender=sender)


def test_a_user_not_on_the_list_is_refused_and_the_gate_keeps_waiting(url: str):
    air, sender = FakeAirflow(), FakeSender()
    air.add_gate("acme", 1, CUTOVER)
    answer = _answer(url, air, sender, MALLORY, "approve")
    assert not answer.ok
    assert answer.message == ("you may not approve acme; approvers are Sarah DevOps, "
                              "Bob Backup (backup)")
    assert air.responses == [] and air.waiting() == [CUTOVER]
    nobody = approvals.answer_gate(store_url=url, client=air, estate="globex",
                                   gate="cutover", decision="approve", user=SARAH,
                                   reason=None, when=None, sender=sender)
    assert not nobody.ok and "none set" in nobody.message


def test_reject_needs_a_reason(url: str):
    air, sender = FakeAirflow(), FakeSender()
    air.add_gate("acme", 1, CUTOVER)
    answer = _answer(url, air, sender, SARAH, "reject", reason="   ")
    assert not answer.ok and "needs a reason" in answer.message
    assert air.responses == []


def test_an_approver_answers_in_airflow_and_every_card_shows_who_and_when(url: str):
    air, sender = FakeAirflow(), FakeSender()
    air.add_gate("acme", 1, CUTOVER)
    approvals.post_waiting_gates(store_url=url, client=air, sender=sender)
    answer = _answer(url, air, sender, SARAH, "approve")
    assert answer.ok, answer.message
    assert answer.message.startswith("cutover@wave-1 of acme approved by Sarah DevOps at ")
    assert air.responses == [{"task_id": CUTOVER, "chosen": ["Approve"], "params_input": {
        "teams_user": "Sarah DevOps", "teams_user_key": "aad-sarah"}}]
    assert {(c, a) for c, a, _ in sender.updates} == {("19:acme", "act-1"),
                                                     ("19:general", "act-2")}
    decided = sender.updates[0][2].card
    assert "Approval granted by Sarah DevOps" in json.dumps(decided, ensure_ascii=False)
    assert "actions" not in decided
    assert answer.card is not None and "actions" not in answer.card
    assert {(r.decision, r.decided_by) for r in _rows(url)} == {("approved", "Sarah DevOps")}
    with db.session_scope(url, read_only=True) as s:
        events = [e for e in repository.events(s, "acme") if e.kind == "approval_teams"]
    assert events[-1].data["by"] == "Sarah DevOps"
    again = _answer(url, air, sender, BOB, "reject", reason="too late")
    assert not again.ok
    assert "already decided (approved) by Sarah DevOps at" in again.message
    assert len(air.responses) == 1


def test_a_rejection_carries_its_reason_to_airflow_and_the_card(url: str):
    air, sender = FakeAirflow(), FakeSender()
    air.add_gate("acme", 1, CUTOVER)
    approvals.post_waiting_gates(store_url=url, client=air, sender=sender)
    answer = _answer(url, air, sender, BOB, "reject", reason="Need more testing")
    assert answer.ok
    assert air.responses[0]["chosen"] == ["Reject"]
    assert air.responses[0]["params_input"]["reason"] == "Need more testing"
    text = json.dumps(sender.updates[0][2].card, ensure_ascii=False)
    assert "Rejected by Bob Backup" in text and "Reason: Need more testing" in text


def test_a_gate_answered_elsewhere_first_is_reported_with_who_answered(url: str):
    air, sender = FakeAirflow(), FakeSender()
    air.add_gate("acme", 1, CUTOVER)
    approvals.post_waiting_gates(store_url=url, client=air, sender=sender)
    real = air.hitl_details
    # the UI answers between the bot's look-up and its answer: Airflow says 409
    def racing(dag_id: str, run_id: str, pending_only: bool = False):
        found = real(dag_id, run_id, pending_only)
        if pending_only and found:
            air.respond_hitl("migrate__acme__wave_01", "manual__1", CUTOVER,
                             chosen_options=["Reject"], by="admin")
            air.responses.clear()
        return found
    air.hitl_details = racing  # type: ignore[method-assign]
    answer = _answer(url, air, sender, SARAH, "approve")
    air.hitl_details = real  # type: ignore[method-assign]
    assert not answer.ok
    assert "already decided (rejected) by admin at" in answer.message
    # the next scan shows the UI's answer on the cards and stops their clock
    approvals.post_waiting_gates(store_url=url, client=air, sender=sender)
    assert {r.decision for r in _rows(url)} == {"rejected"}
    assert "Rejected by admin" in json.dumps(sender.updates[-1][2].card, ensure_ascii=False)


def test_a_gate_cleared_to_ask_again_gets_a_new_card_and_clock(url: str):
    air, sender = FakeAirflow(), FakeSender()
    air.add_gate("acme", 1, CUTOVER)
    approvals.post_waiting_gates(store_url=url, client=air, sender=sender)
    assert _answer(url, air, sender, SARAH, "reject", reason="not tonight").ok
    # an operator clears the gate (the wave DAG's way to ask again): it waits once more
    air.details[0].update(response_received=False, chosen_options=None, params_input={},
                          responded_by_user=None, created_at=(T0 + timedelta(days=1))
                          .isoformat())
    air.details[0]["task_instance"]["state"] = "awaiting_input"
    assert approvals.post_waiting_gates(store_url=url, client=air, sender=sender) == 2
    rows = _rows(url)
    assert [(r.decision, r.activity_id) for r in rows] == [(None, "act-3"), (None, "act-4")]
    assert {r.respond_by for r in rows} == {T0 + timedelta(days=1, hours=1)}
    assert _answer(url, air, sender, SARAH, "approve").ok
    assert {r.decision for r in _rows(url)} == {"approved"}


def test_cards_of_a_gate_that_vanished_are_closed_and_their_clock_stops(url: str):
    air, sender = FakeAirflow(), FakeSender()
    air.add_gate("acme", 1, CUTOVER)
    approvals.post_waiting_gates(store_url=url, client=air, sender=sender)
    air.details.clear()  # the run was deleted
    assert approvals.post_waiting_gates(store_url=url, client=air, sender=sender) == 0
    assert {r.decision for r in _rows(url)} == {"closed"}
    assert _tick(url, air, sender, 90) == []
    assert sender.texts() == []


def test_a_reference_matching_two_waiting_gates_is_asked_back(url: str):
    air, sender = FakeAirflow(), FakeSender()
    air.add_gate("acme", 1, CUTOVER)
    air.add_gate("acme", 2, CUTOVER, run_id="manual__2")
    answer = _answer(url, air, sender, SARAH, "approve", gate="cutover")
    assert not answer.ok and "cutover@wave-1, cutover@wave-2; say which one" in answer.message
    assert air.responses == []
    assert _answer(url, air, sender, SARAH, "approve", gate="cutover@wave-2").ok
    assert air.waiting() == [CUTOVER] and air.details[1]["response_received"]
    assert _answer(url, air, sender, SARAH, "approve", gate="phase-6").ok
    missing = _answer(url, air, sender, SARAH, "approve", gate="budget")
    assert not missing.ok and "no gate of acme is waiting" in missing.message


def test_reschedule_keeps_the_gate_waiting_and_restarts_the_clock(url: str):
    air, sender = FakeAirflow(), FakeSender()
    air.add_gate("acme", 1, CUTOVER)
    approvals.post_waiting_gates(store_url=url, client=air, sender=sender)
    past = _answer(url, air, sender, SARAH, "reschedule", when=T0 - timedelta(days=1))
    assert not past.ok and "not in the future" in past.message
    far = _answer(url, air, sender, SARAH, "reschedule",
                  when=datetime.now(UTC) + timedelta(days=400))
    assert not far.ok and "more than 30 days ahead" in far.message
    naive = _answer(url, air, sender, SARAH, "reschedule", when=datetime(2027, 1, 1))
    assert not naive.ok and "time zone" in naive.message
    later = datetime.now(UTC).replace(microsecond=0) + timedelta(days=2)
    answer = _answer(url, air, sender, SARAH, "reschedule", when=later)
    assert answer.ok and "keeps waiting" in answer.message
    assert air.responses == [] and air.waiting() == [CUTOVER]
    rows = _rows(url)
    assert {r.respond_by for r in rows} == {later + timedelta(hours=1)}
    assert all(r.decided_at is None for r in rows)
    updated = json.dumps(sender.updates[-1][2].card)
    assert "Scheduled" in updated and later.strftime("%Y-%m-%d %H:%M") in updated
    assert "actions" in sender.updates[-1][2].card  # still answerable
    assert "Rescheduled by Sarah DevOps" in json.dumps(answer.card, ensure_ascii=False)
    # the clock restarted: no reminder before the new time
    assert approvals.sla_tick(store_url=url, client=air, sender=sender,
                              now=later + timedelta(minutes=5)) == []
    assert approvals.sla_tick(store_url=url, client=air, sender=sender,
                              now=later + timedelta(minutes=31))


def test_request_approval_posts_the_card_or_says_what_waits(url: str):
    air, sender = FakeAirflow(), FakeSender()
    air.add_gate("acme", 1, RISKS)
    asked = approvals.request_approval(store_url=url, client=air, estate="acme",
                                       gate="cutover", requested_by=MALLORY, sender=sender)
    assert not asked.ok
    assert asked.message == "gate 'cutover' is not waiting; waiting in acme: plan_risks@wave-1"
    asked = approvals.request_approval(store_url=url, client=air, estate="acme",
                                       gate="risk", requested_by=MALLORY, sender=sender)
    assert asked.ok and asked.card is not None
    validate_card(asked.card)
    assert len(sender.sent) == 2
    again = approvals.request_approval(store_url=url, client=air, estate="acme",
                                       gate="plan_risks@wave-1", requested_by=MALLORY,
                                       sender=sender)
    assert again.ok and len(sender.sent) == 4  # posted again, the rows point at it
    assert sorted(r.activity_id for r in _rows(url)) == ["act-3", "act-4"]


# -- the SLA clock -------------------------------------------------------------------


def _tick(url: str, air: FakeAirflow, sender: FakeSender, minutes: float) -> list[str]:
    return approvals.sla_tick(store_url=url, client=air, sender=sender,
                              now=T0 + timedelta(minutes=minutes))


def test_urgent_gate_reminds_once_then_escalates_to_the_backup_once(url: str):
    air, sender = FakeAirflow(), FakeSender()
    air.add_gate("acme", 1, CUTOVER)
    approvals.post_waiting_gates(store_url=url, client=air, sender=sender)
    assert _tick(url, air, sender, 10) == []
    reminded = _tick(url, air, sender, 31)
    assert reminded == ["acme cutover@wave-1: reminded @Sarah DevOps"]
    assert len(sender.texts()) == 2 and "@Sarah DevOps" in sender.texts()[0]
    assert _tick(url, air, sender, 40) == []
    escalated = _tick(url, air, sender, 61)
    assert escalated == ["acme cutover@wave-1: escalated to @Bob Backup"]
    assert "Backup approvers: @Bob Backup" in sender.texts()[-1]
    assert _tick(url, air, sender, 120) == []
    assert air.responses == []  # urgent never approves by itself
    assert all(r.reminded_at and r.escalated_at for r in _rows(url))


def test_standard_gate_counts_business_hours_only(url: str):
    air, sender = FakeAirflow(), FakeSender()
    friday_4pm = datetime(2026, 12, 11, 16, 0, tzinfo=UTC)
    air.add_gate("acme", 1, RISKS, created=friday_4pm)
    approvals.post_waiting_gates(store_url=url, client=air, sender=sender)
    # 1 business hour on Friday, 3 on Monday: due Monday 12:00
    assert {r.respond_by for r in _rows(url)} == {datetime(2026, 12, 14, 12, 0, tzinfo=UTC)}
    assert {r.urgency for r in _rows(url)} == {"standard"}
    weekend = datetime(2026, 12, 13, 20, 0, tzinfo=UTC)
    assert approvals.sla_tick(store_url=url, client=air, sender=sender, now=weekend) == []
    monday = datetime(2026, 12, 14, 11, 0, tzinfo=UTC)  # 180 business minutes
    assert approvals.sla_tick(store_url=url, client=air, sender=sender, now=monday)
    overdue = datetime(2026, 12, 15, 9, 0, tzinfo=UTC)
    assert approvals.sla_tick(store_url=url, client=air, sender=sender, now=overdue) == []


def test_emergency_gate_is_not_auto_approved_when_a_criterion_fails(url: str):
    air, sender = FakeAirflow(), FakeSender()
    air.add_gate("acme", 1, "rollback.approve_rollback")  # production, high risk
    approvals.post_waiting_gates(store_url=url, client=air, sender=sender)
    assert {r.urgency for r in _rows(url)} == {"emergency"}
    assert _tick(url, air, sender, 6) == ["acme rollback@wave-1: reminded @Sarah DevOps"]
    done = _tick(url, air, sender, 16)
    assert len(done) == 1 and "escalated, not auto-approved" in done[0]
    assert "non_production_or_low_risk (wave environment is production; risk level is " \
           "high)" in done[0]
    assert air.responses == [] and air.waiting() == ["rollback.approve_rollback"]
    assert _tick(url, air, sender, 30) == []  # escalated once


def test_emergency_gate_is_auto_approved_when_every_criterion_holds(url: str):
    air, sender = FakeAirflow(), FakeSender()
    air.details.clear()
    air.add_gate("sandbox", 1, "rollback.approve_rollback")  # non-production
    approvals.post_waiting_gates(store_url=url, client=air, sender=sender)
    assert _tick(url, air, sender, 14) == ["sandbox rollback@wave-1: reminded @Sarah DevOps"]
    assert air.responses == []  # not before its 15 minutes
    done = _tick(url, air, sender, 16)
    assert len(done) == 1 and done[0].startswith("sandbox rollback@wave-1: auto-approved")
    assert air.responses[0]["chosen"] == ["Approve"]
    assert air.responses[0]["params_input"]["teams_user"] == approvals.AUTO_APPROVER
    assert {r.decided_by for r in _rows(url)} == {approvals.AUTO_APPROVER}
    card = json.dumps(sender.updates[-1][2].card, ensure_ascii=False)
    assert "Approval granted by migrationbox (emergency auto-approve)" in card
    assert _tick(url, air, sender, 20) == []


def test_emergency_auto_approve_stops_once_the_sources_are_decommissioned(url: str):
    air, sender = FakeAirflow(), FakeSender()
    air.add_gate("sandbox", 1, "rollback.approve_rollback")
    with db.session_scope(url) as s:
        repository.record_phase_end(s, estate="sandbox", plan_version=1, wave=1,
                                    dag_run_id="manual__1", phase="decommission",
                                    status="success", summary="sources marked")
    approvals.post_waiting_gates(store_url=url, client=air, sender=sender)
    done = _tick(url, air, sender, 16)
    assert "source_intact" in done[0] and "not auto-approved" in done[0]
    assert air.responses == []


# -- the SLA file --------------------------------------------------------------------


def _sla_data() -> dict[str, Any]:
    return json.loads(sla.SLA_PATH.read_text())


def test_the_packaged_sla_is_the_plans():
    config = sla.load_sla()
    assert config.policy("standard").respond_within_minutes == 240
    assert config.calendar_of("standard").days == ["mon", "tue", "wed", "thu", "fri"]
    assert config.policy("urgent").respond_within_minutes == 60
    assert config.policy("urgent").escalate_at_minutes == 60
    assert config.policy("emergency").respond_within_minutes == 15
    assert config.policy("emergency").auto_approve_criteria
    assert config.urgency_for("cutover", "non-production", "low") == "standard"


@pytest.mark.parametrize(("change", "named"), [
    (lambda d: d["urgencies"]["urgent"].update(calendar="nights"),
     "urgencies.urgent.calendar: 'nights' is not one of the calendars"),
    (lambda d: d["urgencies"]["emergency"].update(auto_approve_criteria=["vibes"]),
     "urgencies.emergency.auto_approve_criteria: Value error, unknown criteria ['vibes']"),
    (lambda d: d["urgencies"]["emergency"].update(auto_approve_criteria=[]),
     "auto-approve without safety criteria is not allowed"),
    (lambda d: d["urgencies"]["urgent"].update(respond_within_minutes=-1),
     "urgencies.urgent.respond_within_minutes"),
    (lambda d: d["calendars"]["business_hours"].update(start="18:00"),
     "calendars.business_hours"),
    (lambda d: d["calendars"]["business_hours"].update(timezone="Mars/Olympus"),
     "calendars.business_hours.timezone: Value error, unknown time zone"),
    (lambda d: d["rules"].pop(), "the last rule must have no conditions"),
    (lambda d: d["urgencies"]["urgent"].update(remind_minutes=5),
     "urgencies.urgent.remind_minutes: Extra inputs are not permitted"),
])
def test_a_bad_sla_file_is_refused_naming_the_field(tmp_path: Path, change, named: str):
    data = _sla_data()
    change(data)
    path = tmp_path / "sla.json"
    path.write_text(json.dumps(data))
    with pytest.raises(sla.SlaError) as refused:
        sla.load_sla(path)
    assert named in str(refused.value) and str(path) in str(refused.value)


def test_an_sla_file_that_is_not_json_is_refused_with_its_line(tmp_path: Path):
    path = tmp_path / "sla.json"
    path.write_text('{\n  "calendars": ,\n}')
    with pytest.raises(sla.SlaError, match=r"not JSON: line 2"):
        sla.load_sla(path)
    with pytest.raises(sla.SlaError, match="cannot read"):
        sla.load_sla(tmp_path / "missing.json")


@settings(max_examples=60, deadline=None)
@given(start=st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2027, 12, 31),
                          timezones=st.just(UTC)),
       minutes=st.integers(min_value=0, max_value=5000),
       urgency=st.sampled_from(["standard", "urgent", "emergency"]))
def test_calendar_minutes_between_undoes_add(start: datetime, minutes: int, urgency: str):
    cal = sla.default_sla().calendar_of(urgency)
    end = cal.add(start, minutes)
    assert end >= start
    assert cal.minutes_between(start, end) == pytest.approx(minutes, abs=1e-6)


def test_naive_times_are_refused():
    with pytest.raises(sla.SlaError, match="time zone"):
        sla.default_sla().respond_by("urgent", datetime(2026, 12, 8, 10, 0))


# -- the approvers CLI ---------------------------------------------------------------


def _cli(*argv: str) -> int:
    from migrationbox.cli.teams_approvers_cmd import add_approvers_action

    parser = argparse.ArgumentParser(prog="migrationbox teams")
    add_approvers_action(parser.add_subparsers(dest="teams_action", required=True))
    args = parser.parse_args(list(argv))
    return int(args.handler(args))


def test_the_cli_sets_and_lists_approvers(tmp_path: Path, capsys: pytest.CaptureFixture):
    store = f"sqlite:///{tmp_path / 'cli.db'}"
    assert _cli("approvers", "set", "acme", "aad-sarah", "bob@contoso.com:backup",
                "--name", "aad-sarah=Sarah DevOps", "--store-url", store) == 0
    assert _cli("approvers", "list", "acme", "--json", "--store-url", store) == 0
    listed = json.loads(capsys.readouterr().out.split("\n", 2)[-1])
    assert listed == [{"user": "aad-sarah", "role": "primary", "name": "Sarah DevOps"},
                      {"user": "bob@contoso.com", "role": "backup", "name": None}]
    assert _cli("approvers", "set", "acme", "x:boss", "--store-url", store) == 2
    assert "role 'boss' is not one of primary, backup" in capsys.readouterr().err
    assert _cli("approvers", "set", "acme", "a", "A:backup", "--store-url", store) == 2
    assert "listed twice" in capsys.readouterr().err
    assert _cli("approvers", "set", "acme", "--store-url", store) == 0
    with db.session_scope(store, read_only=True) as s:
        assert state.approvers_of(s, "acme") == []


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=80))
def test_any_approver_argument_parses_or_is_refused_clearly(text: str):
    from migrationbox.cli.teams_approvers_cmd import ApproverSpecError, parse_approver

    try:
        user, role = parse_approver(text)
    except ApproverSpecError as exc:
        assert repr(text) in str(exc)
        return
    assert role in ("primary", "backup")
    assert user and ":" not in user and not any(c.isspace() for c in user)


# -- what people type: any gate reference and reason ---------------------------------


@pytest.fixture(scope="module")
def bare_store(tmp_path_factory: pytest.TempPathFactory) -> str:
    u = f"sqlite:///{tmp_path_factory.mktemp('bare') / 'store.db'}"
    with db.session_scope(u) as s:
        state.set_approvers(s, "acme", [("aad-sarah", "Sarah DevOps", "primary")])
    return u


@settings(max_examples=80, deadline=None)
@given(reference=st.text(max_size=60) | st.sampled_from(
           ["cutover@wave-1", " CUTOVER@wave-2 ", "cutover", "phase-6", "risk",
            "cutover@wave-3", "@wave-1", "cutover@wave-", "phase-", "live-cutover"]),
       reason=st.none() | st.text(max_size=200),
       decision=st.sampled_from(["approve", "reject", "reschedule", "maybe"]))
def test_any_reference_or_reason_gets_an_answer_never_an_exception(
        bare_store: str, reference: str, reason: str | None, decision: str):
    air, sender = FakeAirflow(), FakeSender()
    air.add_gate("acme", 1, CUTOVER)
    air.add_gate("acme", 2, CUTOVER, run_id="manual__2")
    matches = approvals.match_gates(approvals.waiting_gates(air, "acme"), reference)
    answer = approvals.answer_gate(store_url=bare_store, client=air, estate="acme",
                                   gate=reference, decision=decision,  # type: ignore[arg-type]
                                   user=SARAH, reason=reason, when=None, sender=sender)
    assert answer.message
    # only a reference naming exactly one waiting gate answers; a reject needs a reason
    if answer.ok:
        assert len(matches) == 1 and decision in ("approve", "reject")
        assert decision == "approve" or (reason or "").strip()
    assert len(air.responses) == (1 if answer.ok else 0)


def test_an_answer_waits_until_the_gate_has_settled(monkeypatch: pytest.MonkeyPatch) -> None:
    """A click seconds after the card was posted is held until the gate has waited
    SETTLE_SECONDS: an earlier answer races Airflow 3.3's executor and fails the gate
    (seen end to end: the wave rolled back after an approval)."""
    from datetime import UTC, datetime, timedelta

    from migrationbox.teams import approvals as mod

    slept: list[float] = []
    monkeypatch.setattr(mod, "_sleep", slept.append)
    sent: list[tuple[Any, ...]] = []

    class Client:
        def respond_hitl(self, *args: Any, **kwargs: Any) -> None:
            sent.append((args, kwargs))

    def gate(age_s: float) -> Any:
        return mod.WaitingGate(estate="e", wave=1, dag_id="migrate__e__wave_01",
                               dag_run_id="r", task_id="risk.approve_plan_risks",
                               map_index=-1, gate="plan_risks", subject="s",
                               created_at=datetime.now(UTC) - timedelta(seconds=age_s),
                               params={})

    mod._respond(Client(), gate(1.0), True, "Sarah", "aad-sarah", None)
    assert len(slept) == 1 and mod.SETTLE_SECONDS - 1.5 < slept[0] <= mod.SETTLE_SECONDS - 1.0
    mod._respond(Client(), gate(60.0), False, "Sarah", "aad-sarah", "not now")
    assert len(slept) == 1  # a gate that has waited a minute is answered at once
    assert [kw["chosen_options"] for _, kw in sent] == [["Approve"], ["Reject"]]
    assert sent[1][1]["params_input"]["reason"] == "not now"
