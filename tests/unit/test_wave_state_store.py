"""Wave state through the store (issue 12 item 2): what provision and the replication
rounds hand to later tasks lives in the store's ``wave_state`` table, which every worker
host reaches, on SQLite and on PostgreSQL; retries replace records, never double them.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import inspect

from migrationbox.lab.testing import tiny_plan
from migrationbox.orchestration import tasks
from migrationbox.orchestration.wave_state import StoreWaveState
from migrationbox.phases import handoff, provision, replicate
from migrationbox.phases.context import Collaborators, PhaseContext
from migrationbox.phases.handoff import HandoffMissing, StateKey
from migrationbox.store import db
from migrationbox.store import repository as repo
from migrationbox.store.testing import store_url, tiny_estate


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    try:
        with store_url(request.param, tmp_path) as value:
            with db.session_scope(value) as s:
                repo.save_estate(s, tiny_estate())
            yield value
    except LookupError as exc:
        pytest.skip(f"PostgreSQL tests skipped: {exc}")


def _ctx(url: str, tmp_path: Path, run_id: str = "manual__1") -> PhaseContext:
    plan = tiny_plan("tiny")
    return PhaseContext(plan=plan, wave_number=1, run_id=run_id,
                        artifacts_dir=tmp_path / f"artifacts-{run_id}",  # another "host"
                        collaborators=Collaborators(wave_state=StoreWaveState(url)))


def test_the_migration_creates_the_table_and_goes_back(url: str):
    assert db.current_revision(url) == db.head_revision() == "0003"
    assert "wave_state" in inspect(db.engine(url, migrate=False)).get_table_names()
    with db.engine(url, migrate=False).begin() as conn:
        command.downgrade(db.alembic_config(url, connection=conn), "0001")
    assert "wave_state" not in inspect(db.engine(url, migrate=False)).get_table_names()
    assert db.upgrade(url) == "0003"


def test_provision_state_reaches_a_task_with_another_local_folder(url: str, tmp_path: Path):
    """The consumer has a different artifacts folder (as on another host): it still
    gets what provision handed over, because the store is shared."""
    producer = _ctx(url, tmp_path, "run-a")
    state = {"subnets": {"mb-tiny-data-a": "subnet-1"},
             "security_groups": {"mb-tiny-db-01": "sg-1"}, "vpc_id": "vpc-1"}
    handed = handoff.put(producer, handoff.PROVISIONED, state, run_scoped=False)
    assert handed.written_by == socket.gethostname()
    assert not (producer.artifacts_dir / "tiny" / "wave_01" / "provisioned.json").exists()
    consumer = _ctx(url, tmp_path, "run-b")
    placement = replicate.service_placement(consumer, "db-01")
    assert placement.subnet_ids == ("subnet-1",) and placement.security_group_ids == ("sg-1",)
    assert provision.read_state(consumer)["vpc_id"] == "vpc-1"


def test_a_retried_write_replaces_the_record(url: str, tmp_path: Path):
    ctx = _ctx(url, tmp_path)
    for seq, sent in ((1, 100), (2, 7), (2, 5)):  # round 2 retried
        handoff.put(ctx, handoff.REPLICATION_ROUND, {"bytes_sent": sent, "disks": {}},
                    run_scoped=True, seq=seq)
    handoff.put(ctx, handoff.PROVISIONED, {"vpc_id": "vpc-1"}, run_scoped=False)
    handoff.put(ctx, handoff.PROVISIONED, {"vpc_id": "vpc-1", "zone_id": "Z1"},
                run_scoped=False)
    rounds = handoff.items(ctx, handoff.REPLICATION_ROUND, run_scoped=True)
    assert [(r.seq, r.payload["bytes_sent"]) for r in rounds] == [(1, 100), (2, 5)]
    assert handoff.get(ctx, handoff.PROVISIONED, run_scoped=False).payload == {
        "vpc_id": "vpc-1", "zone_id": "Z1"}
    # run scope: another run of the wave has its own rounds
    assert handoff.items(_ctx(url, tmp_path, "run-2"), handoff.REPLICATION_ROUND,
                         run_scoped=True) == []


def test_concurrent_writers_of_one_key_leave_one_record(url: str, tmp_path: Path):
    """Two tries of one task racing (a worker presumed dead that was not)."""
    store = StoreWaveState(url)
    key = StateKey("tiny", 1, handoff.REPLICATION_ROUND, "manual__1")
    errors: list[BaseException] = []

    def write(n: int) -> None:
        try:
            for i in range(5):
                store.put(key, {"writer": n, "i": i}, seq=1)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(store.items(key)) == 1 and store.items(key)[0].payload["i"] == 4


def test_missing_state_in_the_store_is_an_error_naming_the_record(url: str, tmp_path: Path):
    ctx = _ctx(url, tmp_path)
    with pytest.raises(HandoffMissing) as err:
        replicate.service_placement(ctx, "db-01")
    message = str(err.value)
    assert "record 'provisioned' (estate tiny, wave 1)" in message
    assert "wave_state table" in message and "'provisioned' of tiny/wave-01" in message
    with pytest.raises(HandoffMissing, match=r"record 'replication' .*run manual__1"):
        replicate.converged(ctx)


def test_teardown_removes_the_wave_state(url: str, tmp_path: Path):
    ctx = _ctx(url, tmp_path)
    handoff.put(ctx, handoff.PROVISIONED, {"vpc_id": "vpc-1"}, run_scoped=False)
    assert handoff.delete(ctx, handoff.PROVISIONED, run_scoped=False) == 1
    assert provision.read_state(ctx) is None
    assert handoff.delete(ctx, handoff.PROVISIONED, run_scoped=False) == 0


def test_deleting_the_estate_deletes_its_wave_state(url: str, tmp_path: Path):
    from sqlalchemy import delete, func, select

    from migrationbox.store.models import EstateRow, WaveStateRow

    handoff.put(_ctx(url, tmp_path), handoff.PROVISIONED, {"a": 1}, run_scoped=False)
    with db.session_scope(url) as s:
        s.execute(delete(EstateRow).where(EstateRow.name == "tiny"))
    with db.session_scope(url) as s:
        assert s.scalar(select(func.count()).select_from(WaveStateRow)) == 0


def test_the_wave_dag_hands_state_through_the_store(tmp_path: Path):
    lent = tasks.wave_state_backend(tmp_path)
    assert isinstance(lent, StoreWaveState) and lent.strict and lent.url is None
    assert lent.legacy is not None and lent.legacy.artifacts_dir == tmp_path


def test_state_an_older_version_left_on_disk_is_imported_once(url: str, tmp_path: Path):
    """A wave provisioned before the upgrade: its provisioned.json is on this host."""
    from migrationbox.phases.handoff import FileWaveState

    old = FileWaveState(tmp_path / "old-artifacts")
    key = StateKey("tiny", 1, handoff.PROVISIONED)
    old.put(key, {"vpc_id": "vpc-old", "subnets": {}})
    rounds = StateKey("tiny", 1, handoff.REPLICATION_ROUND, "manual__1")
    old.put(rounds, {"bytes_sent": 3}, seq=1)
    store = StoreWaveState(url, legacy=old)
    assert store.get(key).payload["vpc_id"] == "vpc-old"
    assert [h.seq for h in store.items(rounds)] == [1]
    # now in the store: found there even without the file
    assert StoreWaveState(url).get(key).payload["vpc_id"] == "vpc-old"
    # teardown removes both, so the old file is not imported again
    assert store.delete(key) == 2
    assert store.get(key) is None and not old.path(key).exists()
