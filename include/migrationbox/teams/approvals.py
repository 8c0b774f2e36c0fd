"""Approvals from a Teams card: post a card for every gate a wave waits at, answer the
gate through the Airflow REST API for the estate's approvers, and keep the plan's SLA
(reminder, escalation to a backup approver, emergency auto-approve under safety
criteria).

Airflow stays the one place a gate is decided: an answer is ``respond_hitl`` on the
gate's HITL detail, the same call the Airflow UI makes, so the wave moves on exactly as
it would for a UI answer and ``MigrationApprovalOperator`` writes the decision to the
store's ``approvals`` table itself. Airflow's answer is also the lock: a second answer
(another approver, another bot process, the UI) gets HTTP 409 and is told who was
first. What the bot keeps (``TeamsApprovalCardRow``) is only where each card was posted,
so it can be updated, and the SLA clock's marks, so each reminder or escalation happens
once.

A card's buttons carry the estate and a gate reference ``<gate>@wave-<n>``; the wave
DAGs run one run at a time (``max_active_runs=1``), so estate, wave and gate name one
waiting gate. Typed commands may say less ("approve acme cutover", "risk", "phase-6"):
a reference that matches several waiting gates is asked back, never guessed.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from migrationbox.orchestration import graph as g
from migrationbox.orchestration.spec import estate_of_dag_id
from migrationbox.platform.rest import AirflowApiError
from migrationbox.store import repository
from migrationbox.store.db import session_scope
from migrationbox.store.models import TeamsApprovalCardRow
from migrationbox.store.repository import StoreError
from migrationbox.teams import state
from migrationbox.teams.cards import (
    ApprovalDecision,
    ApprovalRequest,
    Check,
    approval_card,
    approval_decided_card,
)
from migrationbox.teams.contracts import ConversationRef, Inbound, Reply, Sender
from migrationbox.teams.sla import GateFacts, SlaConfig, default_sla, evaluate

log = logging.getLogger("migrationbox.teams.approvals")

#: Who an emergency auto-approve is recorded as (in the card, the event and params_input).
AUTO_APPROVER = "migrationbox (emergency auto-approve)"

#: gate name per approval task id of the wave DAGs (``orchestration.graph``)
GATE_BY_TASK: dict[str, str] = {
    g.RISK_APPROVAL_TASK_ID: "plan_risks",
    g.BUDGET_APPROVAL_TASK_ID: "budget",
    g.CUTOVER_APPROVAL_TASK_ID: "cutover",
    g.LIVE_CUTOVER_APPROVAL_TASK_ID: "live_cutover",
    g.DECOMMISSION_APPROVAL_TASK_ID: "decommission",
    g.ROLLBACK_APPROVE_TASK_ID: "rollback",
}
#: the plan's approval types (phase, budget, risk, rollback) as the card shows them
GATE_KIND: dict[str, Literal["phase", "budget", "risk", "rollback", "cutover",
                             "decommission"]] = {
    "plan_risks": "risk", "budget": "budget", "cutover": "cutover", "live_cutover": "risk",
    "decommission": "decommission", "rollback": "rollback",
}
GATE_TITLE = {
    "plan_risks": "Plan Risks", "budget": "Budget", "cutover": "Traffic Cutover",
    "live_cutover": "Live Cutover", "decommission": "Decommission Sources",
    "rollback": "Rollback to Source",
}
#: the words a typed command uses for a gate (the parser's gate values) -> gate names
GATE_WORDS: dict[str, tuple[str, ...]] = {
    "risk": ("plan_risks", "live_cutover"),
    "plan-risks": ("plan_risks",),
    "live-cutover": ("live_cutover",),
}
#: the migration phase (1-based, of ``PHASE_GROUPS``) a gate holds back
_PHASE_OF_GROUP = {g.RISK: g.PROVISION, g.BUDGET: g.PROVISION}
_REF = re.compile(r"^(?P<gate>[a-z0-9_-]+)@wave-(?P<wave>\d+)$")
_RESCHEDULED = re.compile(r"^rescheduled to (?P<at>\S+) by ")

Decision = Literal["approve", "reject", "reschedule"]
#: How far ahead a gate may be rescheduled: a wave run parked longer is better rejected
#: and asked again than held open (its run's state and credentials age).
MAX_RESCHEDULE = timedelta(days=30)


class GateAnswer(BaseModel):
    """What the bot says back: ``ok`` when the gate was answered (or the card posted),
    ``message`` a line for the user, ``card`` the card to show (the decided card)."""

    ok: bool
    message: str
    card: dict[str, Any] | None = None


#: How long a gate must have waited before an answer is sent (see ``_respond``).
SETTLE_SECONDS = 5.0
_sleep = time.sleep


@dataclass(frozen=True)
class WaitingGate:
    """One HITL gate of a wave DAG run, as Airflow reports it."""

    estate: str
    wave: int
    dag_id: str
    dag_run_id: str
    task_id: str
    map_index: int
    gate: str
    subject: str
    created_at: datetime
    params: dict[str, Any]

    @property
    def ref(self) -> str:
        return f"{self.gate}@wave-{self.wave}"


def _wave_of_dag_id(dag_id: str) -> int | None:
    tail = dag_id.rpartition("__")[2]
    if tail.startswith("wave_") and tail[5:].isdigit():
        return int(tail[5:])
    return None


def _parse_time(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str) and value:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return datetime.now(UTC)


def gate_name(task_id: str) -> str:
    """The gate a task id is (other DAGs' gates: the task id's last part)."""
    return GATE_BY_TASK.get(task_id, task_id.rpartition(".")[2])


def _from_detail(detail: dict[str, Any]) -> WaitingGate | None:
    ti = detail.get("task_instance") or {}
    dag_id = str(ti.get("dag_id") or "")
    estate = estate_of_dag_id(dag_id)
    wave = _wave_of_dag_id(dag_id)
    task_id = str(ti.get("task_id") or "")
    if estate is None or wave is None or not task_id:
        return None
    return WaitingGate(
        estate=estate, wave=wave, dag_id=dag_id,
        dag_run_id=str(ti.get("dag_run_id") or ti.get("run_id") or ""),
        task_id=task_id, map_index=int(ti.get("map_index", -1)), gate=gate_name(task_id),
        subject=str(detail.get("subject") or ""), created_at=_parse_time(detail.get("created_at")),
        params=dict(detail.get("params") or {}))


def waiting_gates(client: Any, estate: str | None = None) -> list[WaitingGate]:
    """Gates of wave DAGs waiting for an answer now. Only task instances already parked
    in ``awaiting_input``: an answer that lands before the worker reported the park races
    the executor in Airflow 3.3 and fails the gate (see ``orchestration.follow``)."""
    found = []
    for detail in client.hitl_details("~", "~", pending_only=True):
        ti = detail.get("task_instance") or {}
        if detail.get("response_received") or ti.get("state") not in ("awaiting_input",
                                                                       "deferred"):
            continue
        gate = _from_detail(detail)
        if gate is not None and (estate is None or gate.estate == estate):
            found.append(gate)
    return sorted(found, key=lambda x: (x.estate, x.wave, x.created_at))


def match_gates(gates: list[WaitingGate], reference: str) -> list[WaitingGate]:
    """Waiting gates a reference names: ``cutover@wave-2`` exactly; ``cutover``,
    ``plan_risks``, ``risk``, ``live-cutover`` by name; ``phase-6`` by the migration
    phase the gate holds back (the plan's "Migration Phase: 6/7")."""
    ref = reference.strip().lower()
    exact = _REF.match(ref)
    if exact:
        name, wave = exact["gate"].replace("-", "_"), int(exact["wave"])
        return [x for x in gates if x.gate == name and x.wave == wave]
    if ref.startswith("phase-") and ref[6:].isdigit():
        return [x for x in gates if phase_index(x.task_id) == int(ref[6:])]
    names = GATE_WORDS.get(ref, (ref.replace("-", "_"),))
    return [x for x in gates if x.gate in names]


def phase_index(task_id: str) -> int | None:
    group = task_id.partition(".")[0]
    group = _PHASE_OF_GROUP.get(group, group)
    if group in g.PHASE_GROUPS:
        return g.PHASE_GROUPS.index(group) + 1
    return None


# -- evidence --------------------------------------------------------------------------


@dataclass(frozen=True)
class Evidence:
    facts: GateFacts
    checks: list[Check]
    estimated_downtime: str | None
    plan_version: int | None


def risk_level(environment: str | None, approval_reasons: list[str], live: int) -> str:
    """high: production with the planner's approval reasons or live servers; medium:
    other production; low: non-production. (The plan shows a risk level on the card;
    the planner gives reasons, not a level, so this is the mapping.)"""
    if environment == "production" or environment == "mixed":
        return "high" if (approval_reasons or live) else "medium"
    return "low"


def _evidence(session: Session, estate: str, wave: int, dag_run_id: str,
              gate: str) -> Evidence:
    runs = repository.phase_runs(session, estate, wave)
    this_run = [r for r in runs if r.dag_run_id == dag_run_id]
    version = this_run[-1].plan_version if this_run else None
    plan = repository.get_plan(session, estate, version)
    environment = None
    reasons: list[str] = []
    live: list[str] = []
    if plan is not None:
        try:
            w = plan.wave(wave)
        except KeyError:
            w = None
        if w is not None:
            environment = w.environment
            reasons = list(w.approval_reasons)
            live = [s for s in w.server_ids if plan.server(s).live]
            version = plan.version
    checks = [Check(name=f"{r.phase}: {r.summary or r.status}"[:200],
                    passed=r.status in ("success", "skipped"))
              for r in this_run if r.status != "running"]
    seen = set()
    for event in repository.events(session, estate, wave=wave):
        if (event.dag_run_id == dag_run_id and event.kind == "gate_passed"
                and event.phase not in seen):
            seen.add(event.phase)
            checks.append(Check(name=event.message[:200], passed=True))
    downtime: str | None = None
    if gate in ("cutover", "live_cutover"):
        if live:
            measured = repository.live_downtimes(session, estate, wave)
            figures = [f"{sid} {info.get('downtime_s')}s" for sid, info in measured.items()]
            downtime = (f"a measured freeze per live server ({len(live)}); last run: "
                        + ", ".join(figures)) if figures else (
                f"a short freeze per live server ({len(live)}), measured at cutover")
        else:
            downtime = "none planned: weighted-DNS canary, the source serves until 100%"
    elif gate == "rollback":
        downtime = "none planned: traffic moves back to the source at once"
    facts = GateFacts(
        gate=gate, environment=environment,
        risk_level=risk_level(environment, reasons, len(live)) if environment else None,
        phase_status={r.phase: r.status for r in this_run},
        wave_phases_succeeded=frozenset(r.phase for r in runs if r.status == "success"))
    return Evidence(facts, checks, downtime, version)


def _approver_names(session: Session, estate: str) -> list[str]:
    return [(a.display_name or a.user_key) + (" (backup)" if a.role == "backup" else "")
            for a in state.approvers_of(session, estate)]


def _scheduled(row: TeamsApprovalCardRow | None) -> datetime | None:
    found = _RESCHEDULED.match(row.comment or "") if row is not None else None
    return _parse_time(found["at"]) if found else None


def _request(session: Session, *, estate: str, wave: int, dag_run_id: str, task_id: str,
             gate: str, urgency: str, respond_by: datetime | None,
             requested_at: datetime | None, scheduled_at: datetime | None,
             evidence: Evidence | None = None) -> ApprovalRequest:
    ev = evidence or _evidence(session, estate, wave, dag_run_id, gate)
    return ApprovalRequest(
        migration_id=estate, gate=f"{gate}@wave-{wave}", kind=GATE_KIND.get(gate, "phase"),
        title=f"{GATE_TITLE.get(gate, gate)} (wave {wave})",
        phase_index=phase_index(task_id),
        phase_total=len(g.PHASE_GROUPS) if phase_index(task_id) else None,
        risk_level=ev.facts.risk_level, estimated_downtime=ev.estimated_downtime,
        checks=ev.checks, scheduled_at=scheduled_at, requested_at=requested_at,
        sla=urgency,  # type: ignore[arg-type]
        respond_by=respond_by, approvers=_approver_names(session, estate))


def _row_request(session: Session, row: TeamsApprovalCardRow) -> ApprovalRequest:
    return _request(session, estate=row.estate, wave=row.wave, dag_run_id=row.dag_run_id,
                    task_id=row.task_id, gate=row.gate, urgency=row.urgency,
                    respond_by=row.respond_by, requested_at=row.posted_at,
                    scheduled_at=_scheduled(row))


# -- posting ---------------------------------------------------------------------------


def _rows_of_gate(session: Session, estate: str, wave: int, dag_run_id: str,
                  gate: str) -> list[TeamsApprovalCardRow]:
    return list(session.scalars(select(TeamsApprovalCardRow).where(
        TeamsApprovalCardRow.estate == estate, TeamsApprovalCardRow.wave == wave,
        TeamsApprovalCardRow.dag_run_id == dag_run_id, TeamsApprovalCardRow.gate == gate)
        .order_by(TeamsApprovalCardRow.id)))


def _clock(session: Session, gate: WaitingGate, sla: SlaConfig) -> tuple[str, datetime]:
    """The gate's urgency and respond-by: those of its cards if any were posted (a
    reschedule moved them), else from the SLA data, the clock starting when the gate
    began waiting."""
    rows = [r for r in _rows_of_gate(session, gate.estate, gate.wave, gate.dag_run_id,
                                     gate.gate) if r.decided_at is None]
    if rows and rows[0].respond_by is not None:
        return rows[0].urgency, rows[0].respond_by
    facts = _evidence(session, gate.estate, gate.wave, gate.dag_run_id, gate.gate).facts
    urgency = sla.urgency_for(gate.gate, facts.environment, facts.risk_level)
    return urgency, sla.respond_by(urgency, gate.created_at)


def _post(session_url: str | None, sender: Sender, gate: WaitingGate,
          conversations: list[ConversationRef], sla: SlaConfig, *,
          repost: bool = False) -> tuple[int, dict[str, Any] | None]:
    """Post the gate's card to each conversation not holding one yet (``repost``: to
    every one; a card already decided for a gate that waits again, because it was
    cleared to ask again, is reset and posted anew). The row is claimed before the send
    (the unique key stops a second bot process) and dropped again if the send fails, so
    the next scan retries."""
    posted = 0
    card: dict[str, Any] | None = None
    for ref in conversations:
        with session_scope(session_url) as session:
            urgency, respond_by = _clock(session, gate, sla)
            existing = session.scalars(select(TeamsApprovalCardRow).where(
                TeamsApprovalCardRow.estate == gate.estate,
                TeamsApprovalCardRow.wave == gate.wave,
                TeamsApprovalCardRow.dag_run_id == gate.dag_run_id,
                TeamsApprovalCardRow.gate == gate.gate,
                TeamsApprovalCardRow.conversation_id == ref.conversation_id)).one_or_none()
            if existing is not None and existing.decided_at is not None:
                # decided, yet the gate waits again: it was cleared to ask again (the wave
                # DAG's way after a rejection); a new card and a new SLA clock
                existing.decided_at = existing.decided_by = existing.decision = None
                existing.comment = existing.reminded_at = existing.escalated_at = None
                existing.respond_by = existing.activity_id = None
                session.flush()
                urgency, respond_by = _clock(session, gate, sla)
                existing.urgency, existing.respond_by = urgency, respond_by
            elif existing is not None and not repost:
                continue
            req = _request(session, estate=gate.estate, wave=gate.wave,
                           dag_run_id=gate.dag_run_id, task_id=gate.task_id, gate=gate.gate,
                           urgency=urgency, respond_by=respond_by,
                           requested_at=gate.created_at, scheduled_at=_scheduled(existing))
            card = approval_card(req)
            if existing is None:
                row = TeamsApprovalCardRow(
                    estate=gate.estate, wave=gate.wave, dag_id=gate.dag_id,
                    dag_run_id=gate.dag_run_id, task_id=gate.task_id,
                    map_index=gate.map_index, gate=gate.gate, urgency=urgency,
                    conversation_id=ref.conversation_id, activity_id=None,
                    posted_at=datetime.now(UTC), respond_by=respond_by)
                try:
                    with session.begin_nested():
                        session.add(row)
                except IntegrityError:  # another bot process posts it
                    continue
        try:
            activity_id = sender.send(ref, Reply(card=card))
        except Exception as exc:  # one conversation failing must not stop the rest
            log.warning("approval card for %s %s not posted to %s: %s", gate.estate,
                        gate.ref, ref.conversation_id, exc)
            if existing is None or existing.activity_id is None:
                with session_scope(session_url) as session:
                    for stale in _rows_of_gate(session, gate.estate, gate.wave,
                                               gate.dag_run_id, gate.gate):
                        if (stale.conversation_id == ref.conversation_id
                                and stale.activity_id is None):
                            session.delete(stale)
            continue
        with session_scope(session_url) as session:
            for row in _rows_of_gate(session, gate.estate, gate.wave, gate.dag_run_id,
                                     gate.gate):
                if row.conversation_id == ref.conversation_id:
                    row.activity_id = activity_id
                    row.posted_at = datetime.now(UTC)
        posted += 1
    return posted, card


def post_waiting_gates(*, store_url: str | None, client: Any, sender: Sender,
                       sla: SlaConfig | None = None) -> int:
    """Post an approval card for every waiting gate to every conversation that hears
    about its estate and has no card for it yet; returns how many cards were posted.
    Also closes the cards of gates answered elsewhere (the Airflow UI, REST). A mute
    does not hold back approval cards: the wave waits for them."""
    sla = sla or default_sla()
    gates = waiting_gates(client)
    total = 0
    for gate in gates:
        with session_scope(store_url, read_only=True) as session:
            refs = [c.ref for c in state.conversations_for(session, gate.estate)]
        total += _post(store_url, sender, gate, refs, sla)[0]
    _close_answered_elsewhere(store_url, client, sender, gates)
    return total


# -- answering -------------------------------------------------------------------------


def _user_label(user: Inbound) -> str:
    return user.user_name or user.user_aad_id or user.user_id


def _decided_message(row: TeamsApprovalCardRow) -> str:
    at = row.decided_at.strftime("%Y-%m-%d %H:%M UTC") if row.decided_at else "?"
    return f"already decided ({row.decision}) by {row.decided_by} at {at}"


def _update_cards(store_url: str | None, sender: Sender, rows: list[int],
                  decision: ApprovalDecision, mark: bool) -> dict[str, Any] | None:
    """Show ``decision`` on each card (``rows`` ids); ``mark`` records it as decided."""
    card = None
    for row_id in rows:
        with session_scope(store_url) as session:
            row = session.get(TeamsApprovalCardRow, row_id)
            if row is None:
                continue
            if decision.decision == "rescheduled":
                row.comment = (f"rescheduled to {decision.new_time.isoformat()} by "
                               f"{decision.by}" if decision.new_time else row.comment)
            # a rescheduled gate still waits: its card keeps the buttons and shows the
            # new time and respond-by
            card = (approval_card(_row_request(session, row))
                    if decision.decision == "rescheduled"
                    else approval_decided_card(_row_request(session, row), decision))
            if mark:
                row.decided_at = decision.at
                row.decided_by = decision.by[:255]
                row.decision = decision.decision
                row.comment = decision.reason
            conv = state.conversation(session, row.conversation_id)
            activity_id = row.activity_id
        if conv is None or activity_id is None:
            continue
        try:
            sender.update(conv.ref, activity_id, Reply(card=card))
        except Exception as exc:  # the decision stands; the card is cosmetic
            log.warning("approval card %s in %s not updated: %s", activity_id,
                        conv.ref.conversation_id, exc)
    return card


def _respond(client: Any, gate: WaitingGate, approve: bool, who: str, user_key: str,
             reason: str | None) -> None:
    """Answer the gate in Airflow. The Teams user rides along in ``params_input`` when
    the gate defines no form (the ApprovalOperator then accepts any keys), since the
    HITL ``responded_by`` is the bot's Airflow user, not the person."""
    # An answer that lands within seconds of the park races the executor in Airflow 3.3
    # and fails the gate (the wave then rolls back): seen from Teams when a card was
    # clicked two seconds after it was posted. Hold the answer until the gate has waited
    # SETTLE_SECONDS, as orchestration.follow does for REST answers.
    waited = (datetime.now(UTC) - gate.created_at).total_seconds()
    if waited < SETTLE_SECONDS:
        _sleep(SETTLE_SECONDS - max(waited, 0.0))
    params_input: dict[str, Any] = {}
    if not gate.params:
        params_input = {"teams_user": who, "teams_user_key": user_key}
        if reason:
            params_input["reason"] = reason
    client.respond_hitl(gate.dag_id, gate.dag_run_id, gate.task_id, gate.map_index,
                        chosen_options=["Approve" if approve else "Reject"],
                        params_input=params_input)


def _add_event(store_url: str | None, gate: WaitingGate, kind: str, message: str,
               data: dict[str, Any]) -> None:
    """An event in the store's log; after Airflow took an answer, a store that cannot
    take the event (an estate the store no longer has) must not turn it into an error."""
    try:
        with session_scope(store_url) as session:
            repository.add_event(session, estate=gate.estate, wave=gate.wave,
                                 run_id=gate.dag_run_id, phase=gate.gate, kind=kind,
                                 message=message, data=data)
    except StoreError as exc:
        log.warning("event %s for %s %s not recorded: %s", kind, gate.estate, gate.ref, exc)


def _record_event(store_url: str | None, gate: WaitingGate, decision: str, who: str,
                  reason: str | None) -> None:
    """The store's event log names the Teams user; the approvals row names the bot's
    Airflow user until the operator reads ``params_input`` (see docs/teams-approvals.md)."""
    _add_event(store_url, gate, "approval_teams",
               f"gate '{gate.gate}' {decision} in Teams by {who}"
               + (f": {reason}" if reason else ""),
               {"decision": decision, "by": who, "reason": reason})


def _already_answered(store_url: str | None, client: Any, estate: str,
                      reference: str) -> str | None:
    """Who answered the gate a reference names, when it is not waiting any more."""
    with session_scope(store_url, read_only=True) as session:
        rows = list(session.scalars(select(TeamsApprovalCardRow).where(
            TeamsApprovalCardRow.estate == estate)
            .order_by(TeamsApprovalCardRow.id.desc())))
        named = _rows_matching(rows, reference)
        for row in named:
            if row.decided_at is not None and row.decision != "closed":
                return f"{row.gate}@wave-{row.wave} of {estate}: {_decided_message(row)}"
        for row in named:  # answered in the UI or by REST since the card was posted
            try:
                details = client.hitl_details(row.dag_id, row.dag_run_id)
            except AirflowApiError:
                continue
            for detail in details:
                ti = detail.get("task_instance") or {}
                if ti.get("task_id") == row.task_id and detail.get("response_received"):
                    by = _answered_by(detail)
                    at = _parse_time(detail.get("responded_at")).strftime("%Y-%m-%d %H:%M UTC")
                    return (f"{row.gate}@wave-{row.wave} of {estate}: already decided "
                            f"({_choice(detail)}) by {by} at {at}")
        approvals = repository.approvals(session, estate)
    for approval in reversed(approvals):
        if approval.decision != "pending" and _name_matches(approval.gate, approval.wave,
                                                            reference):
            at = (approval.responded_at.strftime("%Y-%m-%d %H:%M UTC")
                  if approval.responded_at else "?")
            return (f"{approval.gate}@wave-{approval.wave} of {estate}: already decided "
                    f"({approval.decision}) by {approval.approved_by} at {at}")
    return None


def _name_matches(gate: str, wave: int, reference: str) -> bool:
    fake = WaitingGate(estate="", wave=wave, dag_id="", dag_run_id="", task_id=gate,
                       map_index=-1, gate=gate, subject="", created_at=datetime.now(UTC),
                       params={})
    return bool(match_gates([fake], reference))


def _rows_matching(rows: list[TeamsApprovalCardRow], reference: str
                   ) -> list[TeamsApprovalCardRow]:
    out = []
    for row in rows:
        fake = WaitingGate(estate=row.estate, wave=row.wave, dag_id=row.dag_id,
                           dag_run_id=row.dag_run_id, task_id=row.task_id,
                           map_index=row.map_index, gate=row.gate, subject="",
                           created_at=row.posted_at, params={})
        if match_gates([fake], reference):
            out.append(row)
    return out


def _answered_by(detail: dict[str, Any]) -> str:
    teams = (detail.get("params_input") or {}).get("teams_user")
    user = detail.get("responded_by_user") or {}
    airflow_user = user.get("name") or user.get("id") or "unknown"
    return f"{teams} (Teams)" if teams else airflow_user


def _choice(detail: dict[str, Any]) -> str:
    chosen = (detail.get("chosen_options") or [""])[0]
    return "approved" if chosen == "Approve" else "rejected"


def _waiting_list(gates: list[WaitingGate], estate: str) -> str:
    mine = [x.ref for x in gates if x.estate == estate]
    return (f"waiting in {estate}: " + ", ".join(mine)) if mine else \
        f"no gate of {estate} is waiting"


def _find(client: Any, estate: str, reference: str) -> tuple[WaitingGate | None, str]:
    gates = waiting_gates(client, estate)
    found = match_gates(gates, reference)
    if len(found) == 1:
        return found[0], ""
    if len(found) > 1:
        return None, (f"'{reference}' matches {len(found)} waiting gates of {estate}: "
                      + ", ".join(x.ref for x in found) + "; say which one")
    return None, f"gate '{reference}' is not waiting; {_waiting_list(gates, estate)}"


def answer_gate(*, store_url: str | None, client: Any, estate: str, gate: str,
                decision: Decision, user: Inbound, reason: str | None,
                when: datetime | None, sender: Sender,
                sla: SlaConfig | None = None) -> GateAnswer:
    """Approve, reject (a reason is required) or reschedule (``when``: the new time) a
    waiting gate, for the estate's approvers only."""
    if decision not in ("approve", "reject", "reschedule"):
        return GateAnswer(ok=False, message=f"unknown decision {decision!r}: approve, "
                                            "reject or reschedule")
    with session_scope(store_url, read_only=True) as session:
        approver = state.is_approver(session, estate, user.user_aad_id, user.user_name,
                                     user.user_id)
        names = _approver_names(session, estate)
    who = _user_label(user)
    if approver is None:
        listed = ", ".join(names) if names else (
            "none set (an admin sets them: migrationbox teams approvers set "
            f"{estate} <user>[:backup] ...)")
        return GateAnswer(ok=False, message=f"you may not approve {estate}; approvers "
                                            f"are {listed}")
    reason = (reason or "").strip() or None
    if decision == "reject" and not reason:
        return GateAnswer(ok=False, message="a rejection needs a reason: reject "
                                            f"{gate} \"why\"")
    if decision == "reschedule":
        if when is None or when.tzinfo is None:
            return GateAnswer(ok=False, message="reschedule needs a new date and time "
                                                "(with its time zone)")
        if when <= datetime.now(UTC):
            return GateAnswer(ok=False, message=f"the new time {when.isoformat()} is "
                                                "not in the future")
        if when > datetime.now(UTC) + MAX_RESCHEDULE:
            return GateAnswer(ok=False, message=(
                f"the new time {when.isoformat()} is more than {MAX_RESCHEDULE.days} days "
                "ahead; reject the gate instead and clear it when the time comes"))
    waiting, why = _find(client, estate, gate)
    if waiting is None:
        answered = _already_answered(store_url, client, estate, gate)
        return GateAnswer(ok=False, message=answered or why)
    now = datetime.now(UTC)
    if decision == "reschedule":
        return _reschedule(store_url, sender, waiting, who, when, reason,
                           sla or default_sla())
    try:
        _respond(client, waiting, decision == "approve", who,
                 approver.user_key, reason)
    except AirflowApiError as exc:
        if exc.status == 409:
            answered = _already_answered(store_url, client, estate, waiting.ref)
            return GateAnswer(ok=False, message=answered or f"{waiting.ref}: already decided")
        return GateAnswer(ok=False, message=f"Airflow did not take the answer for "
                                            f"{waiting.ref} of {estate}: {exc}")
    verdict: Literal["approved", "rejected"] = ("approved" if decision == "approve"
                                                else "rejected")
    _record_event(store_url, waiting, verdict, who, reason)
    card = _close_gate(store_url, sender, waiting,
                       ApprovalDecision(decision=verdict, by=who, at=now, reason=reason))
    return GateAnswer(ok=True, message=f"{waiting.ref} of {estate} {verdict} by {who} at "
                                       f"{now.strftime('%H:%M UTC')}", card=card)


def _close_gate(store_url: str | None, sender: Sender, gate: WaitingGate,
                decision: ApprovalDecision) -> dict[str, Any]:
    with session_scope(store_url) as session:
        ids = [r.id for r in _rows_of_gate(session, gate.estate, gate.wave, gate.dag_run_id,
                                           gate.gate) if r.decided_at is None]
        if not ids:  # answered without a card posted: still answer with the decided card
            req = _request(session, estate=gate.estate, wave=gate.wave,
                           dag_run_id=gate.dag_run_id, task_id=gate.task_id,
                           gate=gate.gate, urgency="standard", respond_by=None,
                           requested_at=gate.created_at, scheduled_at=None)
            return approval_decided_card(req, decision)
    card = _update_cards(store_url, sender, ids, decision, mark=True)
    assert card is not None
    return card


def _reschedule(store_url: str | None, sender: Sender, gate: WaitingGate, who: str,
                when: datetime | None, reason: str | None, sla: SlaConfig) -> GateAnswer:
    """Keep the gate waiting and restart its SLA clock at ``when``: the respond-by moves
    to ``when`` + the urgency's window, reminders and escalation start over. Nothing in
    Airflow changes (a HITL gate has no "ask again at" time)."""
    assert when is not None
    with session_scope(store_url) as session:
        urgency, _ = _clock(session, gate, sla)
        respond_by = sla.respond_by(urgency, when)
        rows = [r for r in _rows_of_gate(session, gate.estate, gate.wave, gate.dag_run_id,
                                         gate.gate) if r.decided_at is None]
        for row in rows:
            row.urgency = urgency
            row.respond_by = respond_by
            row.reminded_at = None
            row.escalated_at = None
        ids = [r.id for r in rows]
    decision = ApprovalDecision(decision="rescheduled", by=who, at=datetime.now(UTC),
                                new_time=when, reason=reason)
    _update_cards(store_url, sender, ids, decision, mark=False)
    _add_event(store_url, gate, "approval_rescheduled",
               f"gate '{gate.gate}' rescheduled in Teams by {who} to {when.isoformat()}; "
               f"respond by {respond_by.isoformat()}",
               {"by": who, "to": when.isoformat(), "respond_by": respond_by.isoformat()})
    with session_scope(store_url, read_only=True) as session:
        req = _request(session, estate=gate.estate, wave=gate.wave,
                       dag_run_id=gate.dag_run_id, task_id=gate.task_id, gate=gate.gate,
                       urgency=urgency, respond_by=respond_by, requested_at=gate.created_at,
                       scheduled_at=when)
    return GateAnswer(ok=True, message=(
        f"{gate.ref} of {gate.estate} rescheduled to {when.strftime('%Y-%m-%d %H:%M UTC')} "
        f"by {who}: the gate keeps waiting; respond by "
        f"{respond_by.strftime('%Y-%m-%d %H:%M UTC')}"),
        card=approval_decided_card(req, decision))


def request_approval(*, store_url: str | None, client: Any, estate: str, gate: str,
                     requested_by: Inbound, sender: Sender,
                     sla: SlaConfig | None = None) -> GateAnswer:
    """Post (again) the card of a waiting gate to the conversations of the estate and
    the one asking; anyone may ask, only approvers may answer."""
    sla = sla or default_sla()
    waiting, why = _find(client, estate, gate)
    if waiting is None:
        answered = _already_answered(store_url, client, estate, gate)
        return GateAnswer(ok=False, message=answered or why)
    with session_scope(store_url) as session:
        state.remember_conversation(session, requested_by.conversation)
        refs = [c.ref for c in state.conversations_for(session, estate)]
    if requested_by.conversation.conversation_id not in {r.conversation_id for r in refs}:
        refs.append(requested_by.conversation)
    posted, card = _post(store_url, sender, waiting, refs, sla, repost=True)
    return GateAnswer(ok=posted > 0, card=card, message=(
        f"approval for {waiting.ref} of {estate} requested by {_user_label(requested_by)}: "
        f"card posted to {posted} conversation(s)") if posted else
        f"the card for {waiting.ref} of {estate} could not be posted")


# -- closing cards answered elsewhere ----------------------------------------------------


def _close_answered_elsewhere(store_url: str | None, client: Any, sender: Sender,
                              waiting: list[WaitingGate]) -> None:
    """Cards of gates no longer waiting: show the answer given in the UI or by REST, or
    mark them closed (run cleared, failed or gone) so the SLA clock stops."""
    still = {(x.dag_id, x.dag_run_id, x.task_id) for x in waiting}
    with session_scope(store_url, read_only=True) as session:
        open_rows = [(r.id, r.dag_id, r.dag_run_id, r.task_id) for r in session.scalars(
            select(TeamsApprovalCardRow).where(TeamsApprovalCardRow.decided_at.is_(None)))]
    by_run: dict[tuple[str, str], list[tuple[int, str]]] = {}
    for row_id, dag_id, run_id, task_id in open_rows:
        if (dag_id, run_id, task_id) not in still:
            by_run.setdefault((dag_id, run_id), []).append((row_id, task_id))
    for (dag_id, run_id), rows in by_run.items():
        try:
            details = {((d.get("task_instance") or {}).get("task_id")): d
                       for d in client.hitl_details(dag_id, run_id)}
        except AirflowApiError as exc:
            if exc.status != 404:
                continue
            details = {}
        for row_id, task_id in rows:
            detail = details.get(task_id)
            if detail is not None and not detail.get("response_received"):
                continue  # waiting, but not parked yet (or again after a clear)
            if detail is not None:
                decision = ApprovalDecision(
                    decision=_choice(detail),  # type: ignore[arg-type]
                    by=_answered_by(detail), at=_parse_time(detail.get("responded_at")))
                _update_cards(store_url, sender, [row_id], decision, mark=True)
            else:
                with session_scope(store_url) as session:
                    row = session.get(TeamsApprovalCardRow, row_id)
                    if row is not None:
                        row.decided_at = datetime.now(UTC)
                        row.decision = "closed"
                        row.comment = "the gate is gone (run cleared, failed or deleted)"


# -- the SLA clock ---------------------------------------------------------------------


def _mention(names: list[str]) -> str:
    return ", ".join(f"@{n}" for n in names) if names else "(nobody)"


def sla_tick(*, store_url: str | None, client: Any, sender: Sender, now: datetime,
             sla: SlaConfig | None = None) -> list[str]:
    """One pass of the SLA clock over the open cards: a reminder to each conversation
    (once), escalation to the backup approvers (once per gate), and an emergency gate
    approved by itself only when every safety criterion of its urgency holds (else it is
    escalated and keeps waiting). Returns a line per action taken."""
    sla = sla or default_sla()
    actions: list[str] = []
    gates = {(x.dag_id, x.dag_run_id, x.task_id): x for x in waiting_gates(client)}
    with session_scope(store_url, read_only=True) as session:
        rows = list(session.scalars(select(TeamsApprovalCardRow).where(
            TeamsApprovalCardRow.decided_at.is_(None), TeamsApprovalCardRow.respond_by.is_not(None))
            .order_by(TeamsApprovalCardRow.id)))
        session.expunge_all()
    by_gate: dict[tuple[str, str, str], list[TeamsApprovalCardRow]] = {}
    for row in rows:
        by_gate.setdefault((row.dag_id, row.dag_run_id, row.task_id), []).append(row)
    for key, group in by_gate.items():
        gate = gates.get(key)
        if gate is None:
            continue  # answered elsewhere or not parked: post_waiting_gates closes it
        first = group[0]
        assert first.respond_by is not None
        policy = sla.policy(first.urgency)
        elapsed = sla.elapsed(first.urgency, first.respond_by, now)
        due = first.respond_by.strftime("%Y-%m-%d %H:%M UTC")
        with session_scope(store_url, read_only=True) as session:
            approvers = state.approvers_of(session, gate.estate)
        primary = [a.display_name or a.user_key for a in approvers if a.role == "primary"]
        backup = [a.display_name or a.user_key for a in approvers if a.role == "backup"]
        if (policy.auto_approve_at_minutes is not None
                and elapsed >= policy.auto_approve_at_minutes):
            with session_scope(store_url, read_only=True) as session:
                facts = _evidence(session, gate.estate, gate.wave, gate.dag_run_id,
                                  gate.gate).facts
            results = evaluate(policy.auto_approve_criteria, facts)
            if all(ok for _, ok, _ in results):
                summary = "; ".join(f"{n}: {why}" for n, _, why in results)
                try:
                    _respond(client, gate, True, AUTO_APPROVER, "migrationbox",
                             f"emergency SLA expired, criteria hold: {summary}")
                except AirflowApiError as exc:
                    actions.append(f"{gate.estate} {gate.ref}: auto-approve refused by "
                                   f"Airflow: {exc}")
                    continue
                _record_event(store_url, gate, "approved", AUTO_APPROVER, summary)
                _close_gate(store_url, sender, gate, ApprovalDecision(
                    decision="approved", by=AUTO_APPROVER, at=now,
                    reason=f"no answer within the {first.urgency} SLA; criteria hold: "
                           f"{summary}"[:500]))
                actions.append(f"{gate.estate} {gate.ref}: auto-approved ({summary})")
                continue
            failing = [f"{n} ({why})" for n, ok, why in results if not ok]
            if all(r.escalated_at is None for r in group):
                text = (f"🚨 {gate.estate} {gate.ref} was not answered within the "
                        f"{first.urgency} SLA (due {due}) and is NOT auto-approved: "
                        f"{'; '.join(failing)}. Backup approvers {_mention(backup)}, "
                        "please decide.")
                _broadcast(store_url, sender, group, text, "escalated_at", now)
                actions.append(f"{gate.estate} {gate.ref}: escalated, not auto-approved "
                               f"({'; '.join(failing)})")
            continue
        if (policy.escalate_at_minutes is not None and elapsed >= policy.escalate_at_minutes
                and all(r.escalated_at is None for r in group)):
            who = _mention(backup) if backup else (
                f"nobody: no backup approver is set for {gate.estate}")
            text = (f"🚨 Escalation: {gate.estate} {gate.ref} has had no answer within the "
                    f"{first.urgency} SLA (due {due}). Backup approvers: {who}.")
            _broadcast(store_url, sender, group, text, "escalated_at", now)
            actions.append(f"{gate.estate} {gate.ref}: escalated to {who}")
            continue
        if (policy.remind_at_minutes is not None and elapsed >= policy.remind_at_minutes
                and all(r.escalated_at is None for r in group)):
            pending = [r for r in group if r.reminded_at is None]
            if pending:
                text = (f"⏰ Reminder: {gate.estate} {gate.ref} waits for approval "
                        f"({first.urgency}, respond by {due}). Approvers: "
                        f"{_mention(primary)}.")
                _broadcast(store_url, sender, pending, text, "reminded_at", now)
                actions.append(f"{gate.estate} {gate.ref}: reminded {_mention(primary)}")
    return actions


def _broadcast(store_url: str | None, sender: Sender, rows: list[TeamsApprovalCardRow],
               text: str, mark: str, now: datetime) -> None:
    """Send ``text`` to the rows' conversations and set ``mark`` on each row; a
    conversation whose send fails is not marked, so the next tick tries it again."""
    for row in rows:
        with session_scope(store_url, read_only=True) as session:
            conv = state.conversation(session, row.conversation_id)
        if conv is None:
            continue
        try:
            sender.send(conv.ref, Reply(text=text))
        except Exception as exc:  # retried on the next tick
            log.warning("SLA message to %s not sent: %s", row.conversation_id, exc)
            continue
        with session_scope(store_url) as session:
            stored = session.get(TeamsApprovalCardRow, row.id)
            if stored is not None:
                setattr(stored, mark, now)
