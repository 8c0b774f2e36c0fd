"""The lab's slow partner API and the circuit breaker that heals it (``ChaosState``): real
waits of the partner-sync thread, measured back as ``external_api_p95_latency_s``."""

from __future__ import annotations

import time

import pytest

from migrationbox.lab import chaos as lab_chaos
from migrationbox.lab.chaos import ChaosRequest, ChaosState, RemediationRequest


@pytest.fixture()
def state(monkeypatch):
    monkeypatch.setattr(lab_chaos, "P95_WINDOW_S", 2.0)
    s = ChaosState(name="web-01:target")
    yield s
    s.close()


def _p95(state: ChaosState) -> float:
    return float(state.metrics_peek()["external_api_p95_latency_s"])


def _until(predicate, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"not true within {timeout:g} s")


def test_a_slow_partner_shows_in_the_p95_while_a_call_is_still_waiting(state):
    assert _p95(state) == 0.0  # no call made yet
    state.inject(ChaosRequest(kind="external_api", external_latency_s=3.0))
    _until(lambda: _p95(state) >= 1.5, timeout=3.0)  # the unfinished call counts
    state.inject(ChaosRequest(kind="clear"))
    _until(lambda: _p95(state) < 0.2, timeout=5.0)


def test_the_breaker_fails_fast_then_retries_and_can_be_switched_off(state):
    state.inject(ChaosRequest(kind="external_api", external_latency_s=5.0))
    _until(lambda: _p95(state) >= 1.0, timeout=3.0)
    state.remediate(RemediationRequest(op="circuit_breaker", breaker_enabled=True,
                                       breaker_timeout_s=0.2, breaker_failures=2,
                                       breaker_reset_s=1.5))
    # the call in flight gives up at the new deadline, two failures open the breaker
    _until(lambda: state.metrics_peek()["circuit_breaker"]["open"], timeout=4.0)
    # calls now end at the 0.2 s deadline or at once: the p95 is the deadline at most
    _until(lambda: _p95(state) <= 0.3, timeout=4.0)
    breaker = state.metrics_peek()["circuit_breaker"]
    assert breaker["enabled"] and breaker["short_circuited"] > 0
    # after reset_s one trial call goes through, fails at the deadline, and reopens
    calls_before = breaker["short_circuited"]
    time.sleep(2.5)
    assert state.metrics_peek()["circuit_breaker"]["short_circuited"] > calls_before
    assert _p95(state) <= 0.3
    # the partner recovers: a trial call succeeds and closes the breaker
    state.inject(ChaosRequest(kind="clear"))
    _until(lambda: not state.metrics_peek()["circuit_breaker"]["open"], timeout=4.0)
    state.remediate(RemediationRequest(op="circuit_breaker", breaker_enabled=False))
    assert not state.metrics_peek()["circuit_breaker"]["enabled"]


def test_bad_breaker_settings_are_rejected_naming_the_field():
    with pytest.raises(ValueError, match="breaker_timeout_s"):
        RemediationRequest(op="circuit_breaker", breaker_timeout_s=0)
