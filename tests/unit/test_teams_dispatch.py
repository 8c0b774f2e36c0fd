"""The Teams command handler against a real (SQLite) store and a recording Airflow client.

What a REST call the dispatcher makes looks like is checked against the fake's record
(the integration test ``test_teams_commands.py`` makes the same calls to a real Airflow):
the confirmation flow for destructive commands, refusals (another user, expiry, a cloud
without an execution adapter), every command mapped to an action, any text answered
without an exception, and every card valid against the Adaptive Cards 1.5 schema.
"""

from __future__ import annotations

import sys
import types
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from migrationbox.platform.rest import AirflowApiError
from migrationbox.store import repository
from migrationbox.store.db import session_scope
from migrationbox.store.models import TeamsConfirmationRow
from migrationbox.store.testing import tiny_estate, tiny_plan
from migrationbox.teams import actions, state
from migrationbox.teams.cards import CardActionData, validate_card
from migrationbox.teams.contracts import ConversationRef, Inbound, Reply
from migrationbox.teams.dispatch import CommandDispatcher
from migrationbox.teams.models import Command

ESTATE = "acme-1"
DAG1 = "migrate__acme-1__wave_01"


class FakeAirflow:
    """Records every call; answers like Airflow 3.3's REST API for what it holds."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.dags: dict[str, dict[str, Any]] = {}
        self.runs: dict[str, list[dict[str, Any]]] = {}
        self.tis: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self.fail_with: AirflowApiError | None = None
        self.closed = 0

    def _check(self) -> None:
        if self.fail_with is not None:
            raise self.fail_with

    def get_dag(self, dag_id: str) -> dict[str, Any] | None:
        self._check()
        self.calls.append(("get_dag", dag_id))
        return self.dags.get(dag_id)

    def pause(self, dag_id: str) -> dict[str, Any]:
        self.calls.append(("pause", dag_id))
        self.dags[dag_id]["is_paused"] = True
        return self.dags[dag_id]

    def unpause(self, dag_id: str) -> dict[str, Any]:
        self.calls.append(("unpause", dag_id))
        self.dags[dag_id]["is_paused"] = False
        return self.dags[dag_id]

    def dag_runs(self, dag_id: str) -> list[dict[str, Any]]:
        self._check()
        self.calls.append(("dag_runs", dag_id))
        if dag_id not in self.dags:
            raise AirflowApiError("GET", f"/api/v2/dags/{dag_id}/dagRuns", 404, "not found")
        return list(self.runs.get(dag_id, []))

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        self.calls.append(("task_instances", dag_id, run_id))
        return list(self.tis.get((dag_id, run_id), []))

    def trigger(self, dag_id: str, conf: Any = None, run_id: str | None = None,
                note: str | None = None) -> dict[str, Any]:
        self.calls.append(("trigger", dag_id, dict(conf or {}), run_id, note))
        existing = [r for r in self.runs.get(dag_id, []) if r["dag_run_id"] == run_id]
        if existing:
            return existing[0]
        run = {"dag_run_id": run_id or "manual__1", "state": "queued",
               "start_date": None, "queued_at": "2026-12-07T10:00:00Z", "conf": conf}
        self.runs.setdefault(dag_id, []).append(run)
        return run

    def request(self, method: str, path: str, *, json: Any = None, **_: Any) -> Any:
        self.calls.append(("request", method, path, json))
        return {"state": (json or {}).get("state")}

    def clear_task(self, dag_id: str, run_id: str, task_ids: list[str],
                   **kw: Any) -> dict[str, Any]:
        self.calls.append(("clear_task", dag_id, run_id, list(task_ids), kw))
        return {"task_instances": []}

    def close(self) -> None:
        self.closed += 1

    def named(self, name: str) -> list[tuple[Any, ...]]:
        return [c for c in self.calls if c[0] == name]


@pytest.fixture()
def store_url(tmp_path) -> str:
    url = f"sqlite:///{tmp_path}/store.db"
    estate = tiny_estate(ESTATE)
    with session_scope(url) as s:
        repository.save_estate(s, estate)
        repository.save_plan(s, tiny_plan(estate))
    return url


@pytest.fixture()
def airflow() -> FakeAirflow:
    fake = FakeAirflow()
    for n in (1, 2, 3):
        fake.dags[f"migrate__acme-1__wave_{n:02d}"] = {"is_paused": False}
    return fake


@pytest.fixture()
def dispatcher(store_url, airflow) -> CommandDispatcher:
    return CommandDispatcher(store_url, lambda: airflow)  # type: ignore[arg-type,return-value]


def inbound(text: str = "", *, user: str = "u-alice", conversation: str = "conv-1",
            locale: str | None = "en-US", attachments: list | None = None) -> Inbound:
    return Inbound(activity_id="a1", text=text, user_id=user, user_name=user.title(),
                   user_aad_id=f"aad-{user}", locale=locale,
                   conversation=ConversationRef(conversation_id=conversation,
                                                service_url="https://smba.example/emea/",
                                                bot_id="bot-1"),
                   attachments=attachments or [])


def _cards(replies: list[Reply] | Reply) -> list[dict]:
    items = replies if isinstance(replies, list) else [replies]
    out = [r.card for r in items if r.card]
    for card in out:
        validate_card(card)
    return out


def _log(store_url: str) -> list[tuple[str | None, str]]:
    with session_scope(store_url) as s:
        return [(r.command, r.outcome) for r in reversed(state.recent_commands(s))]


def _confirmation_id(reply: Reply) -> str:
    assert reply.card is not None
    actions_ = reply.card["actions"]
    return actions_[0]["data"]["confirmation_id"]


# ---------------------------------------------------------------------------- mapping


def test_every_command_has_an_action_and_destructive_ones_a_precheck():
    assert set(actions.ACTIONS) == set(Command)
    assert set(actions.PRECHECKS) == {Command.START, Command.ROLLBACK, Command.CANCEL}


# ---------------------------------------------------------------------------- status


def test_status_without_runs_shows_planned_card(dispatcher, store_url):
    replies = dispatcher.handle_message(inbound(f"status {ESTATE}"))
    (card,) = _cards(replies)
    text = str(card)
    assert f"Migration Status: {ESTATE}" in text and "planned" in text
    assert _log(store_url)[-1] == ("status", "ok")


def test_status_of_a_running_wave_shows_phase_and_approval_wait(dispatcher, airflow):
    airflow.runs[DAG1] = [{"dag_run_id": "r1", "state": "running",
                           "start_date": "2026-12-07T09:00:00Z"}]
    airflow.tis[(DAG1, "r1")] = [
        {"task_id": "preflight.checks", "state": "success"},
        {"task_id": "provision.infrastructure", "state": "success"},
        {"task_id": "replicate.sync_rounds", "state": "success"},
        {"task_id": "configure.rewrite_config", "state": "success"},
        {"task_id": "smoke_test.smoke_tests_green", "state": "success"},
        {"task_id": "cutover.approve_cutover", "state": "awaiting_input"},
        {"task_id": "cutover.canary_shift", "state": None},
        {"task_id": "validate.verify_data", "state": None},
        {"task_id": "rollback.choose_path", "state": None},
    ]
    (card,) = _cards(dispatcher.handle_message(inbound(f"status {ESTATE}")))
    facts = {f["title"]: f["value"] for f in card["body"][1]["facts"]}
    assert facts["Phase"].startswith("6/7 - cutover")
    assert "waiting for approval at cutover.approve_cutover" in facts["State"]
    assert "Estimated Completion" in str(card)


def test_status_list_shows_only_active_migrations(dispatcher, airflow):
    (card,) = _cards(dispatcher.handle_message(inbound("status")))
    assert "Active migrations: 0" in str(card)
    airflow.runs[DAG1] = [{"dag_run_id": "r1", "state": "running",
                           "start_date": "2026-12-07T09:00:00Z"}]
    (card,) = _cards(dispatcher.handle_message(inbound("status")))
    assert "Active migrations: 1" in str(card) and ESTATE in str(card)


def test_unknown_migration_is_refused_with_known_ids(dispatcher, store_url):
    (reply,) = dispatcher.handle_message(inbound("pause zz-99"))
    assert "No migration named 'zz-99'" in reply.text and ESTATE in reply.text
    assert _log(store_url)[-1] == ("pause", "refused")


# ---------------------------------------------------------------------------- start


def test_start_asks_confirmation_then_triggers_the_next_wave(dispatcher, airflow, store_url):
    (ask,) = dispatcher.handle_message(inbound("start production aws us-east-1"))
    assert ask.card and not airflow.named("trigger")
    cid = _confirmation_id(ask)
    _cards(ask)
    (done,) = dispatcher.handle_message(inbound("yes"))
    (call,) = airflow.named("trigger")
    assert call[1] == DAG1 and call[3] == f"teams__{cid}" and "U-Alice" in call[4]
    assert "Started wave 1" in done.text
    assert _log(store_url)[-2:] == [("start", "asked"), ("start", "ok")]
    with session_scope(store_url) as s:
        events = repository.events(s, ESTATE)
    assert any(e.kind == "teams_command" and "started from Teams" in e.message for e in events)
    # a second "yes" has nothing pending: no second run
    dispatcher.handle_message(inbound("yes"))
    assert len(airflow.named("trigger")) == 1


def test_start_by_card_button_and_twice_clicked(dispatcher, airflow):
    (ask,) = dispatcher.handle_message(inbound("start production aws us-east-1"))
    cid = _confirmation_id(ask)
    first = dispatcher.handle_card_action(inbound(), CardActionData(verb="confirm",
                                                                    confirmation_id=cid))
    second = dispatcher.handle_card_action(inbound(), CardActionData(verb="confirm",
                                                                     confirmation_id=cid))
    assert "Started wave 1" in first.text
    assert "already answered" in second.text
    assert len(airflow.named("trigger")) == 1


def test_confirmation_by_another_user_is_refused(dispatcher, airflow, store_url):
    (ask,) = dispatcher.handle_message(inbound("start production aws us-east-1"))
    cid = _confirmation_id(ask)
    reply = dispatcher.handle_card_action(inbound(user="u-mallory"),
                                          CardActionData(verb="confirm", confirmation_id=cid))
    assert "Only the person who asked" in reply.text
    assert not airflow.named("trigger")
    # and mallory's typed "yes" has no pending confirmation of hers: parsed as text
    (typed,) = dispatcher.handle_message(inbound("yes", user="u-mallory"))
    assert not airflow.named("trigger") and typed.text
    # alice still can
    ok = dispatcher.handle_card_action(inbound(), CardActionData(verb="confirm",
                                                                 confirmation_id=cid))
    assert "Started wave 1" in ok.text


def test_expired_confirmation_runs_nothing(dispatcher, airflow, store_url):
    (ask,) = dispatcher.handle_message(inbound("start production aws us-east-1"))
    cid = _confirmation_id(ask)
    with session_scope(store_url) as s:
        s.get(TeamsConfirmationRow, cid).expires_at = datetime.now(UTC) - timedelta(seconds=1)
    reply = dispatcher.handle_card_action(inbound(), CardActionData(verb="confirm",
                                                                    confirmation_id=cid))
    assert "expired" in reply.text and not airflow.named("trigger")


def test_unknown_confirmation_and_decline(dispatcher, airflow):
    reply = dispatcher.handle_card_action(inbound(), CardActionData(verb="confirm",
                                                                    confirmation_id="nope"))
    assert "not known" in reply.text
    (ask,) = dispatcher.handle_message(inbound("start production aws us-east-1"))
    (no,) = dispatcher.handle_message(inbound("nein"))
    assert "nothing was run" in no.text and not airflow.named("trigger")
    assert ask.card


def test_start_on_a_cloud_without_adapter_says_what_can_be_done(dispatcher, airflow,
                                                                store_url):
    (reply,) = dispatcher.handle_message(inbound("start production azure eastus"))
    assert reply.card is None and "only AWS has an execution adapter" in reply.text
    assert "migrationbox size" in reply.text
    assert _log(store_url)[-1] == ("start", "refused")


def test_start_in_another_region_or_env_is_refused_before_confirmation(dispatcher, airflow):
    (reply,) = dispatcher.handle_message(inbound("start production aws eu-west-1"))
    assert "re-plan for eu-west-1" in reply.text and reply.card is None
    (reply,) = dispatcher.handle_message(inbound("start staging aws us-east-1"))
    assert "not staging" in reply.text and "start production aws us-east-1" in reply.text


def test_start_refused_while_a_wave_runs(dispatcher, airflow):
    airflow.runs[DAG1] = [{"dag_run_id": "r1", "state": "running",
                           "start_date": "2026-12-07T09:00:00Z"}]
    (reply,) = dispatcher.handle_message(inbound("start production aws us-east-1"))
    assert "already running" in reply.text


def test_start_in_german_confirmation_card_is_german(dispatcher):
    (ask,) = dispatcher.handle_message(inbound("Starte die Produktionsmigration auf AWS "
                                               "us-east-1", locale="de-DE"))
    assert ask.card and "Bitte bestätigen" in str(ask.card)


# ---------------------------------------------------------------------------- pause/cancel


def test_pause_and_resume_every_wave_dag(dispatcher, airflow, store_url):
    (reply,) = dispatcher.handle_message(inbound(f"pause {ESTATE}"))
    assert [c[1] for c in airflow.named("pause")] == [
        f"migrate__acme-1__wave_{n:02d}" for n in (1, 2, 3)]
    assert "a task already running" in reply.text
    dispatcher.handle_message(inbound(f"resume {ESTATE}"))
    assert len(airflow.named("unpause")) == 3
    assert _log(store_url)[-2:] == [("pause", "ok"), ("resume", "ok")]


def test_cancel_marks_the_running_run_failed(dispatcher, airflow):
    airflow.runs[DAG1] = [{"dag_run_id": "r1", "state": "running",
                           "start_date": "2026-12-07T09:00:00Z"}]
    (ask,) = dispatcher.handle_message(inbound(f"cancel {ESTATE}"))
    assert ask.card and not airflow.named("request")
    (done,) = dispatcher.handle_message(inbound("yes"))
    (call,) = airflow.named("request")
    assert call[1:3] == ("PATCH", f"/api/v2/dags/{DAG1}/dagRuns/r1")
    assert call[3]["state"] == "failed" and "U-Alice" in call[3]["note"]
    assert "marked failed" in done.text


def test_cancel_without_a_running_wave_is_refused_at_once(dispatcher, airflow):
    (reply,) = dispatcher.handle_message(inbound(f"cancel {ESTATE}"))
    assert reply.card is None and "nothing to stop" in reply.text


def test_rollback_fails_the_cutover_and_reruns_the_rollback_group(dispatcher, airflow):
    airflow.runs[DAG1] = [{"dag_run_id": "r1", "state": "running",
                           "start_date": "2026-12-07T09:00:00Z"}]
    airflow.tis[(DAG1, "r1")] = [{"task_id": "cutover.canary_shift", "state": "running"},
                                 {"task_id": "rollback.choose_path", "state": None}]
    (ask,) = dispatcher.handle_message(inbound(f"rollback {ESTATE}"))
    assert ask.card
    assert ask.card
    (done,) = dispatcher.handle_message(inbound("ok"))
    (patch,) = airflow.named("request")
    assert patch[2].endswith("/taskInstances/cutover.canary_shift")
    assert patch[3]["new_state"] == "failed"
    (clear,) = airflow.named("clear_task")
    assert clear[3] == ["rollback.choose_path"]
    assert "automatically" in done.text


def test_rollback_after_full_cutover_goes_through_the_gate(dispatcher, airflow):
    airflow.runs[DAG1] = [{"dag_run_id": "r1", "state": "success",
                           "start_date": "2026-12-07T09:00:00Z"}]
    airflow.tis[(DAG1, "r1")] = [{"task_id": "cutover.canary_shift", "state": "success"},
                                 {"task_id": "validate.verify_data", "state": "success"},
                                 {"task_id": "rollback.choose_path", "state": "skipped"}]
    (ask,) = dispatcher.handle_message(inbound(f"rollback {ESTATE}"))
    assert ask.card
    (done,) = dispatcher.handle_message(inbound("yes"))
    (patch,) = airflow.named("request")
    assert patch[2].endswith("/taskInstances/validate.verify_data")
    assert "approval gate" in done.text


def test_rollback_before_cutover_says_nothing_moved(dispatcher, airflow):
    airflow.runs[DAG1] = [{"dag_run_id": "r1", "state": "running",
                           "start_date": "2026-12-07T09:00:00Z"}]
    airflow.tis[(DAG1, "r1")] = [{"task_id": "replicate.sync_rounds", "state": "running"},
                                 {"task_id": "cutover.canary_shift", "state": None}]
    (reply,) = dispatcher.handle_message(inbound(f"rollback {ESTATE}"))
    assert reply.card is None and "never moved" in reply.text and "cancel" in reply.text


# ---------------------------------------------------------------------------- errors


def test_airflow_errors_become_one_line(dispatcher, airflow, store_url):
    airflow.fail_with = AirflowApiError("GET", "/api/v2/dags/x", 503, "down\nTraceback ...")
    (reply,) = dispatcher.handle_message(inbound(f"status {ESTATE}"))
    assert reply.text.startswith("Airflow could not do it (HTTP 503)")
    assert "\n" not in reply.text
    assert _log(store_url)[-1] == ("status", "error")
    assert airflow.closed >= 1


def test_store_errors_become_one_line(airflow, tmp_path):
    (tmp_path / "store.db").write_bytes(b"this is not a database" * 100)
    broken = CommandDispatcher(f"sqlite:///{tmp_path}/store.db",
                               lambda: airflow)  # type: ignore[arg-type,return-value]
    replies = broken.handle_message(inbound("status"))
    assert len(replies) == 1 and "store is not answering" in replies[0].text


# ---------------------------------------------------------------------------- approvals


@pytest.fixture()
def fake_approvals(monkeypatch):
    calls: list[dict] = []

    class GateAnswer:
        def __init__(self, ok: bool, message: str, card: dict | None = None) -> None:
            self.ok, self.message, self.card = ok, message, card

    def answer_gate(**kw):
        calls.append({"fn": "answer_gate", **kw})
        if kw["user"].user_id == "u-mallory":
            return GateAnswer(False, "You are not on the approvers list of acme-1.")
        return GateAnswer(True, f"{kw['decision']} recorded")

    def request_approval(**kw):
        calls.append({"fn": "request_approval", **kw})
        return GateAnswer(True, "approval requested")

    module = types.ModuleType("migrationbox.teams.approvals")
    module.answer_gate = answer_gate  # type: ignore[attr-defined]
    module.request_approval = request_approval  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "migrationbox.teams.approvals", module)
    return calls


def test_approve_reject_request_go_to_the_approval_workflow(dispatcher, fake_approvals,
                                                            store_url):
    (r1,) = dispatcher.handle_message(inbound(f"approve cutover {ESTATE}"))
    (r2,) = dispatcher.handle_message(inbound(f'reject phase-2 {ESTATE} "not tested"'))
    (r3,) = dispatcher.handle_message(inbound(f"request-approval cutover {ESTATE}"))
    assert [c["fn"] for c in fake_approvals] == ["answer_gate", "answer_gate",
                                                 "request_approval"]
    assert fake_approvals[0]["decision"] == "approve" and fake_approvals[0]["gate"] == "cutover"
    assert fake_approvals[1]["reason"] == "not tested"
    assert fake_approvals[1]["estate"] == ESTATE
    assert r1.text == "approve recorded" and r3.text == "approval requested"
    assert r2.text == "reject recorded"
    (refused,) = dispatcher.handle_message(inbound(f"approve cutover {ESTATE}",
                                                   user="u-mallory"))
    assert "not on the approvers list" in refused.text
    assert _log(store_url)[-1] == ("approve", "refused")


def test_card_buttons_reach_the_approval_workflow(dispatcher, fake_approvals):
    dispatcher.handle_card_action(inbound(), CardActionData(
        verb="reject", migration_id=ESTATE, gate="cutover", reason="too risky"))
    dispatcher.handle_card_action(inbound(), CardActionData(
        verb="reschedule", migration_id=ESTATE, gate="cutover", date="2026-12-24",
        time="03:00"))
    no_reason = dispatcher.handle_card_action(inbound(), CardActionData(
        verb="reject", migration_id=ESTATE, gate="cutover"))
    assert "reason is required" in no_reason.text
    assert fake_approvals[0]["reason"] == "too risky"
    assert fake_approvals[1]["when"] == datetime(2026, 12, 24, 3, 0, tzinfo=UTC)
    dispatcher.handle_card_action(inbound(), CardActionData(
        verb="request-approval", migration_id=ESTATE, gate="cutover"))
    assert fake_approvals[-1]["fn"] == "request_approval"


def test_status_card_buttons(dispatcher, airflow):
    reply = dispatcher.handle_card_action(inbound(), CardActionData(verb="pause",
                                                                    migration_id=ESTATE))
    assert "Paused" in reply.text and len(airflow.named("pause")) == 3
    reply = dispatcher.handle_card_action(inbound(), CardActionData(verb="status",
                                                                    migration_id=ESTATE))
    _cards(reply)


# ---------------------------------------------------------------------------- cards


def test_report_metrics_costs_cards_from_the_store(dispatcher, store_url):
    with session_scope(store_url) as s:
        repository.set_wave_status(s, ESTATE, 1, "completed")
        repository.record_phase_start(s, estate=ESTATE, plan_version=1, wave=1,
                                      dag_run_id="r1", phase="validate")
        repository.record_phase_end(
            s, estate=ESTATE, plan_version=1, wave=1, dag_run_id="r1", phase="validate",
            status="success", summary="ok",
            details={"details": {"cost": {"actual_monthly_usd": 12.5}}})
        repository.record_approval(s, estate=ESTATE, wave=1, dag_run_id="r1", gate="cutover",
                                   decision="approved", approved_by="alice")
    (report,) = _cards(dispatcher.handle_message(inbound("report weekly")))
    facts = {f["title"]: f["value"] for f in report["body"][1]["facts"]}
    assert facts["Waves completed"] == "1" and facts["Servers migrated"] == "1"
    assert facts["Approvals"] == "1 approved" and facts["Waves rolled back"] == "0"
    (metrics,) = _cards(dispatcher.handle_message(inbound(f"metrics {ESTATE}")))
    assert "1 / 3" in str(metrics)
    (costs,) = _cards(dispatcher.handle_message(inbound(f"costs {ESTATE}")))
    assert "12.50 USD" in str(costs) and "10.00 USD" in str(costs)


def test_costs_without_actuals_says_so(dispatcher):
    (costs,) = _cards(dispatcher.handle_message(inbound(f"costs {ESTATE}")))
    assert "No actuals yet" in str(costs)


def test_knowledge_commands_answer_from_what_exists(dispatcher, store_url):
    with session_scope(store_url) as s:
        repository.add_event(s, estate=ESTATE, message="replication converged on db-01")
    (found,) = _cards(dispatcher.handle_message(inbound('search "replication converged"')))
    assert "db-01" in str(found) and "next release" in str(found)
    (nothing,) = dispatcher.handle_message(inbound('search "quantum flux"'))
    assert "Nothing found" in nothing.text
    (book,) = _cards(dispatcher.handle_message(inbound("runbook cpu")))
    assert "high_cpu" in str(book)
    (lessons,) = dispatcher.handle_message(inbound("lessons-learned"))
    assert "No lessons recorded yet" in lessons.text


def test_mute_unmute_alert_config_write_conversation_state(dispatcher, store_url):
    before = datetime.now(UTC)
    dispatcher.handle_message(inbound(f"mute {ESTATE} for 30 minutes"))
    with session_scope(store_url) as s:
        conv = state.conversation(s, "conv-1")
    assert conv.muted_until is not None
    assert timedelta(minutes=29) < conv.muted_until - before < timedelta(minutes=31)
    dispatcher.handle_message(inbound("unmute"))
    with session_scope(store_url) as s:
        assert state.conversation(s, "conv-1").muted_until is None
    (shown,) = dispatcher.handle_message(inbound("alert-config"))
    assert "all kinds, severity info and above" in shown.text
    (set_,) = dispatcher.handle_message(inbound(f'alert-config {ESTATE} "rollback incidents P2"'))
    with session_scope(store_url) as s:
        conv = state.conversation(s, "conv-1")
    assert conv.alert_config == {"kinds": ["rollback", "incident_opened"],
                                 "min_severity": "critical"}
    from migrationbox.teams.notifier import AlertConfig

    assert AlertConfig.from_stored(conv.alert_config).allows("rollback", "critical")
    assert conv.estate == ESTATE and "set" in set_.text
    dispatcher.handle_message(inbound("alert-config wave_done"))
    with session_scope(store_url) as s:
        stored = state.conversation(s, "conv-1").alert_config
    assert stored == {"kinds": ["wave_done"], "min_severity": "critical"}


@pytest.mark.parametrize(("text", "minutes"), [
    ("mute", 60), ("mute 2h", 120), ("mute 2 Stunden", 120), ("mute 45 minutos", 45),
    ("mute 1 nap", 1440), ("mute 90 days", 30 * 1440), ("mute 0h", 60)])
def test_mute_durations(text, minutes):
    assert actions.mute_duration(text) == timedelta(minutes=minutes)


def test_a_duration_read_as_a_migration_id_is_a_duration(dispatcher, store_url):
    """The grammar takes "2h" for a migration id (a letter and a digit); mute knows it is
    a duration rather than refusing an unknown migration."""
    before = datetime.now(UTC)
    (reply,) = dispatcher.handle_message(inbound("mute 2h"))
    with session_scope(store_url) as s:
        conv = state.conversation(s, "conv-1")
    assert timedelta(minutes=119) < conv.muted_until - before < timedelta(minutes=121)
    assert "2h" not in reply.text


def test_clarification_is_logged_and_asked_in_the_users_language(dispatcher, store_url):
    (reply,) = dispatcher.handle_message(inbound("Rollback durchführen", locale="de-DE"))
    assert reply.text and "Migration" in reply.text
    assert _log(store_url)[-1] == ("rollback", "clarified")


def test_voice_message_is_transcribed_and_echoed(store_url, airflow, monkeypatch):
    module = types.ModuleType("migrationbox.teams.voice")

    class Transcript:
        text = f"status {ESTATE}"
        language = "en"

    class VoiceError(Exception):
        pass

    seen: list[bytes] = []

    def transcribe(data: bytes, *, language_hint=None):
        seen.append(data)
        if data == b"bad":
            raise VoiceError("not audio")
        return Transcript()

    module.is_audio_attachment = lambda a: a.get("contentType", "").startswith("audio/")  # type: ignore[attr-defined]
    module.transcribe = transcribe  # type: ignore[attr-defined]
    module.VoiceError = VoiceError  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "migrationbox.teams.voice", module)
    payload = {"b": b"RIFF...."}
    d = CommandDispatcher(store_url, lambda: airflow,  # type: ignore[arg-type,return-value]
                          fetch_attachment=lambda a: payload["b"])
    att = [{"contentType": "audio/wav", "contentUrl": "https://x/1"}]
    echo, status_ = d.handle_message(inbound("", attachments=att))
    assert echo.text == f'Heard (en): "status {ESTATE}"' and status_.card
    payload["b"] = b"bad"
    (refused,) = d.handle_message(inbound("", attachments=att))
    assert refused.text == "not audio"


# ---------------------------------------------------------------------------- properties


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.one_of(
    st.text(max_size=300),
    st.lists(st.sampled_from(["status", "start", "pause", "rollback", "cancel", "approve",
                              "reject", "report", "weekly", "costs", "search", "mute",
                              "alert-config", ESTATE, "prod-9", "aws", "azure", "us-east-1",
                              "production", "cutover", "yes", "no", '"why"', "2h", "P1",
                              "runbook", "lessons-learned", "metrics", "resume"]),
             max_size=8).map(" ".join)))
def test_any_text_gets_replies_without_exceptions(dispatcher, text):
    replies = dispatcher.handle_message(inbound(text))
    assert replies
    for reply in replies:
        assert reply.text or reply.card
        if reply.text:
            assert "Traceback" not in reply.text
    _cards(replies)


def test_status_in_a_migrations_channel_shows_that_migration(dispatcher, store_url):
    dispatcher.handle_message(inbound("status"))  # the bot learns the conversation
    with session_scope(store_url) as s:
        state.bind_estate(s, "conv-1", ESTATE)
    (card,) = _cards(dispatcher.handle_message(inbound("status")))
    assert f"Migration Status: {ESTATE}" in str(card)


# ---------------------------------------------------------------------------- the docs

DOC = __import__("pathlib").Path(__file__).resolve().parents[2] / "docs" / "teams-commands.md"


def _doc_examples() -> list[tuple[str, str, str]]:
    """(command, language, example) for every example cell of the commands table."""
    import re

    rows = []
    for line in DOC.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 6 or not cells[0].startswith("`"):
            continue
        command = re.match(r"`([a-z-]+)", cells[0]).group(1)  # type: ignore[union-attr]
        for lang, cell in zip(("en", "de", "es", "hu"), cells[2:], strict=True):
            rows.append((command, lang, cell.strip("`")))
    return rows


def test_the_docs_table_covers_every_command_in_four_languages():
    examples = _doc_examples()
    assert {c for c, _, _ in examples} == {c.value for c in Command}
    assert len(examples) == 4 * 20  # status with/without id, report weekly/monthly


@pytest.mark.parametrize(("command", "language", "text"), _doc_examples())
def test_every_doc_example_runs_its_command(dispatcher, store_url, airflow, fake_approvals,
                                            command, language, text):
    from migrationbox.teams.models import ParseContext
    from migrationbox.teams.parser import parse

    parsed = parse(text, ParseContext(known_migration_ids=("prod-7",)))
    assert parsed.kind == "intent", parsed
    assert (parsed.command.value, parsed.language.value) == (command, language)
    if command in ("rollback", "cancel"):  # something to roll back or stop
        airflow.runs[DAG1] = [{"dag_run_id": "r1", "state": "running",
                               "start_date": "2026-12-07T09:00:00Z"}]
        airflow.tis[(DAG1, "r1")] = [{"task_id": "cutover.canary_shift", "state": "running"}]
    replies = dispatcher.handle_message(inbound(text.replace("prod-7", ESTATE)))
    _cards(replies)
    logged = _log(store_url)[-1]
    assert logged[0] == command and logged[1] in ("ok", "asked"), (logged, replies)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(verb=st.sampled_from(["approve", "reject", "reschedule", "confirm", "decline",
                             "pause", "request-approval", "status"]),
       migration=st.one_of(st.none(), st.just(ESTATE), st.text(max_size=40)),
       gate=st.one_of(st.none(), st.sampled_from(["cutover", "phase-2"]), st.text(max_size=20)),
       cid=st.one_of(st.none(), st.text(max_size=70)),
       extra=st.dictionaries(st.sampled_from(["reason", "date", "time"]),
                             st.one_of(st.text(max_size=30), st.integers(), st.none())))
def test_any_card_action_gets_a_reply(dispatcher, fake_approvals, verb, migration, gate,
                                      cid, extra):
    data = CardActionData(verb=verb, migration_id=migration, gate=gate,
                          confirmation_id=cid, **extra)
    reply = dispatcher.handle_card_action(inbound(), data)
    assert reply.text or reply.card
    assert "Traceback" not in (reply.text or "")
    _cards(reply)


def test_bad_voice_message_is_answered_in_the_users_language(store_url, airflow,
                                                              monkeypatch):
    """With the real voice module: not audio -> its message in the locale's language."""
    from migrationbox.teams import voice

    def refuse(data: bytes, *, language_hint=None):
        raise voice.VoiceError("not_audio")

    monkeypatch.setattr(voice, "transcribe", refuse)
    d = CommandDispatcher(store_url, lambda: airflow,  # type: ignore[arg-type,return-value]
                          fetch_attachment=lambda a: b"\x00" * 64)
    att = [{"contentType": "audio/wav", "contentUrl": "https://x/1"}]
    (reply,) = d.handle_message(inbound("", attachments=att, locale="de-DE"))
    assert reply.text == voice.PROBLEMS["not_audio"]["de"]
    assert _log(store_url)[-1] == (None, "refused")
