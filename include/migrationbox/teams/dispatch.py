"""The command handler behind the bot endpoint: message or card button in, replies out.

A message goes: (voice message → transcription, echoed) → a typed yes/no answers the
user's latest pending confirmation → ``parser.parse`` with what the conversation knows
(its migration, the migration ids in the store, the locale) → a question back
(``Clarification``) or an ``Intent``. A destructive intent (start, rollback, cancel) is
checked first (a command that cannot run is answered at once with what to do instead),
then stored as a pending confirmation and asked with a confirmation card; the stored
intent, not anything a button sends, is what runs on "yes". Everything else runs at once
(``teams.actions``).

Every command is logged in the store's command log (``teams_commands``) with its outcome:
``ok``, ``refused`` (not possible or not allowed; the answer says why), ``clarified`` (a
question back), ``asked`` (a confirmation is pending), ``declined`` or ``error``. Errors
from the platform (the Airflow REST API, the store) are answered in one line and logged
with their details; no traceback reaches the conversation.
"""

from __future__ import annotations

import importlib
import logging
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
from sqlalchemy.exc import SQLAlchemyError

from migrationbox.errors import MigrationBoxError
from migrationbox.platform.rest import AirflowApiError, AirflowClient
from migrationbox.teams import actions, state
from migrationbox.teams.actions import ActionContext, Refusal
from migrationbox.teams.cards import CardActionData, CardValidationError, confirmation_card
from migrationbox.teams.contracts import Inbound, Reply, Sender
from migrationbox.teams.models import Clarification, Command, Intent, Language, ParseContext
from migrationbox.teams.parser import (
    detect_language,
    parse,
    parse_confirmation,
)

log = logging.getLogger("migrationbox.teams.dispatch")

#: ``fetch_attachment(attachment) -> bytes``: downloads a Teams attachment (the endpoint
#: knows how: the contentUrl with the bot's token).
FetchAttachment = Callable[[dict[str, Any]], bytes]
#: A voice message longer than this is not fetched.
MAX_AUDIO_BYTES = 25 * 2**20


def _voice() -> Any | None:
    """Helper V's voice module, when it is installed."""
    try:
        return importlib.import_module("migrationbox.teams.voice")
    except ModuleNotFoundError as exc:
        if exc.name != "migrationbox.teams.voice":
            raise
        return None


def platform_error_text(exc: BaseException) -> str:
    """One line for the conversation; the details go to the log."""
    if isinstance(exc, AirflowApiError):
        if exc.status in (401, 403):
            return "Airflow refused the bot's credentials for this action (HTTP " \
                   f"{exc.status}); an administrator has to check the bot's Airflow login."
        if exc.status == 404:
            return "Airflow does not know what the command names (HTTP 404): the wave " \
                   "DAG or run may not be loaded yet."
        if exc.status == 409:
            return "Airflow says this was already done (HTTP 409)."
        lines = str(exc.detail).strip().splitlines()
        detail = (lines[0] if lines else "")[:160]
        return f"Airflow could not do it (HTTP {exc.status}): {detail}"
    if isinstance(exc, httpx.HTTPError | TimeoutError):
        return "Airflow is not answering right now; the command was not run. Try again " \
               "in a minute."
    if isinstance(exc, SQLAlchemyError):
        return "The MigrationBox store is not answering right now; the command was not run."
    if isinstance(exc, CardValidationError):
        return "The answer could not be shown as a card (an internal error, logged)."
    if isinstance(exc, MigrationBoxError):
        lines = str(exc).strip().splitlines()
        return f"MigrationBox could not do it: {(lines[0] if lines else type(exc).__name__)[:200]}"
    return "Something went wrong while running the command; it has been logged."


class CommandDispatcher:
    """Implements ``contracts.Dispatcher``. ``client_factory`` returns a fresh Airflow
    REST client for one command (closed afterwards); ``sender`` is handed to the approval
    workflow (to update approval cards); ``fetch_attachment`` downloads voice messages."""

    def __init__(self, store_url: str, client_factory: Callable[[], AirflowClient], *,
                 sender: Sender | None = None,
                 fetch_attachment: FetchAttachment | None = None,
                 now: Callable[[], datetime] | None = None) -> None:
        self.store_url = store_url
        self.client_factory = client_factory
        self.sender = sender
        self.fetch_attachment = fetch_attachment
        self.now = now or (lambda: datetime.now(UTC))

    # -- plumbing ---------------------------------------------------------------------

    def _conversation(self, inbound: Inbound) -> state.ConversationState:
        with state_session(self.store_url) as session:
            return state.remember_conversation(session, inbound.conversation)

    def _context(self, inbound: Inbound, conversation: state.ConversationState | None,
                 request_id: str = "") -> ActionContext:
        return ActionContext(store_url=self.store_url, client_factory=self.client_factory,
                             inbound=inbound, conversation=conversation, sender=self.sender,
                             request_id=request_id or uuid.uuid4().hex, now=self.now)

    def _log(self, inbound: Inbound, *, text: str, language: str | None,
             command: str | None, migration_id: str | None, outcome: str,
             detail: str | None = None) -> None:
        try:
            with state_session(self.store_url) as session:
                state.log_command(session, conversation_id=inbound.conversation.conversation_id,
                                  user_id=inbound.user_id, user_name=inbound.user_name or None,
                                  text=text, language=language, command=command,
                                  migration_id=migration_id, outcome=outcome, detail=detail)
        except Exception:  # the answer matters more than its log line
            log.exception("could not log the command %r (%s)", command, outcome)

    def _run(self, call: Callable[[ActionContext], Reply], ctx: ActionContext, *,
             text: str, language: str | None, command: str | None,
             migration_id: str | None, outcome: str = "ok") -> Reply:
        """Run one action; answer refusals and platform errors in one line; log it
        (``outcome`` when it succeeded)."""
        try:
            reply = call(ctx)
        except Refusal as refusal:
            self._log(ctx.inbound, text=text, language=language, command=command,
                      migration_id=migration_id, outcome="refused", detail=refusal.message)
            return Reply(text=refusal.message, card=refusal.card)
        except Exception as exc:
            log.exception("command %s (%s) failed for %s", command, migration_id,
                          ctx.inbound.user_id)
            self._log(ctx.inbound, text=text, language=language, command=command,
                      migration_id=migration_id, outcome="error",
                      detail=f"{type(exc).__name__}: {exc}")
            return Reply(text=platform_error_text(exc))
        finally:
            try:
                ctx.close()
            except Exception:
                log.debug("closing the Airflow client failed", exc_info=True)
        self._log(ctx.inbound, text=text, language=language, command=command,
                  migration_id=migration_id, outcome=outcome)
        return reply

    # -- messages ---------------------------------------------------------------------

    def handle_message(self, inbound: Inbound) -> list[Reply]:
        try:
            conversation = self._conversation(inbound)
        except Exception as exc:
            log.exception("could not remember conversation %s",
                          inbound.conversation.conversation_id)
            return [Reply(text=platform_error_text(exc))]
        replies: list[Reply] = []
        text = inbound.text or ""
        audio = self._audio(inbound)
        if audio is not None:
            heard, echo = self._transcribe(inbound, audio)
            replies.append(echo)
            if heard is None:
                return replies
            text = heard
        replies.extend(self._handle_text(inbound, conversation, text,
                                         spoken=audio is not None))
        return replies

    def _audio(self, inbound: Inbound) -> dict[str, Any] | None:
        voice = _voice()
        if voice is None:
            return None
        for attachment in inbound.attachments:
            try:
                if voice.is_audio_attachment(attachment):
                    return attachment
            except Exception:
                log.debug("attachment check failed", exc_info=True)
        return None

    def _transcribe(self, inbound: Inbound, attachment: dict[str, Any]
                    ) -> tuple[str | None, Reply]:
        voice = _voice()
        assert voice is not None
        if self.fetch_attachment is None:
            return None, Reply(text="Voice messages cannot be fetched by this bot; please "
                                    "type the command.")
        hint = (inbound.locale or "").split("-")[0].lower() or None
        try:
            data = self.fetch_attachment(attachment)
            if len(data) > MAX_AUDIO_BYTES:
                return None, Reply(text="That voice message is too long; please keep "
                                        "commands short or type them.")
            transcript = voice.transcribe(data, language_hint=hint)
        except Exception as exc:
            voice_error = getattr(voice, "VoiceError", None)
            if voice_error is not None and isinstance(exc, voice_error):
                self._log(inbound, text="(voice message)", language=hint, command=None,
                          migration_id=None, outcome="refused", detail=str(exc))
                in_language = getattr(exc, "message_in", None)
                text = in_language(inbound.locale) if callable(in_language) else str(exc)
                return None, Reply(text=str(text).splitlines()[0][:300])
            log.exception("voice message could not be transcribed")
            self._log(inbound, text="(voice message)", language=hint, command=None,
                      migration_id=None, outcome="error", detail=f"{type(exc).__name__}: {exc}")
            return None, Reply(text="The voice message could not be understood; please "
                                    "type the command.")
        heard = str(transcript.text or "").strip()
        if not heard:
            return None, Reply(text="I heard nothing I could understand; please try again "
                                    "or type the command.")
        return heard, Reply(text=f'Heard ({transcript.language}): "{heard}"')

    def _handle_text(self, inbound: Inbound, conversation: state.ConversationState,
                     text: str, *, spoken: bool = False) -> list[Reply]:
        answer = parse_confirmation(text)
        if answer is not None:
            with state_session(self.store_url) as session:
                pending = state.latest_pending_confirmation(
                    session, inbound.conversation.conversation_id, inbound.user_id)
            if pending is not None:
                return [self._answer_confirmation(inbound, conversation, pending, answer,
                                                  text=text)]
        try:
            known = actions.known_migrations(self.store_url)
        except Exception as exc:
            log.exception("could not read the migrations from the store")
            return [Reply(text=platform_error_text(exc))]
        context = ParseContext(locale=inbound.locale, migration_id=conversation.estate,
                               known_migration_ids=tuple(known), known_ids_only=spoken)
        result = parse(text, context)
        if isinstance(result, Clarification):
            self._log(inbound, text=text, language=result.language.value,
                      command=result.command.value if result.command else None,
                      migration_id=result.slots.migration_id, outcome="clarified",
                      detail=result.reason.value)
            return [Reply(text=result.question)]
        return [self._handle_intent(inbound, conversation, result)]

    def _handle_intent(self, inbound: Inbound, conversation: state.ConversationState,
                       intent: Intent) -> Reply:
        migration_id = intent.slots.migration_id
        ctx = self._context(inbound, conversation)
        if not intent.needs_confirmation:
            return self._run(lambda c: actions.run(intent, c), ctx, text=intent.text,
                             language=intent.language.value, command=intent.command.value,
                             migration_id=migration_id)
        confirmation_id = uuid.uuid4().hex

        def ask(c: ActionContext) -> Reply:
            check = actions.PRECHECKS.get(intent.command)
            if check is not None:
                check(intent, c)
            with state_session(self.store_url) as session:
                state.save_confirmation(
                    session, confirmation_id=confirmation_id,
                    conversation_id=inbound.conversation.conversation_id,
                    user_id=inbound.user_id, intent=intent.model_dump(mode="json"))
            card = confirmation_card(intent, confirmation_id)
            actions._validated(card)
            return Reply(card=card)

        return self._run(ask, ctx, text=intent.text, language=intent.language.value,
                         command=intent.command.value, migration_id=migration_id,
                         outcome="asked")

    # -- confirmations ----------------------------------------------------------------

    def _answer_confirmation(self, inbound: Inbound,
                             conversation: state.ConversationState | None,
                             confirmation_id: str, yes: bool, *, text: str) -> Reply:
        with state_session(self.store_url) as session:
            outcome = state.answer_confirmation(
                session, confirmation_id=confirmation_id,
                conversation_id=inbound.conversation.conversation_id,
                user_id=inbound.user_id, yes=yes)
        if outcome.intent is None:
            message = {
                "unknown": "That confirmation is not known here; nothing was run.",
                "other_user": "Only the person who asked for this command can confirm or "
                              "cancel it; nothing was run.",
                "expired": "That confirmation has expired (after 10 minutes); nothing was "
                           "run. Ask again if it is still wanted.",
            }.get(outcome.status, f"That confirmation was already answered "
                                  f"({outcome.status}); nothing more was run.")
            self._log(inbound, text=text, language=None, command=None, migration_id=None,
                      outcome="refused", detail=f"confirmation {outcome.status}")
            return Reply(text=message)
        intent = Intent.model_validate(outcome.intent)
        if outcome.status == "declined":
            self._log(inbound, text=text, language=intent.language.value,
                      command=intent.command.value,
                      migration_id=intent.slots.migration_id, outcome="declined")
            return Reply(text="Cancelled; nothing was run.")
        ctx = self._context(inbound, conversation, request_id=confirmation_id)
        return self._run(lambda c: actions.run(intent, c), ctx, text=text or intent.text,
                         language=intent.language.value, command=intent.command.value,
                         migration_id=intent.slots.migration_id)

    # -- card buttons -----------------------------------------------------------------

    def handle_card_action(self, inbound: Inbound, data: CardActionData) -> Reply:
        try:
            conversation = self._conversation(inbound)
        except Exception as exc:
            log.exception("could not remember conversation %s",
                          inbound.conversation.conversation_id)
            return Reply(text=platform_error_text(exc))
        verb = data.verb
        label = f"[card] {verb}"
        if verb in ("confirm", "decline"):
            if not data.confirmation_id:
                return Reply(text="That button carries no confirmation; nothing was run.")
            return self._answer_confirmation(inbound, conversation, data.confirmation_id,
                                             verb == "confirm", text=label)
        estate = data.migration_id or conversation.estate
        if not estate:
            self._log(inbound, text=label, language=None, command=verb, migration_id=None,
                      outcome="refused", detail="no migration id on the card")
            return Reply(text="That button names no migration; nothing was run.")
        ctx = self._context(inbound, conversation)
        language = self._language(inbound)
        if verb in ("approve", "reject", "reschedule"):
            return self._run(lambda c: self._gate_button(c, data, estate), ctx, text=label,
                             language=language.value, command=verb, migration_id=estate)
        if verb == "request-approval":
            gate = data.gate or "cutover"
            return self._run(lambda c: actions.request_approval_for(c, estate, gate), ctx,
                             text=label, language=language.value, command=verb,
                             migration_id=estate)
        command = {"pause": Command.PAUSE, "status": Command.STATUS}[verb]
        intent = Intent(command=command, language=language, text=label,
                        slots={"migration_id": estate})  # type: ignore[arg-type]
        return self._run(lambda c: actions.run(intent, c), ctx, text=label,
                         language=language.value, command=command.value,
                         migration_id=estate)

    def _gate_button(self, ctx: ActionContext, data: CardActionData, estate: str) -> Reply:
        if not data.gate:
            raise Refusal("That button names no gate; nothing was answered.")
        extra = data.model_extra or {}
        reason = str(extra.get("reason") or "").strip() or None
        when = None
        if data.verb == "reject" and not reason:
            raise Refusal("A reason is required to reject; nothing was answered.")
        if data.verb == "reschedule":
            when = _reschedule_time(extra.get("date"), extra.get("time"))
        return actions.answer_gate(ctx, estate=estate, gate=data.gate, decision=data.verb,
                                   reason=reason, when=when)

    @staticmethod
    def _language(inbound: Inbound) -> Language:
        return detect_language(inbound.text or "", inbound.locale)


def _reschedule_time(date: object, time: object) -> datetime:
    """The card's ``Input.Date`` (YYYY-MM-DD) and ``Input.Time`` (HH:MM), as UTC."""
    if not isinstance(date, str) or not isinstance(time, str):
        raise Refusal("Pick a new date and time to reschedule; nothing was answered.")
    try:
        when = datetime.fromisoformat(f"{date.strip()}T{time.strip()}")
    except ValueError:
        raise Refusal(f"'{date} {time}' is not a date and time (YYYY-MM-DD HH:MM); "
                      "nothing was answered.") from None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def state_session(store_url: str) -> Any:
    """A read-write session of the store (the caller's transaction, as ``teams.state``
    expects)."""
    from migrationbox.store.db import session_scope

    return session_scope(store_url)
