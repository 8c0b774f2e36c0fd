"""The sizing model: the future 30-day p95 demand, with a calibrated risk of falling short.

What a migration needs is not the *expected* demand but a capacity that is short of
the next month's p95 demand for at most a stated share of servers. So the model has
two parts:

1. **Quantile regression** (LightGBM, quantile objective) per resource (CPU, memory)
   of ``log1p(future p95) - log1p(window p95)``, i.e. how the next 30 days differ from
   what the 7-day window measured. The upper quantile (0.9) is the server's own
   headroom need: a steady server gets a thin margin, a bursty or growing one a wide
   one. Capacity is built on the window's p95 itself ("next month looks like last
   week"): on the backtest the learnt median was a worse point forecast than that
   (WAPE), so it is reported (``cpu_p95``/``mem_p95``) but not built on.
2. **Conformal calibration** on servers the regressors never saw: out-of-fold by VM
   (cross-conformal: each training VM's episodes are scored by regressors fitted
   without that VM, so all training VMs calibrate, not a handful), or on a separate
   calibration set (split conformal, :meth:`CalibratedSizer.calibrate`). The score of
   a calibration episode is ``max over CPU and memory of (actual - base) / headroom``
   (normalised residuals, one score for "CPU *or* memory short"). For a stated risk
   ``a``, the capacity is ``base + q * headroom`` with ``q`` the ``ceil((n+1)(1-a))``-th
   smallest score: on servers exchangeable with the calibration set, the share short
   of capacity is then at most ``a`` (Vovk et al.; Romano et al., "Conformalized
   quantile regression", NeurIPS 2019). Scores are kept per input mode (discovery
   baseline only, or a full history), since the two are not equally informative.

Any risk can be asked for at prediction time; the held-out backtest (``backtest``)
measures whether the promise held on other VMs in a later period.

3. **Machine choice at a stated risk** (:meth:`CalibratedSizer.choose_machines`). A
   capacity is bought as a machine, and machine prices are a step function of vCPU and
   GiB: capacity between two machine sizes costs nothing, and a rule that pads every
   server by the same factor pays for a bigger machine wherever the padding crosses a
   step. So, per server, every machine shape of the catalog's price frontier
   (:class:`MachineMenu`) is a candidate whose probability of being short is read off
   the calibration residuals (CPU and memory jointly, from the same episodes), and the
   server gets ``argmin price + penalty x P(short)`` among machines it is not more
   likely short of than not (below). One penalty serves the whole
   fleet; it is tuned on the training VMs' out-of-fold episodes (never on test VMs) as
   the cheapest penalty whose *realised* out-of-fold share short is within the stated
   risk. The recommendation is then the machine's own capacity: short means future
   p95 demand above what was bought.

   **No server is given up**: a machine whose probability of being short is above
   :data:`MAX_SHORT_PROBABILITY` (more likely short than not) is not a candidate.
   "Share of servers short" counts a 32-core server the same as a 1-core one, so with a
   USD penalty alone the cheapest way to meet a fleet risk was to under-buy the few
   expensive servers outright: on the backtest the first version bought a 1-vCPU
   machine ($37.50) for two 32-core VMs needing ~5 vCPU (the rule bought 8 vCPU,
   $223), short on every episode, and that was all of its "saving". A sizing must be
   meant to fit the server; the fleet penalty then only trades risk among machines that
   are.

   **Censored demand**: a resource whose window p95 is at its ceiling (>= 99 % of the
   current allocation) shows how much it was allowed, not how much it wanted, and the
   trace cannot show more in the future either (usage is capped by the allocation). A
   backtest would reward buying exactly the current allocation for such a server (never
   "short" by construction). So machines below the p95 x 1.3 rule's capacity for that
   resource are not candidates: where the data cannot judge, the model does not undercut
   the rule.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from migrationbox.sizing.features import DISCOVERY_FEATURES, FEATURES, HISTORY_FEATURES

if TYPE_CHECKING:
    import pandas as pd

RESOURCES = ("cpu", "mem")
MODES = ("discovery", "history")
# Risks evaluated on the backtest (each gets its measured rate in the risk table); the
# sizing engine provisions the cheapest one whose *measured* rate is within its bar.
RISK_GRID = (0.05, 0.075, 0.10, 0.15, 0.20, 0.25, 0.30)
MODEL_FEATURES = DISCOVERY_FEATURES + HISTORY_FEATURES  # Prophet features did not help


@dataclass(frozen=True, slots=True)
class QuantileConfig:
    # Strongly regularised: a few hundred episodes from a few dozen VMs (see backtest).
    n_estimators: int = 150
    learning_rate: float = 0.03
    num_leaves: int = 4
    min_child_samples: int = 20
    subsample: float = 0.8
    colsample: float = 0.8
    upper_quantile: float = 0.9
    min_spread: float = 0.3  # log1p units: no server is assumed perfectly predictable
    target_risk: float = 0.10  # default share of servers allowed short (CPU or memory)
    seed: int = 7
    n_jobs: int = 2
    folds: int = 5  # cross-conformal folds (grouped by VM)


def _regressor(cfg: QuantileConfig, alpha: float) -> Any:
    from lightgbm import LGBMRegressor

    return LGBMRegressor(objective="quantile", alpha=alpha, n_estimators=cfg.n_estimators,
                         learning_rate=cfg.learning_rate, num_leaves=cfg.num_leaves,
                         min_child_samples=cfg.min_child_samples, subsample=cfg.subsample,
                         subsample_freq=1, colsample_bytree=cfg.colsample,
                         random_state=cfg.seed, n_jobs=cfg.n_jobs, verbose=-1)


def base_log(frame: pd.DataFrame, resource: str) -> np.ndarray:
    """log1p of the window's p95 (else peak, else average): the persistence forecast."""
    base = np.full(len(frame), np.nan)
    for stat in ("p95", "peak", "avg"):
        column = frame[f"{resource}_{stat}"].to_numpy(dtype=float)
        base = np.where(np.isnan(base), column, base)
    return np.log1p(np.clip(np.nan_to_num(base, nan=0.0), 0, None))


def cap_log(frame: pd.DataFrame, resource: str) -> np.ndarray:
    """log1p of the most the model will recommend: the server's current allocation
    (100 %) or 150 % of the window's peak when that is more (the Conservative option).

    Demand that jumps beyond this was not foreseeable from the window; covering it
    for every server would cost more than the Conservative option. Calibration
    counts such episodes as short at every risk, so the promise stays honest.
    """
    peak = frame[f"{resource}_peak"].to_numpy(dtype=float)
    peak = np.where(np.isnan(peak), frame[f"{resource}_avg"].to_numpy(dtype=float) * 1.5, peak)
    return np.log1p(np.maximum(100.0, 1.5 * np.nan_to_num(peak, nan=0.0)))


def input_mode(frame: pd.DataFrame) -> np.ndarray:
    """"history" where history features are present (p99.5 known), else "discovery"."""
    has = np.isfinite(frame["cpu_p99_5"].to_numpy(dtype=float))
    return np.where(has, "history", "discovery")


def conformal_quantile(scores: np.ndarray, risk: float) -> float:
    """The ``ceil((n+1)(1-risk))``-th smallest score (the largest when n is too small);
    infinite (capacity at its cap) when that many calibration episodes were beyond it."""
    if not 0 < risk < 1:
        raise ValueError(f"risk must be between 0 and 1 (exclusive), got {risk}")
    s = np.sort(np.asarray(scores, dtype=float))
    if s.size == 0:
        raise ValueError("no calibration scores")
    k = math.ceil((s.size + 1) * (1 - risk))
    return float(s[min(k, s.size) - 1])


@dataclass
class CalibratedSizer:
    """Quantile regressors per resource plus the conformal calibration scores per mode."""

    config: QuantileConfig = field(default_factory=QuantileConfig)
    features: tuple[str, ...] = MODEL_FEATURES
    models: dict[str, tuple[Any, Any]] = field(default_factory=dict)  # res -> (median, upper)
    scores: dict[str, np.ndarray] = field(default_factory=dict)  # mode -> calibration scores
    # mode -> (m, 2) calibration residuals of CPU and memory, normalised, uncapped, row
    # order of the calibration rows (machine choice needs the pair, not only their max)
    pairs: dict[str, np.ndarray] = field(default_factory=dict)
    # out-of-fold centre/spread per calibration row and its fold (penalty tuning)
    oof: dict[str, np.ndarray] = field(default_factory=dict)
    # "<mode>|<menu source>|<risk>" -> penalty (USD/month per unit of P(short))
    penalties: dict[str, float] = field(default_factory=dict)

    def _matrix(self, frame: pd.DataFrame) -> np.ndarray:
        missing = [f for f in self.features if f not in frame.columns]
        if missing:
            raise ValueError(f"feature columns missing: {', '.join(missing)}")
        return frame[list(self.features)].to_numpy(dtype=np.float32)

    def _center_spread(self, frame: pd.DataFrame
                       ) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Per resource, in log1p: the base (window p95), the headroom and the cap."""
        matrix = self._matrix(frame)
        out = {}
        for r in RESOURCES:
            upper = self.models[r][1].predict(matrix)
            out[r] = (base_log(frame, r), np.maximum(upper, self.config.min_spread),
                      cap_log(frame, r))
        return out

    def _fit_regressors(self, X: pd.DataFrame, Y: pd.DataFrame) -> dict[str, tuple[Any, Any]]:
        matrix = self._matrix(X)
        models = {}
        for r in RESOURCES:
            y = np.log1p(np.clip(Y[f"{r}_p95"].to_numpy(dtype=float), 0, None)) - base_log(X, r)
            models[r] = (_regressor(self.config, 0.5).fit(matrix, y),
                         _regressor(self.config, self.config.upper_quantile).fit(matrix, y))
        return models

    def fit(self, X: pd.DataFrame, Y: pd.DataFrame, groups: np.ndarray) -> CalibratedSizer:
        """Fit on all of (X, Y) and calibrate out-of-fold, folds grouped by ``groups`` (VM).

        ``Y`` holds ``cpu_p95`` and ``mem_p95``: the future p95 demand in percent of the
        server's current capacity. Needs at least two groups.
        """
        from sklearn.model_selection import GroupKFold

        groups = np.asarray(groups)
        folds = min(self.config.folds, len(np.unique(groups)))
        if folds < 2:
            raise ValueError("cross-conformal calibration needs episodes of at least 2 VMs")
        score = np.full(len(X), np.nan)
        oof = {k: np.full(len(X), np.nan) for k in
               ("cpu_center", "cpu_spread", "mem_center", "mem_spread")}
        fold = np.full(len(X), -1)
        for k, (fit_idx, cal_idx) in enumerate(GroupKFold(n_splits=folds).split(X,
                                                                                 groups=groups)):
            self.models = self._fit_regressors(X.iloc[fit_idx], Y.iloc[fit_idx])
            cal_x, cal_y = X.iloc[cal_idx], Y.iloc[cal_idx]
            score[cal_idx] = self.conformity(cal_x, cal_y)
            for r, (center, spread, _) in self._center_spread(cal_x).items():
                oof[f"{r}_center"][cal_idx] = center
                oof[f"{r}_spread"][cal_idx] = spread
            fold[cal_idx] = k
        self.models = self._fit_regressors(X, Y)
        self._set_scores(X, score)
        residuals = np.column_stack([
            (_actual_log(Y, r) - oof[f"{r}_center"]) / oof[f"{r}_spread"] for r in RESOURCES])
        self._set_pairs(X, residuals)
        self.oof = {**oof, "fold": fold}
        return self

    def fit_split(self, X: pd.DataFrame, Y: pd.DataFrame, X_cal: pd.DataFrame,
                  Y_cal: pd.DataFrame) -> CalibratedSizer:
        """Fit on (X, Y) and calibrate on (X_cal, Y_cal), other servers (split conformal)."""
        self.models = self._fit_regressors(X, Y)
        return self.calibrate(X_cal, Y_cal)

    def calibrate(self, X_cal: pd.DataFrame, Y_cal: pd.DataFrame) -> CalibratedSizer:
        """Replace the calibration scores with those of (X_cal, Y_cal)."""
        self._set_scores(X_cal, self.conformity(X_cal, Y_cal))
        self._set_pairs(X_cal, self.residuals(X_cal, Y_cal))
        cs = self._center_spread(X_cal)
        self.oof = {**{f"{r}_{k}": cs[r][i] for r in RESOURCES
                       for i, k in ((0, "center"), (1, "spread"))},
                    "fold": np.full(len(X_cal), -1)}  # one calibration set: no folds
        self.penalties = {}
        return self

    def _set_scores(self, X: pd.DataFrame, score: np.ndarray) -> None:
        modes = input_mode(X)
        self.scores = {m: np.sort(score[modes == m]) for m in MODES if (modes == m).any()}

    def _set_pairs(self, X: pd.DataFrame, residuals: np.ndarray) -> None:
        modes = input_mode(X)
        self.pairs = {m: residuals[modes == m] for m in MODES if (modes == m).any()}

    def residuals(self, X: pd.DataFrame, Y: pd.DataFrame) -> np.ndarray:
        """(n, 2) normalised residuals of CPU and memory, not capped (machine choice)."""
        cs = self._center_spread(X)
        return np.column_stack([(_actual_log(Y, r) - cs[r][0]) / cs[r][1] for r in RESOURCES])

    def conformity(self, X: pd.DataFrame, Y: pd.DataFrame) -> np.ndarray:
        """Normalised residual of the worse resource: above ``q`` means short at ``q``."""
        cs = self._center_spread(X)
        per = []
        for r in RESOURCES:
            center, spread, cap = cs[r]
            actual = _actual_log(Y, r)
            per.append(np.where(actual > cap, np.inf, (actual - center) / spread))
        return np.maximum(*per)

    def margin(self, mode: str, risk: float) -> float:
        scores = self.scores.get(mode)
        if scores is None:  # never calibrated on this mode: use the other, more cautious
            scores = np.concatenate(list(self.scores.values()))
        return conformal_quantile(scores, risk)

    def predict(self, X: pd.DataFrame, risk: float | None = None) -> pd.DataFrame:
        """Median future p95 (``cpu_p95``, ``mem_p95``) and the capacity for ``risk``.

        Capacities are in percent of current capacity; ``risk`` defaults to the
        configured target (the share of servers allowed short of CPU or memory).
        """
        import pandas as pd

        if not self.models or not self.scores:
            raise RuntimeError("the sizing model is not fitted")
        risk = self.config.target_risk if risk is None else risk
        cs = self._center_spread(X)
        matrix = self._matrix(X)
        modes = input_mode(X)
        q = np.array([self.margin(m, risk) for m in MODES])
        k = np.where(modes == "history", q[1], q[0])
        out: dict[str, Any] = {}
        for r in RESOURCES:
            center, spread, cap = cs[r]
            median = self.models[r][0].predict(matrix)
            out[f"{r}_p95"] = np.clip(np.expm1(center + median), 0, None)
            capacity = np.where(np.isinf(k), cap, np.minimum(center + k * spread, cap))
            out[f"{r}_capacity"] = np.clip(np.expm1(capacity), 0, None)
        out["target_risk"] = np.full(len(X), risk)
        return pd.DataFrame(out, index=X.index)

    # ---- machine choice at a stated risk (module docstring, part 3)
    def _pairs_for(self, mode: str) -> np.ndarray:
        pairs = self.pairs.get(mode)
        if pairs is None:  # never calibrated on this mode: all residuals
            pairs = np.concatenate(list(self.pairs.values()))
        return pairs

    def short_probability(self, X: pd.DataFrame, cpu_pct: np.ndarray, mem_pct: np.ndarray
                          ) -> np.ndarray:
        """P(future p95 above capacity, CPU or memory) for (n, K) candidate capacities.

        Read off the calibration residual pairs of the row's input mode with the
        conformal ``+1`` (a row never gets probability 0 from a finite calibration set).
        """
        if not self.pairs:
            raise RuntimeError("the sizing model has no calibration residuals: refit it")
        cs = self._center_spread(X)
        tc = (np.log1p(np.clip(cpu_pct, 0, None)) - cs["cpu"][0][:, None]) / cs["cpu"][1][:, None]
        tm = (np.log1p(np.clip(mem_pct, 0, None)) - cs["mem"][0][:, None]) / cs["mem"][1][:, None]
        out = np.empty(tc.shape)
        modes = input_mode(X)
        for mode in np.unique(modes):
            rows = np.flatnonzero(modes == mode)
            out[rows] = exceed_probability(tc[rows], tm[rows], self._pairs_for(str(mode)))
        return out

    def tune_penalty(self, X: pd.DataFrame, Y: pd.DataFrame, menu: MachineMenu, risk: float,
                     mode: str = "discovery", grid: Iterable[float] | None = None
                     ) -> dict[str, float]:
        """Set the fleet penalty for ``menu`` at ``risk`` from the calibration rows.

        ``X``, ``Y`` must be the rows the model was fitted (or calibrated) on, in the same
        order. Each row of ``mode`` is sized with the residuals of the *other* folds and
        its out-of-fold centre/spread; the cheapest penalty whose realised share short
        is within ``risk`` wins (the safest one when none is). Returns what was chosen
        and what it realised.
        """
        if len(X) != len(self.oof.get("fold", ())):
            raise ValueError("tune_penalty needs the rows the model was fitted on, in order")
        rows = np.flatnonzero(input_mode(X) == mode)
        if rows.size == 0:
            raise ValueError(f"no {mode} rows to tune the penalty on")
        grid = np.asarray(list(grid) if grid is not None else PENALTY_GRID, dtype=float)
        residuals = np.column_stack([(_actual_log(Y, r) - self.oof[f"{r}_center"])
                                     / self.oof[f"{r}_spread"] for r in RESOURCES])
        fold = self.oof["fold"]
        modes = input_mode(X)
        cpu_pct, mem_pct = menu.capacities(X.iloc[rows])
        fut_cpu = Y["cpu_p95"].to_numpy(dtype=float)[rows]
        fut_mem = Y["mem_p95"].to_numpy(dtype=float)[rows]
        prob = np.empty(cpu_pct.shape)
        for k in np.unique(fold[rows]):
            here = fold[rows] == k
            ref = (modes == mode) & ((fold != k) | (k < 0))
            idx = rows[here]
            tc = (np.log1p(cpu_pct[here]) - self.oof["cpu_center"][idx][:, None]) \
                / self.oof["cpu_spread"][idx][:, None]
            tm = (np.log1p(mem_pct[here]) - self.oof["mem_center"][idx][:, None]) \
                / self.oof["mem_spread"][idx][:, None]
            prob[here] = exceed_probability(tc, tm, residuals[ref])
        prices = capped_prices(_allowed_prices(X.iloc[rows], menu, cpu_pct, mem_pct), prob)
        best: tuple[float, float, float] | None = None  # (cost, short, penalty)
        safest: tuple[float, float, float] | None = None
        for lam in grid:
            pick = np.argmin(prices + lam * prob, axis=1)
            at = np.arange(len(rows))
            short = float(((fut_cpu > cpu_pct[at, pick]) | (fut_mem > mem_pct[at, pick])).mean())
            cost = float(menu.usd[pick].mean())
            if short <= risk + 1e-12 and (best is None or (cost, short) < best[:2]):
                best = (cost, short, float(lam))
            if safest is None or (short, cost) < safest[1::-1]:
                safest = (cost, short, float(lam))
        assert safest is not None
        chosen = best or safest
        self.penalties[penalty_key(mode, menu.source, risk)] = chosen[2]
        return {"penalty": chosen[2], "oof_short": chosen[1], "oof_monthly_usd": chosen[0],
                "risk": risk, "within_risk": best is not None, "rows": int(rows.size)}

    def choose_machines(self, X: pd.DataFrame, menu: MachineMenu, risk: float) -> pd.DataFrame:
        """Per server, the machine of ``menu`` minimising price + penalty x P(short),
        among machines at or above the censored-demand floor (:func:`censored_floor`) and
        not more likely short than :data:`MAX_SHORT_PROBABILITY` (:func:`capped_prices`).

        Capacities (``cpu_capacity``, ``mem_capacity``) are the machine's, in percent of
        the server's current capacity, so "short" in the backtest means short of what
        was bought. Needs :meth:`tune_penalty` for ``menu`` and ``risk`` first.
        """
        import pandas as pd

        modes = input_mode(X)
        lam = np.empty(len(X))
        for mode in MODES:
            key = penalty_key(mode, menu.source, risk)
            fallback = penalty_key("discovery", menu.source, risk)
            value = self.penalties.get(key, self.penalties.get(fallback))
            if value is None:
                raise KeyError(f"no penalty tuned for {menu.source} at risk {risk:.1%}: "
                               f"call tune_penalty first")
            lam[modes == mode] = value
        cpu_pct, mem_pct = menu.capacities(X)
        prob = self.short_probability(X, cpu_pct, mem_pct)
        prices = capped_prices(_allowed_prices(X, menu, cpu_pct, mem_pct), prob)
        pick = np.argmin(prices + lam[:, None] * prob, axis=1)
        at = np.arange(len(X))
        return pd.DataFrame({"cpu_capacity": cpu_pct[at, pick], "mem_capacity": mem_pct[at, pick],
                             "machine_vcpu": menu.vcpu[pick], "machine_gib": menu.gib[pick],
                             "monthly_usd": menu.usd[pick], "short_probability": prob[at, pick],
                             "target_risk": np.full(len(X), risk)}, index=X.index)

    def describe(self) -> dict[str, Any]:
        return {"kind": "LightGBM quantile regression + conformal calibration",
                "features": list(self.features),
                "calibration_episodes": {m: int(s.size) for m, s in self.scores.items()},
                "machine_choice_penalties": dict(self.penalties),
                "margins": {m: {f"{r:.3f}": _finite(self.margin(m, r)) for r in RISK_GRID}
                            for m in self.scores},
                "config": asdict(self.config)}


# A window p95 at or above this share of the allocation is censored demand (see above).
CENSORED_PCT = 99.0
CENSORED_FLOOR_FACTOR = 1.3


def censored_floor(X: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Per resource, the least capacity (% of current) a machine may have: the rule's
    p95 x 1.3 where the window's demand is censored at the allocation, else 0."""
    out = []
    for r in RESOURCES:
        base = np.expm1(base_log(X, r))
        out.append(np.where(base >= CENSORED_PCT, CENSORED_FLOOR_FACTOR * base, 0.0))
    return out[0], out[1]


def _allowed_prices(X: pd.DataFrame, menu: MachineMenu, cpu_pct: np.ndarray,
                    mem_pct: np.ndarray) -> np.ndarray:
    """(n, K) menu prices with censored-demand floors applied (inf = not a candidate);
    a row no machine satisfies keeps the largest machines as candidates."""
    floor_cpu, floor_mem = censored_floor(X)
    ok = (cpu_pct >= floor_cpu[:, None] - 1e-9) & (mem_pct >= floor_mem[:, None] - 1e-9)
    none = ~ok.any(axis=1)
    if none.any():
        biggest = (menu.vcpu == menu.vcpu.max()) | (menu.gib == menu.gib.max())
        ok[none] = biggest[None, :]
    return np.where(ok, menu.usd[None, :], np.inf)


# A machine more likely short than this is not a candidate (module docstring, part 3).
MAX_SHORT_PROBABILITY = 0.5


def capped_prices(prices: np.ndarray, prob: np.ndarray,
                  limit: float = MAX_SHORT_PROBABILITY) -> np.ndarray:
    """``prices`` (n, K) with every machine whose short probability is above ``limit``
    removed (inf). A row left with no candidate keeps its least likely short machines
    among those it had: the best the menu offers, never nothing."""
    if not 0 < limit <= 1:
        raise ValueError(f"the short-probability limit must be in (0, 1], got {limit}")
    allowed = np.isfinite(prices)
    ok = allowed & (prob <= limit + 1e-12)
    none = ~ok.any(axis=1)
    if none.any():
        least = np.where(allowed[none], prob[none], np.inf).min(axis=1, keepdims=True)
        ok[none] = allowed[none] & (prob[none] <= least + 1e-12)
    return np.where(ok, prices, np.inf)


# Penalties tried when tuning machine choice (USD/month per unit of short probability).
PENALTY_GRID = tuple(float(x) for x in np.geomspace(1.0, 20_000.0, 80))


def penalty_key(mode: str, source: str, risk: float) -> str:
    return f"{mode}|{source}|{risk:.4f}"


def _actual_log(Y: pd.DataFrame, resource: str) -> np.ndarray:
    return np.log1p(np.clip(Y[f"{resource}_p95"].to_numpy(dtype=float), 0, None))


def exceed_probability(tc: np.ndarray, tm: np.ndarray, pairs: np.ndarray,
                       chunk: int = 64) -> np.ndarray:
    """(n, K) share of residual pairs with CPU above ``tc`` or memory above ``tm``,
    with the conformal +1 in numerator and denominator."""
    pairs = np.asarray(pairs, dtype=float)
    pairs = pairs[~np.isnan(pairs).any(axis=1)]
    m = len(pairs)
    out = np.empty(tc.shape)
    sc, sm = pairs[:, 0], pairs[:, 1]
    for start in range(0, tc.shape[0], chunk):
        a, b = tc[start:start + chunk], tm[start:start + chunk]
        hit = (sc[None, None, :] > a[:, :, None]) | (sm[None, None, :] > b[:, :, None])
        out[start:start + chunk] = (hit.sum(axis=2) + 1) / (m + 1)
    return out


@dataclass(frozen=True)
class MachineMenu:
    """The machine shapes worth buying from one catalog (its price frontier).

    Cheapest price per (vCPU, GiB) shape, and no shape kept that a cheaper-or-equal one
    matches in both vCPU and memory: with instance-size rounding, only these corners of
    the price steps are decisions.
    """

    vcpu: np.ndarray
    gib: np.ndarray
    usd: np.ndarray
    source: str

    @classmethod
    def from_shapes(cls, shapes: Iterable[tuple[float, float, float]], source: str
                    ) -> MachineMenu:
        """From (vCPU, GiB, USD/month) triples."""
        cheapest: dict[tuple[float, float], float] = {}
        for vcpu, gib, usd in shapes:
            key = (float(vcpu), float(gib))
            cheapest[key] = min(float(usd), cheapest.get(key, math.inf))
        front: list[tuple[float, float, float]] = []
        for (vcpu, gib), usd in sorted(cheapest.items(), key=lambda kv: (kv[1], -kv[0][0],
                                                                          -kv[0][1])):
            if any(v >= vcpu and g >= gib for v, g, _ in front):
                continue
            front.append((vcpu, gib, usd))
        if not front:
            raise ValueError(f"{source}: no machine shapes")
        arr = np.array(front, dtype=float)
        return cls(arr[:, 0], arr[:, 1], arr[:, 2], source)

    @classmethod
    def from_catalog(cls, catalog: Any, arch: str = "x86_64") -> MachineMenu:
        """From a :class:`~migrationbox.sizing.clouds.base.RegionCatalog` (on demand)."""
        return cls.from_shapes(((t.vcpu, t.memory_gib, t.monthly_usd)
                                for t in catalog.candidates(arch)),
                               f"{catalog.cloud} {catalog.region} on demand")

    def capacities(self, X: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """(n, K) capacity of every shape in percent of each server's current CPU/memory."""
        cores = np.maximum(X["cpu_cores"].to_numpy(dtype=float), 1e-9)
        gib = np.maximum(X["mem_gib"].to_numpy(dtype=float), 1e-9)
        return (self.vcpu[None, :] / cores[:, None] * 100,
                self.gib[None, :] / gib[:, None] * 100)


def ml_key(mode: str, risk: float, target: float) -> str:
    """The risk-table key of the model at ``risk`` for an input ``mode``."""
    return f"ml_{mode}" if abs(risk - target) < 1e-9 else f"ml_{mode}@{risk:.3f}"


def _finite(x: float) -> float | str:
    return round(x, 4) if math.isfinite(x) else "cap"


def training_rows(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
    """Each episode twice: with its history features, and as discovery alone sees it;
    and the VM of each row (the calibration folds group by it)."""
    import pandas as pd

    from migrationbox.sizing.backtest import discovery_only

    cols = list(FEATURES)
    X = pd.concat([frame[cols], discovery_only(frame)[cols]], ignore_index=True)
    Y = pd.concat([frame[["fut_cpu_p95", "fut_mem_p95"]]] * 2, ignore_index=True)
    groups = np.concatenate([frame["vm_id"].to_numpy()] * 2)
    return X, Y.rename(columns=lambda c: c[4:]), groups


def pyfunc_model(model: CalibratedSizer) -> Any:
    """The model as an MLflow pyfunc (input: FEATURES; param ``risk``)."""
    import mlflow.pyfunc

    class SizingPyfunc(mlflow.pyfunc.PythonModel):
        def __init__(self, fitted: CalibratedSizer) -> None:
            self.model = fitted

        def predict(self, context: Any, model_input: pd.DataFrame,
                    params: dict[str, Any] | None = None) -> pd.DataFrame:
            risk = (params or {}).get("risk")
            return self.model.predict(model_input, None if risk is None else float(risk))

    return SizingPyfunc(model)
