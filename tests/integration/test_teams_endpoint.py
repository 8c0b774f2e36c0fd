"""The Teams bot endpoint over real HTTP on loopback: signed activities in (keys from a
JwksServer the test makes), replies out to a ConnectorStub that checks the published
Bot Connector shapes and the tokens it issued; refusals never reach the dispatcher."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from migrationbox.errors import ConfigurationError, InputError
from migrationbox.store.db import session_scope
from migrationbox.teams import state
from migrationbox.teams import testing as teams_testing
from migrationbox.teams.cards import CardActionData, validate_card
from migrationbox.teams.connector_stub import ConnectorStub
from migrationbox.teams.contracts import Inbound, Reply
from migrationbox.teams.server import (
    GREETING,
    AttachmentFetcher,
    BotConfig,
    EndpointThread,
    build_app,
)
from migrationbox.teams.testing import JwksServer, bot_claims, make_key

CONVERSATION = "a:1personal-conversation-id"
CARD = {"type": "AdaptiveCard", "version": "1.5",
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "body": [{"type": "TextBlock", "text": "Approved by Ada", "wrap": True}]}


@dataclass
class RecordingDispatcher:
    """Answers every message with a line and a card; records what it was handed."""

    messages: list[Inbound] = field(default_factory=list)
    actions: list[tuple[Inbound, CardActionData]] = field(default_factory=list)
    fail: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def handle_message(self, inbound: Inbound) -> list[Reply]:
        with self.lock:
            self.messages.append(inbound)
        if self.fail:
            raise RuntimeError("the platform is down")
        return [Reply(text=f"you said: {inbound.text}"), Reply(card=CARD)]

    def handle_card_action(self, inbound: Inbound, data: CardActionData) -> Reply:
        with self.lock:
            self.actions.append((inbound, data))
        if self.fail:
            raise RuntimeError("the platform is down")
        return Reply(card=CARD)

    def calls(self) -> int:
        with self.lock:
            return len(self.messages) + len(self.actions)


@dataclass
class Bot:
    url: str
    key: teams_testing.TestKey
    stub: ConnectorStub
    jwks: JwksServer
    dispatcher: RecordingDispatcher
    config: BotConfig
    store_url: str

    def token(self, **overrides: Any) -> str:
        claims = bot_claims(self.config.app_id, service_url=self.stub.url)
        claims.update(overrides)
        return self.key.sign(claims)

    def activity(self, kind: str = "message", **extra: Any) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": kind, "id": f"act-{uuid.uuid4()}", "serviceUrl": self.stub.url,
            "channelId": "msteams", "timestamp": "2026-12-07T23:00:00.000Z",
            "from": {"id": "29:user-ada", "name": "Ada", "aadObjectId": "aad-ada"},
            "conversation": {"id": CONVERSATION, "conversationType": "personal",
                             "tenantId": "tenant-1"},
            "recipient": {"id": f"28:{self.config.app_id}", "name": "MigrationBox"},
            "locale": "en-US", "channelData": {"tenant": {"id": "tenant-1"}},
        }
        if kind == "message":
            body["text"] = "status prod-1"
        body.update(extra)
        return body

    def post(self, body: Any, token: str | None = "good", **kwargs: Any) -> requests.Response:
        headers = dict(kwargs.pop("headers", {}))
        if token == "good":
            token = self.token()
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        if isinstance(body, bytes | str):
            return requests.post(f"{self.url}/api/messages", data=body,
                                 headers={"Content-Type": "application/json", **headers},
                                 timeout=30, **kwargs)
        return requests.post(f"{self.url}/api/messages", json=body, headers=headers,
                             timeout=30, **kwargs)


@pytest.fixture(scope="module")
def bot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bot]:
    key = make_key("kid-1")
    store_url = f"sqlite:///{tmp_path_factory.mktemp('teams-store') / 'store.db'}"
    with JwksServer(keys=[key]) as jwks, ConnectorStub() as stub:
        config = BotConfig(app_id=stub.app_id, app_secret=stub.secret,
                           openid_metadata_url=jwks.metadata_url,
                           connector_token_url=stub.token_url)
        dispatcher = RecordingDispatcher()
        with EndpointThread(build_app(config, dispatcher, store_url=store_url)) as server:
            yield Bot(server.url, key, stub, jwks, dispatcher, config, store_url)


@pytest.fixture(autouse=True)
def _fresh(bot: Bot) -> None:
    bot.stub.clear()
    bot.dispatcher.fail = False


def test_healthz(bot: Bot) -> None:
    answer = requests.get(f"{bot.url}/healthz", timeout=10)
    assert answer.status_code == 200 and answer.json()["status"] == "ok"


def test_a_signed_message_reaches_the_dispatcher_and_its_replies_the_connector(
        bot: Bot) -> None:
    before = len(bot.dispatcher.messages)
    body = bot.activity(text="<at>MigrationBox</at> status prod-1")
    answer = bot.post(body)
    assert answer.status_code in (200, 202), answer.text
    inbound = bot.dispatcher.messages[before]
    assert (inbound.activity_id, inbound.user_aad_id, inbound.user_name) == (
        body["id"], "aad-ada", "Ada")
    assert inbound.conversation.conversation_id == CONVERSATION
    assert inbound.conversation.tenant_id == "tenant-1"
    assert inbound.conversation.service_url == bot.stub.url
    sent = bot.stub.requests
    assert [r.status for r in sent] == [200, 200], [r.errors for r in sent]
    assert {r.operation for r in sent} == {"reply_to_activity"}
    assert all(r.activity_id == body["id"] and r.conversation_id == CONVERSATION
               for r in sent)
    text, card = sent[0].body, sent[1].body
    assert text["text"] == "you said: <at>MigrationBox</at> status prod-1"
    assert text["replyToId"] == body["id"]
    attachment = card["attachments"][0]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    validate_card(attachment["content"])
    # the connector saw the token its own endpoint issued (the stub refuses others)
    assert sent[0].headers["Authorization"].startswith("Bearer ")
    with session_scope(bot.store_url) as session:
        stored = state.conversation(session, CONVERSATION)
    assert stored is not None and stored.ref.service_url == bot.stub.url


def test_dispatcher_failure_answers_a_line_not_a_traceback(bot: Bot) -> None:
    bot.dispatcher.fail = True
    answer = bot.post(bot.activity())
    assert answer.status_code in (200, 202)
    texts = [r.body.get("text", "") for r in bot.stub.activities()]
    assert len(texts) == 1 and "went wrong" in texts[0] and "Traceback" not in texts[0]


def _refused(bot: Bot, token: str | None, body: dict[str, Any] | None = None,
             status: int = 401) -> None:
    calls = bot.dispatcher.calls()
    answer = bot.post(body or bot.activity(), token=token)
    assert answer.status_code == status, answer.text
    assert answer.json() == {"error": "unauthorized"}
    assert bot.dispatcher.calls() == calls
    assert bot.stub.requests == []


def test_forged_key_is_refused(bot: Bot) -> None:
    forger = make_key("kid-1")  # another key claiming the published key id
    _refused(bot, forger.sign(bot_claims(bot.config.app_id, service_url=bot.stub.url)))


def test_expired_token_is_refused(bot: Bot) -> None:
    now = time.time()
    _refused(bot, bot.token(exp=int(now - 3600), nbf=int(now - 7200), iat=int(now - 7200)))


def test_wrong_audience_is_refused(bot: Bot) -> None:
    _refused(bot, bot.token(aud="another-bot"))


def test_token_for_another_service_url_is_refused(bot: Bot) -> None:
    _refused(bot, bot.token(serviceurl="https://evil.example.com/"))


@pytest.mark.parametrize("header", [None, "Basic dXNlcjpwdw==", "Bearer", "Bearer a.b.c"])
def test_missing_or_malformed_header_is_refused(bot: Bot, header: str | None) -> None:
    calls = bot.dispatcher.calls()
    headers = {"Authorization": header} if header is not None else {}
    answer = requests.post(f"{bot.url}/api/messages", json=bot.activity(), headers=headers,
                           timeout=30)
    assert answer.status_code == 401
    assert bot.dispatcher.calls() == calls


def test_replayed_activity_is_refused(bot: Bot) -> None:
    token, body = bot.token(), bot.activity()
    assert bot.post(body, token=token).status_code in (200, 202)
    bot.stub.clear()
    _refused(bot, token, body)
    # the same token with a new activity id is how Teams reuses tokens: accepted
    assert bot.post(bot.activity(), token=token).status_code in (200, 202)


@pytest.mark.parametrize("raw,message", [
    (b"{not json", "not JSON"),
    (b"[1, 2, 3]", "JSON object"),
    (b"\xff\xfe", "UTF-8"),
    (b"", "not JSON"),
])
def test_malformed_bodies_get_400_with_a_message(bot: Bot, raw: bytes, message: str) -> None:
    calls = bot.dispatcher.calls()
    answer = bot.post(raw)
    assert answer.status_code == 400
    assert message in answer.json()["error"]
    assert bot.dispatcher.calls() == calls


@pytest.mark.parametrize("change,message", [
    ({"conversation": None}, "conversation"),
    ({"conversation": {"name": "x"}}, "conversation.id"),
    ({"recipient": "bot"}, "recipient"),
    ({"from": None}, "from"),
    ({"id": None}, "id"),
    ({"type": ""}, "type"),
    ({"channelId": 5}, "channelId"),
])
def test_activities_without_what_the_bot_needs_get_400(bot: Bot, change: dict[str, Any],
                                                       message: str) -> None:
    body = {k: v for k, v in bot.activity().items() if k not in change}
    body.update({k: v for k, v in change.items() if v is not None})
    if "channelId" in change:
        # the validator reads channelId for the endorsement check: a number is no channel
        answer = bot.post(body)
        assert answer.status_code == 401
        return
    answer = bot.post(body)
    assert answer.status_code == 400, answer.text
    assert message in answer.json()["error"]


def test_oversized_body_gets_413(bot: Bot) -> None:
    body = bot.activity(text="x" * (bot.config.max_body_bytes + 10))
    answer = bot.post(body)
    assert answer.status_code == 413
    assert bot.stub.requests == []


def test_card_action_returns_the_universal_actions_invoke_response(bot: Bot) -> None:
    before = len(bot.dispatcher.actions)
    body = bot.activity("invoke", name="adaptiveCard/action", value={
        "action": {"type": "Action.Execute", "verb": "approve",
                   "data": {"migration_id": "prod-1", "gate": "phase-2"}},
        "trigger": "manual"})
    answer = bot.post(body)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"statusCode": 200,
                             "type": "application/vnd.microsoft.card.adaptive",
                             "value": CARD}
    inbound, data = bot.dispatcher.actions[before]
    assert (data.verb, data.migration_id, data.gate) == ("approve", "prod-1", "phase-2")
    assert inbound.user_aad_id == "aad-ada"
    assert bot.stub.requests == []  # the answer is the HTTP response, not a post


def test_card_action_with_an_unknown_verb_is_a_400_in_the_invoke_body(bot: Bot) -> None:
    calls = bot.dispatcher.calls()
    body = bot.activity("invoke", name="adaptiveCard/action", value={
        "action": {"type": "Action.Execute", "verb": "format-disk", "data": {}}})
    answer = bot.post(body)
    assert answer.status_code == 200
    assert answer.json()["statusCode"] == 400
    assert answer.json()["type"] == "application/vnd.microsoft.error"
    assert "verb" in answer.json()["value"]["message"]
    assert bot.dispatcher.calls() == calls


def test_card_action_dispatcher_failure_is_an_error_invoke_body(bot: Bot) -> None:
    bot.dispatcher.fail = True
    body = bot.activity("invoke", name="adaptiveCard/action", value={
        "action": {"type": "Action.Execute", "verb": "pause",
                   "data": {"migration_id": "prod-1"}}})
    answer = bot.post(body)
    assert answer.status_code == 200
    assert answer.json()["statusCode"] == 500
    assert "Traceback" not in answer.text


def test_bot_added_to_a_team_greets_and_remembers(bot: Bot) -> None:
    conversation = {"id": "19:team-channel@thread.tacv2", "conversationType": "channel",
                    "isGroup": True, "tenantId": "tenant-1"}
    body = bot.activity("conversationUpdate", conversation=conversation,
                        membersAdded=[{"id": f"28:{bot.config.app_id}"}])
    answer = bot.post(body)
    assert answer.status_code in (200, 202), answer.text
    sent = bot.stub.activities()
    assert [r.body.get("text") for r in sent] == [GREETING]
    assert sent[0].conversation_id == conversation["id"]
    with session_scope(bot.store_url) as session:
        stored = state.conversation(session, conversation["id"])
    assert stored is not None and stored.ref.is_group
    assert stored.ref.conversation_type == "channel"


def test_keys_unavailable_is_503_and_runs_nothing(tmp_path: Path) -> None:
    dispatcher = RecordingDispatcher()
    with ConnectorStub() as stub, JwksServer(keys=[make_key("k")]) as jwks:
        jwks.fail = True
        config = BotConfig(app_id=stub.app_id, app_secret=stub.secret,
                           openid_metadata_url=jwks.metadata_url,
                           connector_token_url=stub.token_url)
        with EndpointThread(build_app(config, dispatcher)) as server:
            key = make_key("k")
            token = key.sign(bot_claims(config.app_id, service_url=stub.url))
            body = {"type": "message", "id": "1", "serviceUrl": stub.url,
                    "channelId": "msteams", "from": {"id": "u"},
                    "conversation": {"id": "c"}, "recipient": {"id": "b"}}
            answer = requests.post(f"{server.url}/api/messages", json=body,
                                   headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert answer.status_code == 503
    assert "Traceback" not in answer.text and dispatcher.calls() == 0


def test_refused_outbound_token_runs_nothing_and_answers_503(tmp_path: Path) -> None:
    dispatcher = RecordingDispatcher()
    key = make_key("k")
    with ConnectorStub() as stub, JwksServer(keys=[key]) as jwks:
        config = BotConfig(app_id=stub.app_id, app_secret="wrong-secret",
                           openid_metadata_url=jwks.metadata_url,
                           connector_token_url=stub.token_url)
        with EndpointThread(build_app(config, dispatcher)) as server:
            token = key.sign(bot_claims(config.app_id, service_url=stub.url))
            body = {"type": "message", "id": "1", "serviceUrl": stub.url, "text": "hi",
                    "channelId": "msteams", "from": {"id": "u"},
                    "conversation": {"id": "c"}, "recipient": {"id": "b"}}
            answer = requests.post(f"{server.url}/api/messages", json=body,
                                   headers={"Authorization": f"Bearer {token}"}, timeout=30)
        assert stub.requests == []
    # nothing ran (the SDK fetches the token before the turn); the channel retries a 503
    assert answer.status_code == 503
    assert "token" in answer.json()["error"] and dispatcher.calls() == 0


# -- properties ----------------------------------------------------------------------------

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12)
_fields = st.sampled_from(["type", "id", "text", "from", "conversation", "recipient",
                           "channelId", "name", "value", "attachments", "membersAdded",
                           "locale", "replyToId", "entities", "channelData", "timestamp"])
#: what an HTTP client can put in a header value (visible ASCII and Latin-1)
_header_text = st.text(alphabet=st.characters(codec="latin-1", exclude_categories=("Cc",)),
                       max_size=40).map(str.strip)
_types = st.sampled_from(["message", "invoke", "conversationUpdate", "event", "typing",
                          "installationUpdate", "messageReaction", "endOfConversation",
                          "whatever", ""])


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture,
                                 HealthCheck.too_slow])
@given(changes=st.dictionaries(_fields, _json, max_size=5), kind=_types,
       signed=st.booleans(), extra_header=_header_text,
       raw=st.none() | st.binary(max_size=200))
def test_random_bodies_and_headers_never_give_500(bot: Bot, changes: dict[str, Any],
                                                  kind: str, signed: bool,
                                                  extra_header: str,
                                                  raw: bytes | None) -> None:
    body: Any = bot.activity(kind if kind in ("message", "invoke") else "message")
    body["type"] = kind
    body.update(changes)
    payload = raw if raw is not None else body
    headers = {"X-Anything": extra_header}
    token = "good" if signed else extra_header
    answer = bot.post(payload, token=token or None, headers=headers)
    assert answer.status_code < 500 or answer.status_code == 501, (answer.status_code,
                                                                   answer.text)
    assert "Traceback" not in answer.text


# -- the process the platform starts ---------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_server_process_answers_with_the_platform_dispatcher_and_stops_on_sigterm(
        tmp_path: Path) -> None:
    key = make_key("kid-p")
    with JwksServer(keys=[key]) as jwks, ConnectorStub() as stub:
        conn = {"conn_type": "generic", "login": stub.app_id, "password": stub.secret,
                "extra": {"openid_metadata_url": jwks.metadata_url,
                          "connector_token_url": stub.token_url}}
        port = _free_port()
        env = {**os.environ, "AIRFLOW_CONN_MIGRATIONBOX_TEAMS": json.dumps(conn),
               "MIGRATIONBOX_STORE_URL": f"sqlite:///{tmp_path / 'store.db'}",
               "MIGRATIONBOX_HOME": str(tmp_path), "AIRFLOW_HOME": str(tmp_path / "af")}
        log_path = tmp_path / "bot.log"
        with log_path.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "migrationbox.teams.server", "--port", str(port)],
                env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                assert proc.poll() is None, log_path.read_text()
                try:
                    if requests.get(f"http://127.0.0.1:{port}/healthz",
                                    timeout=2).status_code == 200:
                        break
                except requests.ConnectionError:
                    time.sleep(0.3)
            token = key.sign(bot_claims(stub.app_id, service_url=stub.url))
            body = {"type": "message", "id": "m-1", "serviceUrl": stub.url,
                    "channelId": "msteams", "text": "hello there", "locale": "en-US",
                    "from": {"id": "29:u", "name": "Ada", "aadObjectId": "aad-ada"},
                    "conversation": {"id": "a:conv-p", "conversationType": "personal"},
                    "recipient": {"id": f"28:{stub.app_id}", "name": "MigrationBox"}}
            answer = requests.post(f"http://127.0.0.1:{port}/api/messages", json=body,
                                   headers={"Authorization": f"Bearer {token}"}, timeout=60)
            assert answer.status_code in (200, 202), answer.text
            sent = stub.activities()
            assert sent and all(r.status == 200 for r in sent)  # a real answer, swagger-valid
            assert sent[0].body["replyToId"] == "m-1"
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            code = proc.wait(timeout=30)
    assert code == 0, log_path.read_text()
    assert "Teams bot endpoint stopped" in log_path.read_text()


def test_server_process_without_its_connection_exits_with_the_reason(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW_CONN_")}
    env["AIRFLOW_HOME"] = str(tmp_path / "af")
    done = subprocess.run(
        [sys.executable, "-m", "migrationbox.teams.server", "--port", "0", "--conn-id",
         "no_such_teams_connection"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "no_such_teams_connection" in done.stderr and "Traceback" not in done.stderr


def test_bot_config_from_connection_fields() -> None:
    config = BotConfig.from_connection_fields(
        "c", "app", "s3cr3t-value", {"tenant_id": "t1", "issuers": "a, b"})
    assert config.issuers == ("a", "b")
    assert config.token_url == "https://login.microsoftonline.com/t1/oauth2/v2.0/token"
    assert "s3cr3t-value" not in repr(config)
    with pytest.raises(ConfigurationError, match="password"):
        BotConfig.from_connection_fields("c", "app", "", {})
    with pytest.raises(ConfigurationError, match="unknown extra field"):
        BotConfig.from_connection_fields("c", "app", "s", {"tennant": "x"})
    with pytest.raises(ConfigurationError, match="max_body_bytes"):
        BotConfig.from_connection_fields("c", "app", "s", {"max_body_bytes": -1})


def test_attachment_fetcher_sends_the_token_only_where_it_belongs(tmp_path: Path) -> None:
    seen: list[str | None] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.headers.get("Authorization"))
            data = b"RIFF-audio" * 10
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/v3/attachments/a/views/original"
        fetch = AttachmentFetcher(lambda: "bot-token", max_bytes=1000)
        assert fetch({"contentType": "audio/wav", "contentUrl": url}) == b"RIFF-audio" * 10
        assert seen == ["Bearer bot-token"]
        with pytest.raises(InputError, match="larger"):
            AttachmentFetcher(lambda: "t", max_bytes=10)({"contentUrl": url})
        with pytest.raises(InputError, match="https only"):
            fetch({"contentUrl": "http://example.com/a.wav"})
        with pytest.raises(InputError, match="no contentUrl"):
            fetch({"contentType": "audio/wav"})
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
