"""The cloud's own database migration service, behind one provider-neutral interface.

AWS has DMS, Azure has Database Migration Service, GCP has Database Migration Service:
each copies a database (full load, then ongoing changes) with a runner the cloud hosts,
connection profiles for both sides and a job. ``DatabaseMigrationService`` is what the
replication code needs from any of them, so that ``replication.dms`` decides "service
first, row-checksum copy as fallback, checksums as the judge" once for every cloud.

Three rules every implementation keeps (the same as ``CloudAdapter``'s):

* identifiers are deterministic (estate, wave, server, database), every resource carries
  the MigrationBox tags, and each ``ensure_*`` looks the resource up before creating it,
  so a re-run reuses what an earlier run made;
* credentials are handed over at call time (``DatabaseCredentials``, resolved from an
  Airflow connection by the caller) and go only to the cloud API: never into a return
  value, a log line, the store or XCom;
* a cloud API failure is a ``DatabaseServiceError`` whose message names the server and
  endpoint, so the caller can fall back with the reason recorded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable

from migrationbox.errors import ConfigurationError, ExternalServiceError, InputError

#: default ports of the engines a migration service may take (SQLAlchemy dialect names)
DEFAULT_PORTS = {"postgresql": 5432, "mysql": 3306, "mariadb": 3306, "mssql": 1433,
                 "oracle": 1521}


class DatabaseServiceError(ExternalServiceError):
    """The cloud's migration service failed or refused; the message names server and
    endpoint, and the caller may fall back to the row-checksum copy."""


class NoDatabaseService(ConfigurationError):
    """There is no migration-service adapter for the cloud asked for."""


@dataclass(frozen=True)
class DatabaseLocation:
    """Where one side of a database migration lives, without any credential.

    ``engine`` is SQLAlchemy's dialect name (``postgresql``, ``mysql``, ``mssql``,
    ``oracle``, ``sqlite``...): the neutral name each adapter maps to its own.
    """

    engine: str
    host: str | None
    port: int | None
    database: str | None

    @classmethod
    def from_url(cls, url: str, where: str) -> DatabaseLocation:
        """Parse a SQLAlchemy URL; ``where`` names server, endpoint and field for errors.

        An engine SQLAlchemy has no dialect for is refused here, because neither the
        service nor the fallback copy could reach it.
        """
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError, NoSuchModuleError

        try:
            parsed = make_url(url)
        except ArgumentError:
            raise InputError(f"{where}: not a database URL (expected "
                             f"engine://user@host:port/database)") from None
        try:
            engine = parsed.get_dialect().name
        except NoSuchModuleError:
            raise InputError(f"{where}: unknown database engine {parsed.drivername!r} "
                             f"(no SQLAlchemy dialect of that name)") from None
        if engine == "sqlite":
            return cls(engine, None, None, parsed.database)
        return cls(engine, parsed.host, parsed.port or DEFAULT_PORTS.get(engine),
                   parsed.database)

    def describe(self) -> str:
        if self.host is None:
            return f"{self.engine} {self.database or ''}".strip()
        return f"{self.engine} {self.host}:{self.port}/{self.database or ''}"


@dataclass(frozen=True)
class DatabaseCredentials:
    """A login for one side, resolved from an Airflow connection just before the call.

    The password never shows in ``repr`` (so not in a log line or a traceback either).
    """

    username: str | None
    password: str | None = field(default=None, repr=False)

    @classmethod
    def from_url(cls, url: str) -> DatabaseCredentials:
        from sqlalchemy.engine import make_url

        parsed = make_url(url)
        return cls(parsed.username, parsed.password)


@dataclass(frozen=True)
class MigrationSpec:
    """One database to migrate: who it belongs to, its two sides, where the runner goes."""

    estate: str
    wave: int | str
    server_id: str
    name: str
    source: DatabaseLocation
    target: DatabaseLocation
    subnet_ids: tuple[str, ...] = ()
    security_group_ids: tuple[str, ...] = ()
    #: schema patterns to migrate (``%`` is every schema the service migrates by default)
    schemas: tuple[str, ...] = ("%",)

    def label(self) -> str:
        return f"endpoint {self.server_id}/database/{self.name}"


@dataclass(frozen=True)
class MigrationResources:
    """What ``ensure_migration`` found or made: provider ids, and which were new."""

    runner_id: str
    source_endpoint_id: str
    target_endpoint_id: str
    task_id: str
    subnet_group_id: str | None = None
    created: tuple[str, ...] = ()
    reused: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {"runner_id": self.runner_id, "source_endpoint_id": self.source_endpoint_id,
                "target_endpoint_id": self.target_endpoint_id, "task_id": self.task_id,
                "subnet_group_id": self.subnet_group_id, "created": list(self.created),
                "reused": list(self.reused)}


class TaskState(StrEnum):
    """A migration task's state, as the replication code acts on it."""

    PENDING = "pending"  # being created, ready, starting, modifying: not moving data yet
    RUNNING = "running"  # full load in progress
    FULL_LOAD_COMPLETE = "full_load_complete"  # full load done (CDC may be running)
    STOPPED = "stopped"  # stopped on request, resumable
    FAILED = "failed"  # failed, or stopped by an error
    MISSING = "missing"  # no such task


@dataclass(frozen=True)
class TaskStatus:
    """One reading of a task's status, with the provider's own words kept."""

    task_id: str
    state: TaskState
    provider_status: str | None
    full_load_percent: int | None = None
    tables_loaded: int | None = None
    tables_errored: int | None = None
    stop_reason: str | None = None
    last_failure_message: str | None = None

    @property
    def terminal(self) -> bool:
        """Whether a wait for the full load can end on this reading."""
        return self.state in (TaskState.FULL_LOAD_COMPLETE, TaskState.STOPPED,
                              TaskState.FAILED, TaskState.MISSING)

    @property
    def active(self) -> bool:
        """Whether the task may be writing to the target."""
        return self.state in (TaskState.RUNNING, TaskState.FULL_LOAD_COMPLETE)

    def reason(self) -> str:
        """The provider's explanation, or say that it gave none."""
        parts = [p for p in (self.last_failure_message, self.stop_reason) if p]
        return "; ".join(parts) if parts else "the service gave no reason"

    def as_dict(self) -> dict[str, Any]:
        return {"task_id": self.task_id, "state": self.state.value,
                "provider_status": self.provider_status,
                "full_load_percent": self.full_load_percent,
                "tables_loaded": self.tables_loaded, "tables_errored": self.tables_errored,
                "stop_reason": self.stop_reason,
                "last_failure_message": self.last_failure_message}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TaskStatus:
        """The inverse of ``as_dict`` (a sensor's XCom value back into a status)."""
        return cls(task_id=str(data["task_id"]), state=TaskState(data["state"]),
                   provider_status=data.get("provider_status"),
                   full_load_percent=data.get("full_load_percent"),
                   tables_loaded=data.get("tables_loaded"),
                   tables_errored=data.get("tables_errored"),
                   stop_reason=data.get("stop_reason"),
                   last_failure_message=data.get("last_failure_message"))


@runtime_checkable
class DatabaseMigrationService(Protocol):
    """What replication needs from a cloud's database migration service."""

    cloud: str

    @property
    def emulated(self) -> bool:
        """True when the API is a local emulator (which moves no data)."""
        ...

    def unsupported_reason(self, source: DatabaseLocation,
                           target: DatabaseLocation) -> str | None:
        """Why the service cannot take this pair (an engine it lacks), else None."""
        ...

    def ensure_migration(self, spec: MigrationSpec, source_credentials: DatabaseCredentials,
                         target_credentials: DatabaseCredentials) -> MigrationResources:
        """Find or create the runner, both endpoints and the full-load + CDC task."""
        ...

    def start(self, task_id: str) -> TaskStatus:
        """Start the task, or resume it if it ran before; a running task is left alone."""
        ...

    def status(self, task_id: str) -> TaskStatus: ...

    def stop(self, task_id: str) -> TaskStatus:
        """Stop the task if it runs; stopping a stopped task is not an error."""
        ...

    def delete_migration(self, spec: MigrationSpec) -> list[str]:
        """Delete this database's task and endpoints (the runner is the wave's)."""
        ...

    def teardown(self, estate: str, wave: int | str) -> list[str]:
        """Delete everything the service holds for one wave, runner included."""
        ...


def get_database_service(cloud: str, conn_id: str, region: str | None = None,
                         **options: Any) -> DatabaseMigrationService:
    """The migration-service adapter of ``cloud``, reaching it through ``conn_id``.

    ``options`` go to the adapter (``poll_seconds``, ``timeout_seconds``,
    ``instance_class``; for AWS also ``credentials``, ``"secrets-manager"`` by default or
    the explicit ``"password"`` fallback, and ``secrets_role_arn``). Clouds without an
    adapter yet raise ``NoDatabaseService``; the caller then uses the row-checksum copy
    and records why.
    """
    if cloud == "aws":
        from migrationbox.cloud.aws_dms import AwsDmsService

        return AwsDmsService(conn_id=conn_id, region=region, **options)
    raise NoDatabaseService(
        f"no database migration service adapter for cloud {cloud!r} (available: aws)")
