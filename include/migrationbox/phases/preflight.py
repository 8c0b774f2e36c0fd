"""Phase 1, pre-flight: prove the wave can move before anything is created.

Checks, each with a status, a reason and what to do when it fails:

* credentials: the connection authenticates (STS ``GetCallerIdentity``);
* region: the plan's region is known and has at least two availability zones;
* sizing: every server of the wave has an instance type that the region offers;
* images: every server's source OS (and SQL Server edition) has an image in the region
  (``cloud.images``); a refusal names the server, its OS and version and the images that
  exist for that family, so that provision never starts a wave it cannot finish;
* quotas: requested vCPUs plus those in use fit the EC2 On-Demand Standard vCPU quota
  (Service Quotas ``ec2/L-1216C47A``; where the endpoint does not serve it, the run
  conf's ``preflight.vcpu_quota``; with neither, the check warns rather than guesses), and
  the VPC quotas (VPCs per region, subnets per VPC, security groups per region, rules
  per group) fit the wave's design;
* CIDR conflicts: the target VPC CIDR overlaps none of the estate's source networks
  (which must stay routable during migration); overlaps with other VPCs of the
  account are reported as warnings;
* backups: every source server has a backup (optionally recent and restore-tested);
* data residency: each server's residency requirement allows the target region.

Source facts that the plan does not carry (networks, backups, residency) come from the
run conf when given (``network.source_networks``, ``preflight.backups``,
``preflight.data_residency``), else from an ``Estate`` passed in, else from the store
(``networks.load_estate_records``). Source networks are resolved by ``phases.networks``,
the same answer provision builds its security-group rules from. Every remedy that names
an option names it as a run-conf key (``options.conf_key``). The report is written as
JSON and Markdown into the run's artifacts; on failure ``PhaseFailed`` names every
failing check.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict

from migrationbox.cloud.base import TAG_SERVER, TAG_WAVE, CloudAdapter, landing_zone_tag
from migrationbox.iac.design import DesignError, design_wave
from migrationbox.inventory.models import Estate, ServerRecord
from migrationbox.phases._cloud import (
    adapter_for,
    progress,
    target_cidr,
    write_json,
    write_text,
)
from migrationbox.phases.context import PhaseContext, PhaseFailed, PhaseResult
from migrationbox.phases.networks import (
    SourceNetworks,
    from_conf_or_records,
    load_estate_records,
)
from migrationbox.phases.options import conf_key

PHASE = "preflight"
log = logging.getLogger("migrationbox.phase.preflight")

#: cloud → region → (jurisdiction, ISO country). "EU" means an EU member state; the UK
#: and Switzerland are their own jurisdictions (adequacy is a customer's decision, see
#: the ``preflight.residency_equivalents`` option).
REGION_JURISDICTION: dict[str, dict[str, tuple[str, str]]] = {
    "aws": {
        "us-east-1": ("US", "US"), "us-east-2": ("US", "US"),
        "us-west-1": ("US", "US"), "us-west-2": ("US", "US"),
        "us-gov-east-1": ("US", "US"), "us-gov-west-1": ("US", "US"),
        "ca-central-1": ("CA", "CA"), "ca-west-1": ("CA", "CA"),
        "mx-central-1": ("MX", "MX"), "sa-east-1": ("BR", "BR"),
        "eu-west-1": ("EU", "IE"), "eu-west-3": ("EU", "FR"), "eu-central-1": ("EU", "DE"),
        "eu-north-1": ("EU", "SE"), "eu-south-1": ("EU", "IT"), "eu-south-2": ("EU", "ES"),
        "eu-west-2": ("UK", "GB"), "eu-central-2": ("CH", "CH"),
        "il-central-1": ("IL", "IL"), "me-south-1": ("BH", "BH"),
        "me-central-1": ("AE", "AE"), "af-south-1": ("ZA", "ZA"),
        "ap-south-1": ("IN", "IN"), "ap-south-2": ("IN", "IN"),
        "ap-east-1": ("HK", "HK"), "ap-east-2": ("TW", "TW"),
        "ap-northeast-1": ("JP", "JP"), "ap-northeast-3": ("JP", "JP"),
        "ap-northeast-2": ("KR", "KR"), "ap-southeast-1": ("SG", "SG"),
        "ap-southeast-2": ("AU", "AU"), "ap-southeast-4": ("AU", "AU"),
        "ap-southeast-3": ("ID", "ID"), "ap-southeast-5": ("MY", "MY"),
        "ap-southeast-7": ("TH", "TH"),
        "cn-north-1": ("CN", "CN"), "cn-northwest-1": ("CN", "CN"),
    },
}
#: requirement → jurisdictions that satisfy it, beyond the literal match.
RESIDENCY_ALIASES = {"EEA": {"EU"}, "GB": {"UK"}}
NO_CONSTRAINT = {"", "ANY", "GLOBAL", "NONE"}

PASS, FAIL, WARN, SKIP = "pass", "fail", "warn", "skip"


@dataclass
class Check:
    name: str
    status: str
    detail: str
    remedy: str = ""
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return self.status == FAIL


class BackupInfo(BaseModel):
    """One server's backup as pre-flight judges it (from the run conf or the records)."""

    model_config = ConfigDict(extra="ignore")

    available: bool = False
    last_backup_at: datetime | None = None
    restore_tested: bool | None = None
    tool: str | None = None


@dataclass
class SourceFacts:
    """Per-server facts the plan does not carry, and where they came from."""

    networks: SourceNetworks = field(default_factory=SourceNetworks)
    backups: dict[str, BackupInfo | None] = field(default_factory=dict)
    residency: dict[str, str | None] = field(default_factory=dict)
    sources: list[str] = field(default_factory=list)


def gather_facts(
    ctx: PhaseContext,
    estate: Estate | dict[str, ServerRecord] | None = None,
    loader: Callable[[str], dict[str, ServerRecord] | None] = load_estate_records,
) -> SourceFacts:
    """Source facts: the run conf first, then ``estate``, then the store."""
    opts = ctx.options.preflight
    server_ids = [s.server_id for s in ctx.servers]
    facts = SourceFacts()
    records: dict[str, ServerRecord] | None
    if isinstance(estate, Estate):
        records, origin = estate.by_id(), "estate argument"
    elif estate is not None:
        records, origin = dict(estate), "estate argument"
    elif ctx.options.network.source_networks is not None and opts.backups is not None:
        records, origin = None, ""
    else:
        try:
            records, origin = loader(ctx.estate), "store"
            if records is None:
                facts.sources.append(f"store: estate {ctx.estate!r} not found")
        except Exception as exc:  # the reason goes into the report
            records, origin = None, ""
            facts.sources.append(f"store unavailable: {type(exc).__name__}: {exc}")
    if records is not None:
        facts.sources.append(origin)

    facts.networks = from_conf_or_records(ctx, records, origin or "store")
    if ctx.options.network.source_networks is not None:
        facts.sources.append(facts.networks.origin)

    raw_backups = opts.backups
    for sid in server_ids:
        info: BackupInfo | None = None
        if raw_backups is not None and sid in raw_backups:
            stated = raw_backups[sid]
            info = (BackupInfo(available=stated) if isinstance(stated, bool)
                    else BackupInfo.model_validate(stated.model_dump()))
        elif records is not None and sid in records and records[sid].backup is not None:
            info = BackupInfo.model_validate(records[sid].backup.model_dump())
        facts.backups[sid] = info
    if raw_backups is not None:
        facts.sources.append(conf_key("preflight.backups"))

    raw_res = opts.data_residency
    for sid in server_ids:
        value: str | None = None
        if isinstance(raw_res, str):
            value = raw_res
        elif isinstance(raw_res, dict) and sid in raw_res:
            value = raw_res[sid]
        elif records is not None and sid in records:
            value = records[sid].data_residency
        facts.residency[sid] = value
    if raw_res is not None:
        facts.sources.append(conf_key("preflight.data_residency"))
    return facts


# -- the checks ----------------------------------------------------------------------

def check_credentials(adapter: CloudAdapter, ctx: PhaseContext) -> Check:
    ident = adapter.whoami()
    expected = ctx.options.preflight.expected_account
    if expected and str(expected) != ident.account:
        return Check("credentials", FAIL,
                     f"connection {ctx.aws_conn_id!r} is account {ident.account}, the run "
                     f"expects {expected}",
                     f"point the Airflow connection {ctx.aws_conn_id!r} at account {expected}",
                     {"account": ident.account, "arn": ident.arn})
    return Check("credentials", PASS, f"account {ident.account} as {ident.arn}",
                 data={"account": ident.account, "arn": ident.arn})


def check_region(adapter: CloudAdapter, ctx: PhaseContext) -> Check:
    region = ctx.plan.settings.region
    table = REGION_JURISDICTION.get(ctx.plan.settings.cloud, {})
    azs = adapter.availability_zones()
    data = {"region": region, "availability_zones": azs}
    if region not in table:
        return Check("region", FAIL, f"region {region!r} is unknown to the residency table",
                     "use a known region or add it to preflight.REGION_JURISDICTION", data)
    if len(azs) < 2:
        return Check("region", FAIL, f"{region} offers {len(azs)} availability zone(s): {azs}",
                     "choose a region with at least two AZs for a multi-AZ network", data)
    return Check("region", PASS, f"{region} with {len(azs)} AZs ({', '.join(azs)})", data=data)


def check_sizing(adapter: CloudAdapter, ctx: PhaseContext) -> tuple[Check, dict[str, int]]:
    unsized = [s.server_id for s in ctx.servers if s.sizing is None]
    if unsized:
        return Check("sizing", FAIL, f"servers without sizing: {', '.join(unsized)}",
                     "re-run planning so every server has ServerPlan.sizing"), {}
    types = sorted({s.sizing.instance_type for s in ctx.servers if s.sizing})
    try:
        vcpus = adapter.instance_type_vcpus(types)
    except Exception as exc:
        return Check("sizing", FAIL, str(exc),
                     "size those servers with instance types the region offers"), {}
    return Check("sizing", PASS, f"{len(ctx.servers)} servers on {len(types)} instance types",
                 data={"instance_types": vcpus}), vcpus


def check_images(adapter: CloudAdapter, ctx: PhaseContext) -> Check:
    from migrationbox.cloud.images import images_for_servers

    chosen, refused = images_for_servers(adapter, ctx.servers)
    data = {"images": {sid: (c.image_id if c else None) for sid, c in sorted(chosen.items())},
            "refused": refused}
    if refused:
        return Check("images", FAIL,
                     f"no {ctx.plan.settings.cloud} image in {ctx.plan.settings.region} fits "
                     f"{len(refused)} server(s): " + " | ".join(refused),
                     "re-platform these servers onto an OS the cloud has images for, or move "
                     "them out of this wave", data)
    default = sorted(sid for sid, c in chosen.items() if c is None)
    fitted = len(chosen) - len(default)
    detail = f"{fitted} server(s) matched to an image of their OS"
    if default:
        detail += (f"; {len(default)} without a discovered OS boot the default image "
                   f"({', '.join(default)})")
    return Check("images", PASS, detail, data=data)


def check_quotas(adapter: CloudAdapter, ctx: PhaseContext, vcpus: dict[str, int],
                 design_rules: int, design_groups: int, design_subnets: int) -> Check:
    existing = {r.tags.get(TAG_SERVER)
                for r in adapter.resources_by_tag(ctx.estate, ctx.wave_number)
                if r.type == "instance"}
    pending = [s for s in ctx.servers if s.server_id not in existing and s.sizing]
    requested = sum(vcpus.get(s.sizing.instance_type, s.sizing.vcpu) for s in pending
                    if s.sizing)
    in_use = adapter.vcpus_in_use()
    problems: list[str] = []
    notes: list[str] = []
    data: dict[str, Any] = {"requested_vcpu": requested, "vcpu_in_use": in_use}

    api_quota = adapter.vcpu_quota()
    configured = ctx.options.preflight.vcpu_quota
    limits = []
    if api_quota is not None:
        limits.append((api_quota.limit, api_quota.source))
    if configured is not None:
        limits.append((float(configured), conf_key("preflight.vcpu_quota")))
    if limits:
        limit, source = min(limits)
        data.update(vcpu_limit=limit, vcpu_limit_source=source)
        if in_use + requested > limit:
            problems.append(f"vCPU: {in_use} in use + {requested} requested > {limit:g} "
                            f"({source})")
        else:
            notes.append(f"vCPU {in_use}+{requested}/{limit:g} ({source})")
    else:
        notes.append("vCPU quota not verifiable: Service Quotas does not serve ec2/L-1216C47A "
                     f"here and {conf_key('preflight.vcpu_quota')} is not set")

    quotas = adapter.network_quotas()
    usage = adapter.network_usage()
    lz = landing_zone_tag(ctx.estate)
    have_vpc = any(r.type == "vpc" and r.tags.get(TAG_WAVE) == lz
                   for r in adapter.resources_by_tag(ctx.estate))
    needs = {
        "vpcs_per_region": usage.get("vpcs_per_region", 0) + (0 if have_vpc else 1),
        "subnets_per_vpc": design_subnets,
        "security_groups_per_region": usage.get("security_groups_per_region", 0) + design_groups,
        "rules_per_security_group": design_rules,
    }
    for key, need in needs.items():
        quota = quotas.get(key)
        if quota is None:
            continue
        data[key] = {"needed": need, "limit": quota.limit}
        if need > quota.limit:
            problems.append(f"{quota.name}: need {need} > {quota.limit:g} ({quota.source})")
        else:
            notes.append(f"{quota.name} {need}/{quota.limit:g}")
    if problems:
        return Check("quotas", FAIL, "; ".join(problems),
                     "request a quota increase (Service Quotas) or split the wave", data)
    status = PASS if limits else WARN
    return Check("quotas", status, "; ".join(notes),
                 "" if limits else f"set {conf_key('preflight.vcpu_quota')} to the account's "
                                   "vCPU limit", data)


def check_cidr(adapter: CloudAdapter | None, ctx: PhaseContext, facts: SourceFacts,
               vpc_cidr: str) -> Check:
    try:
        target = ipaddress.ip_network(vpc_cidr, strict=True)
    except ValueError as exc:
        return Check("cidr_conflicts", FAIL, f"target VPC CIDR {vpc_cidr!r} is invalid: {exc}",
                     f"set {conf_key('network.target_vpc_cidr')} to a network such as "
                     "10.100.0.0/16")
    clashes: dict[str, list[str]] = {}
    entries = facts.networks.entries()
    if not entries:
        looked = [*facts.sources, facts.networks.origin]
        return Check("cidr_conflicts", FAIL,
                     "no source networks known, so conflicts cannot be ruled out "
                     f"(looked in: {'; '.join(x for x in looked if x) or 'the run conf'})",
                     f"set {conf_key('network.source_networks')} or store the estate's "
                     "discovery records")
    bad_entries = []
    for owner, net in entries:
        try:
            network = ipaddress.ip_network(net, strict=False)
        except ValueError:
            bad_entries.append(f"{owner}: {net!r}")
            continue
        if network.version == target.version and network.overlaps(target):
            clashes.setdefault(str(network), []).append(owner)
    warnings = []
    if adapter is not None:
        lz = landing_zone_tag(ctx.estate)
        ours = {r.id for r in adapter.resources_by_tag(ctx.estate)
                if r.type == "vpc" and r.tags.get(TAG_WAVE) == lz}
        for vpc_id, cidr in sorted(adapter.existing_networks().items()):
            if vpc_id not in ours and ipaddress.ip_network(cidr).overlaps(target):
                warnings.append(f"VPC {vpc_id} ({cidr})")
    data = {"vpc_cidr": vpc_cidr, "clashes": clashes, "vpc_overlaps": warnings,
            "networks_checked": len(entries)}
    if clashes or bad_entries:
        parts = [f"{net} ({', '.join(sorted(set(owners)))})" for net, owners in clashes.items()]
        detail = ""
        if parts:
            detail = f"target VPC {vpc_cidr} overlaps source networks: {'; '.join(parts)}"
        if bad_entries:
            detail += ("; " if detail else "") + f"unreadable networks: {', '.join(bad_entries)}"
        return Check("cidr_conflicts", FAIL, detail,
                     f"choose a {conf_key('network.target_vpc_cidr')} outside the estate's "
                     "networks (the source must stay routable from the VPC during migration)",
                     data)
    if warnings:
        return Check("cidr_conflicts", WARN,
                     f"{vpc_cidr} is clear of {len(entries)} source networks but overlaps "
                     f"other VPCs of the account: {', '.join(warnings)}",
                     "avoid peering those VPCs with the target, or pick another "
                     f"{conf_key('network.target_vpc_cidr')}",
                     data)
    return Check("cidr_conflicts", PASS,
                 f"{vpc_cidr} is clear of {len(entries)} source networks", data=data)


def check_backups(ctx: PhaseContext, facts: SourceFacts) -> Check:
    max_age = ctx.options.preflight.backup_max_age_hours
    need_restore = ctx.options.preflight.require_restore_tested
    now = datetime.now(UTC)
    failing: dict[str, str] = {}
    for server in ctx.servers:
        info = facts.backups.get(server.server_id)
        if info is None:
            failing[server.server_id] = "no backup recorded"
        elif not info.available:
            failing[server.server_id] = "backup not available"
        elif max_age is not None:
            when = info.last_backup_at
            if when is None:
                failing[server.server_id] = "backup has no date"
            else:
                when = when if when.tzinfo else when.replace(tzinfo=UTC)
                if now - when > timedelta(hours=float(max_age)):
                    failing[server.server_id] = f"last backup {when.isoformat()} is older " \
                                                f"than {max_age:g} h"
        if server.server_id not in failing and need_restore and info and not info.restore_tested:
            failing[server.server_id] = "restore never tested"
    data = {"failing": failing, "checked": len(ctx.servers)}
    if failing:
        listed = "; ".join(f"{sid}: {why}" for sid, why in sorted(failing.items()))
        where = f" (looked in: {'; '.join(facts.sources)})" if facts.sources else ""
        return Check("backups", FAIL, f"{len(failing)} server(s) lack a usable backup: "
                     f"{listed}{where}",
                     "take (and test) a backup of each named server, then re-run pre-flight",
                     data)
    return Check("backups", PASS, f"all {len(ctx.servers)} servers have a backup", data=data)


def residency_allows(requirement: str, cloud: str, region: str,
                     equivalents: dict[str, list[str]] | None = None) -> bool:
    req = requirement.strip().upper()
    if req in NO_CONSTRAINT:
        return True
    jurisdiction, country = REGION_JURISDICTION[cloud][region]
    allowed = {req} | RESIDENCY_ALIASES.get(req, set())
    allowed |= {e.upper() for e in (equivalents or {}).get(req, [])}
    return jurisdiction in allowed or country in allowed


def check_residency(ctx: PhaseContext, facts: SourceFacts) -> Check:
    cloud, region = ctx.plan.settings.cloud, ctx.plan.settings.region
    table = REGION_JURISDICTION.get(cloud, {})
    if region not in table:
        return Check("data_residency", FAIL, f"region {region!r} has no known jurisdiction",
                     "add it to preflight.REGION_JURISDICTION")
    jurisdiction, country = table[region]
    equivalents = ctx.options.preflight.residency_equivalents
    violations = {
        sid: req for sid, req in sorted(facts.residency.items())
        if req and not residency_allows(req, cloud, region, equivalents)
    }
    constrained = sum(1 for r in facts.residency.values() if r)
    data = {"region": region, "jurisdiction": jurisdiction, "country": country,
            "violations": violations}
    if violations:
        listed = "; ".join(f"{sid} requires {req}" for sid, req in violations.items())
        return Check("data_residency", FAIL,
                     f"target {region} is in {jurisdiction}/{country}, but {listed}",
                     "move these servers to a wave for a region in their jurisdiction, or "
                     f"record a legal basis in {conf_key('preflight.residency_equivalents')}",
                     data)
    return Check("data_residency", PASS,
                 f"{constrained} server(s) with a residency requirement, all satisfied by "
                 f"{region} ({jurisdiction})", data=data)


# -- the phase -----------------------------------------------------------------------

def _guard(name: str, func: Callable[[], Check]) -> Check:
    try:
        return func()
    except Exception as exc:
        log.exception("pre-flight check %s crashed", name)
        return Check(name, FAIL, f"check could not run: {type(exc).__name__}: {exc}",
                     "see the task log; fix the connection or input and re-run")


def run(ctx: PhaseContext, estate: Estate | dict[str, ServerRecord] | None = None) -> PhaseResult:
    """Run every check, write the report, fail with all reasons if any check fails."""
    target = target_cidr(ctx)
    facts = gather_facts(ctx, estate)
    adapter = adapter_for(ctx, PHASE)
    checks: list[Check] = []
    progress(ctx, f"pre-flight of {ctx.wave_tag}: {len(ctx.servers)} servers")

    creds = _guard("credentials", lambda: check_credentials(adapter, ctx))
    checks.append(creds)
    cloud_ok = not creds.failed
    skipped = "not checked: the credentials check failed"
    if cloud_ok:
        region = _guard("region", lambda: check_region(adapter, ctx))
        checks.append(region)
        sizing_box: dict[str, int] = {}

        def sizing() -> Check:
            result, vcpus = check_sizing(adapter, ctx)
            sizing_box.update(vcpus)
            return result

        checks.append(_guard("sizing", sizing))
        checks.append(_guard("images", lambda: check_images(adapter, ctx)))

        def quotas() -> Check:
            azs = region.data.get("availability_zones") or []
            try:
                design = design_wave(ctx.plan, ctx.wave_number, azs, vpc_cidr=target,
                                     source_networks=facts.networks.cidrs())
            except DesignError as exc:
                return Check("quotas", FAIL, f"the wave cannot be designed: {exc}",
                             "fix the plan as the message says")
            rules = max((len(g.rules) for g in design.security_groups), default=0)
            return check_quotas(adapter, ctx, sizing_box, rules, len(design.security_groups),
                                len(design.subnets))

        checks.append(_guard("quotas", quotas) if not region.failed
                      else Check("quotas", SKIP, "not checked: the region check failed"))
    else:
        checks += [Check(n, SKIP, skipped, "fix the credentials first")
                   for n in ("region", "sizing", "images", "quotas")]
    checks.append(_guard("cidr_conflicts", lambda: check_cidr(
        adapter if cloud_ok else None, ctx, facts, target)))
    checks.append(_guard("backups", lambda: check_backups(ctx, facts)))
    checks.append(_guard("data_residency", lambda: check_residency(ctx, facts)))

    failures = [c for c in checks if c.failed or c.status == SKIP]
    report = {
        "phase": PHASE,
        "estate": ctx.estate,
        "plan_version": ctx.plan.version,
        "wave": ctx.wave_number,
        "run_id": ctx.run_id,
        "cloud": ctx.plan.settings.cloud,
        "region": ctx.plan.settings.region,
        "target_cidr": target,
        "generated_at": datetime.now(UTC).isoformat(),
        "ok": not failures,
        "fact_sources": facts.sources,
        "checks": [asdict(c) for c in checks],
    }
    out = ctx.run_artifacts()
    json_path = write_json(out / "preflight.json", report)
    md_path = write_text(out / "preflight.md", render_markdown(report))
    summary_lines = [f"{c.name}: {c.detail}" for c in failures]
    details = {"report_json": str(json_path), "report_md": str(md_path),
               "checks": {c.name: c.status for c in checks}}
    if failures:
        message = (f"{len(failures)} check(s) failed for {ctx.wave_tag} — "
                   + " | ".join(f"{c.name}: {c.detail} → {c.remedy}" for c in failures)
                   + f" (report: {md_path})")
        raise PhaseFailed(PHASE, message, {**details, "failures": summary_lines})
    warnings = [c for c in checks if c.status == WARN]
    return PhaseResult(
        phase=PHASE,
        ok=True,
        summary=f"{len(checks)} checks passed for {ctx.wave_tag}"
                + (f" ({len(warnings)} warning(s))" if warnings else ""),
        details={**details, "warnings": [f"{c.name}: {c.detail}" for c in warnings]},
    )


def render_markdown(report: dict[str, Any]) -> str:
    marks = {PASS: "[x]", WARN: "[x] ⚠", FAIL: "[ ] ✗", SKIP: "[ ] –"}
    lines = [
        f"# Pre-flight: {report['estate']} wave {report['wave']}",
        "",
        f"- plan version: {report['plan_version']}",
        f"- run: {report['run_id']}",
        f"- target: {report['cloud']} {report['region']}, VPC {report['target_cidr']}",
        f"- generated: {report['generated_at']}",
        f"- result: **{'PASSED' if report['ok'] else 'FAILED'}**",
        "",
        "## Checklist",
        "",
    ]
    for check in report["checks"]:
        lines.append(f"- {marks[check['status']]} **{check['name']}** ({check['status']}): "
                     f"{check['detail']}")
        if check["remedy"] and check["status"] != PASS:
            lines.append(f"  - what to do: {check['remedy']}")
    if report.get("fact_sources"):
        lines += ["", "## Where source facts came from", ""]
        lines += [f"- {s}" for s in report["fact_sources"]]
    return "\n".join(lines) + "\n"
