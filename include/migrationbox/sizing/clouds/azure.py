"""Azure virtual machines: specs and on-demand Linux prices for 57 regions.

- specs: kubernetes/autoscaler ``azure_instance_types.go`` (2026-03-17), in
  ``azure_vm_eastus.csv``; sizes newer than that table (some v6/v7) have prices but
  no spec and cannot be sized onto;
- prices: Azure/karpenter-provider-azure generated pricing (2026-06-18), by region;
- commitments: none in the data; the TCO applies a documented Reserved VM Instance
  assumption unless a refresh from the Azure Retail Prices API brought real
  reservation prices for the region.

Candidates exclude GPU sizes (N series), burstable B sizes (CPU credits),
promotional and Basic sizes, and confidential-computing sizes (DC/EC, which need
confidential OS images); Arm64 sizes (``p`` in the feature letters, e.g.
``Standard_D2ps_v5``) are offered only to arm64 servers.
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

SPEC_FILE = ("azure", "azure_vm_eastus.csv")
REGION_FILE = ("azure", "azure_vm_linux_ondemand_by_region_karpenter_2026-06-18.csv")
DEFAULT_REGION = "eastus"
KARPENTER = PriceSource("Azure/karpenter-provider-azure zz_generated.pricing.go, on-demand "
                        "Linux", "2026-06-18")
SPECS = "kubernetes/autoscaler cluster-autoscaler/cloudprovider/azure/azure_instance_types.go"
_ARM = re.compile(r"^Standard_[A-Z]+\d+(?:-\d+)?[a-z]*p[a-z]*_v\d+$")


@cache
def _specs() -> dict[str, dict[str, str]]:
    return {row["vm_size"]: row for row in read_rows(data_path(*SPEC_FILE))
            if (row.get("vcpu") or "").strip() and (row.get("memory_gib") or "").strip()}


@cache
def _regional_prices() -> dict[str, dict[str, float]]:
    prices: dict[str, dict[str, float]] = {}
    for line, row in enumerate(read_rows(data_path(*REGION_FILE)), start=2):
        try:
            prices.setdefault(row["region"], {})[row["vm_size"]] = float(row["ondemand_usd_hr"])
        except (KeyError, ValueError) as exc:
            raise CatalogError(f"{REGION_FILE[1]} line {line}: {exc}") from exc
    return prices


def regions() -> list[str]:
    return sorted(_regional_prices())


def arch_of(name: str) -> str:
    return "arm64" if _ARM.match(name) else "x86_64"


def _exclusion(name: str, spec: dict[str, str]) -> str | None:
    if name.startswith("Basic_"):
        return "basic tier"
    if "Promo" in name:
        return "promotional (retired)"
    if int(float(spec.get("gpus") or 0)) > 0 or name.startswith("Standard_N"):
        return "accelerator"
    if name.startswith("Standard_B"):
        return "burstable (CPU credits)"
    if name.startswith(("Standard_DC", "Standard_EC")):
        return "confidential computing (needs confidential OS images)"
    return None


def _machine(name: str, spec: dict[str, str], hourly: float, commit_1y: float | None = None,
             commit_3y: float | None = None, arch: str | None = None) -> MachineType:
    return MachineType(
        name=name,
        family=spec.get("sku_family") or "",
        vcpu=int(float(spec["vcpu"])),
        memory_gib=float(spec["memory_gib"]),
        arch=arch or arch_of(name),
        burstable=name.startswith("Standard_B"),
        gpus=int(float(spec.get("gpus") or 0)),
        hourly_usd=hourly,
        monthly_usd=hourly * HOURS_PER_MONTH,
        commit_1y_monthly_usd=None if commit_1y is None else commit_1y * HOURS_PER_MONTH,
        commit_3y_monthly_usd=None if commit_3y is None else commit_3y * HOURS_PER_MONTH,
        excluded=_exclusion(name, spec),
    )


def load(region: str = DEFAULT_REGION) -> RegionCatalog:
    """The VM catalog of one Azure region (refreshed prices win over shipped ones)."""
    specs = _specs()
    refreshed = load_refreshed("azure", region)
    types: list[MachineType] = []
    skipped = 0
    if refreshed is not None:
        rows, source = refreshed
        for r in rows:
            spec = dict(specs.get(r.name, {}))
            if r.vcpu is not None:
                spec["vcpu"] = str(r.vcpu)
            if r.memory_gib is not None:
                spec["memory_gib"] = str(r.memory_gib)
            if "vcpu" not in spec or "memory_gib" not in spec:
                skipped += 1
                continue
            types.append(_machine(r.name, spec, r.ondemand_usd_hr, r.commit_1y_usd_hr,
                                  r.commit_3y_usd_hr, r.arch))
    else:
        prices = _regional_prices().get(region)
        if not prices:
            raise RegionNotPriced(
                f"Azure has no prices for region {region!r} in the shipped data (57 regions, "
                f"e.g. {', '.join(regions()[:5])} ...); refresh it with `migrationbox prices "
                f"refresh --cloud azure --region {region}` or pick another region")
        source = KARPENTER
        for name, hourly in prices.items():
            spec = specs.get(name)
            if spec is None:
                skipped += 1
                continue
            types.append(_machine(name, spec, hourly))
    notes = (f"{skipped} priced sizes have no spec in the shipped table and are not "
             f"candidates",) if skipped else ()
    types.sort(key=lambda t: t.name)
    return RegionCatalog(cloud="azure", region=region, price_source=source, spec_source=SPECS,
                         types=tuple(types), notes=notes)


def eastus_spec_price(name: str) -> float | None:
    """The eastus price column of the spec file (a cross-check of the regional table)."""
    row = next((r for r in read_rows(data_path(*SPEC_FILE)) if r["vm_size"] == name), None)
    return None if row is None else opt_float(row, "ondemand_usd_hr_eastus_2026-06-18")
