"""The weekly retraining DAG runs green on a real (migrated, temporary) Airflow database.

``dag.test()`` runs every task in this process against the session's temporary
AIRFLOW_HOME (tests/conftest.py); the MLflow store lives in a temporary MigrationBox
runtime folder. The run uses the ``quick`` params (24 VMs of the real Bitbrains trace,
no Prophet features) with ``sizing_only`` (what ``make demo`` triggers, on all VMs there)
so it finishes in about a minute on two cores.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DAG_FILE = REPO / "dags" / "retrain_sizing.py"

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def airflow_db() -> None:
    env = {**os.environ, "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    result = subprocess.run([str(Path(sys.executable).with_name("airflow")), "db", "migrate"],
                            env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]


@pytest.fixture()
def runtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
            request: pytest.FixtureRequest) -> Path:
    from migrationbox.sizing.backtest import trace_path

    trace_path()  # the trace ships with the project: its absence is a failure
    # dag.test() finds the DAG through the dags-folder bundle of the (temporary)
    # AIRFLOW_HOME, whose path Airflow fixed when its configuration loaded
    from airflow.configuration import conf

    dags = Path(conf.get("core", "dags_folder")).resolve()
    if not dags.is_relative_to(Path(tempfile.gettempdir()).resolve()):
        pytest.skip(f"needs a temporary AIRFLOW_HOME; dags folder is {dags}")
    dags.mkdir(parents=True, exist_ok=True)
    copy = dags / DAG_FILE.name
    shutil.copy(DAG_FILE, copy)
    request.addfinalizer(lambda: copy.unlink(missing_ok=True))
    monkeypatch.setenv("MIGRATIONBOX_HOME", str(tmp_path / "mb"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.syspath_prepend(str(REPO))
    return tmp_path / "mb"


def _dag():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAG_FILE), safe_mode=False)
    assert not bag.import_errors, bag.import_errors
    return bag.dags["migrationbox_retrain_sizing"]


def test_dag_shape_and_metadata() -> None:
    dag = _dag()
    assert dag is not None
    assert set(dag.task_ids) == {"not_a_backlog_run", "check_training_data",
                                 "train_sizing_model", "train_forecaster",
                                 "promote_sizing_model", "promote_forecaster"}
    assert dag.tags and "migrationbox" in dag.tags
    assert dag.doc_md and "great-expectations" in dag.doc_md
    from test_healer_retrain_dag import assert_never_starves_sensing

    assert_never_starves_sensing(dag)
    for t in dag.tasks:
        assert t.owner == "migrationbox-ml"
    assert dag.get_task("check_training_data").retries == 0
    assert dag.get_task("train_sizing_model").retries == 2
    assert dag.get_task("promote_sizing_model").upstream_task_ids == {"train_sizing_model"}
    assert dag.get_task("train_sizing_model").upstream_task_ids == {"check_training_data"}
    assert dag.get_task("check_training_data").upstream_task_ids == {"not_a_backlog_run"}


def test_a_scheduled_run_long_after_its_slot_is_a_backlog_run() -> None:
    import importlib.util
    from datetime import UTC, datetime, timedelta

    spec = importlib.util.spec_from_file_location("retrain_sizing_dag", DAG_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    now = datetime(2026, 12, 7, 6, 0, tzinfo=UTC)
    slot = datetime(2026, 12, 7, 0, 0, tzinfo=UTC)  # the weekly slot, 6 hours ago
    assert module._is_backlog("scheduled", slot, now)
    assert module._is_backlog("DagRunType.SCHEDULED".lower(), slot, now)
    assert not module._is_backlog("scheduled", slot, slot + timedelta(minutes=5))
    assert not module._is_backlog("manual", slot, now)  # a user's run always goes ahead


def test_dag_runs_green_and_promotes_a_champion(airflow_db: None, runtime: Path) -> None:
    from migrationbox.sizing import registry

    dag = _dag()
    run = dag.test(run_conf={"quick": True, "sizing_only": True})
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert run.state == "success", states
    assert states.pop("train_forecaster") == "skipped"
    assert states.pop("promote_forecaster") == "skipped"
    assert set(states.values()) == {"success"}

    sizing = registry.champion(registry.SIZING_MODEL)
    assert sizing is not None
    assert registry.champion(registry.FORECAST_MODEL) is None
    assert "promotion_reason" in sizing.tags
    assert (runtime / "mlflow" / "mlflow.db").exists()
    # the champion's evaluation is what `migrationbox size` shows as measured risk
    table = registry.champion_risk_table()
    assert table is not None
    assert {"balanced", "conservative", "azure_migrate", "ml_discovery",
            "ml_discovery_matched"} <= set(table["methods"])
    # and planning can load the champion model and predict with it
    loaded = registry.load_champion_ensemble()
    assert loaded is not None
    model, champ = loaded
    assert champ.version == sizing.version and model.scores
