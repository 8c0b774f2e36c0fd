"""Inbound bot-token validation against keys published by a real loopback OpenID/JWKS
server: good tokens pass; forged, tampered, expired, early, wrong-audience,
wrong-issuer, unknown-key, unendorsed, wrong-serviceUrl and replayed ones are refused
with a reason; key rotation, caching and a metadata outage behave."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator

import jwt
import pytest

from migrationbox.teams.auth import (
    AuthSettings,
    BotTokenValidator,
    KeySource,
    Refusal,
)
from migrationbox.teams.testing import SERVICE_URL, JwksServer, bot_claims, make_key

APP_ID = "6f1b3c2a-0d7e-4c1f-9a55-1234567890ab"
NOW = 1_800_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def keys() -> dict[str, object]:
    return {"k1": make_key("k1"), "k2": make_key("k2"), "evil": make_key("k1")}


@pytest.fixture
def server(keys: dict) -> Iterator[JwksServer]:
    with JwksServer(keys=[keys["k1"]]) as srv:
        yield srv


@pytest.fixture
def clock() -> Clock:
    return Clock()


def validator_for(server: JwksServer, clock: Clock, **overrides) -> BotTokenValidator:
    settings = AuthSettings(app_id=APP_ID, openid_metadata_url=server.metadata_url,
                            min_refresh_seconds=60, **overrides)
    return BotTokenValidator(settings, clock=clock)


def check(validator: BotTokenValidator, token: str, *, activity_id: str | None = "a-1",
          service_url: str = SERVICE_URL, channel_id: str = "msteams"):
    return validator.validate(f"Bearer {token}", service_url=service_url,
                              channel_id=channel_id, activity_id=activity_id)


def test_a_good_token_is_accepted(server, keys, clock) -> None:
    v = validator_for(server, clock)
    result = check(v, keys["k1"].sign(bot_claims(APP_ID, now=NOW)))
    assert result.ok and result.status_code == 200 and result.refusal is None
    assert result.claims["aud"] == APP_ID
    # a service URL written with a different case or without the trailing slash matches
    other = check(v, keys["k1"].sign(bot_claims(APP_ID, now=NOW)), activity_id="a-2",
                  service_url="https://SMBA.trafficmanager.net/emea")
    assert other.ok


@pytest.mark.parametrize(("make", "refusal"), [
    # signed by another key that claims the published key's id
    (lambda k: k["evil"].sign(bot_claims(APP_ID, now=NOW)), Refusal.BAD_SIGNATURE),
    (lambda k: k["k1"].sign(bot_claims(APP_ID, now=NOW - 4000)), Refusal.EXPIRED),
    (lambda k: k["k1"].sign(bot_claims(APP_ID, now=NOW + 1000)), Refusal.NOT_YET_VALID),
    (lambda k: k["k1"].sign(bot_claims("another-bot", now=NOW)), Refusal.WRONG_AUDIENCE),
    (lambda k: k["k1"].sign(bot_claims(APP_ID, now=NOW,
                                       issuer="https://evil.example")), Refusal.WRONG_ISSUER),
    (lambda k: k["k2"].sign(bot_claims(APP_ID, now=NOW)), Refusal.UNKNOWN_KEY),
    (lambda k: k["k1"].sign(bot_claims(APP_ID, now=NOW,
                                       service_url="https://evil.example/")),
     Refusal.SERVICE_URL_MISMATCH),
    (lambda k: k["k1"].sign({"iss": "https://api.botframework.com", "aud": APP_ID,
                             "serviceurl": SERVICE_URL}), Refusal.MISSING_CLAIM),
    (lambda k: k["k1"].sign(bot_claims(APP_ID, now=NOW, exp="tomorrow")),
     Refusal.MISSING_CLAIM),
    (lambda k: jwt.encode(bot_claims(APP_ID, now=NOW), "s" * 32, algorithm="HS256",
                          headers={"kid": "k1"}), Refusal.UNSUPPORTED_ALGORITHM),
    (lambda k: jwt.encode(bot_claims(APP_ID, now=NOW), None, algorithm="none",
                          headers={"kid": "k1"}), Refusal.UNSUPPORTED_ALGORITHM),
    (lambda k: "not.a.token", Refusal.MALFORMED_TOKEN),
])
def test_bad_tokens_are_refused_with_a_reason(server, keys, clock, make, refusal) -> None:
    result = check(validator_for(server, clock), make(keys))
    assert not result.ok
    assert result.refusal == refusal, result.detail
    assert result.status_code == 401 and result.detail


def test_a_tampered_payload_breaks_the_signature(server, keys, clock) -> None:
    header, payload, signature = keys["k1"].sign(bot_claims("another-bot", now=NOW)).split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["aud"] = APP_ID
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    result = check(validator_for(server, clock), f"{header}.{forged}.{signature}")
    assert result.refusal == Refusal.BAD_SIGNATURE


def test_clock_skew_is_allowed_up_to_five_minutes(server, keys, clock) -> None:
    v = validator_for(server, clock)
    token = keys["k1"].sign(bot_claims(APP_ID, now=NOW - 3600, lifetime=3600))
    clock.now = NOW + 299
    assert check(v, token, activity_id="in-skew").ok
    clock.now = NOW + 301
    assert check(v, token, activity_id="past-skew").refusal == Refusal.EXPIRED


def test_a_replayed_activity_is_refused_but_the_token_serves_other_activities(
        server, keys, clock) -> None:
    v = validator_for(server, clock)
    token = keys["k1"].sign(bot_claims(APP_ID, now=NOW))
    assert check(v, token, activity_id="act-1").ok
    again = check(v, token, activity_id="act-1")
    assert (again.ok, again.refusal) == (False, Refusal.REPLAYED)
    assert check(v, token, activity_id="act-2").ok


def test_keys_are_endorsed_per_channel(server, keys, clock) -> None:
    v = validator_for(server, clock)
    token = keys["k1"].sign(bot_claims(APP_ID, now=NOW))
    assert check(v, token, channel_id="webchat").refusal == Refusal.CHANNEL_NOT_ENDORSED
    assert check(v, token, channel_id="msteams").ok


def test_headers_that_are_not_bearer_tokens(server, clock) -> None:
    v = validator_for(server, clock)
    assert v.validate(None).refusal == Refusal.MISSING_HEADER
    assert v.validate("").refusal == Refusal.MISSING_HEADER
    assert v.validate("Basic dXNlcjpwdw==").refusal == Refusal.MALFORMED_HEADER
    assert v.validate("Bearer").refusal == Refusal.MALFORMED_HEADER
    assert v.validate("Bearer a b").refusal == Refusal.MALFORMED_HEADER
    assert v.validate(b"Bearer x").refusal == Refusal.MALFORMED_HEADER
    assert v.validate("Bearer " + "a" * 20000).refusal == Refusal.MALFORMED_TOKEN
    assert server.hits == {}  # none of these needed the keys


def test_keys_are_cached_and_unknown_key_ids_cannot_force_refetches(
        server, keys, clock) -> None:
    v = validator_for(server, clock)
    for n in range(3):
        assert check(v, keys["k1"].sign(bot_claims(APP_ID, now=NOW)), activity_id=f"c{n}").ok
    assert server.hits == {"/openid": 1, "/keys": 1}
    for n in range(3):
        bogus = keys["k1"].sign(bot_claims(APP_ID, now=NOW), kid=f"made-up-{n}")
        assert check(v, bogus).refusal == Refusal.UNKNOWN_KEY
    assert server.hits == {"/openid": 1, "/keys": 1}  # within min_refresh_seconds
    clock.now += 61
    assert check(v, keys["k1"].sign(bot_claims(APP_ID, now=clock.now), kid="x")).refusal \
        == Refusal.UNKNOWN_KEY
    assert server.hits == {"/openid": 2, "/keys": 2}


def test_key_rotation_is_picked_up_and_retired_keys_stop_working(server, keys, clock) -> None:
    v = validator_for(server, clock)
    assert check(v, keys["k1"].sign(bot_claims(APP_ID, now=NOW)), activity_id="r1").ok
    server.keys = [keys["k2"]]  # Microsoft rotates: k1 retired, k2 published
    clock.now += 120
    new = keys["k2"].sign(bot_claims(APP_ID, now=clock.now))
    assert check(v, new, activity_id="r2").ok
    old = keys["k1"].sign(bot_claims(APP_ID, now=clock.now))
    assert check(v, old, activity_id="r3").refusal == Refusal.UNKNOWN_KEY


def test_a_metadata_outage_keeps_cached_keys_and_says_503_without_any(
        server, keys, clock) -> None:
    v = validator_for(server, clock, keys_ttl_seconds=600)
    assert check(v, keys["k1"].sign(bot_claims(APP_ID, now=NOW)), activity_id="o1").ok
    server.fail = True
    clock.now += 700  # keys stale, refresh fails: the cached set stays in use
    assert check(v, keys["k1"].sign(bot_claims(APP_ID, now=clock.now)), activity_id="o2").ok
    fresh = validator_for(server, clock)
    result = check(fresh, keys["k1"].sign(bot_claims(APP_ID, now=clock.now)))
    assert (result.refusal, result.status_code) == (Refusal.KEYS_UNAVAILABLE, 503)
    assert "503" in result.detail


def test_metadata_must_come_over_https_except_on_loopback(keys, clock) -> None:
    settings = AuthSettings(app_id=APP_ID,
                            openid_metadata_url="http://login.example/openid")
    v = BotTokenValidator(settings, keys=KeySource(settings, clock=clock), clock=clock)
    result = check(v, keys["k1"].sign(bot_claims(APP_ID, now=NOW)))
    assert result.refusal == Refusal.KEYS_UNAVAILABLE and "https" in result.detail


def test_keys_without_endorsements_are_accepted_for_any_channel(keys, clock) -> None:
    entra = make_key("entra-1", endorsements=None)
    with JwksServer(keys=[entra]) as srv:
        v = validator_for(srv, clock)
        assert check(v, entra.sign(bot_claims(APP_ID, now=NOW)), channel_id="webchat").ok


def test_replay_memory_is_bounded_and_forgets_expired_tokens() -> None:
    from migrationbox.teams.auth import ReplayGuard

    guard = ReplayGuard(max_entries=2, purge_every_seconds=0)
    assert guard.first_use("t", "a", expires_at=10, now=0)
    assert not guard.first_use("t", "a", expires_at=10, now=5)
    assert guard.first_use("t", "b", expires_at=10, now=5)
    assert guard.first_use("t", "c", expires_at=10, now=5)  # evicts the oldest ("a")
    assert len(guard._seen) == 2
    assert guard.first_use("u", "x", expires_at=30, now=20)  # purges the expired ones
    assert [activity for _, activity in guard._seen] == ["x"]
