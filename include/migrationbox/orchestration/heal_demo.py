"""The demo's last act: a fault in a server the wave just migrated, healed by Airflow.

What a user would do to see the healer work, through the same interfaces: the lab's
service publishes its measured metrics to the emulator's CloudWatch, a short baseline
trains the forecaster (model 2, logged to MLflow as the weekly retraining DAG would),
the Airflow Variable ``migrationbox_heal_conf`` points the healer at the estate, the
``migrationbox_heal`` DAG is unpaused (its estate watch starts in the triggerer; with
``MIGRATIONBOX_HEAL_MECHANISM=window``, continuous runs start instead), a real CPU burn is
injected into the migrated service, and the demo waits for the incident the DAG stores.

Demo-only settings, said on screen: sensing every 2 s and the matrix's "for N s"
durations scaled by 0.02 (CPU > 90 % "for 5 min" becomes 6 s). Afterwards the heal DAG is
paused again and the Variable removed, so a later unpause runs production settings.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

HEAL_DAG_ID = "migrationbox_heal"
DEMO_CONF = {"window_s": 120, "interval_s": 2, "sustain_scale": 0.02, "verify_timeout_s": 40,
             "stop_on_approval": True}
PREFERRED_ROLES = ("monitoring", "web", "api")


@dataclass
class HealDemoResult:
    incident_id: str | None
    status: str
    seconds: float


def _pick(targets: list[Any], roles: dict[str, str]) -> Any | None:
    usable = [t for t in targets if t.service and t.control_url and t.http_url]
    for role in PREFERRED_ROLES:
        for t in usable:
            if roles.get(t.server_id, "").startswith(role):
                return t
    return usable[0] if usable else None


def _traffic(url: str, rate: float, stop: threading.Event) -> None:
    with httpx.Client(timeout=2.0) as client:
        while not stop.is_set():
            with contextlib.suppress(httpx.HTTPError):
                client.get(url)
            stop.wait(1.0 / rate)


def run_heal_demo(client: Any, estate: str, emulator_url: str, api_url: str,
                  say: Callable[[str], None], *, baseline_s: float = 30.0,
                  timeout: float = 240.0) -> HealDemoResult:
    from migrationbox.healer import sensing
    from migrationbox.healer.jobs import CONF_VARIABLE, heal_mechanism
    from migrationbox.healer.store import IncidentStore
    from migrationbox.store import repository
    from migrationbox.store.db import engine, session_scope

    t0 = time.monotonic()
    with session_scope(read_only=True) as s:
        record = repository.get_estate(s, estate)
        roles = {srv.server_id: str(srv.role or "") for srv in (record.servers if record
                                                                 else [])}
    target = _pick(sensing.load_targets(estate), roles)
    if target is None:
        say("  no migrated service with a lab endpoint to watch: skipping the heal demo")
        return HealDemoResult(None, "skipped", 0.0)
    say(f"  watching {target.server_id} ({roles.get(target.server_id) or 'server'}), "
        f"migrated by the wave; its lab service publishes CPU, memory, disk, latency, "
        f"request rate, certificate and pool metrics to CloudWatch every second")
    sensing.start_lab_publishing(target.control_url, emulator_url, 1.0)
    stop = threading.Event()
    threading.Thread(target=_traffic, args=(f"{target.http_url}/", 5.0, stop), daemon=True,
                     name="demo-traffic").start()
    try:
        say(f"  {baseline_s:.0f} s of baseline under steady traffic, then the forecasters "
            "(model 2) are fitted and logged to MLflow ...")
        time.sleep(baseline_s)
        runs = sensing.train_forecasters([target], metrics=(
            "cpu_utilization_pct", "memory_utilization_pct", "request_rate"))
        say(f"  {len(runs)} forecaster(s) trained")

        conf = {"estates": [estate], **DEMO_CONF}
        client.bulk_upsert("variables", [{"key": CONF_VARIABLE, "value": json.dumps(conf),
                                          "description": "set by make demo"}])
        say(f"  Variable {CONF_VARIABLE} = {json.dumps(conf)}")
        say("  (demo settings: sense every 2 s; the matrix's 'for 5 min' scaled to 6 s)")
        client.wait_for_dag(HEAL_DAG_ID, timeout=300)
        client.unpause(HEAL_DAG_ID)
        if heal_mechanism() == "asset":
            watcher = _wait_for_watcher(client, timeout=180)
            say(f"  {HEAL_DAG_ID} unpaused; the estate watch ({watcher}) checks the "
                "estate from Airflow's triggerer and wakes the DAG only when something is "
                "off: no run while all is well")
        else:
            run_id = _wait_for_sensing(client, timeout=180)
            say(f"  {HEAL_DAG_ID} unpaused; run {run_id} is sensing: "
                f"{api_url}/dags/{HEAL_DAG_ID}/runs/{run_id}")

        injected = datetime.now(UTC)
        httpx.post(f"{target.control_url}/services/{target.service}/chaos",
                   json={"kind": "cpu", "cpu_demand": 0.97}, timeout=10).raise_for_status()
        say(f"  injected a real CPU burn (0.97 cores) into {target.server_id} at "
            f"{injected:%H:%M:%S}; waiting for the healer ...")
        store = IncidentStore(engine())
        found = _wait_for_incident(store, estate, target.server_id, injected, timeout)
        if found is None:
            say(f"  no high_cpu incident resolved within {timeout:.0f} s: see the task log "
                f"of {HEAL_DAG_ID}")
            return HealDemoResult(None, "timeout", time.monotonic() - t0)
        incident, _report = store.get(found.incident_id)
        woke = [r for r in client.dag_runs(HEAL_DAG_ID) if r.get("run_type") ==
                "asset_triggered"]
        if woke:
            say(f"  woken run: {api_url}/dags/{HEAL_DAG_ID}/runs/{woke[-1]['dag_run_id']}")
        _print_incident(incident, injected, say)
        return HealDemoResult(incident.incident_id, incident.status.value,
                              time.monotonic() - t0)
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            httpx.post(f"{target.control_url}/services/{target.service}/chaos",
                       json={"kind": "clear"}, timeout=10)
        with contextlib.suppress(Exception):
            client.pause(HEAL_DAG_ID)
        with contextlib.suppress(Exception):
            client.request("DELETE", f"/api/v2/variables/{CONF_VARIABLE}")


def _wait_for_watcher(client: Any, timeout: float) -> str:
    """The watcher is registered when the DAG processor next parses the unpaused DAG and
    the triggerer picks it up; wait for both, then one watch interval of quiet checks."""
    from migrationbox.healer.watch_trigger import SIGNALS_ASSET, watch_settings

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assets = client.request("GET", "/api/v2/assets",
                                params={"name_pattern": SIGNALS_ASSET}).get("assets") or []
        watchers = [w for a in assets if a.get("name") == SIGNALS_ASSET
                    for w in a.get("watchers") or []]
        if watchers and client.health().get("triggerer", {}).get("status") == "healthy":
            every = watch_settings()["interval_s"]
            time.sleep(every + 2)
            return f"trigger {watchers[0].get('trigger_id')}, every {every:g} s"
        time.sleep(2)
    raise TimeoutError(f"the estate watch of {HEAL_DAG_ID} was not registered within "
                       f"{timeout:.0f} s: is the triggerer running?")


def _wait_for_sensing(client: Any, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for run in sorted(client.dag_runs(HEAL_DAG_ID), key=lambda r: r.get("run_after") or "",
                          reverse=True)[:1]:
            states = {t["task_id"]: t["state"]
                      for t in client.task_instances(HEAL_DAG_ID, run["dag_run_id"])}
            if states.get("sense_and_heal") == "running":
                time.sleep(3)  # a quiet pass or two first
                return str(run["dag_run_id"])
        time.sleep(2)
    raise TimeoutError(f"{HEAL_DAG_ID} did not start sensing within {timeout:.0f} s")


def _wait_for_incident(store: Any, estate: str, server: str, since: datetime,
                       timeout: float) -> Any | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = [r for r in store.list(estate) if r.resource == server
                and r.anomaly_type == "high_cpu" and r.detected_at >= since
                and r.status in ("resolved", "failed")]
        if rows:
            return rows[0]
        time.sleep(1)
    return None


def _print_incident(incident: Any, injected: datetime, say: Callable[[str], None]) -> None:
    say("")
    say(f"  {incident.incident_id}: {incident.title} -> {incident.status.value.upper()}")
    for event in sorted(incident.timeline, key=lambda e: e.at):
        say(f"    {(event.at - injected).total_seconds():+7.1f}s  {event.text[:110]}")
    if incident.detected_at and incident.resolved_at:
        say(f"  detected {(incident.detected_at - injected).total_seconds():.1f} s after the "
            f"injection; MTTR (detected -> verified) "
            f"{(incident.resolved_at - incident.detected_at).total_seconds():.1f} s")
    say(f"  full report: .venv/bin/migrationbox heal incidents show {incident.incident_id}")
