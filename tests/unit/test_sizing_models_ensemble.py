"""The XGBoost + LightGBM ensemble learns what persistence misses, and calibrates capacity."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from migrationbox.sizing import backtest as bt
from migrationbox.sizing.ensemble import EnsembleConfig, SizingEnsemble, training_rows
from migrationbox.sizing.features import FEATURES


def _episodes(n_vms: int, per_vm: int, seed: int, first_vm: int = 0) -> pd.DataFrame:
    """Half of the VMs grow: their future p95 is 1.8 x the window's, and their trend says so."""
    rng = np.random.default_rng(seed)
    rows = []
    for vm in range(first_vm, first_vm + n_vms):
        growing = vm % 2 == 0
        for _ in range(per_vm):
            p95 = rng.uniform(10, 50)
            avg = p95 * rng.uniform(0.4, 0.7)
            mem = rng.uniform(30, 70)
            future = p95 * (1.8 if growing else 1.0) * rng.uniform(0.95, 1.05)
            rows.append({
                "vm_id": vm, "start_s": 0, "cpu_cores": 4.0, "mem_gib": 16.0,
                "cpu_avg": avg, "cpu_p95": p95, "cpu_peak": p95 * 1.2,
                "mem_avg": mem * 0.9, "mem_p95": mem, "mem_peak": mem * 1.05,
                "cpu_std": 3.0, "cpu_p99_5": p95 * 1.1,
                "cpu_trend": (1.5 if growing else 0.0) + rng.normal(0, 0.1),
                "cpu_daily_amp": 5.0, "mem_std": 1.0, "mem_p99_5": mem * 1.02,
                "mem_trend": 0.0, "fc_cpu_mean": math.nan, "fc_cpu_upper": math.nan,
                "fc_mem_mean": math.nan, "fc_mem_upper": math.nan,
                "fut_cpu_p95": future, "fut_cpu_peak": future * 1.2,
                "fut_mem_p95": mem * rng.uniform(0.97, 1.03), "fut_mem_peak": mem * 1.1,
            })
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def fitted() -> SizingEnsemble:
    train = _episodes(40, 6, seed=1)
    X, Y, groups = training_rows(train)
    return SizingEnsemble(EnsembleConfig(n_estimators=200, learning_rate=0.1)).fit(X, Y, groups)


def test_training_rows_include_a_discovery_only_copy() -> None:
    frame = _episodes(4, 2, seed=3)
    X, Y, groups = training_rows(frame)
    assert len(X) == 2 * len(frame) and list(X.columns) == list(FEATURES)
    assert X["cpu_trend"].iloc[len(frame):].isna().all()
    assert X["cpu_p95"].iloc[len(frame):].notna().all()
    assert (groups[: len(frame)] == groups[len(frame):]).all()
    assert list(Y.columns) == ["cpu_p95", "cpu_peak", "mem_p95", "mem_peak"]


def test_ensemble_beats_persistence_when_history_tells_it_something(fitted) -> None:
    test = _episodes(10, 4, seed=2, first_vm=100)  # VMs never seen in training
    pred = fitted.predict(test[list(FEATURES)])
    model = bt.wape(pred["cpu_p95"].to_numpy(), test["fut_cpu_p95"].to_numpy())
    persistence = bt.wape(test["cpu_p95"].to_numpy(), test["fut_cpu_p95"].to_numpy())
    assert model < persistence / 2
    growing = test["vm_id"] % 2 == 0
    ratio = pred["cpu_p95"] / test["cpu_p95"]
    assert ratio[growing].mean() > 1.5 and ratio[~growing].mean() < 1.2


def test_capacity_adds_a_calibrated_margin(fitted) -> None:
    test = _episodes(10, 4, seed=5, first_vm=200)
    pred = fitted.predict(test[list(FEATURES)])
    assert (pred["cpu_capacity"] >= pred["cpu_p95"]).all()
    assert fitted.margins["cpu"] >= 0 and fitted.margins["mem"] >= 0
    under = (test["fut_cpu_p95"] > pred["cpu_capacity"]) | (
        test["fut_mem_p95"] > pred["mem_capacity"])
    assert under.mean() <= 0.2  # the margin aims at 5 % per resource


def test_discovery_only_input_still_predicts(fitted) -> None:
    test = bt.discovery_only(_episodes(3, 2, seed=7, first_vm=300))
    pred = fitted.predict(test[list(FEATURES)])
    assert np.isfinite(pred.to_numpy()).all()
    with pytest.raises(ValueError, match="feature columns missing: cpu_cores"):
        fitted.predict(test.drop(columns=["cpu_cores"]))
