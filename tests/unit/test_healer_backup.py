"""Backups of a migrated database, the integrity check against them and the row restore
(:mod:`migrationbox.healer.backup`), on a real SQLite database seeded like the lab's."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from sqlalchemy import create_engine, text

from migrationbox.healer import backup
from migrationbox.lab.databases import seed_source
from migrationbox.lab.servers import LabServer


@pytest.fixture()
def db(tmp_path, monkeypatch):
    monkeypatch.setenv("MIGRATIONBOX_HOME", str(tmp_path / "home"))
    url = f"sqlite:///{tmp_path / 'target.db'}"
    seed_source(url, "e1", LabServer(server_id="db-01", hostname="db-01.corp.local",
                                     role="postgresql-primary", data_size_gb=1))
    return url


def _amounts(url: str) -> dict[int, Decimal]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return {int(i): Decimal(str(a)).quantize(Decimal("0.01")) for i, a in
                    conn.execute(text("SELECT id, amount FROM orders"))}
    finally:
        engine.dispose()


def _run(url: str, sql: str, **params) -> None:
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(text(sql), params)
    finally:
        engine.dispose()


def test_backup_has_a_manifest_and_verifies(db):
    taken = backup.take_backup(db, "e1", "db-01")
    assert taken.path.exists() and not list(taken.path.parent.glob("*.partial"))
    assert taken.manifest["orders"]["rows"] == 404 and taken.manifest["orders"]["pk"] == ["id"]
    assert backup.latest_backup("e1", "db-01").path == taken.path
    assert backup.verify_backup(taken) is None
    assert backup.corrupted_rows(db, taken) == {}
    meta = json.loads(taken.path.with_suffix(".json").read_text())
    assert meta["database"].startswith("sqlite:///")


def test_silent_changes_are_corruption_watermarked_writes_and_new_rows_are_not(db):
    taken = backup.take_backup(db, "e1", "db-01")
    _run(db, "UPDATE orders SET amount = amount + 1000 WHERE id IN (3, 4)")
    _run(db, "UPDATE orders SET amount = 1, updated_at = '2099-01-01 00:00:00' WHERE id = 5")
    _run(db, "UPDATE audit_log SET event = 'tampered' WHERE id = 9")
    _run(db, "INSERT INTO audit_log (id, event) VALUES (100000, 'a new row')")
    _run(db, "DELETE FROM audit_log WHERE id = 10")
    found = backup.corrupted_rows(db, taken)
    assert found == {"orders": ["[3]", "[4]"], "audit_log": ["[9]"]}
    assert backup.count(found) == 3
    assert "orders: 2 row(s) ([3], [4])" in backup.describe(found)


def test_restore_puts_back_only_the_corrupt_rows_and_its_undo_is_exact(db):
    original = _amounts(db)
    taken = backup.take_backup(db, "e1", "db-01")
    _run(db, "UPDATE orders SET amount = amount + 1000 WHERE id IN (3, 4)")
    _run(db, "UPDATE orders SET amount = 1, updated_at = '2099-01-01 00:00:00' WHERE id = 5")
    damaged = _amounts(db)
    undo = backup.restore_rows(db, taken, backup.corrupted_rows(db, taken))
    restored = _amounts(db)
    assert restored[3] == original[3] and restored[4] == original[4]
    assert restored[5] == Decimal("1")  # the legitimate write stays
    assert backup.corrupted_rows(db, taken) == {}
    json.dumps(undo)  # the undo travels in the remediation record
    backup.put_rows(db, undo)
    assert _amounts(db) == damaged


def test_a_tampered_backup_fails_its_check_and_a_missing_row_is_named(db):
    import sqlite3

    taken = backup.take_backup(db, "e1", "db-01")
    with sqlite3.connect(taken.path) as conn:
        conn.execute("DELETE FROM orders WHERE id = 7")
    assert "orders" in (backup.verify_backup(taken) or "")
    with pytest.raises(LookupError, match=r"orders: row\(s\) \[7\]"):
        backup.restore_rows(db, taken, {"orders": ["[7]"]})


def test_no_backup_means_no_integrity_fact(db):
    assert backup.latest_backup("e1", "db-01") is None
