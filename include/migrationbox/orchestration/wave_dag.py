"""Render wave graphs as Airflow DAGs, and register every estate's DAGs at parse time.

Three steps, like astronomer-cosmos: the typed plan spec (``spec.py``) → a pure graph
of the wave (``graph.py``) → this renderer, which maps each node kind to one operator
class and each graph edge to one Airflow dependency. The thin file in ``dags/``
registers the result. Building needs no database and no network, so tests build DAGs
in memory, and parsing stays cheap.

Shape of every wave DAG (decided in ``graph.py``)::

    preflight  [wait_for_previous_wave >> checks]
      >> (risk.approve_plan_risks, only when the plan gives the wave approval reasons)
      >> (budget.approve_budget, only when the wave's predicted cost exceeds the threshold)
    provision  [infrastructure >> instances_running]
    replicate  [sync_rounds >> replication_converged]
    configure  [rewrite_config]
    smoke_test [smoke_tests_green]
    cutover    [approve_cutover >> (approve_live_cutover, only for waves with live
                servers) >> canary_shift]
    validate   [verify_data >> approve_decommission >> decommission_sources]
    rollback   [choose_path >> (restore_dns | approve_rollback >> restore_dns_after_approval)
                >> keep_source_authoritative]   (runs when cutover or validation fails;
                after 100 % on the target, going back needs an approval)

One broken plan spec is an import error of its own estate only. Airflow 3 records an
exception raised while a DAG file is imported as an import error of *that file* (every
DAG of the file is then missing), so each estate has its own DAG file: the loader
``<plans>/dags/migrate__<estate>.py`` that ``migrationbox plan`` writes next to the spec,
in a second DAG bundle (``migrationbox-plans``, a LocalDagBundle over ``<plans>/dags``)
that the local platform configures. The loader calls :func:`load_estate`, which builds
that estate's wave DAGs or raises a :class:`SpecError` naming the estate, the spec file
and the field: the UI's import errors (``GET /api/v2/importErrors``) show it under the
loader's file, and every other estate's loader still loads. A worker parsing a loader to
run one task builds only that task's DAG (or fails at once with the spec's error).

Without that bundle (a deployment that only ships ``dags/``), ``dags/migration_waves.py``
builds every estate from one file (:func:`build_all`); one file cannot carry one import
error per estate, so there a broken estate gets a ``migrate__<estate>__spec_error`` DAG
naming the error, unless the ``strict_specs`` setting (``MIGRATIONBOX_STRICT_SPECS=1``)
makes it an import error of the whole file (for CI). When the bundle is configured,
``dags/migration_waves.py`` registers nothing, so no DAG id comes from two bundles.
"""

from __future__ import annotations

import copy
import functools
import json
import logging
import re
from datetime import datetime
from pathlib import Path
from typing import Any

from migrationbox.orchestration.graph import (
    PHASE_GROUPS,
    BuildSettings,
    Node,
    NodeKind,
    WaveGraph,
    build_wave_graph,
)
from migrationbox.orchestration.spec import (
    PlanSpec,
    SpecError,
    WaveSpec,
    dag_id_for,
    estate_of_dag_id,
    loaders_dir,
    read_spec,
    spec_files,
    spec_path_for_loader,
)

__all__ = [
    "PHASE_GROUPS",
    "BuildSettings",
    "build_all",
    "build_wave_dag",
    "dags_folder_wave_dags",
    "load_estate",
    "plans_bundle_configured",
    "render_wave_dag",
    "spec_error_dag",
    "spec_error_dag_id",
]

log = logging.getLogger("migrationbox.wave_dag")

START_DATE = datetime(2024, 1, 1)


def _doc(spec: PlanSpec, wave: WaveSpec, budget_gate: bool) -> str:
    deps = ", ".join(f"wave {n}" for n in wave.depends_on_waves) or "none"
    reasons = "; ".join(wave.approval_reasons) or "none"
    risk_note = " (provisioning waits for their approval)" if wave.approval_reasons else ""
    live = ", ".join(wave.live_servers) or "none"
    live_note = " (the live cutover waits for a risk approval)" if wave.live_servers else ""
    return f"""\
### Migrate {spec.estate}, wave {wave.number}: {wave.name}

Plan version **{spec.version}** (created {spec.created_at}). **{wave.server_count}** servers,
{wave.environment}, estimated **{wave.estimated_hours:.1f} h**, predicted
**${wave.predicted_monthly_usd:,.0f}/month** on the target.

* Depends on: {deps}. The first gate waits until those waves have completed.
* Approval reasons: {reasons}{risk_note}. Live servers: {live}{live_note}.
  Cutover and decommission always pass an approval gate
  {"; the predicted cost is above the budget threshold, so provisioning waits for a budget approval"
   if budget_gate else ""}.
* Run conf: the trigger form shows every option the run accepts (all optional); the
  first task validates the conf and names any key it refuses.
* When cutover or validation fails, the `rollback` group puts 100% of traffic back on the
  source and keeps the source authoritative. A rejected gate skips what follows; clear the
  gate to ask again.
"""


def build_wave_dag(spec: PlanSpec, wave: WaveSpec, settings: BuildSettings | None = None):
    """Return the DAG for one wave of one plan spec (graph, then render)."""
    settings = settings or BuildSettings()
    return render_wave_dag(build_wave_graph(spec, wave, settings), spec, wave, settings)


def render_wave_dag(graph: WaveGraph, spec: PlanSpec, wave: WaveSpec, settings: BuildSettings):
    """Translate ``graph`` into Airflow objects: one TaskGroup per group, one operator
    per node, one dependency per edge. Decides nothing about the shape."""
    from airflow.providers.standard.operators.python import (
        BranchPythonOperator,
        PythonOperator,
    )
    from airflow.providers.standard.sensors.python import PythonSensor
    from airflow.sdk import DAG, TaskGroup

    from migrationbox.orchestration import tasks
    from migrationbox.orchestration.approvals import MigrationApprovalOperator
    from migrationbox.orchestration.triggers import ReplicationRoundsOperator

    key = {"estate": graph.estate, "wave": graph.wave, "plan_version": graph.plan_version}
    env_tag = "production" if wave.environment == "production" else "non-production"
    approvers = settings.assigned_users()

    dag = DAG(
        dag_id=dag_id_for(spec.estate, wave.number),
        description=f"{spec.estate} wave {wave.number}: {wave.name} ({wave.server_count} servers)",
        schedule=None,
        start_date=START_DATE,
        catchup=False,
        max_active_runs=1,
        is_paused_upon_creation=False,
        tags=["migrationbox", "migration-wave", f"estate:{spec.estate}", env_tag],
        doc_md=_doc(spec, wave, graph.budget_gate),
        default_args={
            "owner": settings.owner,
            "retries": settings.retries,
            "retry_delay": settings.retry_delay,
        },
        render_template_as_native_obj=True,
    )

    def common(node: Node) -> dict[str, Any]:
        kw: dict[str, Any] = {"task_id": node.name, "trigger_rule": node.trigger_rule.value}
        if node.pool:
            kw["pool"] = node.pool
        if node.queue:
            kw["queue"] = node.queue
        if node.retries is not None:
            kw["retries"] = node.retries
        return kw

    def render(node: Node):
        kw = common(node)
        match node.kind:
            case NodeKind.PHASE:
                return PythonOperator(python_callable=tasks.run_phase,
                                      op_kwargs={**key, "phase_name": node.target}, **kw)
            case NodeKind.SENSOR:
                return PythonSensor(
                    python_callable=tasks.gate,
                    op_kwargs={**key, "check": node.target},
                    mode="reschedule",
                    poke_interval=settings.sensor_poke_seconds,
                    timeout=(node.timeout or settings.sensor_timeout).total_seconds(),
                    **kw,
                )
            case NodeKind.APPROVAL:
                return MigrationApprovalOperator(
                    gate=node.target,
                    estate=graph.estate,
                    wave=graph.wave,
                    plan_version=graph.plan_version,
                    non_production=wave.environment != "production",
                    subject=node.subject,
                    body=node.body,
                    assigned_users=approvers or None,
                    response_timeout=settings.approval_timeout,
                    ignore_downstream_trigger_rules=False,
                    **kw,
                )
            case NodeKind.BRANCH:
                return BranchPythonOperator(python_callable=getattr(tasks, node.target),
                                            op_kwargs=key, **kw)
            case NodeKind.ROUNDS:
                return ReplicationRoundsOperator(
                    estate=graph.estate, wave=graph.wave, plan_version=graph.plan_version, **kw
                )
            case NodeKind.STEP:
                return PythonOperator(python_callable=getattr(tasks, node.target),
                                      op_kwargs=key, **kw)
        raise ValueError(f"{node.task_id}: no renderer for node kind {node.kind!r}")

    operators: dict[str, Any] = {}
    task_groups: dict[str, Any] = {}
    with dag:
        for group in graph.groups:
            with TaskGroup(group.name, tooltip=group.tooltip) as tg:
                for node in graph.group_nodes(group.name):
                    operators[node.task_id] = render(node)
            task_groups[group.name] = tg
        for up, down in graph.edges:
            operators[up] >> operators[down]
        for a, b in graph.group_edges:
            task_groups[a] >> task_groups[b]
    # The trigger form: the run-conf model's fields. Set once the tasks exist: an operator
    # created inside a DAG that already has params deep-copies them into its own, which
    # made every wave DAG ~6x slower to build and ~8x larger serialized (measured: 69 ms
    # and 264 kB against 12 ms and 33 kB); a run resolves the DAG's params either way.
    dag.params = run_conf_params()
    return dag


@functools.cache
def _param_specs() -> dict[str, dict[str, Any]]:
    from migrationbox.orchestration.runconf import param_specs

    return param_specs()  # a JSON schema per parse, not one per wave DAG


def run_conf_params() -> dict[str, Any]:
    """``{key: Param}`` built from the run-conf model (``runconf.param_specs``).

    Airflow validates a triggered conf against these before creating the run; the model,
    validated again by the first task, stays the authority (the specs are its own schema,
    sections default to ``{}`` so a form left alone overrides no site setting).
    """
    from airflow.sdk import Param

    return {key: Param(**copy.deepcopy(spec)) for key, spec in _param_specs().items()}


# -- one broken spec fails its own estate only -----------------------------------------


def spec_error_dag_id(estate: str) -> str:
    return f"migrate__{estate}__spec_error"


def _estate_name(path: Path, error: SpecError) -> str:
    name = error.estate or path.stem
    return re.sub(r"[^a-z0-9_-]", "_", name.lower())[:63] or "unnamed"


def fail_with_spec_error(message: str) -> None:
    """The only task of a spec-error DAG: fail, once, with the spec's error."""
    from airflow.sdk.exceptions import AirflowFailException

    raise AirflowFailException(message)


def spec_error_dag(estate: str, error: SpecError):
    """A DAG that stands in for a broken estate: its docs and its only task say why."""
    from airflow.providers.standard.operators.python import PythonOperator
    from airflow.sdk import DAG

    message = str(error)
    dag = DAG(
        dag_id=spec_error_dag_id(estate),
        description=f"BROKEN PLAN SPEC for {estate}: {message}"[:1000],
        schedule=None,
        start_date=START_DATE,
        catchup=False,
        tags=["migrationbox", "broken-plan-spec", f"estate:{estate}"],
        doc_md=(
            f"### The plan spec of estate `{estate}` cannot be read\n\n```\n{message}\n```\n\n"
            "Its wave DAGs are not loaded until the spec is fixed: re-run "
            "`migrationbox plan` for this estate (or remove the file). Other estates' "
            "wave DAGs are not affected."
        ),
        default_args={"owner": BuildSettings().owner, "retries": 0},
    )
    with dag:
        PythonOperator(task_id="report_spec_error", python_callable=fail_with_spec_error,
                       op_kwargs={"message": message})
    return dag


def _strict() -> bool:
    from migrationbox import settings

    return bool(settings.get("strict_specs", variables=False))


def _estate_dags(path: Path, settings: BuildSettings, only_dag_id: str | None) -> dict:
    spec = read_spec(path)
    dags: dict = {}
    for wave in spec.waves:
        dag_id = dag_id_for(spec.estate, wave.number)
        if only_dag_id and dag_id != only_dag_id:
            continue
        dags[dag_id] = build_wave_dag(spec, wave, settings)
    return dags


def build_all(
    plans_dir: Path | None = None, only_dag_id: str | None = None, *, strict: bool | None = None
) -> dict:
    """Every wave DAG of every spec in ``plans_dir``; only one if ``only_dag_id`` is given.

    A broken spec becomes its estate's spec-error DAG (see the module docs) unless
    ``strict`` (default: the ``strict_specs`` setting) or the requested DAG belongs to
    that estate: then its :class:`SpecError` is raised. Reads only; creates nothing.
    """
    from migrationbox.config import plans_dir as default_plans_dir

    folder = Path(plans_dir or default_plans_dir())
    strict = _strict() if strict is None else strict
    settings = BuildSettings.from_settings()
    wanted = estate_of_dag_id(only_dag_id)
    if wanted:  # a worker running one task: read that estate's spec only
        paths = [folder / f"{wanted}.json"] if (folder / f"{wanted}.json").is_file() else []
    else:
        paths = spec_files(folder)
    dags: dict = {}
    for path in paths:
        try:
            dags.update(_estate_dags(path, settings, only_dag_id))
        except SpecError as error:
            estate = wanted or _estate_name(path, error)
            if strict or (wanted and only_dag_id != spec_error_dag_id(estate)):
                raise
            log.error("plan spec of estate %s is broken; its wave DAGs are not loaded: %s",
                      estate, error)
            dags[spec_error_dag_id(estate)] = spec_error_dag(estate, error)
    return dags



# -- one loader DAG file per estate (the plans DAG bundle) -----------------------------


def _parsing_dag_id() -> str | None:
    from airflow.sdk import get_parsing_context

    return get_parsing_context().dag_id


def load_estate(loader_file: str | Path, estate: str) -> dict:
    """The wave DAGs of ``estate``, for its loader file; raise if its spec is broken.

    The spec is ``<estate>.json`` in the folder above the loader. Any problem (missing,
    unreadable, invalid or newer spec) raises :class:`SpecError` with the estate first,
    then the spec's own message (file and field), so the import error of this loader
    says all three. A worker parsing the loader to run one task builds only that DAG.
    Reads only; creates nothing.
    """
    path = spec_path_for_loader(loader_file, estate)
    only = _parsing_dag_id()
    if estate_of_dag_id(only) != estate:
        only = None
    try:
        return _estate_dags(path, BuildSettings.from_settings(), only)
    except SpecError as error:
        raise SpecError(
            f"estate {estate}: its wave DAGs are not loaded: {error}. Re-run "
            f"`migrationbox plan` for {estate} (or remove {Path(loader_file).name} and "
            f"{path.name} to drop the estate)",
            path=path, estate=estate,
        ) from None  # the message is complete; the chain would repeat it in the UI


def plans_bundle_configured(plans_dir: Path | None = None) -> bool:
    """Whether Airflow's ``[dag_processor] dag_bundle_config_list`` has a bundle over
    ``<plans>/dags`` (the loaders) or the ``migrationbox-plans`` bundle in object storage
    (``plans_root``), i.e. whether the loaders define the wave DAGs."""
    from airflow.configuration import conf

    from migrationbox.config import plans_dir as default_plans_dir

    raw = conf.get("dag_processor", "dag_bundle_config_list", fallback="") or ""
    try:
        bundles = json.loads(raw)
    except ValueError:
        return False  # Airflow itself refuses such a configuration, with its own message
    wanted = loaders_dir(Path(plans_dir or default_plans_dir())).resolve()
    from migrationbox.platform.airflow_runtime import PLANS_BUNDLE, S3_BUNDLE_CLASS

    for bundle in bundles if isinstance(bundles, list) else []:
        if (isinstance(bundle, dict) and bundle.get("name") == PLANS_BUNDLE
                and bundle.get("classpath") == S3_BUNDLE_CLASS):
            return True
        path = (bundle.get("kwargs") or {}).get("path") if isinstance(bundle, dict) else None
        if isinstance(path, str) and Path(path).resolve() == wanted:
            return True
    return False


def dags_folder_wave_dags(only_dag_id: str | None = None) -> dict:
    """What ``dags/migration_waves.py`` registers: nothing when the plans bundle is
    configured (its loaders define the wave DAGs), else every estate (:func:`build_all`)."""
    if plans_bundle_configured():
        return {}
    return build_all(only_dag_id=only_dag_id)
