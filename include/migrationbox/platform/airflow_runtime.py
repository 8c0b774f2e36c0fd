"""Run a local Airflow 3.3 (the embedded default): configuration, database, components.

Why separate components instead of ``airflow standalone``: standalone is one parent that
pipes four children through threads, forces its own executor/auth settings, runs
``initdb`` on every start and can only be stopped with SIGINT. Starting ``api-server``,
``scheduler``, ``dag-processor`` and ``triggerer`` ourselves costs nothing extra on a
2-core machine (standalone starts the same four processes, plus itself), gives one log
file and one pid file per component, lets start-up fail fast with the log of the
component that died, and lets ``down`` stop each process group on its own.

Every setting is passed as ``AIRFLOW__SECTION__KEY`` environment variables, so the
generated ``airflow.cfg`` (written by Airflow on first use, mode 0600, holding the
fernet key and JWT secret that all components must share) is never edited by us.

The production profile (PostgreSQL, CeleryExecutor, several schedulers and workers)
lays its own settings over this configuration and names its own components:
:mod:`migrationbox.platform.production`.

Login: SimpleAuthManager keeps passwords in a JSON file and only generates one for a
user that is *missing* from that file. We point ``[core] simple_auth_manager_passwords_file``
at ``$AIRFLOW_HOME/simple_auth_manager_passwords.json`` and write the wanted password
there before the API server starts, so the login is known and stable (``admin`` /
``admin`` by default). The API listens on 127.0.0.1 only.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from importlib.metadata import version as dist_version
from pathlib import Path
from typing import TYPE_CHECKING

from migrationbox.config import project_root
from migrationbox.errors import MigrationBoxError

if TYPE_CHECKING:
    from migrationbox.platform.rest import AirflowClient

LOOPBACK = "127.0.0.1"
DEFAULT_API_PORT = 8080
ADMIN_USERNAME = "admin"
ADMIN_PASSWORD = "admin"
SIMPLE_AUTH_MANAGER = (
    "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
)
PASSWORDS_FILE_NAME = "simple_auth_manager_passwords.json"
MIGRATED_STAMP = ".migrated"

# Start order matters little (they wait on the database), but the API server is the
# slowest to import, so it goes first. ``--skip-serve-logs``: the log servers bind
# 0.0.0.0 with no host option, and with LocalExecutor every log is a local file the API
# server reads directly.
COMPONENT_COMMANDS: dict[str, tuple[str, ...]] = {
    "api-server": ("api-server",),
    "scheduler": ("scheduler", "--skip-serve-logs"),
    "dag-processor": ("dag-processor",),
    "triggerer": ("triggerer", "--skip-serve-logs"),
}
# Component name -> key in /api/v2/monitor/health.
HEALTH_KEYS = {
    "scheduler": "scheduler",
    "dag-processor": "dag_processor",
    "triggerer": "triggerer",
}


def health_key(name: str) -> str | None:
    """The /monitor/health key of a component, also for numbered copies of one
    (``scheduler-2`` of the production profile reports as ``scheduler``)."""
    if name in HEALTH_KEYS:
        return HEALTH_KEYS[name]
    base, _, number = name.rpartition("-")
    return HEALTH_KEYS.get(base) if number.isdigit() else None


class AirflowRuntimeError(MigrationBoxError, RuntimeError):
    """Airflow could not be migrated, started or reached."""


def venv_bin() -> Path:
    """The folder of the running interpreter's scripts (``.venv/bin``)."""
    return Path(sys.executable).parent


def airflow_bin() -> Path:
    path = venv_bin() / "airflow"
    if not path.exists():
        raise AirflowRuntimeError(
            f"no airflow command next to {sys.executable}: run `make install`"
        )
    return path


def airflow_version() -> str:
    return dist_version("apache-airflow-core")


def default_dags_folder() -> Path:
    return project_root() / "dags"


def default_plugins_folder() -> Path:
    return project_root() / "plugins"


#: the DAG bundle of the project's ``dags/`` folder (Airflow's default bundle name)
DAGS_BUNDLE = "dags-folder"
#: the DAG bundle of the per-estate wave-DAG loaders, ``<plans>/dags``
PLANS_BUNDLE = "migrationbox-plans"
LOCAL_BUNDLE_CLASS = "airflow.dag_processing.bundles.local.LocalDagBundle"


S3_BUNDLE_CLASS = "airflow.providers.amazon.aws.bundles.s3.S3DagBundle"
#: seconds between two downloads of the plans bundle from object storage by a DAG
#: processor: a newly planned estate's wave DAGs appear within about this plus one parse
#: (a listing of one prefix per refresh; a worker downloads before each task anyway)
PLANS_BUNDLE_REFRESH_S = 10
#: the folder of ``AIRFLOW_HOME`` where non-local bundles are downloaded: per platform,
#: not Airflow's default under the system temp folder, which two platforms on one host
#: would share (and each bundle's refresh would delete the other's files)
BUNDLE_STORAGE_FOLDER = "dag_bundles"


def dag_bundles(dags_folder: Path, loaders_folder: Path | None,
                plans_root: str | None = None) -> list[dict[str, object]]:
    """``[dag_processor] dag_bundle_config_list``: the ``dags/`` folder, and the
    per-estate loader DAG files: the folder ``loaders_folder`` (``<plans>/dags``), or
    with ``plans_root`` (``s3://bucket/prefix``) an ``S3DagBundle`` over that prefix,
    which holds the loaders under ``dags/`` and their specs beside that
    (``orchestration.plans_bundle``). Either way the bundle is named ``migrationbox-plans``.

    Two bundles because an import error is per file: one loader file per estate makes a
    broken plan spec an import error of that estate only (``orchestration.wave_dag``),
    and keeping the generated loaders out of ``dags/`` leaves the checkout untouched.
    """
    bundles: list[dict[str, object]] = [
        {"name": DAGS_BUNDLE, "classpath": LOCAL_BUNDLE_CLASS,
         "kwargs": {"path": str(Path(dags_folder).resolve())}},
    ]
    if plans_root:
        from migrationbox.config import AWS_CONN_ID
        from migrationbox.orchestration.plans_bundle import parse_plans_root

        root = parse_plans_root(plans_root)
        bundles.append({"name": PLANS_BUNDLE, "classpath": S3_BUNDLE_CLASS,
                        "kwargs": {"bucket_name": root.bucket, "prefix": root.prefix,
                                   "aws_conn_id": AWS_CONN_ID,
                                   "refresh_interval": PLANS_BUNDLE_REFRESH_S}})
    elif loaders_folder is not None:
        bundles.append({"name": PLANS_BUNDLE, "classpath": LOCAL_BUNDLE_CLASS,
                        "kwargs": {"path": str(Path(loaders_folder).resolve())}})
    return bundles


def airflow_config_env(
    home: Path,
    api_port: int,
    dags_folder: Path,
    plugins_folder: Path,
    *,
    loaders_folder: Path | None = None,
    plans_root: str | None = None,
    parallelism: int = 4,
    max_active_tasks_per_dag: int = 4,
    users: str = f"{ADMIN_USERNAME}:admin",
    refresh_interval: int = 5,
    min_file_process_interval: int = 10,
    paused_at_creation: bool = False,
) -> dict[str, str]:
    """The Airflow configuration of the embedded default, as environment variables.

    ``paused_at_creation=False``: wave DAGs have ``schedule=None`` and never start by
    themselves, so leaving new DAGs unpaused only saves a click (or a REST call) before a
    run is triggered; asset-scheduled DAGs start as soon as their asset is updated.
    ``refresh_interval``/``min_file_process_interval``: a freshly planned estate's wave
    DAGs appear within seconds instead of minutes; one parsing process keeps the
    dag-processor from taking both cores. ``loaders_folder`` (``<plans>/dags``) adds the
    plans DAG bundle, or ``plans_root`` the same bundle in object storage
    (:func:`dag_bundles`), downloaded under ``<home>/dag_bundles``.
    """
    home = Path(home).resolve()
    storage = ({"AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_STORAGE_PATH":
                str(home / BUNDLE_STORAGE_FOLDER)} if plans_root else {})
    return {
        **storage,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(Path(dags_folder).resolve()),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(Path(plugins_folder).resolve()),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": str(parallelism),
        "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": str(max_active_tasks_per_dag),
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": str(paused_at_creation),
        "AIRFLOW__CORE__MIN_SERIALIZED_DAG_UPDATE_INTERVAL": "10",
        "AIRFLOW__CORE__AUTH_MANAGER": SIMPLE_AUTH_MANAGER,
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": users,
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / PASSWORDS_FILE_NAME),
        # Task workers reach the Execution API on the port we chose, not on 8080.
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://{LOOPBACK}:{api_port}/execution/",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__API__HOST": LOOPBACK,
        "AIRFLOW__API__PORT": str(api_port),
        "AIRFLOW__API__WORKERS": "1",
        # The task supervisor notices its task process has exited only when its selector
        # wakes, at most every min_heartbeat_interval seconds (default 5). Until then the
        # executor has not reported the try, and an approval answered in that window
        # races it in Airflow 3.3 (the re-queued gate is marked failed). 1 s keeps the
        # window short and makes every task's completion visible sooner.
        "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": "1",
        # On a saturated 2-core machine a task's first Execution API call can take longer
        # than the 5 s default and the try dies before it starts (seen on the heal task);
        # DAG files can take longer than 30 s to import there too.
        "AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT": "30",
        "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "120",
        "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST": json.dumps(
            dag_bundles(dags_folder, loaders_folder, plans_root)),
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": str(refresh_interval),
        "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": str(min_file_process_interval),
        "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
        "AIRFLOW__DAG_PROCESSOR__PRINT_STATS_INTERVAL": "300",
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
        "AIRFLOW__LOGGING__COLORED_CONSOLE_LOG": "False",
    }


def airflow_env(
    home: Path,
    api_port: int,
    dags_folder: Path,
    plugins_folder: Path,
    *,
    extra: Mapping[str, str] | None = None,
    base: Mapping[str, str] | None = None,
    **config: object,
) -> dict[str, str]:
    """The full environment of an Airflow process of the local platform.

    ``base`` (default: this process's environment) + the configuration of
    :func:`airflow_config_env` (``config`` passes its keyword options) + ``extra`` (the
    MigrationBox variables and ``AIRFLOW_CONN_*`` connections). The venv's ``bin`` comes
    first on ``PATH`` and loopback is exempt from any HTTP proxy, since every server of
    the platform is on 127.0.0.1.
    """
    env = dict(os.environ if base is None else base)
    env.update(airflow_config_env(home, api_port, dags_folder, plugins_folder, **config))  # type: ignore[arg-type]
    if extra:
        env.update(extra)
    env["PATH"] = os.pathsep.join([str(venv_bin()), env.get("PATH", "")]).rstrip(os.pathsep)
    no_proxy = [p for p in env.get("NO_PROXY", env.get("no_proxy", "")).split(",") if p]
    for host in (LOOPBACK, "localhost"):
        if host not in no_proxy:
            no_proxy.append(host)
    env["NO_PROXY"] = env["no_proxy"] = ",".join(no_proxy)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def passwords_file(home: Path) -> Path:
    return Path(home) / PASSWORDS_FILE_NAME


def ensure_passwords(home: Path, credentials: Mapping[str, str]) -> Path:
    """Write the wanted password of each user into SimpleAuthManager's password file.

    Other users already in the file are kept; the file is mode 0600 like airflow.cfg.
    Idempotent: rewriting the same passwords changes nothing.
    """
    path = passwords_file(home)
    path.parent.mkdir(parents=True, exist_ok=True)
    current: dict[str, str] = {}
    if path.exists():
        text = path.read_text().strip()
        if text:
            try:
                current = json.loads(text)
            except json.JSONDecodeError as exc:
                raise AirflowRuntimeError(f"{path}: not valid JSON ({exc})") from exc
    merged = {**current, **credentials}
    if merged != current or not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(json.dumps(merged) + "\n")
    return path


def read_password(home: Path, username: str = ADMIN_USERNAME) -> str:
    path = passwords_file(home)
    try:
        passwords = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise AirflowRuntimeError(f"{path} does not exist: start the platform first") from exc
    if username not in passwords:
        raise AirflowRuntimeError(f"{path} has no password for user {username!r}")
    return str(passwords[username])


def tail(path: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of a log file (for error messages)."""
    try:
        with Path(path).open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 64_000))
            data = handle.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return f"(no log at {path})"
    return "\n".join(data.splitlines()[-lines:])


def ensure_migrated(env: Mapping[str, str], log_path: Path, timeout: float = 600.0) -> bool:
    """Run ``airflow db migrate`` unless this Airflow version already migrated this DB.

    The stamp holds the Airflow version and the database URL (its password hidden), and
    the auth manager when it is not SimpleAuthManager (the production profile's FAB one
    migrates its own tables with the same command), so an upgrade of Airflow, a different
    database or a change of auth manager migrates again. Returns whether a migration ran.
    """
    from sqlalchemy.engine import make_url

    home = Path(env["AIRFLOW_HOME"])
    stamp = home / MIGRATED_STAMP
    url = make_url(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]).render_as_string(
        hide_password=True)
    wanted = f"{airflow_version()} {url}\n"
    manager = env.get("AIRFLOW__CORE__AUTH_MANAGER", SIMPLE_AUTH_MANAGER)
    if manager != SIMPLE_AUTH_MANAGER:
        # another auth manager brings its own tables (FAB's ab_*): migrate again
        wanted = f"{airflow_version()} {url} auth={manager}\n"
    if stamp.exists() and stamp.read_text() == wanted:
        return False
    home.mkdir(parents=True, exist_ok=True)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        try:
            result = subprocess.run(
                [str(airflow_bin()), "db", "migrate"],
                env=dict(env),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                timeout=timeout,
                start_new_session=True,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise AirflowRuntimeError(f"`airflow db migrate` took over {timeout:.0f}s") from exc
    if result.returncode != 0:
        raise AirflowRuntimeError(
            f"`airflow db migrate` failed with exit code {result.returncode}; "
            f"log {log_path}:\n{tail(log_path)}"
        )
    stamp.write_text(wanted)
    return True


def start_component(
    name: str,
    env: Mapping[str, str],
    log_path: Path,
    command: Sequence[str] | None = None,
) -> subprocess.Popen[bytes]:
    """Start one Airflow component in its own session (so its group can be killed whole).

    ``command`` (the ``airflow`` arguments) defaults to the embedded default's
    :data:`COMPONENT_COMMANDS` entry; other profiles pass their own.
    """
    if command is None:
        if name not in COMPONENT_COMMANDS:
            raise AirflowRuntimeError(f"unknown Airflow component {name!r}")
        command = COMPONENT_COMMANDS[name]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        return subprocess.Popen(
            [str(airflow_bin()), *command],
            env=dict(env),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=env.get("AIRFLOW_HOME"),
        )


def unhealthy_components(health: Mapping[str, object], components: Iterable[str]) -> list[str]:
    """Names (component names) that /monitor/health does not report as healthy."""
    bad = []
    database = health.get("metadatabase")
    if not isinstance(database, Mapping) or database.get("status") != "healthy":
        bad.append("metadatabase")
    for name in components:
        key = health_key(name)
        if key is None:
            continue
        entry = health.get(key)
        if not isinstance(entry, Mapping) or entry.get("status") != "healthy":
            bad.append(name)
    return bad


def wait_until_healthy(
    client: AirflowClient,
    processes: Mapping[str, subprocess.Popen[bytes]],
    log_paths: Mapping[str, Path],
    timeout: float,
) -> dict[str, object]:
    """Poll ``/api/v2/monitor/health`` until every started component is healthy.

    Fails at once, with the end of its log, when a component exits; fails after
    ``timeout`` naming what is still unhealthy.
    """
    deadline = time.monotonic() + timeout
    last_problem = "API server not answering yet"
    while time.monotonic() < deadline:
        for name, proc in processes.items():
            code = proc.poll()
            if code is not None:
                raise AirflowRuntimeError(
                    f"Airflow {name} exited with code {code} during start-up; "
                    f"log {log_paths[name]}:\n{tail(log_paths[name])}"
                )
        try:
            health = client.health()
        except Exception as exc:  # connection refused while the API server imports
            last_problem = f"API server not answering ({type(exc).__name__})"
        else:
            bad = unhealthy_components(health, processes)
            if not bad:
                return health
            last_problem = f"not healthy yet: {', '.join(bad)} ({json.dumps(health)})"
        time.sleep(1.0)
    raise AirflowRuntimeError(f"Airflow was not healthy within {timeout:.0f}s: {last_problem}")
