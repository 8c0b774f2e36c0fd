"""Weekly retraining of the healer's models (``migrationbox_retrain_healer``).

Thin on purpose: ``migrationbox.healer.jobs`` does the work; MLflow tracks both models.
Retraining must never starve sensing: no run for a slot that passed before the platform
started (no ``start_date``), a catch-up run after downtime is skipped, and every task
runs at priority 1 in the one-slot pool ``migrationbox_training``.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.sdk import CronTriggerTimetable, Param, dag, get_current_context, task

from migrationbox.healer.jobs import TRAINING_POOL, run_this_slot

DOC = """\
### Retrain the healer's models

0. **not_a_backlog_run** — a *scheduled* run starting more than an hour after its weekly
   slot (the platform was down when it was due) is skipped: the next slot retrains.
   Manual runs always go ahead. A freshly started platform has no run at all: the first
   is the next Sunday midnight (UTC).
1. **retrain_forecasters** — one Prophet forecaster (model 2) per continuous metric of
   every watched server, fitted on the last `lookback_days` of CloudWatch history and
   logged to MLflow (and to the forecaster index sensing reads); sensing loads the
   newest one per metric.
2. **retrain_success_model** — the XGBoost remediation-success classifier on the stored
   remediation outcomes (newest 30 % held out); it is used by the decision engine only
   when its held-out Brier score beats the static matrix's.

Every task runs in the pool `migrationbox_training` (one slot) at priority 1: the heal
DAG's tasks (priority 100) go first and training holds at most one executor slot.
"""


@dag(
    dag_id="migrationbox_retrain_healer",
    # no start_date: a start_date makes Airflow run the latest past slot as soon as the
    # DAG appears (catchup or not), i.e. training at platform start-up
    schedule=CronTriggerTimetable("@weekly", timezone="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["migrationbox", "ml", "healer"],
    doc_md=DOC,
    default_args={"owner": "migrationbox-ml", "retries": 1,
                  "retry_delay": timedelta(minutes=5), "priority_weight": 1,
                  "weight_rule": "absolute", "pool": TRAINING_POOL},
    params={
        "lookback_days": Param(14, type="number", minimum=0.0001, maximum=90),
        "estates": Param(None, type=["null", "array"]),
        "min_records": Param(40, type="integer", minimum=2),
    },
)
def migrationbox_retrain_healer() -> None:
    @task.short_circuit(retries=0)
    def not_a_backlog_run() -> bool:
        return run_this_slot(get_current_context())

    @task(execution_timeout=timedelta(hours=2))
    def retrain_forecasters() -> dict[str, Any]:
        from migrationbox.healer.jobs import retrain_forecasters as run

        params = get_current_context()["params"]
        return run(params.get("estates"), timedelta(days=float(params["lookback_days"])))

    @task(execution_timeout=timedelta(hours=1))
    def retrain_success_model() -> dict[str, Any]:
        from migrationbox.healer.jobs import retrain_success_model as run

        return run(int(get_current_context()["params"]["min_records"]))

    gate = not_a_backlog_run()
    gate >> [retrain_forecasters(), retrain_success_model()]


migrationbox_retrain_healer()
