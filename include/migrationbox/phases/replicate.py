"""Phase 3, replicate: copy each server's disks and databases to the target, verified.

For every server of the wave, every ``disk`` endpoint is synced block by block
(``replication.disk``) in rounds until a round's delta falls below the threshold, then
the target is re-hashed and compared with the source and its manifest. The source is
whatever the endpoint's ``source_uri`` names (``replication.source.open_source``): a
folder on this machine (``file://``) or a folder on the source server read agentlessly
over SSH (``ssh://``, the key in the Airflow SSH connection of ``details.ssh_conn_id``,
block hashes computed on the source so unchanged blocks never cross the network).

Every ``database`` endpoint goes through the cloud's own migration service where the
cloud has one and the engine fits (AWS DMS), with the row-checksum copy as the fallback
and the row counts and checksums as the judge either way (``replication.dms``). Its
URLs come from the Airflow connections the endpoint names (``endpoints.connections``),
never from the store. The per-database details say ``method`` (``dms`` or ``copy``),
``dms_task_arn`` and ``fallback_reason``. Re-running is cheap: unchanged blocks and rows
are not sent again, and the service's resources are found, not made again.

Options (``ctx.options.replicate``, see ``phases.options.ReplicateOptions``):
``block_mib`` (4), ``delta_pct`` (1.0), ``delta_mib`` (1), ``max_rounds`` (10),
``workers`` (2), ``bandwidth_mib_s`` (none: no limit), ``cadence_seconds`` (unset: 0
here, rounds back to back inside the task; the deferrable ``ReplicationRoundsOperator``
of ``orchestration.triggers`` waits its cadence, the ``replication_cadence_seconds``
setting by default, in the triggerer instead), ``allow_empty_source`` (false).

The estate's endpoints come from ``ctx.endpoints`` (the wave DAG loads them from the
store), else from the lab's endpoints file of the estate.

Progress (bytes, %, rate, ETA, lag) goes to the ``on_progress`` collaborator (the store's
events) every 25 % of a round, and the per-round figures land in the result's details.
A source that vanished, an unreadable manifest or journal, an interrupted round that was
resumed: each is named in the disk's ``warnings`` (and a vanished source fails the phase
with what to do; nothing on the target is deleted).
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from migrationbox.endpoints import (
    Endpoint,
    EndpointsUnavailable,
    by_server,
    read_endpoints_file,
)
from migrationbox.errors import MigrationBoxError
from migrationbox.lab.endpoints import endpoints_file
from migrationbox.phases import handoff
from migrationbox.phases._cloud import progress
from migrationbox.phases.context import PhaseContext, PhaseFailed, PhaseResult
from migrationbox.phases.live import live_rounds, live_source
from migrationbox.planning.models import ServerPlan
from migrationbox.replication.database import replication_lag
from migrationbox.replication.disk import (
    ConvergencePolicy,
    replicate_round,
    replicate_tree,
    verify,
)
from migrationbox.replication.dms import (
    DatabaseMigrationResult,
    ServicePlacement,
    replicate_database_via_service,
    resolve_database_url,
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
from migrationbox.replication.source import SourceTree, open_source

if TYPE_CHECKING:
    from migrationbox.cloud.database_service import DatabaseMigrationService

PHASE = "replicate"
STATE_FILE = handoff.FILE_NAMES[handoff.REPLICATION]  # local backend
_SAY = threading.Lock()  # servers replicate in threads; progress callbacks need not be


def _say(ctx: PhaseContext, message: str, data: dict[str, Any] | None = None) -> None:
    with _SAY:
        progress(ctx, message, data)


def phase_endpoints(ctx: PhaseContext) -> list[Endpoint]:
    """The estate's endpoints: those handed over in ``ctx.endpoints``, else the lab's file.

    Raises ``EndpointsUnavailable`` (or ``ValueError`` for a malformed file).
    """
    if ctx.endpoints:
        return list(ctx.endpoints)
    return read_endpoints_file(endpoints_file(ctx.estate))


def endpoints_or_fail(ctx: PhaseContext, phase: str) -> list[Endpoint]:
    """The estate's endpoints, or a ``PhaseFailed`` that says how to provide them."""
    try:
        return phase_endpoints(ctx)
    except (EndpointsUnavailable, ValueError) as exc:
        raise PhaseFailed(phase, str(exc)) from exc


def _policy(ctx: PhaseContext) -> tuple[int, ConvergencePolicy]:
    opts = ctx.options.replicate
    block = max(1, int(opts.block_mib * MIB))
    return block, ConvergencePolicy(
        delta_pct=opts.delta_pct,
        delta_bytes=int(opts.delta_mib * MIB),
        max_rounds=opts.max_rounds,
    )


def _bandwidth(ctx: PhaseContext) -> float | None:
    value = ctx.options.replicate.bandwidth_mib_s
    return None if value is None else value * MIB


def open_disk_source(ep: Endpoint) -> SourceTree:
    """The disk endpoint's source tree (``file://`` or ``ssh://``); use it as a context
    manager. Errors name the endpoint (and the SSH server) and derive from
    ``MigrationBoxError``."""
    return open_source(ep.source_uri or "", ep.details, ep.label())


#: emulator answers change at the next read: polling it at the service's real-cloud pace
#: (15 s) would only add waiting
EMULATOR_POLL_SECONDS = 0.5


@dataclass
class DatabaseService:
    """The cloud's database migration service for this run, or why there is none."""

    service: DatabaseMigrationService | None
    why_none: str | None = None
    poll_seconds: float | None = None


def database_service(ctx: PhaseContext) -> DatabaseService:
    """The plan's cloud's migration service through the run's cloud connection.

    A cloud without one is not an error: its databases use the row-checksum copy, and
    the reason is recorded per database.
    """
    from migrationbox.cloud.database_service import NoDatabaseService, get_database_service

    settings = ctx.plan.settings
    try:
        service = get_database_service(settings.cloud, ctx.aws_conn_id, settings.region,
                                       **ctx.options.cloud.database_service_options())
    except NoDatabaseService as exc:
        return DatabaseService(None, str(exc))
    poll = ctx.options.cloud.poll_seconds
    if poll is None:
        try:
            poll = EMULATOR_POLL_SECONDS if service.emulated else None
        except Exception:  # a connection the hook cannot read: the service call says why
            poll = None
    return DatabaseService(service, None, poll)


def service_placement(ctx: PhaseContext, server_id: str) -> ServicePlacement:
    """Where the service's runner goes: the wave's data subnets and the server's security
    group, as provision handed them over (``phases.handoff``).

    In the wave DAG provision always ran first, so missing state is an error naming
    where it was looked for (``HandoffMissing``), never an empty placement that would
    put the runner in the account's default network. A phase called on its own without
    provision (the lab, tests) gets the service's default placement, said in the log.
    """
    found = handoff.require(ctx, PHASE, handoff.PROVISIONED, run_scoped=False)
    if found is None:
        ctx.log.warning("%s: no provisioned state for %s: the database migration service "
                        "places its runner by its own defaults", server_id, ctx.wave_tag)
        state: dict[str, Any] = {}
    else:
        state = dict(found.payload)
    subnets = tuple(sorted(sid for name, sid in (state.get("subnets") or {}).items()
                           if f"-{ctx.estate}-data-" in f"-{name}"))
    group = (state.get("security_groups") or {}).get(f"mb-{ctx.estate}-{server_id}")
    return ServicePlacement(estate=ctx.estate, wave=ctx.wave_number, subnet_ids=subnets,
                            security_group_ids=(group,) if group else ())


def _migrate_database(ctx: PhaseContext, ep: Endpoint, dbs: DatabaseService,
                      max_rounds: int, threshold_rows: int) -> DatabaseMigrationResult:
    result = replicate_database_via_service(
        ep, service_placement(ctx, ep.server_id), dbs.service,
        max_rounds=max_rounds, threshold_rows=threshold_rows,
        poll_seconds=dbs.poll_seconds)
    if dbs.service is None and dbs.why_none and result.fallback_reason:
        result.fallback_reason = dbs.why_none
    return result


def _replicate_disk(ctx: PhaseContext, sid: str, ep: Endpoint, src: SourceTree, tgt: Path,
                    block: int, policy: ConvergencePolicy) -> tuple[dict[str, Any], list[str]]:
    """Rounds until converged, then verification against hashes taken at the source."""
    if ctx.dry_run:
        scan = src.scan(block)  # the size comes first; closing stops the hashing
        try:
            if not scan.ok:
                return {"dry_run": True, "error": "source is not a folder"}, [
                    f"{ep.label()}: the source folder is missing ({src.label})"]
            return {"dry_run": True, "bytes": scan.total_bytes}, []
        finally:
            scan.close()
    seen = {"round": 0, "bucket": -1}

    def tick(p: Progress) -> None:
        bucket = int(p.percent // 25)
        if p.round != seen["round"]:
            seen.update(round=p.round, bucket=-1)
        if bucket > seen["bucket"]:
            seen["bucket"] = bucket
            eta = p.eta_s
            _say(ctx, f"{ep.label()}: round {p.round} {p.percent:.0f}% "
                      f"({p.done / MIB:.1f}/{p.total / MIB:.1f} MiB examined, "
                      f"{p.sent / MIB:.1f} MiB sent"
                      + (f", ETA {eta:.0f}s" if eta else "")
                      + (f", lag {p.lag_s:.0f}s" if p.lag_s is not None else "") + ")",
                 {"server_id": sid, "disk": ep.name, "bytes": p.done, **p.as_dict()})

    cadence = ctx.options.replicate.cadence_seconds or 0.0
    result = replicate_tree(
        src, tgt, block, policy, tick, bandwidth_bytes_per_s=_bandwidth(ctx),
        between_rounds=(lambda _n, c=cadence: time.sleep(c)) if cadence > 0 else None,
        allow_empty_source=ctx.options.replicate.allow_empty_source,
    )
    for warning in [w for r in result.rounds for w in r.warnings]:
        _say(ctx, f"{ep.label()}: {warning}", {"server_id": sid, "disk": ep.name,
                                                "warning": warning})
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
    info = {**result.summary(), "source": src.label, "verify": check.summary(),
            "repaired": repaired}
    problems: list[str] = []
    if not result.converged:
        problems.append(
            f"{ep.label()}: not converged after {len(result.rounds)} rounds "
            f"(last round sent {result.rounds[-1].bytes_sent} bytes, threshold "
            f"{result.threshold_bytes})")
    if not check.ok:
        problems.append(f"{ep.label()}: verification failed: {check.problems[:3]}")
    return info, problems


def _replicate_live_disk(ctx: PhaseContext, sid: str, ep: Endpoint, tgt: Path, block: int,
                         policy: ConvergencePolicy) -> tuple[dict[str, Any], list[str]]:
    """A live server's disk: pre-copy rounds while the source runs (changed-block tracking
    for a local folder, hashes computed on the source over SSH: ``phases.live``); the
    freeze and the last blocks come at cutover."""
    src = live_source(ep, PHASE)
    try:
        info = live_rounds(src, tgt, block, policy)
    finally:
        if isinstance(src, SourceTree):
            src.close()
    (tgt / META_DIR / CONFIGURED_NAME).unlink(missing_ok=True)  # configure runs again
    _say(ctx, f"{ep.label()}: live pre-copy, {info['rounds']} rounds "
              f"{info['baselines']} ({info['stop_reason']})",
         {"server_id": sid, "disk": ep.name, "live": True, "rounds": info["rounds"]})
    problems = ([] if info["verify"]["ok"] else
                [f"{ep.label()}: verification failed: {info['verify']}"])
    return info, problems


def _replicate_server(ctx: PhaseContext, server: ServerPlan, endpoints: list[Endpoint],
                      block: int, policy: ConvergencePolicy) -> tuple[dict[str, Any], list[str]]:
    sid = server.server_id
    disks = by_server(endpoints, sid, "disk")
    dbs = by_server(endpoints, sid, "database")
    out: dict[str, Any] = {"bytes": 0, "bytes_sent": 0, "wire_bytes": 0, "rounds": 0,
                           "blocks_sent": 0,
                           "checksum_match": True, "disks": {}, "databases": {}}
    failures: list[str] = []
    if not disks and not dbs:
        return {"skipped": "no disk or database endpoints for this server"}, []
    for ep in disks:
        try:
            tgt = ep.target_path
            if server.live and not ctx.dry_run:
                info, problems = _replicate_live_disk(ctx, sid, ep, tgt, block, policy)
            else:
                with open_disk_source(ep) as src:
                    info, problems = _replicate_disk(ctx, sid, ep, src, tgt, block, policy)
        except (MigrationBoxError, ValueError) as exc:  # unreachable, refused, lost, vanished
            out["checksum_match"] = False
            out["disks"][ep.name] = {"error": str(exc)}
            failures.append(f"{ep.label()}: {exc}" if ep.label() not in str(exc) else str(exc))
            continue
        out["disks"][ep.name] = info
        failures += problems
        if info.get("dry_run"):
            continue
        out["bytes"] += info["bytes_total"]
        out["bytes_sent"] += info["bytes_sent"]
        out["blocks_sent"] += info["blocks_sent"]
        out["wire_bytes"] += info["wire_bytes"]
        out["rounds"] = max(out["rounds"], info["rounds"])
        if not info["verify"]["ok"]:
            out["checksum_match"] = False
    service = database_service(ctx) if dbs and not ctx.dry_run else None
    for ep in dbs:
        if ctx.dry_run:
            out["databases"][ep.name] = {"dry_run": True}
            continue
        assert service is not None
        try:
            lag = replication_lag(resolve_database_url(ep, "source"),
                                  resolve_database_url(ep, "target"))
            _say(ctx, f"{ep.label()}: {lag['rows_pending']} rows pending on watermark "
                      f"tables, lag {lag['lag_s']:.0f}s",
                 {"server_id": sid, "database": ep.name, "rows_pending": lag["rows_pending"],
                  "lag_s": lag["lag_s"]})
            db = _migrate_database(ctx, ep, service, ctx.options.replicate.max_rounds,
                                   ctx.options.replicate.delta_rows)
        except (MigrationBoxError, ValueError) as exc:
            out["checksum_match"] = False
            out["databases"][ep.name] = {"error": str(exc)}
            failures.append(f"{ep.label()}: {exc}" if ep.label() not in str(exc) else str(exc))
            continue
        summary = db.summary()
        summary["lag_before"] = lag
        out["databases"][ep.name] = summary
        _say(ctx, f"{ep.label()}: {db.method}"
                  + (f" (task {db.dms_task_arn})" if db.dms_task_arn else "")
                  + (f"; fallback: {db.fallback_reason}" if db.fallback_reason else "")
                  + f"; {db.rows_copied} rows copied, checksums "
                  + ("match" if db.match else "differ"),
             {"server_id": sid, "database": ep.name, "method": db.method,
              "dms_task_arn": db.dms_task_arn, "fallback_reason": db.fallback_reason})
        out["rounds"] = max(out["rounds"], db.rounds)
        if not db.match:
            out["checksum_match"] = False
            bad = [t.table for t in db.tables if not t.match]
            failures.append(f"{ep.label()}: row counts/checksums differ for tables {bad}")
        if not db.converged:
            failures.append(f"{ep.label()}: not converged after {db.rounds} rounds")
    return out, failures


def run(ctx: PhaseContext) -> PhaseResult:
    endpoints = endpoints_or_fail(ctx, PHASE)
    block, policy = _policy(ctx)
    servers = ctx.servers
    progress(ctx, f"replicating {len(servers)} servers (block {block // 1024} KiB, "
                  f"{policy.max_rounds} rounds max){' - dry run' if ctx.dry_run else ''}")
    workers = ctx.options.replicate.workers
    with ThreadPoolExecutor(max_workers=workers) as pool:
        outcomes = list(pool.map(
            lambda s: _replicate_server(ctx, s, endpoints, block, policy), servers
        ))
    per_server = {s.server_id: o[0] for s, o in zip(servers, outcomes, strict=True)}
    failures = [f for _, fs in outcomes for f in fs]
    replicated = [sid for sid, d in per_server.items() if "skipped" not in d]
    earlier = _earlier_rounds(ctx)
    for sid, d in per_server.items():
        if "skipped" in d:
            continue
        before = earlier.get(sid, {"bytes_sent": 0, "rounds": 0})
        # what this run sent is the final delta; the deferred rounds before it count too
        d["final_delta_bytes"] = d.get("bytes_sent", 0)
        d["bytes_sent_total"] = before["bytes_sent"] + d.get("bytes_sent", 0)
        d["rounds_total"] = before["rounds"] + d.get("rounds", 0)
    details = {
        "servers": per_server,
        "block_size": block,
        "bytes_sent": sum(d.get("bytes_sent", 0) for d in per_server.values()),
        "bytes_sent_total": sum(d.get("bytes_sent_total", 0) for d in per_server.values()),
        "dry_run": ctx.dry_run,
    }
    handoff.put(ctx, handoff.REPLICATION, {"ok": not failures, **details,
                                           "failures": failures}, run_scoped=True)
    if failures:
        raise PhaseFailed(PHASE, "; ".join(failures), details)
    summary = (
        f"{len(replicated)} servers replicated and verified, "
        f"{details['bytes_sent_total'] / MIB:.1f} MiB sent over all rounds "
        f"({details['bytes_sent'] / MIB:.1f} MiB in the final delta)"
        if not ctx.dry_run else f"dry run: {len(replicated)} servers would be replicated"
    )
    return PhaseResult(phase=PHASE, ok=True, summary=summary, details=details)


def _earlier_rounds(ctx: PhaseContext) -> dict[str, dict[str, int]]:
    """Per server, the bytes and rounds of this DAG run's deferred rounds (``sync_round``),
    so that the phase reports everything sent, not only its own final delta."""
    history = [h.payload for h in handoff.items(ctx, handoff.REPLICATION_ROUND,
                                                run_scoped=True)]
    totals: dict[str, dict[str, int]] = {}
    for report in history:
        seen: set[str] = set()
        for label, disk in (report.get("disks") or {}).items():
            sid = str(label).split("/", 1)[0]
            entry = totals.setdefault(sid, {"bytes_sent": 0, "rounds": 0})
            entry["bytes_sent"] += int(disk.get("bytes_sent", 0))
            if sid not in seen:
                entry["rounds"] += 1
                seen.add(sid)
    return totals


def converged(ctx: PhaseContext) -> tuple[bool, str]:
    """Sensor gate: the last replicate run of this DAG run passed, and no target has been
    touched since (every disk manifest is intact, unchanged and has no unfinished round)."""
    found = handoff.get(ctx, handoff.REPLICATION, run_scoped=True)
    if found is None:
        if handoff.strict(ctx):  # the sensor runs after the rounds task succeeded
            raise handoff.missing(ctx, "replication_converged", handoff.REPLICATION,
                                  run_scoped=True)
        return False, "replicate has not run in this DAG run yet"
    state = found.payload
    if not state.get("ok"):
        return False, f"last replicate run failed: {state.get('failures', [])[:3]}"
    if state.get("dry_run"):
        return True, "dry run: nothing was replicated"
    try:
        endpoints = phase_endpoints(ctx)
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


ROUNDS_FILE = handoff.FILE_NAMES[handoff.REPLICATION_ROUND]  # local backend


def sync_round(ctx: PhaseContext, round_no: int) -> dict[str, Any]:
    """One replication round over every disk and database of the wave (no verification).

    The unit of work of the deferrable ``ReplicationRoundsOperator``: it runs one round
    in a worker, then waits the cadence in the triggerer (no worker slot held), and calls
    ``run`` for the final, verified rounds once a round's delta is under the threshold.
    Each round's figures are handed over as the run's ``replication_round`` state
    (``phases.handoff``: the store in the wave DAG, ``replicate-rounds.json`` in the
    run's artifacts otherwise); a retried round replaces its own record. A round after
    the first, resumed from the triggerer, may run on another worker host than the
    rounds before it: in the wave DAG their records must be there, or the round stops
    (``HandoffMissing``) rather than under-count what was sent.
    """
    if round_no > 1 and handoff.strict(ctx):
        seen = {h.seq for h in handoff.items(ctx, handoff.REPLICATION_ROUND, run_scoped=True)}
        lost = [n for n in range(1, round_no) if n not in seen]
        if lost:
            raise handoff.missing(ctx, PHASE, handoff.REPLICATION_ROUND, run_scoped=True,
                                  detail=f"rounds {lost} of this run, before round {round_no}")
    endpoints = endpoints_or_fail(ctx, PHASE)
    block, policy = _policy(ctx)
    rate = _bandwidth(ctx)
    report: dict[str, Any] = {"round": round_no, "disks": {}, "databases": {},
                              "bytes_sent": 0, "bytes_total": 0, "rows_changed": 0}
    problems: list[str] = []
    service = None
    for s in ctx.servers:
        for ep in by_server(endpoints, s.server_id, "disk"):
            if ctx.dry_run:
                continue
            try:
                with open_disk_source(ep) as src:
                    st = replicate_round(src, ep.target_path, round_no, block,
                                         bandwidth_bytes_per_s=rate)
            except (MigrationBoxError, ValueError) as exc:
                problems.append(str(exc) if ep.label() in str(exc) else f"{ep.label()}: {exc}")
                continue
            report["disks"][ep.label()] = {
                "bytes_sent": st.bytes_sent, "bytes_total": st.bytes_total,
                "wire_bytes": st.wire_bytes, "files_unstable": st.files_unstable,
                "blocks_recovered": st.blocks_recovered, "baseline": st.baseline,
                "seconds": st.seconds, "warnings": st.warnings}
            report["bytes_sent"] += st.bytes_sent
            report["bytes_total"] += st.bytes_total
            if st.files_unstable:
                report["files_unstable"] = True
        for ep in by_server(endpoints, s.server_id, "database"):
            if ctx.dry_run:
                continue
            service = service or database_service(ctx)
            try:
                db = _migrate_database(ctx, ep, service, 1, 10**12)
            except (MigrationBoxError, ValueError) as exc:
                problems.append(str(exc) if ep.label() in str(exc) else f"{ep.label()}: {exc}")
                continue
            rows = sum(r.rows_copied + r.rows_deleted for r in db.copy.rounds) \
                if db.copy is not None else 0
            report["databases"][ep.label()] = {
                "rows_changed": rows, "checksum_match": db.match, "method": db.method,
                "dms_task_arn": db.dms_task_arn, "fallback_reason": db.fallback_reason}
            report["rows_changed"] += rows
    threshold = policy.threshold(report["bytes_total"])
    report["threshold_bytes"] = threshold
    report["converged"] = (not problems and report["bytes_sent"] <= threshold
                           and not report.get("files_unstable")
                           and report["rows_changed"]
                           <= ctx.options.replicate.delta_rows)
    report["problems"] = problems
    handoff.put(ctx, handoff.REPLICATION_ROUND, report, run_scoped=True, seq=round_no)
    _say(ctx, f"replication round {round_no}: {report['bytes_sent'] / MIB:.2f} MiB and "
              f"{report['rows_changed']} rows sent (threshold {threshold / MIB:.2f} MiB)"
              + ("; converged" if report["converged"] else ""),
         {"round": round_no, "bytes_sent": report["bytes_sent"],
          "rows_changed": report["rows_changed"], "converged": report["converged"]})
    if problems:
        raise PhaseFailed(PHASE, "; ".join(problems), report)
    return report
