"""`migrationbox store upgrade|current|info`."""

from __future__ import annotations

import pytest

from migrationbox.cli import main
from migrationbox.store import db
from migrationbox.store import repository as repo
from migrationbox.store.testing import tiny_estate, tiny_plan


@pytest.fixture
def url(tmp_path):
    value = f"sqlite:///{tmp_path}/cli-store.db"
    yield value
    db.dispose(value)


def test_current_and_info_do_not_create_or_migrate(url, tmp_path, capsys):
    assert main(["store", "current", "--url", url]) == 0
    assert "no database file" in capsys.readouterr().out
    assert main(["store", "info", "--url", url]) == 1
    assert not (tmp_path / "cli-store.db").exists()


def test_upgrade_then_current_then_info(url, capsys):
    assert main(["store", "upgrade", "--url", url]) == 0
    assert "revision 0003 (upgraded from empty)" in capsys.readouterr().out
    assert main(["store", "upgrade", "--url", url]) == 0
    assert "already at head" in capsys.readouterr().out
    assert main(["store", "current", "--url", url]) == 0
    assert "revision 0003 (head)" in capsys.readouterr().out
    assert main(["store", "info", "--url", url]) == 0
    assert "no estates stored" in capsys.readouterr().out

    estate = tiny_estate()
    with db.session_scope(url) as s:
        repo.save_estate(s, estate)
        repo.save_plan(s, tiny_plan(estate))
        repo.save_plan(s, tiny_plan(estate))
    assert main(["store", "info", "--url", url]) == 0
    out = capsys.readouterr().out
    assert "estate tiny: 3 servers, 2 plan(s), latest plan v2" in out
    assert "v1   superseded" in out and "v2   planned" in out
    assert "3 waves, 3 servers" in out


def test_info_on_an_unmigrated_store_says_what_to_do(tmp_path, capsys):
    url = f"sqlite:///{tmp_path}/empty.db"
    (tmp_path / "empty.db").touch()
    try:
        assert main(["store", "info", "--url", url]) == 1
        captured = capsys.readouterr()
        assert "revision none" in captured.out
        assert "migrationbox store upgrade" in captured.err
        assert db.current_revision(url) is None  # info did not migrate it
    finally:
        db.dispose(url)


def test_unreachable_store_is_a_clear_error(capsys):
    url = "postgresql+psycopg2://postgres:secret@127.0.0.1:1/nope"
    assert main(["store", "current", "--url", url]) == 1
    err = capsys.readouterr().err
    assert "migrationbox store current" in err and "***" in err and "secret" not in err
