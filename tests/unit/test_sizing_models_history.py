"""History files (validation with clear messages) and Prophet forecasts 30/60/90 days ahead."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from migrationbox.sizing.features import ServerProfile, UsageStats
from migrationbox.sizing.forecast import baseline_fallback, forecast_metric
from migrationbox.sizing.history import HistoryError, apply_history, load_history

T0 = 1_751_328_000  # 2025-07-01T00:00:00Z


def _write(path: Path, rows: list[str], header: str = "timestamp,cpu_pct,mem_pct") -> Path:
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


def _series(days: float, step_s: int = 900, seed: int = 1) -> tuple[np.ndarray, np.ndarray,
                                                                        np.ndarray]:
    rng = np.random.default_rng(seed)
    t = T0 + np.arange(0, int(days * 86400), step_s)
    hour = (t % 86400) / 3600
    cpu = np.clip(30 + 15 * np.sin(2 * np.pi * (hour - 8) / 24) + rng.normal(0, 3, t.size), 0, 100)
    mem = np.clip(60 + rng.normal(0, 2, t.size), 0, 100)
    return t, cpu, mem


def _history_file(tmp_path: Path, days: float = 21, extra: bool = True) -> Path:
    t, cpu, mem = _series(days)
    header = "timestamp,cpu_pct,mem_pct" + (",net_mbps" if extra else "")
    rows = []
    for i, (a, b, c) in enumerate(zip(t, cpu, mem, strict=True)):
        iso = np.datetime_as_string(np.datetime64(int(a), "s")) + "Z"
        rows.append(f"{iso},{b:.2f},{c:.2f}" + (f",{50 + i % 7}" if extra else ""))
    return _write(tmp_path / "srv-x.csv", rows, header)


def test_a_good_history_loads_with_its_extra_numeric_columns(tmp_path) -> None:
    h = load_history(_history_file(tmp_path))
    assert set(h.columns) == {"cpu_pct", "mem_pct", "net_mbps"}
    assert h.interval_s == 900 and 20.9 < h.span_days < 21.1
    assert not h.warnings


@pytest.mark.parametrize(("rows", "message"), [
    (["2025-07-01T00:00:00Z,10,20", "2025-07-01T00:05:00Z,abc,20"],
     r"line 3, column 'cpu_pct': 'abc' is not a number"),
    (["2025-07-01T00:00:00Z,10,20", "2025-07-01T00:00:00Z,11,21"],
     r"line 3: duplicate timestamp"),
    (["2025-07-01T00:10:00Z,10,20", "2025-07-01T00:05:00Z,11,21"],
     r"line 3: timestamp .* is earlier than the line before"),
    (["2025-07-01T00:00:00Z,10,140"], r"line 2, column 'mem_pct': 140 is outside 0-100"),
    (["yesterday,10,20"], r"line 2, column 'timestamp': 'yesterday' is not a timestamp"),
])
def test_bad_rows_are_refused_naming_line_and_column(tmp_path, rows, message) -> None:
    with pytest.raises(HistoryError, match=message):
        load_history(_write(tmp_path / "h.csv", rows))


def test_missing_columns_short_and_sparse_histories_are_refused(tmp_path) -> None:
    with pytest.raises(HistoryError, match="missing column 'mem_pct'"):
        load_history(_write(tmp_path / "a.csv", ["1751328000,10"], "timestamp,cpu"))
    short = [f"{T0 + i * 300},10,20" for i in range(12)]
    with pytest.raises(HistoryError, match=r"covers 0\.9 hours; at least 24 hours"):
        load_history(_write(tmp_path / "b.csv", short))
    sparse = [f"{T0 + i * 300},10,20" for i in range(300)] + [f"{T0 + 10 * 86400},10,20"]
    with pytest.raises(HistoryError, match="too sparse"):
        load_history(_write(tmp_path / "c.csv", sparse))


def test_gaps_that_leave_enough_data_are_warnings(tmp_path) -> None:
    rows = [f"{T0 + i * 300},10,20" for i in range(600)]
    rows += [f"{T0 + 6 * 3600 + 600 * 300 + i * 300},12,22" for i in range(600)]
    h = load_history(_write(tmp_path / "g.csv", rows))
    assert len(h.warnings) == 1 and "1 gap(s) longer than 3 sample intervals" in h.warnings[0]


def test_many_problems_are_listed_together(tmp_path) -> None:
    rows = [f"{T0 + i * 300},x{i},20" for i in range(15)]
    with pytest.raises(HistoryError) as info:
        load_history(_write(tmp_path / "m.csv", rows))
    assert len(info.value.problems) == 15
    assert "(and 5 more)" in str(info.value)


def test_prophet_forecasts_30_60_90_days_with_intervals() -> None:
    t, cpu, _ = _series(21)
    f = forecast_metric(t, cpu, "cpu_pct")
    assert f.method.startswith("prophet:")
    assert [p.horizon_days for p in f.points] == [30, 60, 90]
    for p in f.points:
        assert p.lower is not None and p.upper is not None
        assert 0 <= p.lower <= p.mean <= p.upper <= 100
        assert 20 < p.mean < 40  # the series oscillates around 30 %
        assert p.peak_upper >= p.upper
    assert "extrapolate" in f.note  # 90 days from 21 days of history says so


def test_a_server_without_history_gets_an_explicit_fallback() -> None:
    profile = ServerProfile(server_id="s", hostname="s", vcpu=4, memory_gib=8,
                            cpu=UsageStats(avg=25.0), memory=UsageStats(avg=50.0),
                            stats_source="discovery")
    fc = baseline_fallback(profile)
    assert set(fc) == {"cpu_pct", "mem_pct"}
    assert fc["cpu_pct"].method == "baseline-fallback"
    assert "no utilisation history" in fc["cpu_pct"].note
    assert all(p.mean == 25.0 and p.lower is None and p.upper is None
               for p in fc["cpu_pct"].points)


def test_apply_history_sizes_from_the_last_week_and_forecasts_every_column(tmp_path) -> None:
    h = load_history(_history_file(tmp_path, days=21))
    profile = ServerProfile(server_id="srv-x", hostname="srv-x", vcpu=8, memory_gib=32,
                            cpu=UsageStats(avg=0.0), memory=UsageStats(avg=0.0),
                            stats_source="none")
    sized, forecasts = apply_history(profile, h)
    week = h.timestamps >= h.timestamps[-1] - 7 * 86400
    assert sized.cpu.avg == pytest.approx(h.columns["cpu_pct"][week].mean())
    assert sized.cpu.p95 == pytest.approx(np.percentile(h.columns["cpu_pct"][week], 95))
    assert not math.isnan(sized.cpu.p99_5) and not math.isnan(sized.memory.trend)
    assert set(forecasts) == {"cpu_pct", "mem_pct", "net_mbps"}
    assert set(sized.forecast) == {"fc_cpu_mean", "fc_cpu_upper", "fc_mem_mean", "fc_mem_upper"}
    assert "last 7 days" in sized.stats_source


def _max_history(tmp_path: Path, header: str, bad_row: int | None = None) -> Path:
    """Averages plus per-interval maxima (as cloud monitors export them): short bursts."""
    t, cpu, mem = _series(10, step_s=3600)
    rng = np.random.default_rng(5)
    cpu_max = np.minimum(cpu + rng.uniform(5, 40, t.size), 100)
    rows = []
    for i, (a, b, c, d) in enumerate(zip(t, cpu, mem, cpu_max, strict=True)):
        top = 130.0 if i == bad_row else d
        rows.append(f"{int(a)},{b:.2f},{c:.2f},{top:.2f},{min(c + 3, 100):.2f}")
    return _write(tmp_path / "srv-max.csv", rows, header)


def test_per_interval_maxima_are_accepted_and_size_the_peak(tmp_path) -> None:
    path = _max_history(tmp_path, "timestamp,cpu_pct,mem_pct,cpu_max_pct,memory_max_pct")
    h = load_history(path)
    assert {"cpu_max_pct", "mem_max_pct"} <= set(h.columns)
    profile = ServerProfile(server_id="srv-max", hostname="srv-max", vcpu=4, memory_gib=16,
                            cpu=UsageStats(avg=0.0), memory=UsageStats(avg=0.0),
                            stats_source="none")
    sized, _ = apply_history(profile, h, with_forecast=False)
    week = h.timestamps >= h.timestamps[-1] - 7 * 86400
    assert sized.cpu.peak == pytest.approx(h.columns["cpu_max_pct"][week].max())
    assert sized.cpu.peak > h.columns["cpu_pct"][week].max()  # averages hid the bursts
    assert sized.cpu.p95 == pytest.approx(np.percentile(h.columns["cpu_pct"][week], 95))
    assert "per-interval maxima (cpu_max_pct, mem_max_pct)" in sized.stats_source
    plain, _ = apply_history(profile, load_history(_write(
        tmp_path / "plain.csv", [",".join(r.split(",")[:3]) for r in
                                 path.read_text().splitlines()[1:]])), with_forecast=False)
    assert plain.cpu.peak < sized.cpu.peak


def test_a_maximum_out_of_range_is_refused_by_line_and_column(tmp_path) -> None:
    path = _max_history(tmp_path, "timestamp,cpu_pct,mem_pct,cpu_max,mem_max", bad_row=3)
    with pytest.raises(HistoryError, match=r"line 5, column 'cpu_max': 130 is outside 0-100"):
        load_history(path)
