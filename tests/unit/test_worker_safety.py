"""Tasks that are safe on any worker: state one task hands to a later one is never read
as empty when it is missing (issue 12 item 2, the guards).

A wave DAG lends a *strict* backend (``phases.handoff``): provision always ran before
replication, the rounds before the sensor, so missing state there means it was written
where this task cannot see it (another worker host's local disk). These tests take the
local-file backend, make the state missing, and check the error names the record or
file, the wave, and the host; and that a phase called on its own still gets its stated
default.
"""

from __future__ import annotations

import logging
import socket
from pathlib import Path
from types import SimpleNamespace

import pytest

from migrationbox.lab.testing import tiny_plan
from migrationbox.phases import handoff, provision, replicate
from migrationbox.phases.context import Collaborators, PhaseContext, PhaseFailed
from migrationbox.phases.handoff import FileWaveState, HandoffMissing, StateKey


def _ctx(tmp_path: Path, *, strict: bool, producer: str | None = None,
         run_id: str = "manual__1") -> PhaseContext:
    lent = FileWaveState(tmp_path / "artifacts", strict=strict,
                         producer_host=(lambda key: producer) if producer else None)
    return PhaseContext(plan=tiny_plan("safe"), wave_number=1, run_id=run_id,
                        artifacts_dir=tmp_path / "artifacts",
                        collaborators=Collaborators(wave_state=lent))


def test_the_database_runner_is_not_placed_by_an_empty_provision_state(tmp_path: Path):
    ctx = _ctx(tmp_path, strict=True, producer="worker-b")
    with pytest.raises(HandoffMissing) as err:
        replicate.service_placement(ctx, "db-01")
    message = str(err.value)
    path = tmp_path / "artifacts" / "safe" / "wave_01" / "provisioned.json"
    assert str(path) in message  # the file it looked for
    assert "'provisioned' of safe/wave-01" in message  # the record and the wave
    assert "ran on host worker-b, not on this one" in message  # where it was written
    assert socket.gethostname() in message and "the provision phase" in message
    assert err.value.details["written_on"] == "worker-b"
    assert isinstance(err.value, PhaseFailed)  # the wave task fails, without retries


def test_without_a_producer_host_the_message_still_says_it_may_be_another_host(
        tmp_path: Path):
    with pytest.raises(HandoffMissing, match="possibly on another host"):
        replicate.service_placement(_ctx(tmp_path, strict=True), "db-01")


def test_with_the_state_present_the_runner_goes_into_the_waves_data_subnets(tmp_path: Path):
    ctx = _ctx(tmp_path, strict=True)
    handoff.put(ctx, handoff.PROVISIONED, {
        "subnets": {"mb-safe-data-a": "subnet-1", "mb-safe-data-b": "subnet-2",
                    "mb-safe-public-a": "subnet-9"},
        "security_groups": {"mb-safe-db-01": "sg-7"}}, run_scoped=False)
    placement = replicate.service_placement(ctx, "db-01")
    assert placement.subnet_ids == ("subnet-1", "subnet-2")
    assert placement.security_group_ids == ("sg-7",)


def test_a_phase_called_on_its_own_gets_the_stated_default(tmp_path: Path,
                                                           caplog: pytest.LogCaptureFixture):
    ctx = _ctx(tmp_path, strict=False)
    with caplog.at_level(logging.WARNING, logger="migrationbox.phase"):
        placement = replicate.service_placement(ctx, "db-01")
    assert placement.subnet_ids == () and placement.security_group_ids == ()
    assert "no provisioned state for safe/wave-01" in caplog.text
    assert provision.read_state(ctx) is None  # None, never {}


def test_the_sensor_fails_instead_of_waiting_for_a_verdict_on_another_host(tmp_path: Path):
    ctx = _ctx(tmp_path, strict=True, producer="worker-c")
    with pytest.raises(HandoffMissing) as err:
        replicate.converged(ctx)
    assert "'replication' of run manual__1 of safe/wave-01" in str(err.value)
    assert "replicate.json" in str(err.value) and "worker-c" in str(err.value)
    # a phase called on its own: "not yet", as before
    assert replicate.converged(_ctx(tmp_path, strict=False)) == (
        False, "replicate has not run in this DAG run yet")


def test_a_resumed_round_refuses_to_run_without_the_rounds_before_it(tmp_path: Path):
    ctx = _ctx(tmp_path, strict=True, producer="worker-a")
    handoff.put(ctx, handoff.REPLICATION_ROUND, {"bytes_sent": 5}, run_scoped=True, seq=1)
    with pytest.raises(HandoffMissing) as err:
        replicate.sync_round(ctx, 3)  # round 2 was written where this host cannot see
    assert "rounds [2] of this run, before round 3" in str(err.value)
    assert "replicate-rounds.json" in str(err.value)


def test_round_records_are_replaced_on_retry_and_stamped_with_the_host(tmp_path: Path):
    ctx = _ctx(tmp_path, strict=True)
    for seq, sent in ((1, 10), (2, 4), (2, 3)):  # round 2 retried
        handoff.put(ctx, handoff.REPLICATION_ROUND, {"bytes_sent": sent}, run_scoped=True,
                    seq=seq)
    rounds = handoff.items(ctx, handoff.REPLICATION_ROUND, run_scoped=True)
    assert [(h.seq, h.payload["bytes_sent"]) for h in rounds] == [(1, 10), (2, 3)]
    assert {h.written_by for h in rounds} == {socket.gethostname()}


def test_provision_state_is_wave_scoped_and_teardown_removes_it(tmp_path: Path):
    first = _ctx(tmp_path, strict=True, run_id="run-1")
    handoff.put(first, handoff.PROVISIONED, {"vpc_id": "vpc-1"}, run_scoped=False)
    later = _ctx(tmp_path, strict=True, run_id="run-2")  # a later run of the same wave
    assert provision.read_state(later)["vpc_id"] == "vpc-1"
    assert handoff.delete(later, handoff.PROVISIONED, run_scoped=False) == 1
    assert provision.read_state(later) is None


def test_a_corrupt_state_file_is_an_error_not_an_empty_state(tmp_path: Path):
    store = FileWaveState(tmp_path)
    key = StateKey("safe", 1, handoff.PROVISIONED)
    store.path(key).parent.mkdir(parents=True)
    store.path(key).write_text("{not json")
    with pytest.raises(PhaseFailed, match="not valid JSON"):
        store.get(key)


def test_the_sensor_task_fails_with_the_message(monkeypatch: pytest.MonkeyPatch,
                                                tmp_path: Path):
    """``tasks.gate`` turns the error into a failed task (no retry, no 6 h of pokes)."""
    from airflow.sdk.exceptions import AirflowFailException

    from migrationbox.orchestration import tasks

    ctx = _ctx(tmp_path, strict=True)
    refused: list[str] = []
    monkeypatch.setattr(tasks, "context_or_fail", lambda *a, **k: ctx)
    monkeypatch.setattr(tasks, "record_refusal",
                        lambda *args: refused.append(args[5]))
    context = {"dag_run": SimpleNamespace(run_id=ctx.run_id, conf={}),
               "ti": SimpleNamespace(task_id="replicate.replication_converged")}
    with pytest.raises(AirflowFailException, match="'replication' of run manual__1"):
        tasks.gate("replication_converged", "safe", 1, 1, **context)
    assert refused and "is missing" in refused[0]


def test_the_wave_dag_lends_a_strict_backend():
    from migrationbox.orchestration import tasks

    assert tasks.wave_state_backend().strict
