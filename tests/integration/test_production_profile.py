"""The production profile for real: Airflow on PostgreSQL, CeleryExecutor on Redis, two
schedulers, two Celery workers, the MigrationBox store on PostgreSQL.

One platform for the module (start-up is the slow part on 2 cores), in a temporary
runtime folder on free loopback ports, on two PostgreSQL databases this module creates
under unique names and drops at the end, and on a Redis database (0-15) that was empty
when the module started and is emptied again at the end. Skips, saying why, when
PostgreSQL or Redis does not answer on loopback.

The DAG run is the project's own ``migrationbox__discover_and_plan`` (dags/): its two
tasks validate a small estate and plan it into the store, so a Celery worker writes to
the PostgreSQL store, which is checked afterwards. The last test stops the platform
and checks that no process of it is left.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import psutil
import pytest

from migrationbox.platform import production as prod
from migrationbox.platform.airflow_runtime import venv_bin
from migrationbox.platform.production import ProductionConfig
from migrationbox.platform.supervisor import Platform

pytestmark = [pytest.mark.integration, pytest.mark.airflow, pytest.mark.timeout(600)]

PLANNING_DAG = "migrationbox__discover_and_plan"
ESTATE = "prodprofile"
REDIS_HOST = "redis://127.0.0.1:6379"
TIMINGS: dict[str, float] = {}


def _unavailable() -> str | None:
    from migrationbox.store.testing import postgres_unavailable_reason

    return postgres_unavailable_reason() or prod.redis_unreachable(f"{REDIS_HOST}/0")


def _empty_redis_db() -> int:
    """A Redis database number nothing uses now (no keys), highest first so that
    anything using the default database 0 is left alone."""
    import redis

    for number in range(15, 0, -1):
        client = redis.Redis.from_url(f"{REDIS_HOST}/{number}")
        try:
            if client.dbsize() == 0:
                return number
        finally:
            client.close()
    pytest.skip("every Redis database 1-15 on 127.0.0.1:6379 holds keys; none is free "
                "for this test's broker")


def _flush_redis_db(number: int) -> None:
    import redis

    client = redis.Redis.from_url(f"{REDIS_HOST}/{number}")
    try:
        client.flushdb()
    finally:
        client.close()


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
    from sqlalchemy.engine import make_url

    from migrationbox.store.testing import postgres_admin_url, temporary_postgres_database

    runtime = tmp_path_factory.mktemp("production-platform")
    plugins = runtime / "no-plugins"
    plugins.mkdir()
    with ExitStack() as stack:
        airflow_db = make_url(stack.enter_context(
            temporary_postgres_database("mbx_prod_airflow"))).database
        store_db = make_url(stack.enter_context(
            temporary_postgres_database("mbx_prod_store"))).database
        redis_db = _empty_redis_db()
        stack.callback(_flush_redis_db, redis_db)
        cfg = ProductionConfig(
            pg_admin_url=postgres_admin_url(), airflow_db=airflow_db, store_db=store_db,
            broker_url=f"{REDIS_HOST}/{redis_db}", schedulers=2, celery_workers=2,
            worker_concurrency=1,
        )
        instance = Platform(runtime, api_port=0, emulator_port=0, plugins_folder=plugins,
                            profile="production", production=cfg, startup_timeout=300)
        # stopped before the databases are dropped and the broker emptied (LIFO)
        stack.callback(instance.down)
        started = time.monotonic()
        instance.up()  # stops whatever it started if start-up fails
        TIMINGS["up"] = time.monotonic() - started
        yield instance
    print("\nproduction profile timings (s): "
          + ", ".join(f"{k} {v:.1f}" for k, v in TIMINGS.items()))


def test_every_component_runs_and_reports_healthy(platform: Platform) -> None:
    status = platform.status()
    assert status.running, status.problem
    assert status.profile == "production"
    assert {c.name for c in status.components} == {
        "emulator", "airflow-api-server", "airflow-scheduler-1", "airflow-scheduler-2",
        "airflow-dag-processor", "airflow-triggerer", "airflow-celery-worker-1",
        "airflow-celery-worker-2",
    }
    assert status.health is not None
    for key in ("metadatabase", "scheduler", "dag_processor", "triggerer"):
        assert status.health[key]["status"] == "healthy", status.health
    # /monitor/health only speaks for the latest scheduler: both must be heartbeating
    assert status.schedulers_alive == 2
    state = platform.read_state()
    assert state is not None and state.production is not None
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
