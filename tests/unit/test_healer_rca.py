"""Root-cause analysis and health results."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import networkx as nx
import pytest

from migrationbox.healer.health import (
    HealthResult,
    HealthStatus,
    health_from_probes,
    parse_deep_health,
)
from migrationbox.healer.rca import analyse, bfs_dependencies

T0 = datetime(2026, 5, 15, 14, 23, 45, tzinfo=UTC)


def plan_graph() -> nx.DiGraph:
    """The plan's example: A → B means A depends on B."""
    return nx.DiGraph([
        ("web-server-01", "rds-postgresql-primary"),
        ("web-server-02", "rds-postgresql-primary"),
        ("web-server-03", "rds-postgresql-primary"),
        ("web-server-01", "api-service-01"),
        ("api-service-01", "redis-cache-cluster"),
        ("api-service-01", "external-payment-api"),
    ])


def healthy(resource: str) -> HealthResult:
    return HealthResult(resource, HealthStatus.healthy, observed_at=T0)


def bad(resource: str, since: datetime, status: str = "unhealthy") -> HealthResult:
    return HealthResult(resource, HealthStatus(status), observed_at=T0, unhealthy_since=since)


def all_healthy(*names: str) -> dict[str, HealthResult]:
    return {n: healthy(n) for n in names}


def test_bfs_visits_dependencies_level_by_level() -> None:
    visited = bfs_dependencies(plan_graph(), "web-server-01")
    assert [(n, d) for n, d, _ in visited] == [
        ("api-service-01", 1), ("rds-postgresql-primary", 1),
        ("external-payment-api", 2), ("redis-cache-cluster", 2)]
    assert visited[3][2] == ("web-server-01", "api-service-01", "redis-cache-cluster")
    assert [n for n, _, _ in bfs_dependencies(plan_graph(), "web-server-01", 1)] == [
        "api-service-01", "rds-postgresql-primary"]


def test_shared_dependency_that_went_bad_first_is_the_root_cause() -> None:
    """The plan's worked example: RDS CPU 95 %, three web servers erroring after it."""
    health = {**all_healthy("api-service-01", "redis-cache-cluster", "external-payment-api"),
              "rds-postgresql-primary": bad("rds-postgresql-primary", T0 - timedelta(seconds=60))}
    anomalous = {"web-server-01": T0, "web-server-02": T0 + timedelta(seconds=5),
                 "web-server-03": T0 - timedelta(seconds=10)}
    result = analyse(plan_graph(), "web-server-01", anomalous=anomalous, health=health)
    top = result.top
    assert top is not None and top.resource == "rds-postgresql-primary"
    assert top.confidence >= 0.9
    assert top.shared_by == ("rds-postgresql-primary", "web-server-01", "web-server-02",
                             "web-server-03")
    assert any("before every affected dependent" in e for e in top.evidence)
    assert result.causes[-1].resource == "web-server-01"
    assert result.causes[-1].confidence < 0.5
    assert result.unknown == []
    assert set(result.healthy) == {"api-service-01", "redis-cache-cluster",
                                   "external-payment-api"}


def test_single_affected_service_with_bad_dependency_is_low_confidence() -> None:
    health = {**all_healthy("rds-postgresql-primary", "redis-cache-cluster",
                            "external-payment-api"),
              "api-service-01": bad("api-service-01", T0 - timedelta(seconds=5))}
    result = analyse(plan_graph(), "web-server-01", anomalous={"web-server-01": T0},
                     health=health)
    assert result.top.resource == "api-service-01"
    assert result.top.confidence == pytest.approx(0.45)  # base 0.40 + partial precedence
    assert result.top.confidence < 0.5


def test_dependency_that_went_bad_later_is_a_likely_victim() -> None:
    health = {**all_healthy("rds-postgresql-primary", "redis-cache-cluster",
                            "external-payment-api"),
              "api-service-01": bad("api-service-01", T0 + timedelta(seconds=90))}
    result = analyse(plan_graph(), "web-server-01", anomalous={"web-server-01": T0},
                     health=health)
    api = next(c for c in result.causes if c.resource == "api-service-01")
    assert api.confidence == pytest.approx(0.2)
    assert any("likely a victim" in e for e in api.evidence)


def test_deeper_cause_beats_the_symptom_in_between() -> None:
    """redis failed first, then api-service-01 (which depends on it): redis ranks first."""
    health = {**all_healthy("rds-postgresql-primary", "external-payment-api"),
              "api-service-01": bad("api-service-01", T0 - timedelta(seconds=20)),
              "redis-cache-cluster": bad("redis-cache-cluster", T0 - timedelta(seconds=80))}
    result = analyse(plan_graph(), "web-server-01", anomalous={"web-server-01": T0},
                     health=health)
    ranked = [c.resource for c in result.causes]
    assert ranked.index("redis-cache-cluster") < ranked.index("api-service-01")
    api = next(c for c in result.causes if c.resource == "api-service-01")
    assert any("depends on bad resource" in e for e in api.evidence)


def test_service_itself_when_every_dependency_is_healthy() -> None:
    health = all_healthy("rds-postgresql-primary", "api-service-01", "redis-cache-cluster",
                         "external-payment-api")
    result = analyse(plan_graph(), "web-server-01", anomalous={"web-server-01": T0},
                     health=health)
    assert [c.resource for c in result.causes] == ["web-server-01"]
    assert result.top.confidence == pytest.approx(0.7)


def test_missing_health_is_unknown_not_healthy() -> None:
    health = all_healthy("rds-postgresql-primary", "api-service-01")
    result = analyse(plan_graph(), "web-server-01", anomalous={"web-server-01": T0},
                     health=health)
    assert result.unknown == ["external-payment-api", "redis-cache-cluster"]
    assert result.top.resource == "web-server-01"
    assert result.top.confidence == pytest.approx(0.4)  # no bonus: not all were checked
    assert any("no health data" in e for e in result.top.evidence)


def test_bad_input_is_refused() -> None:
    with pytest.raises(KeyError, match="not a node"):
        analyse(plan_graph(), "nope", anomalous={"nope": T0}, health={})
    with pytest.raises(ValueError, match="no onset given for the origin"):
        analyse(plan_graph(), "web-server-01", anomalous={}, health={})


# --------------------------------------------------------------------------- health

DEEP = {
    "status": "degraded",
    "timestamp": "2026-05-15T14:23:45Z",
    "components": {
        "database": {"status": "healthy", "latency_ms": 12, "connections_active": 45,
                     "connections_max": 100},
        "cache": {"status": "healthy", "hit_rate_pct": 94.5, "eviction_rate": 120},
        "external_api": {"status": "degraded", "latency_ms": 1200, "error_rate_pct": 2.1},
    },
    "overall_health_score": 0.92,
}


def test_plan_deep_health_example_parses() -> None:
    deep = parse_deep_health(DEEP, "web-01")
    assert deep.components["database"].model_extra["connections_max"] == 100
    result = health_from_probes("web-01", observed_at=T0, live_status=200,
                                ready_status=200, deep_body=DEEP)
    assert result.status is HealthStatus.degraded and result.is_bad
    assert result.score == 0.92
    assert "external_api (degraded)" in result.detail
    assert result.unhealthy_since == T0


def test_probe_failures_and_onset_carried_forward() -> None:
    first = health_from_probes("web-01", observed_at=T0, live_status=200, ready_status=503)
    assert first.status is HealthStatus.unhealthy and "/health/ready answered 503" in first.detail
    later = health_from_probes("web-01", observed_at=T0 + timedelta(seconds=30),
                               live_status=None, ready_status=None, previous=first)
    assert "/health/live did not answer" in later.detail
    assert later.unhealthy_since == T0  # the bad spell started at the first observation
    recovered = health_from_probes("web-01", observed_at=T0 + timedelta(seconds=60),
                                   live_status=200, ready_status=200, previous=later)
    assert recovered.status is HealthStatus.healthy and recovered.unhealthy_since is None


def test_malformed_deep_body_is_reported_not_crashed() -> None:
    result = health_from_probes("web-01", observed_at=T0, live_status=200, ready_status=200,
                                deep_body={"status": "fine"})
    assert result.status is HealthStatus.healthy
    assert "web-01: /health/deep status" in result.detail
