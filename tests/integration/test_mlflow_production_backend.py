"""MLflow in the production shape: tracking on PostgreSQL, artifacts in S3 (the emulator).

One worker (this process) trains and registers models through MigrationBox's own code
paths: the healer's success classifier (``learning.train_success_model``), a healer
forecaster (``tracking.log_forecaster``) and a sizing model registered and promoted
through the sizing registry (``registry.experiment_id`` / ``promote``). Another "host"
(a separate process started with nothing but a component's environment: the tracking
URI, the artifact root, the S3 endpoint and the ``aws_default`` connection; its own
runtime folder and HOME) loads all three back. The artifacts must be objects in the
emulator's bucket, and none of them files on this process's disk.

Skips, saying why, when PostgreSQL does not answer on loopback.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from migrationbox import mlflow_backend as mb
from migrationbox.store.testing import postgres_unavailable_reason, temporary_postgres_database

pytestmark = pytest.mark.integration

#: a sizing model small enough to log in a second, as MLflow "models from code": the file
#: is stored with the model, so the loading process needs nothing from this test module
SIZING_MODEL_CODE = '''
import mlflow
from mlflow.pyfunc import PythonModel


class HeadroomSizer(PythonModel):
    """vCPUs to provision: the observed p95 plus 30 % headroom."""

    def predict(self, context, model_input, params=None):
        return (model_input["cpu_p95_cores"] * 1.3).round(3).tolist()


mlflow.models.set_model(HeadroomSizer())
'''

#: what the other host runs: imports first (they take most of its time, and overlap with
#: the training here), then one job read from stdin, one JSON result line on stdout
LOADER = r'''
import json, sys, time
t0 = time.perf_counter()
import mlflow, pandas as pd
from migrationbox.healer import learning, tracking
from migrationbox.sizing import registry
print("READY", round(time.perf_counter() - t0, 1), flush=True)
job = json.loads(sys.stdin.readline())
t1 = time.perf_counter()
healer = learning.load_success_model(job["healer_model_uri"])
frame = learning._frame(job["healer_rows"])
card = registry.champion_card()
sizer = registry.load_model(registry.SIZING_MODEL)
forecaster = tracking.load_latest_forecaster(job["metric_key"])
when = pd.DatetimeIndex(job["forecast_at"])
print("RESULT " + json.dumps({
    "healer_p": healer.predict_proba(frame)[:, 1].tolist(),
    "sizing": list(sizer.predict(pd.DataFrame({"cpu_p95_cores": job["cpu_p95_cores"]}))),
    "card": {k: card[k] for k in ("version", "reason", "metrics")},
    "forecast_trained_until": forecaster.trained_until.isoformat(),
    "forecast_yhat": forecaster.predict(when)["yhat"].tolist(),
    "import_s": round(t1 - t0, 1), "load_s": round(time.perf_counter() - t1, 1),
}), flush=True)
'''


@pytest.fixture
def pg_url() -> Iterator[str]:
    reason = postgres_unavailable_reason()
    if reason:
        pytest.skip(reason)
    with temporary_postgres_database("mbx_mlflow") as url:
        yield url


def outcomes(n: int = 120) -> list[Any]:
    """Remediation outcomes with a pattern to learn: restarts fail at night."""
    from migrationbox.healer.decision import load_matrix
    from migrationbox.healer.learning import RemediationRecord

    rng = random.Random(3)
    rows = [r for r in load_matrix().rows if r.auto_heal_allowed]
    at = datetime(2026, 3, 2, tzinfo=UTC)
    out = []
    for _ in range(n):
        at += timedelta(minutes=rng.randint(30, 240))
        row = rng.choice(rows)
        night = not 7 <= at.hour < 19
        p = 0.15 if row.action == "rolling_restart" and night else 0.92
        out.append(RemediationRecord(timestamp=at, anomaly_type=row.id, action=row.action,
                                     success=rng.random() < p, severity="P3",
                                     confidence_before=row.confidence,
                                     confidence_after=row.confidence))
    return out


def _waiting_advisory_locks(engine: Any) -> int:
    from sqlalchemy import text

    with engine.connect() as conn:
        return int(conn.execute(text(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        )).scalar_one())


def _schema_waits_for_the_lock(pg_url: str) -> None:
    """Another process holding the schema lock: ``prepare`` waits (no table is created
    meanwhile), then creates the schema once the lock is free."""
    import mlflow.store.tracking.sqlalchemy_store  # noqa: F401  (imported before timing)
    from sqlalchemy import create_engine, inspect, text
    from sqlalchemy.pool import NullPool

    holder = create_engine(pg_url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    errors: list[BaseException] = []

    def first_use() -> None:
        try:
            mb.prepare(pg_url)
        except BaseException as exc:  # re-raised in the test thread
            errors.append(exc)

    worker = threading.Thread(target=first_use, name="first-use")
    try:
        with holder.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": mb.SCHEMA_LOCK_KEY})
            worker.start()
            deadline = time.monotonic() + 60
            while _waiting_advisory_locks(holder) == 0:
                assert worker.is_alive() and time.monotonic() < deadline, \
                    f"prepare did not wait for the schema lock: {errors}"
                time.sleep(0.1)
            assert "experiments" not in inspect(holder).get_table_names()
            conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": mb.SCHEMA_LOCK_KEY})
        worker.join(180)
        assert not worker.is_alive() and not errors, errors
        tables = set(inspect(holder).get_table_names())
        assert {"experiments", "runs", "registered_models", "model_versions"} <= tables
    finally:
        holder.dispose()


def _local_artifact_files(folder: Path) -> list[str]:
    names = {"MLmodel", "model.skops", "python_model.py", "conda.yaml"}
    return sorted(str(p) for p in folder.rglob("*") if p.name in names
                  or (p.is_dir() and p.name in ("artifacts", "mlruns")))


def test_a_model_trained_here_loads_on_another_host(
        pg_url: str, aws_emulator: Any, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    import boto3

    started = time.perf_counter()
    bucket = f"mbx-mlflow-{uuid.uuid4().hex[:10]}"
    root = f"s3://{bucket}/artifacts"
    component_env = {**mb.production_mlflow_env(pg_url, root, aws_emulator.url),
                     "AIRFLOW_CONN_AWS_DEFAULT": aws_emulator.airflow_connection()}
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE",
                 mb.AWS_CONN_ENV):
        monkeypatch.delenv(name, raising=False)
    for name, value in component_env.items():
        monkeypatch.setenv(name, value)
    here = tmp_path / "worker-a"
    monkeypatch.setenv("MIGRATIONBOX_HOME", str(here))
    # this test makes the connection's session boto3's default: undone afterwards
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", boto3.DEFAULT_SESSION)
    monkeypatch.setattr(mb, "_credentials_installed", False)
    mlruns_before = (Path.cwd() / "mlruns").exists()

    other = tmp_path / "worker-b"
    (other / "home").mkdir(parents=True)
    loader_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8",
                  "HOME": str(other / "home"), "AIRFLOW_HOME": str(other / "airflow"),
                  "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                  "MIGRATIONBOX_HOME": str(other / "runtime"), **component_env}
    loader_log = tmp_path / "loader.stderr"
    with loader_log.open("wb") as err:
        loader = subprocess.Popen([sys.executable, "-c", LOADER], env=loader_env,
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
                                  text=True, start_new_session=True, cwd=other)
    try:
        assert mb.ensure_artifact_bucket(root, aws_emulator.url) is True
        assert mb.ensure_artifact_bucket(root, aws_emulator.url) is False  # idempotent
        t = time.perf_counter()
        _schema_waits_for_the_lock(pg_url)
        schema_s = time.perf_counter() - t

        # -- the healer's classifier, through its own training path ----------------
        import mlflow
        import pandas as pd

        from migrationbox.healer import learning, tracking
        from migrationbox.healer.decision import load_matrix
        from migrationbox.healer.detect import ForecastConfig, Forecaster
        from migrationbox.sizing import registry

        t = time.perf_counter()
        report = learning.train_success_model(outcomes(), load_matrix(), min_records=40)
        assert report.trained and report.model_uri, report.reason
        rows = [learning.features("health_check_failed", "rolling_restart", "P3", "self",
                                  datetime(2026, 6, 1, hour, tzinfo=UTC)) for hour in (2, 12)]
        healer_p = report.model.predict_proba(learning._frame(rows))[:, 1].tolist()

        # -- a healer forecaster ---------------------------------------------------
        index = pd.date_range("2026-06-01", periods=48, freq="5min", tz="UTC")
        series = pd.Series([40.0 + (i % 12) + 0.1 * i for i in range(48)], index=index)
        forecaster = Forecaster.fit(series, ForecastConfig())
        metric_key = "shop/web-01/cpu_utilization_pct"
        tracking.log_forecaster(metric_key, forecaster)
        # a shared store: this host's index keeps searching for other hosts' forecasters
        assert "rebuilt_at" in (tracking._read_index(tracking.index_dir(pg_url)) or {})
        forecast_at = pd.date_range(index[-1] + timedelta(minutes=5), periods=3, freq="5min")
        yhat = forecaster.predict(forecast_at)["yhat"].tolist()

        # -- a sizing model, registered and promoted through the sizing registry ------
        code = tmp_path / "headroom_sizer.py"
        code.write_text(SIZING_MODEL_CODE, encoding="utf-8")
        with mlflow.start_run(experiment_id=registry.experiment_id(), run_name="headroom"):
            mlflow.log_metric("score_monthly_usd", 12.5)
            info = mlflow.pyfunc.log_model(
                name="model", python_model=str(code),
                registered_model_name=registry.SIZING_MODEL,
                pip_requirements=[f"mlflow=={mlflow.__version__}"])
        version = str(info.registered_model_version)
        registry.promote(registry.SIZING_MODEL, version, "integration: first champion",
                         {"score_monthly_usd": 12.5})
        train_s = time.perf_counter() - t

        # -- where everything went -----------------------------------------------------
        client = registry.configure()
        for name in (registry.EXPERIMENT, learning.EXPERIMENT, tracking.FORECAST_EXPERIMENT):
            experiment = client.get_experiment_by_name(name)
            assert experiment.artifact_location == f"{root}/{name}"
        assert client.get_run(report.run_id).info.artifact_uri.startswith(
            f"{root}/{learning.EXPERIMENT}/")
        s3 = boto3.client("s3", endpoint_url=aws_emulator.url, region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
        keys = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(
            Bucket=bucket) for o in page.get("Contents", [])]
        assert all(k.startswith("artifacts/") for k in keys), keys
        for experiment, ending in ((learning.EXPERIMENT, "/MLmodel"),
                                   (learning.EXPERIMENT, "/model.skops"),
                                   (registry.EXPERIMENT, "/MLmodel"),
                                   (registry.EXPERIMENT, "/headroom_sizer.py"),
                                   (tracking.FORECAST_EXPERIMENT, "/forecaster.json")):
            assert any(k.startswith(f"artifacts/{experiment}/") and k.endswith(ending)
                       for k in keys), (experiment, ending, keys)
        assert _local_artifact_files(here) == []
        assert _local_artifact_files(tmp_path / "worker-b") == []
        assert (Path.cwd() / "mlruns").exists() == mlruns_before

        # -- the other host loads all three with nothing but the environment -----------
        job = json.dumps({
            "healer_model_uri": report.model_uri, "healer_rows": rows,
            "metric_key": metric_key, "forecast_at": [str(w) for w in forecast_at],
            "cpu_p95_cores": [1.0, 2.5]})
        out, _ = loader.communicate(input=job + "\n", timeout=300)
        lines = [line for line in out.splitlines() if line.startswith("RESULT ")]
        assert loader.returncode == 0 and lines, (
            f"loader exited {loader.returncode}: {out[-2000:]}\n"
            f"{loader_log.read_text(errors='replace')[-4000:]}")
        result = json.loads(lines[-1].removeprefix("RESULT "))
    finally:
        if loader.poll() is None:
            os.killpg(loader.pid, signal.SIGKILL)
            loader.wait(10)

    assert result["healer_p"] == pytest.approx(healer_p)
    assert result["sizing"] == pytest.approx([1.3, 3.25])
    assert result["card"] == {"version": version, "reason": "integration: first champion",
                              "metrics": {"score_monthly_usd": 12.5}}
    assert result["forecast_trained_until"] == forecaster.trained_until.isoformat()
    assert result["forecast_yhat"] == pytest.approx(yhat)
    # the other host kept nothing but the forecaster index (its documented local cache)
    assert _local_artifact_files(other) == []
    print(f"\nMLflow on PostgreSQL + S3: schema {schema_s:.1f}s, train+log {train_s:.1f}s, "
          f"other host import {result['import_s']}s load {result['load_s']}s, "
          f"total {time.perf_counter() - started:.1f}s, {len(keys)} objects")
