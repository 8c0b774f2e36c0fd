"""Three sizing options per server, per cloud and region, with TCO and measured risk.

The options are the plan's (Component 2), applied to what discovery measured (the
7-day baseline) or to the last 7 days of a history file:

- **Conservative**: 150 % of peak demand, one instance sized for it;
- **Balanced** (recommended): 120 % of average demand, auto-scaling from one
  instance up to the Conservative capacity (target tracking at 70 % CPU);
- **Aggressive**: 100 % of average demand, aggressive auto-scaling (50 % CPU).

Each option maps to the cheapest fitting machine type of each cloud region, with
monthly cost on demand and with 1-/3-year commitments, storage, egress, licences,
three-year TCO and savings versus on-prem.

**Risk is measured, not asserted**: next to each price is the rate at which the same
rule under-provisioned real VMs on the backtest (``backtest``; the champion model's
evaluation when one is registered, else the table shipped with the package). A
server that cannot scale out (a database, a cache, anything stateful or unknown) is
judged as a single instance; a stateless one as auto-scaled. When the rate that
applies is above ``max_risk`` (default 10 %), the option is marked unsafe and a
**safe variant** is offered: the option raised to the cheapest method whose measured
rate is within the bar (the champion ML model's calibrated capacity, the Compute
Optimizer rule, the Azure Migrate rule, or Conservative), with that method's rate.

Public API for planning (the lead wires it): :class:`SizingEngine`,
:func:`size_estate`, :func:`planning_sizing`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from migrationbox.sizing.clouds import (
    CLOUDS,
    DEFAULT_REGIONS,
    CatalogError,
    MachineType,
    NothingFits,
    PricingAssumptions,
    RegionCatalog,
    StorageQuote,
    load_catalog,
    storage_quote,
)
from migrationbox.sizing.features import ServerProfile, feature_row, profile_from_record
from migrationbox.sizing.forecast import MetricForecast, baseline_fallback
from migrationbox.sizing.onprem import OnPremCost, OnPremCostModel, estimate
from migrationbox.sizing.tco import CloudCost, cloud_cost, savings

if TYPE_CHECKING:
    from migrationbox.inventory.models import ServerRecord
    from migrationbox.planning.models import Sizing

MIN_MEMORY_GIB = 0.5
MIN_STORAGE_GB = 8
MAX_INSTANCES = 10
LOW_RISK = 0.05
DEFAULT_MAX_RISK = 0.10
RULES_ONLY = ("rules only: no champion model registered (train one with `python -m "
              "ml.sizing.train --quick`, or trigger the migrationbox_retrain_sizing DAG; "
              "`make demo` does it)")


class OptionName(StrEnum):
    conservative = "conservative"
    balanced = "balanced"
    aggressive = "aggressive"


@dataclass(frozen=True, slots=True)
class OptionSpec:
    name: OptionName
    label: str
    statistic: str  # peak | avg
    factor: float
    autoscaling: str | None  # None | "standard" | "aggressive"
    storage_factor: float | None  # None: provisioned size; else used x factor

    @property
    def formula(self) -> str:
        return f"{self.factor:.0%} of {'peak' if self.statistic == 'peak' else 'average'}"


OPTIONS: tuple[OptionSpec, ...] = (
    OptionSpec(OptionName.conservative, "Conservative", "peak", 1.5, None, None),
    OptionSpec(OptionName.balanced, "Balanced", "avg", 1.2, "standard", 1.3),
    OptionSpec(OptionName.aggressive, "Aggressive", "avg", 1.0, "aggressive", 1.1),
)
AUTOSCALING_POLICY = {
    "standard": "target tracking at 70% CPU",
    "aggressive": "target tracking at 50% CPU, fast scale-in",
}
SAFE_CANDIDATES = ("ml", "compute_optimizer", "azure_migrate", "conservative")
SAFE_LABELS = {
    "ml": "ML capacity (future p95 quantile, conformal-calibrated to the stated risk)",
    "compute_optimizer": "Compute Optimizer rule (p99.5 + 20%)",
    "azure_migrate": "Azure Migrate rule (p95 x 1.3)",
    "conservative": "Conservative (150% of peak)",
}


# --------------------------------------------------------------------------- risk


@dataclass(frozen=True)
class RiskTable:
    """Measured under-provisioning per method (see ``backtest.option_risk``)."""

    methods: dict[str, dict[str, Any]]
    measured_on: str
    definition: str
    source: str

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str | None = None) -> RiskTable:
        return cls(dict(data.get("methods", {})), str(data.get("measured_on", "")),
                   str(data.get("definition", "")), source or str(data.get("source", "")))

    def rate(self, method: str, key: str = "underprov_rate") -> float | None:
        value = self.methods.get(method, {}).get(key)
        return None if value is None else float(value)


def load_risk_table(prefer_registry: bool = True) -> RiskTable | None:
    """The champion's measured risk table, else the shipped one, else None."""
    if prefer_registry:
        try:
            from migrationbox.sizing.registry import champion_risk_table

            table = champion_risk_table()
        except Exception:  # a broken registry must not stop sizing; shipped table below
            table = None
        if table is not None:
            return RiskTable.from_dict(table)
    from migrationbox.sizing.backtest import shipped_risk_table

    shipped = shipped_risk_table()
    if shipped is None:
        return None
    return RiskTable.from_dict(shipped, f"shipped backtest ({shipped.get('source', '')})")


@dataclass(frozen=True, slots=True)
class Risk:
    method: str
    level: str  # Low | Medium | High | Unknown
    rate: float | None  # the under-provisioning rate that applies
    basis: str  # "single instance" | "auto-scaled up to N instances"
    time_above_base: float | None = None
    scale_outs_per_day: float | None = None

    @property
    def text(self) -> str:
        if self.rate is None:
            return f"{self.level}: not measured ({self.basis})"
        out = (f"{self.level}: {self.rate:.0%} of backtested servers under-provisioned "
               f"({self.basis})")
        if self.time_above_base is not None and self.scale_outs_per_day is not None:
            out += (f"; above base capacity {self.time_above_base:.0%} of the time, "
                    f"~{self.scale_outs_per_day:.1f} scale-outs/day (2-3 min each)")
        return out

    def as_dict(self) -> dict[str, Any]:
        return {"method": self.method, "level": self.level,
                "underprovisioning_rate": None if self.rate is None else round(self.rate, 4),
                "basis": self.basis,
                "time_above_base": None if self.time_above_base is None
                else round(self.time_above_base, 4),
                "scale_outs_per_day": None if self.scale_outs_per_day is None
                else round(self.scale_outs_per_day, 2),
                "text": self.text}


def _level(rate: float | None, max_risk: float) -> str:
    if rate is None:
        return "Unknown"
    if rate <= LOW_RISK:
        return "Low"
    return "Medium" if rate <= max_risk else "High"


# --------------------------------------------------------------------------- results


@dataclass
class CloudChoice:
    """One option in one cloud region: the machine, its costs, or why there is none."""

    cloud: str
    region: str
    required_vcpu: float
    required_memory_gib: float
    machine: MachineType | None = None
    cost: CloudCost | None = None
    savings: float | None = None
    savings_on_demand: float | None = None
    autoscaling: tuple[int, int] | None = None
    price_source: str = ""
    storage: StorageQuote | None = None
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"cloud": self.cloud, "region": self.region,
                               "required_vcpu": round(self.required_vcpu, 3),
                               "required_memory_gib": round(self.required_memory_gib, 3)}
        if self.error:
            out["error"] = self.error
            return out
        assert self.machine is not None and self.cost is not None
        out.update({
            "instance_type": self.machine.name, "vcpu": self.machine.vcpu,
            "memory_gib": self.machine.memory_gib,
            "hourly_usd": round(self.machine.hourly_usd, 6),
            "autoscaling": None if self.autoscaling is None else
            {"min_instances": self.autoscaling[0], "max_instances": self.autoscaling[1]},
            "costs": self.cost.as_dict(),
            "savings_vs_onprem_3y_commitment": None if self.savings is None
            else round(self.savings, 4),
            "savings_vs_onprem_on_demand": None if self.savings_on_demand is None
            else round(self.savings_on_demand, 4),
            "price_source": self.price_source,
            "storage_source": self.storage.source if self.storage else "",
            "storage_assumption": self.storage.assumption if self.storage else None,
        })
        return out


@dataclass
class SafeVariant:
    method: str
    label: str
    risk: Risk
    required_vcpu: float
    required_memory_gib: float
    clouds: dict[str, CloudChoice]
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"method": self.method, "label": self.label, "risk": self.risk.as_dict(),
                "required_vcpu": round(self.required_vcpu, 3),
                "required_memory_gib": round(self.required_memory_gib, 3), "note": self.note,
                "clouds": {c: v.as_dict() for c, v in self.clouds.items()}}


@dataclass
class SizedOption:
    spec: OptionSpec
    required_vcpu: float
    required_memory_gib: float
    storage_gb: float
    basis: str
    risk: Risk
    unsafe: bool
    clouds: dict[str, CloudChoice]
    safe_variant: SafeVariant | None = None
    recommended: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"option": str(self.spec.name), "label": self.spec.label,
                "formula": self.spec.formula, "basis": self.basis,
                "required_vcpu": round(self.required_vcpu, 3),
                "required_memory_gib": round(self.required_memory_gib, 3),
                "storage_gb": round(self.storage_gb, 1),
                "autoscaling_policy": AUTOSCALING_POLICY.get(self.spec.autoscaling or ""),
                "risk": self.risk.as_dict(), "unsafe": self.unsafe,
                "recommended": self.recommended,
                "clouds": {c: v.as_dict() for c, v in self.clouds.items()},
                "safe_variant": None if self.safe_variant is None
                else self.safe_variant.as_dict()}


@dataclass
class ServerSizing:
    profile: ServerProfile
    onprem: OnPremCost
    forecasts: dict[str, MetricForecast]
    prediction: dict[str, float] | None
    options: list[SizedOption]
    warnings: list[str] = field(default_factory=list)
    sized_by: str = RULES_ONLY  # the model version (and stated risk) or "rules only"

    def option(self, name: str) -> SizedOption:
        for o in self.options:
            if o.spec.name == name:
                return o
        raise KeyError(f"{self.profile.server_id}: no option {name!r}")

    def as_dict(self) -> dict[str, Any]:
        p = self.profile
        return {
            "server_id": p.server_id, "hostname": p.hostname,
            "current": {"vcpu": p.vcpu, "memory_gib": p.memory_gib, "disk_gb": p.disk_gb,
                        "disk_type": p.disk_type, "os": p.os_type,
                        "licences": p.licences.names(), "role": p.role,
                        "scalable": p.scalable, "scalable_reason": p.scalable_reason},
            "demand": {"source": p.stats_source,
                       "cpu_pct": _stats(p.cpu), "mem_pct": _stats(p.memory)},
            "onprem_monthly": self.onprem.as_dict(),
            "forecast": {k: v.as_dict() for k, v in self.forecasts.items()},
            "model_prediction": self.prediction,
            "sized_by": self.sized_by,
            "options": [o.as_dict() for o in self.options],
            "warnings": self.warnings,
        }


def _stats(s: Any) -> dict[str, float | None]:
    def r(x: float) -> float | None:
        return None if math.isnan(x) else round(x, 3)

    return {"avg": r(s.avg), "p95": r(s.p95), "p99_5": r(s.p99_5), "peak": r(s.peak)}


@dataclass
class EstateSizing:
    servers: list[ServerSizing]
    failed: list[tuple[str, str]]
    notes: list[str]
    clouds: list[str]
    regions: dict[str, str]

    def as_dict(self) -> dict[str, Any]:
        return {"clouds": self.clouds, "regions": self.regions, "notes": self.notes,
                "servers": [s.as_dict() for s in self.servers],
                "failed": [{"server_id": sid, "error": msg} for sid, msg in self.failed]}


# --------------------------------------------------------------------------- engine


@lru_cache(maxsize=4096)
def _storage(cloud: str, region: str, kind: str, small: bool) -> StorageQuote:
    return storage_quote(cloud, region, kind, 0 if small else 10_000)


class SizingEngine:
    """Sizes servers into the three options for the configured clouds and regions.

    ``model`` is a fitted :class:`~migrationbox.sizing.quantile_model.CalibratedSizer` (the
    registry champion; see :meth:`with_champion`) or None; ``risk`` the measured
    risk table (default: champion's, else shipped).
    """

    def __init__(self, clouds: Sequence[str] = CLOUDS, regions: dict[str, str] | None = None,
                 assumptions: PricingAssumptions | None = None,
                 onprem: OnPremCostModel | None = None, risk: RiskTable | None = None,
                 model: Any = None, model_label: str | None = None,
                 max_risk: float = DEFAULT_MAX_RISK) -> None:
        self.clouds = list(clouds)
        self.regions = {c: (regions or {}).get(c) or DEFAULT_REGIONS[c] for c in self.clouds}
        self.assumptions = assumptions or PricingAssumptions()
        self.onprem_model = onprem or OnPremCostModel()
        self.risk = risk if risk is not None else load_risk_table()
        self.model = model
        self.model_label = model_label
        self.max_risk = max_risk
        self.catalogs: dict[str, RegionCatalog | None] = {}
        self.catalog_errors: dict[str, str] = {}
        for cloud in self.clouds:
            try:
                self.catalogs[cloud] = load_catalog(cloud, self.regions[cloud])
            except CatalogError as exc:
                self.catalogs[cloud] = None
                self.catalog_errors[cloud] = str(exc)

    @classmethod
    def with_champion(cls, **kwargs: Any) -> SizingEngine:
        """An engine using the registry's champion model when there is one."""
        model = label = None
        try:
            from migrationbox.sizing.registry import load_champion_ensemble

            loaded = load_champion_ensemble()
        except Exception as exc:  # registry unreachable: rules only, and say so
            loaded = None
            label = f"none (registry unavailable: {exc})"
        if loaded is not None:
            model, champ = loaded
            label = f"{champ.name} v{champ.version} (champion)"
        return cls(model=model, model_label=label or RULES_ONLY, **kwargs)

    # ---- notes shown with every output
    def notes(self) -> list[str]:
        lines = []
        for cloud in self.clouds:
            cat = self.catalogs.get(cloud)
            if cat is None:
                lines.append(f"ERROR {cloud}: {self.catalog_errors[cloud]}")
                continue
            lines.append(f"PRICES {cloud} {cat.region}: {cat.price_source}; specs: "
                         f"{cat.spec_source}")
            lines.extend(f"NOTE {cloud} {cat.region}: {n}" for n in cat.notes)
        lines.extend(self.assumptions.notes(self.clouds))
        lines.append(self.onprem_model.note())
        if self.risk is None:
            lines.append("RISK not measured: no backtest table found (run the sizing training "
                         "pipeline: python -m ml.sizing.train)")
        else:
            lines.append(f"RISK measured on {self.risk.measured_on}; {self.risk.definition}; "
                         f"source: {self.risk.source}")
        if self.model is None:
            lines.append(f"MODEL {self.model_label or RULES_ONLY}")
        else:
            lines.append(f"MODEL {self.model_label}; capacity for a stated risk of "
                         f"{self.model_risk('discovery'):.1%} (share of servers short of CPU "
                         f"or memory at the next 30 days' p95), measured "
                         f"{_pct_or_na(self._ml_rate('discovery'))} on held-out VMs "
                         f"({self.model_risk('history'):.1%} with a history, measured "
                         f"{_pct_or_na(self._ml_rate('history'))})")
        return lines

    # ---- the model's stated risk and its measured rate
    def model_risk(self, mode: str = "discovery") -> float:
        """The stated risk the model is asked for, per input mode.

        With a measured risk table: the cheapest evaluated risk whose rate *measured on
        held-out VMs* is within ``max_risk`` (the lowest measured rate when none is);
        without one, the largest evaluated risk within ``max_risk``.
        """
        from migrationbox.sizing.quantile_model import RISK_GRID, ml_key

        target = getattr(getattr(self.model, "config", None), "target_risk", 0.10)
        measured = []
        for r in RISK_GRID:
            entry = self.risk.methods.get(ml_key(mode, r, target)) if self.risk else None
            if entry and entry.get("underprov_rate") is not None:
                measured.append((float(entry["underprov_rate"]),
                                 float(entry.get("overprov_usd_month") or 0.0), r))
        if measured:
            within = [m for m in measured if m[0] <= self.max_risk + 1e-9]
            if within:
                return min(within, key=lambda m: (m[1], m[0], -m[2]))[2]
            return min(measured, key=lambda m: (m[0], m[1]))[2]
        within_grid = [r for r in RISK_GRID if r <= self.max_risk + 1e-9]
        return max(within_grid) if within_grid else min(RISK_GRID)

    def _ml_key(self, mode: str) -> str:
        from migrationbox.sizing.quantile_model import ml_key

        target = getattr(getattr(self.model, "config", None), "target_risk", 0.10)
        return ml_key(mode, self.model_risk(mode), target)

    def _ml_rate(self, mode: str) -> float | None:
        return self.risk.rate(self._ml_key(mode)) if self.risk else None

    def sized_by(self, prediction: dict[str, float] | None) -> str:
        if self.model is None or prediction is None:
            return self.model_label or RULES_ONLY
        return (f"model {self.model_label}, stated risk {prediction['target_risk']:.1%}")

    # ---- model
    def predict(self, profiles: Sequence[ServerProfile]) -> list[dict[str, float] | None]:
        if self.model is None or not profiles:
            return [None] * len(profiles)
        import pandas as pd

        frame = pd.DataFrame([feature_row(p) for p in profiles])
        history = np.array([not math.isnan(p.cpu.p99_5) for p in profiles])
        out: list[dict[str, float] | None] = [None] * len(profiles)
        for mode, mask in (("history", history), ("discovery", ~history)):
            if not mask.any():
                continue
            pred = self.model.predict(frame[mask], self.model_risk(mode))
            for i, row in zip(np.nonzero(mask)[0], pred.to_dict(orient="records"),
                              strict=True):
                out[i] = {k: round(float(v), 4) for k, v in row.items()}
        return out

    # ---- one server
    def size(self, profile: ServerProfile, prediction: dict[str, float] | None = None,
             forecasts: dict[str, MetricForecast] | None = None,
             warnings: list[str] | None = None) -> ServerSizing:
        onprem = estimate(profile, self.onprem_model)
        options: list[SizedOption] = []
        conservative_vcpu = self._requirement(profile, OPTIONS[0])[0]
        for spec in OPTIONS:
            options.append(self._option(profile, spec, onprem, prediction, conservative_vcpu))
        for o in options:
            o.recommended = o.spec.name == OptionName.balanced
        return ServerSizing(profile, onprem, forecasts or baseline_fallback(profile),
                            prediction, options, list(warnings or []),
                            self.sized_by(prediction))

    def size_profiles(self, profiles: Sequence[ServerProfile],
                      forecasts: dict[str, dict[str, MetricForecast]] | None = None,
                      warnings: dict[str, list[str]] | None = None) -> list[ServerSizing]:
        predictions = self.predict(profiles)
        return [self.size(p, pred, (forecasts or {}).get(p.server_id),
                          (warnings or {}).get(p.server_id))
                for p, pred in zip(profiles, predictions, strict=True)]

    def _requirement(self, p: ServerProfile, spec: OptionSpec) -> tuple[float, float, str]:
        if spec.statistic == "peak":
            cpu, cpu_basis = p.cpu.peakish()
            mem, mem_basis = p.memory.peakish()
        else:
            cpu, cpu_basis = p.cpu.avg, "avg"
            mem, mem_basis = p.memory.avg, "avg"
        vcpu = p.vcpu * cpu / 100 * spec.factor
        gib = max(MIN_MEMORY_GIB, p.memory_gib * mem / 100 * spec.factor)
        basis = f"cpu {cpu_basis} {cpu:.1f}%, memory {mem_basis} {mem:.1f}% x {spec.factor:g}"
        return vcpu, gib, basis

    def _storage_gb(self, p: ServerProfile, spec: OptionSpec) -> float:
        provisioned = max(p.disk_gb, p.used_gb, MIN_STORAGE_GB)
        if spec.storage_factor is None:
            return math.ceil(provisioned)
        return math.ceil(min(provisioned, max(p.used_gb * spec.storage_factor, MIN_STORAGE_GB)))

    def _risk(self, method: str, p: ServerProfile, autoscaled: bool, n_max: int | None
              ) -> Risk:
        table = self.risk
        if autoscaled and p.scalable:
            basis = f"auto-scaled up to {n_max} instances"
            rate = table.rate(method, "underprov_scaled_rate") if table else None
            return Risk(method, _level(rate, self.max_risk), rate, basis,
                        table.rate(method, "time_above") if table else None,
                        table.rate(method, "scale_outs_per_day") if table else None)
        basis = "single instance" if not autoscaled else (
            f"single instance: {p.scalable_reason}")
        rate = table.rate(method, "underprov_rate") if table else None
        return Risk(method, _level(rate, self.max_risk), rate, basis)

    def _choose(self, p: ServerProfile, vcpu: float, gib: float, storage_gb: float,
                onprem: OnPremCost, autoscaling: str | None, conservative_vcpu: float,
                scale_share: float) -> dict[str, CloudChoice]:
        out: dict[str, CloudChoice] = {}
        kind = "hdd" if (p.disk_type or "").strip().lower() in {"hdd", "sata", "sas"} else "ssd"
        for cloud in self.clouds:
            region = self.regions[cloud]
            choice = CloudChoice(cloud, region, vcpu, gib)
            cat = self.catalogs.get(cloud)
            if cat is None:
                choice.error = self.catalog_errors[cloud]
                out[cloud] = choice
                continue
            try:
                machine = cat.cheapest_fitting(vcpu, gib, p.arch)
            except NothingFits as exc:
                choice.error = str(exc)
                out[cloud] = choice
                continue
            disk = _storage(cloud, region, kind, storage_gb < 125)
            scaled = autoscaling is not None and p.scalable
            cost = cloud_cost(p, cloud, machine, disk, storage_gb, self.assumptions,
                              scale_share if scaled else 0.0)
            choice.machine = machine
            choice.cost = cost
            choice.storage = disk
            choice.savings = savings(onprem, cost.monthly_3y)
            choice.savings_on_demand = savings(onprem, cost.monthly_on_demand)
            choice.price_source = str(cat.price_source)
            if scaled:
                n = int(min(MAX_INSTANCES, max(2, math.ceil(conservative_vcpu / machine.vcpu))))
                choice.autoscaling = (1, n)
            out[cloud] = choice
        return out

    def _option(self, p: ServerProfile, spec: OptionSpec, onprem: OnPremCost,
                prediction: dict[str, float] | None, conservative_vcpu: float) -> SizedOption:
        vcpu, gib, basis = self._requirement(p, spec)
        storage_gb = self._storage_gb(p, spec)
        autoscaled = spec.autoscaling is not None
        n_est = int(min(MAX_INSTANCES, max(2, math.ceil(conservative_vcpu / max(vcpu, 1)))))
        risk = self._risk(str(spec.name), p, autoscaled, n_est if autoscaled else None)
        scale_share = risk.time_above_base or 0.0
        clouds = self._choose(p, vcpu, gib, storage_gb, onprem, spec.autoscaling,
                              conservative_vcpu, scale_share)
        unsafe = risk.rate is not None and risk.rate > self.max_risk
        option = SizedOption(spec, vcpu, gib, storage_gb, basis, risk, unsafe, clouds)
        if unsafe:
            option.safe_variant = self._safe_variant(p, spec, vcpu, gib, storage_gb, onprem,
                                                     prediction, conservative_vcpu)
        return option

    def _candidate_requirement(self, p: ServerProfile, method: str,
                               prediction: dict[str, float] | None) -> tuple[float, float] | None:
        if method == "ml":
            if prediction is None:
                return None
            return (p.vcpu * prediction["cpu_capacity"] / 100,
                    p.memory_gib * prediction["mem_capacity"] / 100)
        stat, factor = {"compute_optimizer": ("p99_5", 1.2), "azure_migrate": ("p95", 1.3),
                        "conservative": ("peakish", 1.5)}[method]
        if stat == "peakish":
            cpu, mem = p.cpu.peakish()[0], p.memory.peakish()[0]
        else:
            cpu, mem = getattr(p.cpu, stat), getattr(p.memory, stat)
        if math.isnan(cpu) or math.isnan(mem):
            return None
        return p.vcpu * cpu / 100 * factor, p.memory_gib * mem / 100 * factor

    def _server_price(self, p: ServerProfile, vcpu: float, gib: float) -> float | None:
        """Monthly price of this server's machine for a requirement, in the first cloud
        priced: methods within the risk bar are compared on what *this* server costs."""
        for cloud in self.clouds:
            cat = self.catalogs.get(cloud)
            if cat is None:
                continue
            try:
                return cat.cheapest_fitting(vcpu, gib, p.arch).monthly_usd
            except NothingFits:
                return None
        return None

    def _safe_variant(self, p: ServerProfile, spec: OptionSpec, vcpu: float, gib: float,
                      storage_gb: float, onprem: OnPremCost,
                      prediction: dict[str, float] | None, conservative_vcpu: float
                      ) -> SafeVariant | None:
        ml_key = self._ml_key("history" if not math.isnan(p.cpu.p99_5) else "discovery")
        scored: list[tuple[float, float, str, str, tuple[float, float]]] = []
        for method in SAFE_CANDIDATES:
            need = self._candidate_requirement(p, method, prediction)
            if need is None:
                continue
            key = ml_key if method == "ml" else method
            rate = self.risk.rate(key) if self.risk else None
            if rate is None:
                continue
            cost = self._server_price(p, max(vcpu, need[0]), max(gib, need[1]))
            if cost is None:  # no catalog fits: the backtest's mean over-provisioning cost
                cost = self.risk.rate(key, "overprov_usd_month") if self.risk else None
            scored.append((rate, cost if cost is not None else math.inf, method, key, need))
        if not scored:
            return None
        within = [s for s in scored if s[0] <= self.max_risk]
        note = ""
        if within:
            rate, _, method, key, need = min(within, key=lambda s: (s[1], s[0]))
        else:
            rate, _, method, key, need = min(scored, key=lambda s: (s[0], s[1]))
            note = (f"no method meets the {self.max_risk:.0%} bar on the backtest; this is the "
                    f"lowest measured rate")
        safe_vcpu, safe_gib = max(vcpu, need[0]), max(gib, need[1])
        risk = Risk(key, _level(rate, self.max_risk), rate, "single instance, at most")
        clouds = self._choose(p, safe_vcpu, safe_gib, storage_gb, onprem, None,
                              conservative_vcpu, 0.0)
        return SafeVariant(method, f"{spec.label} raised to the {SAFE_LABELS[method]}", risk,
                           safe_vcpu, safe_gib, clouds, note)


def _pct_or_na(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.0%}"


def size_estate(servers: Iterable[ServerRecord], engine: SizingEngine | None = None,
                histories: dict[str, Any] | None = None) -> EstateSizing:
    """Size every server; one that cannot be sized is reported in ``failed``, not raised.

    ``histories`` maps server_id to a loaded :class:`~migrationbox.sizing.history.History`.
    """
    from migrationbox.sizing.history import apply_history

    engine = engine or SizingEngine.with_champion()
    profiles: list[ServerProfile] = []
    forecasts: dict[str, dict[str, MetricForecast]] = {}
    warnings: dict[str, list[str]] = {}
    failed: list[tuple[str, str]] = []
    for server in servers:
        try:
            profile = profile_from_record(server)
            history = (histories or {}).get(server.server_id)
            if history is not None:
                profile, fc = apply_history(profile, history)
                forecasts[profile.server_id] = fc  # type: ignore[assignment]
                warnings[profile.server_id] = list(history.warnings)
            profiles.append(profile)
        except (ValueError, KeyError) as exc:
            failed.append((server.server_id, str(exc)))
    sized = engine.size_profiles(profiles, forecasts, warnings)
    for s in sized:
        errors = {c: choice.error for o in s.options for c, choice in o.clouds.items()
                  if choice.error}
        for cloud, message in sorted(errors.items()):
            s.warnings.append(f"{cloud}: {message}")
    return EstateSizing(sized, failed, engine.notes(), engine.clouds, engine.regions)


def planning_sizing(sizing: ServerSizing, cloud: str = "aws", option: str = "balanced",
                    use_safe_variant: bool = True) -> Sizing:
    """The plan's ``Sizing`` for one server: the chosen option (its safe variant if unsafe).

    Raises ``ValueError`` naming the server when that cloud has no machine for it.
    """
    from migrationbox.planning.models import Sizing

    chosen = sizing.option(option)
    clouds = chosen.clouds
    method = f"options:{option}"
    vcpu, gib = chosen.required_vcpu, chosen.required_memory_gib
    if chosen.unsafe and use_safe_variant and chosen.safe_variant is not None:
        clouds = chosen.safe_variant.clouds
        method += f"+safe:{chosen.safe_variant.method}"
        if chosen.safe_variant.method == "ml":
            method += f" ({sizing.sized_by})"
        vcpu, gib = chosen.safe_variant.required_vcpu, chosen.safe_variant.required_memory_gib
    choice = clouds.get(cloud)
    if choice is None:
        raise ValueError(f"server {sizing.profile.server_id}: cloud {cloud!r} was not sized")
    if choice.error or choice.machine is None or choice.cost is None:
        raise ValueError(f"server {sizing.profile.server_id}: {choice.error}")
    return Sizing(
        cloud=cloud, region=choice.region, method=method,
        required_vcpu=round(vcpu, 3), required_memory_gib=round(gib, 3),
        instance_type=choice.machine.name, vcpu=choice.machine.vcpu,
        memory_gib=choice.machine.memory_gib, hourly_usd=round(choice.machine.hourly_usd, 6),
        monthly_usd=round(choice.cost.compute_on_demand, 2),
        storage_gb=choice.cost.storage_gb, storage_monthly_usd=round(choice.cost.storage, 2),
        price_source=f"{choice.price_source}; storage "
                     f"{choice.storage.sku if choice.storage else ''}: "
                     f"{choice.storage.source if choice.storage else ''}",
    )


# --------------------------------------------------------------------------- JSON schema


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CostsOut(_Out):
    compute_on_demand: float
    compute_blended: float
    compute_1y_commitment: float
    compute_3y_commitment: float
    commitment_basis: str = Field(description="data | assumption | none")
    storage: float
    storage_gb: float
    storage_sku: str
    egress: float
    egress_gb: float
    licences: float
    monthly_on_demand: float
    monthly_1y_commitment: float
    monthly_3y_commitment: float
    tco_3y_on_demand: float
    tco_3y_committed: float


class AutoscalingOut(_Out):
    min_instances: int
    max_instances: int


class CloudChoiceOut(_Out):
    cloud: str
    region: str
    required_vcpu: float
    required_memory_gib: float
    error: str | None = None
    instance_type: str | None = None
    vcpu: int | None = None
    memory_gib: float | None = None
    hourly_usd: float | None = None
    autoscaling: AutoscalingOut | None = None
    costs: CostsOut | None = None
    savings_vs_onprem_3y_commitment: float | None = None
    savings_vs_onprem_on_demand: float | None = None
    price_source: str | None = None
    storage_source: str | None = None
    storage_assumption: str | None = None


class RiskOut(_Out):
    method: str
    level: str
    underprovisioning_rate: float | None
    basis: str
    time_above_base: float | None
    scale_outs_per_day: float | None
    text: str


class SafeVariantOut(_Out):
    method: str
    label: str
    risk: RiskOut
    required_vcpu: float
    required_memory_gib: float
    note: str
    clouds: dict[str, CloudChoiceOut]


class OptionOut(_Out):
    option: str
    label: str
    formula: str
    basis: str
    required_vcpu: float
    required_memory_gib: float
    storage_gb: float
    autoscaling_policy: str | None
    risk: RiskOut
    unsafe: bool
    recommended: bool
    clouds: dict[str, CloudChoiceOut]
    safe_variant: SafeVariantOut | None


class ServerOut(_Out):
    server_id: str
    hostname: str
    current: dict[str, Any]
    demand: dict[str, Any]
    onprem_monthly: dict[str, float]
    forecast: dict[str, Any]
    model_prediction: dict[str, float] | None
    sized_by: str
    options: list[OptionOut]
    warnings: list[str]


class FailedOut(_Out):
    server_id: str
    error: str


class SizingReport(_Out):
    """The JSON document ``migrationbox size --format json`` prints."""

    clouds: list[str]
    regions: dict[str, str]
    notes: list[str]
    servers: list[ServerOut]
    failed: list[FailedOut]
