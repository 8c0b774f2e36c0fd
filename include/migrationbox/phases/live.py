"""Live migration of the servers the plan marks live (``ServerPlan.live``).

A live server is not stopped for its copy. In *replicate*, its disks get pre-copy
rounds while the source keeps running (``replication.precopy.PrecopyRounds``). How a
round finds the blocks that changed depends on the source:

* ``file://`` (a local folder): the first round reads the whole source, later rounds
  read only the blocks the source's changed-block-tracking log (``replication.cbt``)
  says were written since the round before (``precopy+cbt``);
* ``ssh://`` (a server reached over SSH): every round has the source hash its own blocks
  (``replication.remote_hash``) and reads over SFTP only the blocks whose hash differs
  from the target's manifest (``precopy+source-hash``); a round whose connection drops
  is run again and resumes from its journal.

Their target is checked against the manifest the rounds sealed, since a running source
cannot be compared with.

In *cutover*, before the canary moves traffic, each live server's disks go through
``replication.precopy.precopy``: a few short live rounds catch up, the source is frozen,
the last changed blocks are copied and verified, and the target takes over. The freeze
depends on the source as well:

* ``file://``: the source's process group is stopped with ``SIGSTOP``
  (``details.freeze_pgid`` of each of its disk endpoints: the lab's writer; a hypervisor
  agent would pause the VM) and resumed with ``SIGCONT``;
* ``ssh://``: ``details.freeze_command`` is run *on the source server* through the same
  SSH connection the copy uses (``fsfreeze -f /srv``, ``systemctl stop app``, ``kill -STOP
  -- -<pgid>``: whatever quiesces the writers of that folder), and ``details.thaw_command``
  undoes it. Both are required for a live SSH disk; a command that fails (non-zero exit,
  connection lost) fails the cutover with its output, before any traffic moves.

The source stays frozen after a successful cutover (the target is authoritative) and is
thawed when the cutover rolls back.

Downtime is measured per server from the freeze (the moment the freeze was *requested*:
over SSH that includes the command's round trip) to the moment the target serves: its
HTTP endpoints answer 2xx on the target (or, for a server without one, its data and
configuration are in place). It lands in the cutover's details (``live``), and so in
the store's phase runs (``store.repository.live_downtimes`` reads it back).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import httpx

from migrationbox.endpoints import Endpoint, by_server
from migrationbox.errors import MigrationBoxError
from migrationbox.phases.context import PhaseContext, PhaseFailed
from migrationbox.planning.models import ServerPlan
from migrationbox.replication.disk import ConvergencePolicy, RoundStats, Source, verify
from migrationbox.replication.manifest import CONFIGURED_NAME, META_DIR
from migrationbox.replication.precopy import PrecopyRounds, precopy
from migrationbox.replication.progress import ProgressCallback
from migrationbox.replication.source import SshTree, open_source

FREEZE_FIELD = "freeze_pgid"
FREEZE_COMMAND = "freeze_command"
THAW_COMMAND = "thaw_command"
#: how long a freeze or thaw command may run on the source (details.freeze_timeout_s)
FREEZE_TIMEOUT_S = 60.0


def live_servers(servers: list[ServerPlan]) -> list[ServerPlan]:
    return [s for s in servers if s.live]


def is_ssh(ep: Endpoint) -> bool:
    return (ep.source_uri or "").startswith("ssh://")


def local_source(ep: Endpoint, phase: str) -> Path:
    """The folder of a ``file://`` disk source (whose changed-block-tracking log is read
    here); an ``ssh://`` source goes through ``live_source`` instead."""
    uri = ep.source_uri or ""
    if not uri.startswith("file://"):
        raise PhaseFailed(phase, f"{ep.label()}: source_uri: a live server's disk is a local "
                                 f"folder (file://, read with its changed-block log) or a "
                                 f"folder reached over SSH (ssh://, through live_source); "
                                 f"{uri or 'nothing'} is not a local folder")
    return ep.source_path


def live_source(ep: Endpoint, phase: str) -> Source:
    """What the pre-copy reads: the local folder of a ``file://`` source, or the open
    ``SshTree`` of an ``ssh://`` one (close it when done; errors name the endpoint)."""
    if not is_ssh(ep):
        return local_source(ep, phase)
    try:
        return open_source(ep.source_uri or "", ep.details, ep.label())
    except MigrationBoxError as exc:
        raise PhaseFailed(phase, str(exc)) from exc


class Freeze(Protocol):
    """How one live server's source is frozen and thawed (``SourceFreeze`` for a local
    process group, ``CommandFreeze`` for a command run on an SSH source)."""

    label: str
    frozen_at: float | None
    frozen_wall: str | None

    def freeze(self) -> None: ...

    def thaw(self) -> None: ...


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


@dataclass
class CommandFreeze:
    """The freeze of a source reached over SSH: ``freeze_command`` run on the source
    server through ``tree``'s connection, ``thaw_command`` to undo it.

    The downtime starts when the freeze command is sent (what the source's users see
    begins then, not when its answer is back). A freeze command that fails may have
    frozen part of the source, so ``thaw`` still runs the thaw command after it."""

    label: str
    tree: SshTree
    freeze_command: str
    thaw_command: str
    phase: str
    timeout_s: float = FREEZE_TIMEOUT_S
    frozen_at: float | None = None
    frozen_wall: str | None = None
    #: the commands run, with their exit status (for the report)
    log: list[dict[str, Any]] = field(default_factory=list)

    def _run(self, which: str, command: str) -> None:
        t0 = time.monotonic()
        try:
            status, out, err = self.tree.run(command, self.timeout_s)
        except MigrationBoxError as exc:
            raise PhaseFailed(self.phase, f"{self.label}: details.{which}: {exc}") from exc
        self.log.append({"field": which, "exit": status,
                         "seconds": round(time.monotonic() - t0, 3)})
        if status != 0:
            text = (err.strip() or out.strip())[-300:]
            raise PhaseFailed(self.phase, f"{self.label}: details.{which} {command!r} exited "
                                          f"{status} on {self.tree.server}: {text}")

    def freeze(self) -> None:
        if self.frozen_at is None:
            t0, wall = time.monotonic(), datetime.now(UTC).isoformat()
            try:
                self._run(FREEZE_COMMAND, self.freeze_command)
            finally:
                self.frozen_at, self.frozen_wall = t0, wall  # thaw even after a failure

    def thaw(self) -> None:
        if self.frozen_at is not None:
            try:
                self._run(THAW_COMMAND, self.thaw_command)
                self.frozen_at = None  # a failed thaw stays frozen: it may be tried again
            finally:
                self.tree.close()


def source_freeze(ep: Endpoint, phase: str) -> SourceFreeze:
    raw = ep.details.get(FREEZE_FIELD)
    if isinstance(raw, bool) or not isinstance(raw, int) or raw <= 1:
        raise PhaseFailed(phase, f"{ep.label()}: details.{FREEZE_FIELD}: a live server's disk "
                                 "endpoint names the process group that freezes its source "
                                 f"(a positive integer), got {raw!r}")
    return SourceFreeze(ep.label(), raw, phase)


def command_freeze(ep: Endpoint, tree: SshTree, phase: str) -> CommandFreeze:
    """The freeze of a live ``ssh://`` disk from its endpoint's details (module docs)."""
    commands: dict[str, str] = {}
    for name in (FREEZE_COMMAND, THAW_COMMAND):
        raw = ep.details.get(name)
        if not isinstance(raw, str) or not raw.strip():
            raise PhaseFailed(phase, f"{ep.label()}: details.{name}: a live server's disk "
                                     "reached over SSH names the shell command, run on the "
                                     f"source server, that {name.split('_')[0]}s its writers "
                                     "(e.g. 'fsfreeze -f /srv' / 'fsfreeze -u /srv'); got "
                                     f"{raw!r}")
        commands[name] = raw
    timeout = ep.details.get("freeze_timeout_s", FREEZE_TIMEOUT_S)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
        raise PhaseFailed(phase, f"{ep.label()}: details.freeze_timeout_s: a positive number "
                                 f"of seconds, got {timeout!r}")
    return CommandFreeze(ep.label(), tree, commands[FREEZE_COMMAND], commands[THAW_COMMAND],
                         phase, float(timeout))


def endpoint_freeze(ep: Endpoint, source: Source, phase: str) -> Freeze:
    """The freeze of a live disk endpoint, checked before anything is frozen."""
    if isinstance(source, SshTree):
        return command_freeze(ep, source, phase)
    return source_freeze(ep, phase)


# -- replicate: pre-copy rounds while the source runs ----------------------------------


def live_rounds(src: Source, tgt: Path, block: int, policy: ConvergencePolicy,
                progress: ProgressCallback | None = None) -> dict[str, Any]:
    """Pre-copy rounds (module docstring: how each source finds its changed blocks) until
    the delta is under the policy's threshold, stops shrinking, or the rounds run out.
    Never pauses."""
    runner = PrecopyRounds(src, tgt, block, cbt=True, progress=progress)
    rounds: list[RoundStats] = []
    threshold = policy.delta_bytes
    stop = f"max_rounds {policy.max_rounds} reached"
    for n in range(1, policy.max_rounds + 1):
        stats = runner.run(n)
        rounds.append(stats)
        threshold = policy.threshold(rounds[0].bytes_total)
        if stats.bytes_sent <= threshold:  # unstable files: the freeze copies the rest
            stop = f"delta {stats.bytes_sent} B <= threshold {threshold} B"
            break
        if len(rounds) > 1 and stats.bytes_sent >= rounds[-2].bytes_sent:
            stop = (f"not converging while live ({rounds[-2].bytes_sent} B then "
                    f"{stats.bytes_sent} B): the freeze at cutover copies the rest")
            break
    check = verify(None, tgt, block)  # target == the manifest the rounds sealed
    return {
        "live": True, "method": runner.method,
        "source": f"file://{src}" if isinstance(src, Path) else getattr(src, "label", ""),
        "rounds": len(rounds), "baselines": [r.baseline for r in rounds],
        "dirty_bytes_per_round": [r.bytes_sent for r in rounds],
        "unstable_files_per_round": [len(r.files_unstable) for r in rounds],
        "bytes_total": rounds[0].bytes_total, "bytes_sent": sum(r.bytes_sent for r in rounds),
        "blocks_sent": sum(r.blocks_sent for r in rounds),
        "wire_bytes": sum(r.wire_bytes for r in rounds),
        "threshold_bytes": threshold, "stop_reason": stop,
        "manifest_digest": rounds[-1].manifest_digest, "cbt_log_bytes": runner.log_bytes,
        "resumed": runner.resumed[:10],
        "verify": check.summary(), "warnings": [w for r in rounds for w in r.warnings],
    }


# -- cutover: freeze, last changed blocks, switch; downtime per server ------------------


@dataclass
class LiveCutover:
    """What the live part of one cutover did; ``thaw_all`` undoes the freezes."""

    servers: dict[str, dict[str, Any]] = field(default_factory=dict)
    freezes: list[Freeze] = field(default_factory=list)

    def thaw_all(self) -> list[str]:
        """Thaw every frozen source; a thaw that fails does not stop the others. Returns
        the failures (also in each server's ``thaw_errors``: that source is still frozen)."""
        errors: list[str] = []
        for fr in self.freezes:
            try:
                fr.thaw()
            except MigrationBoxError as exc:
                errors.append(str(exc))
                sid = fr.label.split("/", 1)[0]
                self.servers.setdefault(sid, {}).setdefault("thaw_errors", []).append(str(exc))
        for info in self.servers.values():
            info["source_state"] = "running" if not info.get("thaw_errors") else \
                "frozen: the thaw failed"
        return errors


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
            out.servers[sid] = info
            for ep in disks:
                tgt = ep.target_path
                src = live_source(ep, phase)
                try:
                    fr = endpoint_freeze(ep, src, phase)
                    out.freezes.append(fr)
                    configured |= (tgt / META_DIR / CONFIGURED_NAME).exists()
                    try:
                        result = precopy(src, tgt, pause=fr.freeze, resume=lambda: None,
                                         block_size=block, threshold_bytes=threshold,
                                         max_rounds=ctx.options.replicate.max_rounds,
                                         cbt=True)
                    except MigrationBoxError as exc:  # lost for good, refused, vanished
                        if isinstance(exc, PhaseFailed):
                            raise
                        raise PhaseFailed(phase, f"{ep.label()}: the pre-copy failed: {exc}; "
                                                 "no traffic was moved") from exc
                finally:
                    if isinstance(src, SshTree):
                        src.close()  # a thaw reconnects when it needs to
                summary = result.summary()
                if isinstance(fr, CommandFreeze):
                    summary["freeze"] = list(fr.log)
                info["disks"][ep.name] = summary
                if not result.verified:
                    raise PhaseFailed(phase, f"{ep.label()}: the target differs from the "
                                             f"frozen source after the final delta: "
                                             f"{result.problems[:3]}; no traffic was moved")
            info["frozen_at"] = min((f.frozen_wall for f in out.freezes
                                     if f.label.startswith(f"{sid}/") and f.frozen_wall),
                                    default=None)
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
    except BaseException as exc:
        errors = out.thaw_all()
        if errors and isinstance(exc, PhaseFailed):
            raise PhaseFailed(phase, f"{str(exc).removeprefix(f'{phase}: ')}; and thawing "
                                     f"failed, so these sources are still frozen: "
                                     f"{errors[:3]}") from exc
        raise
    return out
