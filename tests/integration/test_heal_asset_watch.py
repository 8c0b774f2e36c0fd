"""The Asset-watcher sensing mechanism on a real platform (``MIGRATIONBOX_HEAL_MECHANISM=asset``).

The heal DAG is scheduled on the asset ``migrationbox_heal_signals``, whose watcher is the
estate watch running in Airflow's triggerer. A quiet migrated estate starts no heal run
at all; a CPU burn wakes the DAG (an ``asset_triggered`` run whose triggering event names
the burning server), the run heals it through the same path as the other mechanisms and
ends by itself once the estate is quiet again.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.airflow]

DAG_ID = "migrationbox_heal"


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    from migrationbox.platform.testing import running_platform

    os.environ.pop("MLFLOW_TRACKING_URI", None)  # the platform's own MLflow store
    with running_platform(tmp_path_factory.mktemp("heal-asset"),
                          MIGRATIONBOX_HEAL_MECHANISM="asset",
                          MIGRATIONBOX_HEAL_WATCH_INTERVAL_S="2") as plat:
        yield plat


def _wait_for(what, predicate, timeout: float, poll: float = 2.0):
    from migrationbox.platform.testing import wait_until

    return wait_until(what, predicate, timeout, poll)


def test_a_quiet_estate_costs_no_run_and_a_fault_wakes_the_healer(platform):
    from migrationbox.healer.chaoslab import SCENARIOS, ChaosEstate
    from migrationbox.healer.jobs import CONF_VARIABLE
    from migrationbox.healer.store import IncidentStore
    from migrationbox.store.db import engine

    env = platform.env()
    chaos = ChaosEstate(f"aw{uuid.uuid4().hex[:6]}", Path(platform.runtime_dir) / "chaos",
                        env["MIGRATIONBOX_EMULATOR_URL"])
    client = platform.client()
    store = IncidentStore(engine())
    try:
        chaos.up()
        dag = client.wait_for_dag(DAG_ID, timeout=240)
        assert dag is not None
        chaos.baseline(30.0)
        client.bulk_upsert("variables", [{"key": CONF_VARIABLE, "value": json.dumps({
            "estates": [chaos.estate], "interval_s": 2, "sustain_scale": 0.02,
            "verify_timeout_s": 30})}])
        client.unpause(DAG_ID)
        time.sleep(45)  # the watcher is registered at the next parse, then checks every 2 s
        assert client.dag_runs(DAG_ID) == [], "a quiet estate must not wake the healer"

        spec = SCENARIOS["cpu_burn"]
        since = datetime.now(UTC)
        chaos.inject("cpu_burn")
        try:
            healed = _wait_for("the CPU burn to be healed by a woken run", lambda: [
                r for r in store.list(chaos.estate)
                if r.anomaly_type == spec["row"] and r.resource == spec["server"]
                and r.detected_at >= since and r.status in ("resolved", "failed")],
                timeout=240)
        finally:
            chaos.clear(spec["server"])
        incident, report = store.get(healed[0].incident_id)
        assert incident.status.value == "resolved", report

        runs = client.dag_runs(DAG_ID)
        assert runs and all(r["run_type"] == "asset_triggered" for r in runs), runs
        first = runs[0]
        done = client.wait_for_run(DAG_ID, first["dag_run_id"], timeout=300)
        assert done["state"] == "success", done
        summary = client.request(
            "GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{first['dag_run_id']}/taskInstances/"
            "sense_and_heal/xcomEntries/return_value")["value"]
        if isinstance(summary, str):
            summary = json.loads(summary)
        woken = summary["woken_by"]
        assert any(s["server_id"] == "web-01" for w in woken for s in w["signals"]), woken
        assert all(w["wake_latency_s"] is not None for w in woken), woken
        # it handed back to the watcher: the run ended well before its 300 s window
        assert summary["passes"] < 150, summary
    finally:
        client.pause(DAG_ID)
        chaos.down()
