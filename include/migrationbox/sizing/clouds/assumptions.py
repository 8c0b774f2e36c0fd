"""Figures the public data does not have, as explicit, overridable assumptions.

The shared price data has no AWS/Azure commitment prices, no licence prices and no
egress prices (``shared/data/README.md``, "Known gaps"). A TCO without them would
be wrong in a hidden way, so each is a named assumption with the basis it came
from; every output that uses one lists it (``notes``), and users override any of
them with a JSON file (``migrationbox size --assumptions FILE``) whose keys are the
field names below.

Bases (public list prices as published by the clouds; verify before quoting a
customer, or refresh with real prices where a parser exists):

- commitments: AWS EC2 Standard Reserved Instances / Instance Savings Plans, no
  upfront, general-purpose families, are typically ~35-40 % (1 year) and ~55-60 %
  (3 years) below on-demand; Azure Reserved VM Instances for D/E-series ~35-40 % and
  ~55-62 %. We use 36 %/56 % (AWS) and 37 %/58 % (Azure). GCP commitments come from
  the data. A refresh from the AWS Price List bulk JSON or the Azure Retail Prices
  API replaces these with real per-type prices.
- licences (licence-included images, per hour, on top of the machine): Windows
  Server $0.046 per vCPU; SQL Server Standard $0.1645 and Enterprise $0.399 per vCPU
  with a 4-vCPU minimum (Microsoft's per-core minimum per VM); RHEL $0.06 per hour
  for up to 4 vCPU and $0.13 above: Compute Engine's premium-image price sheet,
  applied to all three clouds as one consistent yardstick (AWS and Azure charge
  within a few percent of these for licence-included Windows/SQL/RHEL).
- egress: internet data transfer out, first paid tier: AWS $0.09/GB, Azure
  $0.087/GB, GCP Premium Tier $0.12/GB. Free allowances and volume tiers are
  ignored (conservative). Only internet-facing servers (edge roles such as load
  balancers, proxies and VPN gateways, or a public IP address) pay egress: east-west
  traffic stays inside the VPC. Their egress volume = measured network throughput
  (both directions) x ``egress_share`` (default 25 %: half of it is outbound, and
  half of that is the internet side rather than the back-end side of the edge).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from migrationbox.errors import InputError

UsdPerGb = Annotated[float, Field(ge=0)]


class AssumptionsError(InputError):
    """An assumptions override file is unusable; the message names the file and key."""


class Commitment(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    one_year_discount: float = Field(ge=0, lt=1)
    three_year_discount: float = Field(ge=0, lt=1)
    basis: str


class PricingAssumptions(BaseModel):
    """Every pricing figure that is an assumption rather than data.

    NaN and Infinity are refused (JSON files read by Python may hold them): an infinite
    licence price would turn every TCO into ``inf`` without saying which key did it.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    commitments: dict[str, Commitment] = Field(default_factory=lambda: {
        "aws": Commitment(one_year_discount=0.36, three_year_discount=0.56,
                          basis="typical EC2 Standard RI / Instance Savings Plan, no upfront"),
        "azure": Commitment(one_year_discount=0.37, three_year_discount=0.58,
                            basis="typical Azure Reserved VM Instance, D/E series"),
    })
    windows_usd_per_vcpu_hour: float = Field(default=0.046, ge=0)
    sql_standard_usd_per_vcpu_hour: float = Field(default=0.1645, ge=0)
    sql_enterprise_usd_per_vcpu_hour: float = Field(default=0.399, ge=0)
    sql_min_vcpu: int = Field(default=4, ge=1)
    rhel_usd_per_hour_small: float = Field(default=0.06, ge=0)
    rhel_usd_per_hour_large: float = Field(default=0.13, ge=0)
    rhel_small_max_vcpu: int = Field(default=4, ge=1)
    licence_basis: str = "Compute Engine premium-image list prices, applied to all clouds"
    egress_usd_per_gb: dict[str, UsdPerGb] = Field(default_factory=lambda: {
        "aws": 0.09, "azure": 0.087, "gcp": 0.12})
    egress_share: float = Field(default=0.25, ge=0, le=1,
                                description="share of an internet-facing server's measured "
                                            "network throughput that leaves to the internet")
    egress_basis: str = "internet egress, first paid tier; free allowance ignored"

    def commitment(self, cloud: str) -> Commitment | None:
        return self.commitments.get(cloud)

    def notes(self, clouds: list[str] | None = None) -> list[str]:
        """One line per assumption, for every output that uses them."""
        clouds = clouds or ["aws", "azure", "gcp"]
        lines = []
        for cloud in clouds:
            c = self.commitments.get(cloud)
            if c is not None:
                lines.append(f"ASSUMPTION {cloud} commitments: 1-year -{c.one_year_discount:.0%}, "
                             f"3-year -{c.three_year_discount:.0%} vs on-demand ({c.basis})")
        if "gcp" in clouds:
            lines.append("DATA gcp commitments: 1y/3y committed-use prices from the Cloud "
                         "Billing Catalog (Cyclenerd pricing.yml 2026-07-30)")
        lines.append(
            f"ASSUMPTION licences: Windows ${self.windows_usd_per_vcpu_hour}/vCPU-h, SQL "
            f"Server Std ${self.sql_standard_usd_per_vcpu_hour}/Ent "
            f"${self.sql_enterprise_usd_per_vcpu_hour} per vCPU-h (min {self.sql_min_vcpu}), "
            f"RHEL ${self.rhel_usd_per_hour_small}/h (<= {self.rhel_small_max_vcpu} vCPU) or "
            f"${self.rhel_usd_per_hour_large}/h ({self.licence_basis})")
        egress = ", ".join(f"{c} ${self.egress_usd_per_gb[c]}/GB" for c in clouds
                           if c in self.egress_usd_per_gb)
        lines.append(f"ASSUMPTION egress: internet-facing servers send {self.egress_share:.0%} "
                     f"of their measured network throughput to the internet at {egress} "
                     f"({self.egress_basis}); other servers' traffic stays in the VPC")
        return lines


def _encodable(data: object) -> bool:
    """Whether every string can be written out (no unpaired ``\\ud800`` escapes): the
    assumptions are printed with every sizing."""
    try:
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    except (ValueError, RecursionError):  # NaN is for the model to refuse by key
        return True
    return True


def load_assumptions(path: str | Path | None = None) -> PricingAssumptions:
    """Defaults, overridden by the keys of a JSON file when one is given.

    Raises ``AssumptionsError`` (an ``InputError``, so still a ``ValueError``) naming
    the file and every bad key: unreadable, not JSON, not an object, a section that is
    not an object, an unknown key, a value out of range or not finite.
    """
    if path is None:
        return PricingAssumptions()
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8-sig"))
    except OSError as exc:
        raise AssumptionsError(f"assumptions file {p}: {exc.strerror or exc}") from exc
    except (ValueError, RecursionError) as exc:  # not UTF-8, not JSON, nested too deeply
        raise AssumptionsError(f"assumptions file {p}: not JSON ({exc})") from None
    if not _encodable(data):
        raise AssumptionsError(f"assumptions file {p}: text holds an unpaired surrogate "
                               "escape (\\ud800-\\udfff), which is not Unicode")
    if not isinstance(data, dict):
        raise AssumptionsError(f"assumptions file {p}: expected a JSON object, got "
                               f"{type(data).__name__}")
    merged = PricingAssumptions().model_dump()
    for key, value in data.items():
        if key == "commitments" and isinstance(value, dict):
            for cloud, figures in value.items():
                if not isinstance(figures, dict):
                    raise AssumptionsError(
                        f"assumptions file {p}: commitments.{cloud}: expected an object "
                        "with one_year_discount, three_year_discount and basis")
                merged["commitments"][cloud] = {**merged["commitments"].get(cloud, {}),
                                                **figures}
        elif key == "egress_usd_per_gb" and isinstance(value, dict):
            merged[key].update(value)
        else:
            merged[key] = value
    try:
        return PricingAssumptions.model_validate(merged)
    except (ValidationError, RecursionError) as exc:
        if isinstance(exc, RecursionError):
            raise AssumptionsError(f"assumptions file {p}: nested too deeply") from None
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
                             for e in exc.errors())
        raise AssumptionsError(f"assumptions file {p}: {problems}") from None
