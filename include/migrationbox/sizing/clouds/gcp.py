"""Google Compute Engine: machine types, on-demand and committed-use prices for 43 regions.

All from Cyclenerd/google-cloud-pricing-cost-calculator ``pricing.yml`` (generated
2026-07-30 from the Cloud Billing Catalog SKU API): on-demand hourly, the month with
sustained-use discounts (what a month of continuous on-demand use is billed on GCP),
and the 1-year and 3-year committed-use monthly prices. So GCP commitment figures are
data, not assumptions.

Candidates exclude custom machine types, GPU machines (A2/A3/G2/G4), machine types
whose price bundles Local SSD (``-lssd``, Z3), and shared-core types (e2-micro/small/
medium, f1-micro, g1-small: fractional or bursting CPU). Arm64 (T2A, C4A, N4A) is
offered only to arm64 servers.
"""

from __future__ import annotations

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

PRICE_FILE = ("gcp", "gcp_machine_prices_all_regions.csv")
DEFAULT_REGION = "us-central1"
CYCLENERD = PriceSource("Cyclenerd/google-cloud-pricing-cost-calculator pricing.yml (from the "
                        "Cloud Billing Catalog API), on-demand with sustained use, 1y/3y CUD",
                        "2026-07-30")
SPECS = "Cyclenerd/google-cloud-pricing-cost-calculator pricing.yml"
_GPU_COLUMNS = ("a100", "a100-80gb", "h100-80gb", "h100-80gb-mega", "l4", "rtx6000")
_GPU_SERIES = {"a2", "a3", "a4", "g2", "g4"}
_ARM_SERIES = {"t2a", "c4a", "n4a"}
_SHARED_CORE = {"e2-micro", "e2-small", "e2-medium", "f1-micro", "g1-small"}


@cache
def _rows_by_region() -> dict[str, list[dict[str, str]]]:
    rows: dict[str, list[dict[str, str]]] = {}
    for row in read_rows(data_path(*PRICE_FILE)):
        rows.setdefault(row["region"], []).append(row)
    return rows


@cache
def _specs() -> dict[str, dict[str, str]]:
    specs: dict[str, dict[str, str]] = {}
    for region_rows in _rows_by_region().values():
        for row in region_rows:
            specs.setdefault(row["machine_type"], row)
    return specs


def regions() -> list[str]:
    return sorted(_rows_by_region())


def _gpus(row: dict[str, str]) -> int:
    return sum(int(float(row.get(c) or 0)) for c in _GPU_COLUMNS)


def _exclusion(name: str, row: dict[str, str]) -> str | None:
    series = row.get("series") or name.split("-")[0]
    if series == "custom" or (row.get("type") or "").endswith("custom"):
        return "custom machine type"
    if _gpus(row) > 0 or series in _GPU_SERIES:
        return "accelerator"
    if (row.get("local-ssd") or "").strip() or "lssd" in name or series == "z3":
        return "price bundles Local SSD"
    if name in _SHARED_CORE:
        return "shared-core (bursting)"
    return None


def _machine(name: str, row: dict[str, str], hourly: float, monthly: float | None,
             commit_1y_month: float | None, commit_3y_month: float | None) -> MachineType:
    series = row.get("series") or name.split("-")[0]
    vcpu = float(row["vcpu"])
    return MachineType(
        name=name,
        family=series,
        vcpu=max(1, int(vcpu)) if vcpu >= 1 else 0,
        memory_gib=float(row.get("memory_gb") or row.get("memory_gib") or 0),
        arch=row.get("arch") or ("arm64" if series in _ARM_SERIES else "x86_64"),
        burstable=name in _SHARED_CORE,
        gpus=_gpus(row),
        hourly_usd=hourly,
        monthly_usd=monthly if monthly is not None else hourly * HOURS_PER_MONTH,
        commit_1y_monthly_usd=commit_1y_month,
        commit_3y_monthly_usd=commit_3y_month,
        excluded=_exclusion(name, row) or ("fractional vCPU" if vcpu < 1 else None),
    )


def load(region: str = DEFAULT_REGION) -> RegionCatalog:
    """The machine catalog of one GCP region (refreshed prices win over shipped ones)."""
    refreshed = load_refreshed("gcp", region)
    types: list[MachineType] = []
    if refreshed is not None:
        rows, source = refreshed
        specs = _specs()
        for r in rows:
            spec = dict(specs.get(r.name, {}))
            if r.vcpu is not None:
                spec["vcpu"] = str(r.vcpu)
            if r.memory_gib is not None:
                spec["memory_gb"] = str(r.memory_gib)
            if r.arch:
                spec["arch"] = r.arch
            if "vcpu" not in spec or not spec.get("memory_gb"):
                continue
            types.append(_machine(
                r.name, spec, r.ondemand_usd_hr, None,
                None if r.commit_1y_usd_hr is None else r.commit_1y_usd_hr * HOURS_PER_MONTH,
                None if r.commit_3y_usd_hr is None else r.commit_3y_usd_hr * HOURS_PER_MONTH))
    else:
        region_rows = _rows_by_region().get(region)
        if not region_rows:
            raise RegionNotPriced(
                f"GCP has no prices for region {region!r} in the shipped data (43 regions, "
                f"e.g. {', '.join(regions()[:5])} ...); refresh it with `migrationbox prices "
                f"refresh --cloud gcp --region {region}` or pick another region")
        source = CYCLENERD
        for line, row in enumerate(region_rows, start=2):
            try:
                hourly = opt_float(row, "ondemand_usd_hr")
                if hourly is None:
                    continue
                types.append(_machine(row["machine_type"], row, hourly,
                                      opt_float(row, "usd_month_incl_sud"),
                                      opt_float(row, "usd_month_cud1y"),
                                      opt_float(row, "usd_month_cud3y")))
            except (KeyError, ValueError) as exc:
                raise CatalogError(f"{PRICE_FILE[1]} ({region}) row {line}: {exc}") from exc
    types.sort(key=lambda t: t.name)
    return RegionCatalog(cloud="gcp", region=region, price_source=source, spec_source=SPECS,
                         types=tuple(types))
