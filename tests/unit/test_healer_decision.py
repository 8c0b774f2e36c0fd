"""Decision matrix (data), decision engine, and the per-resource guard (memory and SQL)."""

from __future__ import annotations

import json
import secrets
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, text

from migrationbox.healer.decision import (
    DecisionEngine,
    Observation,
    Outcome,
    Situation,
    load_matrix,
)
from migrationbox.healer.guard import (
    InMemoryGuard,
    RateLimit,
    RateLimited,
    ResourceBusy,
    SqlGuard,
)

T0 = datetime(2026, 5, 15, 14, 23, 45, tzinfo=UTC)


def test_matrix_has_the_plans_ten_rows() -> None:
    matrix = load_matrix()
    assert matrix.auto_heal_threshold == 0.85
    table = {r.id: (r.action, r.confidence, r.auto_heal_allowed, r.needs_approval)
             for r in matrix.rows}
    assert table == {
        "high_cpu": ("horizontal_scale", 0.95, True, False),
        "high_memory": ("vertical_scale_restart", 0.88, True, False),
        "disk_full": ("disk_cleanup_expand", 0.92, True, False),
        "health_check_failed": ("rolling_restart", 0.90, True, False),
        "db_connections_exhausted": ("increase_max_connections_restart", 0.87, True, False),
        "ssl_certificate_expired": ("renew_certificate_reload", 0.99, True, False),
        "dns_propagation_incomplete": ("flush_dns_cache_verify", 0.85, True, False),
        "external_api_timeout": ("enable_circuit_breaker", 0.82, False, False),
        "database_deadlock": ("kill_blocking_query", 0.75, False, True),
        "data_corruption": ("restore_from_backup", 0.60, False, True),
    }
    cpu = matrix.row("high_cpu").condition
    assert (cpu.metric, cpu.operator, cpu.threshold, cpu.for_seconds) == (
        "cpu_utilization_pct", ">", 90, 300)


def edited_matrix(tmp_path: Path, change) -> Path:
    data = json.loads(load_matrix().model_dump_json())
    change(data)
    path = tmp_path / "matrix.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_matrix_refuses_an_automatic_risky_action(tmp_path: Path) -> None:
    def make_restore_automatic(data: dict) -> None:
        row = data["rows"][9]
        row["auto_heal_allowed"], row["needs_approval"] = True, False

    with pytest.raises(ValueError, match=r"rows\[9\]: .*'data_corruption'.*must have "
                                         r"auto_heal_allowed=false"):
        load_matrix(edited_matrix(tmp_path, make_restore_automatic))


def test_matrix_errors_name_file_and_field(tmp_path: Path) -> None:
    def bad_confidence(data: dict) -> None:
        data["rows"][3]["confidence"] = 1.5

    with pytest.raises(ValueError, match=r"matrix.json: rows\[3\].confidence"):
        load_matrix(edited_matrix(tmp_path, bad_confidence))

    def duplicate(data: dict) -> None:
        data["rows"][1]["id"] = "high_cpu"

    with pytest.raises(ValueError, match=r"rows\[1\].id: 'high_cpu' appears more than once"):
        load_matrix(edited_matrix(tmp_path, duplicate))


def test_matrix_verification_windows_are_validated(tmp_path: Path) -> None:
    matrix = load_matrix()
    cpu_window = matrix.row("high_cpu").verify  # type: ignore[union-attr]
    assert cpu_window.zero_is_reset and cpu_window.settle_seconds > 0
    assert cpu_window.min_points >= 2 and cpu_window.min_seconds > 0

    def one_point_over_time(data: dict) -> None:
        data["rows"][0]["verify"] = {"min_points": 1, "min_seconds": 5}

    with pytest.raises(ValueError, match=r"rows\[0\].verify: .*needs min_points >= 2"):
        load_matrix(edited_matrix(tmp_path, one_point_over_time))

    def zero_never_counts_where_only_zero_is_healthy(data: dict) -> None:
        data["rows"][6]["verify"]["zero_is_reset"] = True  # dns_stale_resolvers > 0

    with pytest.raises(ValueError, match=r"rows\[6\]: .*zero_is_reset .*never count"):
        load_matrix(edited_matrix(tmp_path, zero_never_counts_where_only_zero_is_healthy))

    def unknown_key(data: dict) -> None:
        data["rows"][0]["verify"]["min_pts"] = 3

    with pytest.raises(ValueError, match=r"rows\[0\].verify.min_pts"):
        load_matrix(edited_matrix(tmp_path, unknown_key))

    def no_window(data: dict) -> None:
        del data["rows"][2]["verify"]

    defaulted = load_matrix(edited_matrix(tmp_path, no_window)).rows[2].verify
    assert defaulted.min_points >= 2 and not defaulted.zero_is_reset


def cpu(value: float = 95, seconds: float = 360, **kw) -> Situation:
    defaults = {"anomaly_type": "high_cpu", "resource": "web-03",
                "detection_confidence": "high", "rca_confidence": 0.7, "at": T0}
    defaults.update(kw)
    return Situation(observation=Observation("cpu_utilization_pct", value, seconds),
                     **defaults)


@pytest.fixture
def engine() -> DecisionEngine:
    return DecisionEngine(guard=InMemoryGuard(RateLimit(max_actions=2)))


def test_auto_heal_holds_the_resource_until_finished(engine: DecisionEngine) -> None:
    decision = engine.decide(cpu())
    assert decision.outcome is Outcome.auto_heal
    assert decision.action == "horizontal_scale" and decision.confidence == 0.95
    assert decision.lease is not None and decision.lease.resource == "web-03"
    again = engine.decide(cpu(at=T0 + timedelta(seconds=30)))
    assert again.outcome is Outcome.suppressed
    assert "another remediation holds the resource (horizontal_scale" in again.reasons[-1]
    engine.finish(decision)
    assert engine.decide(cpu(at=T0 + timedelta(seconds=60))).outcome is Outcome.auto_heal


def test_rate_limit_stops_a_remediation_loop(engine: DecisionEngine) -> None:
    for minute in (0, 10):
        d = engine.decide(cpu(at=T0 + timedelta(minutes=minute)))
        assert d.outcome is Outcome.auto_heal
        engine.finish(d)
    third = engine.decide(cpu(at=T0 + timedelta(minutes=20)))
    assert third.outcome is Outcome.suppressed
    assert "rate limit: 2 remediation(s) already started" in third.reasons[-1]
    later = engine.decide(cpu(at=T0 + timedelta(minutes=61)))  # first one left the window
    assert later.outcome is Outcome.auto_heal


@pytest.mark.parametrize(("situation", "reason"), [
    (cpu(value=85), "condition not met: cpu_utilization_pct = 85 does not satisfy > 90"),
    (cpu(seconds=120), "held for 120 s, needs 300 s"),
    (cpu(detection_confidence="low"), "low-confidence anomaly"),
    (cpu(rca_confidence=0.4), "root cause uncertain (confidence 0.40 < 0.50)"),
    (cpu(rca_confidence=None), "root cause uncertain (confidence none"),
    (Situation("external_api_timeout", "payments", "high", 0.9,
               Observation("external_api_p95_latency_s", 7.0)), "does not allow auto-heal"),
    (Situation("martian_invasion", "web-03", "high", 0.9), "no decision-matrix row"),
])
def test_alerts_people_instead_of_acting(engine: DecisionEngine, situation: Situation,
                                         reason: str) -> None:
    decision = engine.decide(situation)
    assert decision.outcome is Outcome.alert
    assert reason in " | ".join(decision.reasons)
    assert decision.lease is None


def test_risky_actions_always_need_approval_even_when_confident(
        engine: DecisionEngine) -> None:
    class Certain:
        def confidence(self, row, situation):
            return 0.999, "test"

    engine.confidence_source = Certain()
    for situation in (
        Situation("data_corruption", "orders-db", "high", 0.99,
                  Observation("data_checksum_mismatches", 3)),
        Situation("database_deadlock", "orders-db", "high", 0.99,
                  Observation("db_blocked_sessions", 1, 75.0)),
    ):
        decision = engine.decide(situation)
        assert decision.outcome is Outcome.needs_approval
        assert decision.lease is None
    approved = engine.approve(decision, "alice")
    assert approved.outcome is Outcome.auto_heal and approved.approved_by == "alice"
    assert approved.lease is not None
    with pytest.raises(ValueError, match="only needs_approval"):
        engine.approve(approved, "bob")


def test_threshold_is_inclusive_and_learned_confidence_can_lower_it(
        engine: DecisionEngine) -> None:
    dns = Situation("dns_propagation_incomplete", "www", "high", 0.8,
                    Observation("dns_stale_resolvers", 2), at=T0)
    assert engine.decide(dns).outcome is Outcome.auto_heal  # 0.85 row auto-heals

    class Learned:
        def confidence(self, row, situation):
            return 0.80, "beta(8, 2)"

    engine.confidence_source = Learned()
    decision = engine.decide(cpu())
    assert decision.outcome is Outcome.alert
    assert "below the auto-heal threshold 0.85" in decision.reasons[-1]
    assert "action confidence 0.80 (beta(8, 2))" in decision.reasons


# --------------------------------------------------------------------------- guards


def postgres_url() -> str | None:
    try:
        import psycopg2

        conn = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres",
                                dbname="postgres", connect_timeout=2)
    except Exception:
        return None
    conn.close()
    return "postgresql+psycopg2://postgres@127.0.0.1:5432/"


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
def guard(request, tmp_path: Path):
    limit = RateLimit(max_actions=3, window=timedelta(hours=1))
    if request.param == "memory":
        yield InMemoryGuard(limit)
        return
    if request.param == "sqlite":
        engine = create_engine(f"sqlite:///{tmp_path / 'guard.db'}")
        yield SqlGuard(engine, limit)
        engine.dispose()
        return
    base = postgres_url()
    if base is None:
        pytest.skip("PostgreSQL is not reachable on 127.0.0.1:5432; SQLite covers SqlGuard")
    name = f"healer_test_{secrets.token_hex(4)}"
    admin = create_engine(base + "postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine = create_engine(base + name, pool_size=8)
    try:
        yield SqlGuard(engine, limit)
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()


def test_guard_lock_expiry_release_and_rate_limit(guard) -> None:
    lease = guard.acquire("db-1", "increase_max_connections_restart", "w1",
                          ttl=timedelta(minutes=5), now=T0)
    with pytest.raises(ResourceBusy) as busy:
        guard.acquire("db-1", "rolling_restart", "w2", now=T0 + timedelta(minutes=1))
    assert busy.value.holder.holder == "w1"
    assert guard.holder("db-1", now=T0).token == lease.token
    other = guard.acquire("db-2", "rolling_restart", "w2", now=T0)  # other resource: fine
    guard.release(other, now=T0)
    # the holder died: after its TTL the lock is free again
    second = guard.acquire("db-1", "rolling_restart", "w2", now=T0 + timedelta(minutes=6))
    guard.release(lease, now=T0)  # a stale release does not free the new holder's lock
    assert guard.holder("db-1", now=T0 + timedelta(minutes=7)).token == second.token
    guard.release(second, now=T0 + timedelta(minutes=7))
    assert guard.holder("db-1", now=T0 + timedelta(minutes=7)) is None
    third = guard.acquire("db-1", "rolling_restart", "w3", now=T0 + timedelta(minutes=8))
    guard.release(third)
    with pytest.raises(RateLimited, match="3 remediation"):
        guard.acquire("db-1", "rolling_restart", "w4", now=T0 + timedelta(minutes=9))
    assert guard.holder("db-1", now=T0 + timedelta(minutes=9)) is None  # refusal held nothing
    assert guard.recent_actions("db-1", now=T0 + timedelta(minutes=9)) == 3
    assert guard.recent_actions("db-1", now=T0 + timedelta(minutes=61)) == 2


def test_guard_lets_exactly_one_of_many_concurrent_workers_in(guard) -> None:
    wins: list[str] = []
    losses: list[str] = []
    barrier = threading.Barrier(6)

    def worker(name: str) -> None:
        barrier.wait()
        try:
            guard.acquire("web-tier", "horizontal_scale", name, now=T0)
            wins.append(name)
        except ResourceBusy:
            losses.append(name)

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(wins) == 1 and len(losses) == 5
    assert guard.recent_actions("web-tier", now=T0) == 1


def test_sql_guard_keeps_its_tables_in_its_own_namespace(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'g.db'}")
    SqlGuard(engine)
    SqlGuard(engine)  # idempotent
    names = set(inspect(engine).get_table_names())
    assert {"healer_locks", "healer_action_log", "healer_remediations"} <= names
    assert all(n.startswith("healer_") for n in names)
    engine.dispose()
