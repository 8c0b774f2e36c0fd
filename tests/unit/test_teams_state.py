"""The Teams bot's state in the store: conversations, confirmations, approvers,
notifications and cursors behave as the bot relies on (once, not twice; never lost)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from migrationbox.store import db
from migrationbox.teams import state
from migrationbox.teams.contracts import ConversationRef


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'store.db'}"


def _ref(cid: str = "19:abc@thread.tacv2", service: str = "https://smba.example/emea/") -> \
        ConversationRef:
    return ConversationRef(conversation_id=cid, service_url=service, bot_id="28:bot",
                           tenant_id="t-1", is_group=True, conversation_type="channel")


def test_a_conversation_is_remembered_refreshed_and_keeps_its_estate(url: str):
    with db.session_scope(url) as s:
        state.remember_conversation(s, _ref(), estate="acme")
    with db.session_scope(url) as s:
        moved = state.remember_conversation(s, _ref(service="https://smba.example/amer/"))
    assert moved.estate == "acme"
    assert moved.ref.service_url == "https://smba.example/amer/"
    with db.session_scope(url) as s:
        state.remember_conversation(s, _ref("general"))
        heard = {c.ref.conversation_id for c in state.conversations_for(s, "acme")}
        other = {c.ref.conversation_id for c in state.conversations_for(s, "globex")}
    assert heard == {"19:abc@thread.tacv2", "general"}
    assert other == {"general"}


def test_mute_covers_the_kinds_given_until_it_ends(url: str):
    now = datetime.now(UTC)
    with db.session_scope(url) as s:
        state.remember_conversation(s, _ref())
        state.set_mute(s, _ref().conversation_id, now + timedelta(hours=1),
                       ["incident_opened"])
        conv = state.conversation(s, _ref().conversation_id)
    assert conv is not None
    assert conv.muted("incident_opened", now)
    assert not conv.muted("wave_done", now)
    assert not conv.muted("incident_opened", now + timedelta(hours=2))
    with db.session_scope(url) as s:
        state.set_mute(s, _ref().conversation_id, now + timedelta(hours=1))
        assert state.conversation(s, _ref().conversation_id).muted("wave_done", now)
        state.set_mute(s, _ref().conversation_id, None)
        assert not state.conversation(s, _ref().conversation_id).muted("wave_done", now)
    with db.session_scope(url) as s, pytest.raises(LookupError, match="not known"):
        state.set_mute(s, "nobody", None)


def test_a_confirmation_runs_once_for_its_own_user_before_it_expires(url: str):
    cid = _ref().conversation_id
    with db.session_scope(url) as s:
        state.save_confirmation(s, confirmation_id="k1", conversation_id=cid,
                                user_id="29:alice", intent={"command": "cancel"})
        state.save_confirmation(s, confirmation_id="k2", conversation_id=cid,
                                user_id="29:alice", intent={"command": "rollback"},
                                ttl=timedelta(seconds=-1))
    with db.session_scope(url) as s:
        assert state.latest_pending_confirmation(s, cid, "29:alice") == "k1"
        assert state.answer_confirmation(s, confirmation_id="k1", conversation_id=cid,
                                         user_id="29:bob", yes=True).status == "other_user"
        assert state.answer_confirmation(s, confirmation_id="k1", conversation_id="elsewhere",
                                         user_id="29:alice", yes=True).status == "unknown"
        first = state.answer_confirmation(s, confirmation_id="k1", conversation_id=cid,
                                          user_id="29:alice", yes=True)
    assert first.status == "confirmed" and first.intent == {"command": "cancel"}
    with db.session_scope(url) as s:
        again = state.answer_confirmation(s, confirmation_id="k1", conversation_id=cid,
                                          user_id="29:alice", yes=True)
        late = state.answer_confirmation(s, confirmation_id="k2", conversation_id=cid,
                                         user_id="29:alice", yes=True)
        assert state.latest_pending_confirmation(s, cid, "29:alice") is None
    assert again.intent is None and again.status == "confirmed"
    assert late.status == "expired" and late.intent is None


def test_approvers_are_replaced_matched_case_blind_and_checked(url: str):
    with db.session_scope(url) as s:
        state.set_approvers(s, "acme", [("Sarah@Corp.example", "Sarah", "primary"),
                                        ("oid-2", None, "backup")])
        state.set_approvers(s, "acme", [("sarah@corp.example", "Sarah", "primary")])
        assert [a.user_key for a in state.approvers_of(s, "acme")] == ["sarah@corp.example"]
        assert state.is_approver(s, "acme", None, "SARAH@corp.example") is not None
        assert state.is_approver(s, "acme", "oid-2") is None
        assert state.is_approver(s, "globex", "sarah@corp.example") is None
        with pytest.raises(ValueError, match="role 'boss'"):
            state.set_approvers(s, "acme", [("x", None, "boss")])
        with pytest.raises(ValueError, match="empty"):
            state.set_approvers(s, "acme", [("  ", None, "primary")])


def test_a_notification_is_claimed_once_and_cursors_only_move_forward(url: str):
    with db.session_scope(url) as s:
        assert state.claim_notification(s, key="event:7", kind="wave_done", conversation_id="c")
        assert not state.claim_notification(s, key="event:7", kind="wave_done",
                                            conversation_id="c")
        assert state.claim_notification(s, key="event:7", kind="wave_done", conversation_id="d")
        state.finish_notification(s, key="event:7", conversation_id="c", status="sent",
                                  attempts=2, activity_id="a-1")
    with db.session_scope(url) as s:
        sent = state.notifications(s, conversation_id="c", status="sent")
        assert [(n.key, n.attempts, n.activity_id) for n in sent] == [("event:7", 2, "a-1")]
        assert len(state.notifications(s, status="pending")) == 1
        state.move_cursor(s, "events", 10)
        state.move_cursor(s, "events", 4)
        assert state.cursor(s, "events") == 10
        assert state.cursor(s, "incidents") == 0


def test_the_command_log_keeps_the_newest_first(url: str):
    with db.session_scope(url) as s:
        for n in range(3):
            state.log_command(s, conversation_id="c", user_id="u", user_name="Ann",
                              text=f"status acme-{n}" + "x" * 3000, language="en",
                              command="status", migration_id=f"acme-{n}", outcome="ok")
        rows = state.recent_commands(s, limit=2)
    assert [r.migration_id for r in rows] == ["acme-2", "acme-1"]
    assert len(rows[0].text) == 2000
