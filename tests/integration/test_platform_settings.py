"""Platform pieces that need no running Airflow: settings file, env, ports, passwords.

The round trip against a real API server is in ``test_platform_runtime.py``.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
from pathlib import Path

import psutil
import pytest

from migrationbox.config import project_root
from migrationbox.platform import airflow_runtime as afr
from migrationbox.platform.settings import SettingsError, load_settings, parse_settings
from migrationbox.platform.supervisor import OWNER_MARKER, Platform, PlatformError, platform_env

SETTINGS = project_root() / "airflow_settings.yaml"
ENV = {"MIGRATIONBOX_EMULATOR_URL": "http://127.0.0.1:45666", "MIGRATIONBOX_STORE_PATH": "/x/s.db"}


def test_project_settings_file_fills_placeholders() -> None:
    settings = load_settings(SETTINGS, ENV)
    conns = {c.conn_id: c for c in settings.connections}
    aws = conns["aws_default"].to_api()
    assert json.loads(aws["extra"]) == {
        "region_name": "us-east-1",
        "endpoint_url": "http://127.0.0.1:45666",
    }
    assert aws["login"] == "testing"  # ${...:-testing} default
    assert conns["migrationbox_store"].conn_host == "/x/s.db"
    pools = {p.pool_name: p.pool_slot for p in settings.pools}
    assert pools == {"migrationbox_provision": 2, "migrationbox_replication": 2,
                     "migrationbox_cloud_api": 4, "migrationbox_training": 1}
    variables = {v.variable_name: v.to_api()["value"] for v in settings.variables}
    assert variables["migrationbox_cutover_check_seconds"] == "5"
    assert json.loads(variables["migrationbox_cutover_weights"]) == [5, 25, 50, 100]


def test_missing_placeholder_names_the_entry() -> None:
    with pytest.raises(SettingsError) as err:
        load_settings(SETTINGS, {"MIGRATIONBOX_STORE_PATH": "/x"})
    message = str(err.value)
    assert "airflow.connections[0].conn_extra.endpoint_url" in message
    assert "MIGRATIONBOX_EMULATOR_URL" in message


def test_bad_entries_are_reported_with_their_path(tmp_path: Path) -> None:
    raw = {
        "airflow": {
            "pools": [{"pool_name": "p", "pool_slot": "many"}],
            "connections": [{"conn_id": "bad id", "conn_type": "http"}],
        }
    }
    with pytest.raises(SettingsError) as err:
        parse_settings(raw, {}, "settings.yaml")
    assert "airflow.pools.0.pool_slot" in str(err.value)
    assert "airflow.connections.0.conn_id" in str(err.value)

    broken = tmp_path / "broken.yaml"
    broken.write_text("airflow: [unclosed\n")
    with pytest.raises(SettingsError, match="not valid YAML"):
        load_settings(broken, {})


def test_non_object_extra_is_refused() -> None:
    raw = {"airflow": {"connections": [{"conn_id": "c", "conn_type": "http", "conn_extra": "[1]"}]}}
    with pytest.raises(SettingsError, match="conn_extra"):
        parse_settings(raw, {})


def test_empty_sections_are_fine() -> None:
    raw = {"airflow": {"connections": None, "pools": [], "variables": None}}
    settings = parse_settings(raw, {})
    assert settings.connections == [] and settings.pools == [] and settings.variables == []


def test_platform_env_points_everything_at_one_runtime(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MIGRATIONBOX_PLANS_DIR", raising=False)
    monkeypatch.delenv("AIRFLOW__MIGRATIONBOX__PLANS_DIR", raising=False)
    env = platform_env(tmp_path)
    assert env["MIGRATIONBOX_HOME"] == str(tmp_path.resolve())
    assert env["MIGRATIONBOX_STORE_URL"] == f"sqlite:///{tmp_path.resolve() / 'migrationbox.db'}"
    assert env["AIRFLOW_HOME"] == str(tmp_path.resolve() / "airflow")
    aws = json.loads(env["AIRFLOW_CONN_AWS_DEFAULT"])
    assert aws["extra"]["endpoint_url"] == env["MIGRATIONBOX_EMULATOR_URL"]
    store = json.loads(env["AIRFLOW_CONN_MIGRATIONBOX_STORE"])
    assert store == {"conn_type": "sqlite", "host": str(tmp_path.resolve() / "migrationbox.db")}
    assert env["AIRFLOW__CORE__DAGS_FOLDER"] == str(project_root() / "dags")
    # two DAG bundles: the project's dags/, and the per-estate wave-DAG loaders next to
    # the specs that `migrationbox plan` writes (the same plans folder for both)
    plans = tmp_path.resolve() / "plans"
    assert env["MIGRATIONBOX_PLANS_DIR"] == str(plans)
    bundles = json.loads(env["AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST"])
    assert [(b["name"], b["kwargs"]["path"]) for b in bundles] == [
        ("dags-folder", str(project_root() / "dags")),
        ("migrationbox-plans", str(plans / "dags")),
    ]
    assert {b["classpath"] for b in bundles} == {
        "airflow.dag_processing.bundles.local.LocalDagBundle"}
    assert env["AIRFLOW__API__HOST"] == "127.0.0.1"
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"].endswith(
        f":{env['AIRFLOW__API__PORT']}/execution/"
    )
    # Processes started with this env (the demo, a user's shell) are not the platform's:
    # `down` must never kill them, so the owner marker stays out.
    assert OWNER_MARKER not in env


def test_busy_port_fails_before_anything_starts(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        port = holder.getsockname()[1]
        platform = Platform(tmp_path, api_port=port, emulator_port=0)
        with pytest.raises(PlatformError) as err:
            platform.up()
    assert f"port {port}" in str(err.value)
    assert "--api-port" in str(err.value)
    assert not list((tmp_path / "pids").glob("*.pid"))
    assert not (tmp_path / "platform.json").exists()


def test_down_without_up_is_a_no_op(tmp_path: Path) -> None:
    report = Platform(tmp_path).down()
    assert report.stopped == [] and report.leftovers_killed == []


def test_passwords_file_keeps_a_known_login(tmp_path: Path) -> None:
    path = afr.ensure_passwords(tmp_path, {"admin": "admin"})
    afr.ensure_passwords(tmp_path, {"approver": "s3cret"})
    assert json.loads(path.read_text()) == {"admin": "admin", "approver": "s3cret"}
    assert path.stat().st_mode & 0o777 == 0o600
    assert afr.read_password(tmp_path, "admin") == "admin"
    with pytest.raises(afr.AirflowRuntimeError, match="no password for user 'nobody'"):
        afr.read_password(tmp_path, "nobody")


def test_health_payload_judgement() -> None:
    healthy = {k: {"status": "healthy"} for k in ("metadatabase", "scheduler", "triggerer")}
    healthy["dag_processor"] = {"status": "healthy"}
    assert afr.unhealthy_components(healthy, afr.COMPONENT_COMMANDS) == []
    sick = {**healthy, "triggerer": {"status": "unhealthy"}}
    assert afr.unhealthy_components(sick, afr.COMPONENT_COMMANDS) == ["triggerer"]
    assert afr.unhealthy_components({}, ["scheduler"]) == ["metadatabase", "scheduler"]


def _spawn(args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        args, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def test_down_kills_orphans_of_a_recorded_session(tmp_path: Path) -> None:
    platform = Platform(tmp_path)
    # The leader exits at once; its child stays behind in the leader's session.
    child_file = tmp_path / "child.pid"
    leader = _spawn(["bash", "-c", f"sleep 300 & echo $! > {child_file}"])
    leader.wait(timeout=10)
    child_pid = int(child_file.read_text())
    assert _running(child_pid)
    platform.pids_dir.mkdir(parents=True)
    (platform.pids_dir / "worker.pid").write_text(json.dumps({"name": "worker", "pid": leader.pid}))

    report = platform.down()

    assert report.leftovers_killed == [child_pid]
    assert not _running(child_pid)
    assert not list(platform.pids_dir.glob("*.pid"))


def test_down_kills_processes_carrying_the_owner_marker(tmp_path: Path) -> None:
    platform = Platform(tmp_path)
    marked = _spawn(["sleep", "300"], env={**os.environ, OWNER_MARKER: str(platform.runtime_dir)})
    other = _spawn(["sleep", "300"], env={**os.environ, OWNER_MARKER: str(tmp_path / "elsewhere")})
    try:
        report = platform.down()
        assert report.leftovers_killed == [marked.pid]
        marked.wait(timeout=10)
        assert not _running(marked.pid)
        assert _running(other.pid)  # another runtime's process is left alone
    finally:
        other.kill()
        other.wait(timeout=10)
        if marked.poll() is None:
            marked.kill()


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
