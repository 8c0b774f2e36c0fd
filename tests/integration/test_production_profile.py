"""The production profile for real: Airflow on PostgreSQL, CeleryExecutor on Redis, two
schedulers, two Celery workers, the MigrationBox store on PostgreSQL.

One platform for the module (start-up is the slow part on 2 cores), in a temporary
runtime folder on free loopback ports, on two PostgreSQL databases this module creates
under unique names and drops at the end, and on a Redis database (0-15) that was empty
when the module started and is emptied again at the end. Skips, saying why, when
PostgreSQL or Redis does not answer on loopback.

The DAG run is the project's own ``migrationbox__discover_and_plan`` (dags/): its two
tasks validate a small estate and plan it into the store, so a Celery worker writes to
the PostgreSQL store, which is checked afterwards.

Then one wave is migrated end to end on this shape (lab sources, the emulator's cloud)
with two faults injected into the same run, because each costs minutes: the Celery
worker running the replication round is killed (SIGKILL, its whole process group) part
way through the first round, and one of the two schedulers is killed at the cutover gate.
The killed worker stays down until the wave ends, so the round's retry can only run on
another worker; the killed scheduler too, so only the other one can carry the run on.
Then a healer incident (a CPU burn on a migrated chaos estate) is healed by the heal DAG
woken by the triggerer's watch, its tasks running on the Celery workers. The last test
stops the platform and checks that no process of it is left.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psutil
import pytest

from migrationbox.platform import production as prod
from migrationbox.platform.airflow_runtime import venv_bin
from migrationbox.platform.supervisor import Platform

pytestmark = [pytest.mark.integration, pytest.mark.airflow, pytest.mark.timeout(600)]

PLANNING_DAG = "migrationbox__discover_and_plan"
ESTATE = "prodprofile"
TIMINGS: dict[str, float] = {}


#: Set before the platform starts, so every component (and this process) sees it: the
#: healer's triggerer watch looks every 2 s (the heal test's time budget).
MODULE_ENV = {
    "MIGRATIONBOX_HEAL_MECHANISM": "asset",
    "MIGRATIONBOX_HEAL_WATCH_INTERVAL_S": "2",
}


def _restore_environ(saved: dict[str, str]) -> None:
    from migrationbox.cloud.aws_session import clear_client_cache

    os.environ.clear()
    os.environ.update(saved)
    clear_client_cache()


def _unavailable() -> str | None:
    from migrationbox.platform.testing import production_unavailable

    return production_unavailable()


def _record(sid: str, ip: str, role: str, ports: list[int], deps: list[str]) -> dict:
    return {
        "server_id": sid,
        "hostname": f"{sid}.corp.local",
        "ip_addresses": [ip],
        "os": {"type": "Linux", "distribution": "Ubuntu", "version": "22.04"},
        "hardware": {"cpu_cores": 4, "ram_gb": 16, "disk_total_gb": 100},
        "applications": [{"name": role, "ports": ports, "data_size_gb": 1.0}],
        "network_dependencies": [{"destination": d, "protocol": "tcp"} for d in deps],
        "performance_baseline": {"cpu_avg_utilization_pct": 30,
                                 "memory_avg_utilization_pct": 50},
        "environment": "production",
        "role": role,
    }


def _write_estate(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    records = [
        _record("web-01", "10.50.0.11", "web", [443], ["api-01:8080"]),
        _record("api-01", "10.50.0.12", "api", [8080], ["db-01:5432"]),
        _record("db-01", "10.50.0.13", "postgresql-primary", [5432], []),
    ]
    for r in records:
        (folder / f"{r['server_id']}.json").write_text(json.dumps(r))
    return folder


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    reason = _unavailable()
    if reason:
        pytest.skip(f"the production profile needs PostgreSQL and Redis on loopback: {reason}")
    from migrationbox.platform.testing import NoFreeRedisDatabase, throwaway_production_config

    runtime = tmp_path_factory.mktemp("production-platform")
    plugins = runtime / "no-plugins"
    plugins.mkdir()
    with ExitStack() as stack:
        try:
            cfg = stack.enter_context(throwaway_production_config(
                "mbx_prod", schedulers=2, celery_workers=2, worker_concurrency=1,
                replication_workers=2, replication_concurrency=1,
                # a killed worker's task is failed and retried after 30 s without a
                # heartbeat
                task_heartbeat_timeout=30))
        except NoFreeRedisDatabase as exc:
            pytest.skip(str(exc))
        saved_env = dict(os.environ)
        stack.callback(_restore_environ, saved_env)
        os.environ.update(MODULE_ENV)
        os.environ.pop("MLFLOW_TRACKING_URI", None)  # the platform's own MLflow store
        instance = Platform(runtime, api_port=0, emulator_port=0, plugins_folder=plugins,
                            profile="production", production=cfg, startup_timeout=300)
        # stopped before the databases are dropped and the broker emptied (LIFO)
        stack.callback(instance.down)
        started = time.monotonic()
        instance.up()  # stops whatever it started if start-up fails
        TIMINGS["up"] = time.monotonic() - started
        # this process acts on the platform as a user's tooling would: its store, plans
        # folder and emulator (put back by _restore_environ)
        from migrationbox.cloud.aws_session import clear_client_cache

        os.environ.update(instance.env())
        clear_client_cache()
        yield instance
    print("\nproduction profile timings (s): "
          + ", ".join(f"{k} {v:.1f}" for k, v in TIMINGS.items()))


def test_every_component_runs_and_reports_healthy(platform: Platform) -> None:
    status = platform.status()
    assert status.running, status.problem
    assert status.profile == "production"
    state = platform.read_state()
    assert state is not None and state.production is not None
    names = {c.name for c in status.components}
    assert names == {"emulator", "teams-bot"} | {
        f"airflow-{n}" for n in state.production.component_commands()}
    assert {"airflow-api-server", "airflow-scheduler-1", "airflow-scheduler-2",
            "airflow-dag-processor", "airflow-triggerer-1", "airflow-triggerer-2",
            "airflow-celery-worker-1",
            "airflow-celery-worker-2", "airflow-celery-replication-worker-1",
            "airflow-celery-replication-worker-2"} <= names
    assert status.health is not None
    for key in ("metadatabase", "scheduler", "dag_processor", "triggerer"):
        assert status.health[key]["status"] == "healthy", status.health
    # /monitor/health only speaks for the latest scheduler: both must be heartbeating
    assert status.schedulers_alive == 2
    assert status.triggerers_alive == 2  # likewise for the triggerers
    assert sorted(status.celery_workers or []) == sorted(state.production.worker_hostnames())


def test_airflow_runs_on_postgres_with_the_celery_executor(platform: Platform) -> None:
    env = platform.env()
    state = platform.read_state()
    assert state is not None and state.production is not None
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == state.production.metadata_url
    assert env["MIGRATIONBOX_STORE_URL"] == state.production.store_url
    from sqlalchemy import create_engine, text

    eng = create_engine(state.production.metadata_url)
    try:
        with eng.connect() as conn:
            schedulers = conn.execute(text(
                "SELECT count(*) FROM job WHERE job_type = 'SchedulerJob' "
                "AND state = 'running'")).scalar_one()
    finally:
        eng.dispose()
    assert schedulers == 2
    # nothing fell back to the embedded SQLite database
    assert not (Path(state.airflow_home) / "airflow.db").exists()


def test_two_workers_answer_airflows_celery_app(platform: Platform) -> None:
    """``celery inspect ping`` through Airflow's own Celery app, configured only by the
    platform's environment: the workers are on the broker Airflow's scheduler uses."""
    state = platform.read_state()
    assert state is not None and state.production is not None
    env = {**os.environ, **platform.env()}
    result = subprocess.run(
        [str(venv_bin() / "celery"), "-A",
         "airflow.providers.celery.executors.celery_executor.app",
         "inspect", "ping", "--timeout", "5", "--json"],
        env=env, capture_output=True, text=True, timeout=180, check=False,
        cwd=state.airflow_home,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    answered = json.loads(result.stdout.strip().splitlines()[-1])
    assert sorted(answered) == sorted(state.production.worker_hostnames()), answered
    assert all(reply == {"ok": "pong"} for reply in answered.values()), answered


def test_a_dag_run_succeeds_on_celery_workers_and_writes_the_postgres_store(
    platform: Platform, tmp_path: Path
) -> None:
    from migrationbox.store import repository
    from migrationbox.store.db import dispose, session_scope

    state = platform.read_state()
    assert state is not None and state.production is not None
    broker = state.production.broker_url
    before = sum(prod.celery_task_totals(broker).values())
    estate_dir = _write_estate(tmp_path / ESTATE)
    started = time.monotonic()
    with platform.client() as client:
        client.wait_for_dag(PLANNING_DAG, timeout=180)
        run = client.trigger(PLANNING_DAG, conf={"estate_path": str(estate_dir),
                                                 "estate": ESTATE})
        final = client.wait_for_run(PLANNING_DAG, run["dag_run_id"], timeout=240)
        tis = client.task_instances(PLANNING_DAG, run["dag_run_id"])
    TIMINGS["dag run"] = time.monotonic() - started
    states = {ti["task_id"]: ti["state"] for ti in tis}
    assert final["state"] == "success", states
    assert states == {"validate": "success", "plan": "success"}
    assert {ti["queue"] for ti in tis} == {"default"}
    # both tasks went through Celery: the workers received them
    after = sum(prod.celery_task_totals(broker).values())
    assert after - before >= 2, (before, after)
    # ... and reported success through the result backend, the metadata database
    from sqlalchemy import create_engine, text

    eng = create_engine(state.production.metadata_url)
    try:
        with eng.connect() as conn:
            succeeded = conn.execute(text(
                "SELECT count(*) FROM celery_taskmeta WHERE status = 'SUCCESS'")).scalar_one()
    finally:
        eng.dispose()
    assert succeeded >= 2, succeeded
    # the worker wrote the estate and its plan into the PostgreSQL store
    store_url = state.production.store_url
    try:
        with session_scope(store_url) as session:
            estate = repository.get_estate(session, ESTATE)
            assert estate is not None
            assert sorted(s.server_id for s in estate.servers) == ["api-01", "db-01", "web-01"]
    finally:
        dispose(store_url)


# -- one wave end to end, with a worker and a scheduler killed part way -----------------

WAVE_ESTATE = "prodwave"
WAVE_DAG = f"migrate__{WAVE_ESTATE}__wave_01"
ROUNDS_TASK = "replicate.sync_rounds"
#: Each lab disk is 8 MiB (1 MiB + 700 GB / 100) and every copy stream is throttled to
#: 0.5 MiB/s, so the first round lasts half a minute: time to kill its worker part way.
WAVE_CONF = {
    "cutover": {"steps": [5, 25, 50, 100], "dwell_seconds": 0.5},
    "health": {"probe_requests": 10},
    "replicate": {"bandwidth_mib_s": 0.5, "cadence_seconds": 1},
}
ROUND_SENT = re.compile(r"round 1 sent (\d+) bytes")


def _wave_record(sid: str, role: str, ip: str, ports: list[int], kind: str) -> dict:
    record = _record(sid, ip, role, ports, [])
    record["applications"] = [{"name": role, "ports": ports, "kind": kind,
                               "data_size_gb": 700.0}]
    record["performance_baseline"]["cpu_p95_utilization_pct"] = 60
    record["backup"] = {"available": True, "last_backup_at": "2026-11-24T02:00:00Z"}
    return record


@dataclass
class WaveObservations:
    """What the faulted wave run showed; each test below asserts on one part of it."""

    dag_run_id: str = ""
    state: str = ""
    task_states: dict[str, str] = field(default_factory=dict)
    killed_worker: str | None = None  # Celery node name
    killed_component: str | None = None
    bytes_verified_at_kill: int = 0  # in the journals, when the worker was dead
    retry_worker: str | None = None
    killed_scheduler: str | None = None
    killed_scheduler_at: datetime | None = None
    #: schedulers whose heartbeat is newer than the kill, read when the wave has ended
    schedulers_beating_after_kill: int | None = None
    total_bytes: int = 0
    errors: list[str] = field(default_factory=list)


def _schedulers_beating_since(metadata_url: str, since: datetime) -> int:
    from sqlalchemy import create_engine, text

    eng = create_engine(metadata_url)
    try:
        with eng.connect() as conn:
            return int(conn.execute(text(
                "SELECT count(*) FROM job WHERE job_type = 'SchedulerJob' "
                "AND latest_heartbeat > :since"), {"since": since}).scalar_one())
    finally:
        eng.dispose()


def _active_rounds_node(broker: str) -> str | None:
    """The Celery worker that is executing the wave's replication round now, if any
    (``inspect active``: each entry carries the Airflow workload it runs)."""
    app = prod._celery_app(broker)
    try:
        active = app.control.inspect(timeout=1.0).active() or {}
    finally:
        app.close()
    for node, tasks in active.items():
        if any(WAVE_DAG in str(t.get("args")) and ROUNDS_TASK in str(t.get("args"))
               for t in tasks):
            return node
    return None


def _component_of(platform: Platform, node: str) -> str:
    state = platform.read_state()
    assert state is not None
    for key, record in state.processes.items():
        if node in record.command:
            return key.removeprefix("airflow-")
    raise AssertionError(f"no component runs Celery node {node}: {state.processes}")


def _journal_bytes(targets: list[Path]) -> int:
    """Bytes the unfinished round's journals hold as written and verified."""
    from migrationbox.replication.journal import read_journal

    total = 0
    for target in targets:
        state = read_journal(target)
        if state is None:
            continue
        total += sum(entry.size for entry in state.done.values())
        total += sum(len(hashes) * state.block_size
                     for rel, hashes in state.checkpoints.items() if rel not in state.done)
    return total


def _kill_the_rounds_worker(platform: Platform, targets: list[Path], seen: WaveObservations,
                            stop: threading.Event) -> None:
    """Watcher thread: once the first round has checkpointed something, SIGKILL the
    worker running it; then note which worker runs the retry."""
    from migrationbox.replication.journal import read_journal

    state = platform.read_state()
    assert state is not None and state.production is not None
    broker = state.production.broker_url
    try:
        while not stop.is_set() and seen.killed_worker is None:
            journals = [read_journal(t) for t in targets]
            started = any(j is not None and (j.done or any(j.checkpoints.values()))
                          for j in journals)
            node = _active_rounds_node(broker) if started else None
            if node:
                name = _component_of(platform, node)
                record = platform.read_state().processes[f"airflow-{name}"]  # type: ignore[union-attr]
                os.killpg(record.pid, signal.SIGKILL)
                seen.killed_worker, seen.killed_component = node, name
                time.sleep(1.0)  # every write of the dead round has landed or not
                seen.bytes_verified_at_kill = _journal_bytes(targets)
                break
            time.sleep(0.3)
        while not stop.is_set() and seen.killed_worker and seen.retry_worker is None:
            seen.retry_worker = _active_rounds_node(broker)
            time.sleep(1.0)
    except Exception as exc:  # reported by the tests, not lost in the thread
        seen.errors.append(f"{type(exc).__name__}: {exc}")


@pytest.fixture(scope="module")
def faulted_wave(platform: Platform, tmp_path_factory: pytest.TempPathFactory
                 ) -> WaveObservations:
    from migrationbox.lab.lab import Lab
    from migrationbox.orchestration.demo import register_lab_endpoints
    from migrationbox.orchestration.follow import Approver, follow_run
    from migrationbox.service import plan_estate
    from migrationbox.store import repository
    from migrationbox.store.db import session_scope

    folder = tmp_path_factory.mktemp("wave-estate") / WAVE_ESTATE
    folder.mkdir()
    for record in (_wave_record("web-01", "web", "10.60.0.11", [80, 443], "web"),
                   _wave_record("api-01", "api", "10.60.0.12", [8080], "api"),
                   _wave_record("db-01", "postgresql-primary", "10.60.0.13", [5432],
                                "database")):
        (folder / f"{record['server_id']}.json").write_text(json.dumps(record))
    plan = plan_estate(folder, estate=WAVE_ESTATE).plan
    assert len(plan.waves) == 1, plan.waves
    with session_scope() as s:
        servers = repository.get_estate(s, WAVE_ESTATE).servers
    lab = Lab(WAVE_ESTATE, servers, root=Path(platform.runtime_dir) / "lab", data_scale_mb=8)
    register_lab_endpoints(WAVE_ESTATE, lab.up())
    seen = WaveObservations()
    seen.total_bytes = sum(
        f.stat().st_size for sid in ("web-01", "api-01", "db-01")
        for f in lab.disk_paths(sid)[0].rglob("*") if f.is_file())
    targets = [lab.disk_paths(sid)[1] for sid in ("web-01", "api-01", "db-01")]
    state = platform.read_state()
    assert state is not None and state.production is not None

    def decide(detail: dict) -> str:
        task = detail.get("task_id") or (detail.get("task_instance") or {}).get("task_id")
        if task == "cutover.approve_cutover" and seen.killed_scheduler is None:
            record = platform.read_state().processes["airflow-scheduler-1"]  # type: ignore[union-attr]
            os.killpg(record.pid, signal.SIGKILL)
            seen.killed_scheduler = "scheduler-1"
            seen.killed_scheduler_at = datetime.now(UTC)
        return "Approve"

    stop = threading.Event()
    watcher = threading.Thread(target=_kill_the_rounds_worker,
                               args=(platform, targets, seen, stop), daemon=True)
    started = time.monotonic()
    try:
        with platform.client() as client:
            client.wait_for_dag(WAVE_DAG, timeout=240)
            run = client.trigger(WAVE_DAG, conf=WAVE_CONF)
            seen.dag_run_id = run["dag_run_id"]
            watcher.start()
            outcome = follow_run(client, WAVE_DAG, run["dag_run_id"],
                                 approver=Approver(decide), timeout=900, say=print)
        seen.state, seen.task_states = outcome.state, outcome.task_states
        if seen.killed_scheduler_at is not None:
            seen.schedulers_beating_after_kill = _schedulers_beating_since(
                state.production.metadata_url, seen.killed_scheduler_at + timedelta(seconds=2))
    finally:
        stop.set()
        watcher.join(timeout=10)
        TIMINGS["faulted wave"] = time.monotonic() - started
        # put the platform back whole for the tests after these
        for name in (seen.killed_component, "scheduler-1" if seen.killed_scheduler else None):
            if name:
                platform.restart_component(name)
        lab.down(purge=True)  # its databases too
    return seen


def test_a_wave_migrates_end_to_end_on_postgres_and_celery(
        platform: Platform, faulted_wave: WaveObservations) -> None:
    from migrationbox.store import repository
    from migrationbox.store.db import session_scope

    assert faulted_wave.errors == []
    assert faulted_wave.state == "success", faulted_wave.task_states
    assert faulted_wave.task_states["validate.decommission_sources"] == "success"
    with session_scope() as s:
        runs = {r.phase: r for r in repository.phase_runs(s, WAVE_ESTATE, 1,
                                                           faulted_wave.dag_run_id)}
        approvals = repository.approvals(s, WAVE_ESTATE, 1, dag_run_id=faulted_wave.dag_run_id)
    for phase in ("preflight", "provision", "replicate", "configure", "cutover", "validate",
                  "decommission"):
        assert runs[phase].status == "success", (phase, runs[phase].summary)
    assert {(a.gate, a.decision) for a in approvals} >= {
        ("cutover", "approved"), ("decommission", "approved")}
    # every disk on the target, verified block by block against the source
    replicated = runs["replicate"].details["details"]["servers"]
    for sid in ("web-01", "api-01", "db-01"):
        assert replicated[sid]["disks"]["root"]["verify"]["ok"], replicated[sid]
    assert replicated["db-01"]["databases"]["app"]["checksum_match"]
    with platform.client() as client:
        tis = client.task_instances(WAVE_DAG, faulted_wave.dag_run_id)
    assert all(ti["state"] in ("success", "skipped") for ti in tis), [
        (ti["task_id"], ti["state"]) for ti in tis if ti["state"] not in ("success", "skipped")]


def test_a_killed_worker_s_round_is_retried_on_another_worker_sending_nothing_twice(
        platform: Platform, faulted_wave: WaveObservations) -> None:
    state = platform.read_state()
    assert state is not None
    assert faulted_wave.errors == []
    assert faulted_wave.killed_worker, "the replication round was never seen on a worker"
    assert faulted_wave.retry_worker, "the retried round was never seen on a worker"
    assert faulted_wave.retry_worker != faulted_wave.killed_worker
    # the round runs on the replication queue, served by its own workers
    assert (faulted_wave.killed_component or "").startswith("celery-replication-worker-")
    assert faulted_wave.retry_worker.startswith("migrationbox-replication-worker-")
    with platform.client() as client:
        ti = client.request(
            "GET", f"/api/v2/dags/{WAVE_DAG}/dagRuns/{faulted_wave.dag_run_id}/"
            f"taskInstances/{ROUNDS_TASK}")
    assert ti["queue"] == "replication", ti
    assert ti["try_number"] >= 2, ti
    # the retry's first round resumed from the dead round's journal: it sent at most what
    # the journals did not hold as verified, so no verified byte crossed the wire twice
    held = faulted_wave.bytes_verified_at_kill
    assert 0 < held < faulted_wave.total_bytes, (held, faulted_wave.total_bytes)
    logs = sorted(Path(state.airflow_home, "logs").rglob("*.log"))
    retried = [p for p in logs if f"dag_id={WAVE_DAG}" in str(p) and ROUNDS_TASK in str(p)
               and p.name != "attempt=1.log"]
    sent = [int(m) for p in retried for m in ROUND_SENT.findall(p.read_text(errors="replace"))]
    assert sent, [str(p) for p in retried]
    assert sent[0] <= faulted_wave.total_bytes - held, (sent, held, faulted_wave.total_bytes)


def test_the_other_scheduler_carries_the_wave_on_when_one_is_killed(
        platform: Platform, faulted_wave: WaveObservations) -> None:
    assert faulted_wave.killed_scheduler == "scheduler-1"
    # the wave finished while only one scheduler was heartbeating: of the two, only one
    # has a heartbeat from after the kill (not a count of "recent" heartbeats, which on
    # a fast machine could still include the dead one's last beat)
    assert faulted_wave.schedulers_beating_after_kill == 1
    assert faulted_wave.state == "success"
    state = platform.read_state()
    assert state is not None and state.production is not None
    from migrationbox.platform.testing import wait_until

    wait_until("the restarted scheduler to heartbeat", lambda: prod.alive_schedulers(
        state.production.metadata_url) == 2, timeout=120)  # type: ignore[union-attr]


# -- a healer incident -------------------------------------------------------------------

HEAL_DAG = "migrationbox_heal"


@pytest.fixture(scope="module")
def heal_chaos(platform: Platform) -> Iterator[Any]:
    """A migrated chaos estate with trained forecasters, watched by the heal DAG's conf
    (built once: the heal tests share it; the last one takes it down)."""
    from migrationbox.healer.chaoslab import ChaosEstate
    from migrationbox.healer.jobs import CONF_VARIABLE

    env = platform.env()
    chaos = ChaosEstate(f"pw{uuid.uuid4().hex[:6]}", Path(platform.runtime_dir) / "chaos",
                        env["MIGRATIONBOX_EMULATOR_URL"])
    try:
        started = time.monotonic()
        chaos.up()
        with platform.client() as client:
            client.wait_for_dag(HEAL_DAG, timeout=240)
            chaos.baseline(30.0)
            client.bulk_upsert("variables", [{"key": CONF_VARIABLE, "value": json.dumps({
                "estates": [chaos.estate], "interval_s": 2, "sustain_scale": 0.02,
                "verify_timeout_s": 30})}])
        TIMINGS["chaos estate"] = time.monotonic() - started
        yield chaos
    finally:
        _chaos_down(chaos)


def _chaos_down(chaos: Any) -> None:
    if chaos.lab is not None:
        chaos.down()
        chaos.lab = None


def _fault_until_healed(platform: Platform, chaos: Any, scenario: str = "cpu_burn"
                        ) -> tuple[Any, Any, datetime]:
    """A chaos scenario (a CPU burn by default) on the chaos estate, cleared once the
    healer has dealt with it: (incident, report, when the fault started)."""
    from migrationbox.healer.chaoslab import SCENARIOS
    from migrationbox.healer.store import IncidentStore
    from migrationbox.platform.testing import wait_until
    from migrationbox.store.db import engine

    state = platform.read_state()
    assert state is not None and state.production is not None
    store = IncidentStore(engine(state.production.store_url))
    spec = SCENARIOS[scenario]
    since = datetime.now(UTC)
    chaos.inject(scenario)
    try:
        healed = wait_until(f"the {scenario} to be healed", lambda: [
            r for r in store.list(chaos.estate)
            if r.anomaly_type == spec["row"] and r.resource == spec["server"]
            and r.detected_at >= since and r.status in ("resolved", "failed")],
            timeout=300, poll=2.0)
    finally:
        chaos.clear(spec["server"])
    incident, report = store.get(healed[0].incident_id)
    return incident, report, since


def test_a_healer_incident_is_healed_on_celery_workers(platform: Platform,
                                                        heal_chaos: Any) -> None:
    state = platform.read_state()
    assert state is not None and state.production is not None
    env = platform.env()
    started = time.monotonic()
    with platform.client() as client:
        try:
            client.unpause(HEAL_DAG)
            incident, report, _ = _fault_until_healed(platform, heal_chaos)
            assert incident.status.value == "resolved", report
            runs = client.dag_runs(HEAL_DAG)
            assert runs, "no heal run was woken"
            tis = client.task_instances(HEAL_DAG, runs[0]["dag_run_id"])
            # the run's tasks went through the Celery queue, not a local executor
            assert {ti["queue"] for ti in tis if ti.get("start_date")} == {"default"}, tis
            assert all(ti.get("executor") in (None, "", "CeleryExecutor") for ti in tis), tis
            # the forecasters the healer used were logged by this process and loaded by a
            # worker: through MLflow on PostgreSQL, their files in the emulator's S3
            from migrationbox.cloud.aws_session import aws_client
            from migrationbox.mlflow_backend import split_s3

            bucket, prefix = split_s3(state.production.mlflow_artifact_root)
            listed = aws_client("s3").list_objects_v2(Bucket=bucket, Prefix=prefix)
            assert listed.get("KeyCount", 0) > 0, listed
            assert env["MLFLOW_TRACKING_URI"] == state.production.mlflow_url
        finally:
            client.pause(HEAL_DAG)
            TIMINGS["heal"] = time.monotonic() - started


# -- the heal watch with two triggerers ------------------------------------------------

def _watch_triggers(metadata_url: str) -> list[tuple[int, int | None, bool]]:
    """Every EstateWatchTrigger row: (trigger id, triggerer job id, that job alive?)."""
    from sqlalchemy import create_engine, text

    from migrationbox.healer.watch_trigger import CLASSPATH

    cutoff = datetime.now(UTC) - timedelta(seconds=prod.TRIGGERER_ALIVE_S)
    eng = create_engine(metadata_url)
    try:
        with eng.connect() as conn:
            rows = conn.execute(text(
                "SELECT t.id, t.triggerer_id, (j.end_date IS NULL AND j.latest_heartbeat > "
                ":cutoff AND j.job_type = 'TriggererJob') FROM trigger t "
                "LEFT JOIN job j ON j.id = t.triggerer_id WHERE t.classpath = :classpath"),
                {"cutoff": cutoff, "classpath": CLASSPATH}).all()
    finally:
        eng.dispose()
    return [(int(r[0]), r[1], bool(r[2])) for r in rows]


def _triggerers_running(platform: Platform, trigger_id: int,
                        offsets: dict[str, int] | None = None) -> list[str]:
    """Triggerer components running trigger ``trigger_id`` now, by their logs (after
    ``offsets``, byte positions per component): its last "starting" line comes after its
    last "cancelled"/"completed" line. (A stalled triggerer can lose a trigger and run
    it on until its next loop: Airflow's takeover is by heartbeat age.)"""
    names = [n.removeprefix("airflow-") for n in platform.read_state().processes  # type: ignore[union-attr]
             if n.startswith("airflow-triggerer-")]
    started = re.compile(rf"trigger ID {trigger_id} starting")
    ended = re.compile(rf"(Trigger cancelled|trigger completed).*name='ID {trigger_id}'")
    found = []
    for name in sorted(names):
        with open(platform.logs_dir / f"airflow-{name}.log", "rb") as log:
            log.seek((offsets or {}).get(name, 0))
            lines = log.read().decode(errors="replace").splitlines()
        last_start = max((i for i, ln in enumerate(lines) if started.search(ln)), default=-1)
        last_end = max((i for i, ln in enumerate(lines) if ended.search(ln)), default=-1)
        if last_start > last_end:
            found.append(name)
    return found


def _signal_events_since(metadata_url: str, since: datetime) -> list[dict]:
    """Payloads of the heal signals asset's events since ``since``."""
    from sqlalchemy import create_engine, text

    from migrationbox.healer.watch_trigger import SIGNALS_ASSET

    eng = create_engine(metadata_url)
    try:
        with eng.connect() as conn:
            extras = conn.execute(text(
                "SELECT e.extra FROM asset_event e JOIN asset a ON a.id = e.asset_id "
                "WHERE a.name = :name AND e.timestamp >= :since ORDER BY e.id"),
                {"name": SIGNALS_ASSET, "since": since}).scalars().all()
    finally:
        eng.dispose()
    return [(json.loads(x) if isinstance(x, str) else x or {}).get("payload") or {}
            for x in extras]


def test_the_heal_watch_moves_to_the_other_triggerer_when_its_triggerer_dies(
        platform: Platform, heal_chaos: Any) -> None:
    """Two triggerers: the estate watch runs in exactly one; SIGKILL that one (its whole
    process group) and the other claims the watch once the dead one's heartbeat is older
    than ``[triggerer] triggerer_health_check_threshold``; a new fault (a failing health
    check) then still wakes the heal DAG and is healed, with one asset event per firing."""
    from migrationbox.healer.jobs import CONF_VARIABLE
    from migrationbox.platform.testing import wait_until

    state = platform.read_state()
    assert state is not None and state.production is not None
    metadata = state.production.metadata_url
    started = time.monotonic()
    killed: str | None = None
    with platform.client() as client:
        try:
            wait_until("both triggerers to heartbeat",
                       lambda: prod.alive_triggerers(metadata) == 2, timeout=120)
            # the watch is (re)registered at the next parse after the unpause; before
            # it, the row left by the previous test may still be on its way out
            unpaused_at = datetime.now(UTC)
            # each burn is a new incident, not folded into the previous test's one
            client.bulk_upsert("variables", [{"key": CONF_VARIABLE, "value": json.dumps({
                "estates": [heal_chaos.estate], "interval_s": 2, "sustain_scale": 0.02,
                "verify_timeout_s": 30, "dedupe_window_s": 20})}])
            client.unpause(HEAL_DAG)
            wait_until("the heal DAG to be parsed unpaused", lambda: datetime.fromisoformat(
                client.request("GET", f"/api/v2/dags/{HEAL_DAG}").get("last_parsed_time")
                or "1970-01-01T00:00:00+00:00") > unpaused_at, timeout=120)
            # one watch row, assigned to a live triggerer, running in exactly one of them
            first = wait_until("the estate watch to run in one triggerer", lambda: [
                (tid, job, runners) for tid, job, alive in _watch_triggers(metadata)
                if alive and len(runners := _triggerers_running(platform, tid)) == 1],
                timeout=240)
            assert len(first) == 1, first
            trigger_id, first_job, (killed,) = first[0]
            offsets = {n: (platform.logs_dir / f"airflow-{n}.log").stat().st_size
                       for n in state.production.component_commands()
                       if n.startswith("triggerer-")}
            os.killpg(platform.read_state().processes[f"airflow-{killed}"].pid,  # type: ignore[union-attr]
                      signal.SIGKILL)
            killed_at = time.monotonic()
            moved = wait_until("the watch to move to the live triggerer", lambda: [
                (tid, job) for tid, job, alive in _watch_triggers(metadata)
                if alive and job != first_job
                and _triggerers_running(platform, tid, offsets)], timeout=120)
            TIMINGS["watch failover"] = time.monotonic() - killed_at
            assert moved == [(trigger_id, moved[0][1])], moved  # the same trigger, moved
            survivor = _triggerers_running(platform, trigger_id, offsets)
            assert len(survivor) == 1 and survivor[0] != killed, (survivor, killed)
            assert prod.alive_triggerers(metadata) == 1
            # not a second CPU burn: the first test's heal scaled web-01 out to three
            # instances, so the same burn now averages about a third and never
            # crosses the row's 90 %; a failing health check on api-01 is a new fault
            incident, report, since = _fault_until_healed(platform, heal_chaos,
                                                          "failing_health")
            assert incident.status.value == "resolved", report
            # a run the watch woke was sensing after the fault began (one woken earlier
            # may still be sensing, as a woken run goes on until the estate is quiet)
            runs = client.dag_runs(HEAL_DAG)
            woken = [r for r in runs if r.get("run_type") == "asset_triggered"
                     and (r.get("end_date") is None
                          or datetime.fromisoformat(r["end_date"]) >= since)]
            assert woken, ("no asset-triggered heal run was sensing after the failover",
                           since, runs)
            # one event per firing: a watch running in two triggerers would post each
            # firing twice (two event counters both starting at 1)
            events = _signal_events_since(metadata, since)
            assert events, "the watch posted no event for the burn"
            counters = [e.get("events") for e in events]
            assert len(counters) == len(set(counters)), events
            # still only the survivor runs it
            assert [job for _, job, _ in _watch_triggers(metadata)] == [moved[0][1]]
        finally:
            client.pause(HEAL_DAG)
            _chaos_down(heal_chaos)
            if killed:
                platform.restart_component(killed)
            TIMINGS["heal after triggerer kill"] = time.monotonic() - started


def test_the_wave_dag_was_parsed_from_the_plans_bundle_in_object_storage(
        platform: Platform, faulted_wave: WaveObservations) -> None:
    """Planning published the estate's loader and spec to the plans bucket, and Airflow
    parsed the wave DAG from the S3 bundle's download, not from the plans folder (the
    wave test above ran its tasks from it, on workers that initialise that bundle)."""
    from migrationbox.cloud.aws_session import aws_client
    from migrationbox.orchestration.plans_bundle import parse_plans_root
    from migrationbox.orchestration.spec import loader_source
    from migrationbox.platform.airflow_runtime import PLANS_BUNDLE

    state = platform.read_state()
    assert state is not None and state.production is not None
    root = parse_plans_root(state.production.plans_root)
    s3 = aws_client("s3")
    spec = s3.get_object(Bucket=root.bucket, Key=root.spec_key(WAVE_ESTATE))["Body"].read()
    assert spec == (platform.plans_dir / f"{WAVE_ESTATE}.json").read_bytes()
    loader = s3.get_object(Bucket=root.bucket, Key=root.loader_key(WAVE_ESTATE))["Body"]
    assert loader.read().decode() == loader_source(WAVE_ESTATE)
    with platform.client() as client:
        dag = client.get_dag(WAVE_DAG)
        assert dag is not None
        assert not [e for e in client.import_errors()
                    if e.get("bundle_name") == PLANS_BUNDLE], client.import_errors()
    assert dag["bundle_name"] == PLANS_BUNDLE
    assert dag["relative_fileloc"] == f"dags/migrate__{WAVE_ESTATE}.py"
    fileloc = Path(dag["fileloc"])
    download = Path(platform.airflow_home).resolve() / "dag_bundles" / PLANS_BUNDLE
    assert fileloc == download / "dags" / f"migrate__{WAVE_ESTATE}.py", fileloc
    assert not fileloc.is_relative_to(platform.plans_dir.resolve()), fileloc
    # the download holds what the bucket holds, the loader's spec beside its folder
    assert (download / f"{WAVE_ESTATE}.json").read_bytes() == spec


def test_the_wave_s_reports_and_the_healer_s_backups_are_in_the_shared_bucket(
        platform: Platform, faulted_wave: WaveObservations, heal_chaos: Any,
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Files people and other hosts read are objects under ``shared_root``: every report
    the wave's tasks wrote (on the Celery workers) and every backup the healer's estate
    has, byte for byte; a host with an empty runtime folder reads them from there."""
    import hashlib

    from migrationbox import run_reports, shared_files
    from migrationbox.healer import backup

    state = platform.read_state()
    assert state is not None and state.production is not None
    shared = shared_files.configured()
    assert shared is not None and shared.root.uri() == state.production.shared_root
    runtime = Path(platform.runtime_dir)
    run_rel = run_reports.run_relative(WAVE_ESTATE, 1, faulted_wave.dag_run_id)
    local = {p.relative_to(runtime / "artifacts" / run_rel).as_posix(): p
             for p in (runtime / "artifacts" / run_rel).rglob("*") if p.is_file()}
    assert "preflight.json" in local and "validate.json" in local, sorted(local)
    published = {o.key.removeprefix(f"artifacts/{run_rel}/"): o
                 for o in shared.list(f"artifacts/{run_rel}")}
    assert set(published) == set(local), (sorted(published), sorted(local))
    for name, path in local.items():
        assert published[name].etag == hashlib.md5(path.read_bytes()).hexdigest(), name
    backups = sorted((runtime / "backups" / heal_chaos.estate).rglob("*.sqlite"))
    assert backups, "the chaos estate's database was never backed up"
    for path in backups:
        rel = path.relative_to(runtime).as_posix()
        for part in (path, path.with_suffix(".json")):
            assert shared.get_bytes(f"{rel.rsplit('/', 1)[0]}/{part.name}") == \
                part.read_bytes(), part
    # another host: nothing in its runtime folder, everything from the bucket
    monkeypatch.setenv("MIGRATIONBOX_HOME", str(tmp_path / "other-host"))
    assert run_reports.report_path(WAVE_ESTATE, 1, faulted_wave.dag_run_id,
                                   "validate.json").read_bytes() == \
        local["validate.json"].read_bytes()
    server = backups[-1].parent.name
    fetched = backup.latest_backup(heal_chaos.estate, server)
    assert fetched is not None and fetched.path.is_relative_to(tmp_path / "other-host")
    assert fetched.path.read_bytes() == backups[-1].read_bytes()
    assert backup.verify_backup(fetched) is None


def test_down_stops_every_process_of_the_profile(platform: Platform) -> None:
    state = platform.read_state()
    assert state is not None
    leaders = {rec.pid for rec in state.processes.values()}
    members = [p for p in psutil.process_iter() if _session_of(p.pid) in leaders]
    # every component's leader, plus the workers' pool processes in their sessions
    assert len(members) > len(leaders)
    started = time.monotonic()
    platform.down()
    TIMINGS["down"] = time.monotonic() - started
    alive = [p.pid for p in members if _running(p)]
    assert alive == [], alive
    assert platform.leftovers() == []
    assert platform.read_state() is None
    assert prod.celery_workers(state.production.broker_url) == []  # type: ignore[union-attr]


def _running(proc: psutil.Process) -> bool:
    """Still the same process (pid not reused) and not a zombie."""
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _session_of(pid: int) -> int | None:
    try:
        return os.getsid(pid)
    except OSError:
        return None
