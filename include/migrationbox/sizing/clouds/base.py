"""The shape every cloud catalog shares: machine types of one region and a cheapest-fit search.

Each cloud module (``aws``, ``azure``, ``gcp``) turns its copied public data into a
:class:`RegionCatalog`. Everything downstream (options, TCO, benchmarks) only sees
this shape, so a new price source (a refresh, another cloud) changes one loader.

Why a machine type is or is not a sizing *candidate* is decided by the loader and
recorded in ``excluded`` (a reason) rather than by dropping rows, so ``migrationbox
prices`` can explain why a type never wins.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from migrationbox.errors import InputError, MigrationBoxError

HOURS_PER_MONTH = 730  # 8,760 h / 12: the clouds' own convention for monthly estimates


class CatalogError(MigrationBoxError, RuntimeError):
    """The catalog cannot answer: unknown cloud, broken data file."""


class RegionNotPriced(CatalogError):
    """The cloud has no prices for this region in the shipped (or refreshed) data."""


class NothingFits(InputError):
    """No candidate machine type has the required vCPU and memory."""


@dataclass(frozen=True, slots=True)
class PriceSource:
    """Where a set of prices comes from and how old it is (shown to users)."""

    text: str
    as_of: str  # YYYY-MM-DD

    def __str__(self) -> str:
        return f"{self.text} (prices as of {self.as_of})"


@dataclass(frozen=True, slots=True)
class MachineType:
    """One machine type as sold in one region, with what it costs per month.

    ``monthly_usd`` is what a month of continuous use costs on demand: hourly x 730,
    except on GCP where sustained-use discounts are automatic and the data gives the
    discounted month. ``commit_*_monthly_usd`` are set only when the *data* carries
    commitment prices (GCP CUDs, or a refreshed AWS/Azure file); otherwise the TCO
    applies a documented assumption and says so.
    """

    name: str
    family: str
    vcpu: int
    memory_gib: float
    arch: str
    burstable: bool
    gpus: int
    hourly_usd: float
    monthly_usd: float
    commit_1y_monthly_usd: float | None = None
    commit_3y_monthly_usd: float | None = None
    excluded: str | None = None  # why it is not a sizing candidate, if it is not


@dataclass
class RegionCatalog:
    """The priced machine types of one cloud region.

    ``cheapest_fitting`` is called for every server x option x cloud (90,000 times
    for a 10,000-server estate), so candidates live in numpy arrays sorted by price
    and answers are cached per (whole vCPU, memory grid point, arch): rounding the
    requirement up to the catalog's own grid gives the same answer as the raw value.
    """

    cloud: str
    region: str
    price_source: PriceSource
    spec_source: str
    types: tuple[MachineType, ...]
    notes: tuple[str, ...] = ()
    _pools: dict[str, tuple[list[MachineType], np.ndarray, np.ndarray, np.ndarray]] = field(
        init=False, repr=False, default_factory=dict)
    _answers: dict[tuple[int, float, str], MachineType] = field(
        init=False, repr=False, default_factory=dict)

    def get(self, name: str) -> MachineType:
        for t in self.types:
            if t.name == name:
                return t
        raise KeyError(f"{self.cloud} {self.region} has no machine type {name!r}")

    def candidates(self, arch: str = "x86_64") -> list[MachineType]:
        return self._pool(arch)[0]

    def _pool(self, arch: str) -> tuple[list[MachineType], np.ndarray, np.ndarray, np.ndarray]:
        if arch not in self._pools:
            chosen = [t for t in self.types if t.excluded is None and t.arch == arch]
            chosen.sort(key=lambda t: (t.monthly_usd, -t.vcpu, -t.memory_gib, t.name))
            vcpu = np.array([t.vcpu for t in chosen], dtype=np.int64)
            mem = np.array([t.memory_gib for t in chosen], dtype=np.float64)
            sizes = np.unique(mem)
            self._pools[arch] = (chosen, vcpu, mem, sizes)
        return self._pools[arch]

    def largest(self, arch: str = "x86_64") -> str:
        pool = self._pool(arch)[0]
        if not pool:
            return "none"
        big = {max(pool, key=lambda t: (t.vcpu, t.memory_gib)),
               max(pool, key=lambda t: (t.memory_gib, t.vcpu))}
        return " and ".join(f"{t.name} ({t.vcpu} vCPU, {t.memory_gib:g} GiB)"
                            for t in sorted(big, key=lambda t: t.name))

    def cheapest_fitting(self, vcpu: float, memory_gib: float, arch: str = "x86_64"
                         ) -> MachineType:
        """The cheapest candidate with at least ``vcpu`` vCPUs and ``memory_gib`` GiB.

        Raises :class:`NothingFits` naming the requirement and the largest type sold.
        """
        if not (math.isfinite(vcpu) and math.isfinite(memory_gib)) or vcpu < 0 or memory_gib < 0:
            raise ValueError(f"requirement must be finite and >= 0, got {vcpu} vCPU, "
                             f"{memory_gib} GiB")
        pool, vcpus, mems, sizes = self._pool(arch)
        want_cpu = max(1, math.ceil(vcpu - 1e-9))
        index = int(np.searchsorted(sizes, memory_gib - 1e-9, side="left"))
        if pool and index < len(sizes):
            key = (want_cpu, float(sizes[index]), arch)
            hit = self._answers.get(key)
            if hit is not None:
                return hit
            fits = (vcpus >= want_cpu) & (mems >= sizes[index])
            if fits.any():
                chosen = pool[int(np.argmax(fits))]
                self._answers[key] = chosen
                return chosen
        raise NothingFits(
            f"no {self.cloud.upper()} {self.region} {arch} machine type fits {vcpu:.3g} vCPU "
            f"and {memory_gib:.4g} GiB; largest sold: {self.largest(arch)}")
