"""The sizing model: an XGBoost + LightGBM ensemble for future peak and p95 demand.

For each target (future 30-day p95 and peak of CPU and of memory, in percent of the
server's current capacity) one XGBoost and one LightGBM regressor learn the change
from what discovery measured, in log space: ``log1p(target) - log1p(window figure)``
(utilisation is heavy-tailed, and "the next month looks like the last week" is a
strong baseline the models should correct, not re-learn). The ensemble averages
the two regressors.

A point prediction of p95 is wrong half of the time, which for capacity means
under-provisioned half of the time. So the recommended **capacity** adds a margin
calibrated on the training VMs only: out-of-fold predictions (folds grouped by VM)
give the residuals, and the margin is their ``1 - target_underprovision`` quantile
in log space, per resource. The held-out VMs then measure whether that promise
held; the figure is what ``options`` prints as the model's risk.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from migrationbox.sizing.features import FEATURES, TARGETS

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True, slots=True)
class EnsembleConfig:
    # Strongly regularised: a few hundred episodes from a few dozen VMs (see backtest).
    n_estimators: int = 100
    learning_rate: float = 0.03
    max_depth: int = 2
    num_leaves: int = 4
    min_child_samples: int = 20
    subsample: float = 0.8
    colsample: float = 0.8
    target_underprovision: float = 0.05  # per resource, for the calibrated margin
    folds: int = 5
    seed: int = 7
    n_jobs: int = 2


def _xgb(cfg: EnsembleConfig) -> Any:
    from xgboost import XGBRegressor

    return XGBRegressor(n_estimators=cfg.n_estimators, learning_rate=cfg.learning_rate,
                        max_depth=cfg.max_depth, subsample=cfg.subsample,
                        colsample_bytree=cfg.colsample, random_state=cfg.seed,
                        n_jobs=cfg.n_jobs, tree_method="hist")


def _lgbm(cfg: EnsembleConfig) -> Any:
    from lightgbm import LGBMRegressor

    return LGBMRegressor(n_estimators=cfg.n_estimators, learning_rate=cfg.learning_rate,
                         num_leaves=cfg.num_leaves, min_child_samples=cfg.min_child_samples,
                         subsample=cfg.subsample, subsample_freq=1,
                         colsample_bytree=cfg.colsample, random_state=cfg.seed,
                         n_jobs=cfg.n_jobs, verbose=-1)


@dataclass
class SizingEnsemble:
    """Fitted models per target plus the calibrated capacity margins."""

    config: EnsembleConfig = field(default_factory=EnsembleConfig)
    features: tuple[str, ...] = FEATURES
    targets: tuple[str, ...] = TARGETS
    models: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    margins: dict[str, float] = field(default_factory=dict)  # "cpu"/"mem" -> log1p margin

    def _fit_target(self, X: np.ndarray, y: np.ndarray) -> tuple[Any, Any]:
        xgb, lgbm = _xgb(self.config), _lgbm(self.config)
        xgb.fit(X, y)
        lgbm.fit(X, y)
        return xgb, lgbm

    @staticmethod
    def _blend(pair: tuple[Any, Any], X: np.ndarray) -> np.ndarray:
        return (pair[0].predict(X) + pair[1].predict(X)) / 2.0

    def _matrix(self, frame: pd.DataFrame) -> np.ndarray:
        missing = [f for f in self.features if f not in frame.columns]
        if missing:
            raise ValueError(f"feature columns missing: {', '.join(missing)}")
        return frame[list(self.features)].to_numpy(dtype=np.float32)

    def _base(self, frame: pd.DataFrame, target: str) -> np.ndarray:
        """log1p of the window's own figure for ``target`` (the persistence forecast).

        The models learn the *change* from what discovery measured (p95 -> future p95,
        peak -> future peak), falling back to the next figure known (p95, peak, avg)
        exactly as at sizing time.
        """
        resource, stat = target.split("_", 1)
        order = [stat] + [s for s in ("p95", "peak", "avg") if s != stat]
        base = np.full(len(frame), np.nan)
        for s in order:
            column = frame[f"{resource}_{s}"].to_numpy(dtype=float)
            base = np.where(np.isnan(base), column, base)
        return np.log1p(np.clip(np.nan_to_num(base, nan=0.0), 0, None))

    def fit(self, X: pd.DataFrame, Y: pd.DataFrame, groups: np.ndarray) -> SizingEnsemble:
        """Fit on ``X`` (FEATURES) and ``Y`` (TARGETS, % of capacity), grouped by VM."""
        from sklearn.model_selection import GroupKFold

        matrix = self._matrix(X)
        bases = {t: self._base(X, t) for t in self.targets}
        logs = {t: np.log1p(np.clip(Y[t].to_numpy(dtype=float), 0, None)) for t in self.targets}
        deltas = {t: logs[t] - bases[t] for t in self.targets}
        oof = {t: np.full(len(X), np.nan) for t in ("cpu_p95", "mem_p95")}
        n_groups = len(np.unique(groups))
        folds = min(self.config.folds, n_groups)
        if folds >= 2:
            for train_idx, val_idx in GroupKFold(n_splits=folds).split(matrix, groups=groups):
                for t in oof:
                    pair = self._fit_target(matrix[train_idx], deltas[t][train_idx])
                    oof[t][val_idx] = bases[t][val_idx] + self._blend(pair, matrix[val_idx])
        q = 1.0 - self.config.target_underprovision
        for resource in ("cpu", "mem"):
            residual = logs[f"{resource}_p95"] - oof[f"{resource}_p95"]
            residual = residual[np.isfinite(residual)]
            self.margins[resource] = float(np.quantile(residual, q)) if residual.size else 0.0
        self.models = {t: self._fit_target(matrix, deltas[t]) for t in self.targets}
        return self

    def predict(self, X: pd.DataFrame) -> pd.DataFrame:
        """Predicted future demand (% of current capacity) per target, plus capacities."""
        import pandas as pd

        if not self.models:
            raise RuntimeError("the ensemble is not fitted")
        matrix = self._matrix(X)
        out = {}
        for t in self.targets:
            log_pred = self._base(X, t) + self._blend(self.models[t], matrix)
            out[t] = np.clip(np.expm1(log_pred), 0, None)
        for resource in ("cpu", "mem"):
            log_pred = np.log1p(out[f"{resource}_p95"]) + self.margins.get(resource, 0.0)
            out[f"{resource}_capacity"] = np.expm1(log_pred)
        return pd.DataFrame(out, index=X.index)

    def describe(self) -> dict[str, Any]:
        return {"targets": list(self.targets), "features": list(self.features),
                "margins_log1p": {k: round(v, 4) for k, v in self.margins.items()},
                "margin_factor_at_10pct": {k: round(math.expm1(math.log1p(10) + v) / 10, 3)
                                           for k, v in self.margins.items()},
                "config": asdict(self.config)}


def training_rows(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
    """Each episode twice: with its history features, and as discovery alone sees it."""
    import pandas as pd

    from migrationbox.sizing.backtest import discovery_only, targets_of

    X = pd.concat([frame[list(FEATURES)], discovery_only(frame)[list(FEATURES)]],
                  ignore_index=True)
    Y = pd.concat([targets_of(frame), targets_of(frame)], ignore_index=True)
    groups = np.concatenate([frame["vm_id"].to_numpy(), frame["vm_id"].to_numpy()])
    return X, Y, groups


def pyfunc_model(ensemble: SizingEnsemble) -> Any:
    """The ensemble as an MLflow pyfunc (input: FEATURES; output: targets + capacity)."""
    import mlflow.pyfunc

    class SizingPyfunc(mlflow.pyfunc.PythonModel):
        def __init__(self, fitted: SizingEnsemble) -> None:
            self.ensemble = fitted

        def predict(self, context: Any, model_input: pd.DataFrame,
                    params: dict[str, Any] | None = None) -> pd.DataFrame:
            return self.ensemble.predict(model_input)

    return SizingPyfunc(ensemble)
