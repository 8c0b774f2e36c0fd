"""Proactive notifications: what happens to a migration, told to the conversations that
follow it.

The notifier reads two sources in the store, each from a cursor in ``teams_cursors``:

* ``migration_events`` (written by the wave DAG's tasks): the first ``phase_started`` of
  ``preflight`` in a DAG run is *wave_started*; ``phase_failed`` is *phase_failed*;
  ``rollback_started``, ``rolled_back`` and the start of ``teardown`` are *rollback*;
  ``phase_success`` of ``decommission`` is *wave_done*. Everything else (progress, gates
  passed, approvals recorded) stays in the status card and is not pushed.
* the healer's ``healer_incidents`` (same database): a new incident is *incident_opened*,
  one whose status became ``resolved`` is *incident_healed*.

*approval_waiting* is helper A's approval card (``teams.approvals.post_waiting_gates``):
the notifier only calls the ``approvals_hook`` it is given once per scan.

Delivery is at most once per (notification, conversation), through ``teams_notifications``:

1. in one transaction, every new notification is claimed for every conversation that hears
   about its estate (``pending``, or ``skipped`` with the reason when the conversation's
   mute or alert config excludes it, so an unmute does not deliver old news later), and
   the cursor moves; a crash before the commit loses nothing (the rows are read again)
   and one after it doubles nothing (the claims exist);
2. each ``pending`` row, this scan's and any a crashed or deferred scan left, is taken
   with a conditional ``pending -> sending`` update (only one notifier wins it), sent, and
   finished as ``sent`` or ``failed`` with the HTTP attempts. A crash during the HTTP call
   leaves the row ``sending``, which is never sent again: a message may be lost then, but
   never doubled.

A conversation whose delivery gives up on a transient failure (429/5xx after the
client's retries) is not tried again in the same scan; its rows go back to ``pending``
for the next scan until ``max_total_attempts``, so one broken conversation neither blocks
the others nor loses its own messages to a short outage.

The very first scan on a store only records where reading starts (``<cursor>.start``):
a bot installed on a platform with history does not push last month's waves, and the
re-read window never reaches below that start.

Cursors: events by id, re-reading ``EVENT_REREAD_IDS`` ids before the cursor (on
PostgreSQL an event committed late can carry a lower id than one already read; the
claims make the re-read harmless); incidents by ``updated_at`` in epoch seconds,
re-reading ``INCIDENT_REREAD_S``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator
from sqlalchemy import func, inspect, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from migrationbox.store.db import session_scope
from migrationbox.store.models import (
    EstateRow,
    MigrationEventRow,
    TeamsCursorRow,
    TeamsNotificationRow,
)
from migrationbox.teams import state
from migrationbox.teams.contracts import ConversationRef, Reply, Sender

log = logging.getLogger(__name__)

NotificationKind = Literal["wave_started", "phase_failed", "rollback", "wave_done",
                           "incident_opened", "incident_healed", "approval_waiting"]
#: Every kind a conversation can be told about, in the order docs and cards list them.
NOTIFICATION_KINDS: tuple[str, ...] = get_args(NotificationKind)
Severity = Literal["info", "warning", "critical"]
SEVERITIES: tuple[str, ...] = get_args(Severity)
_RANK = {name: i for i, name in enumerate(SEVERITIES)}

#: Severity of each kind; incidents take theirs from the incident's P1..P4.
KIND_SEVERITY: dict[str, str] = {
    "wave_started": "info", "phase_failed": "critical", "rollback": "critical",
    "wave_done": "info", "incident_opened": "warning", "incident_healed": "info",
    "approval_waiting": "warning",
}
_INCIDENT_SEVERITY = {"P1": "critical", "P2": "critical", "P3": "warning", "P4": "info"}

EVENTS_CURSOR = "notifier.events"
INCIDENTS_CURSOR = "notifier.incidents"
EVENT_REREAD_IDS = 200
INCIDENT_REREAD_S = 300
BATCH = 500
_WATCHED_EVENT_KINDS = ("phase_started", "phase_failed", "phase_success",
                        "rollback_started", "rolled_back")
_TEXT_LIMIT = 1500


# ---------------------------------------------------------------------------- alert config


class AlertConfig(BaseModel):
    """What a conversation wants to hear, stored in ``teams_conversations.alert_config``.

    Stored shape (``to_stored``), every key optional; ``{}`` means everything::

        {"kinds": ["phase_failed", "rollback"], "min_severity": "warning"}

    * ``kinds``: the notification kinds wanted (``NOTIFICATION_KINDS``); absent or null:
      all. An empty list is refused: silencing everything is what ``mute`` is for.
    * ``min_severity``: ``info`` < ``warning`` < ``critical``; kinds below it are dropped
      (``KIND_SEVERITY``; an incident's severity follows its P1/P2 critical, P3 warning,
      P4 info).

    A kind must pass both. ``mute`` is separate and temporary (``ConversationState``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    kinds: tuple[NotificationKind, ...] | None = None
    min_severity: Severity = "info"

    @field_validator("kinds")
    @classmethod
    def _kinds(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is None:
            return None
        if not value:
            raise ValueError("an empty list would silence every notification; leave "
                             "kinds out for all of them, or use mute")
        return tuple(k for k in NOTIFICATION_KINDS if k in set(value))

    @classmethod
    def from_stored(cls, stored: Mapping[str, Any] | None) -> AlertConfig:
        """Read the stored dict; raises ``pydantic.ValidationError`` (a ``ValueError``)
        naming the bad key for anything else."""
        return cls.model_validate(dict(stored or {}))

    def to_stored(self) -> dict[str, Any]:
        out: dict[str, Any] = {"min_severity": self.min_severity}
        if self.kinds is not None:
            out["kinds"] = list(self.kinds)
        return out

    def allows(self, kind: str, severity: str) -> bool:
        if self.kinds is not None and kind not in self.kinds:
            return False
        return _RANK.get(severity, len(SEVERITIES)) >= _RANK[self.min_severity]

    def describe(self) -> str:
        kinds = ", ".join(self.kinds) if self.kinds is not None else "all kinds"
        return f"{kinds}, severity {self.min_severity} and above"


# ---------------------------------------------------------------------------- notifications


@dataclass(frozen=True)
class Notification:
    """One thing to tell; ``key`` is what makes it at most once per conversation."""

    key: str
    kind: str
    severity: str
    estate: str
    text: str
    card: dict[str, Any] | None = None

    def reply(self) -> Reply:
        # a card carries its own text; a line of text is enough for the rest
        return Reply(card=self.card) if self.card is not None else Reply(text=self.text)


@dataclass
class NotifyReport:
    """What one scan did (for logs, tests and the bot's health page)."""

    events_read: int = 0
    incidents_read: int = 0
    notifications: int = 0
    claimed: int = 0
    skipped: int = 0
    sent: int = 0
    failed: int = 0
    deferred: int = 0
    approvals_posted: int | None = None
    errors: list[str] = field(default_factory=list)


def _clip(text: str) -> str:
    return text if len(text) <= _TEXT_LIMIT else text[:_TEXT_LIMIT - 1] + "…"


def _when(at: datetime | None) -> str:
    if at is None:
        return "-"
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def notification_card(title: str, color: str, facts: list[tuple[str, str]], message: str,
                      estate: str | None) -> dict[str, Any]:
    """A small Adaptive Card 1.5: a coloured title, facts, the message and (for an
    estate) a Status button the command handler answers with the status card."""
    body: list[dict[str, Any]] = [
        {"type": "TextBlock", "text": title, "weight": "Bolder", "size": "Medium",
         "wrap": True, "color": color},
        {"type": "FactSet", "facts": [{"title": t, "value": v or "-"} for t, v in facts]},
    ]
    if message:
        body.append({"type": "TextBlock", "text": _clip(message), "wrap": True})
    card: dict[str, Any] = {"type": "AdaptiveCard",
                            "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                            "version": "1.5", "body": body}
    if estate:
        card["actions"] = [{"type": "Action.Execute", "title": "Status", "verb": "status",
                            "data": {"verb": "status", "migration_id": estate}}]
    return card


def _event_facts(estate: str, row: MigrationEventRow) -> list[tuple[str, str]]:
    return [("Migration", estate), ("Wave", "-" if row.wave is None else str(row.wave)),
            ("Phase", row.phase or "-"), ("Run", row.dag_run_id or "-"),
            ("When", _when(row.at))]


def event_kind(row: MigrationEventRow) -> str | None:
    """The notification kind of a migration event, before the first-of-run check."""
    if row.kind == "phase_started" and row.phase == "preflight":
        return "wave_started"
    if row.kind == "phase_failed":
        return "phase_failed"
    if row.kind in ("rollback_started", "rolled_back") or (
            row.kind == "phase_started" and row.phase == "teardown"):
        return "rollback"
    if row.kind == "phase_success" and row.phase == "decommission":
        return "wave_done"
    return None


def event_notification(estate: str, row: MigrationEventRow, kind: str) -> Notification:
    wave = f"wave {row.wave}" if row.wave is not None else "the estate"
    key = f"event:{row.id}:{kind}"
    dry = " (dry run)" if "(dry run)" in row.message else ""
    if kind == "wave_started":
        text = f"▶ {estate} {wave} started{dry} (run {row.dag_run_id or '-'})."
        return Notification(key, kind, KIND_SEVERITY[kind], estate, text)
    if kind == "wave_done":
        text = f"✅ {estate} {wave} is done: {row.message}"
        return Notification(key, kind, KIND_SEVERITY[kind], estate, _clip(text))
    if kind == "phase_failed":
        title = f"Phase {row.phase or '?'} failed: {estate} {wave}"
        card = notification_card(title, "Attention", _event_facts(estate, row),
                                 row.message, estate)
        return Notification(key, kind, KIND_SEVERITY[kind], estate,
                            _clip(f"{title}: {row.message}"), card)
    if row.kind == "rolled_back":
        title, color, severity = f"Rolled back: {estate} {wave}", "Warning", "warning"
    elif row.kind == "phase_started":  # teardown
        title, color, severity = (f"Tearing down what {estate} {wave} provisioned",
                                  "Warning", "warning")
    else:
        title, color, severity = f"Rolling back {estate} {wave}", "Attention", "critical"
    card = notification_card(title, color, _event_facts(estate, row), row.message, estate)
    return Notification(key, "rollback", severity, estate, _clip(f"{title}: {row.message}"),
                        card)


def incident_notifications(row: Any) -> list[Notification]:
    """*incident_opened* for every incident, *incident_healed* once it is resolved (a
    short-lived incident read only after it healed gets both, in that order)."""
    from migrationbox.healer.incident import SEVERITY_LABELS, Incident, human_duration

    severity = _INCIDENT_SEVERITY.get(row.severity, "warning")
    label = SEVERITY_LABELS.get(row.severity, "")
    facts = [("Incident", row.incident_id), ("Migration", row.estate),
             ("Severity", f"{row.severity} {label}".strip()), ("Resource", row.resource),
             ("Anomaly", row.anomaly_type), ("Detected", _when(row.detected_at))]
    summary = ""
    mttr = None
    try:
        incident = Incident.model_validate_json(row.body)
        summary, mttr = incident.summary, incident.mttr
    except ValueError:
        log.warning("incident %s: body unreadable, notifying from its columns",
                    row.incident_id)
    title = f"Incident {row.incident_id}: {row.title}"
    out = [Notification(
        f"incident:{row.incident_id}:opened", "incident_opened", severity, row.estate,
        _clip(title), notification_card(title, "Attention" if severity == "critical"
                                        else "Warning", facts, summary, row.estate))]
    if row.status == "resolved":
        text = (f"✅ Incident {row.incident_id} on {row.resource} healed "
                f"(time to recover: {human_duration(mttr)}): {row.title}")
        out.append(Notification(f"incident:{row.incident_id}:healed", "incident_healed",
                                "info", row.estate, _clip(text)))
    return out


# ---------------------------------------------------------------------------- the notifier


def _start(session: Session, name: str, now_position: int) -> int | None:
    """Where reading ``name`` began: a bot installed on a store with history starts at
    the present (nobody wants last month's waves pushed at them), and the re-read window
    never reaches below that start. None on the very first scan, which only records it."""
    start = session.get(TeamsCursorRow, f"{name}.start")
    if start is not None:
        return start.position
    try:
        with session.begin_nested():
            session.add(TeamsCursorRow(name=f"{name}.start", position=now_position,
                                       updated_at=datetime.now(UTC)))
    except IntegrityError:  # a second notifier's first scan recorded it first
        start = session.get(TeamsCursorRow, f"{name}.start")
        assert start is not None
        return start.position
    state.move_cursor(session, name, now_position)
    return None



@dataclass(frozen=True)
class _Decision:
    status: Literal["pending", "skipped"]
    reason: str | None = None


def decide(conv: state.ConversationState, note: Notification, at: datetime) -> _Decision:
    """Whether ``conv`` gets ``note`` now: not while muted for its kind, not when its
    alert config excludes the kind or its severity. An unreadable stored alert config is
    logged and ignored (everything is sent): dropping alerts silently is worse."""
    if conv.muted(note.kind, at):
        return _Decision("skipped", f"muted until {_when(conv.muted_until)}")
    try:
        config = AlertConfig.from_stored(conv.alert_config)
    except ValidationError as exc:
        log.warning("conversation %s: stored alert config %r is invalid, sending all: %s",
                    conv.ref.conversation_id, conv.alert_config, exc)
        return _Decision("pending")
    if not config.allows(note.kind, note.severity):
        return _Decision("skipped", f"alert config: {config.describe()}")
    return _Decision("pending")


class Notifier:
    """Scans the store and sends notifications through ``sender`` (a ``Sender``;
    a ``BotConnectorClient`` also reports its HTTP attempts through ``deliver``)."""

    def __init__(self, store_url: str | None, sender: Sender, *,
                 clock: Callable[[], datetime] | None = None,
                 approvals_hook: Callable[[], int] | None = None,
                 max_total_attempts: int = 15) -> None:
        self.store_url = store_url
        self.sender = sender
        self.clock = clock or (lambda: datetime.now(UTC))
        self.approvals_hook = approvals_hook
        self.max_total_attempts = max_total_attempts

    # -- one scan ------------------------------------------------------------------------

    def scan_once(self) -> NotifyReport:
        report = NotifyReport()
        now = self.clock()
        built: dict[str, Notification] = {}
        with session_scope(self.store_url) as session:
            notes = self._read_events(session, report) + self._read_incidents(session,
                                                                              report)
            report.notifications = len(notes)
            built = {n.key: n for n in notes}
            self._claim(session, notes, now, report)
        self._deliver_pending(built, report)
        if self.approvals_hook is not None:
            try:
                report.approvals_posted = int(self.approvals_hook())
            except Exception as exc:  # the hook is someone else's; the scan goes on
                log.exception("approvals hook failed")
                report.errors.append(f"approvals: {type(exc).__name__}: {exc}")
        return report

    def run(self, stop_event: threading.Event, interval_s: float) -> None:
        """Scan every ``interval_s`` until ``stop_event`` is set; a failed scan (the
        store unreachable, say) is logged and the next one tries again."""
        while not stop_event.is_set():
            try:
                report = self.scan_once()
                if report.sent or report.failed or report.errors:
                    log.info("notifier: %s", report)
            except Exception:
                log.exception("notifier scan failed; next in %.1f s", interval_s)
            stop_event.wait(interval_s)

    # -- reading -------------------------------------------------------------------------

    def _read_events(self, session: Session, report: NotifyReport) -> list[Notification]:
        top = session.scalar(select(func.max(MigrationEventRow.id))) or 0
        floor = _start(session, EVENTS_CURSOR, top)
        if floor is None:
            return []  # first scan ever: from now on, no history
        position = state.cursor(session, EVENTS_CURSOR)
        rows = session.execute(
            select(MigrationEventRow, EstateRow.name)
            .join(EstateRow, EstateRow.id == MigrationEventRow.estate_id)
            .where(MigrationEventRow.id > max(floor, position - EVENT_REREAD_IDS),
                   MigrationEventRow.id <= top,
                   MigrationEventRow.kind.in_(_WATCHED_EVENT_KINDS))
            .order_by(MigrationEventRow.id).limit(BATCH)).all()
        report.events_read = len(rows)
        notes = []
        for row, estate in rows:
            kind = event_kind(row)
            if kind is None:
                continue
            if kind == "wave_started" and not self._first_start(session, row):
                continue  # a retried preflight: the wave started once
            notes.append(event_notification(estate, row, kind))
        state.move_cursor(session, EVENTS_CURSOR,
                          rows[-1][0].id if len(rows) == BATCH else top)
        return notes

    @staticmethod
    def _first_start(session: Session, row: MigrationEventRow) -> bool:
        earlier = session.scalar(
            select(func.count()).select_from(MigrationEventRow).where(
                MigrationEventRow.estate_id == row.estate_id,
                MigrationEventRow.wave == row.wave,
                MigrationEventRow.dag_run_id == row.dag_run_id,
                MigrationEventRow.kind == "phase_started",
                MigrationEventRow.phase == "preflight",
                MigrationEventRow.id < row.id))
        return not earlier

    def _read_incidents(self, session: Session, report: NotifyReport) -> list[Notification]:
        from migrationbox.healer.store import incidents

        if not inspect(session.connection()).has_table(incidents.name):
            return []  # the healer never ran against this store
        floor = _start(session, INCIDENTS_CURSOR, int(self.clock().timestamp()))
        if floor is None:
            return []
        position = state.cursor(session, INCIDENTS_CURSOR)
        since = datetime.fromtimestamp(max(floor, position - INCIDENT_REREAD_S), UTC)
        rows = session.execute(
            select(incidents).where(incidents.c.updated_at >= since)
            .order_by(incidents.c.updated_at, incidents.c.incident_id).limit(BATCH)).all()
        report.incidents_read = len(rows)
        notes = [n for row in rows for n in incident_notifications(row)]
        if rows:
            newest = rows[-1].updated_at
            if newest.tzinfo is None:
                newest = newest.replace(tzinfo=UTC)
            state.move_cursor(session, INCIDENTS_CURSOR, int(newest.timestamp()))
        return notes

    # -- claiming ------------------------------------------------------------------------

    def _claim(self, session: Session, notes: list[Notification], now: datetime,
               report: NotifyReport) -> None:
        if not notes:
            return
        known = set(session.execute(
            select(TeamsNotificationRow.key, TeamsNotificationRow.conversation_id)
            .where(TeamsNotificationRow.key.in_([n.key for n in notes]))).tuples())
        audiences: dict[str, list[state.ConversationState]] = {}
        for note in notes:
            if note.estate not in audiences:
                audiences[note.estate] = state.conversations_for(session, note.estate)
            for conv in audiences[note.estate]:
                cid = conv.ref.conversation_id
                if (note.key, cid) in known:
                    continue
                decision = decide(conv, note, now)
                if not state.claim_notification(session, key=note.key, kind=note.kind,
                                                conversation_id=cid):
                    continue  # another notifier claimed it since we looked
                known.add((note.key, cid))
                if decision.status == "skipped":
                    state.finish_notification(session, key=note.key, conversation_id=cid,
                                              status="skipped", attempts=0,
                                              error=decision.reason)
                    report.skipped += 1
                else:
                    report.claimed += 1
        session.flush()

    # -- delivering ----------------------------------------------------------------------

    def _take(self, row_id: int) -> bool:
        """``pending -> sending`` if nobody else took the row first."""
        with session_scope(self.store_url) as session:
            done = session.execute(
                update(TeamsNotificationRow)
                .where(TeamsNotificationRow.id == row_id,
                       TeamsNotificationRow.status == "pending")
                .values(status="sending")
                .execution_options(synchronize_session=False))
            return getattr(done, "rowcount", 0) == 1

    def _deliver_pending(self, built: dict[str, Notification], report: NotifyReport) -> None:
        with session_scope(self.store_url, read_only=True) as session:
            pending = [(r.id, r.key, r.conversation_id, r.attempts) for r in
                       state.notifications(session, status="pending")][:BATCH]
        failing: set[str] = set()
        refs: dict[str, ConversationRef | None] = {}
        for row_id, key, cid, earlier in pending:
            if cid in failing:
                report.deferred += 1
                continue
            if not self._take(row_id):
                continue
            note = built.get(key) or self._rebuild(key)
            if cid not in refs:
                with session_scope(self.store_url, read_only=True) as session:
                    conv = state.conversation(session, cid)
                refs[cid] = conv.ref if conv else None
            ref = refs[cid]
            if note is None or ref is None:
                self._finish(key, cid, "failed", earlier,
                             "the event or incident is gone" if note is None
                             else "the conversation is no longer known")
                report.failed += 1
                continue
            status, attempts, error, activity_id = self._send(ref, note)
            total = earlier + attempts
            if status == "retry":
                failing.add(cid)
                status = "pending" if total < self.max_total_attempts else "failed"
            self._finish(key, cid, status, total, error, activity_id)
            if status == "sent":
                report.sent += 1
            elif status == "failed":
                report.failed += 1
                report.errors.append(f"{cid}: {error}")
            else:
                report.deferred += 1

    def _send(self, ref: ConversationRef, note: Notification
              ) -> tuple[str, int, str | None, str | None]:
        from migrationbox.teams.connector import NotificationDeliveryError

        try:
            deliver = getattr(self.sender, "deliver", None)
            if callable(deliver):
                delivery = deliver(ref, note.reply())
                return "sent", delivery.attempts, None, delivery.activity_id or None
            return "sent", 1, None, self.sender.send(ref, note.reply()) or None
        except NotificationDeliveryError as exc:
            return ("retry" if exc.retryable else "failed"), exc.attempts, str(exc), None
        except Exception as exc:  # any Sender: record it, go on with the others
            log.exception("sending %s to %s failed", note.key, ref.conversation_id)
            return "failed", 1, f"{type(exc).__name__}: {exc}", None

    def _finish(self, key: str, cid: str, status: str, attempts: int, error: str | None,
                activity_id: str | None = None) -> None:
        with session_scope(self.store_url) as session:
            state.finish_notification(session, key=key, conversation_id=cid, status=status,
                                      attempts=attempts,
                                      error=error[:4000] if error else None,
                                      activity_id=activity_id)

    def _rebuild(self, key: str) -> Notification | None:
        """The notification a claimed row stands for, from its source (a row a crashed
        or deferred scan left pending)."""
        source, _, rest = key.partition(":")
        ident, _, kind = rest.rpartition(":")
        with session_scope(self.store_url, read_only=True) as session:
            if source == "event" and ident.isdigit():
                found = session.execute(
                    select(MigrationEventRow, EstateRow.name)
                    .join(EstateRow, EstateRow.id == MigrationEventRow.estate_id)
                    .where(MigrationEventRow.id == int(ident))).first()
                if found is None:
                    return None
                return event_notification(found[1], found[0], kind)
            if source == "incident":
                from migrationbox.healer.store import incidents

                row = session.execute(select(incidents).where(
                    incidents.c.incident_id == ident)).first()
                if row is None:
                    return None
                wanted = {"opened": "incident_opened", "healed": "incident_healed"}.get(kind)
                return next((n for n in incident_notifications(row) if n.kind == wanted),
                            None)
        return None


def start_notifier_thread(store_url: str | None, sender: Sender, interval_s: float,
                          approvals_hook: Callable[[], int] | None = None
                          ) -> tuple[threading.Thread, threading.Event]:
    """Run ``Notifier.run`` in a daemon thread (the bot server's background work); set
    the returned event and join the thread to stop it."""
    if interval_s <= 0:
        raise ValueError(f"notifier interval must be > 0 seconds, got {interval_s}")
    stop = threading.Event()
    notifier = Notifier(store_url, sender, approvals_hook=approvals_hook)
    thread = threading.Thread(target=notifier.run, args=(stop, interval_s), daemon=True,
                              name="teams-notifier")
    thread.start()
    return thread, stop

