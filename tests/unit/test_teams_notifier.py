"""The notifier on a real SQLite store: migration events and healer incidents reach the
conversations that follow the estate, mute and alert config hold, nothing is sent twice
(two scans, two notifiers, a crash between claiming and sending), and one failing
conversation does not stop the others."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from sqlalchemy import update

from migrationbox.healer.incident import Incident, IncidentStatus
from migrationbox.healer.store import IncidentStore
from migrationbox.store import db, repository
from migrationbox.store.models import TeamsCursorRow
from migrationbox.store.testing import tiny_estate
from migrationbox.teams import state
from migrationbox.teams.cards import validate_card
from migrationbox.teams.connector import (
    BotConnectorClient,
    ClientCredentialsTokenProvider,
    NotificationDeliveryError,
)
from migrationbox.teams.connector_stub import ConnectorStub
from migrationbox.teams.contracts import ConversationRef, Reply
from migrationbox.teams.notifier import (
    EVENTS_CURSOR,
    NOTIFICATION_KINDS,
    AlertConfig,
    Notifier,
    start_notifier_thread,
)

SHOP, BANK = "shop", "bank"
SHOP_CHANNEL, BANK_CHANNEL, GENERAL = "19:shop@thread.tacv2", "19:bank@thread.tacv2", \
    "19:general@thread.tacv2"


class FakeSender:
    """Records what it is asked to send; ``failing`` conversations raise."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, Reply]] = []
        self.failing: dict[str, Exception] = {}
        self.lock = threading.Lock()

    def send(self, ref: ConversationRef, reply: Reply) -> str:
        if ref.conversation_id in self.failing:
            raise self.failing[ref.conversation_id]
        with self.lock:
            self.sent.append((ref.conversation_id, reply))
            return f"act-{len(self.sent)}"

    def update(self, ref: ConversationRef, activity_id: str, reply: Reply) -> None:
        raise AssertionError("the notifier never updates")

    def to(self, cid: str) -> list[Reply]:
        return [r for c, r in self.sent if c == cid]


def _ref(cid: str, service_url: str = "https://smba.example/emea/") -> ConversationRef:
    return ConversationRef(conversation_id=cid, service_url=service_url, bot_id="28:bot",
                           tenant_id="t-1", is_group=True, conversation_type="channel")


@pytest.fixture
def url(tmp_path: Path) -> Iterator[str]:
    store = f"sqlite:///{tmp_path / 'store.db'}"
    with db.session_scope(store) as s:
        repository.save_estate(s, tiny_estate(SHOP))
        repository.save_estate(s, tiny_estate(BANK))
        state.remember_conversation(s, _ref(SHOP_CHANNEL), estate=SHOP)
        state.remember_conversation(s, _ref(BANK_CHANNEL), estate=BANK)
        state.remember_conversation(s, _ref(GENERAL))
    yield store
    db.dispose(store)


def _event(url: str, kind: str, phase: str | None, message: str = "", *,
           estate: str = SHOP, wave: int = 1, run: str = "manual__1") -> int:
    with db.session_scope(url) as s:
        return repository.add_event(s, estate=estate, wave=wave, run_id=run, phase=phase,
                                    kind=kind, message=message or f"{phase} {kind}").id


def _started(url: str, sender: FakeSender, **kw: Any) -> Notifier:
    """A notifier past its first scan (which only records where reading starts)."""
    notifier = Notifier(url, sender, **kw)
    first = notifier.scan_once()
    assert first.sent == 0
    return notifier


def _rows(url: str, **kw: Any) -> list[Any]:
    with db.session_scope(url, read_only=True) as s:
        return state.notifications(s, **kw)


# ---------------------------------------------------------------------------- routing


def test_history_before_the_first_scan_is_not_pushed(url: str) -> None:
    _event(url, "phase_failed", "cutover", "old news")
    sender = FakeSender()
    notifier = Notifier(url, sender)
    assert notifier.scan_once().sent == 0
    assert notifier.scan_once().sent == 0
    assert sender.sent == []


def test_events_reach_the_estates_channel_and_the_general_one_only(url: str) -> None:
    sender = FakeSender()
    notifier = _started(url, sender)
    _event(url, "phase_started", "preflight", "preflight started")
    _event(url, "progress", "preflight", "checking quotas")
    _event(url, "phase_failed", "cutover", "cutover: DNS weight step 3 failed")
    _event(url, "rollback_started", "rollback", "rolling back: validation failed")
    _event(url, "rolled_back", "rollback", "traffic is on the source")
    _event(url, "phase_success", "decommission", "decommission: 3 sources retired")
    _event(url, "phase_started", "preflight", "preflight started", estate=BANK)
    report = notifier.scan_once()
    assert report.sent == 5 * 2 + 1 * 2 and report.failed == 0
    shop = sender.to(SHOP_CHANNEL)
    assert [r.text or r.card["body"][0]["text"] for r in shop] == [
        "▶ shop wave 1 started (run manual__1).",
        "Phase cutover failed: shop wave 1",
        "Rolling back shop wave 1",
        "Rolled back: shop wave 1",
        "✅ shop wave 1 is done: decommission: 3 sources retired",
    ]
    assert len(sender.to(GENERAL)) == 6
    assert [r.text for r in sender.to(BANK_CHANNEL)] == [
        "▶ bank wave 1 started (run manual__1)."]
    for reply in shop:
        if reply.card is not None:
            validate_card(reply.card)
            assert reply.card["actions"][0]["data"] == {"verb": "status",
                                                        "migration_id": SHOP}
    sent = _rows(url, conversation_id=SHOP_CHANNEL)
    assert [r.kind for r in sent] == ["wave_started", "phase_failed", "rollback",
                                      "rollback", "wave_done"]
    assert all(r.status == "sent" and r.attempts == 1 and r.activity_id for r in sent)


def test_a_retried_preflight_starts_the_wave_once(url: str) -> None:
    sender = FakeSender()
    notifier = _started(url, sender)
    _event(url, "phase_started", "preflight")
    _event(url, "phase_failed", "preflight", "preflight: quota check timed out")
    _event(url, "phase_started", "preflight")
    _event(url, "phase_started", "preflight", run="manual__2")
    notifier.scan_once()
    kinds = [r.kind for r in _rows(url, conversation_id=SHOP_CHANNEL)]
    assert kinds == ["wave_started", "phase_failed", "wave_started"]


# ---------------------------------------------------------------------------- mute, config


def test_mute_skips_for_good_and_covers_only_the_kinds_named(url: str) -> None:
    sender = FakeSender()
    now = datetime.now(UTC)
    notifier = _started(url, sender, clock=lambda: now)
    with db.session_scope(url) as s:
        state.set_mute(s, SHOP_CHANNEL, now + timedelta(hours=1), ["wave_started"])
        state.set_mute(s, GENERAL, now + timedelta(hours=1))
    _event(url, "phase_started", "preflight")
    _event(url, "phase_failed", "cutover", "cutover failed")
    report = notifier.scan_once()
    assert [r.card["body"][0]["text"] for r in sender.to(SHOP_CHANNEL)] == [
        "Phase cutover failed: shop wave 1"]
    assert sender.to(GENERAL) == []
    assert report.skipped == 3 and report.sent == 1
    skipped = _rows(url, status="skipped")
    assert all(r.last_error and r.last_error.startswith("muted until") for r in skipped)
    # unmuted: the re-read window sees the same events again, and sends nothing old
    with db.session_scope(url) as s:
        state.set_mute(s, SHOP_CHANNEL, None)
        state.set_mute(s, GENERAL, None)
    assert notifier.scan_once().sent == 0


def test_alert_config_filters_kinds_and_severity(url: str) -> None:
    sender = FakeSender()
    notifier = _started(url, sender)
    with db.session_scope(url) as s:
        state.set_alert_config(s, SHOP_CHANNEL,
                               AlertConfig(kinds=("phase_failed", "wave_done")).to_stored())
        state.set_alert_config(s, GENERAL, AlertConfig(min_severity="critical").to_stored())
    _event(url, "phase_started", "preflight")
    _event(url, "phase_failed", "cutover")
    _event(url, "rolled_back", "rollback")  # a rollback finished: warning
    _event(url, "phase_success", "decommission")
    notifier.scan_once()
    assert [r.kind for r in _rows(url, conversation_id=SHOP_CHANNEL, status="sent")] == [
        "phase_failed", "wave_done"]
    assert [r.kind for r in _rows(url, conversation_id=GENERAL, status="sent")] == [
        "phase_failed"]
    reasons = {r.last_error for r in _rows(url, conversation_id=GENERAL, status="skipped")}
    assert reasons == {"alert config: all kinds, severity critical and above"}


def test_an_unreadable_stored_alert_config_sends_everything(url: str) -> None:
    sender = FakeSender()
    notifier = _started(url, sender)
    with db.session_scope(url) as s:
        state.set_alert_config(s, SHOP_CHANNEL, {"kinds": ["everything"], "x": 1})
    _event(url, "phase_started", "preflight")
    notifier.scan_once()
    assert len(sender.to(SHOP_CHANNEL)) == 1


# ---------------------------------------------------------------------------- at most once


def test_two_notifiers_and_a_rewound_cursor_send_each_notification_once(url: str) -> None:
    sender = FakeSender()
    first, second = _started(url, sender), Notifier(url, sender)
    _event(url, "phase_failed", "cutover")
    _event(url, "phase_success", "decommission")
    barrier = threading.Barrier(2)

    def scan(notifier: Notifier) -> None:
        barrier.wait()
        notifier.scan_once()

    threads = [threading.Thread(target=scan, args=(n,)) for n in (first, second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(sender.sent) == 2 * 2  # two notifications, the shop and general channels
    with db.session_scope(url) as s:  # as if the cursor were never moved
        s.execute(update(TeamsCursorRow).where(TeamsCursorRow.name == EVENTS_CURSOR)
                  .values(position=0))
    assert first.scan_once().sent == 0 and second.scan_once().sent == 0
    assert len(sender.sent) == 4


def test_a_crash_between_claiming_and_sending_loses_nothing(
        url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    sender = FakeSender()
    notifier = _started(url, sender)
    _event(url, "phase_failed", "cutover", "cutover failed")

    def crash(*args: Any) -> None:
        raise SystemExit("killed")

    monkeypatch.setattr(Notifier, "_deliver_pending", crash)
    with pytest.raises(SystemExit):
        notifier.scan_once()
    monkeypatch.undo()
    assert {r.status for r in _rows(url)} == {"pending"} and sender.sent == []
    # a restarted bot, the event out of its re-read window: rebuilt from the rows' keys
    monkeypatch.setattr("migrationbox.teams.notifier.EVENT_REREAD_IDS", 0)
    report = Notifier(url, sender).scan_once()
    assert report.sent == 2 and report.notifications == 0 and report.claimed == 0
    assert [r.card["body"][0]["text"] for r in sender.to(SHOP_CHANNEL)] == [
        "Phase cutover failed: shop wave 1"]


def test_a_crash_before_the_claims_commit_reads_the_events_again(
        url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    sender = FakeSender()
    notifier = _started(url, sender)
    _event(url, "phase_failed", "cutover")

    def crash(*args: Any) -> None:
        raise RuntimeError("store went away")

    monkeypatch.setattr(Notifier, "_claim", crash)
    with pytest.raises(RuntimeError):
        notifier.scan_once()
    monkeypatch.undo()
    assert _rows(url) == []
    assert notifier.scan_once().sent == 2


def test_a_row_being_sent_when_the_bot_died_is_never_sent_again(url: str) -> None:
    sender = FakeSender()
    notifier = _started(url, sender)
    _event(url, "phase_failed", "cutover")
    with db.session_scope(url) as s:  # the state a crash during the HTTP call leaves
        state.claim_notification(s, key="event:999:phase_failed", kind="phase_failed",
                                 conversation_id=SHOP_CHANNEL)
        state.finish_notification(s, key="event:999:phase_failed",
                                  conversation_id=SHOP_CHANNEL, status="sending",
                                  attempts=0)
    notifier.scan_once()
    assert [r.status for r in _rows(url, conversation_id=SHOP_CHANNEL)] == ["sending",
                                                                            "sent"]


# ---------------------------------------------------------------------------- failures


def test_a_failing_conversation_does_not_stop_the_others(url: str) -> None:
    sender = FakeSender()
    notifier = _started(url, sender)
    sender.failing[SHOP_CHANNEL] = NotificationDeliveryError(
        "gave up: 503", conversation_id=SHOP_CHANNEL, status=503, attempts=5,
        retryable=True)
    sender.failing[BANK_CHANNEL] = NotificationDeliveryError(
        "refused: 403 BotNotInConversationRoster", conversation_id=BANK_CHANNEL,
        status=403, attempts=1, retryable=False)
    _event(url, "phase_started", "preflight")
    _event(url, "phase_failed", "cutover")
    _event(url, "phase_started", "preflight", estate=BANK)
    report = notifier.scan_once()
    assert len(sender.to(GENERAL)) == 3
    assert report.deferred == 2 and report.failed == 1
    assert [(r.status, r.attempts) for r in _rows(url, conversation_id=SHOP_CHANNEL)] == [
        ("pending", 5), ("pending", 0)]
    [bank] = _rows(url, conversation_id=BANK_CHANNEL)
    assert bank.status == "failed" and "BotNotInConversationRoster" in bank.last_error
    del sender.failing[SHOP_CHANNEL]
    assert notifier.scan_once().sent == 2  # the outage is over: delivered, in order
    assert [r.kind for r in _rows(url, conversation_id=SHOP_CHANNEL, status="sent")] == [
        "wave_started", "phase_failed"]
    assert _rows(url, conversation_id=SHOP_CHANNEL)[0].attempts == 6


def test_retries_across_scans_stop_at_the_total_attempts(url: str) -> None:
    sender = FakeSender()
    notifier = _started(url, sender, max_total_attempts=10)
    sender.failing[SHOP_CHANNEL] = NotificationDeliveryError(
        "gave up", conversation_id=SHOP_CHANNEL, status=429, attempts=5, retryable=True)
    _event(url, "phase_failed", "cutover")
    notifier.scan_once()
    notifier.scan_once()
    [row] = _rows(url, conversation_id=SHOP_CHANNEL)
    assert (row.status, row.attempts) == ("failed", 10)


def test_any_sender_exception_is_recorded_and_the_scan_goes_on(url: str) -> None:
    sender = FakeSender()
    notifier = _started(url, sender)
    sender.failing[GENERAL] = RuntimeError("boom")
    _event(url, "phase_failed", "cutover")
    report = notifier.scan_once()
    assert report.sent == 1 and report.failed == 1
    [row] = _rows(url, conversation_id=GENERAL)
    assert row.status == "failed" and row.last_error == "RuntimeError: boom"


# ---------------------------------------------------------------------------- incidents, hook


def _incident(store: IncidentStore, severity: str = "P2") -> Incident:
    now = datetime.now(UTC)
    return store.create(SHOP, "cpu_saturation", lambda iid: Incident(
        incident_id=iid, title="web-01 CPU at 97 %", resource="web-01", severity=severity,
        status=IncidentStatus.open, summary="CPU saturated after the cutover",
        detected_at=now))


def test_incidents_opened_and_healed(url: str) -> None:
    sender = FakeSender()
    store = IncidentStore(db.engine(url))
    notifier = _started(url, sender)
    incident = _incident(store)
    report = notifier.scan_once()
    assert report.sent == 2  # the shop channel and the general one
    [opened] = sender.to(SHOP_CHANNEL)
    assert opened.card is not None
    validate_card(opened.card)
    assert opened.card["body"][0]["text"] == f"Incident {incident.incident_id}: " \
        "web-01 CPU at 97 %"
    incident.status = IncidentStatus.resolved
    incident.resolved_at = incident.detected_at + timedelta(minutes=4, seconds=27)
    store.save(incident)
    notifier.scan_once()
    healed = sender.to(SHOP_CHANNEL)[-1]
    assert healed.text is not None and "healed" in healed.text
    assert "4 minutes 27 seconds" in healed.text
    assert [r.kind for r in _rows(url, conversation_id=SHOP_CHANNEL)] == [
        "incident_opened", "incident_healed"]
    assert notifier.scan_once().sent == 0


def test_a_p4_incident_is_below_a_warning_threshold(url: str) -> None:
    sender = FakeSender()
    store = IncidentStore(db.engine(url))
    notifier = _started(url, sender)
    with db.session_scope(url) as s:
        state.set_alert_config(s, SHOP_CHANNEL, {"min_severity": "warning"})
    _incident(store, "P4")
    _incident(store, "P3")
    notifier.scan_once()
    assert len(sender.to(SHOP_CHANNEL)) == 1 and len(sender.to(GENERAL)) == 2


def test_the_approvals_hook_runs_each_scan_and_its_failure_is_reported(url: str) -> None:
    calls: list[int] = []

    def hook() -> int:
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("airflow down")
        return 3

    notifier = Notifier(url, FakeSender(), approvals_hook=hook)
    assert notifier.scan_once().approvals_posted == 3
    report = notifier.scan_once()
    assert report.approvals_posted is None
    assert report.errors == ["approvals: RuntimeError: airflow down"]


# ---------------------------------------------------------------------------- the real path


def test_through_the_bot_connector_client_to_the_loopback_stub(url: str) -> None:
    with ConnectorStub() as stub:
        with db.session_scope(url) as s:
            state.remember_conversation(s, _ref(SHOP_CHANNEL, stub.url), estate=SHOP)
            state.remember_conversation(s, _ref(GENERAL, stub.url))
            state.remember_conversation(s, _ref(BANK_CHANNEL, stub.url), estate=BANK)
        sleeps: list[float] = []
        client = BotConnectorClient(
            ClientCredentialsTokenProvider(stub.token_url, stub.app_id, stub.secret),
            sleep=sleeps.append)
        with client:
            notifier = _started(url, client)
            _event(url, "phase_failed", "cutover", "cutover: DNS weight step 3 failed")
            stub.fail_next(1, 429, retry_after=2)
            report = notifier.scan_once()
        assert report.sent == 2 and sleeps == [2.0]
        accepted = stub.activities("send_to_conversation")
        assert {r.conversation_id for r in accepted} == {SHOP_CHANNEL, GENERAL}
        assert all(r.errors == () for r in stub.requests)
        rows = _rows(url, status="sent")
        assert sorted(r.attempts for r in rows) == [1, 2]
        assert {r.activity_id for r in rows} == {r.answer_id for r in accepted}


def test_start_notifier_thread_scans_until_stopped(url: str) -> None:
    sender = FakeSender()
    _started(url, sender)
    _event(url, "phase_failed", "cutover")
    thread, stop = start_notifier_thread(url, sender, 0.05)
    try:
        for _ in range(200):
            if len(sender.sent) == 2:
                break
            stop.wait(0.05)
    finally:
        stop.set()
        thread.join(timeout=30)
    assert not thread.is_alive() and len(sender.sent) == 2
    with pytest.raises(ValueError, match="interval"):
        start_notifier_thread(url, sender, 0)


# ---------------------------------------------------------------------------- alert config


def test_alert_config_round_trip_and_refusals() -> None:
    assert AlertConfig.from_stored({}) == AlertConfig() == AlertConfig.from_stored(None)
    config = AlertConfig.from_stored({"kinds": ["rollback", "phase_failed", "rollback"],
                                      "min_severity": "warning"})
    assert config.kinds == ("phase_failed", "rollback")  # NOTIFICATION_KINDS order
    assert config.to_stored() == {"kinds": ["phase_failed", "rollback"],
                                  "min_severity": "warning"}
    with pytest.raises(ValidationError, match="use mute"):
        AlertConfig.from_stored({"kinds": []})
    with pytest.raises(ValidationError, match="min_severity"):
        AlertConfig.from_stored({"min_severity": "loud"})
    with pytest.raises(ValidationError, match="colour"):
        AlertConfig.from_stored({"colour": "red"})


_STORED_VALUES = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=12),
                           st.lists(st.one_of(st.sampled_from(NOTIFICATION_KINDS),
                                              st.text(max_size=12)), max_size=8),
                           st.sampled_from(["info", "warning", "critical"]))


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(["kinds", "min_severity", "mute", "Kinds"]),
                       _STORED_VALUES, max_size=3))
def test_any_stored_alert_config_is_read_or_refused_with_a_reason(stored: dict) -> None:
    try:
        config = AlertConfig.from_stored(stored)
    except ValidationError as exc:
        assert exc.errors() and all(e["loc"] for e in exc.errors())
        return
    assert AlertConfig.from_stored(config.to_stored()) == config
    for kind in NOTIFICATION_KINDS:
        allowed = config.allows(kind, "critical")
        assert allowed == (config.kinds is None or kind in config.kinds)
        # a lower severity is never let through when a higher one is not
        assert not config.allows(kind, "info") or allowed
