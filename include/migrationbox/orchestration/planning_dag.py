"""The discover-and-plan DAG: validate an estate folder, store it, plan it, publish the plan.

Triggered with a conf naming the inventory (``{"estate_path": ..., "estate": ...}``) from
the UI, by REST or by a file-arrival sensor in production. It emits the
``migrationbox://plans`` Asset when a new plan version is stored, so that anything that
follows plans (reports, Teams/Jira sync) can be Asset-scheduled.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

PLANS_ASSET_URI = "migrationbox://plans"


def _resolve(path: str):
    """Relative paths are relative to the project, not to the worker's working folder."""
    from pathlib import Path

    from migrationbox.config import project_root

    p = Path(path)
    return p if p.is_absolute() else project_root() / p


def validate_estate(estate_path: str, **_: Any) -> dict[str, Any]:
    """Validate the inventory; quarantine bad records beside the run's artifacts."""
    from pathlib import Path

    from migrationbox.config import artifacts_dir
    from migrationbox.inventory.validation import validate_inventory, write_quarantine

    report = validate_inventory(_resolve(estate_path))
    quarantine = None
    if report.quarantined:
        quarantine = artifacts_dir() / "quarantine" / Path(estate_path).name
        write_quarantine(report, quarantine)
    print(report.summary())
    for line in report.issue_lines():
        print(line)
    return {
        "valid": len(report.valid),
        "quarantined": len(report.quarantined),
        "quarantine_dir": str(quarantine) if quarantine else None,
        "summary": report.summary(),
    }


def plan_and_publish(estate_path: str, estate: str | None, max_per_wave: int | None,
                     **context: Any) -> dict[str, Any]:
    from airflow.sdk import Asset

    from migrationbox.planning.models import PlanSettings
    from migrationbox.planning.render import render_sequence
    from migrationbox.service import plan_estate

    settings = PlanSettings(**({"max_servers_per_wave": max_per_wave} if max_per_wave else {}))
    result = plan_estate(_resolve(estate_path), estate=estate or None, settings=settings,
                         allow_quarantine=True)
    print(render_sequence(result.plan))
    context["outlet_events"][Asset(PLANS_ASSET_URI)].extra = {
        "estate": result.plan.estate,
        "version": result.plan.version,
        "waves": len(result.plan.waves),
    }
    return {"estate": result.plan.estate, "version": result.plan.version,
            "waves": len(result.plan.waves), "spec": str(result.spec_path)}


def build_planning_dag():
    from airflow.providers.standard.operators.python import PythonOperator
    from airflow.sdk import DAG, Asset, Param

    with DAG(
        dag_id="migrationbox__discover_and_plan",
        description="validate an estate, store it, plan it into waves, publish the wave DAGs",
        schedule=None,
        start_date=datetime(2024, 1, 1),
        catchup=False,
        max_active_runs=1,
        is_paused_upon_creation=False,
        render_template_as_native_obj=True,
        tags=["migrationbox", "planning"],
        doc_md=__doc__,
        default_args={"owner": "migration-engineering", "retries": 1,
                      "retry_delay": timedelta(seconds=30)},
        params={
            "estate_path": Param("include/estates/sample", type="string",
                                 description="folder of JSON records, .json or .jsonl"),
            "estate": Param(None, type=["null", "string"], description="estate name"),
            "max_per_wave": Param(None, type=["null", "integer"], minimum=1),
        },
    ) as dag:
        validate = PythonOperator(
            task_id="validate",
            python_callable=validate_estate,
            op_kwargs={"estate_path": "{{ params.estate_path }}"},
        )
        plan = PythonOperator(
            task_id="plan",
            python_callable=plan_and_publish,
            op_kwargs={
                "estate_path": "{{ params.estate_path }}",
                "estate": "{{ params.estate }}",
                "max_per_wave": "{{ params.max_per_wave }}",
            },
            outlets=[Asset(PLANS_ASSET_URI)],
        )
        validate >> plan
    return dag
