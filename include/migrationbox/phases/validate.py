"""Phase 7, validate and decommission.

``run(ctx)`` proves the target holds the source's data and records what it costs:

* disks: the target is re-hashed against its manifest and the source; config files the
  configure phase rewrote must equal the rewrite applied to the *source* file now (so a
  change at the source after configure is caught, and so is tampering on the target);
* databases: row counts and ordered row checksums per table, both sides;
* cost: predicted (the plan's sizing of the wave's servers) against actual (the
  instances the cloud reports for this wave, priced with the plan's own prices per
  instance type), monthly.

* great-expectations evidence (``migrationbox.validation``): suites per server and
  database (row counts, column checksums, null rates, key uniqueness, file manifests),
  results as JSON in ``validation-evidence.json`` and data docs (HTML) under ``gx/`` in
  the run's artifacts; a failed expectation fails the phase like any other problem, so
  the source stays authoritative. Run conf ``validate.gx`` (true) turns it off;
* performance against the discovery baseline: every HTTP service of the wave probed at
  the source and the target (P95, errors, CPU and memory of the serving process),
  compared with the discovery inventory's CPU/memory averages (from the store, or
  the run conf's ``validate.performance_baselines``) — reported, not a failure; a P95
  over ``cutover.latency_factor`` × the source's is a warning in ``performance``.
  Run conf ``validate.performance`` (true) turns it off.

``decommission(ctx)``, called after the approval gate, marks each source disk with a
``.migrationbox/DECOMMISSIONED.json`` marker (kept on re-runs) and returns the servers.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

from migrationbox.endpoints import Endpoint, by_server
from migrationbox.errors import MigrationBoxError
from migrationbox.iac.design import record_name as target_dns_name
from migrationbox.phases._cloud import adapter_for, progress, write_json
from migrationbox.phases.configure import (
    host_map,
    host_pattern,
    load_configured,
    read_text_file,
    rewrite_text,
    secret_name,
)
from migrationbox.phases.context import PhaseContext, PhaseFailed, PhaseResult
from migrationbox.phases.options import conf_key
from migrationbox.phases.replicate import endpoints_or_fail, open_disk_source
from migrationbox.replication.database import compare_databases
from migrationbox.replication.disk import verify
from migrationbox.replication.manifest import (
    DEFAULT_BLOCK_SIZE,
    META_DIR,
    ManifestError,
    load_manifest,
)
from migrationbox.replication.source import LocalTree, SourceTree, scan_manifest

PHASE = "validate"
MARKER = "DECOMMISSIONED.json"
HOURS_PER_MONTH = 730.0


def _decode_text(data: bytes) -> str | None:
    """UTF-8 text, or None for binary or undecodable content (``read_text_file``'s rule)."""
    if b"\x00" in data[:8192]:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _source_texts(src: SourceTree, rels: list[str]) -> dict[str, str | None]:
    """The source's text of each file (None: missing, not a file, or binary). Local
    folders are read here; other sources through the tree, sized by one source scan."""
    if isinstance(src, LocalTree):
        return {rel: read_text_file(src.root / rel) if (src.root / rel).is_file() else None
                for rel in rels}
    if not rels:
        return {}
    files = scan_manifest(src, DEFAULT_BLOCK_SIZE).files
    out: dict[str, str | None] = {}
    for rel in rels:
        entry = files.get(rel)
        if entry is None or entry.type != "file":
            out[rel] = None
            continue
        data = b"".join(src.read_blocks(rel, [(0, entry.size)])) if entry.size else b""
        out[rel] = _decode_text(data) if len(data) == entry.size else None
    return out


def _check_disk(ctx: PhaseContext, server_id: str, ep: Endpoint, mapping: dict[str, str],
                pattern: Any) -> tuple[dict[str, Any], list[str]]:
    try:
        tgt = ep.target_path
        configured = load_configured(tgt).get("files", {})
        with open_disk_source(ep) as src:
            result = verify(src, tgt, source_exclude=set(configured))
            texts = _source_texts(src, sorted(configured))
    except (MigrationBoxError, ValueError) as exc:  # unreachable, refused, vanished source
        return {"ok": False, "error": str(exc)}, [
            str(exc) if ep.label() in str(exc) else f"{ep.label()}: {exc}"]
    problems = [f"{ep.label()}: {p}" for p in result.problems]
    for rel in sorted(configured):
        source_text = texts.get(rel)
        target_file = tgt / rel
        if source_text is None or not target_file.is_file():
            problems.append(f"{ep.label()}: configured file {rel} missing on source or target")
            continue
        expected = rewrite_text(
            source_text, pattern, mapping,
            lambda key, rel=rel: secret_name(ctx.estate, server_id, rel, key),
        ).text
        if hashlib.sha256(expected.encode()).digest() != hashlib.sha256(
                target_file.read_bytes()).digest():
            problems.append(f"{ep.label()}: {rel} differs from the configured source "
                            "(changed at the source since configure, or altered on the target)")
    return {**result.summary(), "configured_files": len(configured),
            "ok": not problems}, problems


def _database_urls(ep: Endpoint) -> tuple[str, str]:
    """Source and target URLs, resolved now from the Airflow connections the endpoint
    names (``details.conn_id`` / ``target_conn_id``) or its URIs; for the driver only."""
    from migrationbox.replication.dms import resolve_database_url

    return resolve_database_url(ep, "source"), resolve_database_url(ep, "target")


def _check_database(ep: Endpoint) -> tuple[dict[str, Any], list[str]]:
    from sqlalchemy.exc import SQLAlchemyError

    try:
        source_url, target_url = _database_urls(ep)
        tables = compare_databases(source_url, target_url)
    except (MigrationBoxError, ValueError) as exc:
        return {"ok": False}, [str(exc) if ep.label() in str(exc) else f"{ep.label()}: {exc}"]
    except SQLAlchemyError as exc:
        first = str(exc).splitlines()[0][:200] if str(exc) else ""
        return {"ok": False}, [f"{ep.label()}: cannot compare source and target: "
                               f"{type(exc).__name__}: {first}"]
    bad = [t for t in tables if not t.match]
    problems = [f"{ep.label()}: table {t.table}: rows {t.rows_source} vs {t.rows_target}, "
                f"checksum {'equal' if t.checksum_source == t.checksum_target else 'differs'}"
                for t in bad]
    return {"ok": not bad, "tables": [t.as_dict() for t in tables],
            "rows_source": sum(t.rows_source for t in tables),
            "rows_target": sum(t.rows_target for t in tables)}, problems


def cost_report(ctx: PhaseContext) -> dict[str, Any]:
    """Predicted vs actual monthly compute cost of the wave, in USD."""
    from migrationbox.cloud.base import TAG_ESTATE, TAG_SERVER, TAG_WAVE

    prices: dict[str, float] = {}
    hours = HOURS_PER_MONTH
    predicted = 0.0
    unsized = []
    for s in ctx.plan.servers:
        if s.sizing is not None:
            prices.setdefault(s.sizing.instance_type, s.sizing.hourly_usd)
    for s in ctx.servers:
        if s.sizing is None:
            unsized.append(s.server_id)
            continue
        predicted += s.sizing.monthly_usd
        if s.sizing.hourly_usd:
            hours = s.sizing.monthly_usd / s.sizing.hourly_usd
    report: dict[str, Any] = {
        "predicted_monthly_usd": round(predicted, 2),
        "unsized_servers": unsized,
        "hours_per_month": round(hours, 1),
    }
    if ctx.dry_run:
        return report | {"actual_monthly_usd": None, "note": "dry run: cloud not queried"}
    adapter = adapter_for(ctx, PHASE)
    instances = adapter.find_instances({TAG_ESTATE: ctx.estate, TAG_WAVE: ctx.wave_tag})
    if not instances:
        return report | {"actual_monthly_usd": None, "instances": [],
                         "note": f"no instances tagged {TAG_WAVE}={ctx.wave_tag} "
                                 "(provisioning ran as a dry run?)"}
    rows, unpriced, actual = [], [], 0.0
    for inst in instances:
        price = prices.get(inst.instance_type)
        monthly = None if price is None else price * hours
        if monthly is None:
            unpriced.append(inst.instance_type)
        else:
            actual += monthly
        rows.append({"instance_id": inst.instance_id, "server_id": inst.tags.get(TAG_SERVER),
                     "instance_type": inst.instance_type, "state": inst.state,
                     "monthly_usd": None if monthly is None else round(monthly, 2)})
    delta = actual - predicted
    return report | {
        "actual_monthly_usd": round(actual, 2),
        "delta_usd": round(delta, 2),
        "delta_pct": round(100 * delta / predicted, 1) if predicted else None,
        "instances": rows,
        "unpriced_instance_types": sorted(set(unpriced)),
        "price_source": "the plan's sizing prices per instance type",
    }


def run(ctx: PhaseContext) -> PhaseResult:
    endpoints = endpoints_or_fail(ctx, PHASE)
    mapping = host_map(ctx, endpoints)
    pattern = host_pattern(mapping)
    per_server: dict[str, Any] = {}
    problems: list[str] = []
    for s in ctx.servers:
        disks = by_server(endpoints, s.server_id, "disk")
        dbs = by_server(endpoints, s.server_id, "database")
        if not disks and not dbs:
            per_server[s.server_id] = {"skipped": "no disk or database endpoints"}
            continue
        if ctx.dry_run:
            per_server[s.server_id] = {"dry_run": True}
            continue
        entry: dict[str, Any] = {"disks": {}, "databases": {}}
        for ep in disks:
            entry["disks"][ep.name], found = _check_disk(ctx, s.server_id, ep, mapping, pattern)
            problems += found
        for ep in dbs:
            entry["databases"][ep.name], found = _check_database(ep)
            problems += found
        entry["ok"] = all(d["ok"] for d in [*entry["disks"].values(),
                                            *entry["databases"].values()])
        per_server[s.server_id] = entry
    cost = cost_report(ctx)
    details: dict[str, Any] = {"servers": per_server, "cost": cost, "dry_run": ctx.dry_run}
    if not ctx.dry_run and ctx.options.validate_.gx:
        evidence = gx_evidence(ctx, endpoints)
        details["gx"] = evidence.summary()
        problems += [f"great-expectations suite {o.name}: {f}" for o in evidence.suites
                     for f in o.failed[:5]]
    if not ctx.dry_run and ctx.options.validate_.performance:
        details["performance"] = performance_report(ctx, endpoints)
    write_json(ctx.run_artifacts() / "validate.json", {**details, "problems": problems})
    if problems:
        raise PhaseFailed(PHASE, f"{len(problems)} integrity problem(s): "
                          + "; ".join(problems[:10]), details)
    checked = len([v for v in per_server.values() if v.get("ok")])
    actual = cost.get("actual_monthly_usd")
    summary = (f"{checked} servers verified (checksums, row counts); cost predicted "
               f"${cost['predicted_monthly_usd']:,.2f}/month, actual "
               + (f"${actual:,.2f}/month" if actual is not None else "unknown"))
    progress(ctx, summary, {"cost": {k: cost.get(k) for k in (
        "predicted_monthly_usd", "actual_monthly_usd")}})
    return PhaseResult(phase=PHASE, ok=True, summary=summary, details=details)


def gx_evidence(ctx: PhaseContext, endpoints: list[Endpoint]) -> Any:
    """Run the great-expectations suites of the wave (see module docstring)."""
    from migrationbox.validation.profiles import file_frame, profile_database
    from migrationbox.validation.suites import GxValidator

    validator = GxValidator(ctx.run_artifacts() / "gx")
    for s in ctx.servers:
        for ep in by_server(endpoints, s.server_id, "disk"):
            configured = set(load_configured(ep.target_path).get("files", {}))
            try:
                manifest = load_manifest(ep.target_path)
            except ManifestError:
                manifest = None
            block = manifest.block_size if manifest else DEFAULT_BLOCK_SIZE
            with open_disk_source(ep) as src:
                source = src.root if isinstance(src, LocalTree) else scan_manifest(src, block)
            frame, n_source = file_frame(source, ep.target_path, configured, block)
            validator.add_files(s.server_id, ep.name, frame, n_source)
        for ep in by_server(endpoints, s.server_id, "database"):
            try:
                source_url, target_url = _database_urls(ep)
            except (MigrationBoxError, ValueError):
                continue  # _check_database reports it
            source = profile_database(source_url)
            target = profile_database(target_url)
            for table, (profile, _frame) in source.items():
                import pandas as pd

                tgt = target.get(table)
                frame = tgt[1] if tgt else pd.DataFrame(columns=profile.columns)
                validator.add_table(s.server_id, ep.name, profile, frame)
    return validator.run(ctx.run_artifacts() / "validation-evidence.json")


def _discovery_baselines(ctx: PhaseContext) -> tuple[dict[str, Any], str]:
    given = ctx.options.validate_.performance_baselines
    if given is not None:
        return dict(given), conf_key("validate.performance_baselines")
    try:
        from migrationbox.store import repository
        from migrationbox.store.db import session_scope

        with session_scope(read_only=True) as session:
            estate = repository.get_estate(session, ctx.estate)
    except Exception as exc:  # no store, not migrated, unreachable: report, do not fail
        return {}, f"store unavailable ({type(exc).__name__})"
    if estate is None:
        return {}, f"estate {ctx.estate} has no discovery inventory in the store"
    return ({r.server_id: r.performance_baseline.model_dump() if r.performance_baseline
             else None  # not measured (an RVTools import): nothing to compare against
             for r in estate.servers},
            "discovery inventory in the store")


def performance_report(ctx: PhaseContext, endpoints: list[Endpoint]) -> dict[str, Any]:
    """Source vs target service performance and the discovery baseline (module docstring)."""
    from migrationbox.cutover.metrics import probe_batch

    baselines, origin = _discovery_baselines(ctx)
    n = ctx.options.health.probe_requests
    timeout = ctx.options.health.timeout_seconds
    factor = ctx.options.cutover.latency_factor
    floor = ctx.options.cutover.latency_floor_ms
    servers: dict[str, Any] = {}
    warnings: list[str] = []
    for s in ctx.servers:
        entry: dict[str, Any] = {"discovery": baselines.get(s.server_id)}
        for ep in by_server(endpoints, s.server_id, "http"):
            if not ep.target_uri:
                continue
            tgt = probe_batch(ep.target_uri.rstrip("/"), n, 0, timeout, deep=False)
            src = (probe_batch(ep.source_uri.rstrip("/"), n, 0, timeout, deep=False)
                   if ep.source_uri else None)
            ratio = (tgt.p95_ms / src.p95_ms) if src and src.p95_ms else None
            entry[ep.name] = {
                "target_p95_ms": round(tgt.p95_ms, 2), "target_errors": tgt.errors,
                "source_p95_ms": round(src.p95_ms, 2) if src else None,
                "p95_ratio": round(ratio, 2) if ratio else None,
                "target_cpu_pct": tgt.cpu_pct, "target_memory_pct": tgt.memory_pct,
            }
            disc = baselines.get(s.server_id) or {}
            if tgt.cpu_pct is not None and disc.get("cpu_avg_utilization_pct") is not None:
                entry[ep.name]["cpu_vs_discovery_points"] = round(
                    tgt.cpu_pct - float(disc["cpu_avg_utilization_pct"]), 2)
            if src and tgt.p95_ms > max(factor * src.p95_ms, floor):
                warnings.append(f"{ep.label()}: target P95 {tgt.p95_ms:.0f} ms is over "
                                f"{factor:g}x the source's {src.p95_ms:.0f} ms")
        servers[s.server_id] = entry
    return {"baseline_origin": origin, "servers": servers, "warnings": warnings}


def decommission(ctx: PhaseContext) -> PhaseResult:
    """Mark the wave's sources decommissioned (after approval); idempotent."""
    endpoints = endpoints_or_fail(ctx, "decommission")
    marked: list[str] = []
    already: list[str] = []
    for s in ctx.servers:
        disks = by_server(endpoints, s.server_id, "disk")
        if not disks:
            continue
        for ep in disks:
            try:
                marked_before = decommissioned(ep) is not None
            except Exception as exc:  # paramiko's errors are not OSErrors
                raise PhaseFailed("decommission", f"{ep.label()}: cannot read the source's "
                                                  f"decommission marker: {exc}") from exc
            if marked_before:
                already.append(s.server_id)
                continue
            if ctx.dry_run:
                continue
            try:
                _write_marker(ep, {
                    "server_id": s.server_id,
                    "hostname": s.hostname,
                    "replaced_by": target_dns_name(ctx.estate, s.hostname),
                    "estate": ctx.estate,
                    "wave": ctx.wave_number,
                    "run_id": ctx.run_id,
                    "decommissioned_at": datetime.now(UTC).isoformat(),
                })
            except Exception as exc:  # paramiko's errors are not OSErrors
                raise PhaseFailed("decommission", f"{ep.label()}: cannot write the "
                                                  f"decommission marker at the source: "
                                                  f"{type(exc).__name__}: {exc}") from exc
        marked.append(s.server_id)
    servers = sorted(set(marked))
    progress(ctx, f"decommissioned {len(servers)} source servers", {"servers": servers})
    return PhaseResult(
        phase="decommission", ok=True,
        summary=(f"{'would mark' if ctx.dry_run else 'marked'} {len(servers)} sources "
                 f"decommissioned ({len(set(already))} already were)"),
        details={"decommissioned": servers, "already_marked": sorted(set(already)),
                 "dry_run": ctx.dry_run},
    )


def _sftp(ep: Endpoint) -> tuple[Any, Any, str]:
    """An SSH client, its SFTP channel and the marker's folder on an ``ssh://`` source
    (the host key pinned as for replication: ``endpoints.connections``)."""
    from migrationbox.endpoints.connections import ssh_hook, ssh_target

    target = ssh_target(ep.source_uri or "", ep.details, label=f"endpoint {ep.label()}")
    client = ssh_hook(target).get_conn()
    return client, client.open_sftp(), f"{target.location.path.rstrip('/')}/{META_DIR}"


def _is_ssh(ep: Endpoint) -> bool:
    return (ep.source_uri or "").startswith("ssh:")


def _write_marker(ep: Endpoint, payload: dict[str, Any]) -> None:
    """Write the marker at the source: locally, or over SFTP (written, then renamed)."""
    if not _is_ssh(ep):
        write_json(ep.source_path / META_DIR / MARKER, payload)
        return
    client, sftp, folder = _sftp(ep)
    try:
        try:
            sftp.stat(folder)
        except FileNotFoundError:
            sftp.mkdir(folder)
        tmp = f"{folder}/{MARKER}.tmp"
        with sftp.open(tmp, "w") as fh:
            fh.write(json.dumps(payload, indent=2, sort_keys=True))
        sftp.posix_rename(tmp, f"{folder}/{MARKER}")
    finally:
        sftp.close()
        client.close()


def decommissioned(ep: Endpoint) -> dict[str, Any] | None:
    """The decommission marker of a source disk, if any (local or over SFTP)."""
    if not _is_ssh(ep):
        try:
            return json.loads((ep.source_path / META_DIR / MARKER).read_text())
        except FileNotFoundError:
            return None
    client, sftp, folder = _sftp(ep)
    try:
        with sftp.open(f"{folder}/{MARKER}") as fh:
            return json.loads(fh.read())
    except FileNotFoundError:
        return None
    finally:
        sftp.close()
        client.close()
