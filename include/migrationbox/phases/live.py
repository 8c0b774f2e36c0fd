"""Live migration of the servers the plan marks live (``ServerPlan.live``).

A live server is not stopped for its copy. In *replicate*, its disks get pre-copy
rounds while the source keeps running: the first round reads the whole source, later
rounds read only the blocks the source's changed-block-tracking log (``replication.
cbt``) says were written since the round before (with the one-round overlap
``replication.precopy`` explains). Their target is checked against the manifest the
rounds sealed, since a running source cannot be compared with.

In *cutover*, before the canary moves traffic, each live server's disks go through
``replication.precopy.precopy`` with ``cbt=True``: a few short live rounds catch up,
the source is frozen, the last changed blocks are copied and verified, and the target
takes over. The freeze is the source's process group stopped with ``SIGSTOP``
(``details.freeze_pgid`` of each of its disk endpoints: the lab's writer; a hypervisor
agent would pause the VM); the source stays frozen after a successful cutover (the
target is authoritative) and is thawed (``SIGCONT``) when the cutover rolls back.

Downtime is measured per server from the freeze to the moment the target serves: its
HTTP endpoints answer 2xx on the target (or, for a server without one, its data and
configuration are in place). It lands in the cutover's details (``live``), and so in
the store's phase runs (``store.repository.live_downtimes`` reads it back).

The pre-copy takes local folders: a live server's disk must have a ``file://``
source. An ``ssh://`` source is refused with the endpoint named (the SSH source tree
is not a path ``precopy`` can read).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from migrationbox.endpoints import Endpoint, by_server
from migrationbox.phases.context import PhaseContext, PhaseFailed
from migrationbox.planning.models import ServerPlan
from migrationbox.replication.cbt import DirtyLog, blocks_of, copy_dirty
from migrationbox.replication.disk import ConvergencePolicy, RoundStats, replicate_round, verify
from migrationbox.replication.manifest import CONFIGURED_NAME, META_DIR
from migrationbox.replication.precopy import precopy
from migrationbox.replication.progress import ProgressCallback

FREEZE_FIELD = "freeze_pgid"


def live_servers(servers: list[ServerPlan]) -> list[ServerPlan]:
    return [s for s in servers if s.live]


def local_source(ep: Endpoint, phase: str) -> Path:
    """The disk's source folder; live servers need a ``file://`` source (module docs)."""
    uri = ep.source_uri or ""
    if not uri.startswith("file://"):
        raise PhaseFailed(phase, f"{ep.label()}: source_uri: a live server's disk is copied "
                                 f"by the pre-copy, which reads a local folder (file://); "
                                 f"{uri or 'nothing'} is not one")
    return ep.source_path


@dataclass
class SourceFreeze:
    """The freeze of one live server's source: its process group stopped, then resumed."""

    label: str
    pgid: int
    phase: str
    frozen_at: float | None = None
    frozen_wall: str | None = None

    def _signal(self, sig: signal.Signals) -> None:
        try:
            os.killpg(self.pgid, sig)
        except ProcessLookupError as exc:
            raise PhaseFailed(self.phase, f"{self.label}: details.{FREEZE_FIELD}: no process "
                                          f"group {self.pgid} to {sig.name}") from exc

    def freeze(self) -> None:
        if self.frozen_at is None:
            self._signal(signal.SIGSTOP)
            self.frozen_at = time.monotonic()
            self.frozen_wall = datetime.now(UTC).isoformat()

    def thaw(self) -> None:
        if self.frozen_at is not None:
            self._signal(signal.SIGCONT)
            self.frozen_at = None


def source_freeze(ep: Endpoint, phase: str) -> SourceFreeze:
    raw = ep.details.get(FREEZE_FIELD)
    if isinstance(raw, bool) or not isinstance(raw, int) or raw <= 1:
        raise PhaseFailed(phase, f"{ep.label()}: details.{FREEZE_FIELD}: a live server's disk "
                                 "endpoint names the process group that freezes its source "
                                 f"(a positive integer), got {raw!r}")
    return SourceFreeze(ep.label(), raw, phase)


# -- replicate: pre-copy rounds while the source runs ----------------------------------


def live_rounds(src: Path, tgt: Path, block: int, policy: ConvergencePolicy,
                progress: ProgressCallback | None = None) -> dict[str, Any]:
    """Pre-copy rounds (scan first, then changed-block tracking) until the delta is under
    the policy's threshold, stops shrinking, or the rounds run out. Never pauses."""
    log = DirtyLog(src)
    starts: list[int] = []
    rounds: list[RoundStats] = []
    threshold = policy.delta_bytes
    stop = f"max_rounds {policy.max_rounds} reached"
    for n in range(1, policy.max_rounds + 1):
        starts.append(log.size())
        stats = None
        if len(starts) > 1:
            lo = starts[-3] if len(starts) > 2 else starts[-2]
            stats = copy_dirty(src, tgt, blocks_of(log.read(lo, starts[-1]), block), n, block)
        if stats is None:
            stats = replicate_round(src, tgt, n, block, progress)
        rounds.append(stats)
        threshold = policy.threshold(rounds[0].bytes_total)
        if stats.bytes_sent <= threshold:
            stop = f"delta {stats.bytes_sent} B <= threshold {threshold} B"
            break
        if len(rounds) > 1 and stats.bytes_sent >= rounds[-2].bytes_sent:
            stop = (f"not converging while live ({rounds[-2].bytes_sent} B then "
                    f"{stats.bytes_sent} B): the freeze at cutover copies the rest")
            break
    check = verify(None, tgt, block)  # target == the manifest the rounds sealed
    return {
        "live": True, "method": "precopy+cbt", "source": f"file://{src}",
        "rounds": len(rounds), "baselines": [r.baseline for r in rounds],
        "dirty_bytes_per_round": [r.bytes_sent for r in rounds],
        "bytes_total": rounds[0].bytes_total, "bytes_sent": sum(r.bytes_sent for r in rounds),
        "blocks_sent": sum(r.blocks_sent for r in rounds), "wire_bytes": 0,
        "threshold_bytes": threshold, "stop_reason": stop,
        "manifest_digest": rounds[-1].manifest_digest, "cbt_log_bytes": log.size(),
        "verify": check.summary(), "warnings": [w for r in rounds for w in r.warnings],
    }


# -- cutover: freeze, last changed blocks, switch; downtime per server ------------------


@dataclass
class LiveCutover:
    """What the live part of one cutover did; ``thaw_all`` undoes the freezes."""

    servers: dict[str, dict[str, Any]] = field(default_factory=dict)
    freezes: list[SourceFreeze] = field(default_factory=list)

    def thaw_all(self) -> None:
        for fr in self.freezes:
            fr.thaw()
        for info in self.servers.values():
            info["source_state"] = "running"


def _target_serving(ctx: PhaseContext, endpoints: list[Endpoint], sid: str) -> str:
    """Wait until every HTTP endpoint of ``sid`` answers 2xx on the target; say how the
    end of the downtime was judged."""
    http = [ep for ep in by_server(endpoints, sid, "http") if ep.target_uri]
    if not http:
        return "data and configuration in place (no HTTP endpoint)"
    timeout = ctx.options.health.timeout_seconds
    deadline = time.monotonic() + max(10.0, 5 * timeout)
    for ep in http:
        last = ""
        while True:
            try:
                status = httpx.get(ep.target_uri, timeout=timeout).status_code
                if 200 <= status < 300:
                    break
                last = f"HTTP {status}"
            except httpx.HTTPError as exc:
                last = f"{type(exc).__name__}: {exc}"
            if time.monotonic() > deadline:
                raise PhaseFailed("cutover", f"{ep.label()}: the target did not serve after "
                                             f"the live freeze ({last}) at {ep.target_uri}")
            time.sleep(0.05)
    return "HTTP 2xx from the target"


def live_cutover(ctx: PhaseContext, endpoints: list[Endpoint], phase: str,
                 reconfigure: Callable[[], Any],
                 say: Callable[[str, dict[str, Any]], None]) -> LiveCutover:
    """Freeze each live server, copy its last changed blocks, configure, and measure the
    downtime until its target serves. Thaws every source it froze if anything fails."""
    block = max(1, int(ctx.options.replicate.block_mib * 1024 * 1024))
    threshold = int(ctx.options.replicate.delta_mib * 1024 * 1024)
    out = LiveCutover()
    try:
        configured = False
        for server in live_servers(ctx.servers):
            sid = server.server_id
            disks = by_server(endpoints, sid, "disk")
            info: dict[str, Any] = {"disks": {}, "source_state": "frozen"}
            for ep in disks:
                src, tgt = local_source(ep, phase), ep.target_path
                fr = source_freeze(ep, phase)
                out.freezes.append(fr)
                configured |= (tgt / META_DIR / CONFIGURED_NAME).exists()
                result = precopy(src, tgt, pause=fr.freeze, resume=lambda: None,
                                 block_size=block, threshold_bytes=threshold,
                                 max_rounds=ctx.options.replicate.max_rounds, cbt=True)
                summary = result.summary()
                info["disks"][ep.name] = summary
                if not result.verified:
                    raise PhaseFailed(phase, f"{ep.label()}: the target differs from the "
                                             f"frozen source after the final delta: "
                                             f"{result.problems[:3]}; no traffic was moved")
            info["frozen_at"] = min((f.frozen_wall for f in out.freezes
                                     if f.label.startswith(f"{sid}/") and f.frozen_wall),
                                    default=None)
            out.servers[sid] = info
        if configured:
            reconfigure()  # the live rounds put the source's config files back
        for sid, info in out.servers.items():
            started = min((f.frozen_at for f in out.freezes
                           if f.label.startswith(f"{sid}/") and f.frozen_at is not None),
                          default=None)
            info["serving_check"] = _target_serving(ctx, endpoints, sid)
            info["serving_at"] = datetime.now(UTC).isoformat()
            info["downtime_s"] = (round(time.monotonic() - started, 3)
                                  if started is not None else None)
            final = [d["final_bytes"] or 0 for d in info["disks"].values()]
            info["final_delta_bytes"] = sum(final)
            say(f"cutover: live server {sid} frozen {info['downtime_s']}s until its target "
                f"served ({info['final_delta_bytes']} bytes in the final delta)",
                {"server_id": sid, "downtime_s": info["downtime_s"]})
    except BaseException:
        out.thaw_all()
        raise
    return out
