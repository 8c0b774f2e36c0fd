"""A server the plan marks live, through replicate, configure and cutover.

Its source keeps being written by a real writer process (with a changed-block-tracking
log) the whole time: replicate copies it in pre-copy rounds without stopping it,
cutover freezes the writer (SIGSTOP of its process group), copies the last changed
blocks, re-applies configure and measures the downtime until the target serves; the
downtime lands in the phase details and, recorded as the wave DAG records a phase, in
the store.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

# the data plane of the phase tests: a lab, the emulator, what provisioning leaves
from test_dataplane_phases import DataPlane, _provision_like

from migrationbox.inventory.models import Estate
from migrationbox.lab.endpoints import by_server
from migrationbox.lab.lab import Lab
from migrationbox.lab.testing import tiny_plan
from migrationbox.orchestration.demo import _print_summary
from migrationbox.orchestration.follow import RunOutcome
from migrationbox.orchestration.tasks import _finish
from migrationbox.phases import configure, cutover, replicate
from migrationbox.phases.context import PhaseFailed, PhaseResult
from migrationbox.replication.manifest import MIB, load_manifest, scan_tree
from migrationbox.replication.writeload import WriteLoad
from migrationbox.store import repository
from migrationbox.store.db import session_scope
from migrationbox.store.testing import store_url

pytestmark = pytest.mark.integration

BLOCK = 256 * 1024  # FAST's block_mib
LIVE = "web-01"


def _state(pid: int) -> str:
    """The process state letter from /proc (``T``: stopped)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


@contextmanager
def live_dataplane(tmp_path: Path, prefix: str = "lv") -> Iterator[DataPlane]:
    """The phase tests' data plane with ``LIVE`` marked live; everything it made (lab,
    provisioned resources in the shared emulator) is undone at the end, last to first."""
    estate = f"{prefix}{uuid.uuid4().hex[:8]}"
    base = tiny_plan(estate)
    plan = base.model_copy(update={"servers": [
        s.model_copy(update={"live": s.server_id == LIVE}) for s in base.servers]})
    lab = Lab(estate, plan, root=tmp_path / "lab", data_scale_mb=1.0)
    undo: list[Callable[[], object]] = []
    try:
        endpoints = lab.up()
        zone, instances = _provision_like(plan, True, undo)
        yield DataPlane(plan, lab, endpoints, zone, instances, tmp_path)
    finally:
        errors: list[Exception] = []
        for step in [lambda: lab.down(purge=True), *reversed(undo)]:
            try:
                step()
            except Exception as exc:  # undo the rest anyway (the emulator is shared)
                errors.append(exc)
        if errors:
            raise errors[0]


@contextmanager
def stored_downtimes(dp: DataPlane, shift: PhaseResult, tmp_path: Path,
                     monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, dict[str, Any]]]:
    """The cutover recorded the way the wave DAG records a phase, in a store made for
    the test, and the downtimes read back per server (the store stays set meanwhile)."""
    with store_url("sqlite", tmp_path) as url:
        monkeypatch.setenv("MIGRATIONBOX_STORE_URL", url)
        with session_scope(url) as session:
            repository.save_estate(session, Estate(name=dp.estate, servers=[]))
        _finish(dp.estate, dp.plan.version, 1, "run-1", "cutover", "success", shift.summary,
                shift.model_dump(mode="json"))
        with session_scope(url, read_only=True) as session:
            yield repository.live_downtimes(session, dp.estate, 1)


@pytest.fixture
def live_plane(aws_emulator, tmp_path: Path) -> Iterator[DataPlane]:
    with live_dataplane(tmp_path) as dp:
        yield dp


def test_live_server_is_precopied_frozen_briefly_and_its_downtime_stored(live_plane,
                                                                        tmp_path,
                                                                        monkeypatch):
    dp = live_plane
    disk_ep = by_server(dp.endpoints, LIVE, "disk")[0]
    src = disk_ep.source_path
    image = src / "var/lib/app/live.img"
    image.write_bytes(random.Random(5).randbytes(8 * MIB))
    options = {"cutover": {"latency_floor_ms": 2000}}

    # a live server without a way to freeze it is refused by name before traffic moves
    with WriteLoad(image, blocks_per_s=20, block_size=BLOCK, cbt_root=src) as load:
        deadline = time.monotonic() + 10
        while not (src / ".migrationbox/cbt.log").exists() and time.monotonic() < deadline:
            time.sleep(0.02)  # the writer runs before the first round
        assert load.proc is not None
        endpoints = [replace(ep, details={**ep.details, "freeze_pgid": load.proc.pid})
                     if ep is disk_ep else ep for ep in dp.endpoints]

        # -- replicate: pre-copy rounds while the writer keeps writing
        rep = replicate.run(dp.ctx(endpoints=endpoints))
        live_disk = rep.details["servers"][LIVE]["disks"]["root"]
        assert live_disk["live"] and live_disk["method"] == "precopy+cbt"
        assert live_disk["rounds"] >= 2
        assert live_disk["baselines"][0] == "empty"  # the first round reads everything
        assert "cbt" in live_disk["baselines"][1:]  # later ones read the logged blocks
        assert live_disk["dirty_bytes_per_round"][0] >= 8 * MIB
        assert live_disk["verify"]["ok"]
        assert _state(load.proc.pid) != "T"  # never stopped during replicate
        # the other servers took the ordinary path
        assert "live" not in rep.details["servers"]["api-01"]["disks"]["root"]

        conf = configure.run(dp.ctx(endpoints=endpoints))
        assert conf.ok
        configured = {rel: (disk_ep.target_path / rel).read_bytes()
                      for rel in conf.details["servers"][LIVE]["disks"]["root"]
                      ["configured_files"]}

        missing = [replace(ep, details={k: v for k, v in ep.details.items()
                                        if k != "freeze_pgid"}) for ep in endpoints]
        with pytest.raises(PhaseFailed, match=r"web-01/disk/root: details\.freeze_pgid"):
            cutover.run(dp.ctx(options=options, endpoints=missing))
        assert dp.weights(LIVE) != {"source": 0, "target": 100}

        # -- cutover: freeze, final CBT delta, configure again, target serving, canary
        shift = cutover.run(dp.ctx(options=options, endpoints=endpoints))
        assert _state(load.proc.pid) == "T"  # the source stays frozen: the target rules
        # the target equals the frozen source, block for block, apart from configure's
        # rewrites, which are back in place
        frozen = scan_tree(src, BLOCK).files
        target = load_manifest(disk_ep.target_path).files
        assert target["var/lib/app/live.img"] == frozen["var/lib/app/live.img"]
        assert image.read_bytes() == (disk_ep.target_path / "var/lib/app/live.img").read_bytes()
        for rel, data in configured.items():
            assert (disk_ep.target_path / rel).read_bytes() == data, rel
        assert dp.weights(LIVE) == {"source": 0, "target": 100}

    live = shift.details["live"]["servers"]
    assert set(live) == {LIVE}  # only the live server was frozen
    info = live[LIVE]
    root = info["disks"]["root"]
    assert root["final_baseline"] == "cbt" and root["verified"]
    assert root["final_bytes"] is not None and root["final_bytes"] < 8 * MIB
    assert info["serving_check"] == "HTTP 2xx from the target"
    assert info["downtime_s"] > 0 and info["frozen_at"] < info["serving_at"]
    assert info["downtime_s"] >= root["downtime_s"]  # the freeze covers the final copy
    assert "live downtime web-01" in shift.summary

    # -- the store: recorded the way the wave DAG records a phase, read back per server
    with stored_downtimes(dp, shift, tmp_path, monkeypatch) as stored:
        lines: list[str] = []  # and the demo's summary of the run shows it
        _print_summary(dp.plan, dp.plan.waves[0], "run-1",
                       RunOutcome("d", "run-1", "success", {}, [], 1.0), lines.append)
    assert set(stored) == {LIVE}
    assert stored[LIVE]["downtime_s"] == info["downtime_s"]
    assert stored[LIVE]["frozen_at"] == info["frozen_at"]
    assert stored[LIVE]["dag_run_id"] == "run-1"
    assert any(LIVE in line and f"downtime {info['downtime_s']}s" in line for line in lines)
