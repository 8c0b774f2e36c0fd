"""The local lab: real disks, databases and HTTP services on loopback, started and stopped
as one process group; the CLI drives the same thing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import psutil
import pytest
from sqlalchemy import create_engine, text

from migrationbox.lab.endpoints import by_server, read_endpoints_file
from migrationbox.lab.lab import Lab
from migrationbox.lab.testing import tiny_plan

pytestmark = pytest.mark.integration


def _count(url: str, table: str) -> int:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar())
    finally:
        engine.dispose()


@pytest.fixture
def lab(tmp_path: Path):
    estate = f"lab{uuid.uuid4().hex[:8]}"
    the_lab = Lab(estate, tiny_plan(estate), root=tmp_path / "lab", data_scale_mb=1.0)
    try:
        yield the_lab
    finally:
        the_lab.down(purge=True)


def test_up_builds_the_estate_and_down_leaves_nothing_running(lab: Lab):
    endpoints = lab.up()
    kinds = sorted((e.server_id, e.kind) for e in endpoints)
    # disks for every server; a database for db-01; a health service for every server
    # that is not a database (web, api, and the infrastructure's health endpoint)
    assert ("db-01", "database") in kinds
    assert {k for s, k in kinds if s == "web-01"} == {"disk", "http"}
    assert {k for s, k in kinds if s == "api-01"} == {"disk", "http"}
    assert {k for s, k in kinds if s == "dns-01"} == {"disk", "http"}
    assert {k for s, k in kinds if s == "db-01"} == {"disk", "database"}
    assert read_endpoints_file(lab.endpoints_path) == endpoints

    web_disk = by_server(endpoints, "web-01", "disk")[0]
    env = (web_disk.source_path / "etc/app/app.env").read_text()
    assert "UPSTREAM_URL=http://api-prod-01.company.local:8080/" in env
    api_env = (by_server(endpoints, "api-01", "disk")[0].source_path / "etc/app/app.env")
    assert "DATABASE_URL=postgresql://app:" in api_env.read_text()
    assert "@db-prod-01.company.local:5432/app" in api_env.read_text()
    assert any(p.suffix == ".bin" for p in web_disk.source_path.rglob("*"))
    assert not any(web_disk.target_path.iterdir())

    db = by_server(endpoints, "db-01", "database")[0]
    assert _count(db.source_uri, "orders") > 0
    tgt_engine = create_engine(db.target_uri)
    with tgt_engine.connect() as conn:
        assert conn.execute(text("SELECT 1")).scalar() == 1
    tgt_engine.dispose()

    web = by_server(endpoints, "web-01", "http")[0]
    for base in (web.source_uri, web.target_uri):
        assert httpx.get(f"{base}/health/live").status_code == 200
        assert httpx.get(f"{base}/health/ready").status_code == 200
        deep = httpx.get(f"{base}/health/deep").json()
        assert deep["status"] == "healthy" and "timestamp" in deep
        assert deep["overall_health_score"] == 1.0
    api = by_server(endpoints, "api-01", "http")[0]
    api_deep = httpx.get(f"{api.target_uri}/health/deep").json()
    # the api's service checks its own side's database for real
    assert api_deep["components"]["database"]["status"] == "healthy"
    assert httpx.get(f"{web.target_uri}/").json()["side"] == "target"

    status = lab.status()
    assert status["running"]
    pid = status["pid"]
    counts = {s["name"]: s for s in status["services"]}
    assert counts["web-01:target"]["requests"] == 4
    assert counts["web-01:source"]["requests"] == 3

    # idempotent: same process, same data
    again = lab.up()
    assert lab.status()["pid"] == pid and again == endpoints

    children = psutil.Process(pid).children(recursive=True)
    assert os.getpgid(pid) == pid  # its own process group
    lab.down()
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert not any(c.is_running() for c in children)
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{web.target_uri}/health/live", timeout=1.0)


def test_faults_are_injected_and_cleared(lab: Lab):
    endpoints = lab.up()
    web = by_server(endpoints, "web-01", "http")[0]
    lab.fault("web-01", "fail")
    assert httpx.get(f"{web.target_uri}/health/ready").status_code == 503
    assert httpx.get(f"{web.target_uri}/").status_code == 500
    deep = httpx.get(f"{web.target_uri}/health/deep")
    assert deep.status_code == 503 and deep.json()["status"] == "unhealthy"
    assert httpx.get(f"{web.source_uri}/health/ready").status_code == 200  # source untouched
    stats = httpx.get(f"{web.target_uri}/_lab/stats").json()
    assert stats["errors"] == 3 and stats["requests"] == 3

    lab.fault("web-01", "slow", latency_ms=300)
    r = httpx.get(f"{web.target_uri}/health/deep")
    assert r.elapsed.total_seconds() >= 0.3 and r.json()["status"] == "degraded"

    lab.fault("web-01", "ok", error_rate=0.5)
    codes = [httpx.get(f"{web.target_uri}/").status_code for _ in range(40)]
    assert 5 < codes.count(500) < 35  # roughly half fail

    lab.fault("web-01", "ok")
    assert all(httpx.get(f"{web.target_uri}/").status_code == 200 for _ in range(5))


def test_cli_up_status_fault_down(tmp_path: Path):
    estate = f"cli{uuid.uuid4().hex[:8]}"
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(tiny_plan(estate).model_dump_json())
    root = tmp_path / "labroot"
    base = [sys.executable, "-m", "migrationbox.cli", "lab", "--root", str(root)]

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*base, *args], capture_output=True, text=True, timeout=120)

    up = cli("up", "--estate", estate, "--plan-json", str(plan_file), "--db", "sqlite",
             "--data-scale-mb", "0.5")
    try:
        assert up.returncode == 0, up.stderr
        assert "5 servers" in up.stdout and "sqlite" in up.stdout
        status = json.loads(cli("status").stdout)  # the only lab: --estate not needed
        assert status["running"] and status["db_backend"] == "sqlite"
        fault = cli("fault", "api-01", "--health", "fail", "--estate", estate)
        assert fault.returncode == 0 and "health=fail" in fault.stdout
        services = {s["name"]: s for s in json.loads(cli("status").stdout)["services"]}
        assert services["api-01:target"]["health"] == "fail"
        assert services["api-01:source"]["health"] == "ok"
        unknown = cli("fault", "nope-99", "--health", "fail")
        assert unknown.returncode == 1 and "no service" in unknown.stderr
        pid = status["pid"]
    finally:
        down = cli("down", "--purge")
    assert down.returncode == 0, down.stderr
    assert f"stopped pid {pid}" in down.stdout
    assert not psutil.pid_exists(pid)
    assert not (root / estate).exists()


def test_cli_needs_a_source_of_servers(tmp_path: Path):
    r = subprocess.run(
        [sys.executable, "-m", "migrationbox.cli", "lab", "--root", str(tmp_path), "up",
         "--estate", "x"], capture_output=True, text=True, timeout=60,
    )
    assert r.returncode == 2
    assert "--plan-json" in r.stderr


def test_cli_refuses_a_plan_for_another_estate(tmp_path: Path):
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(tiny_plan("shop").model_dump_json())
    r = subprocess.run(
        [sys.executable, "-m", "migrationbox.cli", "lab", "--root", str(tmp_path), "up",
         "--estate", "other", "--plan-json", str(plan_file)],
        capture_output=True, text=True, timeout=60,
    )
    assert r.returncode == 2
    assert "the plan is for estate 'shop', not 'other'" in r.stderr
    assert not (tmp_path / "other").exists()
    with pytest.raises(ValueError, match="estate name"):
        Lab("../escape", [])
