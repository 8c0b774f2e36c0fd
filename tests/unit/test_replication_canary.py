"""Rollback rules of the canary, the replication trigger, and the bandwidth throttle."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from migrationbox.cutover.metrics import Window
from migrationbox.cutover.rules import RollbackRules, evaluate
from migrationbox.orchestration.runconf import parse_run_conf
from migrationbox.orchestration.triggers import (
    CLASSPATH,
    ReplicationCadenceTrigger,
    ReplicationRoundsOperator,
)
from migrationbox.replication.progress import Progress, Throttle

BASE = Window(requests=100, errors=1, p95_ms=200, health_checks=50, health_failed=0)


def _rules(**kw) -> set[str]:
    current = Window(**{**BASE.__dict__, **kw})
    return {b.rule for b in evaluate(RollbackRules(), "svc", BASE, current, window_s=30)}


def test_each_rollback_trigger_fires_at_its_threshold():
    assert _rules() == set()
    assert _rules(errors=6) == set()  # 6 % = 1 % baseline + 5 points: not over
    assert _rules(errors=7) == {"error_rate"}
    assert _rules(p95_ms=400) == set()
    assert _rules(p95_ms=401) == {"p95_latency"}
    assert _rules(health_failed=5) == set()  # 10 % exactly
    assert _rules(health_failed=6) == {"health_checks"}


def test_latency_floor_keeps_a_fast_baseline_from_tripping_on_noise():
    fast = Window(requests=10, p95_ms=1.0)
    assert not evaluate(RollbackRules(), "svc", fast, Window(requests=10, p95_ms=40), 5)
    assert evaluate(RollbackRules(), "svc", fast, Window(requests=10, p95_ms=300), 5)


def test_saturation_must_be_sustained():
    hot = Window(requests=10, cpu_min_pct=97.0, memory_min_pct=50.0)
    rules = RollbackRules(sustained_s=120)
    assert not evaluate(rules, "svc", BASE, hot, window_s=60)
    fired = evaluate(rules, "svc", BASE, hot, window_s=120)
    assert [b.rule for b in fired] == ["cpu_saturation"]
    assert "for 120s" in fired[0].message


def test_rules_read_the_run_conf_cutover_section():
    conf = parse_run_conf({"cutover": {"error_rate_points": 10, "sustained_seconds": 5}})
    rules = RollbackRules.from_options(conf.phase_options().cutover)
    assert rules.error_rate_points == 10 and rules.sustained_s == 5
    assert rules.latency_factor == RollbackRules().latency_factor  # unset: the plan's


def test_cadence_trigger_round_trips_and_fires_when_due():
    due = (datetime.now(UTC) + timedelta(seconds=0.2)).isoformat()
    trigger = ReplicationCadenceTrigger(due, 3, "estate/wave-1")
    path, kwargs = trigger.serialize()
    assert path == CLASSPATH
    again = ReplicationCadenceTrigger(**kwargs)

    async def first():
        async for event in again.run():
            return event

    event = asyncio.run(asyncio.wait_for(first(), 5))
    assert event.payload["round"] == 3
    assert datetime.fromisoformat(event.payload["woke_at"]) >= datetime.fromisoformat(due)


def test_rounds_operator_keeps_its_arguments():
    op = ReplicationRoundsOperator(task_id="sync_rounds", estate="e", wave=1, plan_version=2,
                                   cadence_seconds=5)
    assert (op.estate, op.wave, op.plan_version, op.cadence_seconds) == ("e", 1, 2, 5)


def test_throttle_sleeps_to_hold_the_rate():
    slept: list[float] = []
    t = Throttle(bytes_per_s=1000, sleep=slept.append)
    t(500)
    t(500)
    assert sum(slept) > 0.9  # 1000 bytes at 1000 B/s: about a second of waiting
    assert Throttle(None, sleep=slept.append)(10**9) is None


def test_progress_eta_and_rate():
    p = Progress("disk", 1, done=50, total=200, unit="bytes", elapsed_s=5.0)
    assert p.rate == 10 and p.eta_s == 15 and p.percent == 25
    assert Progress("disk", 1, 0, 10, "bytes").eta_s is None
