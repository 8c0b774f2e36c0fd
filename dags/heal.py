"""The autonomous healer (``migrationbox_heal``): sense, detect, root-cause, remediate.

Thin on purpose: every task calls one function of ``migrationbox.healer.jobs``. The DAG is
continuous (one run after the other, ``max_active_runs=1``); each run's ``sense_and_heal``
task senses every ``interval_s`` for ``window_s`` (conf), so the sensing cadence is
seconds while the scheduler handles one run per window. Risky remediations (killing
queries, restoring data) wait for a person at ``approve_risky_remediation``.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from typing import Any

from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk import dag, get_current_context, task

DOC = """\
### MigrationBox healer

1. **sense_and_heal** — sensing passes over the migrated resources of every completed
   wave (health endpoints + CloudWatch metrics), two detectors, root cause on the plan's
   dependency graph, the decision matrix; low-risk remediations run, are verified and
   rolled back when they do not help; every incident is stored
   (`migrationbox heal incidents list`).
2. **has_pending_approvals** — skips the rest when nothing risky waits.
3. **approve_risky_remediation** — a person approves or rejects (HITL).
4. **execute_approved** — runs the approved remediations.

Conf: `estates`, `window_s` (300), `interval_s` (10), `max_passes`, `sustain_scale`,
`verify_timeout_s`, `stop_when_idle`. Teams notifications: connection
`migrationbox_healer_teams` (off when it does not exist).
"""


#: "@continuous" in production; "none" leaves only manual/REST runs (tests, demos)
_SCHEDULE = os.environ.get("MIGRATIONBOX_HEAL_SCHEDULE", "@continuous")


@dag(
    dag_id="migrationbox_heal",
    schedule=None if _SCHEDULE.lower() == "none" else _SCHEDULE,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    is_paused_upon_creation=True,
    tags=["migrationbox", "healer"],
    doc_md=DOC,
    default_args={"owner": "migrationbox-healer", "retries": 1,
                  "retry_delay": timedelta(seconds=30)},
)
def migrationbox_heal() -> None:
    @task(execution_timeout=timedelta(hours=2))
    def sense_and_heal() -> dict[str, Any]:
        from migrationbox.healer.jobs import sense_window

        return sense_window(get_current_context()["dag_run"].conf or {})

    @task.short_circuit
    def has_pending_approvals(summary: dict[str, Any]) -> bool:
        return bool(summary.get("pending_approvals"))

    approve = ApprovalOperator(
        task_id="approve_risky_remediation",
        subject="MigrationBox healer: approve risky remediation(s)?",
        body=("Incidents waiting: {{ ti.xcom_pull(task_ids='sense_and_heal')"
              "['pending_approvals'] | join(', ') }}. See `migrationbox heal incidents show "
              "ID` for the root cause and the proposed action."),
        response_timeout=timedelta(hours=4),
    )

    @task
    def execute_approved(summary: dict[str, Any], approval: Any) -> list[dict[str, Any]]:
        from migrationbox.healer.jobs import execute_approved as run

        return run(summary.get("pending_approvals") or [], approval,
                   get_current_context()["dag_run"].conf or {})

    summary = sense_and_heal()
    gate = has_pending_approvals(summary)
    gate >> approve
    execute_approved(summary, approve.output)


migrationbox_heal()
