"""Phase 3, replicate: copy each server's disks and databases to the target, verified.

For every server of the wave, every ``disk`` endpoint is synced block by block
(``replication.disk``) in rounds until a round's delta falls below the threshold, then
the target is re-hashed and compared with the source and its manifest; every
``database`` endpoint is copied and kept in sync by watermark rounds
(``replication.database``) and compared by row counts and checksums. Re-running is
cheap: unchanged blocks and rows are not sent again.

Options (``ctx.options``): ``replication_block_mib`` (4), ``replication_delta_pct`` (1.0),
``replication_delta_mib`` (1), ``replication_max_rounds`` (10), ``replication_workers`` (2).
"""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from migrationbox.lab.endpoints import Endpoint, EndpointsUnavailable, by_server, load_endpoints
from migrationbox.phases._cloud import progress, write_json
from migrationbox.phases.context import PhaseContext, PhaseFailed, PhaseResult
from migrationbox.planning.models import ServerPlan
from migrationbox.replication.database import replicate_database
from migrationbox.replication.disk import (
    ConvergencePolicy,
    replicate_round,
    replicate_tree,
    verify,
)
from migrationbox.replication.manifest import (
    CONFIGURED_NAME,
    META_DIR,
    MIB,
    ManifestError,
    journal_path,
    load_manifest,
)
from migrationbox.replication.progress import Progress

PHASE = "replicate"
STATE_FILE = "replicate.json"
_SAY = threading.Lock()  # servers replicate in threads; progress callbacks need not be


def _say(ctx: PhaseContext, message: str, data: dict[str, Any] | None = None) -> None:
    with _SAY:
        progress(ctx, message, data)


def endpoints_or_fail(ctx: PhaseContext, phase: str) -> list[Endpoint]:
    """The estate's endpoints, or a ``PhaseFailed`` that says how to provide them."""
    try:
        return load_endpoints(ctx)
    except (EndpointsUnavailable, ValueError) as exc:
        raise PhaseFailed(phase, str(exc)) from exc


def _policy(ctx: PhaseContext) -> tuple[int, ConvergencePolicy]:
    opts = ctx.options
    block = int(float(opts.get("replication_block_mib", 4)) * MIB)
    if block <= 0:
        raise PhaseFailed(PHASE, f"options.replication_block_mib must be > 0, got {block}")
    return block, ConvergencePolicy(
        delta_pct=float(opts.get("replication_delta_pct", 1.0)),
        delta_bytes=int(float(opts.get("replication_delta_mib", 1)) * MIB),
        max_rounds=int(opts.get("replication_max_rounds", 10)),
    )


def _tree_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def _replicate_server(ctx: PhaseContext, server: ServerPlan, endpoints: list[Endpoint],
                      block: int, policy: ConvergencePolicy) -> tuple[dict[str, Any], list[str]]:
    sid = server.server_id
    disks = by_server(endpoints, sid, "disk")
    dbs = by_server(endpoints, sid, "database")
    out: dict[str, Any] = {"bytes": 0, "bytes_sent": 0, "rounds": 0, "blocks_sent": 0,
                           "checksum_match": True, "disks": {}, "databases": {}}
    failures: list[str] = []
    if not disks and not dbs:
        return {"skipped": "no disk or database endpoints for this server"}, []
    for ep in disks:
        src, tgt = ep.source_path, ep.target_path
        if ctx.dry_run:
            out["disks"][ep.name] = {"dry_run": True, "bytes": _tree_bytes(src)}
            continue
        seen = {"round": 0, "bucket": -1}

        def tick(p: Progress, ep: Endpoint = ep, seen: dict[str, int] = seen) -> None:
            bucket = int(p.percent // 25)
            if p.round != seen["round"]:
                seen.update(round=p.round, bucket=-1)
            if bucket > seen["bucket"]:
                seen["bucket"] = bucket
                _say(ctx, f"{ep.label()}: round {p.round} {p.percent:.0f}%",
                         {"server_id": sid, "round": p.round, "bytes": p.done,
                          "percent": round(p.percent, 1)})

        result = replicate_tree(src, tgt, block, policy, tick)
        # the rounds put the source's config files back: configure must run again
        (tgt / META_DIR / CONFIGURED_NAME).unlink(missing_ok=True)
        check = verify(src, tgt, block)
        repaired = False
        if not check.ok and not journal_path(tgt).exists():
            # the target was altered behind its manifest: one round that re-hashes it
            result.rounds.append(replicate_round(src, tgt, len(result.rounds) + 1, block,
                                                 tick, rescan=True))
            check = verify(src, tgt, block)
            repaired = True
        info = {**result.summary(), "verify": check.summary(), "repaired": repaired}
        out["disks"][ep.name] = info
        out["bytes"] += result.bytes_total
        out["bytes_sent"] += result.bytes_sent
        out["blocks_sent"] += result.blocks_sent
        out["rounds"] = max(out["rounds"], len(result.rounds))
        if not result.converged:
            failures.append(
                f"{ep.label()}: not converged after {len(result.rounds)} rounds "
                f"(last round sent {result.rounds[-1].bytes_sent} bytes, threshold "
                f"{result.threshold_bytes})"
            )
        if not check.ok:
            out["checksum_match"] = False
            failures.append(f"{ep.label()}: verification failed: {check.problems[:3]}")
    for ep in dbs:
        if ctx.dry_run:
            out["databases"][ep.name] = {"dry_run": True}
            continue
        if not ep.source_uri or not ep.target_uri:
            failures.append(f"{ep.label()}: source_uri and target_uri are both required")
            continue
        db = replicate_database(
            ep.source_uri, ep.target_uri,
            max_rounds=int(ctx.options.get("replication_max_rounds", 10)),
            threshold_rows=int(ctx.options.get("replication_delta_rows", 0)),
        )
        out["databases"][ep.name] = db.summary()
        out["rounds"] = max(out["rounds"], len(db.rounds))
        if not db.match:
            out["checksum_match"] = False
            bad = [t.table for t in db.tables if not t.match]
            failures.append(f"{ep.label()}: row counts/checksums differ for tables {bad}")
        if not db.converged:
            failures.append(f"{ep.label()}: not converged after {len(db.rounds)} rounds")
    return out, failures


def run(ctx: PhaseContext) -> PhaseResult:
    endpoints = endpoints_or_fail(ctx, PHASE)
    block, policy = _policy(ctx)
    servers = ctx.servers
    progress(ctx, f"replicating {len(servers)} servers (block {block // 1024} KiB, "
                  f"{policy.max_rounds} rounds max){' - dry run' if ctx.dry_run else ''}")
    workers = max(1, int(ctx.options.get("replication_workers", 2)))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        outcomes = list(pool.map(
            lambda s: _replicate_server(ctx, s, endpoints, block, policy), servers
        ))
    per_server = {s.server_id: o[0] for s, o in zip(servers, outcomes, strict=True)}
    failures = [f for _, fs in outcomes for f in fs]
    replicated = [sid for sid, d in per_server.items() if "skipped" not in d]
    details = {
        "servers": per_server,
        "block_size": block,
        "bytes_sent": sum(d.get("bytes_sent", 0) for d in per_server.values()),
        "dry_run": ctx.dry_run,
    }
    write_json(ctx.run_artifacts() / STATE_FILE, {"ok": not failures, **details,
                                                  "failures": failures})
    if failures:
        raise PhaseFailed(PHASE, "; ".join(failures), details)
    summary = (
        f"{len(replicated)} servers replicated and verified, "
        f"{details['bytes_sent'] / MIB:.1f} MiB sent"
        if not ctx.dry_run else f"dry run: {len(replicated)} servers would be replicated"
    )
    return PhaseResult(phase=PHASE, ok=True, summary=summary, details=details)


def converged(ctx: PhaseContext) -> tuple[bool, str]:
    """Sensor gate: the last replicate run of this DAG run passed, and no target has been
    touched since (every disk manifest is intact, unchanged and has no unfinished round)."""
    path = ctx.run_artifacts() / STATE_FILE
    try:
        state = json.loads(path.read_text())
    except FileNotFoundError:
        return False, "replicate has not run in this DAG run yet"
    if not state.get("ok"):
        return False, f"last replicate run failed: {state.get('failures', [])[:3]}"
    if state.get("dry_run"):
        return True, "dry run: nothing was replicated"
    try:
        endpoints = load_endpoints(ctx)
    except (EndpointsUnavailable, ValueError) as exc:
        return False, str(exc)
    for server in ctx.servers:
        recorded = state["servers"].get(server.server_id, {}).get("disks", {})
        for ep in by_server(endpoints, server.server_id, "disk"):
            target = ep.target_path
            if journal_path(target).exists():
                return False, f"{ep.label()}: a replication round is in progress"
            try:
                manifest = load_manifest(target)
            except ManifestError as exc:
                return False, f"{ep.label()}: {exc}"
            if manifest is None:
                return False, f"{ep.label()}: no manifest on the target"
            want = recorded.get(ep.name, {}).get("manifest_digest")
            if want and manifest.digest != want:
                return False, f"{ep.label()}: target changed since replication (manifest digest)"
    return True, "all disks converged and verified; databases match"
