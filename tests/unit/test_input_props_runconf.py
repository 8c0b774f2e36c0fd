"""No run conf crashes a wave run: any JSON gives a valid conf or a ``RunConfError``.

A conf comes from the trigger form, the REST API or the Teams bot, so it can be any
JSON value. ``parse_run_conf`` must turn it into a ``WaveRunConf`` or refuse it with
an ``InputError`` whose message names the key path (``conf.cutover.steps``); never a
``TypeError``, a pydantic ``ValidationError`` or a ``RecursionError`` escaping.
"""

from __future__ import annotations

import json
import math
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from migrationbox.errors import InputError
from migrationbox.orchestration.runconf import RUN_FLAGS, RunConfError, parse_run_conf
from migrationbox.phases.options import SECTIONS

SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])

SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(), st.text(max_size=12),
    st.text(st.characters(min_codepoint=0xD7F0, max_codepoint=0xE010), max_size=3),
    st.sampled_from(["", "true", "10.0.0.0/8", "2026-01-01T00:00:00Z", "not a date", "1e400",
                     "NaN", "\x00", "required", "auto_non_production"]))
JSON = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12)

SECTION_KEYS = {name: sorted(model.model_fields) for name, model in SECTIONS.items()}
KNOWN_KEYS = st.sampled_from([*SECTIONS, *RUN_FLAGS, "validate_"])


@st.composite
def near_valid_conf(draw: st.DrawFn) -> dict[str, Any]:
    """Real section and field names with hostile values (plus the odd unknown key)."""
    conf: dict[str, Any] = {}
    for _ in range(draw(st.integers(1, 4))):
        section = draw(KNOWN_KEYS)
        if section in SECTION_KEYS and draw(st.booleans()):
            fields = SECTION_KEYS[section]
            conf[section] = {draw(st.sampled_from([*fields, "typo_key"])): draw(JSON)
                             for _ in range(draw(st.integers(1, 3)))}
        else:
            conf[section] = draw(JSON)
    return conf


def _deep(depth: int) -> dict[str, Any]:
    value: Any = 1
    for _ in range(depth):
        value = {"x": value}
    return value


def _check(raw: Any) -> None:
    try:
        conf = parse_run_conf(raw)
    except RunConfError as exc:
        message = str(exc)
        assert message.startswith("invalid DAG run conf")
        message.encode("utf-8")  # the message can be logged: no raw surrogates in it
        assert "\n" not in message.split(": ", 1)[0]
        if isinstance(raw, dict) and raw:
            assert "conf." in message, message  # names the key path
        return
    # accepted: it round-trips, and the phases get options without the run flags
    dumped = conf.model_dump(by_alias=True, mode="json")
    json.dumps(dumped, allow_nan=False)
    assert not set(RUN_FLAGS) & set(conf.phase_options().model_dump(by_alias=True))
    for value in (conf.health.timeout_seconds, conf.cutover.dwell_seconds,
                  conf.replicate.block_mib):
        assert math.isfinite(value), "a non-finite option was accepted"


@SETTINGS
@given(JSON)
def test_any_json_conf_is_accepted_or_refused_naming_the_key(raw: Any) -> None:
    _check(raw)


@SETTINGS
@given(near_valid_conf())
def test_known_keys_with_hostile_values_are_accepted_or_refused_naming_the_key(
        raw: dict[str, Any]) -> None:
    _check(raw)


@SETTINGS
@given(near_valid_conf(), st.dictionaries(st.sampled_from(sorted(SECTIONS)),
                                         st.dictionaries(st.text(max_size=8), SCALARS,
                                                         max_size=2), max_size=3))
def test_site_defaults_merged_with_a_conf_fail_only_with_run_conf_error(
        raw: dict[str, Any], defaults: dict[str, dict[str, Any]]) -> None:
    try:
        conf = parse_run_conf(raw)
    except RunConfError:
        return
    try:
        conf.phase_options(defaults)
    except RunConfError as exc:
        assert "conf." in str(exc)


def test_deeply_nested_conf_is_refused_by_key_not_by_recursion() -> None:
    for depth in (100, 5000):
        try:
            parse_run_conf({"cutover": {"steps": _deep(depth)}})
        except RunConfError as exc:
            assert "conf.cutover.steps" in str(exc)
        else:
            raise AssertionError("a nested dict was accepted as cutover steps")


def test_non_finite_numbers_are_refused_naming_the_key() -> None:
    for key, section in (("timeout_seconds", "health"), ("dwell_seconds", "cutover"),
                         ("block_mib", "replicate"), ("vcpu_quota", "preflight")):
        for bad in (math.inf, math.nan):
            try:
                parse_run_conf({section: {key: bad}})
            except RunConfError as exc:
                assert f"conf.{section}.{key}" in str(exc)
            else:
                raise AssertionError(f"{section}.{key}={bad} was accepted")


def test_non_object_conf_is_an_input_error() -> None:
    for raw in ([1], "x", 3, True):
        try:
            parse_run_conf(raw)  # type: ignore[arg-type]
        except InputError as exc:
            assert "expected an object" in str(exc)


def test_unpaired_surrogate_is_refused_naming_the_key() -> None:
    for raw, key in (({"preflight": {"expected_account": "a\ud800"}}, "preflight.expected_account"),
                     ({"network": {"source_networks": {"\udc00": []}}},
                      "network.source_networks.\\udc00")):
        try:
            parse_run_conf(raw)
        except RunConfError as exc:
            assert f"conf.{key}" in str(exc) and "surrogate" in str(exc)
            str(exc).encode("utf-8")  # the message itself can be logged
        else:
            raise AssertionError(f"{raw} was accepted")


# ------------------------------------------------------------------ migrationbox demo --conf

@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(text=st.one_of(st.text(max_size=40), JSON.map(json.dumps),
                      st.sampled_from(["{", "[" * 5000, "NaN", '{"cutover": {"steps": [0]}}',
                                       '{"dry_run": true}', "9" * 5000, ""])))
def test_demo_conf_is_checked_before_the_platform_starts(
        monkeypatch: Any, capsys: Any, text: str) -> None:
    import argparse

    from migrationbox.cli import demo_cmd
    from migrationbox.orchestration import demo

    started: list[Any] = []
    monkeypatch.setattr(demo, "main_demo", lambda *a, **k: started.append(k["conf"]) or 0)
    args = argparse.Namespace(conf=text, estate_path=None, estate="sample", wave=1,
                              no_approve=False, stop=True, timeout=1.0, no_heal=True,
                              no_teams=True)
    code = demo_cmd._handle(args)
    err = capsys.readouterr().err
    if code == 2:
        assert not started and err.startswith("migrationbox demo: ")
    else:
        assert code == 0 and len(started) == 1
        if started[0] is not None:
            parse_run_conf(started[0])  # raises if a conf the run refuses got through
