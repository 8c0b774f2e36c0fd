"""Executor benchmark: N dry-run wave DAG runs at once, embedded vs production profile.

    .venv/bin/python benchmarks/bench_executors.py [--waves 10,50]
        [--profiles embedded,production] [--approvals rest|auto] [--json out.json]

For each profile one platform is started, in a temporary runtime folder, on free
loopback ports: ``embedded`` (LocalExecutor, SQLite metadata and store, one scheduler,
4 slots) or ``production`` (CeleryExecutor on Redis, Airflow metadata and the store on
PostgreSQL, 2 schedulers, 2 Celery workers x concurrency 2 = 4 slots on the default
queue, plus the profile's replication-queue workers, 2 x 1 by default). The production
profile gets two PostgreSQL databases created for the benchmark under unique names and
a Redis database (1-15) that held no keys; both are dropped / flushed at the end, as the
platform is stopped, also on an error, Ctrl-C or SIGTERM.

For each N of ``--waves`` (ascending, on the same platform) N small estates (3 servers,
one wave each) are planned with ``migrationbox.service.plan_estate``; once the DAG
processor has parsed every ``migrate__<estate>__wave_01`` DAG they are all triggered
within a few seconds with conf ``{"dry_run": true}``. A dry run checks and plans every
phase but creates nothing, copies no data and moves no traffic; it does **not** skip the
approval gates (``orchestration/approvals.py`` only passes them by itself for
non-production waves with ``approvals: auto_non_production``). So with ``--approvals
rest`` (the default) the estates are production estates and each gate is answered
"Approve" by REST, as the integration tests and ``follow_run`` do: once the gate has sat
in ``awaiting_input`` for ``--settle`` seconds (an earlier answer races the executor in
Airflow 3.3). ``--approvals auto`` plans staging estates and passes
``approvals: auto_non_production`` instead: no human, no deferral to the triggerer.
(On 2026-12-07 ``rest`` failed on the production profile with HTTP 403 "not a
respondent": its FAB admin's id is 1, the gates are assigned to the id "admin"; the
figures in docs/benchmarks-executors.md were measured with ``auto``.)

Figures per batch (all from what Airflow recorded, read back over REST):

  tasks/min     task instances that ran to success or failure / wall time, wall time
                being from just before the first trigger (this process's clock, same
                host) to the end_date of the last run to finish;
  ready->start  for each task that ran and has upstream tasks: its start_date minus the
                latest end_date of its upstream task instances in the same run (the
                moment its dependencies were met, for the all-success chains of the wave
                DAG), p50/p95; the same for queued_when -> start_date (the executor's
                pick-up) is printed beside it;
  gate wait     approval gates: HITL request created -> answered (human side; part of
                the wall time, not of ready->start);
  DB growth     metadata database (SQLite file + WAL, or pg_database_size) and the
                MigrationBox store, before the triggers vs after the last run ended;
  memory        RSS of each component's process tree (its session: the scheduler's
                LocalExecutor task processes count under the scheduler, the Celery
                workers' task processes under their worker) sampled every
                ``--sample-interval`` s during the batch: peak and mean of the tree's sum;
                plus, for production, PostgreSQL backends of the two databases;
  CPU s         CPU seconds each component's tree used during the batch;
  runs          DAG run states at the end.

Growth: each figure at the largest N divided by the same figure at the smallest N.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform as host_platform
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
import traceback
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
from pydantic import BaseModel, ConfigDict

REPO = Path(__file__).resolve().parents[1]
if str(REPO / "include") not in sys.path:
    sys.path.insert(0, str(REPO / "include"))

#: task instance states that mean the task ran (took a slot) and finished
RAN_STATES = frozenset({"success", "failed"})
TERMINAL_RUN_STATES = frozenset({"success", "failed"})
NOT_COVERED = (
    "no data is copied and nothing is created in a dry run: every phase plans and checks "
    "(preflight still calls the local AWS emulator), so task durations are the "
    "orchestration's own cost (process start, imports, store writes, Execution API), "
    "not a real migration's",
    "every component, PostgreSQL, Redis and the AWS emulator share one host (see "
    "'cpus' and the load averages): the production profile's network hops are loopback "
    "and no component has a core of its own; other agents' work on the shared machine "
    "is in the figures",
    "task slots differ (see 'slots'): embedded parallelism 4; production 2 default-queue "
    "workers x concurrency 2 plus the profile's replication-queue workers (replication "
    "tasks only); the wave DAGs' pools (provision, replication: 2 slots each) cap those "
    "phases further; each production scheduler may queue up to its parallelism, so "
    "Celery holds the excess",
    "one run per wave DAG; no waves depending on other waves; small estates "
    "(3 servers without dependencies); no failures injected, no worker or scheduler killed",
    "memory is RSS summed over each process tree: pages shared between a parent and its "
    "forked children are counted once per process (an upper bound); PostgreSQL backend "
    "RSS includes the shared buffers they touched",
    "DB growth includes the DAG processor's re-serialisations during the batch and the "
    "triggered runs' rows; no retention or cleanup ran",
    "no UI users, no other DAGs running; the planning of the estates and the parsing of "
    "their DAGs happen before the clock starts (the DAG processor keeps re-parsing every "
    "estate's loader during the batch, as it would in production)",
)


# -- records (what Airflow recorded, read over REST) --------------------------------------


class TaskRecord(BaseModel):
    """One task instance of a benchmark run, with the upstream task ids of its DAG."""

    model_config = ConfigDict(frozen=True)

    run_id: str
    task_id: str
    state: str | None
    start: float | None = None
    end: float | None = None
    queued: float | None = None
    scheduled: float | None = None
    upstream: tuple[str, ...] = ()


class RunRecord(BaseModel):
    model_config = ConfigDict(frozen=True)

    dag_id: str
    run_id: str
    state: str | None
    queued: float | None = None
    start: float | None = None
    end: float | None = None


class GateRecord(BaseModel):
    model_config = ConfigDict(frozen=True)

    dag_id: str
    run_id: str
    task_id: str
    created: float | None
    answered: float


def ts(value: Any) -> float | None:
    """An Airflow timestamp (ISO 8601 string, ``Z`` or offset) as epoch seconds."""
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, datetime):
        return value.timestamp()
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()


def task_record(ti: Mapping[str, Any], upstream: Mapping[str, Sequence[str]]) -> TaskRecord:
    """A task instance of the REST API (``/taskInstances``) as a :class:`TaskRecord`."""
    return TaskRecord(
        run_id=str(ti["dag_run_id"]), task_id=str(ti["task_id"]), state=ti.get("state"),
        start=ts(ti.get("start_date")), end=ts(ti.get("end_date")),
        queued=ts(ti.get("queued_when")), scheduled=ts(ti.get("scheduled_when")),
        upstream=tuple(upstream.get(str(ti["task_id"]), ())),
    )


def upstream_map(tasks: Iterable[Mapping[str, Any]]) -> dict[str, tuple[str, ...]]:
    """task id -> upstream task ids, from ``GET /dags/{id}/tasks`` (which lists each
    task's downstream ids)."""
    ups: dict[str, set[str]] = {}
    for task in tasks:
        ups.setdefault(str(task["task_id"]), set())
        for down in task.get("downstream_task_ids") or ():
            ups.setdefault(str(down), set()).add(str(task["task_id"]))
    return {k: tuple(sorted(v)) for k, v in ups.items()}


# -- pure figures (tests/unit/test_bench_executors.py) -----------------------------------


def percentile(values: Iterable[float], q: float) -> float | None:
    """The ``q``-th percentile (0-100), linear between closest ranks (the "inclusive"
    method of ``statistics.quantiles``: p0 = min, p100 = max); None without values."""
    ordered = sorted(values)
    if not ordered:
        return None
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} outside 0-100")
    pos = (len(ordered) - 1) * q / 100.0
    low = math.floor(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def completed_tasks(tasks: Iterable[TaskRecord]) -> list[TaskRecord]:
    """Task instances that ran and finished (success or failure): skipped ones and those
    never reached took no slot."""
    return [t for t in tasks if t.state in RAN_STATES and t.start is not None
            and t.end is not None]


def tasks_per_minute(tasks: Iterable[TaskRecord], first_trigger: float,
                     last_end: float) -> float:
    """Completed task instances per minute of wall time (first trigger -> last end)."""
    wall = last_end - first_trigger
    if wall <= 0:
        raise ValueError(f"wall time must be positive, got {wall:.3f} s")
    return len(completed_tasks(tasks)) / (wall / 60.0)


def ready_to_start(tasks: Iterable[TaskRecord]) -> list[float]:
    """For each task that ran (success or failure) and has upstream tasks: its start
    minus the latest end of its upstream task instances of the same run. Skipped tasks
    are left out (Airflow gives them a start_date, the moment the scheduler skipped
    them, but they never waited for a slot), and so are tasks whose upstream did not all
    end (or are missing from the run): their readiness is unknown."""
    tasks = list(tasks)
    by_key = {(t.run_id, t.task_id): t for t in tasks}
    out: list[float] = []
    for t in tasks:
        if t.start is None or t.state not in RAN_STATES or not t.upstream:
            continue
        ends = [by_key[(t.run_id, u)].end if (t.run_id, u) in by_key else None
                for u in t.upstream]
        if any(e is None for e in ends):
            continue
        out.append(t.start - max(e for e in ends if e is not None))
    return out


def queued_to_start(tasks: Iterable[TaskRecord]) -> list[float]:
    """start_date - queued_when of each task that has both (the executor's pick-up)."""
    return [t.start - t.queued for t in tasks if t.start is not None and t.queued is not None]


def run_states(runs: Iterable[RunRecord]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for r in runs:
        key = r.state or "none"
        counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items()))


def memory_summary(samples: Mapping[str, Sequence[int]]) -> dict[str, dict[str, float]]:
    """component -> {peak_mb, mean_mb} of its sampled RSS (bytes); components never
    sampled are left out."""
    out: dict[str, dict[str, float]] = {}
    for name, values in samples.items():
        if values:
            out[name] = {"peak_mb": max(values) / 2**20,
                         "mean_mb": statistics.fmean(values) / 2**20}
    return out


def batch_figures(*, waves: int, tasks: Sequence[TaskRecord], runs: Sequence[RunRecord],
                  first_trigger: float, gates: Sequence[GateRecord] = (),
                  db_before: Mapping[str, int] | None = None,
                  db_after: Mapping[str, int] | None = None,
                  rss: Mapping[str, Sequence[int]] | None = None,
                  cpu_s: Mapping[str, float] | None = None) -> dict[str, Any]:
    """Every figure of one batch, from its records (no I/O)."""
    ends = [r.end for r in runs if r.end is not None]
    if not ends:
        raise ValueError("no run of the batch has ended: no wall time")
    last_end = max(ends)
    done = completed_tasks(tasks)
    ready = ready_to_start(tasks)
    queued = queued_to_start(tasks)
    gate_wait = [g.answered - g.created for g in gates if g.created is not None]
    growth = {k: (db_after or {}).get(k, 0) - v for k, v in (db_before or {}).items()
              if k in (db_after or {})}
    return {
        "waves": waves,
        "runs": run_states(runs),
        "runs_succeeded": sum(r.state == "success" for r in runs),
        "tasks_completed": len(done),
        "tasks_failed": sum(t.state == "failed" for t in done),
        "tasks_skipped": sum(t.state == "skipped" for t in tasks),
        "wall_s": last_end - first_trigger,
        "tasks_per_min": tasks_per_minute(tasks, first_trigger, last_end),
        "ready_to_start_p50_s": percentile(ready, 50),
        "ready_to_start_p95_s": percentile(ready, 95),
        "ready_to_start_n": len(ready),
        "queued_to_start_p50_s": percentile(queued, 50),
        "queued_to_start_p95_s": percentile(queued, 95),
        "gates_answered": len(gates),
        "gate_wait_p50_s": percentile(gate_wait, 50),
        "db_before_bytes": dict(db_before or {}),
        "db_growth_bytes": growth,
        "memory": memory_summary(rss or {}),
        "cpu_s": dict(cpu_s or {}),
    }


def growth(small: Mapping[str, Any], large: Mapping[str, Any]) -> dict[str, float | None]:
    """``large / small`` of each scalar figure both batches have (nested figures by
    dotted key); None where the smaller one is zero or missing. ``waves`` gives the
    factor the load grew by, the reference the other ratios are read against."""
    def flat(d: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
        out: dict[str, float] = {}
        for key, value in d.items():
            name = f"{prefix}{key}"
            if isinstance(value, Mapping):
                out.update(flat(value, name + "."))
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                out[name] = float(value)
        return out

    a, b = flat(small), flat(large)
    return {k: (b[k] / a[k] if a[k] else None) for k in a if k in b}


# -- sampling -------------------------------------------------------------------------------


def _session(pid: int) -> int | None:
    try:
        return os.getsid(pid)
    except OSError:
        return None


class Sampler(threading.Thread):
    """Samples RSS and CPU time of each component's process tree (its session) every
    ``interval`` seconds, and the load average; PostgreSQL backends of ``pg_databases``
    (pids from ``pg_stat_activity``) count as the ``postgresql backends`` component."""

    def __init__(self, leaders: Mapping[str, int], interval: float,
                 pg_admin_url: str | None = None, pg_databases: Sequence[str] = ()) -> None:
        super().__init__(daemon=True, name="bench-sampler")
        self.leaders = {pid: name for name, pid in leaders.items()}
        self.interval = interval
        self.rss: dict[str, list[int]] = {name: [] for name in leaders}
        self.cpu_first: dict[str, float] = {}
        self.cpu_last: dict[str, float] = {}
        self.load1: list[float] = []
        self.pg_connections: list[int] = []
        self._halt = threading.Event()
        self._pg = None
        self._pg_dbs = tuple(pg_databases)
        if pg_admin_url and pg_databases:
            from sqlalchemy import create_engine

            self._pg = create_engine(pg_admin_url, pool_size=1, max_overflow=0)
            self.rss["postgresql backends"] = []

    def _pg_pids(self) -> list[int]:
        from sqlalchemy import text

        assert self._pg is not None
        with self._pg.connect() as conn:
            rows = conn.execute(text("SELECT pid FROM pg_stat_activity WHERE datname = ANY(:d)"),
                                {"d": list(self._pg_dbs)}).all()
        return [int(r[0]) for r in rows]

    def sample(self) -> None:
        rss: dict[str, int] = dict.fromkeys(self.leaders.values(), 0)
        cpu: dict[str, float] = dict.fromkeys(self.leaders.values(), 0.0)
        for proc in psutil.process_iter():
            name = self.leaders.get(_session(proc.pid) or -1)
            if name is None:
                continue
            try:
                with proc.oneshot():
                    if proc.status() == psutil.STATUS_ZOMBIE:
                        continue
                    rss[name] += proc.memory_info().rss
                    t = proc.cpu_times()
                    cpu[name] += t.user + t.system + t.children_user + t.children_system
            except psutil.Error:
                continue
        if self._pg is not None:
            pg = 0
            pids = []
            with contextlib.suppress(Exception):
                pids = self._pg_pids()
            for pid in pids:
                with contextlib.suppress(psutil.Error):
                    pg += psutil.Process(pid).memory_info().rss
            rss["postgresql backends"] = pg
            self.pg_connections.append(len(pids))
        for name, value in rss.items():
            self.rss[name].append(value)
        for name, value in cpu.items():
            self.cpu_first.setdefault(name, value)
            self.cpu_last[name] = value
        self.load1.append(os.getloadavg()[0])

    def run(self) -> None:
        while not self._halt.is_set():
            with contextlib.suppress(Exception):
                self.sample()
            self._halt.wait(self.interval)

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=30)
        with contextlib.suppress(Exception):
            self.sample()  # the last word on CPU time
        if self._pg is not None:
            self._pg.dispose()

    def cpu_seconds(self) -> dict[str, float]:
        return {k: self.cpu_last[k] - self.cpu_first[k] for k in self.cpu_first}


# -- the platform's databases ---------------------------------------------------------------


def database_sizes(plat: Any) -> dict[str, int]:
    """Bytes of the metadata database and the store (file + WAL/journal for SQLite,
    ``pg_database_size`` for PostgreSQL)."""
    state = plat.read_state()
    if state is not None and state.production is not None:
        from sqlalchemy import create_engine, text

        cfg = state.production
        eng = create_engine(cfg.pg_admin_url)
        try:
            with eng.connect() as conn:
                return {
                    what: int(conn.execute(text("SELECT pg_database_size(:d)"),
                                           {"d": db}).scalar_one())
                    for what, db in (("metadata", cfg.airflow_db), ("store", cfg.store_db))
                }
        finally:
            eng.dispose()

    def size(path: Path) -> int:
        return sum(p.stat().st_size for p in (path, Path(f"{path}-wal"),
                                              Path(f"{path}-journal")) if p.exists())

    return {"metadata": size(Path(plat.airflow_home) / "airflow.db"),
            "store": size(Path(plat.store_path))}


# -- estates --------------------------------------------------------------------------------


def _server(sid: str, role: str, ip: str, ports: list[int], kind: str,
            env: str) -> dict[str, Any]:
    return {
        "server_id": sid,
        "hostname": f"{sid}.corp.local",
        "ip_addresses": [ip],
        "os": {"type": "Linux", "distribution": "Ubuntu", "version": "22.04"},
        "hardware": {"cpu_cores": 4, "ram_gb": 16, "disk_total_gb": 100},
        "applications": [{"name": role, "ports": ports, "kind": kind, "data_size_gb": 1.0}],
        "network_dependencies": [],
        "performance_baseline": {"cpu_avg_utilization_pct": 30,
                                 "memory_avg_utilization_pct": 50,
                                 "cpu_p95_utilization_pct": 60},
        "environment": env,
        "role": role,
        "backup": {"available": True, "last_backup_at": "2026-11-24T02:00:00Z"},
    }


def write_estate(folder: Path, index: int, environment: str) -> Path:
    """Three servers (web, api, db) without dependencies between them, so the planner
    puts them in one wave (dependencies would order them into three)."""
    folder.mkdir(parents=True, exist_ok=True)
    net = f"10.{60 + index // 250}.{index % 250}"
    records = [
        _server("web-01", "web", f"{net}.11", [443], "web", environment),
        _server("api-01", "api", f"{net}.12", [8080], "api", environment),
        _server("db-01", "postgresql-primary", f"{net}.13", [5432], "database", environment),
    ]
    for r in records:
        (folder / f"{r['server_id']}.json").write_text(json.dumps(r))
    return folder


SERVERS = ("web-01", "api-01", "db-01")


def register_disks(estate: str, folder: Path) -> None:
    """One small source folder per server, registered as its ``disk`` endpoint (no
    database or HTTP endpoints): replicate refuses a wave without endpoints even in a dry
    run, and a dry run only scans the source (no lab, no copy). The target folder holds
    the same config file: configure's dry run reads the target to say what it would
    rewrite, and refuses a missing one ("replicate first")."""
    from migrationbox.endpoints.model import Endpoint
    from migrationbox.endpoints.registry import register_endpoints
    from migrationbox.store.db import session_scope

    endpoints = []
    for sid in SERVERS:
        src, tgt = folder / "source" / sid, folder / "target" / sid
        for root in (src, tgt):  # configure reads the target's files even in a dry run
            (root / "etc").mkdir(parents=True, exist_ok=True)
            (root / "etc" / "app.conf").write_text("db_host = db-01.corp.local\n")
        (src / "data.bin").write_bytes(os.urandom(64 * 1024))
        endpoints.append(Endpoint(server_id=sid, kind="disk", name="root",
                                  source_uri=src.as_uri(),
                                  target_uri=tgt.as_uri()))
    with session_scope() as session:
        register_endpoints(session, estate, endpoints, origin="bench_executors")


# -- one batch ------------------------------------------------------------------------------


def _say(message: str) -> None:
    print(f"[{datetime.now(UTC):%H:%M:%S}] {message}", flush=True)


def _paged(client: Any, path: str, key: str, params: Mapping[str, Any]) -> list[Any]:
    items: list[Any] = []
    while True:
        page = client.request("GET", path, params={**params, "limit": 100,
                                                   "offset": len(items)})
        batch = page.get(key, [])
        items.extend(batch)
        if not batch or len(items) >= int(page.get("total_entries", len(items))):
            return items


def run_batch(plat: Any, profile: str, waves: int, args: argparse.Namespace,
              work: Path) -> dict[str, Any]:
    from migrationbox.platform.rest import AirflowApiError
    from migrationbox.service import plan_estate

    tag = f"{profile[0]}{waves}{uuid.uuid4().hex[:4]}"
    environment = "staging" if args.approvals == "auto" else "production"
    estates = [f"bx{tag}w{i:02d}" for i in range(waves)]
    started = time.monotonic()
    for i, estate in enumerate(estates):
        planned = plan_estate(write_estate(work / estate, i, environment), estate=estate)
        if len(planned.plan.waves) != 1:
            raise RuntimeError(f"{estate}: expected one wave, got {len(planned.plan.waves)}")
        register_disks(estate, work / "disks" / estate)
    dag_ids = [f"migrate__{e}__wave_01" for e in estates]
    _say(f"{profile}/{waves}: planned {waves} estates in {time.monotonic() - started:.0f} s;"
         " waiting for their DAGs")
    client = plat.client()
    sampler: Sampler | None = None
    try:
        parse_started = time.monotonic()
        deadline = time.monotonic() + args.parse_timeout + 6 * waves
        upstream: dict[str, dict[str, tuple[str, ...]]] = {}
        while len(upstream) < len(dag_ids):
            for dag_id in dag_ids:
                if dag_id in upstream:
                    continue
                try:
                    tasks = client.request("GET", f"/api/v2/dags/{dag_id}/tasks")["tasks"]
                except AirflowApiError as exc:
                    if exc.status != 404:
                        raise
                    continue
                upstream[dag_id] = upstream_map(tasks)
            if len(upstream) < len(dag_ids):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"only {len(upstream)} of {len(dag_ids)} wave DAGs "
                                       "were parsed in time")
                time.sleep(3)
        parse_s = time.monotonic() - parse_started
        _say(f"{profile}/{waves}: {waves} DAGs parsed in {parse_s:.0f} s "
             f"({sum(len(u) for u in upstream.values()) // waves} tasks each); triggering")
        time.sleep(args.quiet)  # let the DAG processor's first wave of writes settle
        db_before = database_sizes(plat)
        state = plat.read_state()
        leaders = {name.removeprefix("airflow-"): rec.pid
                   for name, rec in state.processes.items()}
        cfg = state.production
        sampler = Sampler(leaders, args.sample_interval,
                          cfg.pg_admin_url if cfg else None,
                          (cfg.airflow_db, cfg.store_db) if cfg else ())
        sampler.start()
        load_before = os.getloadavg()
        conf: dict[str, Any] = {"dry_run": True}
        if args.approvals == "auto":
            conf["approvals"] = "auto_non_production"
        prefix = f"bench_{tag}_"
        first_trigger = time.time()
        for i, dag_id in enumerate(dag_ids):
            client.trigger(dag_id, conf=conf, run_id=f"{prefix}{i:02d}")
        triggered_s = time.time() - first_trigger
        _say(f"{profile}/{waves}: {waves} runs triggered in {triggered_s:.1f} s")
        gates, runs = _follow(client, prefix, waves, args, first_trigger)
        load_after = os.getloadavg()
        sampler.stop()
        tis: list[TaskRecord] = []
        for r in runs:
            for ti in client.task_instances(r.dag_id, r.run_id):
                tis.append(task_record(ti, upstream[r.dag_id]))
        db_after = database_sizes(plat)
    finally:
        client.close()
        if sampler is not None and sampler.is_alive():
            sampler.stop()
    figures = batch_figures(waves=waves, tasks=tis, runs=runs, first_trigger=first_trigger,
                            gates=gates, db_before=db_before, db_after=db_after,
                            rss=sampler.rss, cpu_s=sampler.cpu_seconds())
    figures.update({
        "profile": profile,
        "slots": (f"{cfg.default_slots} default + {cfg.replication_slots} replication "
                  f"(parallelism {cfg.parallelism} per scheduler x {cfg.schedulers})"
                  if cfg else f"{plat.parallelism} (LocalExecutor)"),
        "parse_s": parse_s,
        "trigger_spread_s": triggered_s,
        "load1_before": load_before[0],
        "load1_after": load_after[0],
        "load1_mean_during": statistics.fmean(sampler.load1) if sampler.load1 else None,
        "load1_max_during": max(sampler.load1, default=None),
        "pg_connections_peak": max(sampler.pg_connections, default=None),
        "samples": len(next(iter(sampler.rss.values()), [])),
        "unfinished_runs": [r.run_id for r in runs if r.state not in TERMINAL_RUN_STATES],
        "failed_tasks": sorted({t.task_id for t in tis if t.state == "failed"}),
        # the raw records, so that figures can be recomputed from the JSON
        "task_records": [t.model_dump() for t in tis],
        "run_records": [r.model_dump() for r in runs],
    })
    _say(f"{profile}/{waves}: {figures['runs']} in {figures['wall_s']:.0f} s, "
         f"{figures['tasks_completed']} tasks, {figures['tasks_per_min']:.1f} tasks/min")
    return figures


def _follow(client: Any, prefix: str, waves: int, args: argparse.Namespace,
            first_trigger: float) -> tuple[list[GateRecord], list[RunRecord]]:
    """Poll the batch's runs until all end (or the timeout); answer gates by REST."""
    from migrationbox.platform.rest import AirflowApiError

    deadline = time.monotonic() + args.timeout
    pending_since: dict[tuple[str, str, str], float] = {}
    answered: dict[tuple[str, str, str], GateRecord] = {}
    runs: list[RunRecord] = []
    last_report = 0.0
    while True:
        raw = _paged(client, "/api/v2/dags/~/dagRuns", "dag_runs",
                     {"run_id_prefix_pattern": prefix})
        runs = [RunRecord(dag_id=r["dag_id"], run_id=r["dag_run_id"], state=r.get("state"),
                          queued=ts(r.get("queued_at")), start=ts(r.get("start_date")),
                          end=ts(r.get("end_date"))) for r in raw]
        done = sum(r.state in TERMINAL_RUN_STATES for r in runs)
        if time.monotonic() - last_report > 30:
            last_report = time.monotonic()
            _say(f"  {time.time() - first_trigger:5.0f} s: {done}/{waves} runs ended "
                 f"{run_states(runs)}, {len(answered)} gates answered, "
                 f"load {os.getloadavg()[0]:.1f}")
        if len(runs) == waves and done == waves:
            return list(answered.values()), runs
        if time.monotonic() > deadline:
            _say(f"  timeout after {args.timeout:.0f} s: {waves - done} runs unfinished")
            return list(answered.values()), runs
        if args.approvals == "rest":
            details = _paged(client, "/api/v2/dags/~/dagRuns/~/hitlDetails", "hitl_details",
                             {"response_received": "false"})
            now = time.monotonic()
            for d in details:
                ti = d.get("task_instance") or {}
                key = (ti.get("dag_id"), ti.get("dag_run_id"), ti.get("task_id"))
                if not str(key[1] or "").startswith(prefix) or key in answered:
                    continue
                if ti.get("state") != "awaiting_input":
                    continue
                since = pending_since.setdefault(key, now)
                if now - since < args.settle:
                    continue
                try:
                    client.respond_hitl(key[0], key[1], key[2], map_index=ti.get("map_index", -1),
                                        chosen_options=["Approve"])
                except AirflowApiError as exc:
                    if exc.status != 409:  # 409: answered already
                        raise
                answered[key] = GateRecord(dag_id=key[0], run_id=key[1], task_id=key[2],
                                           created=ts(d.get("created_at")), answered=time.time())
        time.sleep(args.poll)


# -- one profile ----------------------------------------------------------------------------


@contextlib.contextmanager
def profile_platform(profile: str, runtime: Path) -> Iterator[Any]:
    """The profile's platform, this process pointed at it (store, plans, connections);
    stopped, and its databases dropped / Redis database flushed, however this ends."""
    from migrationbox.cloud.aws_session import clear_client_cache
    from migrationbox.platform.supervisor import Platform

    saved = dict(os.environ)
    with ExitStack() as stack:
        stack.callback(clear_client_cache)
        stack.callback(lambda: (os.environ.clear(), os.environ.update(saved)))
        cfg = None
        if profile == "production":
            from migrationbox.platform.testing import (
                production_unavailable,
                throwaway_production_config,
            )

            reason = production_unavailable()
            if reason:
                raise RuntimeError(f"the production profile needs PostgreSQL and Redis on "
                                   f"loopback: {reason}")
            cfg = stack.enter_context(throwaway_production_config(
                "mbx_bench", schedulers=2, celery_workers=2, worker_concurrency=2))
            _say(f"production: databases {cfg.airflow_db}, {cfg.store_db}, {cfg.mlflow_db}; "
                 f"broker {cfg.broker_url}")
        plat = Platform(runtime, api_port=0, emulator_port=0, teams_port=0, profile=profile,
                        production=cfg, startup_timeout=420)
        stack.callback(plat.down)  # before the databases are dropped (LIFO)
        t0 = time.monotonic()
        plat.up()
        _say(f"{profile}: platform up in {time.monotonic() - t0:.0f} s "
             f"({', '.join(sorted(plat.read_state().processes))})")
        os.environ.update(plat.env())
        clear_client_cache()
        yield plat
        _say(f"{profile}: stopping the platform")


# -- report ---------------------------------------------------------------------------------


def _f(value: Any, fmt: str = ".1f") -> str:
    return "-" if value is None else format(value, fmt)


def table(batches: Sequence[Mapping[str, Any]]) -> str:
    lines = [
        "| profile | waves | runs ok/total | tasks done (failed) | wall (s) | tasks/min "
        "| ready->start p50 / p95 (s) | queued->start p50 / p95 (s) | gate wait p50 (s) "
        "| metadata DB growth (MB) | store growth (MB) | load1 before/mean/after |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for b in batches:
        g = b["db_growth_bytes"]
        lines.append(
            f"| {b['profile']} | {b['waves']} | {b['runs_succeeded']}/{sum(b['runs'].values())} "
            f"| {b['tasks_completed']} ({b['tasks_failed']}) | {b['wall_s']:.0f} "
            f"| {b['tasks_per_min']:.1f} "
            f"| {_f(b['ready_to_start_p50_s'])} / {_f(b['ready_to_start_p95_s'])} "
            f"| {_f(b['queued_to_start_p50_s'])} / {_f(b['queued_to_start_p95_s'])} "
            f"| {_f(b['gate_wait_p50_s'])} "
            f"| {g.get('metadata', 0) / 2**20:.1f} | {g.get('store', 0) / 2**20:.2f} "
            f"| {b['load1_before']:.1f} / {_f(b['load1_mean_during'])} / "
            f"{b['load1_after']:.1f} |")
    slots = {b["profile"]: b.get("slots", "?") for b in batches}
    lines += ["", "Task slots: " + "; ".join(f"{p} {s}" for p, s in slots.items())]
    lines += ["", "Memory (RSS of each process tree, MB: peak / mean) and CPU seconds used "
              "during the batch:", ""]
    comps = sorted({c for b in batches for c in b["memory"]})
    lines.append("| component | " + " | ".join(f"{b['profile']} {b['waves']}" for b in batches)
                 + " |")
    lines.append("|---|" + "---|" * len(batches))
    for c in comps:
        cells = []
        for b in batches:
            m = b["memory"].get(c)
            cpu = b["cpu_s"].get(c)
            cells.append("" if m is None else
                         f"{m['peak_mb']:.0f} / {m['mean_mb']:.0f}"
                         + ("" if cpu is None else f" ({cpu:.0f} cpu s)"))
        lines.append(f"| {c} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


GROWTH_KEYS = ("waves", "wall_s", "tasks_completed", "tasks_per_min", "ready_to_start_p50_s",
               "ready_to_start_p95_s", "queued_to_start_p95_s", "db_growth_bytes.metadata",
               "db_growth_bytes.store")


def growth_table(batches: Sequence[Mapping[str, Any]]) -> str:
    lines = []
    for profile in dict.fromkeys(b["profile"] for b in batches):
        mine = sorted((b for b in batches if b["profile"] == profile), key=lambda b: b["waves"])
        if len(mine) < 2:
            continue
        ratios = growth(mine[0], mine[-1])
        peaks = {c: (mine[-1]["memory"][c]["peak_mb"] / mine[0]["memory"][c]["peak_mb"])
                 for c in mine[0]["memory"] if c in mine[-1]["memory"]
                 and mine[0]["memory"][c]["peak_mb"]}
        cells = ", ".join(f"{k} x{_f(ratios.get(k), '.2f')}" for k in GROWTH_KEYS)
        mem = ", ".join(f"{c} x{v:.2f}" for c, v in sorted(peaks.items()))
        lines.append(f"- {profile}, {mine[0]['waves']} -> {mine[-1]['waves']} waves: {cells}; "
                     f"peak RSS {mem}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--waves", default="10,50", help="comma-separated N (default 10,50)")
    ap.add_argument("--profiles", default="embedded,production")
    ap.add_argument("--approvals", choices=("rest", "auto"), default="rest",
                    help="rest: production estates, gates answered by REST (default); auto: "
                         "staging estates with approvals=auto_non_production")
    ap.add_argument("--json", type=Path, default=None, help="also write every figure here")
    ap.add_argument("--timeout", type=float, default=3600.0,
                    help="seconds a batch may take from its first trigger")
    ap.add_argument("--parse-timeout", type=float, default=240.0,
                    help="seconds (plus 6 per wave) for the wave DAGs to be parsed")
    ap.add_argument("--poll", type=float, default=3.0, help="REST poll interval (s)")
    ap.add_argument("--settle", type=float, default=4.0,
                    help="seconds a gate sits in awaiting_input before it is answered")
    ap.add_argument("--quiet", type=float, default=10.0,
                    help="seconds to wait after the DAGs are parsed, before measuring")
    ap.add_argument("--sample-interval", type=float, default=2.0)
    ap.add_argument("--keep-runtime", action="store_true",
                    help="keep the temporary runtime folders (logs) for inspection")
    args = ap.parse_args(argv)
    waves = sorted({int(w) for w in args.waves.split(",") if w.strip()})
    profiles = [p.strip() for p in args.profiles.split(",") if p.strip()]
    if not waves or min(waves) < 1:
        ap.error("--waves needs positive numbers")
    if unknown := set(profiles) - {"embedded", "production"}:
        ap.error(f"unknown profile(s): {sorted(unknown)}")
    # SIGTERM unwinds like Ctrl-C: the finally/ExitStack blocks stop the platform and
    # drop the databases
    def _terminated(*_: Any) -> None:
        _say("SIGTERM: stopping the platform, dropping the benchmark's databases")
        sys.exit(143)

    signal.signal(signal.SIGTERM, _terminated)
    os.environ.pop("MLFLOW_TRACKING_URI", None)  # the platform's own MLflow store

    started_at = datetime.now(UTC)
    load_start = os.getloadavg()
    _say(f"bench_executors: profiles {profiles}, waves {waves}, approvals {args.approvals}; "
         f"{os.cpu_count()} CPUs, load {load_start[0]:.2f} {load_start[1]:.2f} "
         f"{load_start[2]:.2f}")
    batches: list[dict[str, Any]] = []
    errors: list[str] = []
    for profile in profiles:
        root = Path(tempfile.mkdtemp(prefix=f"bench-executors-{profile}-"))
        try:
            with profile_platform(profile, root / "platform") as plat:
                for n in waves:
                    batches.append(run_batch(plat, profile, n, args, root / "estates"))
        except Exception as exc:  # report what was measured; the next profile still runs
            errors.append(f"{profile}: {type(exc).__name__}: {exc}")
            _say(f"{profile}: FAILED: {type(exc).__name__}: {exc}")
            traceback.print_exc()
        finally:
            if args.keep_runtime:
                _say(f"{profile}: runtime kept in {root}")
            else:
                shutil.rmtree(root, ignore_errors=True)
    load_end = os.getloadavg()
    report = {
        "started_at": started_at.isoformat(timespec="seconds"),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "host": {"cpus": os.cpu_count(), "machine": host_platform.machine(),
                 "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
                 "python": host_platform.python_version()},
        "load_avg_start": list(load_start),
        "load_avg_end": list(load_end),
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "batches": batches,
        "errors": errors,
        "not_covered": list(NOT_COVERED),
    }
    print()
    print(table(batches))
    if g := growth_table(batches):
        print("\nGrowth (largest N / smallest N):")
        print(g)
    print(f"\nload average (1 min) at start {load_start[0]:.2f}, at end {load_end[0]:.2f}; "
          f"{os.cpu_count()} CPUs; {(datetime.now(UTC) - started_at).total_seconds():.0f} s "
          "in all")
    for b in batches:
        if b["unfinished_runs"] or b["failed_tasks"]:
            print(f"{b['profile']}/{b['waves']}: unfinished runs {b['unfinished_runs']}, "
                  f"failed tasks {b['failed_tasks']}")
    for e in errors:
        print(f"ERROR {e}")
    print("\nNot covered:")
    for item in NOT_COVERED:
        print(f"- {item}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1, default=str))
        print(f"\nfigures written to {args.json}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
