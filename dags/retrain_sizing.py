"""Weekly retraining of the sizing and forecasting models (``migrationbox_retrain_sizing``).

Thin on purpose: every task calls one function of ``ml.sizing.pipeline``; nothing heavy
is imported at parse time.
"""

from __future__ import annotations

import sys
from datetime import timedelta
from typing import Any

from airflow.sdk import CronTriggerTimetable, Param, dag, get_current_context, task

from migrationbox.healer.jobs import TRAINING_POOL, is_backlog_run, run_this_slot

DOC = """\
### Retrain the sizing and forecasting models

0. **not_a_backlog_run**: a *scheduled* run that starts more than an hour after its weekly
   slot (the platform was down when it was due) is skipped: training must not take the
   CPU and the executor slots at platform start-up. Manual runs always go ahead. (A
   freshly started platform has no run at all: the first one is the next weekly slot.)
   Every task runs in the one-slot pool `migrationbox_training` at priority 1.
1. **check_training_data**: load the Bitbrains trace, apply the documented cleaning and
   run the great-expectations gate (no missing values, percentages in 0-100, positive
   capacities, timestamps strictly increasing per VM). A failed expectation fails this
   task with the list of failures, and nothing downstream runs: no training, no promotion.
2. **train_sizing_model** / **train_forecaster**: train the challengers (LightGBM quantile
   regression of the next 30 days' p95 with split-conformal risk calibration on other VMs;
   Prophet configuration), evaluate them on held-out VMs in a later period against the
   rule baselines (share short of capacity *and* capacity/cost), and log parameters,
   metrics, dataset digests, signatures, tables and plots to MLflow; each is registered
   as a new model version.
3. **promote_sizing_model** / **promote_forecaster**: re-evaluate the current champion on
   the *same* held-out VMs; the `champion` alias moves only when the challenger is cheaper
   at no more risk (forecaster: lower MAE), and the version is tagged with the reason.

Params: `quick` (small subsample, about a minute), `sizing_only` (skip the Prophet
forecaster: what `make demo` runs), `max_vms`, `use_prophet_features`.
Tracking: `MLFLOW_TRACKING_URI`, else the SQLite store under the MigrationBox runtime folder.
"""


def _pipeline() -> Any:
    """``ml.sizing.pipeline``; the project root is put on the path when needed. Every
    task calls it first, so it also lowers the task's CPU priority (training yields the
    CPU to sensing: ``jobs.lower_cpu_priority``)."""
    from migrationbox.healer.jobs import lower_cpu_priority

    lower_cpu_priority()
    try:
        from ml.sizing import pipeline
    except ModuleNotFoundError:
        from migrationbox.config import project_root

        sys.path.insert(0, str(project_root()))
        from ml.sizing import pipeline
    return pipeline


#: the guard against catch-up runs and the training pool, shared with the healer's
#: retraining DAG
_is_backlog = is_backlog_run


def _conf() -> dict[str, Any]:
    params = get_current_context()["params"]
    conf: dict[str, Any] = {"quick": bool(params.get("quick"))}
    if params.get("max_vms") is not None:
        conf["max_vms"] = int(params["max_vms"])
    if params.get("use_prophet_features") is not None:
        conf["use_prophet_features"] = bool(params["use_prophet_features"])
    return conf


@dag(
    dag_id="migrationbox_retrain_sizing",
    # weekly, at the *next* Sunday midnight (UTC) after the DAG appears: no start_date,
    # so no run for a slot that passed before the platform started (a start_date makes
    # Airflow run the latest past slot at once, catchup or not)
    schedule=CronTriggerTimetable("@weekly", timezone="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["migrationbox", "ml", "sizing"],
    doc_md=DOC,
    # low priority in a one-slot pool: sensing and healing never wait behind retraining,
    # and training never holds more than one executor slot
    default_args={"owner": "migrationbox-ml", "retries": 2,
                  "retry_delay": timedelta(minutes=5), "priority_weight": 1,
                  "weight_rule": "absolute", "pool": TRAINING_POOL},
    params={
        "quick": Param(False, type="boolean", description="small subsample (tests, demos)"),
        "max_vms": Param(None, type=["null", "integer"], minimum=5,
                         description="train and evaluate on this many VMs of the trace"),
        "use_prophet_features": Param(None, type=["null", "boolean"],
                                      description="Prophet forecast features (slow)"),
        "sizing_only": Param(False, type="boolean",
                             description="train the sizing model only (skip the forecaster)"),
    },
)
def migrationbox_retrain_sizing() -> None:
    @task.short_circuit(retries=0)
    def not_a_backlog_run() -> bool:
        return run_this_slot(get_current_context())

    @task(retries=0)  # a failed quality gate is deterministic: retrying cannot fix it
    def check_training_data() -> dict[str, Any]:
        return _pipeline().check_data(_conf())

    @task(execution_timeout=timedelta(hours=2))
    def train_sizing_model(_: dict[str, Any]) -> dict[str, Any]:
        return _pipeline().train_sizing(_conf())

    @task(execution_timeout=timedelta(hours=2))
    def train_forecaster(_: dict[str, Any]) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowSkipException

        if get_current_context()["params"].get("sizing_only"):
            raise AirflowSkipException("sizing_only: the forecaster is not retrained")
        return _pipeline().train_forecaster(_conf())

    @task
    def promote_sizing_model(candidate: dict[str, Any]) -> dict[str, Any]:
        return _pipeline().promote_sizing(candidate, _conf())

    @task
    def promote_forecaster(candidate: dict[str, Any]) -> dict[str, Any]:
        return _pipeline().promote_forecaster(candidate, _conf())

    gate = check_training_data()
    not_a_backlog_run() >> gate
    promote_sizing_model(train_sizing_model(gate))
    promote_forecaster(train_forecaster(gate))


migrationbox_retrain_sizing()
