"""A database through the cloud's migration service first, the row-checksum copy as the
fallback, and the row checksums as the judge either way.

Why this order: the cloud's service (AWS DMS) copies from inside the cloud and keeps
replicating changes until cutover, without MigrationBox holding a connection for hours;
but it takes only some engines, it can fail, and "full load complete" is its own claim.
So the target is always judged by ``replication.database``'s row counts and SHA-256 row
checksums against the source, and whenever the service cannot be used or does not
deliver, the row-checksum copy moves the data and the result says so:

* ``method``: ``dms`` when the service's full load is complete and every table's
  checksums match (nothing copied by MigrationBox); ``copy`` otherwise;
* ``fallback_reason``: why the copy was used (an engine the service lacks, a task that
  failed or was stopped, checksums that differ after a reported full load, no service
  for this cloud, the service failing), in the service's own words where it gave any;
* ``dms_task_arn``, ``dms_status``: the task used, and its last status;
* ``tables``, ``checksum_match``, ``rows_copied``: the validation figures.

On the local emulator the DMS resources are created, started and read for real, but the
emulator moves no data: its task claims a complete full load at once, the checksums
differ, the task is stopped (one writer at a time) and the copy moves the rows —
``fallback_reason`` says exactly that. Once the copy has written a target (its state
table ``_migrationbox_replication`` holds rows), later runs keep using the copy, which
resumes from its watermarks; the DMS resources are still found and reused, not made
again.

Credentials: an endpoint's ``details`` may name Airflow connections (``conn_id`` for
the source, ``target_conn_id`` for the target, as ``migrationbox.endpoints`` defines);
they are read at call time, handed to the database driver and to the migration
service, and appear in no result, log line or error message (URLs are shown with the
password hidden). The AWS adapter keeps each side's login in a Secrets Manager secret that
the DMS endpoint references (``cloud.aws_dms``): no endpoint definition holds a password.

Nothing half-done is reported as done: a task still loading raises
``DatabaseServiceError`` (a re-run resumes it), a copy that fails raises
``DatabaseCopyFailed`` (its round's transaction is rolled back), and ``done`` is true
only when every table's checksums match.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from migrationbox.cloud.database_service import (
    DatabaseCredentials,
    DatabaseLocation,
    DatabaseMigrationService,
    DatabaseServiceError,
    MigrationSpec,
    TaskState,
    TaskStatus,
)
from migrationbox.endpoints.model import Endpoint
from migrationbox.errors import ExternalServiceError, InputError
from migrationbox.replication.database import (
    STATE_TABLE,
    DatabaseReplicationResult,
    TableCheck,
    compare_databases,
    replicate_database,
)
from migrationbox.replication.progress import ProgressCallback

log = logging.getLogger("migrationbox.replication.dms")

class DatabaseCopyFailed(ExternalServiceError):
    """The row-checksum copy could not read the source or write the target."""


@dataclass(frozen=True)
class ServicePlacement:
    """Where the service's runner goes: the wave, and the wave's network if known."""

    estate: str
    wave: int | str
    subnet_ids: tuple[str, ...] = ()
    security_group_ids: tuple[str, ...] = ()
    schemas: tuple[str, ...] = ("%",)


@dataclass(frozen=True)
class ServiceStart:
    """What starting the service gave: a running task, or the reason to copy instead.

    Holds ids and statuses only (no URL, no credential), so it can travel through XCom
    between a start task, a sensor and the finishing task (``as_dict``/``from_dict``).
    """

    task_id: str | None = None
    status: TaskStatus | None = None
    fallback_reason: str | None = None
    service_emulated: bool = False
    resources: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"task_id": self.task_id,
                "status": self.status.as_dict() if self.status else None,
                "fallback_reason": self.fallback_reason,
                "service_emulated": self.service_emulated, "resources": self.resources}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ServiceStart:
        status = data.get("status")
        return cls(task_id=data.get("task_id"),
                   status=TaskStatus.from_dict(status) if status else None,
                   fallback_reason=data.get("fallback_reason"),
                   service_emulated=bool(data.get("service_emulated")),
                   resources=data.get("resources"))


@dataclass
class DatabaseMigrationResult:
    """How one database reached its target, and the checksums that judge it."""

    server_id: str
    endpoint: str
    source: str
    target: str
    method: str = "copy"
    dms_task_arn: str | None = None
    dms_status: dict[str, Any] | None = None
    fallback_reason: str | None = None
    service_emulated: bool = False
    resources: dict[str, Any] | None = None
    tables: list[TableCheck] = field(default_factory=list)
    copy: DatabaseReplicationResult | None = None
    validation_attempts: int = 0

    @property
    def match(self) -> bool:
        return bool(self.tables) and all(t.match for t in self.tables)

    @property
    def converged(self) -> bool:
        return self.copy.converged if self.copy is not None else self.match

    @property
    def done(self) -> bool:
        return self.match and self.converged

    @property
    def rows_copied(self) -> int:
        return self.copy.rows_copied if self.copy is not None else 0

    @property
    def rounds(self) -> int:
        return len(self.copy.rounds) if self.copy is not None else 0

    def summary(self) -> dict[str, Any]:
        return {
            "method": self.method, "dms_task_arn": self.dms_task_arn,
            "dms_status": self.dms_status, "fallback_reason": self.fallback_reason,
            "service_emulated": self.service_emulated, "resources": self.resources,
            "source": self.source, "target": self.target,
            "checksum_match": self.match, "converged": self.converged, "done": self.done,
            "rows_copied": self.rows_copied, "rounds": self.rounds,
            "validation_attempts": self.validation_attempts,
            "tables": [t.as_dict() for t in self.tables],
            "copy": self.copy.summary() if self.copy is not None else None,
        }


# --------------------------------------------------------------------------- URLs
def _where(endpoint: Endpoint) -> str:
    return f"endpoint {endpoint.label()}"


def redact(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparseable url>"


def _field(endpoint: Endpoint, side: str) -> str:
    key = "conn_id" if side == "source" else "target_conn_id"
    return f"details.{key}" if endpoint.details.get(key) else f"{side}_uri"


def resolve_database_url(endpoint: Endpoint, side: str) -> str:
    """The SQLAlchemy URL of one side, password included, for the driver and the cloud
    API only: ``endpoints.connections.database_url`` (the Airflow connection named by
    ``details.conn_id`` / ``details.target_conn_id``, read now; else the URI)."""
    from sqlalchemy.exc import ArgumentError

    from migrationbox.endpoints.connections import database_url

    try:
        return database_url(endpoint, side).render_as_string(hide_password=False)
    except ArgumentError:
        raise InputError(f"{_where(endpoint)} field {_field(endpoint, side)}: not a "
                         f"database URL") from None


def _copy_has_written(where: str, target_url: str) -> bool:
    """Whether the row-checksum copy has already written this target (its state rows)."""
    from sqlalchemy import create_engine, func, inspect, select, table
    from sqlalchemy.exc import SQLAlchemyError

    engine = create_engine(target_url)
    try:
        if not inspect(engine).has_table(STATE_TABLE):
            return False
        with engine.connect() as conn:
            return bool(conn.execute(select(func.count()).select_from(table(STATE_TABLE)))
                        .scalar())
    except SQLAlchemyError as exc:
        raise DatabaseCopyFailed(f"{where}: cannot read the target database: "
                                 f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
                                 ) from None
    finally:
        engine.dispose()


def _db_error(where: str, what: str, exc: Exception) -> DatabaseCopyFailed:
    first = str(exc).splitlines()[0][:300] if str(exc) else ""
    return DatabaseCopyFailed(f"{where}: {what}: {type(exc).__name__}: {first}")


# --------------------------------------------------------------------------- steps
def start_service_migration(
    endpoint: Endpoint,
    placement: ServicePlacement,
    service: DatabaseMigrationService | None,
    *,
    allow_fallback: bool = True,
) -> ServiceStart:
    """Find or create the service's resources for this database and start its task.

    Returns the started task, or a fallback reason (no service, an engine it lacks, the
    service failing, or a target the copy already keeps). With ``allow_fallback=False``
    a service failure raises ``DatabaseServiceError`` instead.
    """
    where = _where(endpoint)
    src_url = resolve_database_url(endpoint, "source")
    tgt_url = resolve_database_url(endpoint, "target")
    src = DatabaseLocation.from_url(src_url, f"{where} field {_field(endpoint, 'source')}")
    tgt = DatabaseLocation.from_url(tgt_url, f"{where} field {_field(endpoint, 'target')}")
    if service is None:
        return ServiceStart(fallback_reason="no database migration service for this cloud")
    reason = service.unsupported_reason(src, tgt)
    if reason:
        return ServiceStart(fallback_reason=reason)
    emulated = bool(service.emulated)
    spec = MigrationSpec(
        estate=placement.estate, wave=placement.wave, server_id=endpoint.server_id,
        name=endpoint.name, source=src, target=tgt, subnet_ids=placement.subnet_ids,
        security_group_ids=placement.security_group_ids, schemas=placement.schemas)
    resources = None
    try:
        resources = service.ensure_migration(spec, DatabaseCredentials.from_url(src_url),
                                             DatabaseCredentials.from_url(tgt_url))
        task = resources.task_id
        if _copy_has_written(where, tgt_url):
            status = service.status(task)
            if status.active:
                status = service.stop(task)
            return ServiceStart(
                task_id=task, status=status, service_emulated=emulated,
                resources=resources.as_dict(),
                fallback_reason=(f"an earlier run fell back to the row-checksum copy, which "
                                 f"keeps this target from now on; {service.cloud} task "
                                 f"{task} is left {status.provider_status}"))
        status = service.start(task)
        log.info("%s: %s migration task %s started (%s)", where, service.cloud, task,
                 status.provider_status)
        return ServiceStart(task_id=task, status=status, service_emulated=emulated,
                            resources=resources.as_dict())
    except DatabaseServiceError as exc:
        if not allow_fallback:
            raise
        return ServiceStart(
            task_id=resources.task_id if resources else None, service_emulated=emulated,
            resources=resources.as_dict() if resources else None,
            fallback_reason=f"the {service.cloud} migration service failed: {exc}")


def wait_for_full_load(service: DatabaseMigrationService, task_id: str,
                       timeout_seconds: float, poll_seconds: float) -> TaskStatus:
    """Poll until the task's full load is complete or it can no longer complete
    (the in-task equivalent of ``cloud.aws_dms.DmsFullLoadSensor``). On timeout the
    last, non-terminal reading is returned; the caller must not call that done."""
    deadline = time.monotonic() + timeout_seconds
    while True:
        status = service.status(task_id)
        if status.terminal or time.monotonic() >= deadline:
            return status
        time.sleep(poll_seconds)


def _validate(where: str, src_url: str, tgt_url: str, attempts: int,
              pause_seconds: float) -> tuple[list[TableCheck], int]:
    """Compare up to ``attempts`` times (changes still streaming can lag a moment)."""
    from sqlalchemy.exc import SQLAlchemyError

    checks: list[TableCheck] = []
    for attempt in range(1, max(1, attempts) + 1):
        try:
            checks = compare_databases(src_url, tgt_url)
        except SQLAlchemyError as exc:
            raise _db_error(where, "cannot compare source and target", exc) from None
        if checks and all(c.match for c in checks):
            return checks, attempt
        if attempt < attempts:
            time.sleep(pause_seconds)
    return checks, max(1, attempts)


def finish_service_migration(
    endpoint: Endpoint,
    service: DatabaseMigrationService | None,
    start: ServiceStart,
    status: TaskStatus | None = None,
    *,
    max_rounds: int = 10,
    threshold_rows: int = 0,
    validation_attempts: int = 3,
    poll_seconds: float = 15.0,
    allow_fallback: bool = True,
    progress: ProgressCallback | None = None,
) -> DatabaseMigrationResult:
    """Judge what the service did by the row checksums; copy when it did not deliver.

    ``status`` is the task's last reading (the sensor's XCom value, or
    ``wait_for_full_load``'s); a task still loading raises ``DatabaseServiceError``.
    """
    from sqlalchemy.exc import SQLAlchemyError

    where = _where(endpoint)
    src_url = resolve_database_url(endpoint, "source")
    tgt_url = resolve_database_url(endpoint, "target")
    status = status or start.status
    result = DatabaseMigrationResult(
        server_id=endpoint.server_id, endpoint=endpoint.name, source=redact(src_url),
        target=redact(tgt_url), dms_task_arn=start.task_id,
        dms_status=status.as_dict() if status else None,
        fallback_reason=start.fallback_reason, service_emulated=start.service_emulated,
        resources=start.resources)
    reason = start.fallback_reason
    if reason is None:
        if service is None or start.task_id is None or status is None:
            raise InputError(f"{where}: a started service migration needs the service, its "
                             f"task id and a status reading")
        if not status.terminal:
            raise DatabaseServiceError(
                f"{where}: {service.cloud} task {start.task_id} has not finished its full "
                f"load ({status.provider_status}, {status.full_load_percent}% loaded); "
                f"nothing is reported done, a re-run resumes the wait")
        if status.state is TaskState.FULL_LOAD_COMPLETE:
            checks, tries = _validate(where, src_url, tgt_url, validation_attempts,
                                      poll_seconds)
            result.validation_attempts = tries
            if checks and all(c.match for c in checks):
                result.method = "dms"
                result.tables = checks
                return result
            bad = [c.table for c in checks if not c.match]
            reason = (f"{service.cloud} task {start.task_id} reports its full load complete, "
                      f"but the row checksums of tables {bad} differ from the source")
            if start.service_emulated:
                reason += " (the local emulator's migration service moves no data)"
            if allow_fallback:
                stopped = service.stop(start.task_id)  # one writer at a time
                result.dms_status = stopped.as_dict()
        else:
            reason = (f"{service.cloud} task {start.task_id} is {status.provider_status}: "
                      f"{status.reason()}")
        if not allow_fallback:
            raise DatabaseServiceError(f"{where}: {reason}")
    result.fallback_reason = reason
    log.info("%s: row-checksum copy (%s)", where, reason)
    try:
        copy = replicate_database(src_url, tgt_url, max_rounds=max_rounds,
                                  threshold_rows=threshold_rows, progress=progress)
    except SQLAlchemyError as exc:
        raise _db_error(where, "the row-checksum copy failed (the round in progress was "
                               "rolled back)", exc) from None
    result.copy = copy
    result.tables = copy.tables
    result.validation_attempts += 1
    return result


def replicate_database_via_service(
    endpoint: Endpoint,
    placement: ServicePlacement,
    service: DatabaseMigrationService | None,
    *,
    max_rounds: int = 10,
    threshold_rows: int = 0,
    wait_timeout_seconds: float = 1800.0,
    poll_seconds: float | None = None,
    validation_attempts: int = 3,
    allow_fallback: bool = True,
    progress: ProgressCallback | None = None,
) -> DatabaseMigrationResult:
    """One database, in one call: start the service, wait for its full load, judge it by
    the row checksums, and copy with the row-checksum copy when it cannot or did not
    deliver. See the module docstring for what the result says."""
    poll = poll_seconds if poll_seconds is not None else float(
        getattr(service, "poll_seconds", 15.0))
    start = start_service_migration(endpoint, placement, service,
                                    allow_fallback=allow_fallback)
    status = start.status
    if start.fallback_reason is None and service is not None and start.task_id:
        status = wait_for_full_load(service, start.task_id, wait_timeout_seconds, poll)
    return finish_service_migration(
        endpoint, service, start, status, max_rounds=max_rounds,
        threshold_rows=threshold_rows, validation_attempts=validation_attempts,
        poll_seconds=poll, allow_fallback=allow_fallback, progress=progress)
