"""Cutover canary metrics through the cloud adapter, against the real moto server: what a
step publishes is what its window reads back, and a monitoring API that does not answer
is ``MetricsUnavailable`` (the controller's rollback trigger), never a silent zero."""

from __future__ import annotations

import json
import os
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from migrationbox.cloud.aws import AwsAdapter
from migrationbox.cloud.emulator import free_port
from migrationbox.cutover.metrics import Batch, CanaryMetrics, MetricsUnavailable

pytestmark = pytest.mark.integration


@pytest.fixture
def adapter(aws_emulator) -> AwsAdapter:
    return AwsAdapter(region="us-east-1")


def test_published_batches_come_back_as_the_step_window(adapter):
    metrics = CanaryMetrics(adapter, f"canary{uuid.uuid4().hex[:6]}", "run-1")
    start = datetime.now(UTC)
    metrics.publish("web.shop.internal", "target", "25", Batch(
        requests=10, errors=1, latencies_ms=[float(i) for i in range(1, 21)],
        health_checks=5, health_failed=1, cpu_pct=12.5, memory_pct=40.0))
    metrics.publish("web.shop.internal", "target", "25", Batch(
        requests=10, errors=0, latencies_ms=[5.0] * 10, health_checks=5, health_failed=0,
        cpu_pct=8.0, memory_pct=41.0))
    metrics.publish("web.shop.internal", "source", "25", Batch(requests=99, errors=99))
    w = metrics.window("web.shop.internal", "target", "25", start)
    assert (w.requests, w.errors, w.health_checks, w.health_failed) == (20, 1, 10, 1)
    assert w.datapoints == 2 and w.error_rate == pytest.approx(0.05)
    assert w.p95_ms == 19.0  # the worse batch's P95
    assert (w.cpu_min_pct, w.memory_min_pct) == (8.0, 40.0)
    with pytest.raises(MetricsUnavailable, match="no Requests datapoints"):
        metrics.window("web.shop.internal", "target", "50", start)


def test_a_monitoring_api_that_does_not_answer_is_metrics_unavailable():
    key = "AIRFLOW_CONN_MBX_CANARY_DEAD"
    os.environ[key] = json.dumps({
        "conn_type": "aws", "login": "x", "password": "x",
        "extra": {"region_name": "us-east-1", "endpoint_url": f"http://127.0.0.1:{free_port()}",
                  "config_kwargs": {"retries": {"max_attempts": 1}, "connect_timeout": 1,
                                    "read_timeout": 1}}})
    try:
        metrics = CanaryMetrics(AwsAdapter(conn_id="mbx_canary_dead", region="us-east-1"),
                                "e", "run-1")
        with pytest.raises(MetricsUnavailable, match="put_metric_data failed"):
            metrics.publish("r", "target", "25", Batch(requests=1))
        with pytest.raises(MetricsUnavailable, match="metric_statistics failed"):
            metrics.window("r", "target", "25", datetime.now(UTC) - timedelta(minutes=1))
    finally:
        os.environ.pop(key, None)
    with pytest.raises(MetricsUnavailable, match="no cloud adapter"):
        CanaryMetrics(None, "e", "run-1").publish("r", "target", "25", Batch())
