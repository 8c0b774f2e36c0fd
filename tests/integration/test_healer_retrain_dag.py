"""The healer's weekly retraining DAG runs green with ``dag.test()`` on a migrated
temporary Airflow database, and trains the success classifier from stored outcomes."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DAG_FILE = REPO / "dags" / "retrain_healer.py"

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]


def _dag():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAG_FILE), safe_mode=False)
    assert not bag.import_errors, bag.import_errors
    return bag.dags["migrationbox_retrain_healer"]


def test_dag_shape() -> None:
    dag = _dag()
    assert set(dag.task_ids) == {"not_a_backlog_run", "retrain_forecasters",
                                 "retrain_success_model"}
    assert dag.get_task("not_a_backlog_run").downstream_task_ids == {
        "retrain_forecasters", "retrain_success_model"}
    assert "healer" in dag.tags
    assert_never_starves_sensing(dag)


def assert_never_starves_sensing(dag) -> None:
    """Weekly, no run for a slot that passed before the DAG appeared, priority 1 in the
    one-slot training pool the platform's settings file declares."""
    import yaml
    from airflow.timetables.base import TimeRestriction

    from migrationbox.healer.jobs import TRAINING_POOL

    assert dag.start_date is None and not dag.catchup
    assert type(dag.timetable).__name__ == "CronTriggerTimetable"
    # what the scheduler asks the timetable for a DAG with no run yet: the next slot,
    # never the one that passed (a start_date made it run at platform start-up)
    from airflow.serialization.decoders import decode_timetable
    from airflow.serialization.encoders import encode_timetable

    core = decode_timetable(encode_timetable(dag.timetable))
    assert core.summary in ("@weekly", "0 0 * * 0")
    info = core.next_dagrun_info(last_automated_data_interval=None,
                                 restriction=TimeRestriction(None, None, False))
    assert info is not None and info.run_after > datetime.now(UTC)
    assert all(t.priority_weight == 1 and t.weight_rule == "absolute" for t in dag.tasks)
    assert all(t.pool == TRAINING_POOL for t in dag.tasks)
    pools = yaml.safe_load((REPO / "airflow_settings.yaml").read_text())["airflow"]["pools"]
    assert {p["pool_name"]: p["pool_slot"] for p in pools}[TRAINING_POOL] == 1


def test_retraining_skips_catch_up_runs_only() -> None:
    from migrationbox.healer.jobs import is_backlog_run

    slot = datetime(2026, 12, 6, 0, 0, tzinfo=UTC)
    assert is_backlog_run("scheduled", slot, slot + timedelta(hours=6))
    assert is_backlog_run("DagRunType.SCHEDULED", slot, slot + timedelta(hours=6))
    assert not is_backlog_run("scheduled", slot, slot + timedelta(minutes=5))
    assert not is_backlog_run("manual", slot, slot + timedelta(days=30))
    assert not is_backlog_run("scheduled", None, slot)


def test_heal_dag_shape() -> None:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO / "dags" / "heal.py"), safe_mode=False)
    assert not bag.import_errors, bag.import_errors
    dag = bag.dags["migrationbox_heal"]
    assert dag.max_active_runs == 1
    # ahead of anything else queued: retraining runs at priority 1
    assert all(t.priority_weight >= 100 and t.weight_rule == "absolute" for t in dag.tasks)
    # approvals are asked in their own DAG, so sensing never waits for a person
    assert not any(t.task_type.startswith("HITL") or "Approval" in t.task_type
                   for t in dag.tasks)
    trigger = dag.get_task("request_approval")
    assert trigger.upstream_task_ids == {"approval_requests"}
    assert trigger.partial_kwargs["trigger_dag_id"] == "migrationbox_heal_approval"

    # the chosen mechanism: scheduled on an asset the estate watch (triggerer) watches
    from migrationbox.healer.watch_trigger import SIGNALS_ASSET, EstateWatchTrigger

    assert type(dag.timetable).__name__ == "AssetTriggeredTimetable"
    (signals,) = dag.schedule
    assert signals.name == SIGNALS_ASSET
    assert [type(w.trigger) for w in signals.watchers] == [EstateWatchTrigger]

    # the measured alternatives: continuous runs, or a deferrable wait before each pass
    import os

    def heal_dag(mechanism: str):
        os.environ["MIGRATIONBOX_HEAL_MECHANISM"] = mechanism
        try:
            return DagBag(dag_folder=str(REPO / "dags" / "heal.py"), safe_mode=False
                          ).dags["migrationbox_heal"]
        finally:
            del os.environ["MIGRATIONBOX_HEAL_MECHANISM"]

    assert heal_dag("window").schedule == "@continuous"
    wait = heal_dag("deferrable").get_task("wait_interval")
    assert wait.deferrable and wait.downstream_task_ids == {"sense_and_heal"}
    os.environ["MIGRATIONBOX_HEAL_MECHANISM"] = "every-second"
    try:
        bad = DagBag(dag_folder=str(REPO / "dags" / "heal.py"), safe_mode=False)
    finally:
        del os.environ["MIGRATIONBOX_HEAL_MECHANISM"]
    assert "expected one of asset, window, deferrable" in str(bad.import_errors)

    bag = DagBag(dag_folder=str(REPO / "dags" / "heal_approval.py"), safe_mode=False)
    assert not bag.import_errors, bag.import_errors
    approval = bag.dags["migrationbox_heal_approval"]
    ask = approval.get_task("approve_remediation")
    assert ask.options == ["Approve", "Reject"] and ask.defaults == ["Reject"]
    assert ask.upstream_task_ids == {"describe_incident"}
    assert "approve_remediation" in approval.get_task("apply_decision").upstream_task_ids


@pytest.fixture()
def runtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request) -> Path:
    from airflow.configuration import conf

    dags = Path(conf.get("core", "dags_folder")).resolve()
    if not dags.is_relative_to(Path(tempfile.gettempdir()).resolve()):
        pytest.skip(f"needs a temporary AIRFLOW_HOME; dags folder is {dags}")
    env = {**os.environ, "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    done = subprocess.run([str(Path(sys.executable).with_name("airflow")), "db", "migrate"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    dags.mkdir(parents=True, exist_ok=True)
    copy = dags / DAG_FILE.name
    shutil.copy(DAG_FILE, copy)
    request.addfinalizer(lambda: copy.unlink(missing_ok=True))
    monkeypatch.setenv("MIGRATIONBOX_HOME", str(tmp_path / "mb"))
    monkeypatch.setenv("MIGRATIONBOX_STORE_URL", f"sqlite:///{tmp_path / 'store.db'}")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return tmp_path / "mb"


def _outcomes(n: int) -> None:
    """Outcomes with a learnable pattern: restarts at night fail more often."""
    from migrationbox.healer.decision import load_matrix
    from migrationbox.healer.learning import (
        ActionPosteriors,
        SqlRemediationLog,
        record_outcome,
    )
    from migrationbox.store.db import engine

    rng = random.Random(3)
    log = SqlRemediationLog(engine())
    post = ActionPosteriors(load_matrix())
    start = datetime(2026, 10, 1, tzinfo=UTC)
    for i in range(n):
        at = start + timedelta(hours=7 * i)
        action, anomaly = rng.choice([("horizontal_scale", "high_cpu"),
                                      ("rolling_restart", "health_check_failed")])
        fail_p = 0.6 if (action == "rolling_restart" and at.hour < 6) else 0.08
        record_outcome(log, post, anomaly_type=anomaly, action=action,
                       success=rng.random() > fail_p, timestamp=at, resource="web-01",
                       time_to_recovery_seconds=60.0)


def test_retrain_dag_runs_green_and_tracks_the_classifier(runtime: Path) -> None:
    _outcomes(80)
    run = _dag().test(run_conf={"estates": [], "min_records": 40})
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert run.state == "success", states
    assert (runtime / "mlflow" / "mlflow.db").exists()
    import mlflow

    from migrationbox.healer.tracking import mlflow_tracking_uri

    mlflow.set_tracking_uri(mlflow_tracking_uri())
    runs = mlflow.search_runs(search_all_experiments=True, output_format="list")
    tracked = [r for r in runs if "holdout_brier_model" in r.data.metrics]
    assert tracked, [r.data.metrics for r in runs]
    assert "holdout_brier_matrix" in tracked[0].data.metrics
