"""The Teams bot endpoint: an aiohttp application on the Microsoft 365 Agents SDK.

Teams (through the Bot Connector service) POSTs every activity to ``/api/messages``.
The SDK's ``CloudAdapter`` turns the request into a turn and an ``ActivityHandler``
answers it; replies go back through the SDK's connector client to the activity's
``serviceUrl``. Two parts are the project's own, for reasons docs/teams.md gives:

* **Inbound authentication** is ``teams.auth.BotTokenValidator``, run by an aiohttp
  middleware in place of the SDK's ``jwt_authorization_middleware`` (the SDK 1.9.0
  validator accepts wrong issuers by default and checks neither key endorsements, the
  full serviceUrl, nor replays). The middleware reads the body first (size-limited, JSON
  object), validates the token against the body's ``serviceUrl``/``channelId``/``id``,
  answers 401 (503 when the signing keys cannot be fetched) with a generic body and logs
  the reason, and on success puts the claims where the adapter reads them
  (``request["claims_identity"]``). Nothing of an activity runs before that.
* **Outbound tokens** come from ``ClientCredentialsTokenProvider`` (OAuth2 client
  credentials against a configurable token endpoint) plugged into the SDK through its
  ``Connections`` interface. The SDK's own provider (``-authentication-msal``) cannot be
  pointed at a loopback token endpoint: MSAL accepts only https authorities and discovers
  the token endpoint from the authority's OpenID metadata, so tests and the demo could not
  run without Entra. The request it makes is the same one MSAL makes for a client secret.

Activities: a ``message`` becomes a ``contracts.Inbound`` for the ``Dispatcher`` (run in
a thread: it blocks on Airflow and the store) and each ``Reply`` is sent as the turn's
reply; an ``invoke`` named ``adaptiveCard/action`` (an ``Action.Execute`` button) goes to
``handle_card_action`` and its card is the Universal Actions invoke response;
``conversationUpdate`` adding the bot stores the conversation and greets. Every
authenticated activity refreshes the stored conversation reference, so proactive
messages follow a serviceUrl Teams moves.

``python -m migrationbox.teams.server [--port N]`` serves it on 127.0.0.1 with the
``teams_conn_id`` connection's credentials and the platform's ``CommandDispatcher``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
import threading
import time
import warnings
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from aiohttp import ClientError, ClientSession, ClientTimeout, web
from aiohttp.web_exceptions import NotAppKeyWarning
from azure.core.credentials import AccessToken
from azure.core.credentials_async import AsyncTokenCredential
from microsoft_agents.activity import (
    Activity,
    ActivityTypes,
    Attachment,
    InvokeResponse,
)
from microsoft_agents.hosting.aiohttp import CloudAdapter
from microsoft_agents.hosting.core import ActivityHandler, TurnContext
from microsoft_agents.hosting.core.authorization import (
    AccessTokenProviderBase,
    AgentAuthConfiguration,
    ClaimsIdentity,
)
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from migrationbox.errors import ConfigurationError, InputError, MigrationBoxError
from migrationbox.teams.auth import (
    BOTFRAMEWORK_ISSUER,
    BOTFRAMEWORK_OPENID_METADATA_URL,
    AuthSettings,
    BotTokenValidator,
)
from migrationbox.teams.cards import CARD_CONTENT_TYPE, CardActionData, card_attachment
from migrationbox.teams.contracts import ConversationRef, Dispatcher, Inbound, Reply

log = logging.getLogger("migrationbox.teams.server")

CONNECTOR_SCOPE = "https://api.botframework.com/.default"
DEFAULT_MAX_BODY_BYTES = 256 * 1024
MESSAGES_PATH = "/api/messages"
HEALTH_PATH = "/healthz"
CARD_ACTION_INVOKE = "adaptiveCard/action"
ERROR_CONTENT_TYPE = "application/vnd.microsoft.error"
GREETING = ("Hello, I am MigrationBox. Ask me for the status of a migration "
            "(`status`, `status <id>`), start, pause, resume, roll back or cancel one, "
            "approve or reject a gate, or `help` for the list of commands. "
            "You may also write in German, Spanish or Hungarian.")
TROUBLE = ("Sorry, something went wrong on my side while answering; it has been logged. "
           "Please try again in a moment.")



# -- configuration ------------------------------------------------------------------------


class BotConfig(BaseModel):
    """The bot's identity and where it checks and gets tokens; from the Airflow connection
    named by the ``teams_conn_id`` setting (login = app id, password = client secret,
    extra = the rest)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    app_id: str = Field(min_length=1, max_length=255)
    app_secret: SecretStr
    tenant_id: str | None = None
    openid_metadata_url: str = BOTFRAMEWORK_OPENID_METADATA_URL
    issuers: tuple[str, ...] = (BOTFRAMEWORK_ISSUER,)
    #: OAuth2 token endpoint for the bot's outbound calls; default: Entra's, for the
    #: tenant (single-tenant bots) or botframework.com (multi-tenant).
    connector_token_url: str | None = None
    connector_scope: str = CONNECTOR_SCOPE
    max_body_bytes: int = Field(default=DEFAULT_MAX_BODY_BYTES, ge=1024, le=16 * 1024 * 1024)
    bot_name: str = "MigrationBox"

    @property
    def token_url(self) -> str:
        if self.connector_token_url:
            return self.connector_token_url
        tenant = self.tenant_id or "botframework.com"
        return f"https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token"

    def auth_settings(self) -> AuthSettings:
        return AuthSettings(app_id=self.app_id,
                            openid_metadata_url=self.openid_metadata_url,
                            issuers=self.issuers)

    @classmethod
    def from_connection_fields(cls, conn_id: str, login: str | None, password: str | None,
                               extra: dict[str, Any]) -> BotConfig:
        """Build from a connection's fields; a clear ConfigurationError names the
        connection and the field when something is missing or wrong."""
        if not login:
            raise ConfigurationError(f"Airflow connection {conn_id!r}: login (the bot's "
                                     "Entra application id) is empty")
        if not password:
            raise ConfigurationError(f"Airflow connection {conn_id!r}: password (the bot's "
                                     "client secret) is empty")
        known = {"tenant_id", "openid_metadata_url", "issuers", "connector_token_url",
                 "connector_scope", "max_body_bytes", "bot_name"}
        unknown = sorted(set(extra) - known)
        if unknown:
            raise ConfigurationError(f"Airflow connection {conn_id!r}: unknown extra field(s) "
                                     f"{', '.join(unknown)}; known: {', '.join(sorted(known))}")
        fields = dict(extra)
        if isinstance(fields.get("issuers"), str):
            fields["issuers"] = [i.strip() for i in fields["issuers"].split(",") if i.strip()]
        try:
            return cls(app_id=login, app_secret=SecretStr(password), **fields)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
                                 for e in exc.errors())
            raise ConfigurationError(
                f"Airflow connection {conn_id!r}: {problems}") from exc

    @classmethod
    def from_connection(cls, conn_id: str) -> BotConfig:
        """Read the Airflow connection ``conn_id`` (the Task SDK's lookup: environment
        variables, secrets backends, the metadata database in a server context)."""
        from migrationbox.endpoints.connections import get_connection

        conn = get_connection(conn_id)
        extra = dict(conn.extra_dejson or {})
        return cls.from_connection_fields(conn_id, conn.login, conn.password, extra)


_AUTH_KEY = web.AppKey("teams_validator", BotTokenValidator)
_CONFIG_KEY = web.AppKey("teams_config", BotConfig)


# -- outbound tokens ------------------------------------------------------------------------


class OutboundTokenError(MigrationBoxError, RuntimeError):
    """The token endpoint did not give the bot a token (the reply cannot be sent)."""


class ClientCredentialsProvider(AccessTokenProviderBase):
    """Bot Connector tokens by OAuth2 client credentials, cached until a minute before
    they expire; the SDK asks for one per turn."""

    def __init__(self, config: BotConfig, *, timeout_s: float = 10.0) -> None:
        self._config = config
        self._timeout = ClientTimeout(total=timeout_s)
        self._token: str | None = None
        self._expires_at = 0.0
        self._lock = asyncio.Lock()
        self.fetches = 0

    @property
    def configuration(self) -> AgentAuthConfiguration:
        return AgentAuthConfiguration(client_id=self._config.app_id,
                                      tenant_id=self._config.tenant_id)

    async def get_access_token(self, resource_url: str, scopes: list[str],
                               force_refresh: bool = False) -> str:
        async with self._lock:
            if not force_refresh and self._token and time.time() < self._expires_at - 60:
                return self._token
            self._token, self._expires_at = await self._fetch()
            return self._token

    async def _fetch(self) -> tuple[str, float]:
        form = {"grant_type": "client_credentials", "client_id": self._config.app_id,
                "client_secret": self._config.app_secret.get_secret_value(),
                "scope": self._config.connector_scope}
        url = self._config.token_url
        self.fetches += 1
        try:
            async with ClientSession(timeout=self._timeout) as http, \
                    http.post(url, data=form) as answer:
                text = await answer.text()
                status = answer.status
        except (ClientError, TimeoutError, OSError) as exc:
            raise OutboundTokenError(f"token endpoint {url}: {type(exc).__name__}: "
                                     f"{exc}") from exc
        try:
            body = json.loads(text)
        except ValueError:
            body = None
        if status != 200 or not isinstance(body, dict) or not body.get("access_token"):
            error = body.get("error") if isinstance(body, dict) else text[:200]
            raise OutboundTokenError(f"token endpoint {url} answered {status}: {error}")
        try:  # a number, or a numeric string as some endpoints send it
            seconds = float(body.get("expires_in"))
        except (TypeError, ValueError):
            seconds = 300.0
        if not 0 < seconds < 7 * 24 * 3600:
            seconds = 300.0
        return str(body["access_token"]), time.time() + seconds

    def get_token_credential(self) -> AsyncTokenCredential:
        provider = self

        class _Credential(AsyncTokenCredential):
            async def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
                token = await provider.get_access_token("", list(scopes))
                return AccessToken(token, int(provider._expires_at))

            async def close(self) -> None:
                return None

            async def __aexit__(self, *exc: object) -> None:
                return None

        return _Credential()


TOKEN_PROVIDER_KEY = web.AppKey("teams_token_provider", ClientCredentialsProvider)


class SingleConnection:
    """The SDK's ``Connections``: one bot identity, so every lookup is the same
    provider."""

    def __init__(self, provider: ClientCredentialsProvider) -> None:
        self.provider = provider

    def get_connection(self, connection_name: str) -> AccessTokenProviderBase:
        return self.provider

    def get_default_connection(self) -> AccessTokenProviderBase:
        return self.provider

    def get_token_provider(self, claims_identity: ClaimsIdentity,
                           service_url: str) -> AccessTokenProviderBase:
        return self.provider

    def get_token_provider_from_activity(self, claims_identity: ClaimsIdentity,
                                         activity: Activity) -> AccessTokenProviderBase:
        return self.provider

    def get_default_connection_configuration(self) -> AgentAuthConfiguration:
        return self.provider.configuration


# -- the activity handler -------------------------------------------------------------------


def _conversation_ref(activity: Activity) -> ConversationRef:
    conv = activity.conversation
    assert conv is not None and activity.recipient is not None  # checked by the middleware
    tenant = conv.tenant_id
    channel_data = activity.channel_data if isinstance(activity.channel_data, dict) else {}
    if tenant is None and isinstance(channel_data.get("tenant"), dict):
        found = channel_data["tenant"].get("id")  # Teams puts it here too
        tenant = found if isinstance(found, str) else None
    return ConversationRef(
        conversation_id=conv.id, service_url=str(activity.service_url),
        channel_id=str(activity.channel_id or "msteams"), tenant_id=tenant,
        bot_id=activity.recipient.id, bot_name=activity.recipient.name,
        is_group=bool(conv.is_group), conversation_type=conv.conversation_type)


def _inbound(activity: Activity) -> Inbound:
    sender = activity.from_property
    assert sender is not None  # checked by the middleware
    return Inbound(
        activity_id=str(activity.id), text=activity.text or "", user_id=sender.id,
        user_aad_id=sender.aad_object_id, user_name=sender.name or "",
        locale=activity.locale, conversation=_conversation_ref(activity),
        attachments=[a.model_dump(mode="json", by_alias=True, exclude_none=True)
                     for a in activity.attachments or []])


def _reply_activity(reply: Reply) -> Activity:
    activity = Activity(type=ActivityTypes.message)
    if reply.text:
        activity.text = reply.text
    if reply.card is not None:
        attachment = card_attachment(reply.card)
        activity.attachments = [Attachment(content_type=attachment["contentType"],
                                           content=attachment["content"])]
    return activity


def _invoke_error(status: int, code: str, message: str) -> InvokeResponse:
    """A Universal Actions error answer (HTTP 200; the status is in the body)."""
    return InvokeResponse(status=200, body={
        "statusCode": status, "type": ERROR_CONTENT_TYPE,
        "value": {"code": code, "message": message}})


class MigrationBoxAgent(ActivityHandler):
    """Routes authenticated activities to the dispatcher; the SDK sends what it returns."""

    def __init__(self, dispatcher: Dispatcher, store_url: str | None) -> None:
        self.dispatcher = dispatcher
        self.store_url = store_url

    async def _remember(self, activity: Activity) -> None:
        if self.store_url is None:
            return
        ref = _conversation_ref(activity)

        def remember() -> None:
            from migrationbox.store.db import session_scope
            from migrationbox.teams.state import remember_conversation

            with session_scope(self.store_url) as session:
                remember_conversation(session, ref)

        await asyncio.to_thread(remember)

    async def on_message_activity(self, turn_context: TurnContext) -> None:  # type: ignore[override]
        activity = turn_context.activity
        await self._remember(activity)
        inbound = _inbound(activity)
        try:
            replies = await asyncio.to_thread(self.dispatcher.handle_message, inbound)
        except Exception:
            log.exception("dispatcher failed on message %s in %s", inbound.activity_id,
                          inbound.conversation.conversation_id)
            replies = [Reply(text=TROUBLE)]
        for reply in replies:
            if reply.text is None and reply.card is None:
                continue
            await turn_context.send_activity(_reply_activity(reply))

    async def on_conversation_update_activity(self, turn_context: TurnContext) -> None:  # type: ignore[override]
        activity = turn_context.activity
        await self._remember(activity)
        bot_id = activity.recipient.id if activity.recipient else None
        added = [m.id for m in activity.members_added or []]
        if bot_id is not None and bot_id in added:
            log.info("bot added to conversation %s",
                     activity.conversation.id if activity.conversation else "?")
            await turn_context.send_activity(_reply_activity(Reply(text=GREETING)))

    async def on_invoke_activity(self, turn_context: TurnContext) -> InvokeResponse | None:  # type: ignore[override]
        activity = turn_context.activity
        if activity.name != CARD_ACTION_INVOKE:
            return InvokeResponse(status=501, body={
                "error": f"invoke {str(activity.name)[:80]!r} is not supported"})
        await self._remember(activity)
        value = activity.value if isinstance(activity.value, dict) else {}
        action = value.get("action") if isinstance(value.get("action"), dict) else None
        if action is None or action.get("type", "Action.Execute") != "Action.Execute":
            return _invoke_error(400, "BadRequest",
                                 "adaptiveCard/action needs value.action of type "
                                 "Action.Execute")
        data = action.get("data") if isinstance(action.get("data"), dict) else {}
        try:
            card_data = CardActionData.model_validate({**data, "verb": action.get("verb")})
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
                                 for e in exc.errors())[:500]
            return _invoke_error(400, "BadRequest", f"card action data: {problems}")
        inbound = _inbound(activity)
        try:
            reply = await asyncio.to_thread(self.dispatcher.handle_card_action, inbound,
                                            card_data)
        except Exception:
            log.exception("dispatcher failed on card action %r in %s", card_data.verb,
                          inbound.conversation.conversation_id)
            return _invoke_error(500, "InternalError", TROUBLE)
        if reply.card is not None:
            body = {"statusCode": 200, "type": CARD_CONTENT_TYPE, "value": reply.card}
        else:
            body = {"statusCode": 200, "type": "application/vnd.microsoft.activity.message",
                    "value": reply.text or ""}
        return InvokeResponse(status=200, body=body)


# -- the inbound middleware ------------------------------------------------------------------


def _json_error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


class _ActivityShape(BaseModel):
    """The fields the endpoint relies on before the SDK sees the activity."""

    model_config = ConfigDict(extra="allow")

    class _Account(BaseModel):
        model_config = ConfigDict(extra="allow")
        id: str = Field(min_length=1, max_length=1024)

    type: str = Field(min_length=1, max_length=64)
    id: str | None = Field(default=None, max_length=1024)
    serviceUrl: str = Field(min_length=1, max_length=2048)
    channelId: str = Field(min_length=1, max_length=64)
    conversation: _Account
    recipient: _Account
    from_: _Account | None = Field(default=None, alias="from")


def _shape_problems(body: dict[str, Any]) -> str | None:
    try:
        shape = _ActivityShape.model_validate(body)
    except ValidationError as exc:
        return "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
                         for e in exc.errors())[:500]
    if shape.type in (ActivityTypes.message, ActivityTypes.invoke):
        if shape.from_ is None:
            return "from: a message or invoke needs the sender"
        if not shape.id:
            return "id: a message or invoke needs an activity id"
    try:
        Activity.model_validate(body)
    except (ValidationError, ValueError, TypeError) as exc:
        return f"not a Bot Framework activity: {str(exc).splitlines()[0][:300]}"
    return None


def _text_field(body: Any, name: str) -> str | None:
    value = body.get(name) if isinstance(body, dict) else None
    return value if isinstance(value, str) else None


@web.middleware
async def bot_auth_middleware(request: web.Request,
                              handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                              ) -> web.StreamResponse:
    """Authenticate ``POST /api/messages`` with ``BotTokenValidator`` before anything of
    the activity runs; other paths pass (``/healthz``)."""
    if request.path != MESSAGES_PATH:
        return await handler(request)
    if request.method != "POST":
        return _json_error(405, "POST an activity to /api/messages")
    validator = request.app[_AUTH_KEY]
    limit = request.app[_CONFIG_KEY].max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        return _json_error(413, f"activity larger than {limit} bytes")
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        return _json_error(413, f"activity larger than {limit} bytes")
    body: Any = None
    parse_error: str | None = None
    try:
        body = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        parse_error = "body is not UTF-8 text"
    except ValueError as exc:
        parse_error = f"body is not JSON ({str(exc)[:120]})"
    if parse_error is None and not isinstance(body, dict):
        parse_error = "body must be a JSON object (one activity)"
    if parse_error is not None:
        # nothing can be authenticated against (no serviceUrl, channel or id) and nothing
        # of it will run: say what is wrong with it
        return _json_error(400, parse_error)
    result = await asyncio.to_thread(
        validator.validate, request.headers.get("Authorization"),
        service_url=_text_field(body, "serviceUrl"),
        channel_id=_text_field(body, "channelId"),
        activity_id=_text_field(body, "id"))
    if not result.ok:
        log.warning("refused %s from %s: %s (%s)", request.path, request.remote,
                    result.refusal, result.detail)
        if result.status_code == 503:
            return _json_error(503, "authentication keys unavailable; try again later")
        return _json_error(401, "unauthorized")
    problem = _shape_problems(body)
    if problem is not None:
        return _json_error(400, f"bad activity: {problem}")
    with warnings.catch_warnings():  # the SDK's adapter reads this plain string key
        warnings.simplefilter("ignore", NotAppKeyWarning)
        request["claims_identity"] = ClaimsIdentity(result.claims,
                                                    authentication_type="Bearer")
    return await handler(request)


# -- the application --------------------------------------------------------------------------


def build_app(config: BotConfig, dispatcher: Dispatcher, *, store_url: str | None = None,
              validator: BotTokenValidator | None = None) -> web.Application:
    """The endpoint as an aiohttp application (``POST /api/messages``, ``GET /healthz``).

    ``store_url``: the MigrationBox store where conversation references are kept (None:
    not kept, for tests of the HTTP surface). ``validator``: for tests with their own
    clock; default one from ``config``."""
    provider = ClientCredentialsProvider(config)
    adapter = CloudAdapter(connection_manager=SingleConnection(provider))

    async def on_turn_error(context: TurnContext, error: Exception) -> None:
        log.error("turn failed (%s activity %s): %s: %s", context.activity.type,
                  context.activity.id, type(error).__name__, error,
                  exc_info=(type(error), error, error.__traceback__))
        if context.activity.type == ActivityTypes.message and not isinstance(
                error, OutboundTokenError):
            try:
                await context.send_activity(_reply_activity(Reply(text=TROUBLE)))
            except Exception as exc:  # the connector itself failed: nothing more to say
                log.error("could not tell the user: %s: %s", type(exc).__name__, exc)

    adapter.on_turn_error = on_turn_error
    agent = MigrationBoxAgent(dispatcher, store_url)
    app = web.Application(middlewares=[bot_auth_middleware],
                          client_max_size=config.max_body_bytes)
    app[_AUTH_KEY] = validator or BotTokenValidator(config.auth_settings())
    app[_CONFIG_KEY] = config
    app[TOKEN_PROVIDER_KEY] = provider

    async def messages(request: web.Request) -> web.StreamResponse:
        try:
            response = await adapter.process(request, agent)
        except OutboundTokenError as exc:
            # the SDK gets the outbound token before the turn runs: nothing ran, and a
            # 5xx makes the channel deliver the activity again later
            log.error("activity not processed: no outbound token: %s", exc)
            return _json_error(503, "the bot cannot get its outbound token; try again later")
        except Exception:
            log.exception("activity processing failed")
            return _json_error(500, "internal error; logged")
        return response if response is not None else web.Response(status=202)

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "app_id": config.app_id})

    app.router.add_post(MESSAGES_PATH, messages)
    app.router.add_get(HEALTH_PATH, healthz)
    return app


class AttachmentFetcher:
    """Downloads an attachment of an authenticated activity for the dispatcher (voice
    messages): ``content.downloadUrl`` when Teams gives one (pre-authenticated), else
    ``contentUrl``. The bot's bearer token goes only to the Bot Framework / Teams hosts
    that need it (and loopback, for tests), never to another host an attachment names;
    https only (http on loopback); at most ``max_bytes``."""

    TOKEN_HOSTS = (".trafficmanager.net", ".botframework.com", ".teams.microsoft.com",
                   ".skype.com")

    def __init__(self, token: Callable[[], str], *, max_bytes: int = 25 * 2**20,
                 timeout_s: float = 20.0) -> None:
        self._token = token
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s

    def __call__(self, attachment: dict[str, Any]) -> bytes:
        import requests

        content = attachment.get("content")
        url = content.get("downloadUrl") if isinstance(content, dict) else None
        url = url if isinstance(url, str) and url else attachment.get("contentUrl")
        if not isinstance(url, str) or not url:
            raise InputError("the attachment has no contentUrl to download")
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        loopback = host in ("127.0.0.1", "localhost", "::1")
        if parts.scheme != "https" and not (parts.scheme == "http" and loopback):
            raise InputError(f"attachment URL scheme {parts.scheme!r}: https only")
        headers = {}
        if loopback or host.endswith(self.TOKEN_HOSTS):
            headers["Authorization"] = f"Bearer {self._token()}"
        with requests.get(url, headers=headers, timeout=self.timeout_s, stream=True,
                          allow_redirects=False) as answer:
            if answer.status_code != 200:
                raise InputError(f"attachment download answered HTTP {answer.status_code}")
            data = bytearray()
            for chunk in answer.iter_content(64 * 1024):
                data += chunk
                if len(data) > self.max_bytes:
                    raise InputError(f"attachment larger than {self.max_bytes} bytes")
        return bytes(data)


def _platform_dispatcher(config: BotConfig, conn_id: str) -> Dispatcher:
    """The platform's command handler; fails loudly when it is not there (a bot that
    silently answered nothing would look healthy)."""
    try:
        from migrationbox.teams.dispatch import MAX_AUDIO_BYTES, CommandDispatcher
    except ImportError as exc:
        raise ConfigurationError(
            "the Teams bot cannot start: migrationbox.teams.dispatch.CommandDispatcher is "
            f"not importable ({exc})") from exc
    from migrationbox.platform.supervisor import airflow_client
    from migrationbox.store.db import resolve_url
    from migrationbox.teams.connector import (
        ClientCredentialsTokenProvider,
        connector_from_connection,
    )


    def client_factory() -> Any:
        return airflow_client(None)  # the platform of the home setting

    tokens = ClientCredentialsTokenProvider(config.token_url, config.app_id,
                                            config.app_secret.get_secret_value(),
                                            config.connector_scope)
    return CommandDispatcher(resolve_url(None), client_factory,
                             sender=connector_from_connection(conn_id),
                             fetch_attachment=AttachmentFetcher(tokens.token,
                                                                max_bytes=MAX_AUDIO_BYTES))


def start_background(conn_id: str, store_url: str,
                     interval_s: float) -> tuple[threading.Thread, threading.Event]:
    """The bot's proactive side, beside the endpoint in the same process: the notifier
    (migration events and incidents to the conversations that follow an estate) and, on
    each of its scans, the approval workflow (cards for gates that started waiting, then
    one tick of the SLA clock: reminders, escalation, emergency auto-approve)."""
    from migrationbox.platform.supervisor import airflow_client
    from migrationbox.teams.approvals import post_waiting_gates, sla_tick
    from migrationbox.teams.connector import connector_from_connection
    from migrationbox.teams.notifier import start_notifier_thread

    sender = connector_from_connection(conn_id)

    def approvals_hook() -> int:
        with airflow_client(None) as client:  # the platform of the home setting
            posted = post_waiting_gates(store_url=store_url, client=client, sender=sender)
            for line in sla_tick(store_url=store_url, client=client, sender=sender,
                                 now=datetime.now(UTC)):
                log.info("approval SLA: %s", line)
        return posted

    return start_notifier_thread(store_url, sender, interval_s,
                                 approvals_hook=approvals_hook)


async def serve(app: web.Application, port: int, stop: asyncio.Event,
                host: str = "127.0.0.1") -> None:
    runner = web.AppRunner(app, access_log=log)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    log.info("Teams bot endpoint listening on http://%s:%d%s", host, port, MESSAGES_PATH)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
        log.info("Teams bot endpoint stopped")


class EndpointThread:
    """Serves an app on 127.0.0.1 (a free port) in a thread with its own event loop: for
    tests and the demo, which need the real HTTP endpoint inside their own process."""

    def __init__(self, app: web.Application) -> None:
        self.app = app
        self.port: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError("EndpointThread is not started")
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> EndpointThread:
        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                runner = web.AppRunner(self.app, access_log=None)
                loop.run_until_complete(runner.setup())
                site = web.TCPSite(runner, "127.0.0.1", 0)
                loop.run_until_complete(site.start())
                self._runner = runner
                server = site._server
                assert server is not None and server.sockets  # type: ignore[attr-defined]
                self.port = int(server.sockets[0].getsockname()[1])  # type: ignore[attr-defined]
            except BaseException as exc:
                self._error = exc
                self._ready.set()
                loop.close()
                return
            self._ready.set()
            loop.run_forever()
            loop.run_until_complete(runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=run, name="teams-endpoint", daemon=True)
        self._thread.start()
        self._ready.wait(30)
        if self._error is not None:
            raise RuntimeError(f"endpoint did not start: {self._error}") from self._error
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=30)
        self._thread = self._loop = None

    def __enter__(self) -> EndpointThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    from migrationbox import settings
    from migrationbox.store.db import resolve_url

    parser = argparse.ArgumentParser(prog="python -m migrationbox.teams.server",
                                     description="Serve the MigrationBox Teams bot endpoint "
                                                 "on 127.0.0.1.")
    parser.add_argument("--port", type=int, default=None,
                        help="port (default: the teams_port setting)")
    parser.add_argument("--conn-id", default=None,
                        help="Airflow connection with the bot's credentials "
                             "(default: the teams_conn_id setting)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stdout,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    port = args.port if args.port is not None else int(settings.get("teams_port"))
    conn_id = args.conn_id or str(settings.get("teams_conn_id"))
    try:
        config = BotConfig.from_connection(conn_id)
        dispatcher = _platform_dispatcher(config, conn_id)
        store_url = resolve_url(None)
    except MigrationBoxError as exc:  # a missing connection, dispatcher or bad URL
        print(f"error: {exc}", file=sys.stderr)
        return 2
    app = build_app(config, dispatcher, store_url=store_url)
    interval = float(settings.get("teams_notify_interval_s"))
    background = start_background(conn_id, store_url, interval) if interval > 0 else None

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await serve(app, port, stop)

    try:
        asyncio.run(run())
    except OSError as exc:
        print(f"error: cannot listen on 127.0.0.1:{port}: {exc}", file=sys.stderr)
        return 1
    finally:
        if background is not None:
            thread, stop_notifier = background
            stop_notifier.set()
            thread.join(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
