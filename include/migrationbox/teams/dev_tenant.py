"""Microsoft's side of Teams, on loopback: for the demo, the benchmark and end-to-end tests.

A real tenant cannot reach a bot on 127.0.0.1, so to show the bot working on a laptop
something has to play Teams: sign the calls the Bot Connector would make (with keys it
publishes the way login.botframework.com does) and receive what the bot sends back. This
module puts the pieces that already exist for the tests together: ``JwksServer`` (the
keys), ``ConnectorStub`` (the Bot Connector and its token endpoint, checking request
shapes against the published swagger), and ``TeamsUser`` (a person in a conversation who
types commands and clicks card buttons). ``attach`` points the platform's bot at them
through its Airflow connection and restarts it, exactly what an operator does with a real
tenant's values. The bot itself never imports this module.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from migrationbox.errors import MigrationBoxError
from migrationbox.teams.connector_stub import ConnectorStub, RecordedRequest
from migrationbox.teams.testing import JwksServer, TestKey, bot_claims, make_key

ADAPTIVE_CARD = "application/vnd.microsoft.card.adaptive"


class DevTenantError(MigrationBoxError, RuntimeError):
    """The bot did not answer as Teams expects (a refusal, a timeout, a wrong shape)."""


@dataclass
class DevTenant:
    """The loopback stand-in for Teams: start it, ``attach`` the platform's bot, talk."""

    key: TestKey = field(default_factory=lambda: make_key(f"dev-{uuid.uuid4().hex[:8]}"))
    jwks: JwksServer = field(default_factory=JwksServer)
    connector: ConnectorStub = field(default_factory=ConnectorStub)
    tenant_id: str = "00000000-0000-0000-0000-0000000d3a10"

    def start(self) -> DevTenant:
        self.jwks.keys = [self.key]
        self.jwks.start()
        self.connector.start()
        return self

    def stop(self) -> None:
        self.connector.stop()
        self.jwks.stop()

    def __enter__(self) -> DevTenant:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def app_id(self) -> str:
        return self.connector.app_id

    def connection_entity(self, conn_id: str) -> dict[str, Any]:
        """The bot's Airflow connection with this tenant's values (what an operator
        writes for a real tenant, docs/teams-endpoint.md)."""
        return {
            "connection_id": conn_id, "conn_type": "generic",
            "description": "MigrationBox Teams bot: the loopback development tenant "
                           "(migrationbox.teams.dev_tenant)",
            "login": self.connector.app_id, "password": self.connector.secret,
            "extra": json.dumps({"openid_metadata_url": self.jwks.metadata_url,
                                 "connector_token_url": self.connector.token_url}),
        }

    def attach(self, platform: Any, *, timeout: float = 90.0) -> str:
        """Write this tenant into the platform's bot connection and restart the bot;
        returns the bot's endpoint URL once it answers ``/healthz``."""
        from migrationbox import settings
        from migrationbox.platform.supervisor import TEAMS_COMPONENT

        conn_id = str(settings.get("teams_conn_id", variables=False))
        with platform.client() as client:
            client.bulk_upsert("connections", [self.connection_entity(conn_id)])
        platform.restart_component(TEAMS_COMPONENT)
        state = platform.read_state()
        if state is None or not state.teams_url:
            raise DevTenantError("the platform has no Teams bot endpoint")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{state.teams_url}/healthz", timeout=3).status_code == 200:
                    return str(state.teams_url)
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise DevTenantError(f"the Teams bot at {state.teams_url} did not come back "
                             f"within {timeout:.0f}s (see its log: teams-bot.log)")

    def user(self, bot_url: str, *, name: str, aad_id: str,
             conversation_id: str = "19:migration-demo@thread.tacv2",
             conversation_type: str = "channel", locale: str = "en-US") -> TeamsUser:
        return TeamsUser(self, bot_url.rstrip("/"), name=name, aad_id=aad_id,
                         conversation_id=conversation_id,
                         conversation_type=conversation_type, locale=locale)

    # -- what the bot sent --------------------------------------------------------------

    def sent(self, conversation_id: str | None = None) -> list[RecordedRequest]:
        """Activities the bot posted or updated (accepted by the connector), oldest first."""
        return [r for r in self.connector.activities()
                if isinstance(r.body, dict)
                and (conversation_id is None or r.conversation_id == conversation_id)]

    def wait_for(self, what: str, predicate: Callable[[RecordedRequest], bool], *,
                 timeout: float = 120.0, after: int = 0) -> RecordedRequest:
        """The first activity from index ``after`` on that ``predicate`` accepts."""
        deadline = time.monotonic() + timeout
        while True:
            for request in self.sent()[after:]:
                if predicate(request):
                    return request
            if time.monotonic() > deadline:
                raise DevTenantError(f"no {what} from the bot within {timeout:.0f}s")
            time.sleep(0.5)


def cards_of(request: RecordedRequest) -> list[dict[str, Any]]:
    """The Adaptive Cards an activity the bot sent carries."""
    body = request.body if isinstance(request.body, dict) else {}
    return [a.get("content") for a in body.get("attachments") or []
            if isinstance(a, dict) and a.get("contentType") == ADAPTIVE_CARD
            and isinstance(a.get("content"), dict)]


def card_verbs(card: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``verb -> data`` of every ``Action.Execute`` in a card (also inside ShowCards)."""
    found: dict[str, dict[str, Any]] = {}

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") == "Action.Execute" and isinstance(node.get("verb"), str):
                found.setdefault(node["verb"], dict(node.get("data") or {}))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(card)
    return found


def card_text(card: dict[str, Any]) -> str:
    """Every text of a card, in order (for printing a card in a terminal)."""
    parts: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("title"), str) and "value" in node:  # a FactSet fact
                parts.append(f"{node['title']}: {node['value']}")
                return
            if isinstance(node.get("text"), str) and node.get("type") != "Action.Execute":
                parts.append(node["text"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(card.get("body") or [])
    return "\n".join(parts)


@dataclass
class TeamsUser:
    """A person in one conversation, calling the bot as the Bot Connector would."""

    tenant: DevTenant
    bot_url: str
    name: str
    aad_id: str
    conversation_id: str
    conversation_type: str = "channel"
    locale: str = "en-US"
    timeout_s: float = 120.0

    def activity(self, kind: str, **extra: Any) -> dict[str, Any]:
        """An activity as the Bot Connector sends it, from this user in this conversation."""
        body: dict[str, Any] = {
            "type": kind, "id": f"dev-{uuid.uuid4()}",
            "serviceUrl": self.tenant.connector.url, "channelId": "msteams",
            "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            "from": {"id": f"29:{self.aad_id}", "name": self.name,
                     "aadObjectId": self.aad_id},
            "conversation": {"id": self.conversation_id,
                             "conversationType": self.conversation_type,
                             "tenantId": self.tenant.tenant_id,
                             "isGroup": self.conversation_type != "personal"},
            "recipient": {"id": f"28:{self.tenant.app_id}", "name": "MigrationBox"},
            "locale": self.locale,
            "channelData": {"tenant": {"id": self.tenant.tenant_id}},
        }
        body.update(extra)
        return body

    def _post(self, body: dict[str, Any]) -> httpx.Response:
        token = self.tenant.key.sign(bot_claims(self.tenant.app_id,
                                                service_url=self.tenant.connector.url))
        try:
            return httpx.post(f"{self.bot_url}/api/messages", json=body,
                              headers={"Authorization": f"Bearer {token}"},
                              timeout=self.timeout_s)
        except httpx.HTTPError as exc:
            raise DevTenantError(f"the bot at {self.bot_url} did not answer: {exc}") from exc

    def say(self, text: str) -> list[RecordedRequest]:
        """Send ``text`` as a message; returns the bot's replies to it (the SDK sends them
        before the call returns)."""
        body = self.activity("message", text=text, textFormat="plain")
        answer = self._post(body)
        if answer.status_code not in (200, 201, 202):
            raise DevTenantError(f"the bot answered HTTP {answer.status_code} to "
                                 f"{text!r}: {answer.text[:300]}")
        return [r for r in self.tenant.sent(self.conversation_id)
                if r.body.get("replyToId") == body["id"]]

    def click(self, verb: str, data: dict[str, Any], *, reply_to: str | None = None,
              inputs: dict[str, Any] | None = None) -> dict[str, Any] | str:
        """Press an ``Action.Execute`` button (Universal Actions): the ``invoke`` activity
        Teams sends; returns the card the bot answered with (it replaces the one clicked)
        or, when the bot answered with a line of text, that text."""
        body = self.activity(
            "invoke", name="adaptiveCard/action",
            value={"action": {"type": "Action.Execute", "verb": verb,
                              "data": {**data, **(inputs or {})}},
                   "trigger": "manual"},
            **({"replyToId": reply_to} if reply_to else {}))
        answer = self._post(body)
        if answer.status_code != 200:
            raise DevTenantError(f"the bot answered HTTP {answer.status_code} to the "
                                 f"{verb!r} button: {answer.text[:300]}")
        payload = answer.json()
        if payload.get("statusCode") != 200:
            raise DevTenantError(f"the {verb!r} button was refused: {payload}")
        value = payload.get("value")
        if payload.get("type") == ADAPTIVE_CARD and isinstance(value, dict):
            return dict(value)
        return str(value or "")
