"""The target infrastructure of one wave, derived from the plan without touching a cloud.

One pure function, ``design_wave``, turns the plan (servers, roles, observed ports,
dependencies, sizing) into a ``WaveDesign``. The provision phase applies that design
through a ``CloudAdapter`` and renders the same design as Terraform, so the API calls
and the Terraform a reviewer reads can never drift apart; a dry run stops after design.

Choices, so that a reader of a security group knows why a rule is there:

* the network (VPC, three tiers of subnets over two AZs, the private DNS zone) is the
  estate's *landing zone*, shared by every wave; everything else belongs to one wave;
* a server's group opens each observed port to the groups of its dependents in the
  same wave, to the tier CIDRs where dependents of other waves will live, and to the
  on-prem source networks while those dependents are still at the source; a port with
  no known client is open to the VPC only; web/api ports are open to their ALB;
* ``web`` servers sit behind an internet-facing ALB, ``api`` servers behind an
  internal one; databases, caches and queues live in the data tier.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from migrationbox.cloud.base import (
    TAG_ESTATE,
    TAG_NAME,
    TAG_SERVER,
    TAG_WAVE,
    SubnetSpec,
    landing_zone_tag,
    wave_tag,
)
from migrationbox.errors import InputError
from migrationbox.planning.models import PlanDocument, ServerPlan

DEFAULT_VPC_CIDR = "10.100.0.0/16"
DNS_SUFFIX = "migrationbox.internal"
TIERS = ("public", "private", "data")
HTTP_PORTS = frozenset({80, 443, 3000, 5000, 8000, 8080, 8443, 8888, 9000})
#: role keyword → tier; first match wins, anything else goes to the private tier.
_TIER_KEYWORDS: tuple[tuple[str, str], ...] = (
    ("vpn", "public"), ("bastion", "public"), ("jump", "public"),
    ("postgres", "data"), ("mysql", "data"), ("maria", "data"), ("mongo", "data"),
    ("redis", "data"), ("memcache", "data"), ("cache", "data"), ("database", "data"),
    ("db", "data"), ("sql", "data"), ("kafka", "data"), ("rabbit", "data"),
    ("queue", "data"), ("elastic", "data"), ("storage", "data"), ("nfs", "data"),
)
#: load-balanced roles and whether their ALB faces the internet.
LB_ROLES: dict[str, bool] = {"web": True, "api": False}
#: keep groups well under AWS's 60 inbound rules per group.
MAX_RULES_PER_GROUP = 50
_GRAVITON = re.compile(r"^(a1|[a-z]+\d+g[a-z]*)\.")


class DesignError(InputError):
    """The plan cannot be turned into infrastructure; the message names what to fix."""


def dns_zone(estate: str) -> str:
    """The private hosted zone of a migrated estate: ``<estate>.migrationbox.internal``."""
    return f"{estate}.{DNS_SUFFIX}"


def record_name(estate: str, hostname: str) -> str:
    """A server's name on the target: ``<short-hostname>.<estate>.migrationbox.internal``."""
    return f"{hostname.split('.', 1)[0].lower()}.{dns_zone(estate)}"


def tier_for_role(role: str | None) -> str:
    lowered = (role or "").lower()
    for keyword, tier in _TIER_KEYWORDS:
        if keyword in lowered:
            return tier
    return "private"


def lb_role(role: str | None) -> str | None:
    """``web`` or ``api`` when the server belongs behind a load balancer."""
    lowered = (role or "").lower()
    for name in LB_ROLES:
        if lowered == name or lowered.startswith(f"{name}-") or lowered.endswith(f"-{name}"):
            return name
    return None


def architecture(instance_type: str) -> str:
    """arm64 for Graviton families (m7g, c6gn, t4g, a1, ...), else x86_64."""
    return "arm64" if _GRAVITON.match(instance_type) else "x86_64"


def aws_name(value: str, limit: int) -> str:
    """An AWS-safe name (letters, digits, hyphens) of at most ``limit`` characters.

    Too long names keep a readable prefix and a hash suffix, so they stay deterministic
    and distinct.
    """
    clean = re.sub(r"[^A-Za-z0-9-]+", "-", value).strip("-")
    clean = re.sub(r"-{2,}", "-", clean)
    if len(clean) <= limit:
        return clean
    digest = hashlib.sha256(value.encode()).hexdigest()[:6]
    return f"{clean[: limit - 7].rstrip('-')}-{digest}"


def subnet_layout(estate: str, vpc_cidr: str, azs: list[str]) -> list[SubnetSpec]:
    """Three tiers × the AZs, each a /prefix+4 block in tier order (public, private, data)."""
    try:
        network = ipaddress.ip_network(vpc_cidr, strict=True)
    except ValueError as exc:
        raise DesignError(f"target VPC CIDR {vpc_cidr!r} is not a network: {exc}") from exc
    new_prefix = network.prefixlen + 4
    if network.version != 4 or new_prefix > 28:
        raise DesignError(
            f"target VPC CIDR {vpc_cidr}: need an IPv4 block of /24 or larger for "
            f"{len(TIERS) * len(azs)} subnets"
        )
    blocks = network.subnets(new_prefix=new_prefix)
    specs = []
    for tier in TIERS:
        for az in azs:
            specs.append(SubnetSpec(tier=tier, az=az, cidr=str(next(blocks)),
                                    name=f"mb-{estate}-{tier}-{az}"))
    return specs


@dataclass(frozen=True)
class RuleDesign:
    port: int
    protocol: str = "tcp"
    cidr: str | None = None
    source: str | None = None  # key of another SecurityGroupDesign
    description: str = ""


@dataclass(frozen=True)
class SecurityGroupDesign:
    key: str
    name: str
    purpose: str
    rules: tuple[RuleDesign, ...]
    server_id: str | None = None


@dataclass(frozen=True)
class InstanceDesign:
    server_id: str
    hostname: str
    role: str | None
    environment: str
    tier: str
    az: str
    subnet: str  # SubnetSpec.name
    instance_type: str
    architecture: str
    sg_key: str
    root_volume_gb: int | None
    record_name: str
    ports: tuple[int, ...]


@dataclass(frozen=True)
class TargetGroupDesign:
    key: str
    name: str
    port: int
    protocol: str
    health_check_path: str
    members: tuple[str, ...]  # server_ids


@dataclass(frozen=True)
class LoadBalancerDesign:
    key: str
    role: str
    name: str
    internal: bool
    sg_key: str
    subnets: tuple[str, ...]
    target_groups: tuple[TargetGroupDesign, ...]


@dataclass(frozen=True)
class WaveDesign:
    estate: str
    plan_version: int
    wave: int
    wave_tag: str
    landing_zone_tag: str
    cloud: str
    region: str
    vpc_name: str
    vpc_cidr: str
    azs: tuple[str, ...]
    subnets: tuple[SubnetSpec, ...]
    zone_name: str
    security_groups: tuple[SecurityGroupDesign, ...]
    instances: tuple[InstanceDesign, ...]
    load_balancers: tuple[LoadBalancerDesign, ...]
    source_networks: tuple[str, ...] = field(default_factory=tuple)

    def tags(self, name: str, server: str | None = None, landing: bool = False) -> dict[str, str]:
        tags = {
            TAG_ESTATE: self.estate,
            TAG_WAVE: self.landing_zone_tag if landing else self.wave_tag,
            TAG_NAME: name,
        }
        if server:
            tags[TAG_SERVER] = server
        return tags

    def subnets_of(self, tier: str) -> list[SubnetSpec]:
        return [s for s in self.subnets if s.tier == tier]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> dict[str, Any]:
        return {
            "vpc": {"name": self.vpc_name, "cidr": self.vpc_cidr},
            "subnets": [f"{s.name} {s.cidr}" for s in self.subnets],
            "security_groups": [g.name for g in self.security_groups],
            "instances": {i.server_id: i.instance_type for i in self.instances},
            "load_balancers": [lb.name for lb in self.load_balancers],
            "dns_zone": self.zone_name,
        }


def summarise_networks(cidrs: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """The smallest supernet of each private block (10/8, 172.16/12, 192.168/16) the
    networks fall in; other networks stay as they are.

    Used only when a server's security group would otherwise exceed its rule limit: one
    rule per port for the on-premise range is how such estates are usually admitted. It is
    wider than what discovery saw, so the design says so in the rule's description, and
    ``network.source_networks`` in the run conf sets the exact list instead.
    """
    blocks = [ipaddress.ip_network(b) for b in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")]
    grouped: dict[str, list[ipaddress.IPv4Network | ipaddress.IPv6Network]] = {}
    kept: list[str] = []
    for cidr in cidrs:
        net = ipaddress.ip_network(cidr, strict=False)
        block = next((b for b in blocks if net.version == 4 and net.subnet_of(b)), None)  # type: ignore[arg-type]
        if block is None:
            kept.append(str(net))
        else:
            grouped.setdefault(str(block), []).append(net)
    for nets in grouped.values():
        first = min(int(n.network_address) for n in nets)
        last = max(int(n.broadcast_address) for n in nets)
        prefix = 32 - (first ^ last).bit_length()
        kept.append(str(ipaddress.ip_network(f"{ipaddress.ip_address(first)}/{prefix}",
                                             strict=False)))
    return tuple(sorted(set(kept)))


def _dedupe(rules: list[RuleDesign]) -> tuple[RuleDesign, ...]:
    seen: dict[tuple[Any, ...], RuleDesign] = {}
    for rule in rules:
        seen.setdefault((rule.port, rule.protocol, rule.cidr, rule.source), rule)
    return tuple(sorted(seen.values(), key=lambda r: (r.port, r.cidr or "", r.source or "")))


def _lb_ports(server: ServerPlan) -> list[int]:
    if not server.ports:
        return [80]
    http = sorted(set(server.ports) & HTTP_PORTS)
    return http or [min(server.ports)]


def design_wave(
    plan: PlanDocument,
    wave_number: int,
    azs: list[str],
    *,
    vpc_cidr: str = DEFAULT_VPC_CIDR,
    source_networks: list[str] | None = None,
    health_check_path: str = "/health",
) -> WaveDesign:
    """The wave's infrastructure. Raises ``DesignError`` naming unsized servers."""
    wave = plan.wave(wave_number)
    if len(azs) < 2:
        raise DesignError(f"need at least two availability zones, got {azs}")
    azs = sorted(azs)[:2]
    estate = plan.estate
    region = plan.settings.region
    subnets = subnet_layout(estate, vpc_cidr, azs)
    tier_cidrs = {t: [s.cidr for s in subnets if s.tier == t] for t in TIERS}
    sources = tuple(sorted({str(ipaddress.ip_network(n, strict=False)) for n in
                            (source_networks or [])}))
    summarised_sources = summarise_networks(sources)
    in_wave = set(wave.server_ids)
    servers = [plan.server(sid) for sid in sorted(wave.server_ids)]
    unsized = [s.server_id for s in servers if s.sizing is None]
    if unsized:
        raise DesignError(
            f"wave {wave_number} of {estate} v{plan.version}: servers without sizing "
            f"(ServerPlan.sizing is empty): {', '.join(unsized)}; re-run planning with sizing"
        )
    dependents: dict[str, list[ServerPlan]] = {s.server_id: [] for s in plan.servers}
    for other in plan.servers:
        for dep in other.depends_on:
            dependents.setdefault(dep, []).append(other)

    def sg_key(server_id: str) -> str:
        return f"server:{server_id}"

    lb_members: dict[str, list[ServerPlan]] = {}
    for server in servers:
        role = lb_role(server.role)
        if role:
            lb_members.setdefault(role, []).append(server)

    def server_rules(server: ServerPlan, mode: str) -> tuple[RuleDesign, ...]:
        """Rules of one server's group; ``mode`` coarsens them when a group overflows.

        ``groups``: same-wave clients by group; ``tiers``: every client by its tier's
        CIDRs; ``vpc``: the whole VPC (plus source networks); ``vpc_summarised``: as
        ``vpc`` with the source networks summarised (``summarise_networks``).
        """
        rules: list[RuleDesign] = []
        role = lb_role(server.role)
        ports = sorted(set(server.ports) | (set(_lb_ports(server)) if role else set()))
        clients = sorted(dependents.get(server.server_id, []), key=lambda s: s.server_id)
        same = [c for c in clients if c.server_id in in_wave] if mode == "groups" else []
        other = [c for c in clients if c not in same]
        for port in ports:
            for client in same:
                rules.append(RuleDesign(port, source=sg_key(client.server_id),
                                        description=f"client {client.server_id}"))
            for client in other:
                tier = tier_for_role(client.role)
                for cidr in tier_cidrs[tier] if mode == "groups" or mode == "tiers" \
                        else [vpc_cidr]:
                    rules.append(RuleDesign(port, cidr=cidr, description=(
                        f"{tier} tier clients, e.g. {client.server_id}")))
            if any(c.server_id not in in_wave for c in clients):
                summarised = mode == "vpc_summarised"
                for cidr in summarised_sources if summarised else sources:
                    rules.append(RuleDesign(port, cidr=cidr, description=(
                        "source network clients during migration"
                        + (" (summarised on-premise range)" if summarised else ""))))
            if role and port in _lb_ports(server):
                rules.append(RuleDesign(port, source=f"alb:{role}", description=f"{role} ALB"))
            if not clients and not role:
                rules.append(RuleDesign(port, cidr=vpc_cidr,
                                        description="observed port, no known client: VPC only"))
        return _dedupe(rules)

    groups: list[SecurityGroupDesign] = []
    for server in servers:
        for mode in ("groups", "tiers", "vpc", "vpc_summarised"):
            rules = server_rules(server, mode)
            if len(rules) <= MAX_RULES_PER_GROUP:
                break
        else:
            raise DesignError(
                f"server {server.server_id}: {len(server.ports)} ports need {len(rules)} "
                f"inbound rules, more than {MAX_RULES_PER_GROUP} per security group; "
                f"trim ServerPlan.ports or the source networks"
            )
        groups.append(SecurityGroupDesign(
            key=sg_key(server.server_id),
            name=f"mb-{estate}-{server.server_id}",
            purpose=f"{server.hostname} ({server.role or 'server'})",
            rules=rules,
            server_id=server.server_id,
        ))

    load_balancers: list[LoadBalancerDesign] = []
    for role in sorted(lb_members):
        internet = LB_ROLES[role]
        members = lb_members[role]
        ports = sorted({p for m in members for p in _lb_ports(m)})
        base = f"mb-{estate}-w{wave_number:02d}-{role}"
        if internet:
            alb_rules = [RuleDesign(p, cidr="0.0.0.0/0", description="internet") for p in ports]
        else:
            alb_rules = [RuleDesign(p, cidr=vpc_cidr, description="VPC clients") for p in ports]
            alb_rules += [RuleDesign(p, cidr=c, description="source network clients")
                          for p in ports for c in sources]
        groups.append(SecurityGroupDesign(
            key=f"alb:{role}", name=f"{base}-alb", purpose=f"{role} load balancer",
            rules=_dedupe(alb_rules),
        ))
        tgs = tuple(
            TargetGroupDesign(
                key=f"tg:{role}:{port}",
                name=aws_name(f"{base}-{port}", 32),
                port=port,
                protocol="HTTPS" if port in (443, 8443) else "HTTP",
                health_check_path=health_check_path,
                members=tuple(m.server_id for m in members if port in _lb_ports(m)),
            )
            for port in ports
        )
        load_balancers.append(LoadBalancerDesign(
            key=f"alb:{role}", role=role, name=aws_name(base, 32), internal=not internet,
            sg_key=f"alb:{role}",
            subnets=tuple(s.name for s in subnets if s.tier == ("public" if internet
                                                                 else "private")),
            target_groups=tgs,
        ))

    instances: list[InstanceDesign] = []
    tier_index: dict[str, int] = {}
    for server in servers:
        assert server.sizing is not None
        tier = tier_for_role(server.role)
        index = tier_index.get(tier, 0)
        tier_index[tier] = index + 1
        az = azs[index % len(azs)]
        storage = server.sizing.storage_gb or server.data_size_gb
        instances.append(InstanceDesign(
            server_id=server.server_id,
            hostname=server.hostname,
            role=server.role,
            environment=server.environment,
            tier=tier,
            az=az,
            subnet=f"mb-{estate}-{tier}-{az}",
            instance_type=server.sizing.instance_type,
            architecture=architecture(server.sizing.instance_type),
            sg_key=sg_key(server.server_id),
            root_volume_gb=int(-(-storage // 1)) if storage else None,
            record_name=record_name(estate, server.hostname),
            ports=tuple(sorted(server.ports)),
        ))

    return WaveDesign(
        estate=estate,
        plan_version=plan.version,
        wave=wave_number,
        wave_tag=wave_tag(estate, wave_number),
        landing_zone_tag=landing_zone_tag(estate),
        cloud=plan.settings.cloud,
        region=region,
        vpc_name=f"mb-{estate}",
        vpc_cidr=vpc_cidr,
        azs=tuple(azs),
        subnets=tuple(subnets),
        zone_name=dns_zone(estate),
        security_groups=tuple(groups),
        instances=tuple(instances),
        load_balancers=tuple(load_balancers),
        source_networks=sources,
    )
