"""Lab databases: a real source database with rows, and an empty target, per database server.

PostgreSQL on 127.0.0.1:5432 is used when it accepts connections (databases named
``mb_lab_<estate>_<server>_src`` / ``_tgt``); otherwise each database is a SQLite file in
the lab folder. Both are reached through SQLAlchemy URLs, which is all phase code sees.
"""

from __future__ import annotations

import hashlib
import os
import random
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

from migrationbox.lab.servers import LabServer

PG_ADMIN_URL_ENV = "MIGRATIONBOX_LAB_PG_URL"
DEFAULT_PG_ADMIN_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
PG_NAME_MAX = 63


@dataclass(frozen=True)
class LabDatabases:
    backend: str  # "postgresql" or "sqlite"
    source_url: str
    target_url: str
    source_name: str
    target_name: str


def pg_admin_url() -> str:
    return os.environ.get(PG_ADMIN_URL_ENV, DEFAULT_PG_ADMIN_URL)


def postgres_available(admin_url: str | None = None, timeout: int = 2) -> tuple[bool, str]:
    """Whether the lab's PostgreSQL accepts connections, and why not when it does not."""
    from sqlalchemy import create_engine, text

    url = admin_url or pg_admin_url()
    try:
        engine = create_engine(url, connect_args={"connect_timeout": timeout})
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
        return True, "ok"
    except Exception as exc:  # any driver or network error means "use SQLite"
        return False, f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"


def database_name(estate: str, server_id: str, side: str) -> str:
    """``mb_lab_<estate>_<server>_<side>``, lower-case, safe, at most 63 characters."""
    raw = f"mb_lab_{estate}_{server_id}".lower()
    safe = re.sub(r"[^a-z0-9_]", "_", raw)
    suffix = f"_{side}"
    if len(safe) + len(suffix) > PG_NAME_MAX:
        digest = hashlib.sha256(raw.encode()).hexdigest()[:8]
        safe = safe[: PG_NAME_MAX - len(suffix) - 9] + "_" + digest
    return safe + suffix


def _with_database(admin_url: str, name: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)


def ensure_postgres_database(admin_url: str, name: str) -> bool:
    """Create the database if it does not exist; True if created."""
    from sqlalchemy import create_engine, text

    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            exists = conn.execute(
                text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}
            ).scalar()
            if exists:
                return False
            conn.execute(text(f'CREATE DATABASE "{name}"'))
            return True
    finally:
        engine.dispose()


def drop_postgres_database(admin_url: str, name: str) -> bool:
    from sqlalchemy import create_engine, text

    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            exists = conn.execute(
                text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}
            ).scalar()
            if not exists:
                return False
            conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
            return True
    finally:
        engine.dispose()


def provision(
    estate: str, server: LabServer, backend: str, sqlite_dir: Path, admin_url: str | None = None
) -> LabDatabases:
    """Create (if needed) the source and target databases of one server and seed the source."""
    src_name = database_name(estate, server.server_id, "src")
    tgt_name = database_name(estate, server.server_id, "tgt")
    if backend == "postgresql":
        admin = admin_url or pg_admin_url()
        ensure_postgres_database(admin, src_name)
        ensure_postgres_database(admin, tgt_name)
        src_url, tgt_url = _with_database(admin, src_name), _with_database(admin, tgt_name)
    elif backend == "sqlite":
        sqlite_dir.mkdir(parents=True, exist_ok=True)
        src_url = f"sqlite:///{(sqlite_dir / f'{src_name}.sqlite').resolve()}"
        tgt_url = f"sqlite:///{(sqlite_dir / f'{tgt_name}.sqlite').resolve()}"
    else:
        raise ValueError(f"lab database backend must be 'postgresql' or 'sqlite', not {backend!r}")
    seed_source(src_url, estate, server)
    _touch(tgt_url)
    return LabDatabases(backend, src_url, tgt_url, src_name, tgt_name)


def _touch(url: str) -> None:
    """Open a connection once so an SQLite target file exists (empty) from the start."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    finally:
        engine.dispose()


def drop(dbs: LabDatabases, admin_url: str | None = None) -> list[str]:
    """Drop both databases (PostgreSQL) or delete both files (SQLite); returns what went."""
    dropped: list[str] = []
    if dbs.backend == "postgresql":
        admin = admin_url or pg_admin_url()
        for name in (dbs.source_name, dbs.target_name):
            if drop_postgres_database(admin, name):
                dropped.append(name)
    else:
        for url in (dbs.source_url, dbs.target_url):
            path = Path(url.removeprefix("sqlite:///"))
            if path.exists():
                path.unlink()
                dropped.append(str(path))
    return dropped


def lab_schema():
    """The source application's tables: two with an ``updated_at`` watermark, two without."""
    from sqlalchemy import (
        Column,
        DateTime,
        ForeignKey,
        Integer,
        MetaData,
        Numeric,
        String,
        Table,
    )

    md = MetaData()
    Table(
        "customers", md,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("name", String(80), nullable=False),
        Column("email", String(120), nullable=False),
        Column("created_at", DateTime, nullable=False),
        Column("updated_at", DateTime, nullable=False, index=True),
    )
    Table(
        "orders", md,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("customer_id", Integer, ForeignKey("customers.id"), nullable=False),
        Column("amount", Numeric(12, 2), nullable=False),
        Column("status", String(16), nullable=False),
        Column("updated_at", DateTime, nullable=False, index=True),
    )
    Table(
        "audit_log", md,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("event", String(200), nullable=False),
    )
    Table(
        "app_settings", md,
        Column("key", String(64), primary_key=True),
        Column("value", String(255), nullable=False),
    )
    return md


def seed_source(url: str, estate: str, server: LabServer) -> bool:
    """Create the schema and deterministic rows unless the source already has them."""
    from sqlalchemy import create_engine, func, inspect, select

    md = lab_schema()
    engine = create_engine(url)
    try:
        if "customers" in inspect(engine).get_table_names():
            with engine.connect() as conn:
                if conn.execute(select(func.count()).select_from(md.tables["customers"])).scalar():
                    return False
        md.create_all(engine)
        digest = hashlib.sha256(f"{estate}:{server.server_id}:db".encode()).digest()
        seed = int.from_bytes(digest[:8])
        rng = random.Random(seed)
        n_customers = 100 + min(int(server.data_size_gb), 900)
        base = datetime(2026, 1, 1)
        customers = [
            {
                "id": i,
                "name": f"Customer {i:05d}",
                "email": f"customer{i}@example.com",
                "created_at": base + timedelta(minutes=i),
                "updated_at": base + timedelta(minutes=i, seconds=rng.randint(0, 59)),
            }
            for i in range(1, n_customers + 1)
        ]
        orders = [
            {
                "id": i,
                "customer_id": rng.randint(1, n_customers),
                "amount": Decimal(rng.randint(100, 500_000)) / 100,
                "status": rng.choice(("new", "paid", "shipped", "refunded")),
                "updated_at": base + timedelta(minutes=i, seconds=rng.randint(0, 59)),
            }
            for i in range(1, 4 * n_customers + 1)
        ]
        audit = [{"id": i, "event": f"login user={rng.randint(1, n_customers)}"}
                 for i in range(1, n_customers + 1)]
        settings = [
            {"key": "schema_version", "value": "42"},
            {"key": "primary_host", "value": server.hostname},
        ]
        with engine.begin() as conn:
            conn.execute(md.tables["customers"].insert(), customers)
            conn.execute(md.tables["orders"].insert(), orders)
            conn.execute(md.tables["audit_log"].insert(), audit)
            conn.execute(md.tables["app_settings"].insert(), settings)
        return True
    finally:
        engine.dispose()
