"""Per-cloud instance catalogs (AWS, Azure, GCP), block storage, and pricing assumptions.

``load_catalog(cloud, region)`` is the one entry point; catalogs are cached per
process. Every catalog carries a :class:`PriceSource` whose date is printed with
every price, so users always see how old a price is.
"""

from __future__ import annotations

from functools import cache

from migrationbox.sizing.clouds.assumptions import (
    Commitment,
    PricingAssumptions,
    load_assumptions,
)
from migrationbox.sizing.clouds.base import (
    HOURS_PER_MONTH,
    CatalogError,
    MachineType,
    NothingFits,
    PriceSource,
    RegionCatalog,
    RegionNotPriced,
)
from migrationbox.sizing.clouds.storage import StorageQuote, disk_class
from migrationbox.sizing.clouds.storage import quote as storage_quote

CLOUDS = ("aws", "azure", "gcp")
DEFAULT_REGIONS = {"aws": "us-east-1", "azure": "eastus", "gcp": "us-central1"}


def _module(cloud: str):
    if cloud == "aws":
        from migrationbox.sizing.clouds import aws as module
    elif cloud == "azure":
        from migrationbox.sizing.clouds import azure as module
    elif cloud == "gcp":
        from migrationbox.sizing.clouds import gcp as module
    else:
        raise CatalogError(f"unknown cloud {cloud!r}; known: {', '.join(CLOUDS)}")
    return module


@cache
def load_catalog(cloud: str, region: str | None = None) -> RegionCatalog:
    """The machine catalog of one cloud region (default region when None)."""
    return _module(cloud).load(region or DEFAULT_REGIONS[cloud])


def regions(cloud: str) -> list[str]:
    """Regions the shipped data prices for this cloud."""
    return _module(cloud).regions()


def clear_cache() -> None:
    """Forget loaded catalogs (after a price refresh)."""
    load_catalog.cache_clear()


__all__ = [
    "CLOUDS",
    "DEFAULT_REGIONS",
    "HOURS_PER_MONTH",
    "CatalogError",
    "Commitment",
    "MachineType",
    "NothingFits",
    "PriceSource",
    "PricingAssumptions",
    "RegionCatalog",
    "RegionNotPriced",
    "StorageQuote",
    "clear_cache",
    "disk_class",
    "load_assumptions",
    "load_catalog",
    "regions",
    "storage_quote",
]
