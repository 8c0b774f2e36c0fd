"""Backtests on real VM traces: how often does a sizing method under-provision?

Data: the GWA-T-12 Bitbrains "Rnd" trace (Shen, van Beek, Iosup, CCGrid 2015): 50
VMs, 5-minute samples of CPU and memory use with their provisioned capacity, July to
September 2013.

An **episode** is what a migration sees: a 7-day observation window (what discovery
measures) followed by the next 30 days (what the target must carry). A method sees
only the window and recommends a capacity for CPU and memory, in percent of the
server's current capacity; the 30 days judge it:

- **under-provisioned**: the future p95 demand is above the recommended capacity,
  i.e. the server would run out of CPU or memory more than 5 % of the time (the
  headline rate is for "CPU or memory"; a stricter "future peak" rate is also kept);
- **over-provisioning cost**: USD/month of the cheapest AWS us-east-1 instance that
  fits the recommendation minus that of the cheapest one that fits the real future
  p95 demand (an oracle), floored at zero;
- **forecast error**: weighted absolute percentage error (WAPE) of the method's own
  demand estimate (before headroom) against the future p95.

Nothing leaks from the future: features come from the window only, training and
test VMs are disjoint, and with ``strict_time_split`` every training episode ends
before any test episode starts (VMs of one trace share calendar events).

Cleaning (documented, counted, and checked afterwards by ``quality``): rows where a
VM reported no cores or no memory (it was off) are dropped, repeated
(vm, timestamp) rows keep the last, CPU above 100 % is clipped to 100 and memory
use above capacity to capacity. Rows are never re-ordered: an unordered trace fails
the quality gate instead of being silently fixed.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from migrationbox.errors import NotFoundError
from migrationbox.sizing.features import DISCOVERY_FEATURES, FEATURES, TARGETS, usage_stats

if TYPE_CHECKING:
    import pandas as pd

TRACE_FILE = "bitbrains_gwa-t-12_rnd/bitbrains_rnd_vm1-50_2013-07_to_09.csv.gz"
TRACE_NAME = "Bitbrains GWA-T-12 Rnd (VMs 1-50, Jul-Sep 2013, 5-min samples)"
BASELINE_FILE = "backtest_baseline.json"
DAY = 86400
QUANTILE_GRID = np.linspace(0.0, 100.0, 201)  # percentiles of the future, 0.5 % steps
SAMPLE_S = 300
MAX_INSTANCES = 10


class TraceNotFound(NotFoundError, FileNotFoundError):
    """The Bitbrains trace is not where the configuration says."""


def traces_dir() -> Path:
    """The ``traces_dir`` setting, else the traces shipped in the checkout (``ml/data/traces``)."""
    from migrationbox import settings

    explicit = settings.get("traces_dir")
    if explicit:
        return Path(explicit)
    from migrationbox.config import project_root

    return project_root() / "ml" / "data" / "traces"


def trace_path() -> Path:
    path = traces_dir() / TRACE_FILE
    if not path.exists():
        raise TraceNotFound(
            f"Bitbrains trace not found at {path}; set MIGRATIONBOX_TRACES_DIR to the folder "
            f"holding {TRACE_FILE} (GWA-T-12 Bitbrains, http://gwa.ewi.tudelft.nl)")
    return path


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass(frozen=True, slots=True)
class CleaningReport:
    rows_in: int
    vm_off_rows: int
    duplicate_rows: int
    cpu_clipped: int
    mem_clipped: int
    rows_out: int

    def summary(self) -> str:
        return (f"{self.rows_in} rows in: dropped {self.vm_off_rows} VM-off rows and "
                f"{self.duplicate_rows} repeated (vm, timestamp) rows; clipped "
                f"{self.cpu_clipped} CPU readings above 100 % and {self.mem_clipped} memory "
                f"readings above capacity; {self.rows_out} rows out")


def load_trace(path: Path | None = None, vm_ids: Iterable[int] | None = None) -> pd.DataFrame:
    import pandas as pd

    frame = pd.read_csv(path or trace_path())
    if vm_ids is not None:
        frame = frame[frame["vm_id"].isin(list(vm_ids))]
    return frame.reset_index(drop=True)


def clean_trace(raw: pd.DataFrame) -> tuple[pd.DataFrame, CleaningReport]:
    """The documented cleaning (module docstring); adds percent and demand columns."""
    rows_in = len(raw)
    on = raw[(raw["cpu_cores"] > 0) & (raw["mem_capacity_kb"] > 0)]
    vm_off = rows_in - len(on)
    dedup = on.drop_duplicates(["vm_id", "timestamp_s"], keep="last")
    dups = len(on) - len(dedup)
    df = dedup.copy()
    cpu_over = int((df["cpu_usage_pct"] > 100).sum())
    mem_over = int((df["mem_usage_kb"] > df["mem_capacity_kb"]).sum())
    df["cpu_pct"] = df["cpu_usage_pct"].clip(lower=0, upper=100)
    df["mem_pct"] = (df["mem_usage_kb"].clip(lower=0) / df["mem_capacity_kb"] * 100).clip(
        upper=100)
    df["mem_gib"] = df["mem_capacity_kb"] / 1024**2
    df = df.reset_index(drop=True)
    return df, CleaningReport(rows_in, vm_off, dups, cpu_over, mem_over, len(df))


# --------------------------------------------------------------------------- episodes


@dataclass(frozen=True, slots=True)
class EpisodeSpec:
    window_days: int = 7
    horizon_days: int = 30
    stride_days: int = 7
    min_coverage: float = 0.8


@dataclass
class Episodes:
    """Backtest episodes: features and targets per row, and the future's distribution."""

    frame: pd.DataFrame  # vm_id, start_s, FEATURES, fut_<TARGETS>
    cpu_q: np.ndarray  # (n, 201) percentiles of the future CPU %, for time shares
    mem_q: np.ndarray
    crossings: dict[str, np.ndarray] = field(default_factory=dict)  # rule -> per day

    def __len__(self) -> int:
        return len(self.frame)

    def subset(self, mask: np.ndarray) -> Episodes:
        return Episodes(self.frame[mask].reset_index(drop=True), self.cpu_q[mask],
                        self.mem_q[mask], {k: v[mask] for k, v in self.crossings.items()})


ForecastFn = Callable[[np.ndarray, np.ndarray, np.ndarray], dict[str, float]]


def build_episodes(df: pd.DataFrame, spec: EpisodeSpec | None = None,
                   starts_days: Iterable[float] | None = None,
                   vm_ids: Iterable[int] | None = None,
                   forecast: ForecastFn | None = None) -> Episodes:
    """Slice every VM into (window, horizon) episodes.

    ``starts_days`` are offsets from the trace's first timestamp; default: every
    ``stride_days`` while the episode fits. ``forecast`` (window timestamps, CPU %,
    memory %) -> forecast features; without it those features are NaN.
    """
    import pandas as pd

    spec = spec or EpisodeSpec()
    t0 = int(df["timestamp_s"].min())
    t_end = int(df["timestamp_s"].max())
    span = (spec.window_days + spec.horizon_days) * DAY
    if starts_days is None:
        starts = list(np.arange(t0, t_end - span + 1, spec.stride_days * DAY))
    else:
        starts = [t0 + float(d) * DAY for d in starts_days]
    wanted = None if vm_ids is None else set(vm_ids)
    need_window = spec.min_coverage * spec.window_days * DAY / SAMPLE_S
    need_horizon = spec.min_coverage * spec.horizon_days * DAY / SAMPLE_S
    rows: list[dict[str, float]] = []
    cpu_q: list[np.ndarray] = []
    mem_q: list[np.ndarray] = []
    crossings: dict[str, list[float]] = {name: [] for name in CROSSING_RULES}
    for vm_id, g in df.groupby("vm_id", sort=True):
        if wanted is not None and vm_id not in wanted:
            continue
        t = g["timestamp_s"].to_numpy(dtype=np.int64)
        cpu = g["cpu_pct"].to_numpy(dtype=float)
        mem = g["mem_pct"].to_numpy(dtype=float)
        cores = g["cpu_cores"].to_numpy(dtype=float)
        mem_gib = g["mem_gib"].to_numpy(dtype=float)
        mem_kb = g["mem_usage_kb"].to_numpy(dtype=float)
        for start in starts:
            a, b = np.searchsorted(t, [start, start + spec.window_days * DAY])
            c = np.searchsorted(t, start + span)
            if b - a < need_window or c - b < need_horizon:
                continue
            cap_cores = cores[b - 1]
            cap_gib = mem_gib[b - 1]
            cs = usage_stats(t[a:b], cpu[a:b])
            ms = usage_stats(t[a:b], mem[a:b])
            # future demand in percent of the capacity the window saw (the VM may resize)
            fut_cpu = cpu[b:c] * cores[b:c] / cap_cores
            fut_mem = np.minimum(mem_kb[b:c] / 1024**2 / cap_gib * 100, 1000.0)
            row = {
                "vm_id": int(vm_id), "start_s": int(start), "cpu_cores": cap_cores,
                "mem_gib": cap_gib, "cpu_avg": cs.avg, "cpu_p95": cs.p95,
                "cpu_peak": cs.peak, "mem_avg": ms.avg, "mem_p95": ms.p95, "mem_peak": ms.peak,
                "cpu_std": cs.std, "cpu_p99_5": cs.p99_5, "cpu_trend": cs.trend,
                "cpu_daily_amp": cs.daily_amp, "mem_std": ms.std, "mem_p99_5": ms.p99_5,
                "mem_trend": ms.trend,
            }
            fc = forecast(t[a:b], cpu[a:b], mem[a:b]) if forecast else {}
            for name in ("fc_cpu_mean", "fc_cpu_upper", "fc_mem_mean", "fc_mem_upper"):
                row[name] = float(fc.get(name, math.nan))
            fp95_cpu, fp95_mem = np.percentile(fut_cpu, 95), np.percentile(fut_mem, 95)
            row.update({"fut_cpu_p95": fp95_cpu, "fut_cpu_peak": fut_cpu.max(),
                        "fut_mem_p95": fp95_mem, "fut_mem_peak": fut_mem.max(),
                        "fut_cpu_avg": fut_cpu.mean(), "fut_mem_avg": fut_mem.mean()})
            rows.append(row)
            cpu_q.append(np.percentile(fut_cpu, QUANTILE_GRID))
            mem_q.append(np.percentile(fut_mem, QUANTILE_GRID))
            days = max((t[c - 1] - t[b]) / DAY, 1e-9)
            for name, rule in CROSSING_RULES.items():
                base = rule(cs)
                above = fut_cpu > base
                ups = int(np.count_nonzero(above[1:] & ~above[:-1]) + (1 if above[0] else 0))
                crossings[name].append(ups / days)
    frame = pd.DataFrame(rows, columns=["vm_id", "start_s", *FEATURES, "fut_cpu_p95",
                                        "fut_cpu_peak", "fut_mem_p95", "fut_mem_peak",
                                        "fut_cpu_avg", "fut_mem_avg"])
    grid = len(QUANTILE_GRID)
    return Episodes(frame,
                    np.array(cpu_q).reshape(-1, grid), np.array(mem_q).reshape(-1, grid),
                    {k: np.array(v) for k, v in crossings.items()})


def split_vms(vm_ids: Iterable[int], test_fraction: float = 0.3, seed: int = 20130701
              ) -> tuple[list[int], list[int]]:
    """Deterministic disjoint (train, test) VM lists."""
    ids = sorted(set(int(v) for v in vm_ids))
    rng = np.random.default_rng(seed)
    shuffled = list(rng.permutation(ids))
    n_test = max(1, round(len(ids) * test_fraction))
    test = sorted(int(v) for v in shuffled[:n_test])
    train = sorted(int(v) for v in shuffled[n_test:])
    return train, test


@dataclass(frozen=True, slots=True)
class SplitSpec:
    """Which episodes train and which test (by VM, and by time when strict)."""

    test_fraction: float = 0.3
    seed: int = 20130701
    strict_time_split: bool = True
    cut_day: float = 47.0
    train_stride_days: float = 1.0
    test_stride_days: float = 1.0


def train_test_episodes(df: pd.DataFrame, split: SplitSpec | None = None,
                        spec: EpisodeSpec | None = None, forecast: ForecastFn | None = None,
                        max_vms: int | None = None) -> tuple[Episodes, Episodes, dict[str, Any]]:
    """Training and held-out episodes with no VM and (when strict) no time overlap."""
    split = split or SplitSpec()
    spec = spec or EpisodeSpec()
    vm_ids = sorted(df["vm_id"].unique().tolist())
    if max_vms is not None and max_vms < len(vm_ids):
        rng = np.random.default_rng(split.seed + 1)
        vm_ids = sorted(int(v) for v in rng.choice(vm_ids, size=max_vms, replace=False))
    train_vms, test_vms = split_vms(vm_ids, split.test_fraction, split.seed)
    total_days = (df["timestamp_s"].max() - df["timestamp_s"].min()) / DAY
    span = spec.window_days + spec.horizon_days
    if split.strict_time_split:
        train_starts = np.arange(0, split.cut_day - span + 1e-9, split.train_stride_days)
        test_starts = np.arange(split.cut_day, total_days - span + 1e-9, split.test_stride_days)
    else:
        train_starts = np.arange(0, total_days - span + 1e-9, split.train_stride_days)
        test_starts = np.arange(0, total_days - span + 1e-9, split.test_stride_days)
    train = build_episodes(df, spec, train_starts, train_vms, forecast)
    test = build_episodes(df, spec, test_starts, test_vms, forecast)
    info = {"train_vms": train_vms, "test_vms": test_vms,
            "train_episodes": len(train), "test_episodes": len(test),
            "strict_time_split": split.strict_time_split, "cut_day": split.cut_day,
            "window_days": spec.window_days, "horizon_days": spec.horizon_days}
    return train, test, info


# --------------------------------------------------------------------------- methods


@dataclass(frozen=True, slots=True)
class RuleMethod:
    """A fixed sizing rule: capacity = statistic x factor, for CPU and memory."""

    name: str
    label: str
    statistic: str  # avg | p95 | p99_5 | peak
    factor: float

    def capacity(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        return (frame[f"cpu_{self.statistic}"].to_numpy() * self.factor,
                frame[f"mem_{self.statistic}"].to_numpy() * self.factor)

    def demand(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        return (frame[f"cpu_{self.statistic}"].to_numpy(),
                frame[f"mem_{self.statistic}"].to_numpy())


RULES: dict[str, RuleMethod] = {
    "azure_migrate": RuleMethod("azure_migrate", "Azure Migrate style (p95 x 1.3)", "p95", 1.3),
    "compute_optimizer": RuleMethod("compute_optimizer",
                                    "Compute Optimizer style (p99.5 + 20 %)", "p99_5", 1.2),
    "conservative": RuleMethod("conservative", "Conservative (150 % of peak)", "peak", 1.5),
    "balanced": RuleMethod("balanced", "Balanced (120 % of average)", "avg", 1.2),
    "aggressive": RuleMethod("aggressive", "Aggressive (100 % of average)", "avg", 1.0),
}
CROSSING_RULES: dict[str, Callable[[Any], float]] = {
    "balanced": lambda s: s.avg * 1.2,
    "aggressive": lambda s: s.avg * 1.0,
}


def time_share_above(quantiles: np.ndarray, capacity: np.ndarray) -> np.ndarray:
    """Share of future samples above ``capacity`` (from the percentile grid)."""
    return (quantiles > capacity[:, None]).mean(axis=1)


@cache
def _reference_catalog() -> Any:
    from migrationbox.sizing.clouds import load_catalog

    return load_catalog("aws", "us-east-1")


def _monthly(vcpu: float, gib: float) -> float:
    from migrationbox.sizing.clouds import NothingFits

    try:
        return _reference_catalog().cheapest_fitting(max(vcpu, 0.0), max(gib, 0.0)).monthly_usd
    except NothingFits:
        return math.nan


def bought_machines(frame: pd.DataFrame, cap_cpu: np.ndarray, cap_mem: np.ndarray
                    ) -> dict[str, np.ndarray]:
    """Per episode, the cheapest AWS us-east-1 candidate fitting the recommendation (its
    vCPU, GiB, USD/month) and that fitting the real future p95 (the oracle's USD/month)."""
    from migrationbox.sizing.clouds import NothingFits

    cores = frame["cpu_cores"].to_numpy()
    gib = frame["mem_gib"].to_numpy()
    need_cpu = frame["fut_cpu_p95"].to_numpy()
    need_mem = frame["fut_mem_p95"].to_numpy()
    n = len(frame)
    out = {k: np.full(n, math.nan) for k in ("vcpu", "gib", "usd", "oracle_usd")}
    catalog = _reference_catalog()
    for i in range(n):
        try:
            m = catalog.cheapest_fitting(max(cores[i] * cap_cpu[i] / 100, 0.0),
                                         max(gib[i] * cap_mem[i] / 100, 0.0))
            out["vcpu"][i], out["gib"][i], out["usd"][i] = m.vcpu, m.memory_gib, m.monthly_usd
        except NothingFits:
            pass
        out["oracle_usd"][i] = _monthly(cores[i] * need_cpu[i] / 100, gib[i] * need_mem[i] / 100)
    return out


def overprovision_cost(frame: pd.DataFrame, cap_cpu: np.ndarray, cap_mem: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray]:
    """USD/month above the oracle (cheapest instance for the real future p95, >= 0), and
    USD/month of the instance bought (cheapest fitting the recommended capacity)."""
    b = bought_machines(frame, cap_cpu, cap_mem)
    return np.maximum(b["usd"] - b["oracle_usd"], 0.0), b["usd"]


def episode_outcomes(frame: pd.DataFrame, cap_cpu: np.ndarray, cap_mem: np.ndarray
                     ) -> dict[str, np.ndarray]:
    """Per episode, both axes: short of the recommendation (the headline definition),
    short of the machine bought, recommended and bought vCPU/GiB, USD/month bought."""
    cores = frame["cpu_cores"].to_numpy()
    gib = frame["mem_gib"].to_numpy()
    fut_cpu = frame["fut_cpu_p95"].to_numpy()
    fut_mem = frame["fut_mem_p95"].to_numpy()
    b = bought_machines(frame, cap_cpu, cap_mem)
    return {"vm_id": frame["vm_id"].to_numpy(),
            "short": ((fut_cpu > cap_cpu) | (fut_mem > cap_mem)).astype(float),
            "machine_short": ((fut_cpu * cores / 100 > b["vcpu"] + 1e-9)
                              | (fut_mem * gib / 100 > b["gib"] + 1e-9)).astype(float),
            "vcpu": cores * cap_cpu / 100, "gib": gib * cap_mem / 100,
            "bought_vcpu": b["vcpu"], "bought_gib": b["gib"], "usd": b["usd"]}


def bootstrap_difference(clusters: np.ndarray, a: np.ndarray, b: np.ndarray,
                         n_boot: int = 2000, seed: int = 0, level: float = 0.95
                         ) -> dict[str, float]:
    """Mean of ``a - b`` over episodes with a percentile CI from resampling *clusters*
    (VMs: episodes of one VM are correlated, so they are resampled together)."""
    clusters = np.asarray(clusters)
    diff = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    keys, inverse = np.unique(clusters, return_inverse=True)
    sums = np.bincount(inverse, weights=diff, minlength=len(keys))
    counts = np.bincount(inverse, minlength=len(keys)).astype(float)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(keys), size=(n_boot, len(keys)))
    means = sums[draws].sum(axis=1) / np.maximum(counts[draws].sum(axis=1), 1.0)
    lo, hi = np.percentile(means, [50 * (1 - level), 50 * (1 + level)])
    return {"mean": float(diff.mean()), "lo": float(lo), "hi": float(hi),
            "clusters": len(keys), "episodes": int(diff.size)}


def wape(estimate: np.ndarray, actual: np.ndarray) -> float:
    mask = np.isfinite(estimate) & np.isfinite(actual)
    denom = float(np.abs(actual[mask]).sum())
    return float(np.abs(estimate[mask] - actual[mask]).sum() / denom) if denom else math.nan


@dataclass(frozen=True, slots=True)
class MethodScore:
    """How one method did on a set of episodes."""

    method: str
    label: str
    episodes: int
    underprov_rate: float  # future p95 above capacity, CPU or memory
    underprov_cpu: float
    underprov_mem: float
    peak_exceed_rate: float  # future peak above capacity, CPU or memory
    time_above: float  # mean share of future samples with CPU above capacity
    overprov_usd_month: float
    wape_cpu: float
    wape_mem: float
    mean_capacity_vcpu: float
    mean_capacity_gib: float = math.nan
    monthly_usd: float = math.nan  # cheapest AWS us-east-1 instance for the capacity, mean
    underprov_scaled_rate: float | None = None  # with auto-scaling up to the bound
    scale_outs_per_day: float | None = None
    machine_short_rate: float = math.nan  # future p95 above the machine bought
    bought_vcpu: float = math.nan  # mean vCPU of the machine bought
    bought_gib: float = math.nan

    def as_dict(self) -> dict[str, Any]:
        return {k: (None if isinstance(v, float) and math.isnan(v) else v)
                for k, v in asdict(self).items()}


def score(method: str, label: str, episodes: Episodes, cap_cpu: np.ndarray,
          cap_mem: np.ndarray, demand_cpu: np.ndarray, demand_mem: np.ndarray,
          with_cost: bool = True) -> MethodScore:
    f = episodes.frame
    fut_cpu = f["fut_cpu_p95"].to_numpy()
    fut_mem = f["fut_mem_p95"].to_numpy()
    under_cpu = fut_cpu > cap_cpu
    under_mem = fut_mem > cap_mem
    peak = (f["fut_cpu_peak"].to_numpy() > cap_cpu) | (f["fut_mem_peak"].to_numpy() > cap_mem)
    machine: dict[str, float] = {}
    cost = bought = np.array([math.nan])
    if with_cost:
        b = bought_machines(f, cap_cpu, cap_mem)
        bought = b["usd"]
        cost = np.maximum(bought - b["oracle_usd"], 0.0)
        if len(f):
            short_machine = ((fut_cpu * f["cpu_cores"].to_numpy() / 100 > b["vcpu"] + 1e-9)
                             | (fut_mem * f["mem_gib"].to_numpy() / 100 > b["gib"] + 1e-9))
            machine = {"machine_short_rate": float(short_machine.mean()),
                       "bought_vcpu": float(np.nanmean(b["vcpu"])),
                       "bought_gib": float(np.nanmean(b["gib"]))}
    return MethodScore(
        method=method, label=label, episodes=len(f),
        underprov_rate=float((under_cpu | under_mem).mean()),
        underprov_cpu=float(under_cpu.mean()), underprov_mem=float(under_mem.mean()),
        peak_exceed_rate=float(peak.mean()),
        time_above=float(time_share_above(episodes.cpu_q, cap_cpu).mean()),
        overprov_usd_month=float(np.nanmean(cost)) if np.isfinite(cost).any() else math.nan,
        wape_cpu=wape(demand_cpu, fut_cpu), wape_mem=wape(demand_mem, fut_mem),
        mean_capacity_vcpu=float(np.mean(f["cpu_cores"].to_numpy() * cap_cpu / 100)),
        mean_capacity_gib=float(np.mean(f["mem_gib"].to_numpy() * cap_mem / 100)),
        monthly_usd=float(np.nanmean(bought)) if np.isfinite(bought).any() else math.nan,
        **machine,
    )


def scaled_fields(episodes: Episodes, rule: str) -> dict[str, float]:
    """Risk of an auto-scaled option: it may add instances up to the Conservative bound."""
    f = episodes.frame
    base_cpu, base_mem = RULES[rule].capacity(f)
    cons_cpu, _ = RULES["conservative"].capacity(f)
    n = np.clip(np.ceil(cons_cpu / np.maximum(base_cpu, 1e-9)), 2, MAX_INSTANCES)
    under = ((f["fut_cpu_p95"].to_numpy() > n * base_cpu)
             | (f["fut_mem_p95"].to_numpy() > n * base_mem))
    return {"underprov_scaled_rate": float(under.mean()),
            "scale_outs_per_day": float(np.mean(episodes.crossings[rule]))}


def score_rules(episodes: Episodes, with_cost: bool = True,
                rules: Iterable[str] | None = None) -> dict[str, MethodScore]:
    out: dict[str, MethodScore] = {}
    for name in rules or RULES:
        rule = RULES[name]
        cap_cpu, cap_mem = rule.capacity(episodes.frame)
        d_cpu, d_mem = rule.demand(episodes.frame)
        s = score(name, rule.label, episodes, cap_cpu, cap_mem, d_cpu, d_mem, with_cost)
        if name in CROSSING_RULES:
            s = MethodScore(**{**asdict(s), **scaled_fields(episodes, name)})
        out[name] = s
    return out


def accuracy_table(scores: Iterable[MethodScore]) -> str:
    """The comparison table, both axes (risk and capacity/cost), as Markdown.

    "short" is the headline definition (future p95 above the recommendation); "short of
    machine" judges the machine actually bought (the recommendation rounded up to the
    cheapest AWS us-east-1 candidate), which is what a server would run on.
    """
    lines = [
        "| method | short at p95 (CPU or mem) | CPU | mem | short of machine bought | "
        "capacity vCPU | capacity GiB | machine vCPU | machine GiB | USD/server-month | "
        "over-prov. USD/month | WAPE CPU p95 | WAPE mem p95 | episodes |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def pct(x: float | None) -> str:
        return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.1%}"

    def num(x: float | None) -> str:
        return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:,.2f}"

    for s in scores:
        lines.append(f"| {s.label} | {pct(s.underprov_rate)} | {pct(s.underprov_cpu)} | "
                     f"{pct(s.underprov_mem)} | {pct(s.machine_short_rate)} | "
                     f"{num(s.mean_capacity_vcpu)} | {num(s.mean_capacity_gib)} | "
                     f"{num(s.bought_vcpu)} | {num(s.bought_gib)} | {num(s.monthly_usd)} | "
                     f"{num(s.overprov_usd_month)} | {pct(s.wape_cpu)} | {pct(s.wape_mem)} | "
                     f"{s.episodes} |")
    return "\n".join(lines)


# --------------------------------------------------------------------------- option risk


def option_risk(episodes: Episodes, extra: Iterable[MethodScore] = (),
                source: str = "") -> dict[str, Any]:
    """The risk table ``options`` shows next to each price (JSON-serialisable)."""
    scores = score_rules(episodes)
    methods = {name: s.as_dict() for name, s in scores.items()}
    for s in extra:
        methods[s.method] = s.as_dict()
    vms = int(episodes.frame["vm_id"].nunique()) if len(episodes) else 0
    return {
        "measured_on": f"{TRACE_NAME}: {vms} VMs, {len(episodes)} episodes "
                       f"(7-day baseline -> next 30 days)",
        "definition": "under-provisioned = future 30-day p95 demand (CPU or memory) above the "
                      "recommended capacity, i.e. short of capacity more than 5% of the time",
        "source": source,
        "methods": methods,
    }


def shipped_risk_table() -> dict[str, Any] | None:
    """The measured risk table shipped with the package (written by ``ml.sizing``)."""
    path = Path(str(resources.files("migrationbox.sizing").joinpath(BASELINE_FILE)))
    if not path.exists():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def discovery_only(frame: pd.DataFrame) -> pd.DataFrame:
    """The episode features as a discovery record would give them (no history)."""
    out = frame.copy()
    for col in FEATURES:
        if col not in DISCOVERY_FEATURES:
            out[col] = math.nan
    return out


def targets_of(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[[f"fut_{t}" for t in TARGETS]].rename(columns=lambda c: c[4:])
