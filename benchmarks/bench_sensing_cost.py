"""What sensing costs Airflow: scheduler CPU, worker CPU and metadata-database growth,
measured on a real platform for each way of scheduling the heal DAG.

    .venv/bin/python benchmarks/bench_sensing_cost.py [--minutes 5] [--variants ...]

For each variant a fresh platform (emulator + Airflow, LocalExecutor, SQLite) is started
in a temporary folder with a small migrated lab estate (4 servers publishing metrics),
the other scheduled DAGs paused (their first runs, model training, allowed to finish),
then left alone for ``--minutes``:

  idle         the heal DAG paused: what the platform costs with no sensing at all;
  continuous   ``@continuous`` heal DAG, one long sensing task per run
               (``window_s`` 60 here so a short measurement sees several runs; production
               uses 300), a pass every 10 s (``MIGRATIONBOX_HEAL_MECHANISM=window``);
  per_minute   the heal DAG on a ``* * * * *`` cron, one sensing pass per run;
  deferrable   ``@continuous`` heal DAG whose run is a deferrable 10 s wait (in the
               triggerer, no worker slot) then one sensing pass;
  asset_watcher the heal DAG scheduled on an asset whose watcher (the estate watch, in
               the triggerer) checks every 10 s and wakes the DAG only when something is
               off; the woken run senses every 10 s until the estate is quiet (the default
               mechanism, chosen on these figures: docs/healer.md).

Measured per variant: CPU seconds of the scheduler process itself (its scheduling loop)
and of its descendants (LocalExecutor workers and the task processes they run, i.e. the
sensing work), the API server (the Task SDK's execution API calls land there), the DAG
processor and the triggerer; rows added to the metadata tables; growth of airflow.db and
of the MigrationBox store (health-probe history); the real sensing cadence (passes
counted in the healer's probe table) and the largest gap between two passes; the health
checks a lab service answered (heal passes and estate-watch checks alike). Figures are
scaled to one hour from the measured minutes (linear; ``--minutes 60`` measures the hour).

Then, unless ``--no-latency``, the end-to-end latency on the same platform: a CPU burn is
injected on web-01 and the seconds from injection to the stored incident (detected), to
its verified recovery, and the MTTR are read from the incident. The matrix's "for 5 min"
is scaled by 0.02 (6 s) as in the chaos tests, so the figures show the mechanism's own
delay, not the matrix's patience.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sqlite3
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "include"))

VARIANTS: dict[str, dict[str, Any]] = {
    "idle": {"schedule": "@continuous", "unpause": False, "conf": {}},
    "continuous": {"schedule": "@continuous", "unpause": True,
                   "conf": {"window_s": 60, "interval_s": 10}},
    "per_minute": {"schedule": "* * * * *", "unpause": True,
                   "conf": {"max_passes": 1, "window_s": 0}},
    "deferrable": {"schedule": "@continuous", "unpause": True, "mechanism": "deferrable",
                   "conf": {}},
    "asset_watcher": {"schedule": "@continuous", "unpause": True, "mechanism": "asset",
                      "conf": {"interval_s": 10}},
}
#: conf every variant shares: the chaos tests' time scale for the latency phase
COMMON_CONF = {"sustain_scale": 0.02, "verify_timeout_s": 60}
TABLES = ("dag_run", "task_instance", "task_instance_history", "xcom", "job", "log",
          "rendered_task_instance_fields", "trigger", "dag_version", "serialized_dag")


def _tree_cpu(pid: int) -> tuple[float, float]:
    """(CPU seconds of the process itself, of all its descendants, live or reaped)."""
    import psutil

    try:
        root = psutil.Process(pid)
        own = root.cpu_times()
    except psutil.Error:
        return 0.0, 0.0
    kids = own.children_user + own.children_system
    for child in root.children(recursive=True):
        try:
            t = child.cpu_times()
        except psutil.Error:
            continue
        kids += t.user + t.system + t.children_user + t.children_system
    return own.user + own.system, kids


def _rows(db: Path) -> dict[str, int]:
    out: dict[str, int] = {}
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30) as conn:
        for table in TABLES:
            try:
                out[table] = int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
            except sqlite3.Error:
                out[table] = 0
    return out


def _size(db: Path) -> int:
    return sum(p.stat().st_size for p in db.parent.glob(db.name + "*") if p.is_file())


def _probe_times(store: Path, estate: str) -> list[float]:
    with sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=30) as conn:
        try:
            rows = conn.execute("SELECT DISTINCT observed_at FROM healer_health_probes WHERE "
                                "estate = ? ORDER BY observed_at", (estate,)).fetchall()
        except sqlite3.Error:
            return []
    from datetime import datetime

    return [datetime.fromisoformat(str(r[0])).timestamp() for r in rows]


def _health_checks(chaos: Any, server: str = "web-01") -> int:
    """``/health/live`` requests the server's target service answered so far."""
    import httpx

    url = f"{chaos.target(server).http_url}/_lab/stats"
    return int(httpx.get(url, timeout=5).json()["by_path"].get("/health/live", 0))


def _latency(chaos: Any, timeout: float = 240) -> dict[str, float | None]:
    """Inject a CPU burn on web-01 and read the healer's incident: seconds from injection
    to detection and to verified recovery, and the MTTR."""
    from datetime import UTC, datetime

    from migrationbox.healer.store import IncidentStore
    from migrationbox.store.db import engine

    store = IncidentStore(engine())
    injected = datetime.now(UTC)
    chaos.inject("cpu_burn")
    found = None
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and found is None:
            time.sleep(1)
            found = next((r for r in store.list(chaos.estate) if r.resource == "web-01"
                          and r.anomaly_type == "high_cpu" and r.detected_at >= injected
                          and r.status in ("resolved", "failed", "alerted")), None)
    finally:
        chaos.clear("web-01")
    if found is None:
        return {"detected_s": None, "recovered_s": None, "mttr_s": None}
    incident, _ = store.get(found.incident_id)  # type: ignore[misc]
    resolved = incident.resolved_at
    return {"detected_s": (incident.detected_at - injected).total_seconds(),
            "recovered_s": (resolved - injected).total_seconds() if resolved else None,
            "mttr_s": incident.mttr.total_seconds() if incident.mttr else None}


def _quiesce(client: Any, timeout: float = 900) -> None:
    """Pause the other scheduled DAGs (a fresh platform runs each weekly retraining once,
    minutes of model training that are not sensing) and wait for their runs to end."""
    others = ("migrationbox_retrain_sizing", "migrationbox_retrain_healer")
    for dag_id in others:
        client.wait_for_dag(dag_id, timeout=300)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        # wait before pausing: a paused DAG's running run gets no more tasks scheduled
        busy = [r["dag_id"] for d in others for r in client.dag_runs(d)
                if r["state"] in ("queued", "running")]
        if not busy:
            break
        time.sleep(5)
    else:
        raise TimeoutError(f"runs still active after {timeout:g} s: {busy}")
    for dag_id in others:
        client.pause(dag_id)


def measure(variant: str, minutes: float, root: Path, latency: bool = True
            ) -> dict[str, Any]:
    from migrationbox.healer.chaoslab import ChaosEstate
    from migrationbox.healer.jobs import CONF_VARIABLE
    from migrationbox.platform.testing import running_platform

    spec = VARIANTS[variant]
    runtime = root / variant
    os.environ.pop("MLFLOW_TRACKING_URI", None)  # the platform's own MLflow store
    with running_platform(runtime, MIGRATIONBOX_HOME=str(runtime),
                          MIGRATIONBOX_HEAL_SCHEDULE=spec["schedule"],
                          MIGRATIONBOX_HEAL_MECHANISM=spec.get("mechanism", "window")) as plat:
        state = plat.read_state()
        assert state is not None
        chaos = None
        try:
            chaos = ChaosEstate(f"cost{uuid.uuid4().hex[:6]}", runtime / "chaos",
                                state.emulator_url).up()
            if latency and spec["unpause"]:
                # model 2's forecasters, as the weekly retraining would have left them:
                # without them a burn is a low-confidence anomaly that only alerts
                chaos.baseline(30.0)
            client = plat.client()
            client.wait_for_dag("migrationbox_heal", timeout=300)
            client.bulk_upsert("variables", [{"key": CONF_VARIABLE, "value": json.dumps(
                {"estates": [chaos.estate], **COMMON_CONF, **spec["conf"]})}])
            _quiesce(client)
            time.sleep(20)  # let start-up work (parsing, first heartbeats) settle
            pids = {name.removeprefix("airflow-"): rec.pid
                    for name, rec in plat.read_state().processes.items()}
            db = Path(state.airflow_home) / "airflow.db"
            store = plat.store_path
            before = {name: _tree_cpu(pid) for name, pid in pids.items()}
            rows0, size0, store0 = _rows(db), _size(db), _size(store)
            checks0 = _health_checks(chaos)
            if spec["unpause"]:
                client.unpause("migrationbox_heal")
            started = time.time()
            time.sleep(minutes * 60)
            ended = time.time()
            after = {name: _tree_cpu(pid) for name, pid in pids.items()}
            rows1, size1, store1 = _rows(db), _size(db), _size(store)
            checks1 = _health_checks(chaos)
            lat = _latency(chaos) if spec["unpause"] and latency else {}
            if spec["unpause"]:
                client.pause("migrationbox_heal")
            probes = [t for t in _probe_times(store, chaos.estate) if started <= t <= ended]
            gaps = [b - a for a, b in itertools.pairwise(probes)]
            scale = 60.0 / minutes
            cpu = {name: ((after[name][0] - before[name][0]) * scale,
                          (after[name][1] - before[name][1]) * scale) for name in pids}
            return {
                "variant": variant, "minutes": minutes, "cpu_per_hour": cpu,
                "rows_per_hour": {t: (rows1[t] - rows0[t]) * scale for t in TABLES
                                  if rows1[t] != rows0[t]},
                "airflow_db_mib_per_hour": (size1 - size0) * scale / 2**20,
                "store_mib_per_hour": (store1 - store0) * scale / 2**20,
                "passes": len(probes),
                "cadence_s": (sum(gaps) / len(gaps)) if gaps else None,
                "max_gap_s": max(gaps) if gaps else None,
                "health_checks_per_hour": (checks1 - checks0) * scale,
                "latency": lat,
            }
        finally:
            if chaos is not None:
                chaos.down()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=5.0)
    ap.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--no-latency", action="store_true",
                    help="skip the CPU-burn latency measurement after each variant")
    args = ap.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="bench-sensing-"))
    results = []
    for variant in args.variants:
        print(f"measuring {variant} for {args.minutes:g} min ...", flush=True)
        results.append(measure(variant, args.minutes, root, latency=not args.no_latency))
        print(f"  {variant}: {json.dumps(results[-1], default=str)}", flush=True)

    print()
    print(f"Cost of one hour of sensing (measured over {args.minutes:g} min per variant, "
          "scaled to 1 h; 4 watched servers; CPU seconds per hour)")
    print()
    print("| variant | passes/h | health checks/h | cadence (s) | max gap (s) | scheduler loop "
          "| workers+tasks | api-server | dag-processor | triggerer | dag runs | task instances "
          "| airflow.db MiB | store MiB |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")

    def f(v: float | None, nd: int = 1) -> str:
        return "-" if v is None else f"{v:.{nd}f}"

    for r in results:
        cpu, rows = r["cpu_per_hour"], r["rows_per_hour"]
        print(f"| {r['variant']} | {r['passes'] * 60 / r['minutes']:.0f} "
              f"| {r['health_checks_per_hour']:.0f} | {f(r['cadence_s'])} "
              f"| {f(r['max_gap_s'])} | {f(cpu.get('scheduler', (0, 0))[0])} "
              f"| {f(cpu.get('scheduler', (0, 0))[1])} | {f(sum(cpu.get('api-server', (0, 0))))} "
              f"| {f(sum(cpu.get('dag-processor', (0, 0))))} "
              f"| {f(sum(cpu.get('triggerer', (0, 0))))} | {rows.get('dag_run', 0):.0f} "
              f"| {rows.get('task_instance', 0):.0f} | {r['airflow_db_mib_per_hour']:.2f} "
              f"| {r['store_mib_per_hour']:.2f} |")
    lat = [r for r in results if r["latency"]]
    if lat:
        print()
        print("End-to-end latency, CPU burn on web-01 (seconds from injection; the matrix's "
              "5 min scaled to 6 s):")
        print()
        print("| variant | detected | recovered (verified) | MTTR |")
        print("|---|---|---|---|")
        for r in lat:
            x = r["latency"]
            print(f"| {r['variant']} | {f(x['detected_s'])} | {f(x['recovered_s'])} "
                  f"| {f(x['mttr_s'])} |")
    print()
    for r in results:
        print(f"{r['variant']}: metadata rows added per hour: "
              + (", ".join(f"{k} {v:.0f}" for k, v in sorted(r["rows_per_hour"].items()))
                 or "none"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
