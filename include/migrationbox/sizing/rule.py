"""The provisional performance-based sizing rule.

Until the ML sizing models land, every server is sized the way a careful engineer
would do it by hand:

    required vCPU   = cpu_cores × peak-ish CPU % / 100 × comfort   (at least 1)
    required memory = ram_gb    × peak-ish mem % / 100 × comfort   (at least 1 GiB)

"Peak-ish" is the best figure discovery gave us, in this order: the 95th
percentile, else the observed peak, else the average × 1.5 (averages hide the
daily peak; 1.5 is a common rule-of-thumb peak-to-average ratio for business
workloads), capped at 100 %. ``Sizing.method`` says which was used, e.g.
``rule:cpu=p95*1.3,mem=avg*1.5*1.3``. ``ram_gb`` is read as GiB, which is what
agents (and psutil) actually measure when they say "GB".

The instance is the cheapest candidate that fits (see ``catalog``); storage is gp3
sized like the source disk, because a lift-and-shift keeps what is on it and the
free space is the server's growth allowance: the on-premise disk size if known,
else the filesystems' size, else the data size × comfort; never below the data
size and never below 8 GiB (the usual root volume of Linux AMIs). Monthly figures
use 730 hours.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from migrationbox.inventory.models import ServerRecord
from migrationbox.planning.models import Sizing
from migrationbox.sizing.catalog import (
    HOURS_PER_MONTH,
    InstanceCatalog,
    NoInstanceFits,
    UnsupportedArchitecture,
    block_storage_price,
    load_catalog,
    normalise_arch,
)

AVG_TO_PEAK = 1.5
MIN_VCPU = 1.0
MIN_MEMORY_GIB = 1.0
MIN_STORAGE_GB = 8
STORAGE_SKU = "gp3"


@dataclass(frozen=True, slots=True)
class Requirement:
    vcpu: float
    memory_gib: float
    cpu_basis: str
    memory_basis: str


def _peakish(p95: float | None, peak: float | None, avg: float) -> tuple[float, str]:
    if p95 is not None:
        return p95, "p95"
    if peak is not None:
        return peak, "peak"
    return min(100.0, avg * AVG_TO_PEAK), f"avg*{AVG_TO_PEAK:g}"


def required_resources(server: ServerRecord, comfort_factor: float = 1.3) -> Requirement:
    """vCPU and memory the target must offer, with the utilisation figure used."""
    if comfort_factor <= 0:
        raise ValueError(f"comfort_factor must be > 0, got {comfort_factor}")
    base = server.performance_baseline
    cpu_pct, cpu_basis = _peakish(base.cpu_p95_utilization_pct, base.cpu_peak_utilization_pct,
                                  base.cpu_avg_utilization_pct)
    mem_pct, mem_basis = _peakish(base.memory_p95_utilization_pct,
                                  base.memory_peak_utilization_pct,
                                  base.memory_avg_utilization_pct)
    vcpu = max(MIN_VCPU, server.hardware.cpu_cores * cpu_pct / 100 * comfort_factor)
    memory = max(MIN_MEMORY_GIB, server.hardware.ram_gb * mem_pct / 100 * comfort_factor)
    return Requirement(round(vcpu, 3), round(memory, 3), cpu_basis, mem_basis)


def storage_gb(server: ServerRecord, comfort_factor: float = 1.3) -> int:
    """gp3 capacity for the server (see module docstring)."""
    data = server.data_size_gb
    disk = server.hardware.disk_total_gb
    if not disk and server.storage and server.storage.filesystems:
        disk = sum(f.size_gb for f in server.storage.filesystems)
    if not disk:
        disk = data * comfort_factor
    return max(MIN_STORAGE_GB, math.ceil(max(disk, data)))


def size_server(server: ServerRecord, comfort_factor: float = 1.3,
                catalog: InstanceCatalog | None = None,
                allow_burstable: bool = False) -> Sizing:
    """Size one server with the provisional rule.

    Raises :class:`NoInstanceFits` (naming the server) when no instance type is big
    enough, and :class:`UnsupportedArchitecture` naming ``os.architecture`` when it
    is not one the cloud sells.
    """
    catalog = catalog or load_catalog()
    need = required_resources(server, comfort_factor)
    try:
        arch = normalise_arch(server.os.architecture)
    except UnsupportedArchitecture as exc:
        raise UnsupportedArchitecture(f"server {server.server_id}: os.architecture: {exc}"
                                      ) from None
    try:
        chosen = catalog.cheapest_fitting(need.vcpu, need.memory_gib, arch, allow_burstable)
    except NoInstanceFits as exc:
        raise NoInstanceFits(f"server {server.server_id}: {exc}") from None
    disk = block_storage_price(STORAGE_SKU, catalog.cloud, catalog.region)
    gb = storage_gb(server, comfort_factor)
    hourly = float(chosen.hourly_usd or 0.0)
    return Sizing(
        cloud=catalog.cloud,
        region=catalog.region,
        method=f"rule:cpu={need.cpu_basis}*{comfort_factor:g},"
               f"mem={need.memory_basis}*{comfort_factor:g}",
        required_vcpu=need.vcpu,
        required_memory_gib=need.memory_gib,
        instance_type=chosen.name,
        vcpu=chosen.vcpu,
        memory_gib=chosen.memory_gib,
        hourly_usd=hourly,
        monthly_usd=round(hourly * HOURS_PER_MONTH, 2),
        storage_gb=gb,
        storage_monthly_usd=round(gb * disk.usd_per_gb_month, 2),
        price_source=f"{catalog.price_source}; {STORAGE_SKU}: {disk.source}",
    )
