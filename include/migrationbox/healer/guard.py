"""Never two remediations on one resource at once, and not too many in a row.

A :class:`ResourceGuard` hands out a :class:`Lease` per resource. Acquiring one checks,
atomically, that

* no unexpired lease is held on the resource (the **lock**; a lease expires after its TTL
  so a worker that died mid-remediation does not block the resource forever), and
* fewer than ``max_actions`` remediations started on it in the last ``window`` (the
  **rate limit**, which is what stops a remediation that "works" but does not fix the
  cause from being repeated in a loop).

Every successful acquisition is recorded (the action log). Two implementations with the
same behaviour: :class:`InMemoryGuard` (one process; tests, the CLI) and
:class:`SqlGuard` (any SQLAlchemy URL; several workers or schedulers share it).
"""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from sqlalchemy import and_, delete, func, insert, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from migrationbox.errors import MigrationBoxError
from migrationbox.healer import tables


@dataclass(frozen=True)
class RateLimit:
    max_actions: int = 3
    window: timedelta = timedelta(hours=1)

    def __post_init__(self) -> None:
        if self.max_actions < 1:
            raise ValueError(f"max_actions: must be at least 1, got {self.max_actions}")


@dataclass(frozen=True)
class Lease:
    resource: str
    action: str
    holder: str
    token: str
    acquired_at: datetime
    expires_at: datetime


class GuardRefused(MigrationBoxError, RuntimeError):
    """The guard refused a remediation; ``reason`` says why in words for the incident."""

    def __init__(self, resource: str, reason: str) -> None:
        super().__init__(f"{resource}: {reason}")
        self.resource, self.reason = resource, reason


class ResourceBusy(GuardRefused):
    def __init__(self, resource: str, holder: Lease | None) -> None:
        reason = "another remediation holds the resource" + (
            f" ({holder.action} by {holder.holder} until {holder.expires_at.isoformat()})"
            if holder else "")
        super().__init__(resource, reason)
        self.holder = holder


class RateLimited(GuardRefused):
    def __init__(self, resource: str, count: int, limit: RateLimit) -> None:
        super().__init__(resource, f"rate limit: {count} remediation(s) already started in "
                                   f"the last {limit.window}, at most {limit.max_actions}")
        self.count = count


class ResourceGuard(Protocol):
    limit: RateLimit

    def acquire(self, resource: str, action: str, holder: str, *,
                ttl: timedelta = ..., now: datetime | None = None) -> Lease: ...

    def release(self, lease: Lease, *, now: datetime | None = None) -> None: ...

    def holder(self, resource: str, *, now: datetime | None = None) -> Lease | None: ...

    def recent_actions(self, resource: str, *, now: datetime | None = None) -> int: ...


DEFAULT_TTL = timedelta(minutes=30)


def _now(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(UTC)
    if now.tzinfo is None:
        raise ValueError(f"now: naive datetime {now.isoformat()}; use an aware UTC time")
    return now.astimezone(UTC)


def _check_ttl(ttl: timedelta) -> None:
    if ttl <= timedelta(0):
        raise ValueError(f"ttl: must be positive, got {ttl}")


class InMemoryGuard:
    """Thread-safe guard for one process."""

    def __init__(self, limit: RateLimit | None = None) -> None:
        self.limit = limit or RateLimit()
        self._mutex = threading.Lock()
        self._leases: dict[str, Lease] = {}
        self._started: dict[str, list[datetime]] = {}

    def acquire(self, resource: str, action: str, holder: str, *,
                ttl: timedelta = DEFAULT_TTL, now: datetime | None = None) -> Lease:
        _check_ttl(ttl)
        at = _now(now)
        with self._mutex:
            current = self._leases.get(resource)
            if current is not None and current.expires_at > at:
                raise ResourceBusy(resource, current)
            count = self._count(resource, at)
            if count >= self.limit.max_actions:
                raise RateLimited(resource, count, self.limit)
            lease = Lease(resource, action, holder, secrets.token_hex(16), at, at + ttl)
            self._leases[resource] = lease
            self._started.setdefault(resource, []).append(at)
            return lease

    def release(self, lease: Lease, *, now: datetime | None = None) -> None:
        with self._mutex:
            current = self._leases.get(lease.resource)
            if current is not None and current.token == lease.token:
                del self._leases[lease.resource]

    def holder(self, resource: str, *, now: datetime | None = None) -> Lease | None:
        at = _now(now)
        with self._mutex:
            current = self._leases.get(resource)
            return current if current is not None and current.expires_at > at else None

    def recent_actions(self, resource: str, *, now: datetime | None = None) -> int:
        with self._mutex:
            return self._count(resource, _now(now))

    def _count(self, resource: str, at: datetime) -> int:
        since = at - self.limit.window
        return sum(1 for t in self._started.get(resource, ()) if since < t <= at)


class SqlGuard:
    """Guard backed by the healer's tables (``healer_locks``, ``healer_action_log``).

    The lock is the primary key of ``healer_locks``: of two concurrent inserts for the same
    resource, the database lets exactly one commit. The rate-limit count and the log insert
    happen in the same transaction, after the lock row, so they are serialised per resource.
    """

    def __init__(self, engine: Engine, limit: RateLimit | None = None) -> None:
        self.engine = engine
        self.limit = limit or RateLimit()
        tables.ensure_tables(engine)

    def acquire(self, resource: str, action: str, holder: str, *,
                ttl: timedelta = DEFAULT_TTL, now: datetime | None = None) -> Lease:
        _check_ttl(ttl)
        at = _now(now)
        lease = Lease(resource, action, holder, secrets.token_hex(16), at, at + ttl)
        try:
            with self.engine.begin() as conn:
                conn.execute(delete(tables.locks).where(and_(
                    tables.locks.c.resource == resource, tables.locks.c.expires_at <= at)))
                conn.execute(insert(tables.locks).values(
                    resource=resource, action=action, holder=holder, token=lease.token,
                    acquired_at=at, expires_at=lease.expires_at))
                count = self._count(conn, resource, at)
                if count >= self.limit.max_actions:
                    raise RateLimited(resource, count, self.limit)  # rolls the lock back
                conn.execute(insert(tables.action_log).values(
                    resource=resource, action=action, holder=holder, token=lease.token,
                    started_at=at))
        except IntegrityError:
            raise ResourceBusy(resource, self.holder(resource, now=at)) from None
        return lease

    def release(self, lease: Lease, *, now: datetime | None = None) -> None:
        at = _now(now)
        with self.engine.begin() as conn:
            conn.execute(delete(tables.locks).where(and_(
                tables.locks.c.resource == lease.resource, tables.locks.c.token == lease.token)))
            conn.execute(update(tables.action_log).where(
                tables.action_log.c.token == lease.token).values(released_at=at))

    def holder(self, resource: str, *, now: datetime | None = None) -> Lease | None:
        at = _now(now)
        with self.engine.connect() as conn:
            row = conn.execute(select(tables.locks).where(and_(
                tables.locks.c.resource == resource, tables.locks.c.expires_at > at))).first()
        if row is None:
            return None
        return Lease(row.resource, row.action, row.holder, row.token, row.acquired_at,
                     row.expires_at)

    def recent_actions(self, resource: str, *, now: datetime | None = None) -> int:
        with self.engine.connect() as conn:
            return self._count(conn, resource, _now(now))

    def _count(self, conn: Connection, resource: str, at: datetime) -> int:
        log = tables.action_log
        return int(conn.execute(select(func.count()).select_from(log).where(and_(
            log.c.resource == resource, log.c.started_at > at - self.limit.window,
            log.c.started_at <= at))).scalar_one())
