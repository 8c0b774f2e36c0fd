"""Build one Airflow DAG per wave from plan specs.

Three steps, like astronomer-cosmos: typed specs (``spec.py``) → this builder, which
turns one wave into seven task groups with gates → the thin file in ``dags/`` that
registers the result. Building needs no database and no network, so tests can build
DAGs in memory and parsing stays cheap.

Shape of every wave DAG::

    preflight  [wait_for_previous_wave >> checks]
      >> (budget.approve_budget, only when the wave's predicted cost exceeds the threshold)
    provision  [infrastructure >> instances_running]
    replicate  [sync_rounds >> replication_converged]
    configure  [rewrite_config]
    smoke_test [smoke_tests_green]
    cutover    [approve_cutover >> canary_shift]
    validate   [verify_data >> approve_decommission >> decommission_sources]
    rollback   [choose_path >> (restore_dns | approve_rollback >> restore_dns_after_approval)
                >> keep_source_authoritative]   (runs when cutover or validation fails;
                after 100 % on the target, going back needs an approval)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from migrationbox.orchestration.spec import PlanSpec, WaveSpec, dag_id_for, read_specs

PHASE_GROUPS = (
    "preflight",
    "provision",
    "replicate",
    "configure",
    "smoke_test",
    "cutover",
    "validate",
)

DEFAULT_BUDGET_THRESHOLD_USD = 20_000.0


@dataclass(frozen=True)
class BuildSettings:
    """Knobs that shape the DAGs; read once per parse from the environment."""

    owner: str = "migration-engineering"
    retries: int = 2
    retry_delay: timedelta = timedelta(seconds=20)
    budget_threshold_usd: float = DEFAULT_BUDGET_THRESHOLD_USD
    sensor_poke_seconds: float = 10.0
    sensor_timeout: timedelta = timedelta(hours=6)
    smoke_timeout: timedelta = timedelta(minutes=15)
    approval_timeout: timedelta | None = None
    approvers: tuple[str, ...] = ("admin",)

    @classmethod
    def from_env(cls) -> BuildSettings:
        env = os.environ
        approvers = tuple(
            a.strip() for a in env.get("MIGRATIONBOX_APPROVERS", "admin").split(",") if a.strip()
        )
        return cls(
            budget_threshold_usd=float(
                env.get("MIGRATIONBOX_BUDGET_THRESHOLD_USD", DEFAULT_BUDGET_THRESHOLD_USD)
            ),
            sensor_poke_seconds=float(env.get("MIGRATIONBOX_SENSOR_POKE_SECONDS", 10)),
            retries=int(env.get("MIGRATIONBOX_TASK_RETRIES", 2)),
            approvers=approvers or ("admin",),
        )


def _doc(spec: PlanSpec, wave: WaveSpec, budget_gate: bool) -> str:
    deps = ", ".join(f"wave {n}" for n in wave.depends_on_waves) or "none"
    reasons = "; ".join(wave.approval_reasons) or "none"
    return f"""\
### Migrate {spec.estate}, wave {wave.number}: {wave.name}

Plan version **{spec.version}** (created {spec.created_at}). **{wave.server_count}** servers,
{wave.environment}, estimated **{wave.estimated_hours:.1f} h**, predicted
**${wave.predicted_monthly_usd:,.0f}/month** on the target.

* Depends on: {deps}. The first gate waits until those waves have completed.
* Approval reasons: {reasons}. Cutover and decommission always pass an approval gate
  {"; the predicted cost is above the budget threshold, so provisioning waits for a budget approval"
   if budget_gate else ""}.
* Run conf (all optional): `dry_run`, `approvals` (`required` | `auto_non_production`),
  `ignore_previous_wave`, `cutover_steps`, `cutover_dwell_seconds`, `health_probe_requests`.
* When cutover or validation fails, the `rollback` group puts 100% of traffic back on the
  source and keeps the source authoritative. A rejected gate skips what follows; clear the
  gate to ask again.
"""


def build_wave_dag(spec: PlanSpec, wave: WaveSpec, settings: BuildSettings | None = None):
    """Return the DAG for one wave of one plan spec."""
    from airflow.providers.standard.operators.python import (
        BranchPythonOperator,
        PythonOperator,
    )
    from airflow.providers.standard.sensors.python import PythonSensor
    from airflow.sdk import DAG, TaskGroup, TriggerRule

    from migrationbox.orchestration import tasks
    from migrationbox.orchestration.approvals import MigrationApprovalOperator
    from migrationbox.orchestration.triggers import ReplicationRoundsOperator

    settings = settings or BuildSettings()
    budget_gate = wave.predicted_monthly_usd > settings.budget_threshold_usd
    key = {"estate": spec.estate, "wave": wave.number, "plan_version": spec.version}
    env_tag = "production" if wave.environment == "production" else "non-production"
    approvers = [{"id": a, "name": a} for a in settings.approvers]

    dag = DAG(
        dag_id=dag_id_for(spec.estate, wave.number),
        description=f"{spec.estate} wave {wave.number}: {wave.name} ({wave.server_count} servers)",
        schedule=None,
        start_date=datetime(2024, 1, 1),
        catchup=False,
        max_active_runs=1,
        is_paused_upon_creation=False,
        tags=["migrationbox", "migration-wave", f"estate:{spec.estate}", env_tag],
        doc_md=_doc(spec, wave, budget_gate),
        default_args={
            "owner": settings.owner,
            "retries": settings.retries,
            "retry_delay": settings.retry_delay,
        },
        render_template_as_native_obj=True,
    )

    def phase(task_id: str, phase_name: str, **kw):
        return PythonOperator(
            task_id=task_id,
            python_callable=tasks.run_phase,
            op_kwargs={**key, "phase_name": phase_name},
            **kw,
        )

    def sensor(task_id: str, check: str, timeout: timedelta | None = None):
        return PythonSensor(
            task_id=task_id,
            python_callable=tasks.gate,
            op_kwargs={**key, "check": check},
            mode="reschedule",
            poke_interval=settings.sensor_poke_seconds,
            timeout=(timeout or settings.sensor_timeout).total_seconds(),
            retries=0,
        )

    def approval(task_id: str, gate: str, subject: str, body: str):
        return MigrationApprovalOperator(
            task_id=task_id,
            gate=gate,
            estate=spec.estate,
            wave=wave.number,
            plan_version=spec.version,
            non_production=wave.environment != "production",
            subject=subject,
            body=body,
            assigned_users=approvers,
            response_timeout=settings.approval_timeout,
            ignore_downstream_trigger_rules=False,
            retries=0,
        )

    with dag:
        with TaskGroup("preflight", tooltip="credentials, quotas, CIDRs, backups, residency") as g1:
            wait_prev = sensor("wait_for_previous_wave", "previous_wave_completed")
            checks = phase("checks", "preflight")
            wait_prev >> checks
        with TaskGroup("provision", tooltip="network, security groups, instances, LB, DNS") as g2:
            infra = phase("infrastructure", "provision", pool="migrationbox_provision")
            running = sensor("instances_running", "instances_running")
            infra >> running
        with TaskGroup("replicate", tooltip="block-level incremental sync with SHA-256") as g3:
            # rounds run in a worker; the wait between rounds is deferred to the triggerer
            rounds = ReplicationRoundsOperator(
                task_id="sync_rounds",
                estate=spec.estate,
                wave=wave.number,
                plan_version=spec.version,
                pool="migrationbox_replication",
            )
            converged = sensor("replication_converged", "replication_converged")
            rounds >> converged
        with TaskGroup("configure", tooltip="connection strings, secrets") as g4:
            phase("rewrite_config", "configure")
        with TaskGroup("smoke_test", tooltip="health, SELECT 1, DNS, LB targets") as g5:
            sensor("smoke_tests_green", "smoke_tests_green", timeout=settings.smoke_timeout)
        with TaskGroup("cutover", tooltip="weighted DNS 5→25→50→100% with health checks") as g6:
            approve_cutover = approval(
                "approve_cutover",
                "cutover",
                subject=f"Cut over {spec.estate} wave {wave.number} ({wave.name})?",
                body=(
                    f"{wave.server_count} servers replicated, configured and smoke-tested. "
                    "Approve to move traffic to the cloud in weighted steps with automatic "
                    "rollback on failed health checks."
                ),
            )
            shift = phase("canary_shift", "cutover", retries=0)
            approve_cutover >> shift
        with TaskGroup("validate", tooltip="checksums, row counts, cost, decommission") as g7:
            verify = phase("verify_data", "validate", retries=0)
            approve_decom = approval(
                "approve_decommission",
                "decommission",
                subject=f"Decommission the sources of {spec.estate} wave {wave.number}?",
                body=(
                    "Data verified on the target. Approve to mark the source servers "
                    "decommissioned."
                ),
            )
            decom = phase("decommission_sources", "decommission")
            verify >> approve_decom >> decom
        with TaskGroup("rollback", tooltip="runs only when cutover or validation fails"):
            # Before 100 % on the target, going back is automatic; after it, the target
            # may already hold new writes, so a person decides (the plan's rule).
            decide = BranchPythonOperator(
                task_id="choose_path",
                python_callable=tasks.choose_rollback_path,
                op_kwargs=key,
                trigger_rule=TriggerRule.ONE_FAILED,
                retries=0,
            )
            restore = phase("restore_dns", "cutover_rollback")
            approve_rollback = approval(
                "approve_rollback",
                "rollback",
                subject=f"Roll {spec.estate} wave {wave.number} back to the source?",
                body=(
                    "All traffic is already on the target and validation failed. "
                    "Approve to move 100% of traffic back to the source."
                ),
            )
            restore_approved = phase("restore_dns_after_approval", "cutover_rollback_approved")
            keep = PythonOperator(
                task_id="keep_source_authoritative",
                python_callable=tasks.keep_source_authoritative,
                op_kwargs=key,
                trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS,
            )
            # a failed provisioning deletes exactly what this wave created (by its tags)
            teardown = phase("teardown_wave", "teardown", trigger_rule=TriggerRule.ONE_FAILED)
            decide >> [restore, approve_rollback]
            approve_rollback >> restore_approved
            [restore, restore_approved] >> keep

        if budget_gate:
            with TaskGroup("budget", tooltip="predicted cost above the budget threshold") as gb:
                approval(
                    "approve_budget",
                    "budget",
                    subject=(
                        f"Budget: {spec.estate} wave {wave.number} predicts "
                        f"${wave.predicted_monthly_usd:,.0f}/month"
                    ),
                    body=(
                        f"Above the threshold of ${settings.budget_threshold_usd:,.0f}/month. "
                        "Approve to provision."
                    ),
                )
            g1 >> gb >> g2
        else:
            g1 >> g2
        g2 >> g3 >> g4 >> g5 >> g6 >> g7
        [shift, verify] >> decide
        [infra, running] >> teardown
    return dag


def build_all(plans_dir: Path | None = None, only_dag_id: str | None = None) -> dict:
    """Every wave DAG of every spec in ``plans_dir``; only one if ``only_dag_id`` is given.

    Raises ``SpecError`` for a broken spec so that it shows up as an import error.
    """
    from migrationbox.config import plans_dir as default_plans_dir

    folder = plans_dir or default_plans_dir()
    settings = BuildSettings.from_env()
    dags: dict = {}
    for spec in read_specs(folder):
        for wave in spec.waves:
            dag_id = dag_id_for(spec.estate, wave.number)
            if only_dag_id and dag_id != only_dag_id:
                continue
            dags[dag_id] = build_wave_dag(spec, wave, settings)
    return dags
