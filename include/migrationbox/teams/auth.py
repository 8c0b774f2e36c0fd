"""Inbound authentication of Bot Framework / Entra calls to the bot endpoint.

Teams (through the Bot Connector) calls the bot with ``Authorization: Bearer <JWT>``.
The bot must check, as Microsoft's "Authenticate requests from the Bot Connector
service" describes it:

* the token is RS256-signed by a key from the JWKS named in the OpenID metadata
  (``https://login.botframework.com/v1/.well-known/openidconfiguration``); the key set
  is cached and refetched when it is old or when a token names a key id it does not
  hold (key rotation), but at most every ``min_refresh_seconds`` so that tokens with
  made-up key ids cannot make the bot hammer the metadata endpoint;
* the key is endorsed for the activity's channel (``endorsements`` contains
  ``msteams``), when the key set carries endorsements;
* ``iss`` is an accepted issuer (``https://api.botframework.com``), ``aud`` is the bot's
  app id, ``exp``/``nbf`` hold within a small clock skew (five minutes);
* the ``serviceurl`` claim matches the activity's ``serviceUrl``, so a token issued for
  one channel endpoint cannot be used to make the bot talk to another.

A Bot Framework token is legitimately reused by the channel for many activities during
its hour of life, so "replay" here means presenting the same token with an activity id
already accepted: ``ReplayGuard`` remembers (token, activity id) pairs until the token
expires. The validator never raises: every refusal is an ``AuthResult`` with a reason
(the endpoint answers 401, or 503 when the keys cannot be fetched).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

import jwt
import requests
from pydantic import BaseModel, ConfigDict, Field

from migrationbox.errors import ExternalServiceError

BOTFRAMEWORK_OPENID_METADATA_URL = (
    "https://login.botframework.com/v1/.well-known/openidconfiguration")
BOTFRAMEWORK_ISSUER = "https://api.botframework.com"
ALGORITHM = "RS256"
SERVICE_URL_CLAIM = "serviceurl"
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


class AuthSettings(BaseModel):
    """How the bot checks callers. ``app_id`` is the bot's Entra application (client)
    id; the endpoint reads it from the bot's Airflow connection."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    app_id: str = Field(min_length=1)
    openid_metadata_url: str = BOTFRAMEWORK_OPENID_METADATA_URL
    issuers: tuple[str, ...] = (BOTFRAMEWORK_ISSUER,)
    clock_skew_seconds: float = Field(default=300.0, ge=0, le=900)
    keys_ttl_seconds: float = Field(default=24 * 3600.0, gt=0)
    min_refresh_seconds: float = Field(default=300.0, ge=0)
    http_timeout_seconds: float = Field(default=5.0, gt=0)
    require_endorsement: bool = True
    require_service_url_claim: bool = True
    max_token_chars: int = Field(default=16384, gt=0)


class Refusal(StrEnum):
    MISSING_HEADER = "missing_header"
    MALFORMED_HEADER = "malformed_header"
    MALFORMED_TOKEN = "malformed_token"
    UNSUPPORTED_ALGORITHM = "unsupported_algorithm"
    UNKNOWN_KEY = "unknown_key"
    KEYS_UNAVAILABLE = "keys_unavailable"
    BAD_SIGNATURE = "bad_signature"
    WRONG_ISSUER = "wrong_issuer"
    WRONG_AUDIENCE = "wrong_audience"
    MISSING_CLAIM = "missing_claim"
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    CHANNEL_NOT_ENDORSED = "channel_not_endorsed"
    SERVICE_URL_MISMATCH = "service_url_mismatch"
    REPLAYED = "replayed"
    INVALID_TOKEN = "invalid_token"


class AuthResult(BaseModel):
    ok: bool
    refusal: Refusal | None = None
    detail: str = ""
    claims: dict[str, Any] = Field(default_factory=dict)

    @property
    def status_code(self) -> int:
        """200 when accepted, 503 when the keys could not be fetched, else 401."""
        if self.ok:
            return 200
        return 503 if self.refusal == Refusal.KEYS_UNAVAILABLE else 401


def _refuse(refusal: Refusal, detail: str) -> AuthResult:
    return AuthResult(ok=False, refusal=refusal, detail=detail)


class KeysUnavailable(ExternalServiceError):
    """The OpenID metadata or the JWKS could not be fetched or read."""


def _check_url(url: str, what: str) -> str:
    parts = urlsplit(url)
    if parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in _LOOPBACK):
        return url
    raise KeysUnavailable(f"{what} {url!r} must be https (plain http only on loopback)")


class SigningKey(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)

    kid: str
    key: Any
    endorsements: tuple[str, ...] | None = None


class KeySource:
    """The signing keys named by an OpenID metadata document, cached.

    Refreshed when older than ``keys_ttl_seconds``, or when a token names an unknown key
    id and the last fetch is at least ``min_refresh_seconds`` old. A refresh replaces the
    whole set, so retired keys stop being accepted. If a refresh fails while keys are
    cached, the cached keys stay in use (the channel keeps working through a metadata
    outage); with no keys at all, ``KeysUnavailable`` is raised.
    """

    def __init__(self, settings: AuthSettings, *, clock: Callable[[], float] = time.time,
                 session: requests.Session | None = None) -> None:
        self._settings = settings
        self._clock = clock
        self._session = session or requests.Session()
        self._lock = threading.Lock()
        self._keys: dict[str, SigningKey] = {}
        self._fetched_at: float | None = None
        self._attempted_at: float | None = None
        self.fetches = 0

    def _get_json(self, url: str, what: str) -> dict[str, Any]:
        _check_url(url, what)
        try:
            response = self._session.get(url, timeout=self._settings.http_timeout_seconds)
            response.raise_for_status()
            document = response.json()
        except (requests.RequestException, ValueError) as exc:
            raise KeysUnavailable(f"{what} {url}: {type(exc).__name__}: {exc}") from exc
        if not isinstance(document, dict):
            raise KeysUnavailable(f"{what} {url} is not a JSON object")
        return document

    def _fetch(self) -> dict[str, SigningKey]:
        metadata = self._get_json(self._settings.openid_metadata_url, "OpenID metadata")
        jwks_uri = metadata.get("jwks_uri")
        if not isinstance(jwks_uri, str):
            raise KeysUnavailable(f"OpenID metadata {self._settings.openid_metadata_url} "
                                  "has no jwks_uri")
        algs = metadata.get("id_token_signing_alg_values_supported")
        if isinstance(algs, list) and ALGORITHM not in algs:
            raise KeysUnavailable(f"OpenID metadata does not offer {ALGORITHM}")
        jwks = self._get_json(jwks_uri, "JWKS")
        keys: dict[str, SigningKey] = {}
        for entry in jwks.get("keys") or []:
            if not isinstance(entry, dict) or entry.get("kty") != "RSA":
                continue
            kid = entry.get("kid")
            if not isinstance(kid, str) or entry.get("use", "sig") != "sig":
                continue
            try:
                key = jwt.PyJWK(entry, algorithm=ALGORITHM).key
            except jwt.PyJWTError:
                continue
            endorsements = entry.get("endorsements")
            keys[kid] = SigningKey(
                kid=kid, key=key,
                endorsements=tuple(str(e) for e in endorsements)
                if isinstance(endorsements, list) else None)
        if not keys:
            raise KeysUnavailable(f"JWKS {jwks_uri} holds no usable RSA signing key")
        return keys

    def _refresh(self) -> None:
        self._attempted_at = self._clock()
        self.fetches += 1
        try:
            keys = self._fetch()
        except KeysUnavailable:
            if not self._keys:
                raise
            return
        self._keys = keys
        self._fetched_at = self._attempted_at

    def get(self, kid: str) -> SigningKey | None:
        with self._lock:
            now = self._clock()
            stale = (self._fetched_at is None
                     or now - self._fetched_at > self._settings.keys_ttl_seconds)
            may_retry = (self._attempted_at is None
                         or now - self._attempted_at >= self._settings.min_refresh_seconds)
            if (stale or kid not in self._keys) and may_retry:
                self._refresh()
            elif not self._keys:
                raise KeysUnavailable("no signing keys: the last fetch failed; next try "
                                      f"after {self._settings.min_refresh_seconds:g} s")
            return self._keys.get(kid)


class ReplayGuard:
    """Remembers accepted (token, activity id) pairs until the token expires."""

    def __init__(self, max_entries: int = 100_000, purge_every_seconds: float = 60.0) -> None:
        self._seen: OrderedDict[tuple[str, str], float] = OrderedDict()
        self._max = max_entries
        self._purge_every = purge_every_seconds
        self._purged_at = float("-inf")
        self._lock = threading.Lock()

    def first_use(self, token: str, activity_id: str, expires_at: float, now: float) -> bool:
        digest = hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()
        key = (digest, activity_id)
        with self._lock:
            if now - self._purged_at >= self._purge_every:  # not on every call: O(n)
                for old in [k for k, exp in self._seen.items() if exp < now]:
                    del self._seen[old]
                self._purged_at = now
            if key in self._seen:  # an expired token never gets this far
                return False
            self._seen[key] = expires_at
            while len(self._seen) > self._max:
                self._seen.popitem(last=False)
            return True


def _same_service_url(claim: str, activity: str) -> bool:
    a, b = urlsplit(claim.strip()), urlsplit(activity.strip())
    return (a.scheme.lower(), (a.netloc or "").lower(), a.path.rstrip("/")) == (
        b.scheme.lower(), (b.netloc or "").lower(), b.path.rstrip("/"))


class BotTokenValidator:
    """Checks the Authorization header of one inbound activity. Never raises."""

    def __init__(self, settings: AuthSettings, *, keys: KeySource | None = None,
                 replay: ReplayGuard | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.clock = clock
        self.keys = keys or KeySource(settings, clock=clock)
        self.replay = replay or ReplayGuard()

    def validate(self, authorization: object, *, service_url: str | None = None,
                 channel_id: str | None = None, activity_id: str | None = None
                 ) -> AuthResult:
        try:
            return self._validate(authorization, service_url, channel_id, activity_id)
        except Exception as exc:  # the endpoint must answer 401, never 500
            return _refuse(Refusal.INVALID_TOKEN, f"{type(exc).__name__}")

    def _validate(self, authorization: object, service_url: str | None,
                  channel_id: str | None, activity_id: str | None) -> AuthResult:
        s = self.settings
        if authorization is None or authorization == "":
            return _refuse(Refusal.MISSING_HEADER, "no Authorization header")
        if not isinstance(authorization, str):
            return _refuse(Refusal.MALFORMED_HEADER, "Authorization header is not text")
        parts = authorization.split(" ")
        if len(parts) != 2 or parts[0].lower() != "bearer" or not parts[1]:
            return _refuse(Refusal.MALFORMED_HEADER, "expected 'Bearer <token>'")
        token = parts[1]
        if len(token) > s.max_token_chars:
            return _refuse(Refusal.MALFORMED_TOKEN, f"token longer than {s.max_token_chars}")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            return _refuse(Refusal.MALFORMED_TOKEN, f"unreadable token header: {exc}")
        if header.get("alg") != ALGORITHM:
            return _refuse(Refusal.UNSUPPORTED_ALGORITHM,
                           f"alg {str(header.get('alg'))[:20]!r}, only {ALGORITHM}")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            return _refuse(Refusal.UNKNOWN_KEY, "token names no key id")
        try:
            signing = self.keys.get(kid)
        except KeysUnavailable as exc:
            return _refuse(Refusal.KEYS_UNAVAILABLE, str(exc))
        if signing is None:
            return _refuse(Refusal.UNKNOWN_KEY, f"key id {kid[:64]!r} not in the JWKS")
        try:
            claims = jwt.decode(
                token, signing.key, algorithms=[ALGORITHM], audience=s.app_id,
                issuer=list(s.issuers),
                options={"verify_exp": False, "verify_nbf": False, "verify_iat": False,
                         "require": ["exp", "iss", "aud"]})
        except jwt.InvalidSignatureError:
            return _refuse(Refusal.BAD_SIGNATURE, "signature does not verify")
        except jwt.InvalidAudienceError:
            return _refuse(Refusal.WRONG_AUDIENCE, "aud is not this bot's app id")
        except jwt.InvalidIssuerError:
            return _refuse(Refusal.WRONG_ISSUER, "iss is not an accepted issuer")
        except jwt.MissingRequiredClaimError as exc:
            return _refuse(Refusal.MISSING_CLAIM, str(exc))
        except jwt.DecodeError as exc:
            return _refuse(Refusal.MALFORMED_TOKEN, str(exc)[:200])
        except jwt.PyJWTError as exc:
            return _refuse(Refusal.INVALID_TOKEN, f"{type(exc).__name__}: {str(exc)[:200]}")

        now = self.clock()
        exp, nbf = claims.get("exp"), claims.get("nbf")
        if isinstance(exp, bool) or not isinstance(exp, int | float):
            return _refuse(Refusal.MISSING_CLAIM, "exp is not a number")
        if now > exp + s.clock_skew_seconds:
            return _refuse(Refusal.EXPIRED, "token expired")
        if nbf is not None:
            if isinstance(nbf, bool) or not isinstance(nbf, int | float):
                return _refuse(Refusal.MISSING_CLAIM, "nbf is not a number")
            if now + s.clock_skew_seconds < nbf:
                return _refuse(Refusal.NOT_YET_VALID, "token not valid yet")
        if s.require_endorsement and signing.endorsements is not None and (
                channel_id is None or channel_id not in signing.endorsements):
            return _refuse(Refusal.CHANNEL_NOT_ENDORSED,
                           f"key {kid[:64]!r} is not endorsed for channel {channel_id!r}")
        if service_url is not None and s.require_service_url_claim:
            claim = claims.get(SERVICE_URL_CLAIM)
            if not isinstance(claim, str):
                return _refuse(Refusal.MISSING_CLAIM, "token has no serviceurl claim")
            if not _same_service_url(claim, service_url):
                return _refuse(Refusal.SERVICE_URL_MISMATCH,
                               "serviceurl claim does not match the activity's serviceUrl")
        if activity_id is not None and not self.replay.first_use(
                token, activity_id, float(exp) + s.clock_skew_seconds, now):
            return _refuse(Refusal.REPLAYED,
                           f"activity {activity_id[:64]!r} already accepted with this token")
        return AuthResult(ok=True, detail="accepted", claims=claims)
