"""Start, watch and stop the local platform: AWS emulator, lab, Airflow, Teams bot.

``Platform(runtime_dir).up()`` starts each server in its own session (process group)
and records it in ``<runtime>/pids/<name>.pid``; ``down()`` stops the recorded Airflow
groups (SIGTERM, wait, SIGKILL), then the labs, then the other groups (the emulator),
then looks for anything of ours that is left - processes in a recorded session, or
carrying this runtime's owner marker in their environment (Airflow's task processes
inherit it) - kills it, and fails loudly if something still survives. ``up`` and
``down`` are idempotent: ``up`` on a running platform returns it as it is, ``down`` on a
stopped one does nothing.

Runtime layout (``migrationbox.config.runtime_dir()`` unless told otherwise)::

    airflow/           AIRFLOW_HOME: airflow.cfg, airflow.db, task logs, passwords file
    logs/              emulator.log, airflow-<component>.log, airflow-migrate.log,
                       teams-bot.log
    pids/              one JSON pid file per process group we started
    plans/             wave specs (``<estate>.json``), read at parse time
    plans/dags/        one loader DAG file per estate: the ``migrationbox-plans`` DAG
                       bundle, next to ``dags/`` (the ``dags-folder`` bundle)
    artifacts/         run artifacts
    lab/<estate>/      the local lab of each estate
    migrationbox.db    the MigrationBox store (SQLite)
    platform.json      ports, URLs and pids of the running platform

Profiles: the embedded default above, or ``production`` (``up --profile production``):
Airflow's metadata and the store in PostgreSQL databases, the CeleryExecutor with Redis,
``scheduler-1..N`` and ``celery-worker-1..M`` instead of the one scheduler, each its own
process group like every other component (:mod:`migrationbox.platform.production`).
Its auth manager is FAB instead of SimpleAuthManager, with the platform's admin user
on a generated password kept in ``airflow/fab_admin_password.json`` (0600) and roles for
a migration team (:mod:`migrationbox.platform.auth`, docs/access-control.md).

The Teams bot endpoint (:mod:`migrationbox.teams.server`, component ``teams-bot``) is
started after Airflow in both profiles on 127.0.0.1:``teams_port``, with the credentials
of the Airflow connection ``teams_conn_id``; ``up`` creates that connection when it is
missing, with a development app id and a generated secret (see ``_ensure_teams_connection``
and docs/teams-endpoint.md: a real tenant's values go in the connection).

Other commands (the CLI, the demo, tests) get the same connections, store URL and
Airflow configuration from :func:`platform_env`, and an authenticated REST client from
:meth:`Platform.client`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psutil
from pydantic import BaseModel, Field

from migrationbox import config
from migrationbox import settings as mb_settings
from migrationbox.errors import MigrationBoxError
from migrationbox.platform import airflow_runtime as afr
from migrationbox.platform import auth
from migrationbox.platform import production as prod
from migrationbox.platform.production import ProductionConfig
from migrationbox.platform.rest import AirflowApiError, AirflowClient

DEFAULT_API_PORT = afr.DEFAULT_API_PORT
DEFAULT_EMULATOR_PORT = 4566
OWNER_MARKER = "MIGRATIONBOX_PLATFORM_OWNER"
STATE_FILE = "platform.json"
TEAMS_COMPONENT = "teams-bot"
#: The embedded default's bot checks tokens against keys at an address where nothing
#: listens (port 9, discard): no public key set is trusted until a tenant's values are put
#: in the connection, and inbound calls are answered 503 until then.
DEV_TEAMS_OPENID_URL = "http://127.0.0.1:9/migrationbox-dev/openid-configuration"
DEV_TEAMS_TOKEN_URL = "http://127.0.0.1:9/migrationbox-dev/oauth2/v2.0/token"
TEAMS_START_TIMEOUT = 90.0
LOOPBACK = afr.LOOPBACK

log = logging.getLogger(__name__)


class PlatformError(MigrationBoxError, RuntimeError):
    """The platform could not be started, reached or stopped cleanly."""


class ProcessRecord(BaseModel):
    """One process group we started (the leader's pid is also the group and session id)."""

    name: str
    pid: int
    create_time: float | None = None
    command: list[str] = Field(default_factory=list)


class PlatformState(BaseModel):
    runtime_dir: str
    api_url: str
    api_port: int
    emulator_url: str
    emulator_port: int
    username: str
    dags_folder: str
    plugins_folder: str
    plans_folder: str | None = None
    airflow_home: str
    labs: list[str] = Field(default_factory=list)
    processes: dict[str, ProcessRecord] = Field(default_factory=dict)
    started_at: str
    ready: bool = False
    #: ``embedded`` (SQLite, LocalExecutor) or ``production`` (see platform.production)
    profile: str = "embedded"
    production: ProductionConfig | None = None
    #: the Teams bot endpoint (``POST <teams_url>/api/messages``)
    teams_port: int | None = None
    teams_url: str | None = None


class ComponentStatus(BaseModel):
    name: str
    pid: int
    running: bool


class PlatformStatus(BaseModel):
    running: bool
    state: PlatformState | None
    components: list[ComponentStatus]
    health: dict[str, Any] | None = None
    problem: str | None = None
    profile: str = "embedded"
    #: production profile: Celery workers answering a ping, schedulers and triggerers
    #: with a live heartbeat
    celery_workers: list[str] | None = None
    schedulers_alive: int | None = None
    triggerers_alive: int | None = None


class DownReport(BaseModel):
    stopped: list[str]
    labs: list[str]
    leftovers_killed: list[int]


def _env_port(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise PlatformError(f"{name}={raw!r} is not a port number") from exc


def port_is_free(port: int, host: str = LOOPBACK) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = LOOPBACK) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _port_owner(port: int) -> str:
    try:
        for conn in psutil.net_connections(kind="tcp"):
            listening = conn.status == psutil.CONN_LISTEN
            if listening and conn.laddr and conn.laddr.port == port and conn.pid:
                proc = psutil.Process(conn.pid)
                return f"pid {conn.pid} ({' '.join(proc.cmdline())[:120]})"
    except (psutil.Error, OSError):
        pass
    return "another process"


def _alive(pid: int, create_time: float | None = None) -> bool:
    """True if ``pid`` runs (not a zombie) and, if given, started at ``create_time``."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)  # reap our own exited children
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return create_time is None or abs(proc.create_time() - create_time) < 1.0
    except psutil.Error:
        return False


def _create_time(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


class Platform:
    """The local platform of one runtime folder (see module docstring).

    Ports: ``None`` reads ``MIGRATIONBOX_API_PORT`` / ``MIGRATIONBOX_EMULATOR_PORT``
    (defaults 8080 / 4566); ``0`` picks a free port. A busy fixed port is an error that
    names the process holding it.

    Profile: what ``up`` starts. ``None`` reads the ``platform_profile`` setting
    (default ``embedded``); ``production`` runs Airflow on PostgreSQL with Celery workers
    (:mod:`migrationbox.platform.production`), configured by ``production`` or else by
    the ``production_*`` settings. ``status``, ``env``, ``down`` and
    ``restart_component`` follow the profile the running platform was started with.
    """

    def __init__(
        self,
        runtime_dir: Path | str | None = None,
        *,
        api_port: int | None = None,
        emulator_port: int | None = None,
        teams_port: int | None = None,
        dags_folder: Path | str | None = None,
        plugins_folder: Path | str | None = None,
        settings_file: Path | str | None = None,
        plans_dir: Path | str | None = None,
        username: str = afr.ADMIN_USERNAME,
        password: str | None = None,
        parallelism: int = 4,
        startup_timeout: float = 300.0,
        stop_timeout: float = 30.0,
        profile: str | None = None,
        production: ProductionConfig | None = None,
    ) -> None:
        self.runtime_dir = Path(runtime_dir or config.runtime_dir()).resolve()
        self.api_port_setting = (
            api_port
            if api_port is not None
            else _env_port("MIGRATIONBOX_API_PORT", DEFAULT_API_PORT)
        )
        self.emulator_port_setting = (
            emulator_port
            if emulator_port is not None
            else _env_port("MIGRATIONBOX_EMULATOR_PORT", DEFAULT_EMULATOR_PORT)
        )
        #: the ``teams_port`` setting (MIGRATIONBOX_TEAMS_PORT); 0 picks a free port
        self.teams_port_setting = (
            teams_port if teams_port is not None
            else int(mb_settings.get("teams_port", variables=False))
        )
        self.dags_folder = Path(dags_folder or afr.default_dags_folder()).resolve()
        self.plugins_folder = Path(plugins_folder or afr.default_plugins_folder()).resolve()
        # like config.plans_dir(), but below this runtime folder, not MIGRATIONBOX_HOME's
        self.plans_dir = Path(
            plans_dir
            or mb_settings.get("plans_dir", variables=False)
            or self.runtime_dir / "plans"
        ).resolve()
        self.settings_file = Path(
            settings_file or config.project_root() / "airflow_settings.yaml"
        ).resolve()
        self.username = username
        #: ``None``: ``admin`` in the embedded default; in the production profile a random
        #: password generated at the first start (:mod:`migrationbox.platform.auth`)
        self.password = password
        self.parallelism = parallelism
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        if profile is not None and profile not in prod.PROFILES:
            raise PlatformError(f"unknown profile {profile!r}; one of {', '.join(prod.PROFILES)}")
        self.profile_setting = profile
        self.production = production
        self._children: dict[str, subprocess.Popen[bytes]] = {}
        self._emulator: Any = None

    # -- layout -----------------------------------------------------------------------

    @property
    def airflow_home(self) -> Path:
        return self.runtime_dir / "airflow"

    @property
    def logs_dir(self) -> Path:
        return self.runtime_dir / "logs"

    @property
    def pids_dir(self) -> Path:
        return self.runtime_dir / "pids"

    @property
    def labs_root(self) -> Path:
        return self.runtime_dir / "lab"

    @property
    def store_path(self) -> Path:
        return self.runtime_dir / "migrationbox.db"

    @property
    def state_path(self) -> Path:
        return self.runtime_dir / STATE_FILE

    @property
    def loaders_dir(self) -> Path:
        """``<plans>/dags``: the folder of the ``migrationbox-plans`` DAG bundle."""
        from migrationbox.orchestration.spec import loaders_dir

        return loaders_dir(self.plans_dir)

    def _layout(self) -> None:
        for folder in (
            self.airflow_home,
            self.logs_dir,
            self.pids_dir,
            self.plans_dir,
            self.loaders_dir,
            self.runtime_dir / "artifacts",
        ):
            folder.mkdir(parents=True, exist_ok=True)
        # specs exported before loaders existed get theirs, or their DAGs would vanish
        from migrationbox.planning.export import ensure_loaders

        ensure_loaders(self.plans_dir)

    # -- state ------------------------------------------------------------------------

    def read_state(self) -> PlatformState | None:
        try:
            return PlatformState.model_validate_json(self.state_path.read_text())
        except FileNotFoundError:
            return None
        except ValueError as exc:
            raise PlatformError(f"{self.state_path}: unreadable platform state ({exc})") from exc

    def _write_state(self, state: PlatformState) -> None:
        """Atomically, mode 0600: the production profile's database URLs are in it."""
        tmp = self.state_path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(state.model_dump_json(indent=2))
        tmp.replace(self.state_path)

    # -- profile ----------------------------------------------------------------------

    def wanted_profile(self) -> str:
        """The profile ``up`` starts: the constructor's, else the ``platform_profile``
        setting."""
        return self.profile_setting or str(mb_settings.get("platform_profile"))

    def production_config(self) -> ProductionConfig:
        """The production profile's configuration: the constructor's, else the settings'."""
        try:
            return self.production or ProductionConfig.from_settings()
        except prod.ProductionError as exc:
            raise PlatformError(str(exc)) from exc

    def _active_production(self) -> ProductionConfig | None:
        """The production configuration of the recorded platform (``None``: embedded);
        with no recorded platform, that of the profile ``up`` would start."""
        state = self.read_state()
        if state is not None:
            return state.production
        return self.production_config() if self.wanted_profile() == "production" else None

    def _component_commands(
        self, production: ProductionConfig | None
    ) -> dict[str, tuple[str, ...]]:
        return dict(afr.COMPONENT_COMMANDS) if production is None \
            else production.component_commands()

    def _record(self, name: str, pid: int, command: list[str]) -> ProcessRecord:
        record = ProcessRecord(name=name, pid=pid, create_time=_create_time(pid), command=command)
        self.pids_dir.mkdir(parents=True, exist_ok=True)
        (self.pids_dir / f"{name}.pid").write_text(record.model_dump_json())
        return record

    def _recorded(self) -> list[ProcessRecord]:
        """Every pid file under pids/ (ours are JSON; a bare pid number is accepted too)."""
        records = []
        for path in sorted(self.pids_dir.glob("*.pid")) if self.pids_dir.exists() else []:
            text = path.read_text().strip()
            try:
                records.append(ProcessRecord.model_validate_json(text))
            except ValueError:
                if text.isdigit():
                    records.append(ProcessRecord(name=path.stem, pid=int(text)))
        return records

    # -- environment ------------------------------------------------------------------

    def _ports_for_env(self) -> tuple[int, int]:
        state = self.read_state()
        if state is not None:
            return state.api_port, state.emulator_port
        api = self.api_port_setting or DEFAULT_API_PORT
        emulator = self.emulator_port_setting or DEFAULT_EMULATOR_PORT
        return api, emulator

    def migrationbox_env(
        self, api_port: int, emulator_port: int, production: ProductionConfig | None = None
    ) -> dict[str, str]:
        """MigrationBox's own variables and the Airflow connections (secrets stay in
        connections: the emulator's fixed test credentials are the only ones here, and
        in the production profile whatever the PostgreSQL URL setting holds)."""
        emulator_url = f"http://{LOOPBACK}:{emulator_port}"
        aws = {
            "conn_type": "aws",
            "login": "testing",
            "password": "testing",
            "extra": {"region_name": "us-east-1", "endpoint_url": emulator_url},
        }
        store: dict[str, Any] = {"conn_type": "sqlite", "host": str(self.store_path)}
        store_url = f"sqlite:///{self.store_path}"
        mlflow: dict[str, str] = {}
        shared: dict[str, str] = {}
        if production is not None:
            store, store_url = production.store_connection(), production.store_url
            from migrationbox.mlflow_backend import production_mlflow_env

            # models where every worker finds them: tracking in PostgreSQL, files in S3
            mlflow = production_mlflow_env(production.mlflow_url,
                                           production.mlflow_artifact_root, emulator_url)
            # files every host must reach, and the plans bundle: object storage (through
            # the aws_default connection, i.e. the emulator's S3 here)
            shared = {"MIGRATIONBOX_SHARED_ROOT": production.shared_root,
                      "MIGRATIONBOX_PLANS_ROOT": production.plans_root}
        return {
            **mlflow,
            **shared,
            "MIGRATIONBOX_HOME": str(self.runtime_dir),
            # where `migrationbox plan` writes and the plans bundle reads: the same folder
            "MIGRATIONBOX_PLANS_DIR": str(self.plans_dir),
            "MIGRATIONBOX_STORE_URL": store_url,
            "MIGRATIONBOX_STORE_PATH": str(self.store_path),
            "MIGRATIONBOX_EMULATOR_URL": emulator_url,
            "MIGRATIONBOX_AIRFLOW_URL": f"http://{LOOPBACK}:{api_port}",
            "MIGRATIONBOX_AIRFLOW_USERNAME": self.username,
            "AIRFLOW_CONN_AWS_DEFAULT": json.dumps(aws),
            "AIRFLOW_CONN_MIGRATIONBOX_STORE": json.dumps(store),
            # the lab's disks are small: replication rounds every few seconds, not the
            # production default of 5 minutes (a run conf can still override it)
            "MIGRATIONBOX_REPLICATION_CADENCE_SECONDS": os.environ.get(
                "MIGRATIONBOX_REPLICATION_CADENCE_SECONDS", "5"),
        }

    def env(self) -> dict[str, str]:
        """What another process needs to act on this platform: MigrationBox variables,
        connections and the Airflow configuration (``AIRFLOW_HOME``, ``AIRFLOW__*``)."""
        api_port, emulator_port = self._ports_for_env()
        state = self.read_state()
        dags = Path(state.dags_folder) if state else self.dags_folder
        plugins = Path(state.plugins_folder) if state else self.plugins_folder
        plans = Path(state.plans_folder) if state and state.plans_folder else self.plans_dir
        from migrationbox.orchestration.spec import loaders_dir

        production = self._active_production()
        return {
            **afr.airflow_config_env(
                self.airflow_home,
                api_port,
                dags,
                plugins,
                loaders_folder=loaders_dir(plans),
                plans_root=production.plans_root if production else None,
                parallelism=production.parallelism if production else self.parallelism,
                users=f"{self.username}:admin",
            ),
            **(production.airflow_overrides() if production else {}),
            **(auth.auth_env() if production else {}),
            **self.migrationbox_env(api_port, emulator_port, production),
            "MIGRATIONBOX_PLANS_DIR": str(plans),
        }

    def _airflow_env(
        self, api_port: int, extra: Mapping[str, str], production: ProductionConfig | None
    ) -> dict[str, str]:
        """The environment of the Airflow processes this platform starts."""
        env = afr.airflow_env(
            self.airflow_home,
            api_port,
            self.dags_folder,
            self.plugins_folder,
            extra=extra,
            loaders_folder=self.loaders_dir,
            plans_root=production.plans_root if production else None,
            parallelism=production.parallelism if production else self.parallelism,
            users=f"{self.username}:admin",
        )
        if production is not None:
            env.update(production.airflow_overrides())
            env.update(auth.auth_env())
        return env

    def client(self) -> AirflowClient:
        """A REST client logged in as the platform's admin user (the production profile's
        FAB user too: its ``POST /auth/token`` takes the same JSON login)."""
        state = self.read_state()
        api_port = state.api_port if state else self._ports_for_env()[0]
        return AirflowClient(f"http://{LOOPBACK}:{api_port}", self.username,
                             self.admin_password())

    def admin_password(self) -> str:
        """The platform admin's password: from the production profile's 0600 file when
        the platform runs (or would run) that profile, else from SimpleAuthManager's
        passwords file, else the embedded default's."""
        if self._active_production() is not None:
            try:
                return auth.read_admin_password(self.airflow_home, self.username)
            except auth.AuthError as exc:
                if self.password is None:
                    raise PlatformError(str(exc)) from exc
                return self.password
        try:
            return afr.read_password(self.airflow_home, self.username)
        except afr.AirflowRuntimeError:
            return self.password or afr.ADMIN_PASSWORD

    def login_hint(self) -> str:
        """How a person logs in, for ``platform up``: the embedded default's password is
        printed (it is ``admin``); the production profile's stays in its 0600 file."""
        if self._active_production() is not None:
            return (f"login {self.username}, password in "
                    f"{auth.admin_password_file(self.airflow_home)}")
        return f"login {self.username} / {self.admin_password()}"

    # -- up ---------------------------------------------------------------------------

    def _choose_port(self, setting: int, what: str, option: str) -> int:
        if setting == 0:
            return free_port()
        if not port_is_free(setting):
            raise PlatformError(
                f"cannot start the {what}: port {setting} on {LOOPBACK} is in use by "
                f"{_port_owner(setting)}; stop it or choose another port with {option} "
                "(0 picks a free one)"
            )
        return setting

    def running_state(self) -> PlatformState | None:
        """The recorded state if every recorded process is still alive, else None."""
        state = self.read_state()
        if state is None or not state.ready:
            return None
        if all(_alive(p.pid, p.create_time) for p in state.processes.values()):
            return state
        return None

    def up(self, with_lab_estate: Path | str | None = None) -> PlatformState:
        """Start emulator, (lab,) Airflow; apply airflow_settings.yaml; return the state.

        On a platform that is already running this only (re)starts the lab if asked.
        On any failure everything started so far is stopped again.
        """
        existing = self.running_state()
        if existing is not None:
            if self.profile_setting is not None and existing.profile != self.profile_setting:
                raise PlatformError(
                    f"a platform of profile {existing.profile!r} is already running in "
                    f"{self.runtime_dir}; stop it first (make down) to start "
                    f"{self.profile_setting!r}")
            if with_lab_estate is not None:
                existing.labs = sorted({*existing.labs, self._start_lab(with_lab_estate)})
                self._write_state(existing)
            return existing
        if self.read_state() is not None or self._recorded():
            self.down()  # stale: a crashed or half-started platform
        profile = self.wanted_profile()
        if profile not in prod.PROFILES:
            raise PlatformError(f"unknown profile {profile!r}; one of {', '.join(prod.PROFILES)}")
        production = self.production_config() if profile == "production" else None
        self._layout()
        if production is not None:
            self._prepare_production(production)
        api_port = self._choose_port(
            self.api_port_setting, "Airflow API server", "--api-port or MIGRATIONBOX_API_PORT"
        )
        emulator_port = self._choose_port(
            self.emulator_port_setting,
            "AWS emulator",
            "--emulator-port or MIGRATIONBOX_EMULATOR_PORT",
        )
        teams_port = self._choose_port(
            self.teams_port_setting, "Teams bot endpoint",
            "MIGRATIONBOX_TEAMS_PORT (the teams_port setting)")
        state = PlatformState(
            runtime_dir=str(self.runtime_dir),
            api_url=f"http://{LOOPBACK}:{api_port}",
            api_port=api_port,
            emulator_url=f"http://{LOOPBACK}:{emulator_port}",
            emulator_port=emulator_port,
            username=self.username,
            dags_folder=str(self.dags_folder),
            plugins_folder=str(self.plugins_folder),
            plans_folder=str(self.plans_dir),
            airflow_home=str(self.airflow_home),
            started_at=datetime.now(UTC).isoformat(timespec="seconds"),
            profile=profile,
            production=production,
            teams_port=teams_port,
            teams_url=f"http://{LOOPBACK}:{teams_port}",
        )
        self._write_state(state)
        try:
            state.processes["emulator"] = self._start_emulator(emulator_port)
            self._write_state(state)
            if production is not None:
                self._ensure_mlflow_bucket(production, emulator_port)
            if with_lab_estate is not None:
                state.labs.append(self._start_lab(with_lab_estate))
                self._write_state(state)
            self._start_airflow(state)
            state.processes[TEAMS_COMPONENT] = self._start_teams_bot(state)
            state.ready = True
            self._write_state(state)
        except BaseException:
            with contextlib.suppress(Exception):
                self.down()
            raise
        return state

    def _prepare_production(self, production: ProductionConfig) -> None:
        """Fail fast, naming the setting, when PostgreSQL or Redis is not there; create
        the two databases if missing; bring the store's schema up to date."""
        reason = prod.postgres_unreachable(production)
        if reason is None:
            reason = prod.redis_unreachable(production.broker_url)
        if reason:
            raise PlatformError(f"production profile: {reason}")
        try:
            if prod.ensure_database(production, production.airflow_db):
                # a new, empty metadata database: a stamp left by an older one would lie
                (self.airflow_home / afr.MIGRATED_STAMP).unlink(missing_ok=True)
            prod.ensure_database(production, production.store_db)
            # MLflow builds its schema on first use, under an advisory lock
            # (migrationbox.mlflow_backend), so several workers may meet it empty
            prod.ensure_database(production, production.mlflow_db)
        except prod.ProductionError as exc:
            raise PlatformError(f"production profile: {exc}") from exc
        from migrationbox.store import db

        try:
            db.engine(production.store_url)  # runs the store's Alembic migrations
        finally:
            db.dispose(production.store_url)

    def _ensure_mlflow_bucket(self, production: ProductionConfig, emulator_port: int) -> None:
        """The MLflow artifact bucket on the emulator (a deployment creates its own on
        S3). The emulator keeps objects in memory: a new bucket means earlier model files
        are gone while the MLflow database still lists them, so say so."""
        import boto3

        from migrationbox.errors import MigrationBoxError
        from migrationbox.mlflow_backend import ensure_artifact_bucket

        url = f"http://{LOOPBACK}:{emulator_port}"
        client = boto3.client("s3", endpoint_url=url, region_name="us-east-1",
                              aws_access_key_id="testing", aws_secret_access_key="testing")
        try:
            created = ensure_artifact_bucket(production.mlflow_artifact_root, url,
                                             client=client)
            for root in (production.shared_root, production.plans_root):
                ensure_artifact_bucket(root, url, client=client)
            # the plans bundle's prefix exists before the DAG processor starts, with the
            # estates already planned here (orchestration.plans_bundle)
            from migrationbox.orchestration.plans_bundle import prepare_bundle

            prepare_bundle(self.plans_dir, production.plans_root, client=client)
        except MigrationBoxError as exc:
            raise PlatformError(f"production profile: {exc}") from exc
        if created:
            log.info("MLflow artifacts: new bucket for %s on the emulator; model files of "
                     "an earlier start are not there (models fall back to rules until "
                     "retrained)", production.mlflow_artifact_root)

    def _start_emulator(self, port: int) -> ProcessRecord:
        from migrationbox.cloud.emulator import EmulatorProcess

        log = self.logs_dir / "emulator.log"
        emulator = EmulatorProcess(port=port, log_path=log)
        try:
            emulator.start()
        except Exception as exc:
            raise PlatformError(f"AWS emulator did not start: {exc}; log {log}") from exc
        self._emulator = emulator  # keeps the Popen (and its log handle) alive
        assert emulator.pid is not None
        return self._record("emulator", emulator.pid,
                            ["migrationbox.cloud.emulator_server", "-p", str(port)])

    def _start_lab(self, estate_path: Path | str) -> str:
        from migrationbox.inventory.validation import load_estate
        from migrationbox.lab.lab import Lab

        estate = load_estate(estate_path)
        Lab(estate.name, estate.servers, root=self.labs_root).up()
        return estate.name

    def _start_airflow(self, state: PlatformState) -> None:
        started = time.monotonic()
        production = state.production
        extra = {
            **self.migrationbox_env(state.api_port, state.emulator_port, production),
            OWNER_MARKER: str(self.runtime_dir),
        }
        env = self._airflow_env(state.api_port, extra, production)
        if production is None:
            afr.ensure_passwords(self.airflow_home,
                                 {self.username: self.password or afr.ADMIN_PASSWORD})
        afr.ensure_migrated(env, self.logs_dir / "airflow-migrate.log")
        if production is not None:
            self._ensure_fab_admin(env)
        logs = {}
        for name, command in self._component_commands(production).items():
            logs[name] = self.logs_dir / f"airflow-{name}.log"
            proc = afr.start_component(name, env, logs[name], command)
            self._children[name] = proc
            state.processes[f"airflow-{name}"] = self._record(
                f"airflow-{name}", proc.pid, ["airflow", *command]
            )
            self._write_state(state)
        with self.client() as client:
            afr.wait_until_healthy(client, self._children, logs, self.startup_timeout)
            if production is not None:
                left = self.startup_timeout - (time.monotonic() - started)
                self._wait_production_ready(production, logs, max(left, 30.0))
            self._apply_settings(client, extra, production)

    def _ensure_fab_admin(self, env: Mapping[str, str]) -> None:
        """The production profile's own FAB ``Admin`` user, with the password of the 0600
        file (generated at the first start; an explicit ``password`` replaces it), and
        the MigrationBox roles; reset at every start, since the platform owns this user."""
        password = auth.ensure_admin_password(self.airflow_home, self.username, self.password)
        request = auth.UserRequest(username=self.username, role="admin", update=True,
                                   first_name="MigrationBox", last_name="platform")
        try:
            auth.run_fab(env, {"op": "upsert_user", "user": request.model_dump(),
                               "password": password})
        except auth.AuthError as exc:
            raise PlatformError(f"production profile: could not set up the platform's "
                                f"admin user in the FAB auth manager: {exc}") from exc

    def _wait_production_ready(
        self, production: ProductionConfig, logs: Mapping[str, Path], timeout: float
    ) -> None:
        """Wait until every Celery worker answers a ping and every scheduler has a live
        heartbeat: /monitor/health is green as soon as *one* scheduler is."""
        deadline = time.monotonic() + timeout
        wanted = set(production.worker_hostnames())
        problem = "not checked yet"
        while time.monotonic() < deadline:
            for name, proc in self._children.items():
                code = proc.poll()
                if code is not None:
                    raise PlatformError(
                        f"Airflow {name} exited with code {code} during start-up; log "
                        f"{logs[name]}:\n{afr.tail(logs[name])}")
            try:
                missing = wanted - set(prod.celery_workers(production.broker_url))
                schedulers = prod.alive_schedulers(production.metadata_url)
                triggerers = prod.alive_triggerers(production.metadata_url)
            except Exception as exc:  # broker or database hiccup while starting
                problem = f"{type(exc).__name__}: {exc}"
            else:
                if (not missing and schedulers >= production.schedulers
                        and triggerers >= production.triggerers):
                    return
                problem = (f"Celery workers not answering: {sorted(missing) or 'none'}; "
                           f"schedulers alive: {schedulers} of {production.schedulers}; "
                           f"triggerers alive: {triggerers} of {production.triggerers}")
            time.sleep(1.0)
        raise PlatformError(f"the production profile was not ready within {timeout:.0f}s: "
                            f"{problem}")

    # -- the Teams bot ----------------------------------------------------------------

    def _ensure_teams_connection(self, client: AirflowClient,
                                 production: ProductionConfig | None) -> str:
        """Create the bot's Airflow connection (``teams_conn_id``) when it is missing:
        a development app id (a fresh GUID) and a generated secret, so the bot can start
        on a fresh platform. The embedded default also points the token checks and the
        outbound token endpoint at loopback addresses where nothing listens; the
        production profile keeps the Bot Framework defaults. An existing connection (a
        tenant's, or one given as ``AIRFLOW_CONN_<ID>``) is never touched."""
        conn_id = str(mb_settings.get("teams_conn_id", variables=False))
        if os.environ.get(f"AIRFLOW_CONN_{conn_id.upper()}"):
            return conn_id
        try:
            client.get_connection(conn_id)
            return conn_id
        except AirflowApiError as exc:
            if exc.status != 404:
                raise PlatformError(f"could not read the Teams bot's connection "
                                    f"{conn_id!r}: {exc}") from exc
        extra: dict[str, str] = {} if production is not None else {
            "openid_metadata_url": DEV_TEAMS_OPENID_URL,
            "connector_token_url": DEV_TEAMS_TOKEN_URL,
        }
        client.bulk_upsert("connections", [{
            "connection_id": conn_id, "conn_type": "generic",
            "description": ("MigrationBox Teams bot: login = Entra app (client) id, "
                            "password = client secret, extra = tenant_id, "
                            "openid_metadata_url, issuers, connector_token_url. Created "
                            "with development values; see docs/teams-endpoint.md"),
            "login": str(uuid.uuid4()), "password": secrets.token_urlsafe(32),
            "extra": json.dumps(extra) if extra else None,
        }])
        log.info("created the Teams bot connection %r with development values", conn_id)
        return conn_id

    def _teams_env(self, state: PlatformState) -> dict[str, str]:
        extra = {
            **self.migrationbox_env(state.api_port, state.emulator_port, state.production),
            OWNER_MARKER: str(self.runtime_dir),
            # read the bot's connection from Airflow's metadata database too (a process
            # outside Airflow otherwise sees only environment and external backends)
            "_AIRFLOW_PROCESS_CONTEXT": "server",
        }
        return self._airflow_env(state.api_port, extra, state.production)

    def _start_teams_bot(self, state: PlatformState) -> ProcessRecord:
        """Start ``python -m migrationbox.teams.server`` in its own session and wait until
        ``/healthz`` answers; a bot that exits (no connection, no dispatcher, port taken)
        fails ``up`` with the tail of its log."""
        assert state.teams_port is not None
        with self.client() as client:
            self._ensure_teams_connection(client, state.production)
        log_path = self.logs_dir / "teams-bot.log"
        command = [sys.executable, "-m", "migrationbox.teams.server",
                   "--port", str(state.teams_port)]
        with log_path.open("ab") as out:
            proc = subprocess.Popen(command, env=self._teams_env(state), stdout=out,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True, cwd=str(self.runtime_dir))
        self._children[TEAMS_COMPONENT] = proc
        record = self._record(TEAMS_COMPONENT, proc.pid, command[1:])
        state.processes[TEAMS_COMPONENT] = record
        self._write_state(state)
        deadline = time.monotonic() + TEAMS_START_TIMEOUT
        url = f"http://{LOOPBACK}:{state.teams_port}/healthz"
        while time.monotonic() < deadline:
            code = proc.poll()
            if code is not None:
                raise PlatformError(f"the Teams bot endpoint exited with code {code} "
                                    f"during start-up; log {log_path}:\n{afr.tail(log_path)}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url, timeout=2).status_code == 200:
                    return record
            time.sleep(0.3)
        raise PlatformError(f"the Teams bot endpoint did not answer {url} within "
                            f"{TEAMS_START_TIMEOUT:.0f}s; log {log_path}:\n"
                            f"{afr.tail(log_path)}")

    def restart_component(self, name: str, kill: bool = False) -> ProcessRecord:
        """Stop one Airflow component (``scheduler``, ``triggerer``, ...) and start it again.

        ``kill`` sends SIGKILL to its whole process group instead of a graceful SIGTERM,
        as a crash would. Used by fault tests and by operators recovering a stuck part.
        """
        # not running_state(): a component that crashed is exactly what this restarts
        state = self.read_state()
        if state is None or not state.ready:
            raise PlatformError("the platform is not running (make up)")
        if name == TEAMS_COMPONENT:  # e.g. after a tenant's values went in its connection
            record = state.processes.get(name)
            if record is not None and _alive(record.pid, record.create_time):
                if kill:
                    self._signal_group(record.pid, signal.SIGKILL)
                    self._wait_gone({record.pid}, self.stop_timeout)
                else:
                    self._stop_records([record], set(), [])
            old = self._children.pop(name, None)
            if old is not None:
                with contextlib.suppress(Exception):
                    old.wait(timeout=5)
            state.processes[name] = self._start_teams_bot(state)
            self._write_state(state)
            return state.processes[name]
        commands = self._component_commands(state.production)
        if name not in commands:
            raise PlatformError(f"unknown component {name!r}; one of "
                                f"{sorted([*commands, TEAMS_COMPONENT])}")
        key = f"airflow-{name}"
        record = state.processes.get(key)
        if record is not None and _alive(record.pid, record.create_time):
            if kill:
                self._signal_group(record.pid, signal.SIGKILL)
                self._wait_gone({record.pid}, self.stop_timeout)
            else:
                self._stop_records([record], set(), [])
        old = self._children.pop(name, None)
        if old is not None:
            with contextlib.suppress(Exception):
                old.wait(timeout=5)
        extra = {
            **self.migrationbox_env(state.api_port, state.emulator_port, state.production),
            OWNER_MARKER: str(self.runtime_dir),
        }
        env = self._airflow_env(state.api_port, extra, state.production)
        proc = afr.start_component(name, env, self.logs_dir / f"airflow-{name}.log",
                                   commands[name])
        self._children[name] = proc
        state.processes[key] = self._record(key, proc.pid, ["airflow", *commands[name]])
        self._write_state(state)
        return state.processes[key]

    def _apply_settings(
        self,
        client: AirflowClient,
        extra: Mapping[str, str],
        production: ProductionConfig | None = None,
    ) -> None:
        if not self.settings_file.exists():
            return
        from migrationbox.platform.settings import (
            ConnectionSetting,
            apply_settings,
            load_settings,
        )

        settings = load_settings(self.settings_file, {**os.environ, **extra})
        if production is not None:
            # the file describes the embedded store (a SQLite path); this profile's store
            # is the PostgreSQL database, and the UI's connection must say so
            conn = production.store_connection()
            store = ConnectionSetting(
                conn_id=config.STORE_CONN_ID,
                conn_type=conn["conn_type"],
                conn_host=conn["host"],
                conn_port=conn["port"],
                conn_schema=conn["schema"],
                conn_login=conn.get("login"),
                conn_password=conn.get("password"),
                conn_description="The MigrationBox store (production profile: PostgreSQL)",
            )
            settings.connections = [
                c for c in settings.connections if c.conn_id != config.STORE_CONN_ID
            ] + [store]
        apply_settings(client, settings)

    # -- status -----------------------------------------------------------------------

    def status(self) -> PlatformStatus:
        state = self.read_state()
        if state is None:
            return PlatformStatus(running=False, state=None, components=[], problem="not started")
        components = [
            ComponentStatus(name=name, pid=rec.pid, running=_alive(rec.pid, rec.create_time))
            for name, rec in sorted(state.processes.items())
        ]
        health = None
        problem = None
        try:
            with self.client() as client:
                health = client.health()
            bad = afr.unhealthy_components(health, afr.HEALTH_KEYS)
            if bad:
                problem = f"unhealthy: {', '.join(bad)}"
        except Exception as exc:
            problem = f"Airflow API not answering at {state.api_url} ({type(exc).__name__})"
        workers: list[str] | None = None
        schedulers: int | None = None
        triggerers: int | None = None
        if state.production is not None:
            workers, schedulers, extra_problem = self._production_status(state.production)
            try:
                triggerers = prod.alive_triggerers(state.production.metadata_url)
            except Exception:  # the database's failure is reported by _production_status
                triggerers = None
            else:
                if triggerers < state.production.triggerers:
                    short = f"triggerers alive: {triggerers} of {state.production.triggerers}"
                    extra_problem = f"{extra_problem}; {short}" if extra_problem else short
            if extra_problem:
                problem = f"{problem}; {extra_problem}" if problem else extra_problem
        if state.teams_url and TEAMS_COMPONENT in state.processes:
            try:
                teams_ok = httpx.get(f"{state.teams_url}/healthz", timeout=3).status_code == 200
            except httpx.HTTPError:
                teams_ok = False
            if not teams_ok:
                short = f"Teams bot endpoint not answering at {state.teams_url}"
                problem = f"{problem}; {short}" if problem else short
        dead = [c.name for c in components if not c.running]
        if dead:
            problem = f"stopped: {', '.join(dead)}" + (f"; {problem}" if problem else "")
        running = state.ready and not dead and problem is None
        return PlatformStatus(
            running=running, state=state, components=components, health=health, problem=problem,
            profile=state.profile, celery_workers=workers, schedulers_alive=schedulers,
            triggerers_alive=triggerers,
        )

    @staticmethod
    def _production_status(
        production: ProductionConfig,
    ) -> tuple[list[str] | None, int | None, str | None]:
        """Celery workers answering, schedulers alive, and what falls short."""
        problems = []
        workers: list[str] | None = None
        schedulers: int | None = None
        try:
            workers = prod.celery_workers(production.broker_url)
        except Exception as exc:
            problems.append(f"Celery broker not answering ({type(exc).__name__})")
        else:
            missing = sorted(set(production.worker_hostnames()) - set(workers))
            if missing:
                problems.append(f"Celery workers not answering: {', '.join(missing)}")
        try:
            schedulers = prod.alive_schedulers(production.metadata_url)
        except Exception as exc:
            problems.append(f"metadata database not answering ({type(exc).__name__})")
        else:
            if schedulers < production.schedulers:
                problems.append(f"schedulers alive: {schedulers} of {production.schedulers}")
        return workers, schedulers, "; ".join(problems) or None

    # -- down -------------------------------------------------------------------------

    def down(self) -> DownReport:
        """Stop the Teams bot, Airflow, then the labs, then the rest (the emulator), then hunt
        leftovers; idempotent. Airflow goes first so no task acts on a lab or an
        emulator that is already gone."""
        records = self._recorded()
        state = self.read_state()
        if state is not None:
            known = {r.pid for r in records}
            records += [r for r in state.processes.values() if r.pid not in known]
        sessions: set[int] = set()
        stopped: list[str] = []
        orphans: list[int] = []
        bot = [r for r in records if r.name == TEAMS_COMPONENT]
        airflow = [r for r in records if r.name.startswith("airflow-")]
        others = [r for r in records
                  if not r.name.startswith("airflow-") and r.name != TEAMS_COMPONENT]
        # the bot first: no command reaches an Airflow that is going away
        stopped += self._stop_records(bot, sessions, orphans)
        stopped += self._stop_records(airflow, sessions, orphans)
        labs = self._stop_labs()
        stopped += self._stop_records(others, sessions, orphans)
        leftovers = self._leftovers(sessions)
        killed = sorted({*orphans, *(p.pid for p in leftovers)})
        for proc in leftovers:
            with contextlib.suppress(psutil.Error):
                proc.terminate()
        _gone, alive = psutil.wait_procs(leftovers, timeout=5)
        for proc in alive:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        psutil.wait_procs(alive, timeout=5)
        for proc in self._children.values():
            with contextlib.suppress(Exception):
                proc.wait(timeout=1)
        self._children.clear()
        if self._emulator is not None:
            with contextlib.suppress(Exception):
                self._emulator.stop()
            self._emulator = None
        survivors = self._leftovers(sessions)
        if survivors:
            listing = ", ".join(f"{p.pid} ({_cmd(p)})" for p in survivors)
            raise PlatformError(f"processes of the platform survived SIGKILL: {listing}")
        for path in self.pids_dir.glob("*.pid") if self.pids_dir.exists() else []:
            path.unlink(missing_ok=True)
        self.state_path.unlink(missing_ok=True)
        return DownReport(stopped=stopped, labs=labs, leftovers_killed=killed)

    def _stop_records(
        self, records: list[ProcessRecord], sessions: set[int], orphans: list[int]
    ) -> list[str]:
        """SIGTERM each recorded group, wait, SIGKILL what is left; adds their sessions.

        A record whose leader is already dead may still have members (orphans of a
        crash): its group is signalled by id, which Linux never hands to a new process
        while members remain. A leader pid now used by another process is skipped.
        """
        stopped: list[str] = []
        batch: set[int] = set()
        for record in records:
            if _alive(record.pid, record.create_time):
                batch.add(record.pid)
                stopped.append(record.name)
                self._signal_group(record.pid, signal.SIGTERM)
            elif not _alive(record.pid):
                members = self._members({record.pid})
                orphans.extend(p.pid for p in members)
                batch.add(record.pid)
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(record.pid, signal.SIGTERM)
                for proc in members:  # members that changed group
                    with contextlib.suppress(psutil.Error):
                        proc.terminate()
        self._wait_gone(batch, self.stop_timeout)
        sessions |= batch
        return stopped

    def _stop_labs(self) -> list[str]:
        """Stop the service process of every lab under ``<runtime>/lab`` (data is kept)."""
        stopped: list[str] = []
        if not self.labs_root.exists():
            return stopped
        try:
            from migrationbox.lab.lab import Lab
        except ImportError:
            Lab = None  # the lab package is optional for the platform
        for state_file in sorted(self.labs_root.glob("*/lab.json")):
            estate = state_file.parent.name
            if Lab is not None:
                with contextlib.suppress(Exception):
                    Lab.attach(estate, root=self.labs_root).down()
            pid_file = state_file.parent / "service.pid"
            if pid_file.exists():  # belt and braces if the lab's own stop failed
                text = pid_file.read_text().strip()
                if text.isdigit() and _alive(int(text)):
                    self._signal_group(int(text), signal.SIGKILL)
            stopped.append(estate)
        return stopped

    @staticmethod
    def _signal_group(pid: int, sig: int) -> None:
        try:
            pgid = os.getpgid(pid)
        except ProcessLookupError:
            return
        try:
            if pgid == pid:
                os.killpg(pgid, sig)
            else:
                os.kill(pid, sig)
        except ProcessLookupError:
            pass

    def _members(self, sessions: Iterable[int]) -> list[psutil.Process]:
        wanted = set(sessions)
        found = []
        for proc in psutil.process_iter():
            try:
                if proc.status() == psutil.STATUS_ZOMBIE:
                    continue
                if os.getsid(proc.pid) in wanted:
                    found.append(proc)
            except (psutil.Error, OSError):
                continue
        return found

    def _wait_gone(self, sessions: set[int], timeout: float) -> None:
        """Wait for every member of our sessions to exit; SIGKILL what is left."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for child in self._children.values():
                child.poll()
            if not self._members(sessions):
                return
            time.sleep(0.2)
        for leader in sessions:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(leader, signal.SIGKILL)
        for proc in self._members(sessions):
            with contextlib.suppress(psutil.Error):
                proc.kill()

    def _leftovers(self, sessions: set[int]) -> list[psutil.Process]:
        """Processes of ours still alive: in a recorded session, or marked as ours."""
        me = psutil.Process()
        protected = {me.pid, *(p.pid for p in me.parents())}
        marker = str(self.runtime_dir)
        found: dict[int, psutil.Process] = {
            p.pid: p for p in self._members(sessions) if p.pid not in protected
        }
        for proc in psutil.process_iter():
            if proc.pid in protected or proc.pid in found:
                continue
            try:
                if proc.status() == psutil.STATUS_ZOMBIE:
                    continue
                if proc.environ().get(OWNER_MARKER) == marker:
                    found[proc.pid] = proc
            except (psutil.Error, OSError):
                continue
        return list(found.values())

    def leftovers(self) -> list[int]:
        """Pids of processes still marked as this platform's (for tests and status)."""
        return sorted(p.pid for p in self._leftovers(set()))


def _cmd(proc: psutil.Process) -> str:
    try:
        return " ".join(proc.cmdline())[:120]
    except psutil.Error:
        return "?"


def platform_env(runtime_dir: Path | str | None = None) -> dict[str, str]:
    """The environment other commands need to use the platform of ``runtime_dir``
    (default: ``.runtime``): same connections, store URL, MIGRATIONBOX_HOME, Airflow
    configuration; ports come from the running platform's state when there is one."""
    return Platform(runtime_dir).env()


def airflow_client(runtime_dir: Path | str | None = None) -> AirflowClient:
    """A logged-in REST client of the platform of ``runtime_dir``."""
    return Platform(runtime_dir).client()
