"""The autonomous healer (``migrationbox_heal``): sense, detect, root-cause, remediate.

Thin on purpose: every task calls one function of ``migrationbox.healer.jobs``. By default
the DAG is scheduled on an asset whose watcher, the estate watch, runs in the triggerer
and checks the migrated estates every 10 s: a quiet estate costs no DAG run at all, and a
run woken by the watch senses every ``interval_s`` until the estate is quiet again (the
cheapest of the measured mechanisms at the same latency: ``docs/healer.md``). With
``MIGRATIONBOX_HEAL_MECHANISM=window`` it is continuous instead (one run after the other,
``max_active_runs=1``), each run sensing every ``interval_s`` for ``window_s``. Risky
remediations (killing queries, restoring data) are not decided here: each gets its own
run of ``migrationbox_heal_approval``, so that sensing goes on while a person thinks.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import Variable, dag, get_current_context, task

from migrationbox import settings
from migrationbox.healer.jobs import heal_mechanism

DOC = """\
### MigrationBox healer

1. **sense_and_heal** — sensing passes over the migrated resources of every completed
   wave (health endpoints, database lock probes, CloudWatch metrics), two detectors, root
   cause on the plan's dependency graph, the decision matrix; low-risk remediations run,
   are verified and rolled back when they do not help; every incident is stored
   (`migrationbox heal incidents list`).
2. **request_approval** — one run of `migrationbox_heal_approval` per incident whose
   remediation is risky (a person approves or rejects it there).

Conf (defaults from the Airflow Variable `migrationbox_heal_conf`, JSON; a run's conf wins):
`estates`, `window_s` (300), `interval_s` (10), `max_passes`, `sustain_scale`,
`verify_timeout_s`, `stop_when_idle`, `stop_when_quiet`, `stop_on_approval` (true),
`probe_retention_h` (24). Teams notifications: connection `migrationbox_healer_teams`
(off when it does not exist).

Mechanism (`MIGRATIONBOX_HEAL_MECHANISM`): `asset` (default: the estate watch in the
triggerer wakes this DAG through the asset `migrationbox_heal_signals` only when something
is off, and the woken run senses until the estate is quiet; `migrationbox heal watch` runs
the same check by hand), `window` (continuous runs of one long sensing task) or
`deferrable` (a deferrable 10 s wait then one pass per run). A manual run senses for
its whole window whatever the mechanism.
"""


#: priority_weight of every heal task (absolute): above any other MigrationBox task
HEAL_PRIORITY = 100
#: "@continuous" in production; "none" leaves only manual/REST runs (tests)
_SCHEDULE = settings.get("heal_schedule", variables=False)
#: "asset" (default), "window" or "deferrable": see migrationbox.healer.jobs.MECHANISMS
_MECHANISM = heal_mechanism()


def _schedule() -> Any:
    if _SCHEDULE.lower() == "none":
        return None
    if _MECHANISM == "asset":
        from airflow.sdk import Asset, AssetWatcher

        from migrationbox.healer.watch_trigger import (
            SIGNALS_ASSET,
            SIGNALS_URI,
            EstateWatchTrigger,
            watch_settings,
        )

        return [Asset(name=SIGNALS_ASSET, uri=SIGNALS_URI, watchers=[AssetWatcher(
            name="migrationbox_estate_watch", trigger=EstateWatchTrigger(**watch_settings()))])]
    return _SCHEDULE


@dag(
    dag_id="migrationbox_heal",
    schedule=_schedule(),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    is_paused_upon_creation=True,
    tags=["migrationbox", "healer"],
    doc_md=DOC,
    # ahead of everything else queued (the retraining DAGs run at priority 1 in their
    # own one-slot pool): a woken run must not wait for an executor slot behind training
    # retried soon: on a saturated machine a task can die before it starts (its
    # supervisor's first Execution API call times out), and a healer that waits 30 s to
    # try again is 30 s late
    default_args={"owner": "migrationbox-healer", "retries": 2,
                  "retry_delay": timedelta(seconds=5), "priority_weight": HEAL_PRIORITY,
                  "weight_rule": "absolute"},
)
def migrationbox_heal() -> None:
    @task(execution_timeout=timedelta(hours=2))
    def sense_and_heal() -> dict[str, Any]:
        from migrationbox.healer.jobs import CONF_VARIABLE, effective_conf, sense_window

        context = get_current_context()
        conf = effective_conf(Variable.get(CONF_VARIABLE, default=None, deserialize_json=True),
                              context["dag_run"].conf or {})
        if _MECHANISM == "deferrable":
            conf |= {"max_passes": 1, "window_s": 0}
        woken: list[dict[str, Any]] = []
        if _MECHANISM == "asset":
            from migrationbox.healer.jobs import woken_by

            woken = woken_by(context.get("triggering_asset_events") or {})
            if woken:  # woken by the watch: hand back to it once the estate is quiet
                conf = {"stop_when_quiet": True} | conf
        return sense_window(conf) | ({"woken_by": woken} if woken else {})

    @task
    def approval_requests(summary: dict[str, Any]) -> list[dict[str, Any]]:
        from migrationbox.healer.jobs import approval_requests as requests

        return requests(summary)

    summary = sense_and_heal()
    if _MECHANISM == "deferrable":
        from airflow.providers.standard.sensors.time_delta import WaitSensor

        WaitSensor(task_id="wait_interval", time_to_wait=timedelta(seconds=10),
                   deferrable=True) >> summary
    TriggerDagRunOperator.partial(
        task_id="request_approval", trigger_dag_id="migrationbox_heal_approval",
        skip_when_already_exists=True, wait_for_completion=False,
    ).expand_kwargs(approval_requests(summary))


migrationbox_heal()
