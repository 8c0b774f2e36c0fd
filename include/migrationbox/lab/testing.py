"""A tiny hand-made plan for lab tests and quick demos of the data-plane phases.

Wave 1 holds one server of each lab kind: a PostgreSQL database (``db-01``), an API
(``api-01``, uses the database), a web server (``web-01``, uses the API) and a DNS server
(``dns-01``, disk only). Wave 2 holds a monitoring server that watches the web server,
so host names outside the wave appear in the plan too.
"""

from __future__ import annotations

from datetime import UTC, datetime

from migrationbox.planning.models import (
    MoveGroup,
    PlanDocument,
    PlanSettings,
    ServerPlan,
    Sizing,
    Wave,
)

#: instance type → (vCPU, GiB, USD per hour), us-east-1 on-demand Linux
PRICES = {
    "t3.small": (2, 2.0, 0.0208),
    "t3.medium": (2, 4.0, 0.0416),
    "m5.large": (2, 8.0, 0.096),
    "r5.large": (2, 16.0, 0.126),
}

#: server_id, hostname, role, ports, depends_on, instance type, data GB, wave
SERVERS = [
    ("dns-01", "dns-01.company.local", "dns", [53], [], "t3.small", 2, 1),
    ("db-01", "db-prod-01.company.local", "postgresql", [5432], ["dns-01"], "r5.large", 40, 1),
    ("api-01", "api-prod-01.company.local", "api", [8080], ["db-01", "dns-01"], "m5.large", 5, 1),
    ("web-01", "web-prod-01.company.local", "web", [80, 443], ["api-01"], "t3.medium", 3, 1),
    ("mon-01", "mon-01.company.local", "monitoring", [9090], ["web-01"], "t3.small", 10, 2),
]


def sizing(instance_type: str) -> Sizing:
    vcpu, mem, hourly = PRICES[instance_type]
    return Sizing(
        method="rule:peak*1.3", required_vcpu=vcpu * 0.5, required_memory_gib=mem * 0.5,
        instance_type=instance_type, vcpu=vcpu, memory_gib=mem, hourly_usd=hourly,
        monthly_usd=round(hourly * 730, 2), price_source="hand-written test prices",
    )


def tiny_plan(estate: str) -> PlanDocument:
    servers = [
        ServerPlan(server_id=sid, hostname=host, environment="production", role=role,
                   criticality=0.2, move_group=f"mg-{sid}", depends_on=deps, ports=ports,
                   data_size_gb=gb, sizing=sizing(itype))
        for sid, host, role, ports, deps, itype, gb, _ in SERVERS
    ]
    waves = []
    for number in (1, 2):
        ids = [s[0] for s in SERVERS if s[7] == number]
        waves.append(Wave(
            number=number, name=f"wave {number}", server_ids=ids,
            move_groups=[f"mg-{i}" for i in ids], depends_on_waves=[1] if number == 2 else [],
            environment="production", criticality=0.2, estimated_hours=1.0,
            needs_approval=False,
            predicted_monthly_usd=round(sum(
                sizing(s[5]).monthly_usd for s in SERVERS if s[7] == number), 2),
        ))
    return PlanDocument(
        estate=estate, version=1, created_at=datetime(2026, 5, 1, tzinfo=UTC),
        settings=PlanSettings(), servers=servers,
        move_groups=[MoveGroup(group_id=f"mg-{s[0]}", server_ids=[s[0]]) for s in SERVERS],
        waves=waves,
    )
