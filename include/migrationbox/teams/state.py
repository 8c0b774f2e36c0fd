"""The bot's state in the MigrationBox store (revision 0003): conversations, pending
confirmations, approvers, the command log, sent notifications and read cursors.

In the store, not in the bot process, because the bot may restart (or run twice behind a
load balancer) and must neither forget where to post nor post the same thing twice. As in
``store.repository``, the caller owns the transaction (``db.session_scope()``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from migrationbox.store.models import (
    EstateApproverRow,
    TeamsCommandRow,
    TeamsConfirmationRow,
    TeamsConversationRow,
    TeamsCursorRow,
    TeamsNotificationRow,
)
from migrationbox.teams.contracts import ConversationRef

#: How long a destructive command's confirmation may be answered.
CONFIRMATION_TTL = timedelta(minutes=10)
APPROVER_ROLES = ("primary", "backup")


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class ConversationState:
    ref: ConversationRef
    estate: str | None
    muted_until: datetime | None
    muted_kinds: tuple[str, ...]
    alert_config: dict[str, Any] = field(default_factory=dict)

    def muted(self, kind: str, at: datetime | None = None) -> bool:
        """True when ``kind`` must not be sent now: a mute still running that covers
        every kind (no kinds listed) or this one."""
        if self.muted_until is None or self.muted_until <= (at or _now()):
            return False
        return not self.muted_kinds or kind in self.muted_kinds


def _state(row: TeamsConversationRow) -> ConversationState:
    return ConversationState(
        ref=ConversationRef.model_validate(row.reference),
        estate=row.estate,
        muted_until=row.muted_until,
        muted_kinds=tuple(row.muted_kinds or ()),
        alert_config=dict(row.alert_config or {}),
    )


def _conversation_row(session: Session, conversation_id: str) -> TeamsConversationRow | None:
    return session.scalars(select(TeamsConversationRow).where(
        TeamsConversationRow.conversation_id == conversation_id)).one_or_none()


def remember_conversation(session: Session, ref: ConversationRef,
                          estate: str | None = None) -> ConversationState:
    """Store (or refresh) how to reach ``ref``; binds it to ``estate`` when given and
    keeps an earlier binding otherwise. Called on every authenticated inbound activity,
    so a serviceUrl Teams moves is followed."""
    row = _conversation_row(session, ref.conversation_id)
    if row is None:
        row = TeamsConversationRow(
            conversation_id=ref.conversation_id, service_url=ref.service_url,
            channel_id=ref.channel_id, tenant_id=ref.tenant_id,
            reference=ref.model_dump(mode="json"), estate=estate, muted_kinds=[],
            alert_config={}, updated_at=_now())
        try:
            with session.begin_nested():
                session.add(row)
        except IntegrityError:  # another bot process stored it first
            row = _conversation_row(session, ref.conversation_id)
            assert row is not None
    row.service_url = ref.service_url
    row.channel_id = ref.channel_id
    row.tenant_id = ref.tenant_id
    row.reference = ref.model_dump(mode="json")
    if estate is not None:
        row.estate = estate
    row.updated_at = _now()
    session.flush()
    return _state(row)


def conversation(session: Session, conversation_id: str) -> ConversationState | None:
    row = _conversation_row(session, conversation_id)
    return _state(row) if row else None


def conversations_for(session: Session, estate: str | None) -> list[ConversationState]:
    """Conversations that hear about ``estate``: the ones bound to it and the ones bound
    to none (a team's general channel hears about every migration). ``None``: all."""
    query = select(TeamsConversationRow).order_by(TeamsConversationRow.id)
    if estate is not None:
        query = query.where(or_(TeamsConversationRow.estate == estate,
                                TeamsConversationRow.estate.is_(None)))
    return [_state(r) for r in session.scalars(query)]


def _require_conversation(session: Session, conversation_id: str) -> TeamsConversationRow:
    row = _conversation_row(session, conversation_id)
    if row is None:
        raise LookupError(f"conversation {conversation_id!r} is not known to the bot")
    return row


def bind_estate(session: Session, conversation_id: str, estate: str | None) -> None:
    _require_conversation(session, conversation_id).estate = estate


def set_mute(session: Session, conversation_id: str, until: datetime | None,
             kinds: Iterable[str] = ()) -> None:
    """Mute ``kinds`` (all when empty) until ``until``; ``until=None`` unmutes."""
    row = _require_conversation(session, conversation_id)
    row.muted_until = until
    row.muted_kinds = sorted(set(kinds)) if until is not None else []
    row.updated_at = _now()


def set_alert_config(session: Session, conversation_id: str, config: dict[str, Any]) -> None:
    row = _require_conversation(session, conversation_id)
    row.alert_config = dict(config)
    row.updated_at = _now()


# -- confirmations -------------------------------------------------------------------


def save_confirmation(session: Session, *, confirmation_id: str, conversation_id: str,
                      user_id: str, intent: dict[str, Any],
                      ttl: timedelta = CONFIRMATION_TTL) -> None:
    now = _now()
    session.add(TeamsConfirmationRow(
        id=confirmation_id, conversation_id=conversation_id, user_id=user_id,
        intent=intent, status="pending", created_at=now, expires_at=now + ttl))
    session.flush()


@dataclass(frozen=True)
class ConfirmationOutcome:
    """``intent`` is set only when the answer was accepted (``status`` confirmed or
    declined); otherwise ``status`` says why not: unknown, other_user, expired, or the
    status it already had (answered once already)."""

    status: str
    intent: dict[str, Any] | None = None


def answer_confirmation(session: Session, *, confirmation_id: str, conversation_id: str,
                        user_id: str, yes: bool) -> ConfirmationOutcome:
    """Answer a pending confirmation once. The update is conditional on ``pending`` so two
    clicks (or two bot processes) cannot both run the intent."""
    row = session.get(TeamsConfirmationRow, confirmation_id)
    if row is None or row.conversation_id != conversation_id:
        return ConfirmationOutcome("unknown")
    if row.user_id != user_id:
        return ConfirmationOutcome("other_user")
    now = _now()
    if row.status != "pending":
        return ConfirmationOutcome(row.status)
    if row.expires_at <= now:
        row.status = "expired"
        return ConfirmationOutcome("expired")
    status = "confirmed" if yes else "declined"
    result = session.execute(
        update(TeamsConfirmationRow)
        .where(TeamsConfirmationRow.id == confirmation_id,
               TeamsConfirmationRow.status == "pending")
        .values(status=status, answered_at=now)
        .execution_options(synchronize_session=False))
    if getattr(result, "rowcount", 0) != 1:
        return ConfirmationOutcome("answered")
    return ConfirmationOutcome(status, dict(row.intent))


def latest_pending_confirmation(session: Session, conversation_id: str,
                                user_id: str) -> str | None:
    """The id of the user's newest unexpired pending confirmation in this conversation
    (a typed "yes" answers that one)."""
    return session.scalars(
        select(TeamsConfirmationRow.id)
        .where(TeamsConfirmationRow.conversation_id == conversation_id,
               TeamsConfirmationRow.user_id == user_id,
               TeamsConfirmationRow.status == "pending",
               TeamsConfirmationRow.expires_at > _now())
        .order_by(TeamsConfirmationRow.created_at.desc())
        .limit(1)).first()


# -- approvers -----------------------------------------------------------------------


@dataclass(frozen=True)
class Approver:
    estate: str
    user_key: str
    display_name: str | None
    role: str


def set_approvers(session: Session, estate: str,
                  approvers: Iterable[tuple[str, str | None, str]]) -> list[Approver]:
    """Replace the estate's approvers with ``(user_key, display_name, role)`` items;
    ``user_key`` is a user's Entra object id or sign-in name (case-insensitive)."""
    items = []
    for user_key, name, role in approvers:
        key = user_key.strip().lower()
        if not key:
            raise ValueError(f"estate {estate!r}: an approver's user key is empty")
        if role not in APPROVER_ROLES:
            raise ValueError(f"estate {estate!r}, approver {user_key!r}: role {role!r} "
                             f"is not one of {', '.join(APPROVER_ROLES)}")
        items.append((key, name, role))
    for row in session.scalars(select(EstateApproverRow)
                               .where(EstateApproverRow.estate == estate)):
        session.delete(row)
    session.flush()
    for key, name, role in items:
        session.add(EstateApproverRow(estate=estate, user_key=key, display_name=name,
                                      role=role, added_at=_now()))
    session.flush()
    return approvers_of(session, estate)


def approvers_of(session: Session, estate: str) -> list[Approver]:
    rows = session.scalars(select(EstateApproverRow)
                           .where(EstateApproverRow.estate == estate)
                           .order_by(EstateApproverRow.role.desc(), EstateApproverRow.id))
    return [Approver(r.estate, r.user_key, r.display_name, r.role) for r in rows]


def is_approver(session: Session, estate: str, *user_keys: str | None) -> Approver | None:
    """The approver entry matching any of the user's keys (object id, sign-in name)."""
    wanted = {k.strip().lower() for k in user_keys if k and k.strip()}
    for approver in approvers_of(session, estate):
        if approver.user_key in wanted:
            return approver
    return None


# -- the command log -----------------------------------------------------------------


def log_command(session: Session, *, conversation_id: str, user_id: str,
                user_name: str | None, text: str, language: str | None,
                command: str | None, migration_id: str | None, outcome: str,
                detail: str | None = None) -> None:
    session.add(TeamsCommandRow(
        at=_now(), conversation_id=conversation_id, user_id=user_id, user_name=user_name,
        text=text[:2000], language=language, command=command, migration_id=migration_id,
        outcome=outcome, detail=(detail or None) and detail[:4000]))
    session.flush()


def recent_commands(session: Session, limit: int = 50) -> list[TeamsCommandRow]:
    return list(session.scalars(select(TeamsCommandRow)
                                .order_by(TeamsCommandRow.id.desc()).limit(limit)))


# -- notifications -------------------------------------------------------------------


def claim_notification(session: Session, *, key: str, kind: str,
                       conversation_id: str) -> bool:
    """Record that ``key`` is to be sent to the conversation; False when it already was
    recorded (sent, or being sent by someone else), so it is sent at most once."""
    try:
        with session.begin_nested():
            session.add(TeamsNotificationRow(key=key, kind=kind,
                                             conversation_id=conversation_id,
                                             status="pending", attempts=0,
                                             created_at=_now()))
    except IntegrityError:
        return False
    return True


def finish_notification(session: Session, *, key: str, conversation_id: str, status: str,
                        attempts: int, error: str | None = None,
                        activity_id: str | None = None) -> None:
    row = session.scalars(select(TeamsNotificationRow).where(
        TeamsNotificationRow.key == key,
        TeamsNotificationRow.conversation_id == conversation_id)).one()
    row.status = status
    row.attempts = attempts
    row.last_error = error
    row.activity_id = activity_id
    if status == "sent":
        row.sent_at = _now()


def notifications(session: Session, conversation_id: str | None = None,
                  status: str | None = None) -> list[TeamsNotificationRow]:
    query = select(TeamsNotificationRow).order_by(TeamsNotificationRow.id)
    if conversation_id is not None:
        query = query.where(TeamsNotificationRow.conversation_id == conversation_id)
    if status is not None:
        query = query.where(TeamsNotificationRow.status == status)
    return list(session.scalars(query))


def cursor(session: Session, name: str) -> int:
    row = session.get(TeamsCursorRow, name)
    return row.position if row else 0


def move_cursor(session: Session, name: str, position: int) -> None:
    row = session.get(TeamsCursorRow, name)
    if row is None:
        session.add(TeamsCursorRow(name=name, position=position, updated_at=_now()))
    elif position > row.position:
        row.position = position
        row.updated_at = _now()
    session.flush()
