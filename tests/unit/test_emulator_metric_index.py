"""The emulator's GetMetricData wrapper answers exactly what moto answers, from the
datapoints of each query's metric only (moto scans every datapoint of the namespace for
every query and period)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import boto3
from moto import mock_aws
from moto.cloudwatch.models import CloudWatchBackend, cloudwatch_backends

from migrationbox.cloud import emulator_server


def _queries(services: list[str], metrics: list[str]) -> list[dict]:
    out = [{"Id": f"q{i}", "MetricStat": {
        "Metric": {"Namespace": "MB", "MetricName": m,
                   "Dimensions": [{"Name": "Service", "Value": s}]},
        "Period": 1, "Stat": "Average"}} for i, (s, m) in
        enumerate((s, m) for s in services for m in metrics)]
    out.append({"Id": "nodims", "MetricStat": {
        "Metric": {"Namespace": "MB", "MetricName": metrics[0]}, "Period": 10,
        "Stat": "Maximum"}, "Label": "peak"})
    out.append({"Id": "other_ns", "MetricStat": {
        "Metric": {"Namespace": "Other", "MetricName": metrics[1]}, "Period": 5,
        "Stat": "SampleCount"}, "ReturnData": True})
    out.append({"Id": "absent", "MetricStat": {
        "Metric": {"Namespace": "MB", "MetricName": "nothing"}, "Period": 1,
        "Stat": "Average"}})
    return out


@mock_aws
def test_the_indexed_read_answers_what_moto_answers():
    emulator_server.install()
    emulator_server.install()  # idempotent
    wrapper = CloudWatchBackend.get_metric_data
    assert wrapper._migrationbox_indexed
    original = wrapper._migrationbox_original

    cw = boto3.client("cloudwatch", region_name="us-east-1")
    rng = random.Random(5)
    now = datetime.now(UTC).replace(microsecond=0)
    services, metrics = [f"srv-{i}" for i in range(4)], ["cpu", "mem", "lat"]
    for second in range(60):
        ts = now - timedelta(seconds=60 - second)
        cw.put_metric_data(Namespace="MB", MetricData=[
            {"MetricName": m, "Dimensions": [{"Name": "Service", "Value": s}],
             "Timestamp": ts, "Value": rng.random() * 100}
            for s in services for m in metrics])
        cw.put_metric_data(Namespace="Other", MetricData=[
            {"MetricName": "mem", "Timestamp": ts, "Value": rng.random()}])
    backend = cloudwatch_backends["123456789012"]["us-east-1"]
    queries = _queries(services[:3], metrics)
    start, end = now - timedelta(seconds=45), now
    naive = (start.replace(tzinfo=None), end.replace(tzinfo=None))  # as moto's parser gives
    expected = original(backend, queries, *naive)
    got = backend.get_metric_data(queries, *naive)
    assert got == expected
    assert sum(len(r["values"]) for r in got) > 300  # the comparison saw real data
    assert "get_metric_data" not in backend.__dict__ and "get_all_metrics" not in backend.__dict__
    # through the API too, in the same order
    api = cw.get_metric_data(MetricDataQueries=queries, StartTime=start, EndTime=end)
    assert [r["Id"] for r in api["MetricDataResults"]] == [q["Id"] for q in queries]


@mock_aws
def test_expressions_go_to_moto_unchanged():
    emulator_server.install()
    cw = boto3.client("cloudwatch", region_name="us-east-1")
    now = datetime.now(UTC).replace(microsecond=0)
    cw.put_metric_data(Namespace="MB", MetricData=[
        {"MetricName": "cpu", "Timestamp": now - timedelta(seconds=s), "Value": float(s)}
        for s in range(1, 20)])
    queries = [{"Id": "a", "MetricStat": {"Metric": {"Namespace": "MB", "MetricName": "cpu"},
                                          "Period": 60, "Stat": "Sum"}, "ReturnData": False},
               {"Id": "b", "Expression": "a * 2"}]
    backend = cloudwatch_backends["123456789012"]["us-east-1"]
    window = ((now - timedelta(minutes=5)).replace(tzinfo=None),
              (now + timedelta(minutes=1)).replace(tzinfo=None))
    original = CloudWatchBackend.get_metric_data._migrationbox_original
    assert backend.get_metric_data(queries, *window) == original(backend, queries, *window)
    out = cw.get_metric_data(MetricDataQueries=queries, StartTime=window[0],
                             EndTime=window[1])
    assert [r["Id"] for r in out["MetricDataResults"]] == ["b"]
