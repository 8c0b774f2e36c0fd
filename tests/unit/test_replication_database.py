"""Database replication: initial copy, watermark rounds, deletes, checksums, dialects."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, text

from migrationbox.lab import databases as labdb
from migrationbox.lab.servers import LabServer
from migrationbox.replication.database import (
    STATE_TABLE,
    compare_databases,
    replicate_database,
)

SERVER = LabServer("db-01", "db-prod-01.company.local", "postgresql", data_size_gb=20)


@pytest.fixture
def sqlite_pair(tmp_path: Path) -> tuple[str, str]:
    dbs = labdb.provision("unit", SERVER, "sqlite", tmp_path)
    return dbs.source_url, dbs.target_url


def _exec(url: str, *statements: str) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        for sql in statements:
            conn.execute(text(sql))
    engine.dispose()


def _scalar(url: str, sql: str):
    engine = create_engine(url)
    with engine.connect() as conn:
        value = conn.execute(text(sql)).scalar()
    engine.dispose()
    return value


def test_initial_copy_then_nothing_to_do(sqlite_pair):
    src, tgt = sqlite_pair
    first = replicate_database(src, tgt)
    assert first.converged and first.match
    assert [r.rows_copied for r in first.rounds] == [120 + 480 + 120 + 2, 0]
    methods = {t.table: t.method for t in first.tables}
    assert methods == {
        "customers": "watermark:updated_at", "orders": "watermark:updated_at",
        "audit_log": "keyed-diff", "app_settings": "keyed-diff",
    }
    assert all(t.rows_source == t.rows_target for t in first.tables)
    # state lives beside the data on the target, not in the source
    assert STATE_TABLE in inspect(create_engine(tgt)).get_table_names()
    assert STATE_TABLE not in inspect(create_engine(src)).get_table_names()
    again = replicate_database(src, tgt)
    assert [r.rows_copied for r in again.rounds] == [0]
    assert again.match and not again.repaired


def test_incremental_round_copies_only_changed_rows(sqlite_pair):
    src, tgt = sqlite_pair
    replicate_database(src, tgt)
    _exec(src,
          "UPDATE customers SET name = 'Renamed', updated_at = '2027-01-01 00:00:00' WHERE id = 7",
          "INSERT INTO orders (id, customer_id, amount, status, updated_at) "
          "VALUES (100000, 7, 12.5, 'new', '2027-01-02 00:00:00')",
          "UPDATE app_settings SET value = '43' WHERE key = 'schema_version'")
    result = replicate_database(src, tgt)
    assert result.rounds[0].rows_copied == 3
    assert sorted(result.rounds[0].tables_changed) == ["app_settings", "customers", "orders"]
    assert result.match
    assert _scalar(tgt, "SELECT name FROM customers WHERE id = 7") == "Renamed"
    assert _scalar(tgt, "SELECT value FROM app_settings WHERE key = 'schema_version'") == "43"


def test_deletes_are_found_by_checksum_and_repaired(sqlite_pair):
    src, tgt = sqlite_pair
    replicate_database(src, tgt)
    _exec(src, "DELETE FROM orders WHERE id IN (3, 4)", "DELETE FROM audit_log WHERE id = 9")
    result = replicate_database(src, tgt)
    # the watermark cannot see a delete; the keyed diff of audit_log and the final
    # checksum repair of orders do
    assert result.repaired == ["orders"]
    assert result.rounds[0].rows_deleted == 1
    assert result.match
    assert _scalar(tgt, "SELECT count(*) FROM orders") == 478


def test_checksum_sees_a_changed_value_and_a_bad_row_count(sqlite_pair):
    src, tgt = sqlite_pair
    replicate_database(src, tgt)
    _exec(tgt, "UPDATE orders SET status = 'tampered' WHERE id = 10")
    checks = {t.table: t for t in compare_databases(src, tgt)}
    assert not checks["orders"].match
    assert checks["orders"].rows_source == checks["orders"].rows_target
    assert checks["customers"].match
    _exec(tgt, "DELETE FROM customers WHERE id = 1")
    checks = {t.table: t for t in compare_databases(src, tgt)}
    assert checks["customers"].rows_target == checks["customers"].rows_source - 1


def test_table_without_primary_key_is_copied_whole(tmp_path):
    src = f"sqlite:///{tmp_path / 'src.sqlite'}"
    tgt = f"sqlite:///{tmp_path / 'tgt.sqlite'}"
    _exec(src, "CREATE TABLE events (at TEXT, what TEXT)",
          "INSERT INTO events VALUES ('a', 'x'), ('b', 'y'), ('b', 'y')")
    first = replicate_database(src, tgt)
    assert first.tables[0].method == "full-copy" and first.match
    _exec(src, "INSERT INTO events VALUES ('c', 'z')")
    second = replicate_database(src, tgt)
    assert second.rounds[0].rows_copied == 4
    assert second.match and _scalar(tgt, "SELECT count(*) FROM events") == 4


def test_postgresql_source_to_sqlite_target_gives_equal_checksums(tmp_path):
    ok, why = labdb.postgres_available()
    if not ok:
        pytest.skip(f"PostgreSQL on 127.0.0.1:5432 not reachable: {why}")
    estate = f"unit{uuid.uuid4().hex[:8]}"
    dbs = labdb.provision(estate, SERVER, "postgresql", tmp_path)
    try:
        sqlite_target = f"sqlite:///{tmp_path / 'copy.sqlite'}"
        result = replicate_database(dbs.source_url, sqlite_target)
        assert result.match, [t.as_dict() for t in result.tables if not t.match]
        pg_copy = replicate_database(dbs.source_url, dbs.target_url)
        assert pg_copy.match
        # the same rows hash the same whatever the dialect returned them as
        by_dialect = {t.table: t.checksum_target for t in result.tables}
        assert by_dialect == {t.table: t.checksum_target for t in pg_copy.tables}
    finally:
        labdb.drop(dbs)


def test_lag_reports_pending_rows_and_how_far_behind(sqlite_pair):
    from migrationbox.replication.database import final_delta, replication_lag

    src, tgt = sqlite_pair
    before = replication_lag(src, tgt)
    assert set(before["never_replicated"]) == {"customers", "orders"}
    replicate_database(src, tgt)
    assert replication_lag(src, tgt)["rows_pending"] == 0
    newest = _scalar(src, "SELECT MAX(updated_at) FROM customers")
    _exec(src, "UPDATE customers SET name = 'Late', updated_at = datetime('"
               + str(newest)[:19] + "', '+90 seconds') WHERE id = 4")
    lag = replication_lag(src, tgt)
    assert lag["rows_pending"] == 1
    assert lag["tables"]["customers"]["lag_s"] == pytest.approx(90, abs=1)
    assert lag["tables"]["audit_log"]["rows_pending"] is None  # keyed-diff: no clock
    final = final_delta(src, tgt)
    assert final.rows_copied == 1 and final.match
    assert final.lag_before["rows_pending"] == 1
    assert replication_lag(src, tgt)["rows_pending"] == 0
