"""AWS EC2: specs for every type, on-demand Linux prices for 35 regions.

- specs: moto 5.2.5's instance-type table (``aws_ec2_us-east-1.csv``);
- us-east-1 prices: aws/karpenter-provider-aws generated pricing (2026-07-20);
- other regions: apache-libcloud 3.9.1 ``pricing.json`` (2025-03-02), older: its date is
  shown with every price that uses it;
- commitments: none in the data. The TCO applies a documented assumption (see
  ``assumptions``) unless a refresh from the AWS Price List bulk JSON brought real
  Reserved Instance prices for the region.

Candidates exclude previous generations, accelerators (GPU, FPGA, Inferentia,
Trainium, video, Gaudi), burstable T types (they throttle to a CPU-credit baseline),
bare metal, and Mac hosts; the reason is kept on each type.
"""

from __future__ import annotations

import re
from functools import cache

from migrationbox.sizing.clouds._files import data_path, load_refreshed, opt_float, read_rows
from migrationbox.sizing.clouds.base import (
    HOURS_PER_MONTH,
    CatalogError,
    MachineType,
    PriceSource,
    RegionCatalog,
    RegionNotPriced,
)

SPEC_FILE = ("aws", "aws_ec2_us-east-1.csv")
REGION_FILE = ("aws", "aws_ec2_linux_ondemand_by_region_libcloud_2025-03-02.csv")
DEFAULT_REGION = "us-east-1"
KARPENTER = PriceSource("aws/karpenter-provider-aws zz_generated.pricing_aws.go, "
                        "on-demand Linux", "2026-07-20")
LIBCLOUD = PriceSource("apache-libcloud 3.9.1 libcloud/data/pricing.json, on-demand Linux",
                       "2025-03-02")
SPECS = "moto 5.2.5 moto/ec2/resources/instance_types.json.gz"
_ACCELERATOR_FAMILY = re.compile(r"^(f\d|g\d|gr\d|p\d|inf\d|trn\d|vt\d|dl\d)")


@cache
def _specs() -> dict[str, dict[str, str]]:
    return {row["instance_type"]: row for row in read_rows(data_path(*SPEC_FILE))}


@cache
def _regional_prices() -> dict[str, dict[str, float]]:
    prices: dict[str, dict[str, float]] = {}
    for line, row in enumerate(read_rows(data_path(*REGION_FILE)), start=2):
        try:
            prices.setdefault(row["region"], {})[row["instance_type"]] = float(
                row["ondemand_usd_hr"])
        except (KeyError, ValueError) as exc:
            raise CatalogError(f"{REGION_FILE[1]} line {line}: {exc}") from exc
    return prices


def regions() -> list[str]:
    return sorted(set(_regional_prices()) | {DEFAULT_REGION})


def _arch(value: str) -> str:
    if "x86_64" in value and "mac" not in value:
        return "x86_64"
    return value


def _exclusion(name: str, spec: dict[str, str]) -> str | None:
    family = spec.get("family") or name.split(".")[0]
    if "mac" in (spec.get("arch") or "") or name.startswith("mac"):
        return "Mac host"
    if name.endswith(".metal") or "metal" in name.split(".")[-1]:
        return "bare metal"
    if int(spec.get("gpus") or 0) > 0 or _ACCELERATOR_FAMILY.match(family):
        return "accelerator"
    if spec.get("burstable") == "True":
        return "burstable (CPU credits)"
    if spec.get("current_generation") != "True":
        return "previous generation"
    return None


def _machine(name: str, spec: dict[str, str], hourly: float, commit_1y: float | None = None,
             commit_3y: float | None = None) -> MachineType:
    return MachineType(
        name=name,
        family=spec.get("family") or name.split(".")[0],
        vcpu=int(spec["vcpu"]),
        memory_gib=float(spec["memory_gib"]),
        arch=_arch(spec.get("arch") or "x86_64"),
        burstable=spec.get("burstable") == "True",
        gpus=int(spec.get("gpus") or 0),
        hourly_usd=hourly,
        monthly_usd=hourly * HOURS_PER_MONTH,
        commit_1y_monthly_usd=None if commit_1y is None else commit_1y * HOURS_PER_MONTH,
        commit_3y_monthly_usd=None if commit_3y is None else commit_3y * HOURS_PER_MONTH,
        excluded=_exclusion(name, spec),
    )


def load(region: str = DEFAULT_REGION) -> RegionCatalog:
    """The EC2 catalog of one region (refreshed prices win over shipped ones)."""
    specs = _specs()
    refreshed = load_refreshed("aws", region)
    types: list[MachineType] = []
    notes: list[str] = []
    if refreshed is not None:
        rows, source = refreshed
        for r in rows:
            spec = dict(specs.get(r.name, {}))
            if r.vcpu is not None:
                spec["vcpu"] = str(r.vcpu)
            if r.memory_gib is not None:
                spec["memory_gib"] = str(r.memory_gib)
            if r.arch:
                spec["arch"] = r.arch
            if "vcpu" not in spec or "memory_gib" not in spec:
                continue
            spec.setdefault("current_generation", "True")
            types.append(_machine(r.name, spec, r.ondemand_usd_hr, r.commit_1y_usd_hr,
                                  r.commit_3y_usd_hr))
    elif region == DEFAULT_REGION:
        source = KARPENTER
        for name, spec in specs.items():
            hourly = opt_float(spec, "ondemand_usd_hr_karpenter_2026-07-20")
            if hourly is not None:
                types.append(_machine(name, spec, hourly))
    else:
        prices = _regional_prices().get(region)
        if not prices:
            raise RegionNotPriced(
                f"AWS has no prices for region {region!r} in the shipped data (35 regions, "
                f"e.g. {', '.join(regions()[:5])} ...); refresh it with `migrationbox prices "
                f"refresh --cloud aws --region {region}` or pick another region")
        source = LIBCLOUD
        unknown = 0
        for name, hourly in prices.items():
            spec = specs.get(name)
            if spec is None:
                unknown += 1
                continue
            types.append(_machine(name, spec, hourly))
        if unknown:
            notes.append(f"{unknown} priced types without a spec were skipped")
    types.sort(key=lambda t: t.name)
    return RegionCatalog(cloud="aws", region=region, price_source=source, spec_source=SPECS,
                         types=tuple(types), notes=tuple(notes))
