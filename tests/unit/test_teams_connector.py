"""BotConnectorClient against real loopback servers: helper E's ConnectorStub (swagger
checked bodies, its own token endpoint) and, for answers the stub does not script (an
HTTP-date Retry-After, 400/403), a small scripted server. Waits are injected, not slept."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from migrationbox.errors import ConfigurationError, InputError
from migrationbox.teams.cards import CARD_CONTENT_TYPE, validate_card
from migrationbox.teams.connector import (
    BotConnectorClient,
    ClientCredentialsTokenProvider,
    NotificationDeliveryError,
    TokenError,
    activity_for,
    backoff_delay,
    connector_from_connection,
    parse_retry_after,
)
from migrationbox.teams.connector_stub import ConnectorStub, shape_errors
from migrationbox.teams.contracts import ConversationRef, Reply
from migrationbox.teams.notifier import notification_card

CONVERSATION = "19:abc@thread.tacv2;messageid=1700000000000"
NOW = datetime(2026, 12, 7, 12, 0, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def stub() -> Iterator[ConnectorStub]:
    with ConnectorStub() as running:
        yield running


def _ref(url: str, **kw: Any) -> ConversationRef:
    return ConversationRef(conversation_id=kw.pop("conversation_id", CONVERSATION),
                           service_url=url, bot_id="28:bot-app", bot_name="MigrationBox",
                           tenant_id="tenant-1", conversation_type="channel",
                           is_group=True, **kw)


def _client(stub: ConnectorStub, sleeps: list[float], clock: Clock | None = None,
            **kw: Any) -> tuple[BotConnectorClient, ClientCredentialsTokenProvider]:
    tokens = ClientCredentialsTokenProvider(stub.token_url, stub.app_id, stub.secret,
                                            clock=clock or Clock())
    client = BotConnectorClient(tokens, sleep=sleeps.append, now=lambda: NOW,
                                rand=lambda: 0.5, **kw)
    return client, tokens


def _card() -> dict[str, Any]:
    card = notification_card("Phase cutover failed", "Attention",
                             [("Migration", "shop"), ("Wave", "2")], "DNS step 3 failed",
                             "shop")
    validate_card(card)
    return card


# ---------------------------------------------------------------------------- shapes


def test_send_posts_a_swagger_valid_message_with_text_and_card(stub: ConnectorStub) -> None:
    sleeps: list[float] = []
    client, _ = _client(stub, sleeps)
    with client:
        activity_id = client.send(_ref(stub.url), Reply(text="wave 2 started", card=_card()))
    [request] = stub.requests
    assert request.status == 200, request.errors
    assert request.operation == "send_to_conversation"
    assert request.conversation_id == CONVERSATION  # escaped on the way, intact on arrival
    assert activity_id == request.answer_id
    assert request.headers["Authorization"].startswith("Bearer ")
    body = request.body
    assert body["type"] == "message" and body["text"] == "wave 2 started"
    assert body["from"] == {"id": "28:bot-app", "name": "MigrationBox"}
    assert body["conversation"]["id"] == CONVERSATION
    assert body["channelData"] == {"tenant": {"id": "tenant-1"}}
    [attachment] = body["attachments"]
    assert attachment["contentType"] == CARD_CONTENT_TYPE == \
        "application/vnd.microsoft.card.adaptive"
    assert attachment["content"]["version"] == "1.5"
    assert shape_errors("Activity", body) == []
    assert sleeps == []


def test_update_puts_the_activity_under_its_id(stub: ConnectorStub) -> None:
    client, _ = _client(stub, [])
    with client:
        ref = _ref(stub.url)
        first = client.send(ref, Reply(card=_card()))
        client.update(ref, first, Reply(text="approved by alice"))
    update = stub.requests[-1]
    assert (update.method, update.operation, update.status) == ("PUT", "update_activity", 200)
    assert update.activity_id == first and update.body["id"] == first
    assert update.body["text"] == "approved by alice" and "attachments" not in update.body


def test_create_conversation_returns_a_reference_to_the_new_chat(stub: ConnectorStub) -> None:
    client, _ = _client(stub, [])
    with client:
        ref = client.create_conversation(service_url=stub.url, bot_id="28:bot-app",
                                         member_id="29:alice", tenant_id="tenant-1",
                                         reply=Reply(text="please approve"))
    [request] = stub.requests
    assert request.operation == "create_conversation" and request.status == 200, \
        request.errors
    assert request.body["members"] == [{"id": "29:alice"}]
    assert request.body["activity"]["text"] == "please approve"
    assert ref.conversation_id == request.answer_id and ref.service_url == stub.url


def test_an_empty_reply_and_unsafe_service_urls_are_refused(stub: ConnectorStub) -> None:
    client, _ = _client(stub, [])
    with client:
        with pytest.raises(InputError, match="needs text or a card"):
            client.send(_ref(stub.url), Reply())
        for bad in ("http://bots.example.com/", "ftp://127.0.0.1/", "https://u:p@x.com/",
                    "not a url"):
            with pytest.raises(InputError, match="serviceUrl"):
                client.send(_ref(bad), Reply(text="x"))
    assert stub.requests == []


# ---------------------------------------------------------------------------- retries


def test_429_with_retry_after_seconds_is_waited_out_then_sent(stub: ConnectorStub) -> None:
    stub.fail_next(2, 429, retry_after=7)
    sleeps: list[float] = []
    client, _ = _client(stub, sleeps)
    with client:
        delivery = client.deliver(_ref(stub.url), Reply(text="hi"))
    assert sleeps == [7.0, 7.0]
    assert delivery.attempts == 3
    assert [r.status for r in stub.requests] == [429, 429, 200]
    assert delivery.activity_id == stub.requests[-1].answer_id


def test_retry_after_is_capped(stub: ConnectorStub) -> None:
    stub.fail_next(1, 429, retry_after=3600)
    sleeps: list[float] = []
    client, _ = _client(stub, sleeps, max_retry_after_s=20)
    with client:
        client.send(_ref(stub.url), Reply(text="hi"))
    assert sleeps == [20.0]


def test_503_without_retry_after_backs_off_exponentially(stub: ConnectorStub) -> None:
    stub.fail_next(3, 503, retry_after=None)
    sleeps: list[float] = []
    client, _ = _client(stub, sleeps, backoff_base_s=1.0)
    with client:
        client.send(_ref(stub.url), Reply(text="hi"))
    # rand() = 0.5: three-quarters of 1, 2, 4 seconds
    assert sleeps == [0.75, 1.5, 3.0]


def test_gives_up_after_max_attempts_naming_conversation_and_status(
        stub: ConnectorStub) -> None:
    stub.fail_next(10, 502, retry_after=1)
    sleeps: list[float] = []
    client, _ = _client(stub, sleeps, max_attempts=3)
    with client, pytest.raises(NotificationDeliveryError) as caught:
        client.send(_ref(stub.url), Reply(text="hi"))
    err = caught.value
    assert err.status == 502 and err.attempts == 3 and err.retryable
    assert err.conversation_id == CONVERSATION
    assert CONVERSATION in str(err) and "502" in str(err) and "3 attempt" in str(err)
    assert len(stub.requests) == 3 and sleeps == [1.0, 1.0]


def test_an_expired_token_is_fetched_again_once(stub: ConnectorStub) -> None:
    client, tokens = _client(stub, [])
    with client:
        client.send(_ref(stub.url), Reply(text="one"))
        stub.expire_tokens()
        client.send(_ref(stub.url), Reply(text="two"))
    assert [r.status for r in stub.requests] == [200, 401, 200]
    assert tokens.fetches == 2 == stub.token_requests


def test_tokens_are_cached_until_shortly_before_expiry(stub: ConnectorStub) -> None:
    clock = Clock()
    client, tokens = _client(stub, [], clock=clock)
    with client:
        for _ in range(3):
            client.send(_ref(stub.url), Reply(text="cached"))
        assert stub.token_requests == 1
        clock.t += 3600 - 301  # 5 minutes' margin not reached yet
        client.send(_ref(stub.url), Reply(text="still cached"))
        assert stub.token_requests == 1
        clock.t += 2
        client.send(_ref(stub.url), Reply(text="refreshed"))
    assert stub.token_requests == 2 == tokens.fetches
    auth = [r.headers["Authorization"] for r in stub.requests]
    assert len(set(auth[:4])) == 1 and auth[4] != auth[0]


def test_a_wrong_secret_fails_at_once_with_the_token_endpoints_reason(
        stub: ConnectorStub) -> None:
    sleeps: list[float] = []
    tokens = ClientCredentialsTokenProvider(stub.token_url, stub.app_id, "wrong-secret")
    with pytest.raises(TokenError, match="invalid_client") as caught:
        tokens.token()
    assert not caught.value.retryable and "wrong-secret" not in str(caught.value)
    client = BotConnectorClient(tokens, sleep=sleeps.append)
    with client, pytest.raises(NotificationDeliveryError, match="no token"):
        client.send(_ref(stub.url), Reply(text="x"))
    assert sleeps == [] and stub.requests == []


# ---------------------------------------------------------------------------- scripted answers


class Scripted:
    """Answers conversation requests from a script of (status, headers, body)."""

    def __init__(self, script: list[tuple[int, dict[str, str], dict[str, Any]]]) -> None:
        self.script = script
        self.seen: list[tuple[str, str, dict[str, Any]]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def _any(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                owner.seen.append((self.command, self.path, dict(self.headers)))
                status, headers, answer = (owner.script.pop(0) if owner.script
                                           else (200, {}, {"id": "ok"}))
                data = json.dumps(answer).encode()
                self.send_response(status)
                for name, value in {"Content-Type": "application/json",
                                    "Content-Length": str(len(data)), **headers}.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)
                del body

            do_POST = do_PUT = _any

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,),
                                       daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/"

    def __enter__(self) -> Scripted:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


class FixedToken:
    def token(self) -> str:
        return "fixed-token"


def test_429_with_retry_after_http_date_waits_until_that_date() -> None:
    when = format_datetime(NOW + timedelta(seconds=12), usegmt=True)
    sleeps: list[float] = []
    with Scripted([(429, {"Retry-After": when}, {"error": {"code": "Throttled"}})]) as srv:
        client = BotConnectorClient(FixedToken(), sleep=sleeps.append, now=lambda: NOW)
        with client:
            assert client.send(_ref(srv.url), Reply(text="x")) == "ok"
    assert sleeps == [12.0]
    assert all(h["Authorization"] == "Bearer fixed-token" for _, _, h in srv.seen)


@pytest.mark.parametrize("status", [400, 403, 404])
def test_client_errors_other_than_429_are_not_retried(status: int) -> None:
    sleeps: list[float] = []
    answer = {"error": {"code": "BotNotInConversationRoster", "message": "bot removed"}}
    with Scripted([(status, {"Retry-After": "1"}, answer)]) as srv:
        client = BotConnectorClient(FixedToken(), sleep=sleeps.append)
        with client, pytest.raises(NotificationDeliveryError) as caught:
            client.send(_ref(srv.url), Reply(text="x"))
    assert len(srv.seen) == 1 and sleeps == []
    err = caught.value
    assert err.status == status and err.attempts == 1 and not err.retryable
    assert "BotNotInConversationRoster" in str(err) and "not retried" in str(err)


def test_connection_errors_are_retried_then_reported() -> None:
    with Scripted([]) as srv:
        url = srv.url  # a port nobody listens on once the server is gone
    sleeps: list[float] = []
    client = BotConnectorClient(FixedToken(), sleep=sleeps.append, max_attempts=2,
                                timeout_s=2)
    with client, pytest.raises(NotificationDeliveryError, match="no answer") as caught:
        client.send(_ref(url), Reply(text="x"))
    assert caught.value.status is None and caught.value.attempts == 2 and len(sleeps) == 1


# ---------------------------------------------------------------------------- wiring


def test_connector_from_connection_reads_the_airflow_connection(
        stub: ConnectorStub, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_MBX_TEAMS_TEST", json.dumps({
        "conn_type": "generic", "login": stub.app_id, "password": stub.secret,
        "extra": {"connector_token_url": stub.token_url}}))
    with connector_from_connection("mbx_teams_test") as client:
        client.send(_ref(stub.url), Reply(text="from the connection"))
    assert stub.requests[0].status == 200 and stub.token_requests == 1
    monkeypatch.setenv("AIRFLOW_CONN_MBX_TEAMS_TEST", json.dumps({
        "conn_type": "generic", "login": stub.app_id, "password": stub.secret,
        "extra": {"connector_token_url": "http://login.example.com/token"}}))
    with pytest.raises(ConfigurationError, match="only https"):
        connector_from_connection("mbx_teams_test")
    with pytest.raises(ConfigurationError, match="mbx_teams_missing"):
        connector_from_connection("mbx_teams_missing")


def test_activity_for_a_personal_chat_has_no_tenant_channel_data() -> None:
    ref = ConversationRef(conversation_id="a:1", service_url="https://smba.example/emea/",
                          bot_id="28:b")
    activity = activity_for(ref, Reply(text="hi"))
    assert "channelData" not in activity and activity["conversation"] == {
        "id": "a:1", "isGroup": False}
    assert shape_errors("Activity", activity) == []


# ---------------------------------------------------------------------------- properties


@given(st.integers(min_value=0, max_value=10**9), st.floats(min_value=1, max_value=600))
def test_retry_after_seconds_are_read_and_capped(seconds: int, cap: float) -> None:
    assert parse_retry_after(str(seconds), cap_s=cap) == min(float(seconds), cap)


@given(st.integers(min_value=-10**6, max_value=10**6))
def test_retry_after_dates_are_never_negative_nor_above_the_cap(offset: int) -> None:
    header = format_datetime(NOW + timedelta(seconds=offset), usegmt=True)
    wait = parse_retry_after(header, now=NOW, cap_s=60)
    assert wait == min(max(float(offset), 0.0), 60.0)


@given(st.text(max_size=40))
def test_retry_after_garbage_gives_none_or_a_bounded_wait(header: str) -> None:
    wait = parse_retry_after(header, now=NOW, cap_s=60)
    assert wait is None or 0.0 <= wait <= 60.0


@given(st.integers(min_value=1, max_value=60), st.floats(min_value=0, max_value=1))
def test_backoff_stays_between_half_and_the_capped_exponential(attempt: int,
                                                              r: float) -> None:
    ceiling = min(30.0, 0.5 * 2 ** (attempt - 1))
    assert ceiling / 2 <= backoff_delay(attempt, rand=lambda: r) <= ceiling


@given(st.sampled_from(["http", "https", "ftp", "HTTPS", ""]),
       st.sampled_from(["127.0.0.1", "localhost", "[::1]", "smba.trafficmanager.net",
                        "10.0.0.1", "evil.example", ""]),
       st.text(alphabet="abc/:@?#%", max_size=12))
def test_only_https_or_loopback_http_service_urls_are_used(scheme: str, host: str,
                                                          rest: str) -> None:
    url = f"{scheme}://{host}/{rest}" if scheme else f"{host}/{rest}"
    ref = ConversationRef(conversation_id="a:1", service_url=url or "x", bot_id="28:b")
    client = BotConnectorClient(FixedToken(), sleep=lambda s: None)
    try:
        target = client._url(ref, "/activities", False)
    except InputError as exc:
        assert "serviceUrl" in str(exc)
        return
    finally:
        client.close()
    loopback = host in ("127.0.0.1", "localhost", "[::1]")
    assert scheme.lower() == "https" or (scheme == "http" and loopback)
    assert "?" not in rest and "#" not in rest
    assert urlsplit(target).path.endswith("/v3/conversations/a%3A1/activities")
