"""Time to heal on a real platform, idle and busy: injection -> detection -> verified recovery.

    .venv/bin/python benchmarks/bench_heal_time.py [--runs 20] [--busy-runs 20]

One platform for every run (emulator + Airflow, ``MIGRATIONBOX_HEAL_MECHANISM=asset``,
the estate watch checking every 2 s, the heal conf of the asset-watch integration test:
``interval_s`` 2, ``sustain_scale`` 0.02 so "CPU > 90 % for 5 min" means 6 s). Each run
injects a CPU burn on the lab's ``web-01``, and times, from the injection:

  woken     the heal DAG run the watch's asset event created (its ``queued_at``);
  detected  the incident's ``detected_at`` (the pass that decided: the condition held for
            its scaled ``for_seconds``);
  recovered the remediation's verification saw CPU back under 90 % (``resolved_at``).

A run that is not healed within ``--timeout`` counts as that timeout in the percentiles
(and is listed). Between runs the burn is cleared, the lab's service scaled back to one
instance, the healer's per-resource rate limit (3 actions an hour: made for one resource
that keeps failing, not for a benchmark healing the same server 40 times) reset, and the
bench waits until the woken run has handed back to the watcher, so every run starts from
a quiet estate and a fresh wake.

"Busy" runs the same with, in parallel: the healer's and the sizing model's retraining
DAGs triggered again whenever they finish (manual runs: they do go ahead), and a loop of
CPU-heavy unit tests (``tests/unit/test_healer_detect.py``: Prophet fits) in another
process. The 1-minute load average is sampled at each injection and printed beside each
figure; "idle" is only as idle as the shared machine was.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "include"))

DAG_ID = "migrationbox_heal"
SCENARIO = "cpu_burn"


@dataclass
class Run:
    mode: str
    load1: float
    woken_s: float | None = None
    detected_s: float | None = None
    recovered_s: float | None = None
    outcome: str = "timeout"


@dataclass
class Busy:
    """Background load: retraining DAG runs and a unit-test loop, until stopped."""

    client: Any
    estate: str
    stop: threading.Event = field(default_factory=threading.Event)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    retrain_runs: int = 0
    test_loops: int = 0

    def start(self) -> None:
        threading.Thread(target=self._retrain, daemon=True, name="busy-retrain").start()
        threading.Thread(target=self._tests, daemon=True, name="busy-tests").start()

    def _retrain(self) -> None:
        dags = {"migrationbox_retrain_healer": {"lookback_days": 0.01,
                                                "estates": [self.estate]},
                "migrationbox_retrain_sizing": {"quick": True, "sizing_only": True}}
        active: dict[str, str] = {}
        for dag_id in dags:
            self.client.unpause(dag_id)
        while not self.stop.is_set():
            for dag_id, conf in dags.items():
                try:
                    run = active.get(dag_id)
                    if run is None or self.client.dag_run(dag_id, run)["state"] in (
                            "success", "failed"):
                        rid = f"bench__{uuid.uuid4().hex[:8]}"
                        self.client.trigger(dag_id, conf, run_id=rid)
                        active[dag_id] = rid
                        self.retrain_runs += 1
                except Exception as exc:  # keep loading the machine
                    print(f"  busy: {dag_id}: {type(exc).__name__}: {exc}", flush=True)
            self.stop.wait(10)

    def _tests(self) -> None:
        while not self.stop.is_set():
            proc = subprocess.Popen(
                [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
                 "tests/unit/test_healer_detect.py"], cwd=REPO, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, start_new_session=True)
            self.procs.append(proc)
            while proc.poll() is None and not self.stop.is_set():
                time.sleep(1)
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(30)
            self.test_loops += 1

    def close(self) -> None:
        self.stop.set()
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)


def _ts(value: Any) -> float | None:
    if not value:
        return None
    if isinstance(value, datetime):
        return value.timestamp()
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()


def _active_heal_runs(client: Any) -> list[dict[str, Any]]:
    return [r for r in client.dag_runs(DAG_ID) if r["state"] in ("queued", "running")]


def _reset(chaos: Any, server: str) -> None:
    """Burn cleared, one instance again, the rate limit of the server's actions reset."""
    import httpx
    from sqlalchemy import delete

    from migrationbox.healer import tables
    from migrationbox.store.db import engine

    chaos.clear(server)
    httpx.post(f"{chaos.control_url}/services/{server}:target/remediate",
               json={"op": "scale_in", "instances": 1}, timeout=10).raise_for_status()
    with engine().begin() as conn:
        conn.execute(delete(tables.action_log).where(tables.action_log.c.resource == server))


def _settle(client: Any, chaos: Any, server: str, timeout: float) -> None:
    """Wait for the woken run to hand back and the burn's CPU to be gone."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        cpu = float(chaos.metrics(server).get("cpu_utilization_pct") or 0.0)
        if cpu < 50 and not _active_heal_runs(client):
            return
        time.sleep(4)
    print(f"  (not settled after {timeout:g} s: going on)", flush=True)


def _wait_for_watch(log: Path, timeout: float) -> None:
    """Until the triggerer has run the estate watch's first check (its log says so)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.exists() and "estate watch:" in log.read_text(errors="replace"):
            return
        time.sleep(2)
    raise RuntimeError(f"the estate watch did not start within {timeout:g} s ({log})")


def one_run(client: Any, chaos: Any, store: Any, mode: str, timeout: float) -> Run:
    from migrationbox.healer.chaoslab import SCENARIOS

    spec = SCENARIOS[SCENARIO]
    server, row = spec["server"], spec["row"]
    run = Run(mode, os.getloadavg()[0])
    known = {r["dag_run_id"] for r in client.dag_runs(DAG_ID)}
    injected = time.time()
    since = datetime.now(UTC)
    chaos.inject(SCENARIO)
    try:
        deadline = time.monotonic() + timeout
        polls = 0
        while time.monotonic() < deadline:
            polls += 1
            # the REST API shares the API server with the tasks' Execution API: ask it
            # every 3 s only (the incident store is read directly, every second)
            if run.woken_s is None and polls % 3 == 1:
                new = [r for r in client.dag_runs(DAG_ID) if r["dag_run_id"] not in known]
                if new:
                    woke = min(_ts(r.get("queued_at") or r.get("start_date")) or time.time()
                               for r in new)
                    run.woken_s = woke - injected
            mine = [r for r in store.list(chaos.estate) if r.anomaly_type == row
                    and r.resource == server and r.detected_at >= since]
            if mine:
                inc = mine[0]  # newest first
                run.detected_s = _ts(inc.detected_at) - injected  # type: ignore[operator]
                # final: healed, a failed (rolled back) remediation, or left to people
                # (an alert: e.g. the healer arrived after the burn's onset left the
                # detectors' window, so the detection was not confident enough to act)
                if inc.status in ("resolved", "failed", "alerted"):
                    full, _ = store.get(inc.incident_id)
                    if full.resolved_at is not None:
                        run.recovered_s = full.resolved_at.timestamp() - injected
                    run.outcome = inc.status
                    break
            time.sleep(1)
    finally:
        _reset(chaos, server)
    return run


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    return statistics.quantiles(ordered, n=100, method="inclusive")[q - 1]


def summary(runs: list[Run], timeout: float) -> dict[str, Any]:
    heal = [r.recovered_s if r.recovered_s is not None else timeout for r in runs]
    det = [r.detected_s if r.detected_s is not None else timeout for r in runs]
    woke = [r.woken_s for r in runs if r.woken_s is not None]
    loads = [r.load1 for r in runs]
    return {"n": len(runs), "healed": sum(r.outcome == "resolved" for r in runs),
            "heal_p50": pct(heal, 50), "heal_p95": pct(heal, 95), "heal_max": max(heal),
            "detect_p50": pct(det, 50), "detect_p95": pct(det, 95),
            "woken_p50": pct(woke, 50) if woke else None,
            "load1_mean": statistics.fmean(loads), "load1_min": min(loads),
            "load1_max": max(loads)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=20, help="idle runs")
    ap.add_argument("--busy-runs", type=int, default=None, help="busy runs (default --runs)")
    ap.add_argument("--timeout", type=float, default=180.0)
    ap.add_argument("--settle", type=float, default=120.0)
    ap.add_argument("--json", type=Path, default=None, help="also write the runs here")
    args = ap.parse_args(argv)
    # stopped with SIGTERM, still tear the platform and the chaos lab down (finally blocks)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    busy_runs = args.runs if args.busy_runs is None else args.busy_runs

    from migrationbox.healer.chaoslab import ChaosEstate
    from migrationbox.healer.jobs import CONF_VARIABLE
    from migrationbox.healer.store import IncidentStore
    from migrationbox.platform.testing import running_platform
    from migrationbox.store.db import engine

    os.environ.pop("MLFLOW_TRACKING_URI", None)  # the platform's own MLflow store
    root = Path(tempfile.mkdtemp(prefix="bench-heal-time-"))
    runs: list[Run] = []
    busy: Busy | None = None
    t_start = time.monotonic()
    with running_platform(root / "platform", MIGRATIONBOX_HEAL_MECHANISM="asset",
                          MIGRATIONBOX_HEAL_WATCH_INTERVAL_S="2") as plat:
        env = plat.env()
        print(f"platform up in {time.monotonic() - t_start:.0f} s", flush=True)
        chaos = ChaosEstate(f"ht{uuid.uuid4().hex[:6]}", root / "chaos",
                            env["MIGRATIONBOX_EMULATOR_URL"])
        client = plat.client()
        store = IncidentStore(engine())
        try:
            chaos.up()
            if client.wait_for_dag(DAG_ID, timeout=240) is None:
                raise RuntimeError(f"{DAG_ID} did not appear")
            chaos.baseline(30.0)
            client.bulk_upsert("variables", [{"key": CONF_VARIABLE, "value": json.dumps({
                "estates": [chaos.estate], "interval_s": 2, "sustain_scale": 0.02,
                # each run is a new incident: an alert of the previous run (the healer
                # arriving late on a saturated machine) must not absorb the next one
                "verify_timeout_s": 30, "dedupe_window_s": 20})}])
            client.unpause(DAG_ID)
            # the watcher is registered at the next parse, then the triggerer runs it
            _wait_for_watch(plat.logs_dir / "airflow-triggerer.log", 300)
            started_runs = {r["dag_id"]: len(client.dag_runs(r["dag_id"])) for r in
                            [{"dag_id": "migrationbox_retrain_healer"},
                             {"dag_id": "migrationbox_retrain_sizing"}]}
            print(f"retraining runs at platform start: {started_runs}", flush=True)
            for mode, n in (("idle", args.runs), ("busy", busy_runs)):
                if mode == "busy" and n:
                    busy = Busy(client, chaos.estate)
                    busy.start()
                    time.sleep(20)  # let the load build up
                for i in range(n):
                    _settle(client, chaos, "web-01", args.settle)
                    run = one_run(client, chaos, store, mode, args.timeout)
                    runs.append(run)

                    def f(v: float | None) -> str:
                        return "  -  " if v is None else f"{v:5.1f}"

                    print(f"{mode} {i + 1:2d}/{n}: load1 {run.load1:4.1f}  woken "
                          f"{f(run.woken_s)}  detected {f(run.detected_s)}  recovered "
                          f"{f(run.recovered_s)}  {run.outcome}", flush=True)
                if busy is not None:
                    busy.close()
                    print(f"busy load: {busy.retrain_runs} retraining run(s) triggered, "
                          f"{busy.test_loops} unit-test loop(s)", flush=True)
                    busy = None
        finally:
            if busy is not None:
                busy.close()
            client.pause(DAG_ID)
            chaos.down()
    print()
    print("| mode | n | healed | time to heal p50 (s) | p95 (s) | max (s) | detection p50 / "
          "p95 (s) | woken p50 (s) | load avg 1 min (mean, min-max) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for mode in ("idle", "busy"):
        mine = [r for r in runs if r.mode == mode]
        if not mine:
            continue
        s = summary(mine, args.timeout)
        woke = "-" if s["woken_p50"] is None else f"{s['woken_p50']:.1f}"
        print(f"| {mode} | {s['n']} | {s['healed']} | {s['heal_p50']:.1f} | "
              f"{s['heal_p95']:.1f} | {s['heal_max']:.1f} | {s['detect_p50']:.1f} / "
              f"{s['detect_p95']:.1f} | {woke} | {s['load1_mean']:.1f} "
              f"({s['load1_min']:.1f}-{s['load1_max']:.1f}) |")
    print(f"(a run not healed within {args.timeout:g} s counts as {args.timeout:g} s; "
          f"{os.cpu_count()} CPUs; total {time.monotonic() - t_start:.0f} s)")
    if args.json:
        args.json.write_text(json.dumps([r.__dict__ for r in runs], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
