"""The plan document: what planning produces and everything downstream consumes.

Planning writes it to the store (versioned) and exports it as JSON; the wave-DAG file
reads a compact spec derived from it; phases read server details and sizing from it.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Sizing(_Frozen):
    """The instance chosen for one server and why."""

    cloud: str = "aws"
    region: str = "us-east-1"
    method: str = Field(description="e.g. 'rule:peak*1.3' or 'model:balanced'")
    required_vcpu: float
    required_memory_gib: float
    instance_type: str
    vcpu: int
    memory_gib: float
    hourly_usd: float
    monthly_usd: float
    storage_gb: float = 0
    storage_monthly_usd: float = 0
    price_source: str = Field(description="provenance of the price, with its date")


class SourceOs(_Frozen):
    """The discovered operating system: what the target image must fit."""

    type: str = Field(description="Linux or Windows, as discovered")
    name: str = Field(description="distribution if discovered, else type: the name "
                                  "``CloudAdapter.image_for`` matches")
    version: str | None = None
    architecture: str | None = None


class LicenceNote(_Frozen):
    """Licence-bearing software the target image must include, and what it may cost.

    ``assumed_monthly_usd`` is an assumption, not a price: the project's price data has
    no Windows or SQL Server licence prices, so the figure applies the named per-vCPU
    rates of ``sizing.clouds.assumptions`` (stated in ``basis``) to the planned machine.
    It is ``None`` when the server was not sized (no vCPU count to apply them to).
    """

    windows: bool = False
    sql_server: str | None = Field(default=None, description="standard or enterprise")
    rhel: bool = False
    note: str
    assumed_monthly_usd: float | None = None
    basis: str


class ServerPlan(_Frozen):
    server_id: str
    hostname: str
    environment: str
    role: str | None = None
    criticality: float = Field(description="PageRank on the dependency graph, 0..1")
    move_group: str
    depends_on: list[str] = Field(default_factory=list, description="server_ids")
    ports: list[int] = Field(default_factory=list)
    data_size_gb: float = 0
    sizing: Sizing | None = None
    os: SourceOs | None = None
    licence: LicenceNote | None = Field(
        default=None, description="set when the target needs a licence-included image "
                                  "(Windows Server, SQL Server, RHEL)")
    live: bool = Field(
        default=False, description="migrated live: pre-copy with changed-block tracking "
                                   "while it runs, then a short measured freeze at cutover")


class MoveGroup(_Frozen):
    """Servers that must move together (a dependency cycle, or a single server)."""

    group_id: str
    server_ids: list[str]
    is_cycle: bool = False


class Wave(_Frozen):
    number: int = Field(ge=1)
    name: str
    server_ids: list[str]
    move_groups: list[str]
    depends_on_waves: list[int] = Field(default_factory=list)
    environment: str = Field(description="production, non-production or mixed")
    criticality: float = Field(description="highest server criticality in the wave")
    estimated_hours: float
    needs_approval: bool
    approval_reasons: list[str] = Field(default_factory=list)
    predicted_monthly_usd: float = 0


class PlanSettings(_Frozen):
    max_servers_per_wave: int = Field(default=40, ge=1)
    non_production_first: bool = True
    comfort_factor: float = Field(default=1.3, gt=0)
    sizing_option: str = Field(
        default="balanced",
        pattern=r"^(conservative|balanced|aggressive)$",
        description="which of the three sizing options the plan provisions",
    )
    use_safe_variant: bool = Field(
        default=True, description="when the option is unsafe for a server, use its safe variant"
    )
    cloud: str = "aws"
    region: str = "us-east-1"
    replication_mbps: float = Field(default=1000, gt=0, description="sustained copy bandwidth")
    approval_criticality: float = Field(
        default=0.05, ge=0, description="waves holding a server above this need approval"
    )


class PlanDocument(_Frozen):
    estate: str
    version: int = Field(ge=1, default=1)
    created_at: datetime
    settings: PlanSettings
    servers: list[ServerPlan]
    move_groups: list[MoveGroup]
    waves: list[Wave]
    warnings: list[str] = Field(default_factory=list)
    notes: list[str] = Field(
        default_factory=list,
        description="provenance shown with the plan: price dates, assumptions, risk, model",
    )

    def server(self, server_id: str) -> ServerPlan:
        for s in self.servers:
            if s.server_id == server_id:
                return s
        raise KeyError(f"plan {self.estate} v{self.version} has no server {server_id!r}")

    def wave(self, number: int) -> Wave:
        for w in self.waves:
            if w.number == number:
                return w
        raise KeyError(f"plan {self.estate} v{self.version} has no wave {number}")
