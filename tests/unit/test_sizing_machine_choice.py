"""Machine choice at a stated risk: the price frontier, the joint short probability, the
penalty tuned out of fold, and the VM-clustered bootstrap the backtest reports.

Checked where the truth is known (synthetic servers whose future p95 is their window p95
times a log-normal change with a per-server volatility the history reveals), with a
small hand-written menu of machine shapes so the checks do not depend on price files.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from migrationbox.sizing.backtest import bootstrap_difference, discovery_only
from migrationbox.sizing.features import FEATURES
from migrationbox.sizing.quantile_model import (
    MAX_SHORT_PROBABILITY,
    CalibratedSizer,
    MachineMenu,
    QuantileConfig,
    capped_prices,
    exceed_probability,
    training_rows,
)

QUICK = QuantileConfig(n_estimators=60, learning_rate=0.1, folds=3)
# (vCPU, GiB, USD/month): a general-purpose ladder plus memory- and compute-rich shapes
SHAPES = [(1, 2, 38.0), (1, 4, 42.0), (2, 4, 56.0), (2, 8, 63.0), (2, 16, 92.0),
          (4, 8, 112.0), (4, 16, 126.0), (4, 32, 184.0), (8, 16, 224.0), (8, 32, 252.0),
          (8, 64, 368.0), (16, 32, 448.0), (16, 64, 504.0), (32, 128, 1008.0)]
MENU = MachineMenu.from_shapes(SHAPES, "test menu")


def population(n_vms: int, per_vm: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for vm in range(n_vms):
        vol = rng.uniform(0.05, 0.6)
        cores = float(rng.choice([1, 2, 4, 8]))
        gib = float(rng.choice([2, 4, 8, 16])) * max(cores / 2, 1)
        cpu_p95, mem_p95 = rng.uniform(5, 60), rng.uniform(10, 70)
        for _ in range(per_vm):
            cpu_fut = cpu_p95 * math.exp(vol * rng.standard_normal())
            mem_fut = mem_p95 * math.exp(0.5 * vol * rng.standard_normal())
            row = dict.fromkeys(FEATURES, math.nan)
            row.update({
                "vm_id": seed * 10_000 + vm, "cpu_cores": cores, "mem_gib": gib,
                "cpu_avg": cpu_p95 * 0.6, "cpu_p95": cpu_p95, "cpu_peak": cpu_p95 * 1.2,
                "mem_avg": mem_p95 * 0.9, "mem_p95": mem_p95, "mem_peak": mem_p95 * 1.05,
                "cpu_std": vol * 10, "cpu_p99_5": cpu_p95 * 1.1, "cpu_trend": 0.0,
                "cpu_daily_amp": vol * 5, "mem_std": vol * 5, "mem_p99_5": mem_p95 * 1.02,
                "mem_trend": 0.0,
                "fut_cpu_p95": min(cpu_fut, 150.0), "fut_mem_p95": min(mem_fut, 150.0),
            })
            rows.append(row)
    return pd.DataFrame(rows)


def machine_short(frame: pd.DataFrame, vcpu: np.ndarray, gib: np.ndarray) -> np.ndarray:
    return ((frame["fut_cpu_p95"].to_numpy() * frame["cpu_cores"].to_numpy() / 100 > vcpu)
            | (frame["fut_mem_p95"].to_numpy() * frame["mem_gib"].to_numpy() / 100 > gib))


def cheapest(vcpu: float, gib: float) -> tuple[float, float, float]:
    fits = (MENU.vcpu >= vcpu - 1e-9) & (MENU.gib >= gib - 1e-9)
    i = int(np.argmin(np.where(fits, MENU.usd, np.inf)))
    return MENU.vcpu[i], MENU.gib[i], MENU.usd[i]


@pytest.fixture(scope="module")
def fitted() -> tuple[CalibratedSizer, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    train = population(240, 4, seed=1)
    X, Y, groups = training_rows(train)
    return CalibratedSizer(QUICK).fit(X, Y, groups), X, Y, train


@pytest.fixture(scope="module")
def held_out() -> pd.DataFrame:
    return population(1200, 1, seed=3)


def test_menu_keeps_the_cheapest_price_of_each_shape_and_drops_dominated_shapes() -> None:
    menu = MachineMenu.from_shapes([(2, 8, 70.0), (2, 8, 63.0), (2, 4, 65.0), (1, 2, 38.0),
                                    (4, 16, 126.0)], "m")
    shapes = set(zip(menu.vcpu.tolist(), menu.gib.tolist(), menu.usd.tolist(), strict=True))
    # (2, 4) at 65 is dominated by (2, 8) at 63; (2, 8) keeps its cheapest price
    assert shapes == {(1.0, 2.0, 38.0), (2.0, 8.0, 63.0), (4.0, 16.0, 126.0)}
    cpu, mem = menu.capacities(pd.DataFrame({"cpu_cores": [2.0], "mem_gib": [8.0]}))
    assert cpu.shape == (1, 3) and cpu[0].tolist() == [50.0, 100.0, 200.0]
    assert mem[0].tolist() == [25.0, 100.0, 200.0]
    with pytest.raises(ValueError, match="no machine shapes"):
        MachineMenu.from_shapes([], "empty")


def test_exceed_probability_counts_cpu_or_memory_with_the_conformal_plus_one() -> None:
    pairs = np.array([[0.0, 0.0], [1.0, -1.0], [-1.0, 1.0], [2.0, 2.0]])
    tc = np.array([[0.5, 3.0]])
    tm = np.array([[0.5, 3.0]])
    # at (0.5, 0.5): rows 2, 3 and 4 exceed one of them -> (3 + 1) / 5; at (3, 3): none
    assert exceed_probability(tc, tm, pairs).tolist() == [[0.8, 0.2]]


def test_penalty_is_tuned_out_of_fold_within_the_stated_risk(fitted) -> None:
    model, X, Y, _ = fitted
    tuned = model.tune_penalty(X, Y, MENU, 0.10)
    assert tuned["within_risk"] and tuned["oof_short"] <= 0.10
    safer = model.tune_penalty(X, Y, MENU, 0.03)
    assert safer["penalty"] >= tuned["penalty"]
    assert safer["oof_monthly_usd"] >= tuned["oof_monthly_usd"]
    with pytest.raises(ValueError, match="rows the model was fitted on"):
        model.tune_penalty(X.head(10), Y.head(10), MENU, 0.10)


def test_machine_choice_keeps_its_risk_on_held_out_servers(fitted, held_out) -> None:
    model, X, Y, _ = fitted
    model.tune_penalty(X, Y, MENU, 0.10)
    pick = model.choose_machines(discovery_only(held_out), MENU, 0.10)
    shapes = set(zip(MENU.vcpu.tolist(), MENU.gib.tolist(), strict=True))
    assert set(zip(pick["machine_vcpu"], pick["machine_gib"], strict=True)) <= shapes
    short = machine_short(held_out, pick["machine_vcpu"].to_numpy(),
                          pick["machine_gib"].to_numpy())
    assert short.mean() <= 0.10 + 0.04
    # the capacity reported is the machine's, in percent of the current server
    assert np.allclose(pick["cpu_capacity"] * held_out["cpu_cores"] / 100, pick["machine_vcpu"])
    with pytest.raises(KeyError, match="tune_penalty first"):
        model.choose_machines(held_out, MENU, 0.2345)


def test_machine_choice_beats_padding_every_server_by_thirty_percent(fitted, held_out) -> None:
    """At the rule's own training risk of being short of its machine, the tuned choice is
    no riskier on held-out servers and buys cheaper machines (synthetic truth)."""
    model, X, Y, train = fitted

    def rule(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        bought = [cheapest(c * p * 1.3 / 100, g * m * 1.3 / 100) for c, p, g, m in zip(
            frame["cpu_cores"], frame["cpu_p95"], frame["mem_gib"], frame["mem_p95"],
            strict=True)]
        arr = np.array(bought)
        return arr[:, 0], arr[:, 1], arr[:, 2]

    v, g, _ = rule(train)
    risk = float(machine_short(train, v, g).mean())
    model.tune_penalty(X, Y, MENU, risk)
    pick = model.choose_machines(discovery_only(held_out), MENU, risk)
    rv, rg, rusd = rule(held_out)
    ml_short = machine_short(held_out, pick["machine_vcpu"].to_numpy(),
                             pick["machine_gib"].to_numpy()).mean()
    assert ml_short <= machine_short(held_out, rv, rg).mean() + 0.02
    assert pick["monthly_usd"].mean() < rusd.mean()


def test_bootstrap_resamples_whole_vms() -> None:
    vms = np.repeat(np.arange(20), 5)
    a = np.where(vms < 10, 1.0, 0.0)
    same = bootstrap_difference(vms, a, a)
    assert same["mean"] == same["lo"] == same["hi"] == 0.0
    out = bootstrap_difference(vms, a, np.zeros_like(a), n_boot=500, seed=1)
    assert out["clusters"] == 20 and out["episodes"] == 100
    assert out["lo"] < out["mean"] == 0.5 < out["hi"]
    # all of a VM's episodes move together: the CI is as wide as 20 draws, not 100
    assert out["hi"] - out["lo"] > 0.3


def test_censored_demand_is_never_sized_below_the_rule(fitted) -> None:
    """A server pegged at its allocation shows what it was allowed, not what it wanted:
    the machine must carry at least p95 x 1.3 of that resource, however cheap less is."""
    model, X, Y, _ = fitted
    model.tune_penalty(X, Y, MENU, 0.10)
    frame = discovery_only(population(30, 1, seed=5))
    frame["cpu_p95"] = 100.0
    frame["cpu_peak"] = 100.0
    pick = model.choose_machines(frame, MENU, 0.10)
    need = frame["cpu_cores"].to_numpy() * 1.3
    assert (pick["machine_vcpu"].to_numpy() >= need - 1e-9).all()
    calm = discovery_only(population(30, 1, seed=5))
    calm_pick = model.choose_machines(calm, MENU, 0.10)
    assert calm_pick["monthly_usd"].mean() < pick["monthly_usd"].mean()


def test_capped_prices_drop_machines_more_likely_short_than_not() -> None:
    prices = np.array([[10.0, 20.0, 30.0], [10.0, 20.0, np.inf], [10.0, 20.0, 30.0]])
    prob = np.array([[0.9, 0.4, 0.1], [0.9, 0.8, 0.0], [0.6, 0.5, 0.51]])
    out = capped_prices(prices, prob, 0.5)
    assert out[0].tolist() == [np.inf, 20.0, 30.0]
    # no candidate within the limit: the least likely short one it was allowed, not none
    assert out[1].tolist() == [np.inf, 20.0, np.inf]
    assert out[2].tolist() == [np.inf, 20.0, np.inf]  # exactly at the limit is allowed
    with pytest.raises(ValueError, match="limit"):
        capped_prices(prices, prob, 0.0)


def test_an_expensive_server_is_not_given_up_to_save_its_price(fitted) -> None:
    """The fleet penalty must not buy a machine the server is more likely short of than
    not: a 32-core server using ~5 cores gets a machine that is meant to carry it, even
    when the penalty is so low that a certain shortfall would be "cheaper"."""
    model, X, Y, _ = fitted
    model.tune_penalty(X, Y, MENU, 0.10)
    key = next(k for k in model.penalties if k.startswith("discovery|"))
    model.penalties[key] = 1.0  # $1 per unit of P(short): a shortfall costs next to nothing
    big = discovery_only(population(5, 1, seed=9))
    big["cpu_cores"], big["mem_gib"] = 32.0, 64.0
    big["cpu_avg"], big["cpu_p95"], big["cpu_peak"] = 12.0, 15.0, 17.0
    big["mem_avg"], big["mem_p95"], big["mem_peak"] = 5.0, 6.0, 7.0
    pick = model.choose_machines(big, MENU, 0.10)
    assert (pick["short_probability"] <= MAX_SHORT_PROBABILITY).all()
    assert (pick["machine_vcpu"] >= 32 * 0.15).all()  # at least the window's p95 in cores


def test_headroom_is_what_the_rule_overspends_against_perfect_foresight() -> None:
    from ml.sizing.pipeline import headroom

    rule = {"usd": [100.0, 50.0, 40.0, float("nan")]}
    oracle = {"usd": [60.0, 80.0, 40.0, 10.0]}
    # only where the rule costs more than the machine the future needed: (40 + 0 + 0) / 3
    assert headroom(rule, oracle) == pytest.approx(40.0 / 3)
