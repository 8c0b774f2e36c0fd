"""Faults during the canary cutover, against the real lab services and moto servers.

Errors injected into the target in the middle of a step, a weighted record changed by
hand, the monitoring API going away, and a rollback asked for after 100 %.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from test_dataplane_phases import WAVE1, make_dataplane  # noqa: F401  (fixture)

from migrationbox.cloud.aws import AwsAdapter
from migrationbox.cloud.aws_session import aws_client, clear_client_cache
from migrationbox.cloud.emulator import EmulatorProcess
from migrationbox.cutover.metrics import NAMESPACE
from migrationbox.lab.endpoints import target_dns_name
from migrationbox.phases import cutover
from migrationbox.phases.context import PhaseFailed

pytestmark = pytest.mark.integration

HTTP = ("web-01", "api-01")


def _at(weight: int, action) -> Any:
    def on_progress(message: str, data: dict[str, Any]) -> None:
        if data.get("weight") == weight:
            action()
    return on_progress


def test_errors_injected_into_a_step_roll_back_within_that_step(make_dataplane):  # noqa: F811
    dp = make_dataplane()
    api = target_dns_name(dp.estate, dp.plan.server("api-01").hostname)
    ctx = dp.ctx(options={"cutover": {"dwell_seconds": 1.5, "probe_interval_seconds": 0.2}},
                 on_progress=_at(50, lambda: dp.lab.fault("api-01", "ok", error_rate=0.5)))
    with pytest.raises(PhaseFailed, match="at 50%") as err:
        cutover.run(ctx)
    assert "error rate" in str(err.value) and api in str(err.value)
    report = json.loads((ctx.run_artifacts() / "cutover.json").read_text())
    assert report["trigger"] == "rule" and report["failed_at"] == 50
    assert [s["weight"] for s in report["steps"]] == [5, 25, 50]
    step = report["steps"][-1]
    # acted on the first batch that showed the errors, long before the 1.5 s dwell ended
    assert step["batches"] == 1 and report["rollback_seconds"] < 1.0
    assert step["metrics"][api]["errors"] > 0  # read back from CloudWatch
    assert any("health checks failed" in p for p in step["problems"])
    for sid in HTTP:
        assert dp.weights(sid) == {"source": 100, "target": 0}
    # the emulator's monitoring API holds what the controller judged
    cw = aws_client("cloudwatch")
    points = cw.get_metric_statistics(
        Namespace=NAMESPACE, MetricName="Errors",
        Dimensions=[{"Name": "Estate", "Value": dp.estate}, {"Name": "Record", "Value": api},
                    {"Name": "Side", "Value": "target"},
                    {"Name": "Step", "Value": f"{ctx.run_id}:50"}],
        StartTime=datetime.now(UTC) - timedelta(minutes=5),
        EndTime=datetime.now(UTC) + timedelta(minutes=1), Period=60, Statistics=["Sum"],
    )["Datapoints"]
    assert sum(p["Sum"] for p in points) == step["metrics"][api]["errors"]


def test_dns_record_changed_by_hand_is_detected_and_reported(make_dataplane):  # noqa: F811
    dp = make_dataplane()
    web = target_dns_name(dp.estate, dp.plan.server("web-01").hostname)

    def meddle() -> None:
        from migrationbox.cloud.aws import AwsAdapter

        svc = next(r for r in AwsAdapter().get_weighted_records(dp.zone_id, web)
                   if r.set_identifier == "target")
        src = next(r for r in AwsAdapter().get_weighted_records(dp.zone_id, web)
                   if r.set_identifier == "source")
        AwsAdapter().upsert_weighted_records(dp.zone_id, web, src.value, svc.value, 70)

    ctx = dp.ctx(on_progress=_at(25, meddle))
    with pytest.raises(PhaseFailed, match="changed outside MigrationBox"):
        cutover.run(ctx)
    report = json.loads((ctx.run_artifacts() / "cutover.json").read_text())
    assert report["trigger"] == "dns_changed" and report["failed_at"] == 25
    assert report["dns_changed_by_hand"] == {web: {"source": 30, "target": 70}}
    assert dp.weights("web-01") == {"source": 100, "target": 0}


def test_monitoring_that_stops_answering_rolls_back(make_dataplane, tmp_path,  # noqa: F811
                                                     monkeypatch):
    dp = make_dataplane()
    monitoring = EmulatorProcess(log_path=tmp_path / "cw.log").start()
    try:
        # the canary's metrics go through their own adapter, on a monitoring endpoint
        monkeypatch.setenv("AIRFLOW_CONN_AWS_MONITORING", json.dumps({
            "conn_type": "aws", "login": "testing", "password": "testing", "extra": {
                "region_name": "us-east-1", "endpoint_url": monitoring.url,
                "config_kwargs": {"connect_timeout": 1, "read_timeout": 2,
                                  "retries": {"max_attempts": 1}}}}))
        clear_client_cache()
        watcher = AwsAdapter(conn_id="aws_monitoring", region="us-east-1")
        ctx = dp.ctx(monitoring=watcher, on_progress=_at(25, monitoring.stop))
        with pytest.raises(PhaseFailed, match="monitoring stopped answering at 25%"):
            cutover.run(ctx)
    finally:
        monitoring.stop()
    report = json.loads((ctx.run_artifacts() / "cutover.json").read_text())
    assert report["trigger"] == "metrics_unavailable"
    for sid in HTTP:
        assert dp.weights(sid) == {"source": 100, "target": 0}


def test_rollback_after_full_cutover_needs_approval_and_reruns_add_nothing(
        make_dataplane):  # noqa: F811
    dp = make_dataplane()
    ctx = dp.ctx()
    done = cutover.run(ctx)
    assert [s["weight"] for s in done.details["steps"]] == [5, 25, 50, 100]
    r53 = aws_client("route53")
    records = r53.list_resource_record_sets(HostedZoneId=dp.zone_id)["ResourceRecordSets"]
    # re-running after success moves nothing and creates nothing
    again = cutover.run(dp.ctx(run_id="run-2"))
    assert [s["weight"] for s in again.details["steps"]] == [100]
    assert r53.list_resource_record_sets(HostedZoneId=dp.zone_id)["ResourceRecordSets"] == \
        records
    needed, why = cutover.rollback_requires_approval(ctx)
    assert needed and "needs an approval" in why
    with pytest.raises(PhaseFailed, match="approves the rollback"):
        cutover.rollback(ctx)
    assert dp.weights("web-01") == {"source": 0, "target": 100}
    back = cutover.rollback_approved(ctx)
    assert back.details["approved"] and len(back.details["restored"]) == 3
    for sid in HTTP:
        assert dp.weights(sid) == {"source": 100, "target": 0}
    assert set(WAVE1) >= set(HTTP)
