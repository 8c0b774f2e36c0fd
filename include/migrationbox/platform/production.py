"""The production profile: Airflow on PostgreSQL with the CeleryExecutor (Redis broker).

``migrationbox platform up --profile production`` runs the same platform as the embedded
default with the pieces a team runs in production swapped in:

* Airflow's metadata database on PostgreSQL (a database we create if it is missing),
* the CeleryExecutor, Redis as broker, the metadata database as Celery's result backend
  (Airflow's recommendation: a database, not Redis, keeps task states),
* several schedulers (Airflow 3 runs them active-active on PostgreSQL's row locks) and
  several Celery workers, each with a small concurrency,
* the MigrationBox store in its own PostgreSQL database (the store migrates itself with
  Alembic under an advisory lock, so many workers may touch it at once).

Everything comes from declared settings (``migrationbox.settings``, ``production_*``):
the PostgreSQL server is one admin URL (a role allowed to ``CREATE DATABASE``) and the
two database names; no password is written in code. A password belongs in that URL's
setting, or better outside it in ``PGPASSWORD`` / ``~/.pgpass``, which libpq reads in
every component.

This module only builds configuration and talks to PostgreSQL, Redis and the Celery
control bus; :class:`~migrationbox.platform.supervisor.Platform` starts the processes.
Heavy clients (SQLAlchemy engines, Celery, redis) are imported inside the functions that
need them so that importing the platform package stays cheap.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from migrationbox import settings as mb_settings
from migrationbox.errors import ConfigurationError

Profile = Literal["embedded", "production"]
PROFILES: tuple[str, ...] = ("embedded", "production")

#: Used when the ``production_pg_admin_url`` setting is unset: the loopback PostgreSQL of
#: a developer machine or CI, with trust (or ``PGPASSWORD`` / ``.pgpass``) authentication.
DEFAULT_PG_ADMIN_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
CELERY_EXECUTOR = "CeleryExecutor"
#: The auth manager of this profile (same value as ``platform.auth.FAB_AUTH_MANAGER``,
#: which imports more than this module needs)
FAB_AUTH_MANAGER = "airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager"
#: Airflow's ``[operators] default_queue``: the queue every task goes to unless it names one.
DEFAULT_QUEUE = "default"
#: The queue of the tasks that read source disks and write target disks (the wave DAG's
#: ``graph.REPLICATION_QUEUE``): served by the replication workers only, so replication
#: has its own concurrency and can run on the hosts where the disks are mounted.
REPLICATION_QUEUE = "replication"
#: Seconds before Redis hands an unacknowledged task to another worker. Airflow's own
#: default (24 h), set explicitly so the workers do not warn about it on every start; a
#: worker that dies is noticed much sooner by the scheduler's task heartbeat check.
VISIBILITY_TIMEOUT_S = 86_400
#: A scheduler counts as alive while its heartbeat is younger than this (Airflow's
#: ``[scheduler] scheduler_health_check_threshold`` default).
SCHEDULER_ALIVE_S = 30.0
#: Seconds between two heartbeats of a triggerer's job row (``[triggerer]
#: job_heartbeat_sec``; Airflow's default is 5): one small UPDATE each, and a dead
#: triggerer's last beat is at most this old when it dies.
TRIGGERER_HEARTBEAT_S = 2
#: A triggerer counts as alive while its heartbeat is younger than this (``[triggerer]
#: triggerer_health_check_threshold``; Airflow's default is 30). A live triggerer claims
#: the triggers of a triggerer whose heartbeat is older (``Trigger.assign_unassigned``,
#: every loop of about a second), so this is how long the heal watch is blind after its
#: triggerer dies. Lower risks a stalled but live triggerer losing its triggers: it
#: cancels them at its next loop, so they run twice until then (seen here: a triggerer
#: stalled 40-50 s on a 2-core host at load 17-19, with this threshold or Airflow's 30 s).
TRIGGERER_ALIVE_S = 15
#: Seconds the trigger runner's event loop may stay silent before its triggerer stops
#: heartbeating (``[triggerer] runner_health_check_threshold``, Airflow's default 30), so
#: that its triggers move elsewhere. The heal watch's first check in a fresh runner
#: imports the healer (pandas, the store) and under load held the loop 14 s and left it
#: silent 47-51 s on this 2-core host: at 30 s each triggerer in turn gave the watch up
#: and it ran in both for 16-34 s. A SIGKILLed triggerer stops beating at once whatever
#: this says, so failover stays at ``TRIGGERER_ALIVE_S``; only a hung-but-alive runner
#: is noticed later.
TRIGGERER_RUNNER_SILENCE_S = 120

_DB_NAME = r"^[A-Za-z_][A-Za-z0-9_]{0,62}$"


class ProductionError(ConfigurationError):
    """The production profile is misconfigured or a server it needs is not reachable."""


def _redact(url: str) -> str:
    """``url`` with any password replaced by ``***`` (for messages)."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url.split("@")[-1] if "@" in url else url


class ProductionConfig(BaseModel):
    """What the production profile runs on; built from settings by :meth:`from_settings`.

    Recorded in ``platform.json`` (mode 0600) so that ``status``, ``env``, ``down`` and
    ``restart_component`` act on the databases and broker the platform was started with,
    whatever the calling shell's environment says.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    pg_admin_url: str = DEFAULT_PG_ADMIN_URL
    airflow_db: str = Field(default="migrationbox_airflow", pattern=_DB_NAME)
    store_db: str = Field(default="migrationbox_store", pattern=_DB_NAME)
    mlflow_db: str = Field(default="migrationbox_mlflow", pattern=_DB_NAME)
    #: model files: object storage every worker reaches (the emulator's S3 on one host)
    mlflow_artifact_root: str = "s3://migrationbox-mlflow/artifacts"
    #: run reports, healer backups, refreshed prices: files every host must reach
    shared_root: str = "s3://migrationbox-shared"
    #: the plans bundle (per-estate loader DAG files), read through an S3DagBundle
    plans_root: str = "s3://migrationbox-plans/plans"
    broker_url: str = "redis://127.0.0.1:6379/0"
    schedulers: int = Field(default=2, ge=1, le=8)
    triggerers: int = Field(default=2, ge=1, le=8)
    celery_workers: int = Field(default=2, ge=1, le=16)
    worker_concurrency: int = Field(default=2, ge=1, le=64)
    replication_workers: int = Field(default=2, ge=1, le=16)
    replication_concurrency: int = Field(default=1, ge=1, le=64)
    #: seconds without a task heartbeat before the scheduler fails and retries the task
    task_heartbeat_timeout: int = Field(default=60, ge=15, le=3600)

    @field_validator("pg_admin_url")
    @classmethod
    def _postgresql(cls, value: str) -> str:
        from sqlalchemy.engine import make_url

        try:
            url = make_url(value)
        except Exception as exc:
            raise ValueError(f"not a SQLAlchemy URL ({exc})") from exc
        if url.get_backend_name() != "postgresql":
            raise ValueError(f"must be a PostgreSQL URL, got {url.get_backend_name()!r}")
        if url.drivername == "postgresql":  # pin the driver the project ships (psycopg2)
            url = url.set(drivername="postgresql+psycopg2")
        return url.render_as_string(hide_password=False)

    @field_validator("mlflow_artifact_root", "shared_root", "plans_root")
    @classmethod
    def _s3_root(cls, value: str) -> str:
        from migrationbox.mlflow_backend import (
            ARTIFACT_ROOT_ENV,
            MlflowBackendError,
            normalise_root,
            split_s3,
        )

        try:
            split_s3(value)  # a worker on another host cannot read a local folder
            return normalise_root(value)
        except MlflowBackendError as exc:  # the setting is named by from_settings
            message = str(exc).replace(f"{ARTIFACT_ROOT_ENV}: ", "")
            raise ValueError(message.replace(f"{ARTIFACT_ROOT_ENV} ", "")) from exc

    @field_validator("broker_url")
    @classmethod
    def _redis(cls, value: str) -> str:
        if not value.startswith(("redis://", "rediss://")):
            raise ValueError("must be a redis:// or rediss:// URL (the profile's broker is "
                             "Redis)")
        return value

    @classmethod
    def from_settings(cls, **overrides: Any) -> ProductionConfig:
        """The configuration the ``production_*`` settings describe (``overrides`` win)."""
        values: dict[str, Any] = {
            "pg_admin_url": mb_settings.get("production_pg_admin_url") or DEFAULT_PG_ADMIN_URL,
            "airflow_db": mb_settings.get("production_airflow_db"),
            "store_db": mb_settings.get("production_store_db"),
            "mlflow_db": mb_settings.get("production_mlflow_db"),
            "mlflow_artifact_root": mb_settings.get("production_mlflow_artifact_root"),
            "shared_root": mb_settings.get("production_shared_root"),
            "plans_root": mb_settings.get("production_plans_root"),
            "triggerers": mb_settings.get("production_triggerers"),
            "broker_url": mb_settings.get("production_broker_url"),
            "schedulers": mb_settings.get("production_schedulers"),
            "celery_workers": mb_settings.get("production_celery_workers"),
            "worker_concurrency": mb_settings.get("production_worker_concurrency"),
            "replication_workers": mb_settings.get("production_replication_workers"),
            "replication_concurrency": mb_settings.get("production_replication_concurrency"),
            "task_heartbeat_timeout": mb_settings.get("production_task_heartbeat_timeout"),
            **overrides,
        }
        from pydantic import ValidationError

        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            problems = "; ".join(
                f"production_{'.'.join(str(p) for p in err['loc'])}: {err['msg']}"
                for err in exc.errors()
            )
            raise ProductionError(f"invalid production profile settings: {problems}") from exc

    # -- derived URLs -----------------------------------------------------------------

    def database_url(self, database: str) -> str:
        """The admin URL pointed at ``database`` (same server, role and driver)."""
        from sqlalchemy.engine import make_url

        return make_url(self.pg_admin_url).set(database=database).render_as_string(
            hide_password=False)

    @property
    def metadata_url(self) -> str:
        """Airflow's ``[database] sql_alchemy_conn``."""
        return self.database_url(self.airflow_db)

    @property
    def store_url(self) -> str:
        """The MigrationBox store's SQLAlchemy URL."""
        return self.database_url(self.store_db)

    @property
    def mlflow_url(self) -> str:
        """MLflow's tracking (and model registry) database."""
        return self.database_url(self.mlflow_db)

    @property
    def result_backend(self) -> str:
        """Celery's result backend: the metadata database (``db+`` is Celery's prefix)."""
        return "db+" + self.metadata_url

    @property
    def default_slots(self) -> int:
        """Task slots of the workers on the default queue."""
        return self.celery_workers * self.worker_concurrency

    @property
    def replication_slots(self) -> int:
        """Task slots of the workers on the replication queue."""
        return self.replication_workers * self.replication_concurrency

    @property
    def parallelism(self) -> int:
        """Task slots all workers offer (both queues): what one scheduler may have
        running at once."""
        return self.default_slots + self.replication_slots

    def describe(self) -> dict[str, str]:
        """The configuration with passwords hidden (status output, logs, errors)."""
        return {
            "metadata database": _redact(self.metadata_url),
            "store": _redact(self.store_url),
            "broker": _redact(self.broker_url),
            "mlflow": f"{_redact(self.mlflow_url)}, artifacts {self.mlflow_artifact_root}",
            "shared files": self.shared_root,
            "plans bundle": self.plans_root,
            "schedulers": str(self.schedulers),
            "triggerers": str(self.triggerers),
            "celery workers": f"{self.celery_workers} x concurrency {self.worker_concurrency}",
            "replication workers": (f"{self.replication_workers} x concurrency "
                                    f"{self.replication_concurrency} (queue "
                                    f"{REPLICATION_QUEUE})"),
            "task heartbeat timeout": f"{self.task_heartbeat_timeout} s",
        }

    # -- Airflow --------------------------------------------------------------------

    def airflow_overrides(self) -> dict[str, str]:
        """The ``AIRFLOW__*`` variables that turn the embedded configuration into this
        profile (laid over :func:`airflow_runtime.airflow_config_env`)."""
        return {
            "AIRFLOW__CORE__EXECUTOR": CELERY_EXECUTOR,
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.metadata_url,
            "AIRFLOW__CELERY__BROKER_URL": self.broker_url,
            "AIRFLOW__CELERY__RESULT_BACKEND": self.result_backend,
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(self.worker_concurrency),
            "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT":
                str(VISIBILITY_TIMEOUT_S),
            "AIRFLOW__OPERATORS__DEFAULT_QUEUE": DEFAULT_QUEUE,
            # a killed worker's task: failed and retried within about a minute (the
            # task runner heartbeats every few seconds), not after Airflow's 300 s
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT":
                str(self.task_heartbeat_timeout),
            # approval gates name no respondents: the FAB roles decide who answers which
            # estate's gates (FAB user ids are numbers; MIGRATIONBOX_APPROVERS still wins)
            "AIRFLOW__MIGRATIONBOX__APPROVERS": mb_settings.ANY_APPROVER,
            # users and roles in the metadata database (platform.auth, access-control.md)
            "AIRFLOW__CORE__AUTH_MANAGER": FAB_AUTH_MANAGER,
            **self.triggerer_overrides(),
        }

    def triggerer_overrides(self) -> dict[str, str]:
        """``[triggerer]`` settings for several triggerers: a SIGKILLed triggerer never
        ends its job row, so its triggers (the heal watch among them) move to a live
        triggerer only once its heartbeat is older than the health check threshold;
        beating every 2 s and giving up after 15 s moves them within about 15 s instead
        of Airflow's 30 s. Two live triggerers never claim the same trigger: the claim
        is a ``SELECT ... FOR UPDATE SKIP LOCKED`` on PostgreSQL."""
        return {
            "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": str(TRIGGERER_HEARTBEAT_S),
            "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": str(TRIGGERER_ALIVE_S),
            "AIRFLOW__TRIGGERER__RUNNER_HEALTH_CHECK_THRESHOLD":
                str(TRIGGERER_RUNNER_SILENCE_S),
        }

    def worker_hostname(self, number: int) -> str:
        """Celery node name of worker ``number`` (1-based): unique per worker, as Celery
        requires, and what ``celery inspect`` answers with."""
        return f"migrationbox-worker-{number}@{socket.gethostname()}"

    def replication_worker_hostname(self, number: int) -> str:
        """Celery node name of replication worker ``number`` (1-based)."""
        return f"migrationbox-replication-worker-{number}@{socket.gethostname()}"

    def worker_hostnames(self) -> list[str]:
        """Every Celery node the profile starts: default-queue workers, then replication
        workers (``up`` waits until each answers a ping)."""
        return ([self.worker_hostname(n) for n in range(1, self.celery_workers + 1)]
                + [self.replication_worker_hostname(n)
                   for n in range(1, self.replication_workers + 1)])

    def component_commands(self) -> dict[str, tuple[str, ...]]:
        """Component name -> ``airflow`` arguments, in start order.

        ``--skip-serve-logs`` everywhere: the log servers bind 0.0.0.0 (no host option)
        and two workers on one host would fight over the same port; every component of
        this profile shares one log folder, which the API server reads directly. On a
        cluster, workers on other hosts need their log server (or remote logging).
        ``--without-mingle/--without-gossip``: the workers need no state from each
        other at start, and skipping both saves seconds and broker chatter.
        ``triggerer-N`` share the triggers (each runs in one of them; see
        :meth:`triggerer_overrides`). ``celery-worker-N`` serve the default queue;
        ``celery-replication-worker-N`` only the replication queue, with their own
        (small) concurrency, so disk copies never take the slots of the other tasks and
        vice versa.
        """
        commands: dict[str, tuple[str, ...]] = {"api-server": ("api-server",)}
        for n in range(1, self.schedulers + 1):
            commands[f"scheduler-{n}"] = ("scheduler", "--skip-serve-logs")
        commands["dag-processor"] = ("dag-processor",)
        for n in range(1, self.triggerers + 1):
            commands[f"triggerer-{n}"] = ("triggerer", "--skip-serve-logs")
        for n in range(1, self.celery_workers + 1):
            commands[f"celery-worker-{n}"] = (
                "celery", "worker",
                "--celery-hostname", self.worker_hostname(n),
                "--concurrency", str(self.worker_concurrency),
                "--queues", DEFAULT_QUEUE,
                "--skip-serve-logs", "--without-mingle", "--without-gossip",
            )
        for n in range(1, self.replication_workers + 1):
            commands[f"celery-replication-worker-{n}"] = (
                "celery", "worker",
                "--celery-hostname", self.replication_worker_hostname(n),
                "--concurrency", str(self.replication_concurrency),
                "--queues", REPLICATION_QUEUE,
                "--skip-serve-logs", "--without-mingle", "--without-gossip",
            )
        return commands

    # -- MigrationBox -----------------------------------------------------------------

    def store_connection(self) -> dict[str, Any]:
        """The ``migrationbox_store`` Airflow connection (``AIRFLOW_CONN_*`` JSON form)."""
        from sqlalchemy.engine import make_url

        url = make_url(self.store_url)
        conn: dict[str, Any] = {"conn_type": "postgres", "host": url.host or "127.0.0.1",
                                "port": url.port or 5432, "schema": self.store_db}
        if url.username:
            conn["login"] = url.username
        if url.password:
            conn["password"] = str(url.password)
        return conn


# -- servers --------------------------------------------------------------------------


def _tcp_reason(what: str, host: str, port: int) -> str | None:
    try:
        with socket.create_connection((host, port), timeout=2.0):
            return None
    except OSError as exc:
        return f"{what} not reachable at {host}:{port} ({exc.strerror or exc})"


def postgres_unreachable(cfg: ProductionConfig) -> str | None:
    """None when the admin URL logs in, else why not (naming the setting to change)."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    url = make_url(cfg.pg_admin_url)
    reason = _tcp_reason("PostgreSQL", url.host or "127.0.0.1", url.port or 5432)
    if reason:
        return f"{reason}; set production_pg_admin_url"
    eng = create_engine(url, connect_args={"connect_timeout": 5})
    try:
        with eng.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return (f"PostgreSQL at {_redact(cfg.pg_admin_url)} refused the login: {first}; set "
                "production_pg_admin_url (a password may also come from PGPASSWORD or "
                "~/.pgpass)")
    finally:
        eng.dispose()
    return None


def redis_unreachable(broker_url: str) -> str | None:
    """None when the broker answers PING, else why not."""
    from urllib.parse import urlsplit

    parts = urlsplit(broker_url)
    reason = _tcp_reason("Redis", parts.hostname or "127.0.0.1", parts.port or 6379)
    if reason:
        return f"{reason}; set production_broker_url"
    import redis

    client = redis.Redis.from_url(broker_url, socket_connect_timeout=3, socket_timeout=3)
    try:
        client.ping()
    except Exception as exc:
        return f"Redis at {_redact(broker_url)} did not answer PING: {exc}"
    finally:
        client.close()
    return None


def ensure_database(cfg: ProductionConfig, database: str) -> bool:
    """Create ``database`` on the admin URL's server unless it exists; True if created.

    The name was validated against ``[A-Za-z_][A-Za-z0-9_]*`` so quoting it is safe.
    """
    from sqlalchemy import create_engine, text

    if not re.fullmatch(_DB_NAME, database):
        raise ProductionError(f"not a plain database name: {database!r}")
    eng = create_engine(cfg.pg_admin_url, isolation_level="AUTOCOMMIT",
                        connect_args={"connect_timeout": 5})
    try:
        with eng.connect() as conn:
            exists = conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :name"),
                                  {"name": database}).first()
            if exists:
                return False
            conn.execute(text(f'CREATE DATABASE "{database}"'))
            return True
    except Exception as exc:
        raise ProductionError(
            f"cannot create database {database!r} at {_redact(cfg.pg_admin_url)}: "
            f"{(str(exc).strip().splitlines() or [type(exc).__name__])[0]}") from exc
    finally:
        eng.dispose()


def _celery_app(broker_url: str) -> Any:
    from celery import Celery

    return Celery("migrationbox-probe", broker=broker_url, set_as_current=False)


def celery_workers(broker_url: str, timeout: float = 1.0) -> list[str]:
    """Names of the Celery workers that answer a ping on the broker's control bus.

    A plain Celery app on the same broker is enough (the control bus does not depend on
    the app's tasks), so no Airflow configuration has to be loaded in this process.
    """
    app = _celery_app(broker_url)
    try:
        replies = app.control.ping(timeout=timeout) or []
    finally:
        app.close()
    return sorted(name for reply in replies for name in reply)


def celery_task_totals(broker_url: str, timeout: float = 2.0) -> dict[str, int]:
    """Tasks each live worker has received since it started (``inspect stats``)."""
    app = _celery_app(broker_url)
    try:
        stats: Mapping[str, Any] = app.control.inspect(timeout=timeout).stats() or {}
    finally:
        app.close()
    return {name: sum(int(v) for v in (data.get("total") or {}).values())
            for name, data in stats.items()}


def _alive_jobs(metadata_url: str, job_type: str, threshold_s: float) -> int:
    from sqlalchemy import create_engine, text

    cutoff = datetime.now(UTC) - timedelta(seconds=threshold_s)
    eng = create_engine(metadata_url, connect_args={"connect_timeout": 5})
    try:
        with eng.connect() as conn:
            count = conn.execute(
                text("SELECT count(*) FROM job WHERE job_type = :job_type "
                     "AND state = 'running' AND end_date IS NULL "
                     "AND latest_heartbeat > :cutoff"),
                {"job_type": job_type, "cutoff": cutoff},
            ).scalar_one()
    finally:
        eng.dispose()
    return int(count)


def alive_schedulers(metadata_url: str, threshold_s: float = SCHEDULER_ALIVE_S) -> int:
    """Schedulers whose job heartbeat is recent (what ``airflow jobs check
    --job-type SchedulerJob --allow-multiple`` counts), read from the metadata database:
    ``/monitor/health`` only reports the most recent scheduler, not how many are alive."""
    return _alive_jobs(metadata_url, "SchedulerJob", threshold_s)


def alive_triggerers(metadata_url: str, threshold_s: float = TRIGGERER_ALIVE_S) -> int:
    """Triggerers whose job heartbeat is recent: the ones a trigger may be assigned to
    (the same test ``Trigger.assign_unassigned`` makes; ``/monitor/health`` only
    reports the most recent triggerer)."""
    return _alive_jobs(metadata_url, "TriggererJob", threshold_s)
