"""Throwaway store databases for tests (SQLite always; PostgreSQL when one is reachable).

Lives in the package, not in a conftest, so that any test suite (unit, integration, the
demo's own checks) can ask for a real PostgreSQL store the same way and skip with the
same clear reason on machines without one.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from migrationbox.inventory.models import Estate, ServerRecord
from migrationbox.planning.models import MoveGroup, PlanDocument, PlanSettings, ServerPlan, Wave

#: Admin URL used to create and drop throwaway databases. Override on machines where
#: PostgreSQL lives elsewhere or needs a password.
DEFAULT_ADMIN_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"


def postgres_admin_url() -> str:
    from migrationbox import settings

    return settings.get("test_pg_admin_url") or DEFAULT_ADMIN_URL


def postgres_unavailable_reason(admin_url: str | None = None) -> str | None:
    """None when PostgreSQL accepts connections at the admin URL, else why not."""
    url = make_url(admin_url or postgres_admin_url())
    host, port = url.host or "127.0.0.1", url.port or 5432
    try:
        with socket.create_connection((host, port), timeout=1.0):
            pass
    except OSError as exc:
        return f"PostgreSQL not reachable at {host}:{port} ({exc.strerror or exc})"
    try:
        eng = create_engine(url, connect_args={"connect_timeout": 3})
        with eng.connect() as conn:
            conn.execute(text("SELECT 1"))
        eng.dispose()
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return f"PostgreSQL at {host}:{port} refused the test login: {first}"
    return None


@contextmanager
def temporary_postgres_database(prefix: str = "mbx_test") -> Iterator[str]:
    """Create a uniquely named database, yield its URL, drop it (even after failures)."""
    admin = make_url(postgres_admin_url())
    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:10]}"
    eng = create_engine(admin, isolation_level="AUTOCOMMIT")
    try:
        with eng.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        url = admin.set(database=name).render_as_string(hide_password=False)
        try:
            yield url
        finally:
            from migrationbox.store import db

            db.dispose(url)
            with eng.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        eng.dispose()


@contextmanager
def store_url(kind: str, tmp_dir: os.PathLike[str] | str) -> Iterator[str]:
    """A fresh, empty store URL of ``kind`` ('sqlite' or 'postgresql').

    Raises ``LookupError`` with the reason when PostgreSQL is not available, so a
    pytest fixture can turn it into a skip.
    """
    if kind == "sqlite":
        url = f"sqlite:///{os.fspath(tmp_dir)}/store-{uuid.uuid4().hex[:8]}.db"
        try:
            yield url
        finally:
            from migrationbox.store import db

            db.dispose(url)
        return
    if kind != "postgresql":
        raise ValueError(f"kind must be 'sqlite' or 'postgresql', got {kind!r}")
    reason = postgres_unavailable_reason()
    if reason:
        raise LookupError(reason)
    with temporary_postgres_database() as url:
        yield url


def tiny_estate(name: str = "tiny", server_ids: tuple[str, ...] = ("web-01", "db-01", "dns-01")
                ) -> Estate:
    """A small valid estate: web-01 -> db-01, everything -> dns-01; db-01 is test, rest prod."""
    servers = []
    for index, sid in enumerate(server_ids):
        deps = []
        if sid.startswith("web") and "db-01" in server_ids:
            deps.append({"destination": "db-01:5432", "protocol": "tcp"})
        if not sid.startswith("dns") and "dns-01" in server_ids:
            deps.append({"destination": "dns-01:53", "protocol": "udp"})
        servers.append(ServerRecord.model_validate({
            "server_id": sid,
            "hostname": f"{sid}.corp.example",
            "ip_addresses": [f"10.0.0.{10 + index}"],
            "os": {"type": "Linux", "distribution": "Ubuntu", "version": "22.04"},
            "hardware": {"cpu_cores": 2 + index, "ram_gb": 4.0 * (index + 1),
                         "disk_total_gb": 100},
            "applications": [{"name": "app", "ports": [8080 + index], "data_size_gb": 1.5}],
            "network_dependencies": deps,
            "performance_baseline": {"cpu_avg_utilization_pct": 20 + index,
                                     "memory_avg_utilization_pct": 40},
            "environment": "test" if sid.startswith("db") else "production",
            "role": sid.split("-", 1)[0],
            "tags": {"owner": "team-a"},
            "discovered_at": "2025-01-02T03:04:05+00:00",
            "agent_extra_field": {"kept": True},
        }))
    return Estate(name=name, servers=servers)


def tiny_plan(estate: Estate, extra_server_ids: tuple[str, ...] = ()) -> PlanDocument:
    """A hand-built plan of ``estate``: one server per wave, in reverse estate order
    (so with :func:`tiny_estate` dependencies move first: dns, db, then web).

    ``extra_server_ids`` adds servers the estate does not have (to test refusals).
    """
    ids = [s.server_id for s in estate.servers] + list(extra_server_ids)
    by_id = estate.by_id()
    servers = [
        ServerPlan(
            server_id=sid,
            hostname=by_id[sid].hostname if sid in by_id else f"{sid}.unknown",
            environment=by_id[sid].environment.value if sid in by_id else "production",
            role=by_id[sid].role if sid in by_id else None,
            criticality=round(1 / len(ids), 4),
            move_group=f"mg-{sid}",
            ports=[8080],
            data_size_gb=1.5,
        )
        for sid in ids
    ]
    return PlanDocument(
        estate=estate.name,
        created_at=datetime(2025, 1, 3, 12, 0, tzinfo=UTC),
        settings=PlanSettings(max_servers_per_wave=1),
        servers=servers,
        move_groups=[MoveGroup(group_id=f"mg-{sid}", server_ids=[sid]) for sid in ids],
        waves=[
            Wave(
                number=n, name=f"Wave {n}", server_ids=[sid], move_groups=[f"mg-{sid}"],
                depends_on_waves=[n - 1] if n > 1 else [], environment="production",
                criticality=0.3, estimated_hours=1.25 * n, needs_approval=n > 1,
                approval_reasons=["production"] if n > 1 else [],
                predicted_monthly_usd=10.0 * n,
            )
            for n, sid in enumerate(reversed(ids), start=1)
        ],
    )
