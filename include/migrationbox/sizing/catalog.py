"""Instance and block-storage catalogs with real specs and prices.

The data are verbatim copies of public machine-readable sources, kept next to this
module with their provenance (``data/PROVENANCE.md``). Every price that leaves this
module carries a provenance string with its date, so a plan always says how old its
prices are.

Which instance types are *candidates* for sizing, and why:

- **priced**: a type without an on-demand price cannot be costed, so it cannot win;
- **current generation**: previous-generation types are still sold but AWS steers
  new workloads away from them, and they are rarely cheaper per unit of capacity;
- **no accelerators**: GPU types and accelerator families (FPGA ``f*``, fractional
  GPU ``g6f``/``gr6f``, Inferentia ``inf*``, Trainium ``trn*``, video ``vt*``,
  Gaudi ``dl*``) bill for hardware an on-premise server's CPU/RAM profile says
  nothing about;
- **one architecture**: ``x86_64`` by default, because a lift-and-shift keeps the
  binaries it has; ``arm64`` can be asked for explicitly (Mac types never);
- **not burstable** unless asked: T-family instances throttle to a CPU credit
  baseline, which a performance-based rule sized on peak-ish utilisation would
  silently violate.

The catalog loads lazily on first use and is cached for the process.
"""

from __future__ import annotations

import csv
import math
import re
from bisect import bisect_left
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path

AWS_EC2_FILE = "aws_ec2_us-east-1.csv"
BLOCK_STORAGE_FILE = "block_storage_usd_per_gb_month.csv"
HOURS_PER_MONTH = 730  # AWS's own convention for monthly estimates (8,760 h / 12)

_PRICE_COLUMN = re.compile(r"^ondemand_usd_hr_(?P<source>[a-z0-9]+)_(?P<date>\d{4}-\d{2}-\d{2})$")
_PRICE_SOURCES = {
    "karpenter": "aws/karpenter-provider-aws pricing",
    "libcloud": "apache-libcloud pricing.json",
}
_ACCELERATOR_FAMILY = re.compile(r"^(f\d|g\d|gr\d|p\d|inf\d|trn\d|vt\d|dl\d)")
_ARCH_ALIASES = {
    "x86_64": "x86_64", "amd64": "x86_64", "x64": "x86_64", "x86-64": "x86_64",
    "x86": "x86_64", "i386": "x86_64", "i686": "x86_64",
    "arm64": "arm64", "aarch64": "arm64", "armv8": "arm64",
}


class CatalogError(RuntimeError):
    """The catalog cannot answer: unknown cloud/region, or a broken data file."""


class NoInstanceFits(ValueError):
    """No candidate instance type has the required vCPU and memory."""


class UnsupportedArchitecture(ValueError):
    """The server's CPU architecture is not one cloud instances offer."""


def normalise_arch(value: str | None) -> str:
    """Map what discovery reports (``amd64``, ``aarch64`` ...) to the catalog's names."""
    if value is None or not value.strip():
        return "x86_64"
    arch = _ARCH_ALIASES.get(value.strip().lower())
    if arch is None:
        raise UnsupportedArchitecture(f"architecture {value!r} has no cloud instance types "
                         f"(known: {', '.join(sorted(set(_ARCH_ALIASES)))})")
    return arch


@dataclass(frozen=True, slots=True)
class InstanceType:
    """One instance type as sold in one region."""

    name: str
    family: str
    vcpu: int
    cores: int
    memory_gib: float
    arch: str
    cpu_vendor: str
    clock_ghz: float | None
    burstable: bool
    current_generation: bool
    gpus: int
    network_performance: str
    ebs_baseline_mbps: float | None
    ebs_baseline_iops: float | None
    instance_storage_gb: float | None
    hourly_usd: float | None

    @property
    def monthly_usd(self) -> float | None:
        return None if self.hourly_usd is None else self.hourly_usd * HOURS_PER_MONTH

    @property
    def accelerated(self) -> bool:
        return self.gpus > 0 or bool(_ACCELERATOR_FAMILY.match(self.family))


@dataclass(frozen=True, slots=True)
class StoragePrice:
    cloud: str
    region: str
    sku: str
    usd_per_gb_month: float
    snapshot_usd_per_gb_month: float | None
    source: str


@dataclass
class InstanceCatalog:
    """The instance types of one cloud region, with a cheapest-fit search.

    ``cheapest_fitting`` is called once per server, so for 100,000 servers it must
    not scan the catalog every time. A requirement is first normalised to the
    catalog's own grid (vCPU rounded up to an integer, memory rounded up to the next
    memory size that exists), which yields the same answer as the raw requirement,
    and answers are cached per grid point.
    """

    cloud: str
    region: str
    price_source: str
    types: tuple[InstanceType, ...]
    _by_name: dict[str, InstanceType] = field(init=False, repr=False)
    _candidates: dict[tuple[str, bool], tuple[InstanceType, ...]] = field(
        init=False, repr=False, default_factory=dict
    )
    _answers: dict[tuple[int, float, str, bool], InstanceType] = field(
        init=False, repr=False, default_factory=dict
    )
    _memory_sizes: dict[tuple[str, bool], list[float]] = field(
        init=False, repr=False, default_factory=dict
    )

    def __post_init__(self) -> None:
        self._by_name = {t.name: t for t in self.types}

    def get(self, name: str) -> InstanceType:
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"{self.cloud} {self.region} has no instance type {name!r}") from None

    def candidates(self, arch: str = "x86_64", allow_burstable: bool = False
                   ) -> tuple[InstanceType, ...]:
        """Candidate types, cheapest first (ties: more vCPU, more memory, then name)."""
        key = (arch, allow_burstable)
        if key not in self._candidates:
            chosen = [
                t for t in self.types
                if t.hourly_usd is not None and t.current_generation and not t.accelerated
                and t.arch == arch and (allow_burstable or not t.burstable)
            ]
            chosen.sort(key=lambda t: (t.hourly_usd, -t.vcpu, -t.memory_gib, t.name))
            self._candidates[key] = tuple(chosen)
            self._memory_sizes[key] = sorted({t.memory_gib for t in chosen})
        return self._candidates[key]

    def _describe(self, arch: str, allow_burstable: bool) -> str:
        burst = "burstable allowed" if allow_burstable else "burstable excluded"
        return (f"{arch} {self.cloud.upper()} {self.region} types (priced, current generation, "
                f"no accelerators, {burst})")

    def cheapest_fitting(self, vcpu: float, memory_gib: float, arch: str = "x86_64",
                         allow_burstable: bool = False) -> InstanceType:
        """The cheapest candidate with at least ``vcpu`` vCPUs and ``memory_gib`` GiB.

        Raises :class:`NoInstanceFits` naming the requirement and the largest type
        that exists when nothing is big enough.
        """
        if not (math.isfinite(vcpu) and math.isfinite(memory_gib)) or vcpu < 0 or memory_gib < 0:
            raise ValueError(f"requirement must be finite and >= 0, got {vcpu} vCPU, "
                             f"{memory_gib} GiB")
        pool = self.candidates(arch, allow_burstable)
        if not pool:
            raise NoInstanceFits(f"no instance type fits {vcpu:g} vCPU and {memory_gib:g} GiB: "
                                 f"there are no {self._describe(arch, allow_burstable)}")
        sizes = self._memory_sizes[(arch, allow_burstable)]
        want_cpu = max(0, math.ceil(vcpu - 1e-9))
        index = bisect_left(sizes, memory_gib - 1e-9)
        if index < len(sizes):
            key = (want_cpu, sizes[index], arch, allow_burstable)
            if key in self._answers:
                return self._answers[key]
            for t in pool:
                if t.vcpu >= want_cpu and t.memory_gib >= sizes[index]:
                    self._answers[key] = t
                    return t
        biggest = {max(pool, key=lambda t: (t.vcpu, t.memory_gib)),
                   max(pool, key=lambda t: (t.memory_gib, t.vcpu))}
        largest = " and ".join(f"{t.name} ({t.vcpu} vCPU, {t.memory_gib:g} GiB)"
                               for t in sorted(biggest, key=lambda t: t.name))
        raise NoInstanceFits(
            f"no instance type fits {vcpu:g} vCPU and {memory_gib:g} GiB memory among "
            f"{self._describe(arch, allow_burstable)}; largest: {largest}"
        )


def _data_path(name: str) -> Path:
    return Path(str(resources.files("migrationbox.sizing") / "data" / name))


def _opt_float(row: dict[str, str], column: str) -> float | None:
    value = (row.get(column) or "").strip()
    return float(value) if value else None


def _bool(row: dict[str, str], column: str, line: int, path: Path) -> bool:
    value = (row.get(column) or "").strip()
    if value not in ("True", "False"):
        raise CatalogError(f"{path.name} line {line}: column {column!r} must be True or False, "
                           f"got {value!r}")
    return value == "True"


def _price_column(header: list[str], path: Path) -> tuple[str, str]:
    """The newest ``ondemand_usd_hr_<source>_<date>`` column and its provenance text."""
    found = [(m["date"], m["source"], col) for col in header if (m := _PRICE_COLUMN.match(col))]
    if not found:
        raise CatalogError(f"{path.name}: no 'ondemand_usd_hr_<source>_<YYYY-MM-DD>' column")
    date, source, column = max(found)
    return column, f"{_PRICE_SOURCES.get(source, source)} generated {date}"


def load_aws_instance_catalog(path: Path | None = None, region: str = "us-east-1"
                              ) -> InstanceCatalog:
    """Read the EC2 catalog CSV into typed rows (uncached; see :func:`load_catalog`)."""
    path = path or _data_path(AWS_EC2_FILE)
    types: list[InstanceType] = []
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        column, provenance = _price_column(list(reader.fieldnames or []), path)
        for line, row in enumerate(reader, start=2):
            try:
                types.append(InstanceType(
                    name=row["instance_type"],
                    family=row["family"],
                    vcpu=int(row["vcpu"]),
                    cores=int(row["cores"] or row["vcpu"]),
                    memory_gib=float(row["memory_gib"]),
                    arch=row["arch"],
                    cpu_vendor=row.get("cpu_vendor") or "",
                    clock_ghz=_opt_float(row, "clock_ghz"),
                    burstable=_bool(row, "burstable", line, path),
                    current_generation=_bool(row, "current_generation", line, path),
                    gpus=int(row.get("gpus") or 0),
                    network_performance=row.get("network_performance") or "",
                    ebs_baseline_mbps=_opt_float(row, "ebs_baseline_mbps"),
                    ebs_baseline_iops=_opt_float(row, "ebs_baseline_iops"),
                    instance_storage_gb=_opt_float(row, "instance_storage_gb"),
                    hourly_usd=_opt_float(row, column),
                ))
            except (KeyError, ValueError) as exc:
                raise CatalogError(f"{path.name} line {line}: {exc}") from exc
    types.sort(key=lambda t: t.name)
    return InstanceCatalog(
        cloud="aws",
        region=region,
        price_source=f"AWS {region} on-demand Linux, {provenance}",
        types=tuple(types),
    )


_SUPPORTED = {("aws", "us-east-1"): AWS_EC2_FILE}


@cache
def load_catalog(cloud: str = "aws", region: str = "us-east-1") -> InstanceCatalog:
    """The cached catalog of one cloud region.

    Only AWS us-east-1 is shipped for the provisional rule; other clouds and regions
    arrive with the sizing issue, and asking for them is a clear error rather than a
    silent fallback to another region's prices.
    """
    if (cloud, region) not in _SUPPORTED:
        raise CatalogError(
            f"no instance catalog for cloud={cloud!r} region={region!r}; shipped: "
            + ", ".join(f"{c}/{r}" for c, r in sorted(_SUPPORTED))
        )
    return load_aws_instance_catalog(_data_path(_SUPPORTED[(cloud, region)]), region)


def cheapest_fitting(vcpu: float, memory_gib: float, arch: str = "x86_64",
                     allow_burstable: bool = False) -> InstanceType:
    """Cheapest AWS us-east-1 candidate with at least this vCPU and memory."""
    return load_catalog().cheapest_fitting(vcpu, memory_gib, arch, allow_burstable)


@cache
def _storage_prices() -> dict[tuple[str, str, str], StoragePrice]:
    path = _data_path(BLOCK_STORAGE_FILE)
    prices: dict[tuple[str, str, str], StoragePrice] = {}
    with path.open(newline="", encoding="utf-8") as handle:
        for line, row in enumerate(csv.DictReader(handle), start=2):
            try:
                key = (row["cloud"], row["region"], row["disk_sku"])
                if key in prices:  # the file repeats some GCP rows from two sources
                    continue
                prices[key] = StoragePrice(
                    cloud=row["cloud"], region=row["region"], sku=row["disk_sku"],
                    usd_per_gb_month=float(row["usd_per_gb_month"]),
                    snapshot_usd_per_gb_month=_opt_float(row, "snapshot_usd_per_gb_month"),
                    source=row["source"],
                )
            except (KeyError, ValueError) as exc:
                raise CatalogError(f"{path.name} line {line}: {exc}") from exc
    return prices


def block_storage_price(sku: str = "gp3", cloud: str = "aws", region: str = "us-east-1"
                        ) -> StoragePrice:
    """USD per GB-month of one block-storage SKU (gp3 by default)."""
    try:
        return _storage_prices()[(cloud, region, sku)]
    except KeyError:
        known = ", ".join(f"{c}/{r}/{s}" for c, r, s in sorted(_storage_prices()))
        raise CatalogError(f"no block storage price for {cloud}/{region}/{sku}; known: {known}"
                           ) from None
