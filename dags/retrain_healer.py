"""Weekly retraining of the healer's models (``migrationbox_retrain_healer``).

Thin on purpose: ``migrationbox.healer.jobs`` does the work; MLflow tracks both models.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import Param, dag, get_current_context, task

DOC = """\
### Retrain the healer's models

1. **retrain_forecasters** — one Prophet forecaster (model 2) per continuous metric of
   every watched server, fitted on the last `lookback_days` of CloudWatch history and
   logged to MLflow; sensing loads the newest one per metric.
2. **retrain_success_model** — the XGBoost remediation-success classifier on the stored
   remediation outcomes (newest 30 % held out); it is used by the decision engine only
   when its held-out Brier score beats the static matrix's.
"""


@dag(
    dag_id="migrationbox_retrain_healer",
    schedule="@weekly",
    start_date=datetime(2026, 1, 5),
    catchup=False,
    max_active_runs=1,
    tags=["migrationbox", "ml", "healer"],
    doc_md=DOC,
    default_args={"owner": "migrationbox-ml", "retries": 1,
                  "retry_delay": timedelta(minutes=5)},
    params={
        "lookback_days": Param(14, type="number", minimum=0.0001, maximum=90),
        "estates": Param(None, type=["null", "array"]),
        "min_records": Param(40, type="integer", minimum=2),
    },
)
def migrationbox_retrain_healer() -> None:
    @task(execution_timeout=timedelta(hours=2))
    def retrain_forecasters() -> dict[str, Any]:
        from migrationbox.healer.jobs import retrain_forecasters as run

        params = get_current_context()["params"]
        return run(params.get("estates"), timedelta(days=float(params["lookback_days"])))

    @task(execution_timeout=timedelta(hours=1))
    def retrain_success_model() -> dict[str, Any]:
        from migrationbox.healer.jobs import retrain_success_model as run

        return run(int(get_current_context()["params"]["min_records"]))

    retrain_forecasters()
    retrain_success_model()


migrationbox_retrain_healer()
