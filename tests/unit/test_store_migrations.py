"""Alembic migrations of the store: they run from anywhere, match the ORM, and guard
against foreign revisions."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Column, Integer, MetaData, String, inspect, text

from migrationbox.store import db
from migrationbox.store.models import Base
from migrationbox.store.testing import store_url

STORE_TABLES = {
    "estates", "servers", "plans", "waves", "move_groups", "phase_runs", "approvals",
    "server_endpoints", "cloud_resources", "migration_events", "wave_state",
}


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path) -> Iterator[str]:
    try:
        with store_url(request.param, tmp_path) as value:
            yield value
    except LookupError as exc:
        pytest.skip(f"PostgreSQL tests skipped: {exc}")


def _diff(url: str, metadata=Base.metadata) -> list:
    with db.engine(url, migrate=False).connect() as conn:
        ctx = MigrationContext.configure(
            conn, opts={"compare_type": True, "version_table": db.VERSION_TABLE}
        )
        return compare_metadata(ctx, metadata)


def _copy_of_models() -> MetaData:
    copy = MetaData(naming_convention=Base.metadata.naming_convention)
    for table in Base.metadata.sorted_tables:
        table.to_metadata(copy)
    return copy


def test_upgrade_from_any_directory_creates_the_model_schema(url, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # programmatic config: no alembic.ini in the cwd needed
    assert db.current_revision(url) is None
    assert db.upgrade(url) == db.head_revision() == "0003"
    tables = set(inspect(db.engine(url, migrate=False)).get_table_names())
    assert tables >= STORE_TABLES
    assert db.VERSION_TABLE in tables and "alembic_version" not in tables
    assert _diff(url) == []


def test_schema_comparison_detects_drift(url):
    """Guards the test above: the comparison really sees a column or type difference."""
    db.upgrade(url)
    drifted = _copy_of_models()
    drifted.tables["waves"].append_column(Column("colour", String(10)))
    assert any(d[0] == "add_column" for d in _diff(url, drifted))
    changed = _copy_of_models()
    changed.tables["estates"].c.name.type = Integer()
    assert any(d[0][0] == "modify_type" for d in _diff(url, changed) if isinstance(d, list))


def test_downgrade_to_base_and_upgrade_again(url):
    db.upgrade(url)
    with db.engine(url, migrate=False).begin() as conn:
        command.downgrade(db.alembic_config(url, connection=conn), "base")
    assert not STORE_TABLES & set(inspect(db.engine(url, migrate=False)).get_table_names())
    assert db.current_revision(url) is None
    db.upgrade(url)
    assert _diff(url) == []


def test_first_use_upgrades_automatically(url):
    with db.session_scope(url) as session:
        assert session.execute(text("SELECT count(*) FROM estates")).scalar() == 0
    assert db.current_revision(url) == db.head_revision()


def test_store_from_a_newer_migrationbox_is_refused(url):
    db.upgrade(url)
    with db.engine(url, migrate=False).begin() as conn:
        conn.execute(text(f"UPDATE {db.VERSION_TABLE} SET version_num = 'f00dbeef'"))
    db.dispose(url)
    with pytest.raises(db.StoreSchemaError, match=r"f00dbeef.*newer version"):
        db.engine(url)


def test_sqlite_connections_use_wal_busy_timeout_and_foreign_keys(tmp_path):
    url = f"sqlite:///{tmp_path}/nested/dir/store.db"  # parent folders are created
    try:
        with db.engine(url).connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    finally:
        db.dispose(url)


def test_in_memory_sqlite_store_keeps_its_schema_across_sessions():
    url = "sqlite://"
    try:
        with db.session_scope(url) as session:
            session.execute(text("INSERT INTO estates (name, created_at, updated_at) "
                                 "VALUES ('m', '2025-01-01', '2025-01-01')"))
        with db.session_scope(url) as session:
            assert session.execute(text("SELECT name FROM estates")).scalar() == "m"
    finally:
        db.dispose(url)


def test_alembic_command_line_config_sees_no_drift(tmp_path):
    """The alembic.ini shipped for developers works and `alembic check` finds no drift."""
    ini = Path(db.__file__).with_name("alembic.ini")
    env = {**os.environ, "MIGRATIONBOX_STORE_URL": f"sqlite:///{tmp_path}/cli.db"}
    alembic = [sys.executable, "-m", "alembic", "-c", str(ini)]
    for args in (["upgrade", "head"], ["check"]):
        done = subprocess.run([*alembic, *args], env=env, cwd=tmp_path, capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0, done.stderr
    assert "No new upgrade operations detected" in done.stdout + done.stderr
