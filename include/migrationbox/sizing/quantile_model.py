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
"""

from __future__ import annotations

import math
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
        for fit_idx, cal_idx in GroupKFold(n_splits=folds).split(X, groups=groups):
            self.models = self._fit_regressors(X.iloc[fit_idx], Y.iloc[fit_idx])
            score[cal_idx] = self.conformity(X.iloc[cal_idx], Y.iloc[cal_idx])
        self.models = self._fit_regressors(X, Y)
        self._set_scores(X, score)
        return self

    def fit_split(self, X: pd.DataFrame, Y: pd.DataFrame, X_cal: pd.DataFrame,
                  Y_cal: pd.DataFrame) -> CalibratedSizer:
        """Fit on (X, Y) and calibrate on (X_cal, Y_cal), other servers (split conformal)."""
        self.models = self._fit_regressors(X, Y)
        return self.calibrate(X_cal, Y_cal)

    def calibrate(self, X_cal: pd.DataFrame, Y_cal: pd.DataFrame) -> CalibratedSizer:
        """Replace the calibration scores with those of (X_cal, Y_cal)."""
        self._set_scores(X_cal, self.conformity(X_cal, Y_cal))
        return self

    def _set_scores(self, X: pd.DataFrame, score: np.ndarray) -> None:
        modes = input_mode(X)
        self.scores = {m: np.sort(score[modes == m]) for m in MODES if (modes == m).any()}

    def conformity(self, X: pd.DataFrame, Y: pd.DataFrame) -> np.ndarray:
        """Normalised residual of the worse resource: above ``q`` means short at ``q``."""
        cs = self._center_spread(X)
        per = []
        for r in RESOURCES:
            center, spread, cap = cs[r]
            actual = np.log1p(np.clip(Y[f"{r}_p95"].to_numpy(dtype=float), 0, None))
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

    def describe(self) -> dict[str, Any]:
        return {"kind": "LightGBM quantile regression + conformal calibration",
                "features": list(self.features),
                "calibration_episodes": {m: int(s.size) for m, s in self.scores.items()},
                "margins": {m: {f"{r:.3f}": _finite(self.margin(m, r)) for r in RISK_GRID}
                            for m in self.scores},
                "config": asdict(self.config)}


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
