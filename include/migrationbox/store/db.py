"""Engines, sessions and schema migrations of the MigrationBox store.

Airflow task processes, the CLI and the demo all write to the same store at the same
time, and in the embedded default that store is one SQLite file. So every SQLite
connection runs in WAL mode with a busy timeout, and write transactions start with
``BEGIN IMMEDIATE`` (taking the write lock up front, where the busy timeout applies,
instead of failing with "database is locked" when a read turns into a write). Savepoints
work because the driver's own implicit transaction handling is switched off.

The schema is brought to the newest Alembic revision the first time a process uses a URL;
the upgrade itself runs inside a transaction that serialises concurrent upgraders (the
SQLite write lock, or a PostgreSQL advisory lock), so two processes starting at once do
not both try to create the tables.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

from migrationbox.errors import MigrationBoxError

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
#: Not Alembic's default ``alembic_version``: in production the store may share a
#: PostgreSQL database with Airflow's metadata, which has its own ``alembic_version``.
VERSION_TABLE = "migrationbox_alembic_version"
SQLITE_BUSY_TIMEOUT_S = 30.0
_READ_ONLY = "migrationbox_read_only"
#: Arbitrary constant key of the PostgreSQL advisory lock that serialises upgrades.
_PG_MIGRATION_LOCK = 0x4D42_5354  # "MBST"

_lock = threading.RLock()
_engines: dict[str, Engine] = {}
_sessionmakers: dict[str, sessionmaker[Session]] = {}
_migrated: set[str] = set()


class StoreSchemaError(MigrationBoxError, RuntimeError):
    """The database's schema revision is one this version of MigrationBox does not know."""


def resolve_url(url: str | None = None) -> str:
    if url:
        return url
    from migrationbox.config import store_url

    return store_url()


def _is_sqlite_memory(url: str) -> bool:
    parsed = make_url(url)
    return parsed.get_backend_name() == "sqlite" and parsed.database in (None, "", ":memory:")


def _create_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True)
    kwargs: dict[str, Any] = {}
    memory = _is_sqlite_memory(url)
    if memory:
        # One shared connection, or every checkout would see its own empty database.
        kwargs.update(poolclass=StaticPool, connect_args={"check_same_thread": False})
    else:
        Path(parsed.database or "").expanduser().parent.mkdir(parents=True, exist_ok=True)
        kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_S}
    engine = create_engine(url, **kwargs)
    _configure_sqlite(engine, wal=not memory)
    return engine


def _ensure_wal(cursor: Any) -> None:
    """Switch a SQLite file to WAL once. The switch needs the file to itself, and SQLite
    answers "database is locked" at once (no busy wait) when another process is inside a
    transaction, e.g. the other writer that opened a fresh store at the same moment and is
    running its migrations: retried until the busy timeout, skipped when already WAL."""
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_S
    delay = 0.05
    while True:
        mode = cursor.execute("PRAGMA journal_mode").fetchone()
        if mode and str(mode[0]).lower() == "wal":
            return
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 1.0)


def _configure_sqlite(engine: Engine, *, wal: bool) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy emit BEGIN itself (pysqlite's implicit BEGIN breaks SAVEPOINT
        # and delays the write lock until after reads).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
            if wal:
                _ensure_wal(cursor)
                cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        read_only = conn.get_execution_options().get(_READ_ONLY, False)
        conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def alembic_config(url: str | None = None, connection: Connection | None = None) -> Config:
    """A programmatic Alembic config: works from any working directory, no ini file needed.

    The URL travels in ``attributes`` rather than the ini options, because ini values
    go through ``%`` interpolation and URLs may contain percent-encoded passwords.
    """
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("path_separator", "os")
    cfg.set_main_option("version_table", VERSION_TABLE)
    if url:
        cfg.attributes["url"] = url
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def _current_heads(connection: Connection) -> tuple[str, ...]:
    ctx = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
    return ctx.get_current_heads()


@contextmanager
def _reader(eng: Engine) -> Iterator[Connection]:
    """A connection for a read that must not queue behind writers (plain BEGIN on SQLite)."""
    with eng.connect() as conn:
        conn = conn.execution_options(**{_READ_ONLY: True})
        try:
            yield conn
        finally:
            conn.rollback()


def current_revision(url: str | None = None) -> str | None:
    """The revision the database is at (``None`` for an empty database). Never migrates."""
    with _reader(engine(url, migrate=False)) as conn:
        heads = _current_heads(conn)
    return heads[0] if heads else None


def _check_known(heads: tuple[str, ...], url: str) -> None:
    script = ScriptDirectory.from_config(alembic_config())
    known = {rev.revision for rev in script.walk_revisions()}
    unknown = [h for h in heads if h not in known]
    if unknown:
        raise StoreSchemaError(
            f"store {make_url(url).render_as_string(hide_password=True)} is at revision "
            f"{', '.join(unknown)}, which this MigrationBox does not know: it was migrated by "
            "a newer version; upgrade MigrationBox rather than using this store"
        )


def upgrade(url: str | None = None, revision: str = "head") -> str | None:
    """Run ``alembic upgrade <revision>`` on the store; safe to call from many processes.

    Returns the revision the store is at afterwards.
    """
    url = resolve_url(url)
    eng = engine(url, migrate=False)
    with eng.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_MIGRATION_LOCK})")
        heads = _current_heads(conn)
        _check_known(heads, url)
        command.upgrade(alembic_config(url, connection=conn), revision)
        after = _current_heads(conn)
    with _lock:
        _migrated.add(url)
    log.info("store %s at revision %s", make_url(url).render_as_string(True), after)
    return after[0] if after else None


def engine(url: str | None = None, *, migrate: bool = True) -> Engine:
    """The process-wide engine for ``url`` (default: ``config.store_url()``).

    With ``migrate`` (the default) the schema is upgraded to head the first time this
    process asks for the URL, so a fresh SQLite file is usable straight away.
    """
    url = resolve_url(url)
    with _lock:
        eng = _engines.get(url)
        if eng is None:
            eng = _engines[url] = _create_engine(url)
        if migrate and url not in _migrated:
            with _reader(eng) as conn:
                heads = _current_heads(conn)
            if heads and heads[0] == head_revision():
                _migrated.add(url)
            else:
                upgrade(url)
    return eng


def sessions(url: str | None = None) -> sessionmaker[Session]:
    url = resolve_url(url)
    eng = engine(url)
    with _lock:
        factory = _sessionmakers.get(url)
        if factory is None:
            # expire_on_commit=False: rows converted after commit must not reload.
            factory = _sessionmakers[url] = sessionmaker(bind=eng, expire_on_commit=False)
    return factory


@contextmanager
def session_scope(url: str | None = None, *, read_only: bool = False) -> Iterator[Session]:
    """A session that commits when the block ends and rolls back if it raises.

    ``read_only`` only changes locking on SQLite (a plain ``BEGIN`` instead of
    ``BEGIN IMMEDIATE``) so readers such as the progress display never queue behind a
    writer; do not write in such a session.
    """
    factory = sessions(url)
    if read_only:
        session = factory(bind=factory.kw["bind"].execution_options(**{_READ_ONLY: True}))
    else:
        session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def dispose(url: str | None = None) -> None:
    """Close pooled connections of one URL (or all) and forget it, e.g. before DROP DATABASE."""
    with _lock:
        urls = [resolve_url(url)] if url else list(_engines)
        for key in urls:
            eng = _engines.pop(key, None)
            _sessionmakers.pop(key, None)
            _migrated.discard(key)
            if eng is not None:
                eng.dispose()


def _after_fork_in_child() -> None:
    # Airflow's LocalExecutor forks: a child must not reuse its parent's sockets or
    # SQLite handles. dispose(close=False) drops them without closing the parent's.
    for eng in list(_engines.values()):
        eng.dispose(close=False)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
