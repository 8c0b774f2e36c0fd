"""What a server costs to keep on premise, per month: the baseline of every saving.

The model apportions a reference virtualisation host to the server by its vCPUs and
memory (physical servers get no over-subscription and no hypervisor licence), then
adds storage, power, space, licences and operations. Every default below is an
assumption with its basis, shown in outputs and overridable with a JSON file
(``migrationbox size --onprem FILE``, keys = field names), because a customer's real
figures beat any default:

- host: $30,000 for a 2-socket, 64-core, 1 TiB server (a typical current
  mid-range virtualisation host), amortised over 60 months, half of its cost
  attributed to CPU and half to memory; 2 vCPUs per physical core (a conservative
  VMware consolidation ratio); hardware support 8 % of the price per year;
- storage: $1,000 per usable TB of SSD (all-flash array incl. RAID overhead) and
  $300 per TB of HDD, amortised over 60 months;
- power: 700 W average per host and 5 W per TB of storage, PUE 1.58 (Uptime
  Institute 2023 global average), $0.13 per kWh (US commercial average, EIA 2024);
- space: $1,500 per 42U rack per month, 3U per host (2U plus its share of network
  and storage gear), 1U per physical server plus the same overhead;
- licences: hypervisor $135 per core per year (VMware vSphere Foundation
  subscription list price); Windows Server $5 per vCPU-month (Datacenter per-core
  licence apportioned over 60 months); SQL Server Standard $75 and Enterprise $285
  per vCPU-month, 4-vCPU minimum (2-core pack list price plus Software Assurance,
  over 60 months); RHEL $33 per server-month ($799/year subscription for 2 guests);
- network and backup: $15 per server-month for its share of switches, firewalls
  and load balancers; $20 per TB-month of backup storage and software;
- internet transit for internet-facing servers: $1 per Mbps-month of the same
  egress volume the cloud TCO charges (committed IP transit), so egress is compared
  like for like;
- operations: one administrator ($130,000 per year, fully loaded) per 75 servers.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from migrationbox.errors import InputError
from migrationbox.sizing.clouds.storage import disk_class
from migrationbox.sizing.features import ServerProfile

HOURS_PER_MONTH = 730
MAX_DEPTH = 64  # nesting a cost file may have: flat figures need 1, anything past 64 is junk
# Largest figure a cost file may set. Finite figures can still multiply to infinity
# (1e200 dollars times 1e200 per cent), which would print "$inf/month" and "100 %
# savings"; a trillion is far above any real price, wattage or salary, and keeps every
# product of figures and measurements (capped at 10^9) finite.
MAX_FIGURE = 1e12


class OnPremFileError(InputError):
    """The ``--onprem`` cost file cannot be used; the message names the file and key."""


class OnPremCostModel(BaseModel):
    """The on-premise cost assumptions (all USD)."""

    # allow_inf_nan=False: JSON's Infinity would otherwise make every saving "100 %"
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    host_price_usd: float = Field(default=30_000, ge=0)
    host_cores: int = Field(default=64, ge=1)
    host_memory_gib: float = Field(default=1024, ge=1)
    cpu_share_of_host_cost: float = Field(default=0.5, ge=0, le=1)
    vcpu_per_core: float = Field(default=2.0, ge=0.1)
    amortisation_months: int = Field(default=60, ge=1)
    hardware_support_pct_per_year: float = Field(default=0.08, ge=0)
    ssd_usd_per_tb: float = Field(default=1_000, ge=0)
    hdd_usd_per_tb: float = Field(default=300, ge=0)
    host_watts: float = Field(default=700, ge=0)
    storage_watts_per_tb: float = Field(default=5, ge=0)
    pue: float = Field(default=1.58, ge=1)
    usd_per_kwh: float = Field(default=0.13, ge=0)
    rack_usd_per_month: float = Field(default=1_500, ge=0)
    rack_units: int = Field(default=42, ge=1)
    host_rack_units: float = Field(default=3, ge=0)
    physical_server_rack_units: float = Field(default=2, ge=0)
    hypervisor_usd_per_core_year: float = Field(default=135, ge=0)
    windows_usd_per_vcpu_month: float = Field(default=5, ge=0)
    sql_standard_usd_per_vcpu_month: float = Field(default=75, ge=0)
    sql_enterprise_usd_per_vcpu_month: float = Field(default=285, ge=0)
    sql_min_vcpu: int = Field(default=4, ge=1)
    rhel_usd_per_server_month: float = Field(default=33, ge=0)
    network_usd_per_server_month: float = Field(default=15, ge=0)
    backup_usd_per_tb_month: float = Field(default=20, ge=0)
    transit_usd_per_mbps_month: float = Field(default=1.0, ge=0)
    egress_share: float = Field(default=0.25, ge=0, le=1,
                                description="as the cloud assumption: outbound internet share")
    admin_usd_per_year: float = Field(default=130_000, ge=0)
    servers_per_admin: float = Field(default=75, ge=0.01)

    @field_validator("*")
    @classmethod
    def _not_astronomical(cls, value: float) -> float:
        """Refuse figures past ``MAX_FIGURE`` (the divisors above have floors for the
        same reason: a tiny divisor is an astronomical figure)."""
        if abs(value) > MAX_FIGURE:
            raise ValueError(f"must be at most {MAX_FIGURE:.0e}")
        return value

    def note(self) -> str:
        parts = [
            f"host ${self.host_price_usd:,.0f}/{self.host_cores} cores/"
            f"{self.host_memory_gib:g} GiB over {self.amortisation_months} months",
            f"{self.vcpu_per_core:g} vCPU per core",
            f"PUE {self.pue:g} at ${self.usd_per_kwh:g}/kWh",
            f"rack ${self.rack_usd_per_month:,.0f}/month",
            f"hypervisor ${self.hypervisor_usd_per_core_year:g}/core-year",
            f"network ${self.network_usd_per_server_month:g}/server",
            f"backup ${self.backup_usd_per_tb_month:g}/TB",
            f"transit ${self.transit_usd_per_mbps_month:g}/Mbps",
            f"1 admin per {self.servers_per_admin:g} servers",
        ]
        return "ASSUMPTION on-prem: " + ", ".join(parts) + " (override with --onprem FILE)"


@dataclass(frozen=True, slots=True)
class OnPremCost:
    """Monthly on-premise cost of one server, by component."""

    hardware: float
    storage: float
    power: float
    space: float
    licences: float
    operations: float
    network: float = 0.0

    @property
    def monthly(self) -> float:
        return (self.hardware + self.storage + self.power + self.space + self.licences
                + self.operations + self.network)

    def as_dict(self) -> dict[str, float]:
        return {"hardware": round(self.hardware, 2), "storage": round(self.storage, 2),
                "power": round(self.power, 2), "space": round(self.space, 2),
                "licences": round(self.licences, 2), "operations": round(self.operations, 2),
                "network": round(self.network, 2), "monthly": round(self.monthly, 2)}


def estimate(profile: ServerProfile, model: OnPremCostModel | None = None) -> OnPremCost:
    """Monthly cost of keeping this server where it is."""
    m = model or OnPremCostModel()
    per_core = 1.0 if profile.physical else m.vcpu_per_core
    host_vcpus = m.host_cores * per_core
    cpu_share = profile.vcpu / host_vcpus
    mem_share = profile.memory_gib / m.host_memory_gib
    host_share = m.cpu_share_of_host_cost * cpu_share + (1 - m.cpu_share_of_host_cost) * mem_share
    hardware = host_share * (m.host_price_usd / m.amortisation_months
                             + m.host_price_usd * m.hardware_support_pct_per_year / 12)

    tb = profile.disk_gb / 1000.0
    per_tb = m.hdd_usd_per_tb if disk_class(profile.disk_type) == "hdd" else m.ssd_usd_per_tb
    storage = tb * per_tb / m.amortisation_months + tb * m.backup_usd_per_tb_month

    kwh_price_month = m.pue * m.usd_per_kwh * HOURS_PER_MONTH / 1000.0
    power = (host_share * m.host_watts + tb * m.storage_watts_per_tb) * kwh_price_month

    per_u = m.rack_usd_per_month / m.rack_units
    if profile.physical:
        space = m.physical_server_rack_units * per_u
    else:
        space = host_share * m.host_rack_units * per_u

    licences = 0.0
    if not profile.physical:
        licences += cpu_share * m.host_cores * m.hypervisor_usd_per_core_year / 12
    lic = profile.licences
    if lic.windows:
        licences += profile.vcpu * m.windows_usd_per_vcpu_month
    if lic.sql_server:
        rate = (m.sql_enterprise_usd_per_vcpu_month if lic.sql_server == "enterprise"
                else m.sql_standard_usd_per_vcpu_month)
        licences += max(profile.vcpu, m.sql_min_vcpu) * rate
    if lic.rhel:
        licences += m.rhel_usd_per_server_month
    operations = m.admin_usd_per_year / 12 / m.servers_per_admin
    network = m.network_usd_per_server_month
    if profile.internet_facing:
        network += profile.network_mbps * m.egress_share * m.transit_usd_per_mbps_month
    return OnPremCost(hardware, storage, power, space, licences, operations, network)


def _printable(text: object) -> str:
    """``text`` safe to print on any terminal (a JSON key may hold a lone surrogate)."""
    return str(text).encode("utf-8", "backslashreplace").decode("utf-8")


def _depth_past(value: object, limit: int) -> bool:
    """Whether ``value`` nests deeper than ``limit`` (iterative: no recursion limit)."""
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        children: Iterable[object] = (node.values() if isinstance(node, dict)
                                      else node if isinstance(node, list) else ())
        for child in children:
            if isinstance(child, (dict, list)):
                stack.append((child, depth + 1))
    return False


def load_onprem_model(path: str | Path | None = None) -> OnPremCostModel:
    """Defaults, overridden by the keys of a JSON file when one is given.

    Raises ``OnPremFileError`` (an ``InputError``, so still a ``ValueError``) naming the
    file, and the key where there is one: unreadable, not UTF-8 JSON, not an object,
    nested too deeply, an unknown key, a figure out of range, not a number or not finite.
    A customer's cost file is theirs to fix, so it is refused as a whole rather than
    half-applied: a saving computed from some of their figures and some defaults would
    look like theirs.
    """
    if path is None:
        return OnPremCostModel()
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8-sig"))
    except OSError as exc:
        raise OnPremFileError(f"on-prem cost file {p}: {exc.strerror or exc}") from exc
    except RecursionError:
        raise OnPremFileError(f"on-prem cost file {p}: not JSON (nested too deeply for the "
                              f"parser)") from None
    except ValueError as exc:  # not UTF-8, not JSON, an integer of thousands of digits
        raise OnPremFileError(f"on-prem cost file {p}: not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise OnPremFileError(f"on-prem cost file {p}: expected a JSON object of cost "
                              f"figures (keys = field names), got {type(data).__name__}")
    for key, value in data.items():
        if isinstance(value, (dict, list)) and _depth_past(value, MAX_DEPTH - 1):
            raise OnPremFileError(f"on-prem cost file {p}: {_printable(key)}: nested more "
                                  f"than {MAX_DEPTH} levels deep (expected a number)")
    # unknown keys are named here, not by pydantic: a key may hold a lone surrogate
    # escape, which pydantic reports without its name
    problems = [f"{_printable(key)}: unknown key (expected a field of the on-prem cost "
                f"model)" for key in data if key not in OnPremCostModel.model_fields]
    known = {k: v for k, v in data.items() if k in OnPremCostModel.model_fields}
    try:
        model = OnPremCostModel.model_validate({**OnPremCostModel().model_dump(), **known})
    except ValidationError as exc:
        problems += [f"{_printable('.'.join(str(x) for x in e['loc']))}: {e['msg']}"
                     for e in exc.errors()]
        model = None
    if problems or model is None:
        raise OnPremFileError(f"on-prem cost file {p}: {'; '.join(problems)}")
    return model
