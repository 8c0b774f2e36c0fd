"""The autonomous healer (``migrationbox_heal``): sense, detect, root-cause, remediate.

Thin on purpose: every task calls one function of ``migrationbox.healer.jobs``. The DAG is
continuous (one run after the other, ``max_active_runs=1``); each run's ``sense_and_heal``
task senses every ``interval_s`` for ``window_s``, so the sensing cadence is seconds while
the scheduler handles one run per window. Risky remediations (killing queries, restoring
data) are not decided here: each gets its own run of ``migrationbox_heal_approval``, so
that sensing goes on while a person thinks.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from typing import Any

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import Variable, dag, get_current_context, task

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

Mechanism (`MIGRATIONBOX_HEAL_MECHANISM`): `window` (default, continuous runs of one long
sensing task), `deferrable` (a deferrable 10 s wait then one pass per run) or `asset` (the
estate watch in the triggerer wakes this DAG through the asset `migrationbox_heal_signals`
only when something is off; `migrationbox heal watch` runs the same check by hand).
"""


#: "@continuous" in production; "none" leaves only manual/REST runs (tests)
_SCHEDULE = os.environ.get("MIGRATIONBOX_HEAL_SCHEDULE", "@continuous")
#: "window" (default): one long sensing task per run. "deferrable": one pass per run
#: after a deferrable 10 s wait in the triggerer (frees the worker slot between passes,
#: at a DAG run and two task instances per pass). "asset": an estate watch in the
#: triggerer (an Asset watcher) wakes the DAG only when something is off; the run senses
#: until the estate is quiet again. See benchmarks/bench_sensing_cost.py for their costs.
_MECHANISM = os.environ.get("MIGRATIONBOX_HEAL_MECHANISM", "window").lower()


def _schedule() -> Any:
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
    return None if _SCHEDULE.lower() == "none" else _SCHEDULE


@dag(
    dag_id="migrationbox_heal",
    schedule=_schedule(),
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
        from migrationbox.healer.jobs import CONF_VARIABLE, effective_conf, sense_window

        context = get_current_context()
        conf = effective_conf(Variable.get(CONF_VARIABLE, default=None, deserialize_json=True),
                              context["dag_run"].conf or {})
        if _MECHANISM == "deferrable":
            conf |= {"max_passes": 1, "window_s": 0}
        woken: list[dict[str, Any]] = []
        if _MECHANISM == "asset":
            from migrationbox.healer.jobs import woken_by

            conf = {"stop_when_quiet": True} | conf
            woken = woken_by(context.get("triggering_asset_events") or {})
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
