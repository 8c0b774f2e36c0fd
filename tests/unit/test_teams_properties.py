"""Properties: whatever text reaches the parser, it answers with an intent or a question
(never an exception, never a destructive intent without confirmation); whatever string
arrives as a bearer token, the validator answers with a refusal reason."""

from __future__ import annotations

import base64
import json
import string
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from migrationbox.teams import Clarification, Intent, ParseContext, parse, parse_confirmation
from migrationbox.teams.auth import AuthSettings, BotTokenValidator, Refusal
from migrationbox.teams.grammar import GRAMMARS
from migrationbox.teams.models import COMMAND_SPECS, DESTRUCTIVE, Cloud
from migrationbox.teams.testing import SERVICE_URL, JwksServer, bot_claims, make_key

SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])

# words the grammar knows, so generated texts also hit commands and slots, not only noise
VOCAB = sorted({w.rstrip("*") for g in GRAMMARS.values() for ws in g.triggers.values()
                for phrase in ws for w in phrase.split()}
               | {"prod", "azure", "aws", "gcp", "eastus", "us-east-1", "phase-2",
                  "prod-migration-001", "weekly", '"why"', "if", "not", "cutover",
                  "30m", "2", "Stunden", "P2", "critical", "wave_done", "incidents",
                  "mute", "alert-config"})

texts = st.one_of(
    st.text(max_size=300),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=50),
    st.lists(st.sampled_from(VOCAB), max_size=8).map(" ".join),
    st.lists(st.one_of(st.sampled_from(VOCAB), st.text(max_size=6)), max_size=10).map(
        " ".join),
    st.text(alphabet=st.sampled_from("\x00\x01\x1b\u200b\u202e\ufeff<>\"„“”«»&;@ \n\t"),
            max_size=60),
    st.integers(min_value=2000, max_value=200_000).map(lambda n: "status " * (n // 7)),
)
contexts = st.builds(
    ParseContext,
    locale=st.one_of(st.none(), st.sampled_from(["en-US", "de-DE", "es-ES", "hu-HU", "xx"]),
                     st.text(max_size=8)),
    migration_id=st.one_of(st.none(), st.just("prod-7")),
    known_migration_ids=st.lists(st.text(min_size=1, max_size=10), max_size=3).map(tuple),
    known_ids_only=st.booleans(),
    default_regions=st.one_of(st.just({}), st.just({Cloud.AZURE: "westeurope"})),
)


@SETTINGS
@given(text=texts, ctx=contexts)
def test_any_text_gives_an_intent_or_a_question(text: str, ctx: ParseContext) -> None:
    result = parse(text, ctx)
    assert isinstance(result, Intent | Clarification)
    if isinstance(result, Intent):
        spec = COMMAND_SPECS[result.command]
        slots = result.slots.model_dump(exclude_none=True)
        assert set(spec.required) <= set(slots), "an intent never lacks a required slot"
        assert set(slots) <= set(spec.required) | set(spec.optional)
        assert result.needs_confirmation == (result.command in DESTRUCTIVE)
    else:
        assert result.question
    # the answer survives a JSON round trip (the endpoint stores pending intents)
    assert type(result).model_validate_json(result.model_dump_json()) == result


@SETTINGS
@given(text=st.one_of(st.text(max_size=300), st.none(), st.integers()))
def test_any_answer_to_a_confirmation_is_yes_no_or_neither(text) -> None:
    assert parse_confirmation(text) in (True, False, None)


# ---------------------------------------------------------------------------- tokens

APP_ID = "prop-bot"


@pytest.fixture(scope="module")
def validator() -> Iterator[BotTokenValidator]:
    key = make_key("k1")
    with JwksServer(keys=[key]) as server:
        v = BotTokenValidator(AuthSettings(app_id=APP_ID,
                                           openid_metadata_url=server.metadata_url,
                                           min_refresh_seconds=3600))
        assert v.validate(f"Bearer {key.sign(bot_claims(APP_ID))}",
                          service_url=SERVICE_URL, channel_id="msteams").ok
        yield v


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


segments = st.one_of(
    st.text(alphabet=string.ascii_letters + string.digits + "-_", max_size=80),
    st.binary(max_size=60).map(_b64),
    st.dictionaries(st.sampled_from(["alg", "kid", "typ", "iss", "aud", "exp", "nbf",
                                     "serviceurl", "x5t"]),
                    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(),
                              st.text(max_size=20), st.sampled_from(["RS256", "none",
                                                                     "HS256", "k1"])),
                    max_size=6).map(lambda d: _b64(json.dumps(d).encode())),
)
tokens = st.one_of(
    st.text(max_size=200),
    st.lists(segments, min_size=1, max_size=4).map(".".join),
)
headers = st.one_of(
    tokens.map(lambda t: f"Bearer {t}"),
    tokens,
    st.none(),
    st.sampled_from(["Bearer", "bearer  x", "Basic abc"]),
)


@SETTINGS
@given(header=headers, activity_id=st.one_of(st.none(), st.text(max_size=20)),
       service_url=st.one_of(st.none(), st.text(max_size=30)),
       channel_id=st.one_of(st.none(), st.text(max_size=10)))
def test_any_token_string_is_refused_with_a_reason(validator, header, activity_id,
                                                   service_url, channel_id) -> None:
    result = validator.validate(header, activity_id=activity_id, service_url=service_url,
                                channel_id=channel_id)
    assert not result.ok
    assert isinstance(result.refusal, Refusal) and result.detail
    assert result.status_code in (401, 503)


# ---------------------------------------------------------------------------- values

UNITS = {"m": 60, "min": 60, "minutes": 60, "h": 3600, "hours": 3600, "Stunden": 3600,
         "horas": 3600, "óra": 3600, "d": 86_400, "days": 86_400, "nap": 86_400}


@SETTINGS
@given(amount=st.integers(min_value=0, max_value=10**9), unit=st.sampled_from(sorted(UNITS)),
       joined=st.booleans(), migration=st.sampled_from(["", "prod-7 "]))
def test_any_duration_is_read_as_seconds_never_as_an_id(amount: int, unit: str,
                                                        joined: bool, migration: str) -> None:
    from migrationbox.teams.models import MAX_DURATION_S

    text = f"mute {migration}{amount}{'' if joined else ' '}{unit}"
    got = parse(text)
    assert isinstance(got, Intent), text
    assert got.slots.duration == min(amount * UNITS[unit], MAX_DURATION_S)
    assert got.slots.migration_id == (migration.strip() or None)


@SETTINGS
@given(words=st.lists(st.sampled_from(["P1", "p2", "P3", "P4", "info", "warning",
                                       "critical", "wave_done", "phase_failed",
                                       "incident_opened", "approval_waiting", "wave-started",
                                       "incident_healed", "rollback"]),
                      min_size=1, max_size=4),
       quoted=st.booleans())
def test_severities_and_kinds_are_never_migration_ids(words: list[str], quoted: bool) -> None:
    said = " ".join(words)
    got = parse(f'alert-config "{said}"' if quoted else f"alert-config {said}")
    assert got.slots.migration_id is None
    severities = {w for w in words if w.upper() in ("P1", "P2", "P3", "P4")
                  or w in ("info", "warning", "critical")}
    kinds = {w.replace("-", "_") for w in words} - severities
    if len({s.upper() if s[0] in "pP" else s for s in severities}) > 1:
        assert isinstance(got, Clarification) and got.reason == "conflicting_slot"
    else:
        assert isinstance(got, Intent) and got.command == "alert-config"
        assert set(got.slots.kinds or ()) == kinds


voice_ids = st.lists(st.from_regex(r"[a-z]{2,8}(-[a-z0-9]{1,4}){0,2}", fullmatch=True),
                     max_size=4).map(tuple)


@SETTINGS
@given(text=texts, known=voice_ids, channel=st.one_of(st.none(), st.just("prod-7")))
def test_known_ids_only_never_names_a_migration_outside_the_known_ones(
        text: str, known: tuple[str, ...], channel: str | None) -> None:
    ctx = ParseContext(known_migration_ids=known, known_ids_only=True, migration_id=channel)
    result = parse(text, ctx)
    if result.slots.migration_id is not None:
        assert result.slots.migration_id in (*known, channel)
