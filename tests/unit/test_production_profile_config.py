"""The production profile's configuration, built without starting anything.

What the profile hands Airflow (executor, databases, broker, components) and what it
hands MigrationBox (the store's URL and connection) is pure configuration: these tests
check it from the settings, and that the embedded default is untouched. The profile
running for real is tests/integration/test_production_profile.py.
"""

from __future__ import annotations

import json
import socket
import stat
from pathlib import Path

import pytest

from migrationbox.platform import airflow_runtime as afr
from migrationbox.platform import production as prod
from migrationbox.platform.production import ProductionConfig, ProductionError
from migrationbox.platform.supervisor import Platform, PlatformError, PlatformState

pytestmark = pytest.mark.usefixtures("no_profile_settings")  # tests/conftest.py


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, read, released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_defaults_are_loopback_postgres_and_redis_two_schedulers_two_workers():
    cfg = ProductionConfig.from_settings()
    assert cfg.metadata_url == "postgresql+psycopg2://postgres@127.0.0.1:5432/migrationbox_airflow"
    assert cfg.store_url == "postgresql+psycopg2://postgres@127.0.0.1:5432/migrationbox_store"
    assert cfg.result_backend == "db+" + cfg.metadata_url
    assert cfg.broker_url == "redis://127.0.0.1:6379/0"
    assert (cfg.schedulers, cfg.celery_workers, cfg.worker_concurrency) == (2, 2, 2)
    assert (cfg.replication_workers, cfg.replication_concurrency) == (2, 1)
    assert cfg.task_heartbeat_timeout == 60
    assert (cfg.default_slots, cfg.replication_slots, cfg.parallelism) == (4, 2, 6)


def test_settings_shape_the_profile(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("MIGRATIONBOX_PRODUCTION_PG_ADMIN_URL",
                       "postgresql://ops:s3cret@db.internal:6543/postgres")
    monkeypatch.setenv("MIGRATIONBOX_PRODUCTION_AIRFLOW_DB", "af_meta")
    monkeypatch.setenv("AIRFLOW__MIGRATIONBOX__PRODUCTION_STORE_DB", "mb_store")
    monkeypatch.setenv("MIGRATIONBOX_PRODUCTION_BROKER_URL", "redis://127.0.0.1:6379/7")
    monkeypatch.setenv("MIGRATIONBOX_PRODUCTION_SCHEDULERS", "3")
    monkeypatch.setenv("MIGRATIONBOX_PRODUCTION_CELERY_WORKERS", "4")
    monkeypatch.setenv("MIGRATIONBOX_PRODUCTION_WORKER_CONCURRENCY", "1")
    monkeypatch.setenv("MIGRATIONBOX_PRODUCTION_REPLICATION_WORKERS", "3")
    monkeypatch.setenv("AIRFLOW__MIGRATIONBOX__PRODUCTION_REPLICATION_CONCURRENCY", "2")
    monkeypatch.setenv("MIGRATIONBOX_PRODUCTION_TASK_HEARTBEAT_TIMEOUT", "45")
    cfg = ProductionConfig.from_settings()
    # a driverless URL gets the driver the project ships; the password is kept for use
    assert cfg.metadata_url == "postgresql+psycopg2://ops:s3cret@db.internal:6543/af_meta"
    assert cfg.store_url.endswith("@db.internal:6543/mb_store")
    assert cfg.broker_url.endswith("/7")
    assert (cfg.schedulers, cfg.celery_workers, cfg.worker_concurrency, cfg.parallelism) == (
        3, 4, 1, 4 + 3 * 2)
    assert (cfg.replication_workers, cfg.replication_concurrency,
            cfg.task_heartbeat_timeout) == (3, 2, 45)
    assert cfg.airflow_overrides()["AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT"] \
        == "45"
    # ... but never shown
    shown = json.dumps(cfg.describe())
    assert "s3cret" not in shown and "***" in shown


@pytest.mark.parametrize(("name", "value", "message"), [
    ("PG_ADMIN_URL", "mysql://root@127.0.0.1/x", "production_pg_admin_url: .*PostgreSQL"),
    ("AIRFLOW_DB", 'meta"; DROP DATABASE x; --', "production_airflow_db"),
    ("STORE_DB", "has-dash", "production_store_db"),
    ("BROKER_URL", "amqp://127.0.0.1:5672//", "production_broker_url: .*redis"),
    ("SCHEDULERS", "0", "production_schedulers"),
    ("CELERY_WORKERS", "0", "production_celery_workers"),
    ("REPLICATION_WORKERS", "0", "production_replication_workers"),
    ("REPLICATION_CONCURRENCY", "0", "production_replication_concurrency"),
    ("TASK_HEARTBEAT_TIMEOUT", "5", "production_task_heartbeat_timeout"),
])
def test_a_bad_setting_is_refused_by_name(monkeypatch: pytest.MonkeyPatch, name: str,
                                          value: str, message: str):
    monkeypatch.setenv(f"MIGRATIONBOX_PRODUCTION_{name}", value)
    with pytest.raises(ProductionError, match=message):
        ProductionConfig.from_settings()


def test_airflow_runs_celery_on_postgres_with_the_metadata_db_as_result_backend():
    cfg = ProductionConfig(airflow_db="af_x", store_db="st_x",
                           broker_url="redis://127.0.0.1:6379/3")
    overrides = cfg.airflow_overrides()
    assert overrides["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert overrides["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].endswith("/af_x")
    assert overrides["AIRFLOW__CELERY__BROKER_URL"] == "redis://127.0.0.1:6379/3"
    assert overrides["AIRFLOW__CELERY__RESULT_BACKEND"] == "db+" + cfg.metadata_url
    assert overrides["AIRFLOW__CELERY__WORKER_CONCURRENCY"] == "2"
    # a killed worker's task is failed and retried within a minute, not Airflow's 300 s
    assert overrides["AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT"] == "60"


def test_components_two_schedulers_and_two_uniquely_named_workers():
    cfg = ProductionConfig(worker_concurrency=1)
    commands = cfg.component_commands()
    assert list(commands) == ["api-server", "scheduler-1", "scheduler-2", "dag-processor",
                              "triggerer-1", "triggerer-2", "celery-worker-1",
                              "celery-worker-2", "celery-replication-worker-1",
                              "celery-replication-worker-2"]
    assert commands["triggerer-1"] == commands["triggerer-2"] == (
        "triggerer", "--skip-serve-logs")
    workers = [commands["celery-worker-1"], commands["celery-worker-2"]]
    replication = [commands["celery-replication-worker-1"],
                   commands["celery-replication-worker-2"]]
    hostnames = [c[c.index("--celery-hostname") + 1] for c in workers + replication]
    assert hostnames == cfg.worker_hostnames() and len(set(hostnames)) == 4
    assert hostnames[2].startswith("migrationbox-replication-worker-1@")
    for command in workers:
        assert command[:2] == ("celery", "worker")
        assert command[command.index("--concurrency") + 1] == "1"
        assert command[command.index("--queues") + 1] == "default"
    for command in replication:  # their own queue, their own concurrency
        assert command[:2] == ("celery", "worker")
        assert command[command.index("--concurrency") + 1] == "1"
        assert command[command.index("--queues") + 1] == "replication"
    # the queue the wave DAG puts disk tasks on is the one these workers serve
    from migrationbox.orchestration.graph import REPLICATION_QUEUE
    assert prod.REPLICATION_QUEUE == REPLICATION_QUEUE
    # no component opens a log server on 0.0.0.0
    for name in ("scheduler-1", "triggerer-1", "celery-worker-1",
                 "celery-replication-worker-1"):
        assert "--skip-serve-logs" in commands[name]


def test_numbered_components_report_under_their_health_key():
    assert afr.health_key("scheduler") == "scheduler"
    assert afr.health_key("scheduler-2") == "scheduler"
    assert afr.health_key("dag-processor") == "dag_processor"
    assert afr.health_key("triggerer-2") == "triggerer"
    assert afr.health_key("celery-worker-1") is None
    assert afr.health_key("api-server") is None
    health = {"metadatabase": {"status": "healthy"}, "scheduler": {"status": "unhealthy"},
              "triggerer": {"status": "healthy"}, "dag_processor": {"status": "healthy"}}
    names = list(ProductionConfig().component_commands())
    assert afr.unhealthy_components(health, names) == ["scheduler-1", "scheduler-2"]


def test_production_env_points_airflow_and_the_store_at_postgres(tmp_path: Path):
    cfg = ProductionConfig(airflow_db="af_env", store_db="st_env")
    env = Platform(tmp_path, profile="production", production=cfg).env()
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == cfg.metadata_url
    assert env["AIRFLOW__CORE__PARALLELISM"] == "6"  # 2 x 2 default + 2 x 1 replication
    assert env["AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT"] == "60"
    assert env["MIGRATIONBOX_STORE_URL"] == cfg.store_url
    conn = json.loads(env["AIRFLOW_CONN_MIGRATIONBOX_STORE"])
    assert conn == {"conn_type": "postgres", "host": "127.0.0.1", "port": 5432,
                    "schema": "st_env", "login": "postgres"}


def test_embedded_default_is_unchanged(tmp_path: Path):
    env = Platform(tmp_path).env()
    assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == \
        f"sqlite:///{tmp_path.resolve() / 'airflow' / 'airflow.db'}"
    assert env["MIGRATIONBOX_STORE_URL"].startswith("sqlite:///")
    assert json.loads(env["AIRFLOW_CONN_MIGRATIONBOX_STORE"])["conn_type"] == "sqlite"
    assert not any(key.startswith("AIRFLOW__CELERY") for key in env)
    assert Platform(tmp_path)._component_commands(None) == afr.COMPONENT_COMMANDS


def test_the_profile_setting_chooses_and_a_running_platform_decides(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    assert Platform(tmp_path).wanted_profile() == "embedded"
    monkeypatch.setenv("MIGRATIONBOX_PLATFORM_PROFILE", "production")
    assert Platform(tmp_path).wanted_profile() == "production"
    assert Platform(tmp_path).env()["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    # a recorded embedded platform wins over the setting for env/status/down
    plat = Platform(tmp_path)
    plat.runtime_dir.mkdir(parents=True, exist_ok=True)
    plat._write_state(PlatformState(
        runtime_dir=str(tmp_path), api_url="http://127.0.0.1:1", api_port=1,
        emulator_url="http://127.0.0.1:2", emulator_port=2, username="admin",
        dags_folder=str(tmp_path), plugins_folder=str(tmp_path),
        airflow_home=str(tmp_path / "airflow"), started_at="now"))
    assert plat.env()["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    with pytest.raises(PlatformError, match="unknown profile"):
        Platform(tmp_path, profile="kubernetes")


def test_state_file_is_private_and_keeps_the_production_config(tmp_path: Path):
    cfg = ProductionConfig(pg_admin_url="postgresql://ops:pw@127.0.0.1/postgres")
    plat = Platform(tmp_path, profile="production", production=cfg)
    plat.runtime_dir.mkdir(parents=True, exist_ok=True)
    plat._write_state(PlatformState(
        runtime_dir=str(tmp_path), api_url="http://127.0.0.1:1", api_port=1,
        emulator_url="http://127.0.0.1:2", emulator_port=2, username="admin",
        dags_folder=str(tmp_path), plugins_folder=str(tmp_path),
        airflow_home=str(tmp_path / "airflow"), started_at="now",
        profile="production", production=cfg))
    assert stat.S_IMODE(plat.state_path.stat().st_mode) == 0o600
    again = Platform(tmp_path).read_state()
    assert again is not None and again.production == cfg and again.profile == "production"


def test_migration_stamp_never_holds_a_password(tmp_path: Path):
    """The stamp is compared with the URL's password hidden: a matching stamp skips the
    migration without the password ever being written."""
    url = "postgresql+psycopg2://ops:s3cret@127.0.0.1:5432/af"
    stamp = tmp_path / afr.MIGRATED_STAMP
    stamp.write_text(f"{afr.airflow_version()} postgresql+psycopg2://ops:***@127.0.0.1:5432/af\n")
    env = {"AIRFLOW_HOME": str(tmp_path), "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": url}
    assert afr.ensure_migrated(env, tmp_path / "migrate.log") is False
    assert "s3cret" not in stamp.read_text()


def test_up_fails_fast_naming_the_setting_when_postgres_is_missing(tmp_path: Path):
    port = _closed_port()
    cfg = ProductionConfig(pg_admin_url=f"postgresql://postgres@127.0.0.1:{port}/postgres")
    plat = Platform(tmp_path, profile="production", production=cfg, api_port=0,
                    emulator_port=0)
    with pytest.raises(PlatformError, match=f"127.0.0.1:{port}.*production_pg_admin_url"):
        plat.up()
    assert plat.read_state() is None and plat.leftovers() == []


def test_redis_missing_is_named_with_its_setting():
    port = _closed_port()
    reason = prod.redis_unreachable(f"redis://127.0.0.1:{port}/0")
    assert reason is not None and f"127.0.0.1:{port}" in reason
    assert "production_broker_url" in reason


def test_cli_takes_the_profile_option():
    from migrationbox.cli import build_parser

    parser = build_parser()
    args = parser.parse_args(["platform", "up", "--profile", "production"])
    assert args.profile == "production"
    assert parser.parse_args(["platform", "up"]).profile is None
    with pytest.raises(SystemExit):
        parser.parse_args(["platform", "up", "--profile", "kubernetes"])


def test_the_profile_names_the_auth_manager_the_auth_module_configures() -> None:
    from migrationbox.platform import auth

    assert prod.FAB_AUTH_MANAGER == auth.FAB_AUTH_MANAGER
    assert ProductionConfig().airflow_overrides()["AIRFLOW__CORE__AUTH_MANAGER"] == (
        auth.FAB_AUTH_MANAGER)


def test_triggerers_follow_the_setting_and_fail_over_sooner_than_airflow_s_default(
        monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("MIGRATIONBOX_PRODUCTION_TRIGGERERS", "3")
    cfg = ProductionConfig.from_settings()
    assert cfg.triggerers == 3
    assert [n for n in cfg.component_commands() if n.startswith("triggerer")] == [
        "triggerer-1", "triggerer-2", "triggerer-3"]
    assert cfg.describe()["triggerers"] == "3"
    overrides = cfg.airflow_overrides()
    beat = float(overrides["AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC"])
    alive = float(overrides["AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD"])
    # a dead triggerer's triggers move after `alive` seconds: sooner than Airflow's 30 s,
    # yet several missed heartbeats, so a live but busy triggerer keeps its triggers
    assert alive < 30 and alive >= 5 * beat
    # a runner stalled by the heal watch's first imports keeps its triggers (seen: 47-51 s
    # of silence under load); a killed triggerer stops beating whatever this says
    silence = float(overrides["AIRFLOW__TRIGGERER__RUNNER_HEALTH_CHECK_THRESHOLD"])
    assert silence >= 60 and silence > alive
    with pytest.raises(prod.ProductionError, match="production_triggerers"):
        ProductionConfig.from_settings(triggerers=0)
