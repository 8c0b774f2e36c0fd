"""The quantile model keeps its stated risk on servers it never saw (synthetic truth).

Calibration is a property of the method, so it is checked where the truth is known:
servers whose future p95 is their window p95 times a log-normal change with a
server-specific volatility (which the history features reveal). On held-out servers
drawn from the same population the share short of capacity (CPU or memory) must be
within a few points of the stated risk, for split and cross-conformal calibration.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from migrationbox.sizing.backtest import discovery_only
from migrationbox.sizing.features import FEATURES
from migrationbox.sizing.quantile_model import (
    CalibratedSizer,
    QuantileConfig,
    conformal_quantile,
    training_rows,
)

QUICK = QuantileConfig(n_estimators=60, learning_rate=0.1, folds=3)


def population(n_vms: int, per_vm: int, seed: int) -> pd.DataFrame:
    """Episodes of ``n_vms`` servers; volatility is per server and visible in cpu_std."""
    rng = np.random.default_rng(seed)
    rows = []
    for vm in range(n_vms):
        vol = rng.uniform(0.05, 0.6)
        cpu_p95, mem_p95 = rng.uniform(5, 50), rng.uniform(10, 60)
        for _ in range(per_vm):
            cpu_fut = cpu_p95 * math.exp(vol * rng.standard_normal())
            mem_fut = mem_p95 * math.exp(0.5 * vol * rng.standard_normal())
            row = dict.fromkeys(FEATURES, math.nan)
            row.update({
                "vm_id": seed * 10_000 + vm, "cpu_cores": 4.0, "mem_gib": 16.0,
                "cpu_avg": cpu_p95 * 0.6, "cpu_p95": cpu_p95, "cpu_peak": cpu_p95 * 1.2,
                "mem_avg": mem_p95 * 0.9, "mem_p95": mem_p95, "mem_peak": mem_p95 * 1.05,
                "cpu_std": vol * 10, "cpu_p99_5": cpu_p95 * 1.1, "cpu_trend": 0.0,
                "cpu_daily_amp": vol * 5, "mem_std": vol * 5, "mem_p99_5": mem_p95 * 1.02,
                "mem_trend": 0.0,
                "fut_cpu_p95": min(cpu_fut, 99.0), "fut_mem_p95": min(mem_fut, 99.0),
            })
            rows.append(row)
    return pd.DataFrame(rows)


def share_short(model: CalibratedSizer, frame: pd.DataFrame, risk: float) -> float:
    pred = model.predict(frame, risk)
    short = ((frame["fut_cpu_p95"].to_numpy() > pred["cpu_capacity"].to_numpy())
             | (frame["fut_mem_p95"].to_numpy() > pred["mem_capacity"].to_numpy()))
    return float(short.mean())


@pytest.fixture(scope="module")
def held_out() -> pd.DataFrame:
    return population(1500, 2, seed=3)


@pytest.fixture(scope="module")
def split_model() -> CalibratedSizer:
    X, Y, _ = training_rows(population(300, 4, seed=1))
    X_cal, Y_cal, _ = training_rows(population(600, 2, seed=2))
    return CalibratedSizer(QUICK).fit_split(X, Y, X_cal, Y_cal)


@pytest.mark.parametrize("risk", [0.05, 0.10, 0.20])
def test_split_conformal_keeps_the_stated_risk_on_held_out_servers(split_model, held_out,
                                                                    risk) -> None:
    for frame in (held_out, discovery_only(held_out)):
        assert share_short(split_model, frame, risk) == pytest.approx(risk, abs=0.035)


def test_cross_conformal_calibrates_on_every_training_vm(held_out) -> None:
    X, Y, groups = training_rows(population(400, 4, seed=4))
    model = CalibratedSizer(QUICK).fit(X, Y, groups)
    assert sum(s.size for s in model.scores.values()) == len(X)  # every row scored out of fold
    for risk in (0.10, 0.20):
        assert share_short(model, held_out, risk) == pytest.approx(risk, abs=0.04)


def test_headroom_follows_each_servers_own_volatility(split_model, held_out) -> None:
    pred = split_model.predict(held_out, 0.10)
    ratio = pred["cpu_capacity"].to_numpy() / held_out["cpu_p95"].to_numpy()
    calm = held_out["cpu_std"].to_numpy() < 2
    wild = held_out["cpu_std"].to_numpy() > 4
    assert ratio[wild].mean() > 1.3 * ratio[calm].mean()


def test_capacity_grows_as_the_stated_risk_falls(split_model, held_out) -> None:
    caps = [split_model.predict(held_out, r)["cpu_capacity"].mean() for r in (0.3, 0.1, 0.05)]
    assert caps[0] < caps[1] < caps[2]
    assert split_model.predict(held_out)["target_risk"].iloc[0] == QUICK.target_risk


def test_conformal_quantile_is_the_finite_sample_rank() -> None:
    scores = np.arange(1, 20, dtype=float)  # n = 19: rank ceil(20 * 0.9) = 18
    assert conformal_quantile(scores, 0.10) == 18.0
    assert conformal_quantile(scores, 0.01) == 19.0  # too few scores: the largest
    assert math.isinf(conformal_quantile(np.array([1.0, np.inf, np.inf]), 0.5))
    with pytest.raises(ValueError, match="between 0 and 1"):
        conformal_quantile(scores, 1.5)


def test_unforeseeable_jumps_are_capped_and_counted_short(split_model) -> None:
    frame = population(50, 1, seed=9)
    frame["fut_cpu_p95"] = 5000.0  # far beyond the current allocation: no capacity covers it
    pred = split_model.predict(frame, 0.05)
    assert (pred["cpu_capacity"] <= np.maximum(100, 1.5 * frame["cpu_peak"]) + 1e-6).all()
    actual = pd.DataFrame({"cpu_p95": frame["fut_cpu_p95"], "mem_p95": frame["fut_mem_p95"]})
    assert np.isinf(split_model.conformity(frame, actual)).all()
