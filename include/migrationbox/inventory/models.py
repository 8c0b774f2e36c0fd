"""The discovery record: what the agent reports about one on-premise server.

The required core is the plan's example record (server_id, hostname, ip_addresses, os,
hardware, applications, network_dependencies, performance_baseline); every other
dimension of the plan (storage, network configuration, security, OS detail, workload
context) is typed but optional, so that exports from other tools still load. Unknown
keys are kept (``extra="allow"``) rather than rejected: agents add fields faster than
schemas change, and dropping data silently would be worse.
"""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from ipaddress import ip_address
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

SERVER_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"
_DEST_RE = re.compile(r"^(?P<host>[A-Za-z0-9._-]+|\[[0-9a-fA-F:]+\]):(?P<port>\d{1,5})$")

Port = Annotated[int, Field(ge=1, le=65535)]
Percent = Annotated[float, Field(ge=0, le=100)]
#: Every other measurement (GB, IOPS, MB/s, MHz, Gbit/s, days) is at most 10^9: far
#: above any real server (an exabyte of disk), far below what would overflow sums and
#: cost figures. A 1e300 from a broken agent is refused by name, not sized.
PLAUSIBLE_MAX = 1e9
NonNegative = Annotated[float, Field(ge=0, le=PLAUSIBLE_MAX)]


class _Model(BaseModel):
    # NaN/Infinity are refused by field (records built in memory; the JSON loader
    # already quarantines them with their path)
    model_config = ConfigDict(extra="allow", populate_by_name=True, str_strip_whitespace=True,
                              allow_inf_nan=False)


class Environment(StrEnum):
    production = "production"
    staging = "staging"
    test = "test"
    development = "development"

    @property
    def is_production(self) -> bool:
        return self is Environment.production


class OperatingSystem(_Model):
    type: str = Field(min_length=1, description="Linux or Windows")
    distribution: str | None = None
    version: str | None = None
    kernel: str | None = None
    architecture: str | None = Field(default=None, description="x86_64 or arm64")
    installed_packages: list[str] = Field(default_factory=list)
    running_services: list[str] = Field(default_factory=list)
    cron_jobs: list[str] = Field(default_factory=list)
    systemd_units: list[str] = Field(default_factory=list)


class Hardware(_Model):
    cpu_cores: int = Field(ge=1, le=4096)
    cpu_model: str | None = None
    cpu_mhz: NonNegative | None = None
    ram_gb: float = Field(gt=0, le=65536)
    ram_speed_mhz: NonNegative | None = None
    disk_total_gb: NonNegative = 0
    disk_type: str | None = None
    disk_iops_max: NonNegative | None = None
    disk_throughput_mbps: NonNegative | None = None
    network_bandwidth_gbps: NonNegative | None = None
    virtualization: str | None = Field(default=None, description="vmware, hyper-v, kvm, physical")


class Application(_Model):
    name: str = Field(min_length=1)
    version: str | None = None
    ports: list[Port] = Field(default_factory=list)
    dependencies: list[str] = Field(
        default_factory=list,
        description="libraries, or other servers as 'server_id' / 'host:port'",
    )
    config_files: list[str] = Field(default_factory=list)
    data_size_gb: NonNegative | None = None
    backup_schedule: str | None = None
    kind: str | None = Field(default=None, description="web, api, database, cache, queue, ...")


class NetworkDependency(_Model):
    destination: str = Field(description="host:port of the peer, as observed")
    protocol: str | None = None
    frequency_per_hour: Annotated[float, Field(ge=0, le=1e12)] | None = None

    @field_validator("destination")
    @classmethod
    def _host_port(cls, value: str) -> str:
        if not _DEST_RE.match(value):
            raise ValueError(f"destination must be 'host:port', got {value!r}")
        port = int(value.rsplit(":", 1)[1])
        if not 1 <= port <= 65535:
            raise ValueError(f"port {port} out of range 1-65535")
        return value

    @property
    def host(self) -> str:
        return self.destination.rsplit(":", 1)[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.destination.rsplit(":", 1)[1])


class PerformanceBaseline(_Model):
    cpu_avg_utilization_pct: Percent
    memory_avg_utilization_pct: Percent
    disk_iops_avg: NonNegative | None = None
    network_throughput_mbps: NonNegative | None = None
    cpu_p95_utilization_pct: Percent | None = None
    cpu_peak_utilization_pct: Percent | None = None
    memory_p95_utilization_pct: Percent | None = None
    memory_peak_utilization_pct: Percent | None = None
    disk_read_mbps: NonNegative | None = None
    disk_write_mbps: NonNegative | None = None
    sample_days: NonNegative | None = Field(default=None, description="window of the averages")


class Filesystem(_Model):
    mount_point: str
    fs_type: str | None = None
    size_gb: NonNegative
    used_gb: NonNegative | None = None
    device: str | None = None


class Storage(_Model):
    filesystems: list[Filesystem] = Field(default_factory=list)
    lvm: bool | None = None
    raid_level: str | None = None
    snapshot_schedule: str | None = None


class FirewallRule(_Model):
    direction: str = "inbound"
    protocol: str = "tcp"
    port: Port | None = None
    source: str | None = None
    action: str = "allow"


class NetworkConfig(_Model):
    firewall_rules: list[FirewallRule] = Field(default_factory=list)
    routes: list[str] = Field(default_factory=list)
    dns_servers: list[str] = Field(default_factory=list)
    vpn_connections: list[str] = Field(default_factory=list)
    subnets: list[str] = Field(default_factory=list, description="CIDRs the server lives in")


class Certificate(_Model):
    subject: str
    issuer: str | None = None
    expires_at: datetime | None = None


class Security(_Model):
    open_ports: list[Port] = Field(default_factory=list)
    certificates: list[Certificate] = Field(default_factory=list)
    encryption_at_rest: bool | None = None
    compliance_baselines: list[str] = Field(default_factory=list)


class Backup(_Model):
    available: bool = False
    last_backup_at: datetime | None = None
    tool: str | None = None
    restore_tested: bool | None = None


class ServerRecord(_Model):
    """One server of the estate, as discovered."""

    server_id: str = Field(pattern=SERVER_ID_PATTERN)
    hostname: str = Field(min_length=1, max_length=255)
    ip_addresses: list[str] = Field(min_length=1)
    os: OperatingSystem
    hardware: Hardware
    applications: list[Application] = Field(default_factory=list)
    network_dependencies: list[NetworkDependency] = Field(default_factory=list)
    performance_baseline: PerformanceBaseline | None = Field(
        description="required key; null means not measured (e.g. an RVTools import, which "
                    "knows allocation but not utilisation): nothing is invented for it")
    # optional dimensions of the plan
    environment: Environment = Environment.production
    role: str | None = Field(default=None, description="dns, ldap, database, web, api, ...")
    tags: dict[str, str] = Field(default_factory=dict)
    datacenter: str | None = None
    data_residency: str | None = Field(default=None, description="e.g. EU, US: where data may live")
    data_classification: str | None = None
    storage: Storage | None = None
    network: NetworkConfig | None = None
    security: Security | None = None
    backup: Backup | None = None
    discovered_at: datetime | None = None

    @field_validator("ip_addresses")
    @classmethod
    def _valid_ips(cls, values: list[str]) -> list[str]:
        for value in values:
            try:
                ip_address(value)
            except ValueError as exc:
                raise ValueError(f"{value!r} is not an IP address") from exc
        return values

    @model_validator(mode="after")
    def _no_self_dependency(self) -> ServerRecord:
        names = {self.server_id, self.hostname, self.short_hostname, *self.ip_addresses}
        for dep in self.network_dependencies:
            if dep.host in names:
                raise ValueError(
                    f"network_dependencies: {dep.destination!r} points at the server itself"
                )
        return self

    @property
    def short_hostname(self) -> str:
        return self.hostname.split(".", 1)[0]

    @property
    def is_production(self) -> bool:
        return self.environment.is_production

    @property
    def data_size_gb(self) -> float:
        """Data that must be replicated: application data if known, else used disk."""
        app_data = sum(a.data_size_gb or 0 for a in self.applications)
        if app_data:
            return app_data
        if self.storage and self.storage.filesystems:
            return sum((f.used_gb if f.used_gb is not None else f.size_gb) for f in
                       self.storage.filesystems)
        return self.hardware.disk_total_gb

    @property
    def listening_ports(self) -> list[int]:
        ports = {p for a in self.applications for p in a.ports}
        if self.security:
            ports.update(self.security.open_ports)
        return sorted(ports)


class Estate(BaseModel):
    """A named set of validated server records."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")
    servers: list[ServerRecord]

    def by_id(self) -> dict[str, ServerRecord]:
        return {s.server_id: s for s in self.servers}
