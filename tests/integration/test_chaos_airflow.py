"""One chaos scenario through the real Airflow heal DAG, triggered and followed by REST.

A platform (emulator + Airflow) for the module; the chaos estate's wave is completed and
its lab publishes metrics to the platform's emulator. The heal DAG (``dags/heal.py``,
schedule off via ``MIGRATIONBOX_HEAL_SCHEDULE=none`` so only this run senses) is triggered
with a short window; its ``sense_and_heal`` task must detect the CPU burn, root-cause it
to web-01, scale it out, verify the recovery and store the incident. The other scenarios
run through the same code path (``Healer.run_pass``) in ``test_chaos_healer.py``.
"""

from __future__ import annotations

import os
import time
import uuid

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.airflow]

DAG_ID = "migrationbox_heal"


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    from migrationbox.platform.supervisor import Platform

    runtime = tmp_path_factory.mktemp("heal-platform")
    saved = dict(os.environ)
    os.environ["MIGRATIONBOX_HEAL_SCHEDULE"] = "none"
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    plat = Platform(runtime_dir=runtime, api_port=0, emulator_port=0)
    try:
        plat.up()
        os.environ.update(plat.env())
        from migrationbox.cloud.aws_session import clear_client_cache

        clear_client_cache()
        yield plat
    finally:
        try:
            plat.down()
        finally:
            os.environ.clear()
            os.environ.update(saved)


def test_cpu_burn_is_healed_by_the_heal_dag(platform):
    from pathlib import Path

    from migrationbox.healer.chaoslab import ChaosEstate
    from migrationbox.healer.store import IncidentStore
    from migrationbox.store.db import engine

    env = platform.env()
    chaos = ChaosEstate(f"hd{uuid.uuid4().hex[:6]}", Path(platform.runtime_dir) / "chaos",
                        env["MIGRATIONBOX_EMULATOR_URL"])
    client = platform.client()
    try:
        chaos.up()
        client.wait_for_dag(DAG_ID, timeout=240)
        client.unpause(DAG_ID)
        chaos.baseline(30.0, metrics=("cpu_utilization_pct",))
        run = client.trigger(DAG_ID, conf={
            "estates": [chaos.estate], "window_s": 60, "interval_s": 2,
            "sustain_scale": 0.02, "verify_timeout_s": 30})
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:  # inject once the sensing task is running
            tis = {t["task_id"]: t["state"]
                   for t in client.task_instances(DAG_ID, run["dag_run_id"])}
            if tis.get("sense_and_heal") == "running":
                break
            time.sleep(2)
        time.sleep(5)
        chaos.inject("cpu_burn")
        state = None
        while time.monotonic() < deadline:
            state = client.dag_run(DAG_ID, run["dag_run_id"])["state"]
            if state in ("success", "failed"):
                break
            time.sleep(3)
        tis = {t["task_id"]: t["state"] for t in client.task_instances(DAG_ID,
                                                                       run["dag_run_id"])}
        assert state == "success", tis
        assert tis["sense_and_heal"] == "success"
        assert tis["approve_risky_remediation"] == "skipped"  # nothing risky waited
        incidents = [r for r in IncidentStore(engine()).list(chaos.estate)
                     if r.anomaly_type == "high_cpu"]
        assert incidents and incidents[0].status == "resolved", incidents
        assert chaos.metrics("web-01")["instances"] == 3
    finally:
        chaos.down()
