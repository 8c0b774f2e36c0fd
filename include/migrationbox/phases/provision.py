"""Phase 2, provision: build the wave's target infrastructure, idempotently.

``iac.design.design_wave`` turns the plan into a ``WaveDesign``; this module renders it
as Terraform into the run's artifacts and, unless the run is a dry run, applies it
through the cloud adapter: the landing zone (VPC, public/private/data subnets over two
AZs, internet access, private hosted zone ``<estate>.migrationbox.internal``), then the
wave's security groups, instances (waiting until running), CPU alarms, load balancers
with target groups and listeners, and an A record per server.

Every adapter call looks before it creates, so re-running after a failure or a success
creates nothing new. What exists afterwards is handed to later tasks as the wave's
``provisioned`` state (``phases.handoff``: the store in the wave DAG, the wave folder's
``provisioned.json`` when the phase is called on its own; read with ``read_state``),
written to the run folder as a report, and announced through the ``on_resource``
collaborator for the store's ledger.

Each instance boots an image that fits its server's source OS (``cloud.images``:
discovered OS and version → the cloud's image, the SQL Server edition where the plan
flags one); a wave with a server no image fits is refused before anything is created,
naming the server, its OS and the images that do exist. A plan written before plans
carried the source OS boots the adapter's default image, as before.

The security groups admit the estate's source networks (``phases.networks``: the run
conf's ``network.source_networks``, else the discovery records in the store), the same
networks pre-flight checked the target VPC against.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from migrationbox.cloud.base import CloudAdapter, ImageChoice, IngressRule, dns_record_id
from migrationbox.cloud.images import images_for_servers
from migrationbox.iac.design import DesignError, WaveDesign, design_wave
from migrationbox.iac.render import RenderError, write_terraform
from migrationbox.phases import handoff
from migrationbox.phases._cloud import adapter_for, progress, target_cidr, write_json
from migrationbox.phases.context import OnResource, PhaseContext, PhaseFailed, PhaseResult
from migrationbox.phases.networks import RecordsLoader, load_estate_records, source_networks

PHASE = "provision"
STATE_FILE = "provisioned.json"


def build_design(ctx: PhaseContext, azs: list[str],
                 loader: RecordsLoader = load_estate_records) -> WaveDesign:
    """The wave's design, with the source networks pre-flight checked."""
    networks = source_networks(ctx, loader)
    bad = networks.invalid()
    if bad:
        raise PhaseFailed(PHASE, f"source networks that are not CIDRs ({networks.origin}): "
                                 f"{', '.join(bad)}; fix them and re-run")
    if not networks.cidrs():
        ctx.log.warning("no source networks (%s): the security groups admit none",
                        networks.origin)
    try:
        return design_wave(
            ctx.plan,
            ctx.wave_number,
            azs,
            vpc_cidr=target_cidr(ctx),
            source_networks=networks.cidrs(),
            health_check_path=ctx.options.provision.health_check_path,
        )
    except DesignError as exc:
        raise PhaseFailed(PHASE, str(exc)) from exc


def render_terraform(design: WaveDesign, out_dir: Path) -> Path:
    """``out_dir/main.tf`` for the design (formatted by ``terraform fmt`` when present)."""
    context = {**design.to_dict(), "tags": design.tags}
    try:
        return write_terraform(design.cloud, context, out_dir)
    except RenderError as exc:
        raise PhaseFailed(PHASE, f"Terraform rendering failed: {exc}") from exc


def _rules(design: WaveDesign, key: str, sg_ids: dict[str, str], with_groups: bool) -> list[
    IngressRule
]:
    group = next(g for g in design.security_groups if g.key == key)
    out = []
    for rule in group.rules:
        if rule.cidr:
            out.append(IngressRule(rule.port, rule.protocol, cidr=rule.cidr,
                                   description=rule.description))
        elif with_groups:
            out.append(IngressRule(rule.port, rule.protocol, source_group=sg_ids[rule.source or ""],
                                   description=rule.description))
    return out


def choose_images(ctx: PhaseContext, adapter: CloudAdapter,
                  phase: str = PHASE) -> dict[str, ImageChoice | None]:
    """Server id → the image that fits its source OS (None: the adapter's default, for a
    plan without OS facts); ``PhaseFailed`` naming every server no image fits."""
    chosen, refused = images_for_servers(adapter, ctx.servers)
    if refused:
        raise PhaseFailed(phase, f"no {ctx.plan.settings.cloud} image fits "
                                 f"{len(refused)} server(s) of {ctx.wave_tag}: "
                                 + " | ".join(refused)
                                 + ". Nothing was created: re-platform these servers or move "
                                   "them to another wave")
    return chosen


def image_summary(images: dict[str, ImageChoice | None]) -> dict[str, Any]:
    return {sid: ({"image_id": c.image_id, "name": c.name, "match": c.match, "rule": c.rule,
                   "platform": c.platform} if c is not None else None)
            for sid, c in sorted(images.items())}


def apply(
    design: WaveDesign,
    adapter: CloudAdapter,
    on_resource: OnResource | None = None,
    report: Callable[[str], None] | None = None,
    images: dict[str, ImageChoice | None] | None = None,
) -> dict[str, Any]:
    """Make the cloud match the design; return ids of everything it relies on.

    ``images``: server id → the image its instance boots (``choose_images``); a server
    without one boots the adapter's default image.
    """
    images = images or {}

    def record(kind: str, rid: str, name: str, tags: dict[str, str]) -> None:
        if on_resource is not None:
            on_resource(kind, rid, name, tags)

    def say(message: str) -> None:
        if report is not None:
            report(message)

    lz_vpc_tags = design.tags(design.vpc_name, landing=True)
    vpc_id = adapter.ensure_vpc(design.vpc_cidr, lz_vpc_tags)
    record("vpc", vpc_id, design.vpc_name, lz_vpc_tags)
    subnet_ids = adapter.ensure_subnets(vpc_id, list(design.subnets), lz_vpc_tags)
    for spec in design.subnets:
        record("subnet", subnet_ids[spec.name], spec.name, design.tags(spec.name, landing=True))
    public = [subnet_ids[s.name] for s in design.subnets_of("public")]
    igw_id = adapter.ensure_internet_access(vpc_id, public, lz_vpc_tags)
    record("internet_gateway", igw_id, f"{design.vpc_name}-igw", lz_vpc_tags)
    zone_tags = design.tags(design.zone_name, landing=True)
    zone_id = adapter.ensure_hosted_zone(design.zone_name, zone_tags, vpc_id=vpc_id)
    record("hosted_zone", zone_id, design.zone_name, zone_tags)
    say(f"landing zone ready: {vpc_id} ({design.vpc_cidr}), {len(subnet_ids)} subnets, "
        f"zone {design.zone_name}")

    # Groups may reference each other (dependency cycles): create them all first with
    # their CIDR rules, never revoking, then reconcile every group to its full rule set.
    sg_ids: dict[str, str] = {}
    for group in design.security_groups:
        tags = design.tags(group.name, server=group.server_id)
        sg_ids[group.key] = adapter.ensure_security_group(
            group.name, vpc_id, _rules(design, group.key, sg_ids, False), tags, prune=False
        )
        record("security_group", sg_ids[group.key], group.name, tags)
    for group in design.security_groups:
        adapter.ensure_security_group(
            group.name, vpc_id, _rules(design, group.key, sg_ids, True),
            design.tags(group.name, server=group.server_id), prune=True,
        )
    say(f"{len(sg_ids)} security groups reconciled")

    instance_ids: dict[str, str] = {}
    for inst in design.instances:
        tags = design.tags(inst.hostname, server=inst.server_id)
        ids = adapter.ensure_instances(
            inst.server_id, inst.instance_type, subnet_ids[inst.subnet], [sg_ids[inst.sg_key]],
            tags, count=1, root_volume_gb=inst.root_volume_gb, wait=False,
            image_id=images[inst.server_id].image_id if images.get(inst.server_id) else None,
        )
        instance_ids[inst.server_id] = ids[0]
        record("instance", ids[0], inst.hostname, tags)
    adapter.wait_running(sorted(instance_ids.values()))
    states = adapter.describe_instances(sorted(instance_ids.values()))
    say(f"{len(instance_ids)} instances running")

    for inst in design.instances:
        name = f"mb-{design.estate}-{inst.server_id}-cpu-high"
        tags = design.tags(name, server=inst.server_id)
        adapter.ensure_cpu_alarm(name, instance_ids[inst.server_id], tags)
        record("alarm", name, name, tags)

    load_balancers: dict[str, Any] = {}
    for lb in design.load_balancers:
        lb_tags = design.tags(lb.name)
        created = adapter.ensure_load_balancer(
            lb.name, [subnet_ids[s] for s in lb.subnets], [sg_ids[lb.sg_key]], lb_tags,
            internal=lb.internal,
        )
        record("load_balancer", created.arn, lb.name, lb_tags)
        groups = []
        for tg in lb.target_groups:
            tg_tags = design.tags(tg.name)
            tg_arn = adapter.ensure_target_group(tg.name, vpc_id, tg.port, tg_tags,
                                                 tg.health_check_path)
            record("target_group", tg_arn, tg.name, tg_tags)
            listener = adapter.ensure_listener(created.arn, tg.port, tg_arn, tg_tags)
            record("listener", listener, f"{lb.name}:{tg.port}", tg_tags)
            members = [instance_ids[m] for m in tg.members]
            adapter.register_targets(tg_arn, members, tg.port)
            groups.append({"arn": tg_arn, "name": tg.name, "port": tg.port,
                           "protocol": tg.protocol, "members": list(tg.members),
                           "listener_arn": listener})
        load_balancers[lb.role] = {"arn": created.arn, "name": lb.name,
                                   "dns_name": created.dns_name, "internal": lb.internal,
                                   "target_groups": groups}
    if load_balancers:
        say(f"load balancers ready: {', '.join(sorted(load_balancers))}")

    records: dict[str, str] = {}
    weighted: list[str] = []
    for inst in design.instances:
        ip = states[instance_ids[inst.server_id]].private_ip
        if not ip:
            raise PhaseFailed(PHASE, f"instance {instance_ids[inst.server_id]} of "
                              f"{inst.server_id} has no private IP")
        existing = adapter.get_records(zone_id, inst.record_name)
        if any(r.get("set_identifier") for r in existing):
            weighted.append(inst.record_name)  # cutover owns this name now
        else:
            adapter.upsert_record(zone_id, inst.record_name, ip)
            record("dns_record", dns_record_id(zone_id, inst.record_name, "A"), inst.record_name,
                   design.tags(inst.record_name, server=inst.server_id))
        records[inst.record_name] = ip

    return {
        "estate": design.estate,
        "plan_version": design.plan_version,
        "wave": design.wave,
        "wave_tag": design.wave_tag,
        "cloud": design.cloud,
        "region": design.region,
        "vpc_id": vpc_id,
        "vpc_cidr": design.vpc_cidr,
        "subnets": subnet_ids,
        "internet_gateway_id": igw_id,
        "zone_id": zone_id,
        "zone_name": design.zone_name,
        "security_groups": {g.name: sg_ids[g.key] for g in design.security_groups},
        "instances": {
            inst.server_id: {
                "instance_id": instance_ids[inst.server_id],
                "instance_type": states[instance_ids[inst.server_id]].instance_type,
                "state": states[instance_ids[inst.server_id]].state,
                "private_ip": states[instance_ids[inst.server_id]].private_ip,
                "hostname": inst.hostname,
                "record_name": inst.record_name,
                "subnet": inst.subnet,
                "az": inst.az,
                "image": image_summary(images).get(inst.server_id),
            }
            for inst in design.instances
        },
        "load_balancers": load_balancers,
        "records": records,
        "records_left_to_cutover": weighted,
    }


def run(ctx: PhaseContext) -> PhaseResult:
    adapter = adapter_for(ctx, PHASE)
    azs = list(ctx.options.provision.availability_zones or adapter.availability_zones())
    design = build_design(ctx, azs)
    images = choose_images(ctx, adapter)
    out = ctx.run_artifacts()
    tf_path = render_terraform(design, out / "terraform")
    write_json(out / "design.json", design.to_dict())
    progress(ctx, f"Terraform for {ctx.wave_tag} rendered to {tf_path}")
    if ctx.dry_run:
        return PhaseResult(
            phase=PHASE,
            ok=True,
            summary=(f"dry run: would provision {len(design.instances)} instances, "
                     f"{len(design.security_groups)} security groups, "
                     f"{len(design.load_balancers)} load balancers in {design.region}"),
            details={"dry_run": True, "terraform": str(tf_path), "design": design.summary(),
                     "images": image_summary(images)},
        )
    try:
        state = apply(design, adapter, ctx.collaborators.on_resource,
                      lambda message: progress(ctx, message), images)
    except PhaseFailed:
        raise
    except Exception as exc:
        raise PhaseFailed(
            PHASE,
            f"{type(exc).__name__}: {exc}. Re-running provision resumes where it stopped "
            f"(it creates nothing twice); rollback removes everything tagged {ctx.wave_tag}",
        ) from exc
    state["terraform"] = str(tf_path)
    state["run_id"] = ctx.run_id
    write_json(out / STATE_FILE, state)  # the run's report
    handed = handoff.put(ctx, handoff.PROVISIONED, state, run_scoped=False)
    return PhaseResult(
        phase=PHASE,
        ok=True,
        summary=(f"{len(state['instances'])} instances running in {state['vpc_id']}, "
                 f"{len(state['load_balancers'])} load balancers, "
                 f"{len(state['records'])} DNS records in {state['zone_name']}"),
        details={
            "vpc_id": state["vpc_id"],
            "zone_id": state["zone_id"],
            "instances": {k: v["instance_id"] for k, v in state["instances"].items()},
            "load_balancers": {k: v["dns_name"] for k, v in state["load_balancers"].items()},
            "terraform": str(tf_path),
            "state": handed.where,
            "state_written_by": handed.written_by,
            "images": image_summary(images),
        },
    )


def read_state(ctx: PhaseContext) -> dict[str, Any] | None:
    """What the last successful provision of this wave left (``None`` if none; never
    ``{}``: a caller that needs it uses ``handoff.require``)."""
    found = handoff.get(ctx, handoff.PROVISIONED, run_scoped=False)
    return None if found is None else dict(found.payload)
