"""Phase 5, smoke test: is the target answering, before any traffic is moved to it?

Checks, for every server of the wave:

* HTTP (``http`` endpoints): ``GET /health/ready`` is 200 and ``GET /health/deep`` says
  ``"status": "healthy"``;
* database (``database`` endpoints): ``SELECT 1`` on the target;
* DNS: the server's record ``<short>.<estate>.migrationbox.internal`` exists in the zone
  ``<estate>.migrationbox.internal`` (skipped, with a note, when the zone does not exist:
  provisioning ran as a dry run);
* load balancer: every target group of the wave reports no unhealthy target.

Read-only and safe to call repeatedly (the wave DAG's ``smoke_tests_green`` gate polls
it). A failure raises ``PhaseFailed`` naming each failing check.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

from migrationbox.cloud.base import CloudAdapter
from migrationbox.endpoints import Endpoint, by_server
from migrationbox.iac.design import dns_zone
from migrationbox.iac.design import record_name as target_dns_name
from migrationbox.phases._cloud import adapter_for, progress
from migrationbox.phases.context import PhaseContext, PhaseFailed, PhaseResult
from migrationbox.phases.replicate import endpoints_or_fail

PHASE = "smoke_test"


@dataclass
class Check:
    server_id: str
    check: str
    ok: bool
    detail: str
    skipped: bool = False

    def label(self) -> str:
        return f"{self.server_id}/{self.check}: {self.detail}"


def http_checks(ep: Endpoint, timeout: float) -> list[Check]:
    import httpx

    base = (ep.target_uri or "").rstrip("/")
    checks: list[Check] = []
    if not base:
        return [Check(ep.server_id, "http", False, f"endpoint {ep.label()} has no target_uri")]
    try:
        with httpx.Client(timeout=timeout) as client:
            ready = client.get(f"{base}/health/ready")
            checks.append(Check(ep.server_id, "http_ready", ready.status_code == 200,
                                f"GET {base}/health/ready -> {ready.status_code}"))
            deep = client.get(f"{base}/health/deep")
            try:
                body = deep.json()
            except ValueError:
                body = {}
            status = body.get("status") if isinstance(body, dict) else None
            bad = sorted(k for k, v in (body.get("components") or {}).items()
                         if isinstance(v, dict) and v.get("status") != "healthy")
            checks.append(Check(
                ep.server_id, "http_deep", status == "healthy",
                f"GET {base}/health/deep -> {deep.status_code} status={status}"
                + (f" (not healthy: {', '.join(bad)})" if bad else ""),
            ))
    except httpx.HTTPError as exc:
        checks.append(Check(ep.server_id, "http", False,
                            f"{base} unreachable: {type(exc).__name__}: {exc}"))
    return checks


def database_check(ep: Endpoint, timeout: float) -> Check:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    if not ep.target_uri:
        return Check(ep.server_id, "database", False, f"endpoint {ep.label()} has no target_uri")
    try:
        url = make_url(ep.target_uri)
    except Exception as exc:
        return Check(ep.server_id, "database", False, f"{ep.label()}: bad target_uri ({exc})")
    shown = url.render_as_string(hide_password=True)
    connect_args = {"connect_timeout": int(timeout)} if url.get_backend_name() == "postgresql" \
        else {}
    start = time.perf_counter()
    engine = create_engine(url, connect_args=connect_args)
    try:
        with engine.connect() as conn:
            value = conn.execute(text("SELECT 1")).scalar()
        ms = (time.perf_counter() - start) * 1000
        return Check(ep.server_id, "database", value == 1, f"SELECT 1 on {shown}: {ms:.0f} ms")
    except Exception as exc:
        first = str(exc).splitlines()[0][:200] if str(exc) else ""
        return Check(ep.server_id, "database", False,
                     f"SELECT 1 on {shown} failed: {type(exc).__name__}: {first}")
    finally:
        engine.dispose()


def find_zone_id(ctx: PhaseContext, adapter: CloudAdapter | None = None) -> str | None:
    """The id of the estate's hosted zone, or None when provisioning has not made it.

    With several zones of that name (a private and a public one), the one tagged with
    this estate wins. Asked through the cloud adapter (the run's, unless given).
    """
    adapter = adapter or adapter_for(ctx, PHASE)
    return adapter.find_hosted_zone(dns_zone(ctx.estate), ctx.estate)


def dns_checks(ctx: PhaseContext, adapter: Any) -> tuple[list[Check], list[str]]:
    zone_id = find_zone_id(ctx, adapter)
    if zone_id is None:
        note = (f"DNS checks skipped: hosted zone {dns_zone(ctx.estate)} does not exist "
                "(provisioning ran as a dry run?)")
        return [Check(s.server_id, "dns", True, note, skipped=True) for s in ctx.servers], [note]
    checks = []
    for s in ctx.servers:
        name = target_dns_name(ctx.estate, s.hostname)
        records = adapter.get_records(zone_id, name)
        if records:
            kinds = sorted({f"{r['type']}" + (f"[{r['set_identifier']}]"
                                              if r.get("set_identifier") else "")
                            for r in records})
            checks.append(Check(s.server_id, "dns", True, f"{name}: {', '.join(kinds)}"))
        else:
            checks.append(Check(s.server_id, "dns", False,
                                f"no record {name} in zone {dns_zone(ctx.estate)} ({zone_id})"))
    return checks, []


def lb_checks(ctx: PhaseContext, adapter: Any) -> tuple[list[Check], list[str]]:
    groups = [r for r in adapter.resources_by_tag(ctx.estate, ctx.wave_number)
              if r.type == "target_group"]
    if not groups:
        return [], ["no target groups for this wave: load-balancer check not applicable"]
    checks = []
    for tg in groups:
        health = adapter.target_health(tg.id)
        unhealthy = {i: s for i, s in health.items() if s in ("unhealthy", "unavailable")}
        healthy = [i for i, s in health.items() if s == "healthy"]
        owner = tg.tags.get("migrationbox:server", "wave")
        name = tg.name or tg.id.rsplit("/", 2)[-2]
        if not health:
            checks.append(Check(owner, "lb_targets", False, f"target group {name} has no targets"))
        else:
            checks.append(Check(
                owner, "lb_targets", not unhealthy,
                f"target group {name}: {len(healthy)}/{len(health)} healthy"
                + (f", unhealthy {unhealthy}" if unhealthy else ""),
            ))
    return checks, []


def run(ctx: PhaseContext) -> PhaseResult:
    if ctx.dry_run:
        return PhaseResult(phase=PHASE, ok=True, summary="dry run: smoke tests not run",
                           details={"dry_run": True})
    endpoints = endpoints_or_fail(ctx, PHASE)
    timeout = ctx.options.health.timeout_seconds
    checks: list[Check] = []
    notes: list[str] = []
    for s in ctx.servers:
        for ep in by_server(endpoints, s.server_id, "http"):
            checks += http_checks(ep, timeout)
        for ep in by_server(endpoints, s.server_id, "database"):
            checks.append(database_check(ep, timeout))
    adapter = adapter_for(ctx, PHASE)
    for fn in (dns_checks, lb_checks):
        try:
            found, more = fn(ctx, adapter)
        except Exception as exc:  # the cloud API itself failing is a failed check
            found, more = [Check("wave", fn.__name__.removesuffix("_checks"), False,
                                 f"{type(exc).__name__}: {exc}")], []
        checks += found
        notes += more
    failing = [c for c in checks if not c.ok]
    details = {"checks": [asdict(c) for c in checks], "notes": notes}
    if failing:
        raise PhaseFailed(PHASE, f"{len(failing)} check(s) failed: "
                          + "; ".join(c.label() for c in failing), details)
    passed = len([c for c in checks if not c.skipped])
    progress(ctx, f"smoke tests green: {passed} checks passed" +
             (f" ({len(notes)} notes)" if notes else ""))
    return PhaseResult(phase=PHASE, ok=True,
                       summary=f"{passed} checks passed, {len(checks) - passed} skipped",
                       details=details)
