"""A person decides one risky remediation (``migrationbox_heal_approval``).

Triggered by the heal DAG, one run per incident (run id ``approval__<incident>``, so an
incident is never asked about twice). The question carries the incident's root cause and
the proposed action; no answer within four hours counts as "Reject", and either way the
incident records who decided what.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from airflow.providers.standard.operators.hitl import HITLOperator
from airflow.sdk import Variable, dag, get_current_context, task

DOC = """\
### MigrationBox healer: approve a risky remediation

1. **describe_incident** — the incident (`conf.incident_id`) as the healer stored it.
2. **approve_remediation** — Approve or Reject (Reject when nobody answers in 4 h).
3. **apply_decision** — runs the approved action (pre-check, action, verification,
   rollback) or records the refusal; `migrationbox heal incidents show ID` shows it.
"""


@dag(
    dag_id="migrationbox_heal_approval",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    is_paused_upon_creation=False,  # requests must reach a person even before anyone looks
    tags=["migrationbox", "healer"],
    doc_md=DOC,
    params={"incident_id": ""},
    default_args={"owner": "migrationbox-healer"},
)
def migrationbox_heal_approval() -> None:
    @task
    def describe_incident() -> dict[str, Any]:
        from migrationbox.healer.jobs import describe_incident as describe

        incident_id = str(get_current_context()["params"].get("incident_id") or "")
        if not incident_id:
            raise ValueError("conf.incident_id is required: the incident to decide on")
        return describe(incident_id)

    info = describe_incident()
    decide = HITLOperator(
        task_id="approve_remediation",
        subject=("Healer asks: {{ ti.xcom_pull(task_ids='describe_incident')['action'] }} "
                 "on {{ ti.xcom_pull(task_ids='describe_incident')['resource'] }}?"),
        body=("**{{ ti.xcom_pull(task_ids='describe_incident')['title'] }}** "
              "({{ ti.xcom_pull(task_ids='describe_incident')['incident_id'] }})\n\n"
              "{{ ti.xcom_pull(task_ids='describe_incident')['summary'] }}\n\n"
              "Root cause: {{ ti.xcom_pull(task_ids='describe_incident')['root_cause'] }}\n\n"
              "Proposed: {{ ti.xcom_pull(task_ids='describe_incident')['action_description'] }}"
              " (risk {{ ti.xcom_pull(task_ids='describe_incident')['risk'] }}).\n\n"
              "Details: `{{ ti.xcom_pull(task_ids='describe_incident')['show'] }}`"),
        options=["Approve", "Reject"],
        defaults=["Reject"],
        response_timeout=timedelta(hours=4),
    )

    @task
    def apply_decision(info: dict[str, Any], approval: Any) -> dict[str, Any]:
        from migrationbox.healer.jobs import CONF_VARIABLE, apply_approval, effective_conf

        defaults = Variable.get(CONF_VARIABLE, default=None, deserialize_json=True) or {}
        conf = effective_conf({k: v for k, v in defaults.items()
                               if k in ("verify_timeout_s", "sustain_scale")}, {})
        return apply_approval(info["incident_id"], approval, conf)

    info >> decide
    apply_decision(info, decide.output)


migrationbox_heal_approval()
