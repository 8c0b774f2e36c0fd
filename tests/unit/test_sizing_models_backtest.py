"""Backtest mechanics on synthetic traces: cleaning, episodes without leakage, split, scoring."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from migrationbox.sizing import backtest as bt

DAY = 86400
T0 = 1_372_629_600


def _vm(vm_id: int, days: float, level, cores: int = 4, mem_gib: float = 8.0,
        mem_level=50.0, step: int = 300, seed: int = 0) -> pd.DataFrame:
    """One VM in the Bitbrains columns; ``level(t_days)`` gives CPU % over time."""
    rng = np.random.default_rng(seed + vm_id)
    t = T0 + np.arange(0, int(days * DAY), step)
    d = (t - T0) / DAY
    cpu = np.clip(np.vectorize(level)(d) + rng.normal(0, 1, t.size), 0, 100)
    mem = np.clip(np.full(t.size, mem_level) + rng.normal(0, 1, t.size), 0, 100)
    cap_kb = mem_gib * 1024**2
    return pd.DataFrame({
        "vm_id": vm_id, "month": "2013-7", "timestamp_s": t, "cpu_cores": cores,
        "cpu_capacity_mhz": cores * 2600.0, "cpu_usage_mhz": cpu / 100 * cores * 2600,
        "cpu_usage_pct": cpu, "mem_capacity_kb": cap_kb, "mem_usage_kb": mem / 100 * cap_kb,
        "disk_read_kbps": 0.0, "disk_write_kbps": 0.0, "net_rx_kbps": 0.0, "net_tx_kbps": 0.0,
    })


def test_cleaning_drops_off_rows_and_duplicates_clips_and_keeps_order() -> None:
    df = _vm(1, 1, lambda d: 20.0)
    off = df.iloc[:3].copy()
    off["cpu_cores"] = 0
    dup = df.iloc[[10]].copy()
    dup["cpu_usage_pct"] = 33.0
    raw = pd.concat([df.iloc[:11], dup, df.iloc[11:], off], ignore_index=True)
    raw.loc[20, "cpu_usage_pct"] = 107.0
    raw.loc[21, "mem_usage_kb"] = raw.loc[21, "mem_capacity_kb"] * 1.1
    clean, report = bt.clean_trace(raw)
    assert report.vm_off_rows == 3 and report.duplicate_rows == 1
    assert report.cpu_clipped == 1 and report.mem_clipped == 1
    assert report.rows_out == len(df)
    assert clean["timestamp_s"].is_monotonic_increasing
    assert clean.loc[clean["timestamp_s"] == df["timestamp_s"][10], "cpu_pct"].item() == 33.0
    assert clean["cpu_pct"].max() <= 100 and clean["mem_pct"].max() <= 100


def test_episode_features_come_from_the_window_and_targets_from_the_future() -> None:
    # 10 % CPU for the first 7 days, then 80 %: a leak would show in the features
    df, _ = bt.clean_trace(_vm(1, 40, lambda d: 10.0 if d < 7 else 80.0))
    eps = bt.build_episodes(df, bt.EpisodeSpec(stride_days=100))
    assert len(eps) == 1
    row = eps.frame.iloc[0]
    assert row["cpu_avg"] == pytest.approx(10, abs=0.5)
    assert row["cpu_peak"] < 20
    assert row["fut_cpu_p95"] == pytest.approx(81.6, abs=1.5)
    assert row["cpu_cores"] == 4 and row["mem_gib"] == pytest.approx(8.0)
    assert bt.time_share_above(eps.cpu_q, np.array([50.0]))[0] > 0.95


def test_episodes_with_too_little_data_are_dropped() -> None:
    frame = _vm(1, 40, lambda d: 20.0)
    gap = frame[(frame["timestamp_s"] < T0 + 10 * DAY) | (frame["timestamp_s"] > T0 + 30 * DAY)]
    df, _ = bt.clean_trace(gap)
    assert len(bt.build_episodes(df, bt.EpisodeSpec(stride_days=100))) == 0


def test_split_is_by_vm_and_strictly_by_time() -> None:
    frames = [_vm(v, 91, lambda d: 20.0) for v in range(1, 7)]
    df, _ = bt.clean_trace(pd.concat(frames, ignore_index=True))
    train, test, info = bt.train_test_episodes(df, bt.SplitSpec())
    assert len(train) and len(test)
    assert set(info["train_vms"]).isdisjoint(info["test_vms"])
    assert set(train.frame["vm_id"]) <= set(info["train_vms"])
    assert set(test.frame["vm_id"]) <= set(info["test_vms"])
    last_train_end = (train.frame["start_s"] + 37 * DAY).max()
    first_test_start = test.frame["start_s"].min()
    assert last_train_end <= first_test_start
    again = bt.train_test_episodes(df, bt.SplitSpec())[2]
    assert again["test_vms"] == info["test_vms"]  # deterministic


def test_rules_are_scored_against_the_future() -> None:
    steady, _ = bt.clean_trace(_vm(1, 40, lambda d: 50.0))
    # a VM that idles at 10 % with a two-hour burst to 90 % every day
    spiky, _ = bt.clean_trace(_vm(2, 40, lambda d: 90.0 if (d % 1) < 1 / 12 else 10.0))
    eps = bt.build_episodes(pd.concat([steady, spiky], ignore_index=True),
                            bt.EpisodeSpec(stride_days=100))
    scores = bt.score_rules(eps)
    s = bt.score_rules(eps.subset(eps.frame["vm_id"].to_numpy() == 1))
    spikes = bt.score_rules(eps.subset(eps.frame["vm_id"].to_numpy() == 2))
    assert s["azure_migrate"].underprov_rate == 0  # 50 x 1.3 covers 50 + noise
    assert s["balanced"].underprov_rate == 0  # 120 % of a flat average is enough
    assert s["aggressive"].underprov_cpu == 1.0  # 100 % of the average is not
    assert spikes["balanced"].underprov_rate == 1.0  # its p95 (90 %) > 1.2 x avg (~17 %)
    assert spikes["conservative"].underprov_rate == 0
    assert spikes["balanced"].scale_outs_per_day == pytest.approx(1.0, abs=0.2)  # once a day
    assert scores["balanced"].underprov_rate == 0.5
    table = bt.accuracy_table(scores.values())
    for label in ("Azure Migrate style", "Compute Optimizer style", "Conservative", "Balanced"):
        assert label in table


def test_option_risk_table_is_serialisable_and_complete() -> None:
    df, _ = bt.clean_trace(_vm(1, 40, lambda d: 30.0))
    risk = bt.option_risk(bt.build_episodes(df, bt.EpisodeSpec(stride_days=100)), source="t")
    assert set(risk["methods"]) == set(bt.RULES)
    assert "p95" in risk["definition"]
    shipped = bt.shipped_risk_table()
    assert shipped is not None and set(bt.RULES) <= set(shipped["methods"])
    assert shipped["methods"]["balanced"]["underprov_rate"] > 0.5  # measured on Bitbrains
