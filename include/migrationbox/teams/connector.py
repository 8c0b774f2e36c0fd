"""The bot's outbound side: proactive messages through the Bot Connector REST API v3.

``BotConnectorClient`` implements ``contracts.Sender``: ``send`` posts a message activity
to ``{serviceUrl}/v3/conversations/{conversationId}/activities`` and returns the id of the
``ResourceResponse``; ``update`` PUTs ``.../activities/{activityId}`` (an approval card
replaced once it is answered); ``create_conversation`` POSTs ``/v3/conversations`` (a
personal chat with an approver the bot has not talked to in that conversation yet).

Why not the Agents SDK's ``ConnectorClient``: (checked in microsoft-agents-hosting-core
1.9.0, ``connector/client/connector_client.py``) it turns every answer other than
200/201/202 into an exception at once, so a 429 or a 503 is never retried and
``Retry-After`` is never read; it is asyncio/aiohttp while the notifier and the command
handler run in worker threads; and it puts the conversation id into the path without
escaping it (Teams ids carry ``:``, ``@`` and ``;``). The retry policy this module needs
is the point of the module, so the client is a small synchronous httpx one:

* 429, 5xx and connection errors are retried up to ``max_attempts`` in all;
  ``Retry-After`` (delay-seconds or an HTTP date) is honoured, capped at
  ``max_retry_after_s``; without it the wait is exponential with jitter;
* other 4xx answers are not retried (the same request cannot succeed later), except
  one 401, after which the bearer token is fetched again (a token revoked early);
* giving up raises ``NotificationDeliveryError`` naming the conversation, the last
  status and the attempts, with the connector's own error message.

The serviceUrl comes from the stored ``ConversationRef`` (Teams hands it over with each
inbound activity); only ``https`` ones are used, or ``http`` on a loopback host (the
test stub), so a stored reference can never send the bearer token elsewhere in clear.
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Protocol
from urllib.parse import quote, urlsplit

import httpx

from migrationbox.errors import ConfigurationError, ExternalServiceError, InputError
from migrationbox.teams.cards import card_attachment
from migrationbox.teams.contracts import ConversationRef, Reply

log = logging.getLogger(__name__)

#: The OAuth2 scope of the Bot Connector service (client-credentials flow).
CONNECTOR_SCOPE = "https://api.botframework.com/.default"
#: Where a multi-tenant bot gets its connector token (Microsoft's published endpoint).
DEFAULT_TOKEN_URL = "https://login.microsoftonline.com/botframework.com/oauth2/v2.0/token"
_LOOPBACK_HOSTS = {"127.0.0.1", "::1", "localhost"}
_RETRYABLE_STATUS = {429, 500, 502, 503, 504}
_BODY_EXCERPT = 300


class TokenProvider(Protocol):
    """Hands out the bearer token for the Bot Connector; may cache it."""

    def token(self) -> str: ...


class TokenError(ExternalServiceError):
    """The token endpoint did not give a token. ``retryable`` is False when it refused
    the credentials (a wrong secret does not get right by waiting)."""

    def __init__(self, message: str, *, status: int | None = None,
                 retryable: bool = True) -> None:
        super().__init__(message)
        self.status = status
        self.retryable = retryable


class NotificationDeliveryError(ExternalServiceError):
    """The Bot Connector did not take an activity; the message names the conversation,
    the last HTTP status (None: no answer at all) and how many attempts were made."""

    def __init__(self, message: str, *, conversation_id: str, status: int | None,
                 attempts: int, retryable: bool) -> None:
        super().__init__(message)
        self.conversation_id = conversation_id
        self.status = status
        self.attempts = attempts
        #: True when it gave up on a transient failure (a later scan may try again).
        self.retryable = retryable


@dataclass(frozen=True)
class Delivery:
    """What one send or update came to: the activity id and the attempts it took."""

    activity_id: str
    attempts: int


# ---------------------------------------------------------------------------- tokens


class ClientCredentialsTokenProvider:
    """OAuth2 client-credentials tokens for the bot's app id, cached until shortly
    before they expire, thread-safe (the notifier and the command handler share one).

    A plain form POST with httpx rather than msal's ``ConfidentialClientApplication``:
    msal accepts only an ``https`` authority with a tenant path and runs OpenID
    discovery against it (``msal.authority.canonicalize``), so it cannot be pointed at
    the loopback token endpoint the tests and the demo use; the flow itself is one
    request (RFC 6749 section 4.4) and the answer's ``expires_in`` is all the cache needs.
    """

    def __init__(self, token_url: str, app_id: str, secret: str,
                 scope: str = CONNECTOR_SCOPE, *, timeout_s: float = 10.0,
                 refresh_margin_s: float = 300.0,
                 clock: Callable[[], float] = time.monotonic,
                 transport: httpx.BaseTransport | None = None) -> None:
        _require_safe_url(token_url, "connector token URL")
        if not app_id.strip():
            raise ConfigurationError("Bot Connector token: the app id (connection login) "
                                     "is empty")
        if not secret:
            raise ConfigurationError(f"Bot Connector token: the client secret for app "
                                     f"{app_id!r} (connection password) is empty")
        self.token_url = token_url
        self.app_id = app_id
        self.scope = scope
        self._secret = secret
        self._timeout_s = timeout_s
        self._margin_s = refresh_margin_s
        self._clock = clock
        self._transport = transport
        self._lock = threading.Lock()
        self._token: str | None = None
        self._refresh_at = 0.0
        #: How many tokens were fetched (a figure for tests and the health page).
        self.fetches = 0

    def invalidate(self) -> None:
        """Forget the cached token (the connector answered 401 with it)."""
        with self._lock:
            self._token = None

    def token(self) -> str:
        with self._lock:
            if self._token is not None and self._clock() < self._refresh_at:
                return self._token
            token, lifetime = self._fetch()
            # refresh before expiry: the margin, but never more than half the lifetime
            # (a short-lived token would otherwise be fetched on every call)
            self._refresh_at = self._clock() + lifetime - min(self._margin_s, lifetime / 2)
            self._token = token
            return token

    def _fetch(self) -> tuple[str, float]:
        form = {"grant_type": "client_credentials", "client_id": self.app_id,
                "client_secret": self._secret, "scope": self.scope}
        try:
            with httpx.Client(timeout=self._timeout_s, transport=self._transport) as http:
                answer = http.post(self.token_url, data=form,
                                   headers={"Accept": "application/json"})
        except httpx.HTTPError as exc:
            raise TokenError(f"Bot Connector token: no answer from {self.token_url}: "
                             f"{type(exc).__name__}: {exc}") from exc
        self.fetches += 1
        if answer.status_code != 200:
            raise TokenError(
                f"Bot Connector token: {self.token_url} answered {answer.status_code} "
                f"for app {self.app_id!r}: {_oauth_error(answer)}",
                status=answer.status_code,
                retryable=answer.status_code in _RETRYABLE_STATUS)
        try:
            body = answer.json()
            token = str(body["access_token"])
            lifetime = float(body.get("expires_in", 3600))
        except (ValueError, KeyError, TypeError) as exc:
            raise TokenError(f"Bot Connector token: {self.token_url} answered 200 without "
                             f"a usable access_token/expires_in ({exc})",
                             retryable=False) from exc
        if not token or not math.isfinite(lifetime) or lifetime <= 0:
            raise TokenError(f"Bot Connector token: {self.token_url} answered an empty "
                             f"token or a lifetime of {lifetime}", retryable=False)
        return token, lifetime


def _oauth_error(answer: httpx.Response) -> str:
    """The token endpoint's ``error``/``error_description`` (never the request)."""
    try:
        body = answer.json()
    except ValueError:
        return answer.text[:_BODY_EXCERPT] or answer.reason_phrase
    if isinstance(body, dict) and body.get("error"):
        return f"{body['error']}: {str(body.get('error_description', ''))[:_BODY_EXCERPT]}"
    return str(body)[:_BODY_EXCERPT]


# ---------------------------------------------------------------------------- retries


def parse_retry_after(value: str | None, *, now: datetime | None = None,
                      cap_s: float = 60.0) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (RFC 9110 section 10.2.3): a
    non-negative number of seconds or an HTTP date; capped at ``cap_s`` and never
    negative (a date in the past means now). None when absent or unreadable, so the
    caller falls back to its own backoff rather than trusting garbage."""
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if text.isascii() and text.isdigit():
        return min(float(int(text)), cap_s)
    try:
        seconds = float(text)  # not in the RFC, but some gateways send "1.5"
    except ValueError:
        seconds = None
    if seconds is not None:
        return min(seconds, cap_s) if math.isfinite(seconds) and seconds >= 0 else None
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:  # an HTTP date is always GMT
        when = when.replace(tzinfo=UTC)
    delta = (when - (now or datetime.now(UTC))).total_seconds()
    return min(max(delta, 0.0), cap_s)


def backoff_delay(attempt: int, *, base_s: float = 0.5, cap_s: float = 30.0,
                  rand: Callable[[], float] = random.random) -> float:
    """Wait after failed attempt ``attempt`` (1-based): exponential, capped, with the
    upper half jittered so several notifiers hitting one throttle spread out."""
    ceiling = min(cap_s, base_s * 2 ** max(0, attempt - 1))
    return ceiling / 2 + rand() * ceiling / 2


def _require_safe_url(url: str, what: str) -> None:
    """https anywhere, http only on loopback: the bearer token or the client secret is
    sent with every request to these URLs."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError as exc:
        raise InputError(f"{what} {url!r} is not a URL: {exc}") from exc
    if not host or parts.username is not None or parts.password is not None:
        raise InputError(f"{what} {url!r} must be an https URL with a host and no "
                         f"user name")
    if parts.query or parts.fragment or "?" in url or "#" in url:
        # the API's path is appended to it: a query would swallow it
        raise InputError(f"{what} {url!r} must not carry a query or fragment")
    if parts.scheme == "https" or (parts.scheme == "http" and host in _LOOPBACK_HOSTS):
        return
    raise InputError(f"{what} {url!r}: only https is used (http only on a loopback host), "
                     f"so the bearer token never travels in clear")


def activity_for(ref: ConversationRef, reply: Reply) -> dict[str, Any]:
    """The message activity the connector takes for ``reply`` (swagger ``Activity``)."""
    if not reply.text and reply.card is None:
        raise InputError(f"conversation {ref.conversation_id}: a message needs text or a "
                         f"card")
    conversation: dict[str, Any] = {"id": ref.conversation_id, "isGroup": ref.is_group}
    if ref.conversation_type:
        conversation["conversationType"] = ref.conversation_type
    if ref.tenant_id:
        conversation["tenantId"] = ref.tenant_id
    sender: dict[str, Any] = {"id": ref.bot_id}
    if ref.bot_name:
        sender["name"] = ref.bot_name
    activity: dict[str, Any] = {"type": "message", "from": sender,
                                "conversation": conversation, "channelId": ref.channel_id,
                                "serviceUrl": ref.service_url}
    if reply.text:
        activity["text"] = reply.text
        activity["textFormat"] = "markdown"
    if reply.card is not None:
        activity["attachments"] = [card_attachment(reply.card)]
    if ref.tenant_id:  # Teams routes proactive messages in a tenant by this
        activity["channelData"] = {"tenant": {"id": ref.tenant_id}}
    return activity


# ---------------------------------------------------------------------------- client


class BotConnectorClient:
    """``Sender`` over the Bot Connector REST API v3 with the retry policy above.

    ``sleep``, ``now`` and ``rand`` are injectable so tests run the policy without
    waiting; ``transport`` lets a test hand in an httpx transport (a real loopback
    server is what the module's tests use)."""

    def __init__(self, service_token_provider: TokenProvider, *, max_attempts: int = 5,
                 timeout_s: float = 10.0, max_retry_after_s: float = 60.0,
                 backoff_base_s: float = 0.5, backoff_cap_s: float = 30.0,
                 sleep: Callable[[float], None] = time.sleep,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC),
                 rand: Callable[[], float] = random.random,
                 transport: httpx.BaseTransport | None = None) -> None:
        if max_attempts < 1:
            raise ConfigurationError(f"BotConnectorClient: max_attempts must be >= 1, got "
                                     f"{max_attempts}")
        if timeout_s <= 0:
            raise ConfigurationError(f"BotConnectorClient: timeout_s must be > 0, got "
                                     f"{timeout_s}")
        self.tokens = service_token_provider
        self.max_attempts = max_attempts
        self.max_retry_after_s = max_retry_after_s
        self._backoff = (backoff_base_s, backoff_cap_s)
        self._sleep = sleep
        self._now = now
        self._rand = rand
        self._http = httpx.Client(timeout=timeout_s, transport=transport)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> BotConnectorClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- Sender ---------------------------------------------------------------------

    def send(self, ref: ConversationRef, reply: Reply) -> str:
        return self.deliver(ref, reply).activity_id

    def update(self, ref: ConversationRef, activity_id: str, reply: Reply) -> None:
        if not activity_id:
            raise InputError(f"conversation {ref.conversation_id}: no activity id to "
                             f"update")
        body = {**activity_for(ref, reply), "id": activity_id}
        self._call("PUT", ref, f"/activities/{quote(activity_id, safe='')}", body)

    # -- beyond the protocol -------------------------------------------------------------

    def deliver(self, ref: ConversationRef, reply: Reply) -> Delivery:
        """``send``, also saying how many attempts it took (the notifier records it)."""
        answer, attempts = self._call("POST", ref, "/activities", activity_for(ref, reply))
        activity_id = str(answer.get("id") or "")
        if not activity_id:
            # Teams always answers an id; without one the message cannot be updated later
            log.warning("Bot Connector accepted a message to %s without an activity id",
                        ref.conversation_id)
        return Delivery(activity_id, attempts)

    def create_conversation(self, *, service_url: str, bot_id: str, member_id: str,
                            tenant_id: str | None = None,
                            reply: Reply | None = None) -> ConversationRef:
        """Open (or find) the personal chat between the bot and ``member_id`` and return
        its reference; with ``reply`` the first message is sent with it."""
        params: dict[str, Any] = {"isGroup": False, "bot": {"id": bot_id},
                                  "members": [{"id": member_id}]}
        if tenant_id:
            params["tenantId"] = tenant_id
            params["channelData"] = {"tenant": {"id": tenant_id}}
        ref = ConversationRef(conversation_id="(new)", service_url=service_url,
                              bot_id=bot_id, tenant_id=tenant_id,
                              conversation_type="personal")
        if reply is not None:
            activity = activity_for(ref, reply)
            activity.pop("conversation")
            params["activity"] = activity
        answer, _ = self._call("POST", ref, "", params, conversations_root=True)
        conversation_id = str(answer.get("id") or "")
        if not conversation_id:
            raise NotificationDeliveryError(
                f"Bot Connector at {service_url} created a conversation with {member_id} "
                f"but answered no id", conversation_id="(new)", status=None, attempts=1,
                retryable=False)
        return ref.model_copy(update={
            "conversation_id": conversation_id,
            "service_url": str(answer.get("serviceUrl") or service_url)})

    # -- the retry loop ----------------------------------------------------------------

    def _url(self, ref: ConversationRef, suffix: str, conversations_root: bool) -> str:
        _require_safe_url(ref.service_url, f"conversation {ref.conversation_id}: serviceUrl")
        root = ref.service_url.rstrip("/") + "/v3/conversations"
        if conversations_root:
            return root
        return f"{root}/{quote(ref.conversation_id, safe='')}{suffix}"

    def _call(self, method: str, ref: ConversationRef, suffix: str, body: dict[str, Any],
              *, conversations_root: bool = False) -> tuple[dict[str, Any], int]:
        url = self._url(ref, suffix, conversations_root)
        who = ref.conversation_id
        reauthorised = False
        last = "no attempt made"
        status: int | None = None
        for attempt in range(1, self.max_attempts + 1):
            wait: float | None = None
            try:
                token = self.tokens.token()
            except TokenError as exc:
                if not exc.retryable:
                    raise NotificationDeliveryError(
                        f"Bot Connector: no token to post to conversation {who}: {exc}",
                        conversation_id=who, status=exc.status, attempts=attempt,
                        retryable=False) from exc
                status, last = exc.status, str(exc)
            else:
                try:
                    answer = self._http.request(
                        method, url, json=body,
                        headers={"Authorization": f"Bearer {token}",
                                 "Accept": "application/json"})
                except httpx.HTTPError as exc:
                    status, last = None, f"no answer: {type(exc).__name__}: {exc}"
                else:
                    status = answer.status_code
                    if 200 <= status < 300:
                        return _json_object(answer), attempt
                    last = f"{status} {answer.reason_phrase}: {_connector_error(answer)}"
                    if status == 401 and not reauthorised and hasattr(self.tokens,
                                                                      "invalidate"):
                        reauthorised = True  # one fresh token, at once
                        self.tokens.invalidate()
                        wait = 0.0
                    elif status not in _RETRYABLE_STATUS:
                        raise NotificationDeliveryError(
                            f"Bot Connector refused {method} to conversation {who}: "
                            f"{last} (not retried: the same request cannot succeed later)",
                            conversation_id=who, status=status, attempts=attempt,
                            retryable=False)
                    else:
                        wait = parse_retry_after(answer.headers.get("Retry-After"),
                                                 now=self._now(),
                                                 cap_s=self.max_retry_after_s)
            if attempt == self.max_attempts:
                break
            if wait is None:
                wait = backoff_delay(attempt, base_s=self._backoff[0],
                                     cap_s=self._backoff[1], rand=self._rand)
            log.info("Bot Connector %s to %s failed (attempt %d of %d: %s); retrying in "
                     "%.2f s", method, who, attempt, self.max_attempts, last, wait)
            self._sleep(wait)
        raise NotificationDeliveryError(
            f"Bot Connector: gave up on {method} to conversation {who} after "
            f"{self.max_attempts} attempt(s); last: {last}",
            conversation_id=who, status=status, attempts=self.max_attempts, retryable=True)


def _json_object(answer: httpx.Response) -> dict[str, Any]:
    if not answer.content:
        return {}
    try:
        body = answer.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _connector_error(answer: httpx.Response) -> str:
    """The connector's ``ErrorResponse`` message (swagger: ``error.code``/``message``)."""
    try:
        body = answer.json()
    except ValueError:
        return answer.text[:_BODY_EXCERPT] or "(empty body)"
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return f"{error.get('code', '?')}: {str(error.get('message', ''))[:_BODY_EXCERPT]}"
    return str(body)[:_BODY_EXCERPT]


# ---------------------------------------------------------------------------- wiring


def connector_from_connection(conn_id: str | None = None, **client_options: Any
                              ) -> BotConnectorClient:
    """The client for the bot's Airflow connection (``teams_conn_id`` by default):
    login = the bot's app id, password = its client secret, extra
    ``connector_token_url`` (default: the tenant's Entra token endpoint when ``tenant_id``
    is set, Microsoft's multi-tenant one otherwise) and optional ``connector_scope``."""
    from migrationbox import settings

    name = conn_id or str(settings.get("teams_conn_id"))
    try:
        from airflow.sdk import Connection

        conn = Connection.get(name)
    except Exception as exc:  # AirflowNotFoundException and backend errors alike
        raise ConfigurationError(
            f"Teams bot: the Airflow connection {name!r} (login = app id, password = "
            f"client secret) is not available: {exc}") from exc
    extra = conn.extra_dejson or {}
    if not isinstance(extra, dict):
        raise ConfigurationError(f"Teams bot: connection {name!r}: extra must be a JSON "
                                 f"object")
    # the same default as the endpoint's BotConfig.token_url, so replies and proactive
    # messages get their tokens from one place: the tenant's for a single-tenant bot
    tenant = extra.get("tenant_id")
    default_url = (f"https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token"
                   if isinstance(tenant, str) and tenant.strip() else DEFAULT_TOKEN_URL)
    try:
        tokens = ClientCredentialsTokenProvider(
            str(extra.get("connector_token_url") or default_url),
            conn.login or "", conn.password or "",
            str(extra.get("connector_scope") or CONNECTOR_SCOPE))
    except InputError as exc:  # a bad URL in the connection is a configuration error
        raise ConfigurationError(f"Teams bot: connection {name!r}: {exc}") from exc
    return BotConnectorClient(tokens, **client_options)
