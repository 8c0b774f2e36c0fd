"""Monthly cloud cost and three-year TCO of one sizing option.

Components: compute (on demand, and with 1-year / 3-year commitments), block
storage, internet egress and licence-included images (Windows Server, SQL Server,
RHEL). Commitments come from the data where the data has them (GCP CUDs, refreshed
AWS/Azure prices) and from the documented assumption otherwise; ``commitment_basis``
says which, and the output prints it.

Auto-scaled options pay for their base instance all month and for one extra
instance during the measured share of time the demand is above the base capacity
(``scale_share``): commitments cover the base instance only, the extra capacity is
on demand.
"""

from __future__ import annotations

from dataclasses import dataclass

from migrationbox.sizing.clouds.assumptions import PricingAssumptions
from migrationbox.sizing.clouds.base import HOURS_PER_MONTH, MachineType
from migrationbox.sizing.clouds.storage import StorageQuote
from migrationbox.sizing.features import Licences, ServerProfile
from migrationbox.sizing.onprem import OnPremCost

MONTHS_3Y = 36
GB_PER_MBPS_MONTH = HOURS_PER_MONTH * 3600 / 8 / 1000  # 1 Mbit/s for a month, in GB


@dataclass(frozen=True, slots=True)
class CloudCost:
    """Monthly USD of one option in one cloud region, by component."""

    compute_on_demand: float
    compute_blended: float
    compute_1y: float
    compute_3y: float
    commitment_basis: str  # "data" or "assumption"
    storage: float
    storage_gb: float
    storage_sku: str
    egress: float
    egress_gb: float
    licences: float

    @property
    def monthly_on_demand(self) -> float:
        return self.compute_blended + self.storage + self.egress + self.licences

    @property
    def monthly_1y(self) -> float:
        extra = self.compute_blended - self.compute_on_demand
        return self.compute_1y + extra + self.storage + self.egress + self.licences

    @property
    def monthly_3y(self) -> float:
        extra = self.compute_blended - self.compute_on_demand
        return self.compute_3y + extra + self.storage + self.egress + self.licences

    @property
    def tco_3y_on_demand(self) -> float:
        return self.monthly_on_demand * MONTHS_3Y

    @property
    def tco_3y_committed(self) -> float:
        return self.monthly_3y * MONTHS_3Y

    def as_dict(self) -> dict[str, float | str]:
        def r(x: float) -> float:
            return round(x, 2)

        return {
            "compute_on_demand": r(self.compute_on_demand),
            "compute_blended": r(self.compute_blended),
            "compute_1y_commitment": r(self.compute_1y),
            "compute_3y_commitment": r(self.compute_3y),
            "commitment_basis": self.commitment_basis,
            "storage": r(self.storage), "storage_gb": r(self.storage_gb),
            "storage_sku": self.storage_sku,
            "egress": r(self.egress), "egress_gb": r(self.egress_gb),
            "licences": r(self.licences),
            "monthly_on_demand": r(self.monthly_on_demand),
            "monthly_1y_commitment": r(self.monthly_1y),
            "monthly_3y_commitment": r(self.monthly_3y),
            "tco_3y_on_demand": r(self.tco_3y_on_demand),
            "tco_3y_committed": r(self.tco_3y_committed),
        }


def licence_hourly(licences: Licences, vcpu: int, a: PricingAssumptions) -> float:
    """Licence-included image price per hour for a machine of ``vcpu`` vCPUs."""
    hourly = 0.0
    if licences.windows:
        hourly += vcpu * a.windows_usd_per_vcpu_hour
    if licences.sql_server:
        rate = (a.sql_enterprise_usd_per_vcpu_hour if licences.sql_server == "enterprise"
                else a.sql_standard_usd_per_vcpu_hour)
        hourly += max(vcpu, a.sql_min_vcpu) * rate
    if licences.rhel:
        hourly += (a.rhel_usd_per_hour_small if vcpu <= a.rhel_small_max_vcpu
                   else a.rhel_usd_per_hour_large)
    return hourly


def commitment_prices(cloud: str, machine: MachineType, a: PricingAssumptions
                      ) -> tuple[float, float, str]:
    """Monthly 1-year and 3-year committed price and whether it is data or assumption."""
    if machine.commit_1y_monthly_usd is not None and machine.commit_3y_monthly_usd is not None:
        return machine.commit_1y_monthly_usd, machine.commit_3y_monthly_usd, "data"
    c = a.commitment(cloud)
    if c is None:  # no data and no assumption: commitments save nothing
        return machine.monthly_usd, machine.monthly_usd, "none"
    return (machine.monthly_usd * (1 - c.one_year_discount),
            machine.monthly_usd * (1 - c.three_year_discount), "assumption")


def cloud_cost(profile: ServerProfile, cloud: str, machine: MachineType, storage: StorageQuote,
               storage_gb: float, assumptions: PricingAssumptions, scale_share: float = 0.0
               ) -> CloudCost:
    """Monthly cost of running ``profile`` on ``machine`` with ``storage_gb`` of disk."""
    one_y, three_y, basis = commitment_prices(cloud, machine, assumptions)
    licence = licence_hourly(profile.licences, machine.vcpu, assumptions) * HOURS_PER_MONTH
    blend = 1.0 + max(0.0, scale_share)
    egress_gb = (profile.network_mbps * assumptions.egress_share * GB_PER_MBPS_MONTH
                 if profile.internet_facing else 0.0)
    egress_rate = assumptions.egress_usd_per_gb.get(cloud, 0.0)
    return CloudCost(
        compute_on_demand=machine.monthly_usd,
        compute_blended=machine.monthly_usd * blend,
        compute_1y=one_y,
        compute_3y=three_y,
        commitment_basis=basis,
        storage=storage.monthly(storage_gb),
        storage_gb=storage_gb,
        storage_sku=storage.sku,
        egress=egress_gb * egress_rate,
        egress_gb=egress_gb,
        licences=licence * blend,
    )


def savings(onprem: OnPremCost, cost_monthly: float) -> float:
    """Fraction saved versus on-prem (negative when the cloud costs more)."""
    if onprem.monthly <= 0:
        return 0.0
    return 1.0 - cost_monthly / onprem.monthly
