"""Detector: causality, the two models, categories, confidence, CSV input and the CLI."""

from __future__ import annotations

import argparse
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from migrationbox.cli import detect as detect_cli
from migrationbox.healer.detect import (
    Category,
    Confidence,
    Detector,
    DetectorConfig,
    ForecastConfig,
    Forecaster,
    IncidentConfig,
    IncidentDetector,
    MetricCsvError,
    SeriesError,
    ZScoreConfig,
    as_series,
    live_incident_config,
    read_metric_csv,
    zscore_scores,
)

DAY = 288  # five-minute samples per day
SPIKE, DROP, RAMP_END = 2 * DAY + 100, 2 * DAY + 160, 2 * DAY + 230


def daily_series(days: int = 3, seed: int = 7) -> pd.Series:
    rng = np.random.default_rng(seed)
    n = days * DAY
    index = pd.date_range("2026-05-01", periods=n, freq="5min", tz="UTC")
    values = 50 + 10 * np.sin(2 * np.pi * np.arange(n) / DAY) + rng.normal(0, 1, n)
    return pd.Series(values, index=index)


def injected() -> pd.Series:
    s = daily_series()
    s.iloc[SPIKE] += 30
    s.iloc[DROP] -= 30
    s.iloc[RAMP_END - 11: RAMP_END + 1] += np.linspace(0, 40, 12)
    return s


@pytest.fixture(scope="module")
def result():
    """One full run (Prophet fitted for days 2 and 3) shared by several tests."""
    return Detector().detect(injected())


def by_position(result) -> dict[int, object]:
    return {a.position: a for a in result.anomalies}


def test_spike_drop_and_trend_are_high_confidence_with_their_categories(result) -> None:
    found = by_position(result)
    assert found[SPIKE].category is Category.spike
    assert found[SPIKE].confidence is Confidence.high
    assert found[DROP].category is Category.drop
    assert found[DROP].confidence is Confidence.high
    assert found[RAMP_END].category is Category.trend
    assert found[RAMP_END].confidence is Confidence.high
    assert found[SPIKE].z_score > 3 and found[SPIKE].forecast_score > 1
    assert found[SPIKE].forecast_lower < found[SPIKE].forecast < found[SPIKE].forecast_upper


def test_no_high_confidence_anomaly_on_clean_days(result) -> None:
    high = [a.position for a in result.high()]
    assert set(high) <= {SPIKE, DROP, *range(RAMP_END - 11, RAMP_END + 1)}
    assert result.forecast_fits == 2  # day 1 has no history: model 2 abstains there
    assert "retrained every 1 d" in result.cadence


def test_decisions_before_t_do_not_change_when_later_data_arrives(result) -> None:
    """Causality: replaying only the data up to t gives the same judgement for every
    point up to t, for both models."""
    cut = SPIKE + 20
    partial = Detector().detect(injected().iloc[:cut])
    full = result.frame.iloc[:cut]
    pd.testing.assert_series_equal(partial.frame["z"], full["z"])
    np.testing.assert_allclose(partial.frame["fscore"].to_numpy(dtype=float),
                               full["fscore"].to_numpy(dtype=float), equal_nan=True)
    assert [a.position for a in partial.anomalies] == [
        a.position for a in result.anomalies if a.position < cut]


def test_zscore_baseline_excludes_the_current_point() -> None:
    s = pd.Series([10.0] * 40 + [20.0], index=pd.date_range("2026-01-01", periods=41,
                                                              freq="min", tz="UTC"))
    scores = zscore_scores(s, ZScoreConfig(window=30, min_history=10))
    last = scores.iloc[-1]
    assert last["mean"] == 10.0  # the 20 is not in its own baseline
    assert last["model1"]
    assert not scores["model1"].iloc[:-1].any()
    assert scores["z"].iloc[:10].isna().all()  # min_history not reached


def test_only_model_one_means_low_confidence_when_model_two_abstains() -> None:
    s = daily_series(days=1)
    s.iloc[200] += 40
    result = Detector().detect(s)  # one day: no earlier history for model 2
    (anomaly,) = [a for a in result.anomalies if a.position == 200]
    assert anomaly.model1 and anomaly.model2 is None
    assert anomaly.confidence is Confidence.low
    assert result.forecast_fits == 0 and result.high() == []


def daily_peak_series(real_spike_at: int | None = None) -> pd.Series:
    """Flat load with the same one-hour-wide peak every day at 12:30."""
    rng = np.random.default_rng(3)
    n = 3 * DAY
    index = pd.date_range("2026-05-01", periods=n, freq="5min", tz="UTC")
    minute_of_day = np.arange(n) % DAY
    values = 20 + rng.normal(0, 1, n) + 30 * np.exp(-0.5 * ((minute_of_day - 150) / 12) ** 2)
    if real_spike_at is not None:
        values[real_spike_at] += 30
    return pd.Series(values, index=index)


def test_model_two_explains_a_daily_peak_that_model_one_flags() -> None:
    """A recurring daily peak looks like a spike to the z-score window, but the forecast
    expects it: the flags are low confidence (alert only), unlike a real spike."""
    peak = range(2 * DAY + 110, 2 * DAY + 190)
    result = Detector().detect(daily_peak_series())
    flagged = [a for a in result.anomalies if a.position in peak and a.model1]
    assert len(flagged) >= 10  # model 1 alone would raise a storm of alerts
    high = [a for a in flagged if a.high_confidence]
    # model 2 confirms only by chance, as often as a 95 % band is left (here 0 of ~14)
    assert len(high) <= 0.1 * len(flagged)

    spike = 2 * DAY + 40  # a real spike on the flat part of the same day
    real = Detector().detect(daily_peak_series(real_spike_at=spike))
    assert by_position(real)[spike].confidence is Confidence.high


def test_lazy_forecast_gives_the_same_high_confidence_anomalies(result) -> None:
    lazy = Detector(DetectorConfig(lazy_forecast=True)).detect(injected())
    assert [a.position for a in lazy.high()] == [a.position for a in result.high()]


def test_pattern_anomaly_is_model_two_only() -> None:
    s = daily_series()
    # day 3, 06:00-08:00 (the daily peak) gets night-time values from 12 h earlier
    start = 2 * DAY + 72
    s.iloc[start:start + 24] = s.iloc[start - 144:start - 120].to_numpy()
    result = Detector(DetectorConfig(zscore=ZScoreConfig(window=DAY))).detect(s)
    inside = [a for a in result.anomalies if start <= a.position < start + 24]
    assert any(a.category is Category.pattern and not a.model1 for a in inside)
    assert all(a.confidence is Confidence.low for a in inside if not a.model1)


def test_forecaster_round_trips_through_json() -> None:
    s = daily_series(days=2)
    model = Forecaster.fit(s, ForecastConfig())
    again = Forecaster.from_json(model.to_json())
    when = pd.date_range(s.index[-1] + timedelta(minutes=5), periods=5, freq="5min")
    pd.testing.assert_frame_equal(model.predict(when), again.predict(when))
    assert again.trained_until == s.index[-1]


def test_pretrained_forecaster_is_used_after_its_training_end() -> None:
    s = injected()
    model = Forecaster.fit(s.iloc[:2 * DAY], ForecastConfig())
    result = Detector().detect(s, forecaster=model)
    assert result.forecast_fits == 1  # day 2 still retrained; day 3 used the given model
    assert by_position(result)[SPIKE].confidence is Confidence.high


# --------------------------------------------------------------------------- input


def test_as_series_errors_name_the_row() -> None:
    frame = pd.DataFrame({"timestamp": ["2026-01-01T00:00Z", "2026-01-01T00:05Z",
                                        "2026-01-01T00:03Z"], "value": [1, 2, 3]})
    with pytest.raises(SeriesError, match=r"row 2: timestamp .* is not after"):
        as_series(frame)
    with pytest.raises(SeriesError, match="missing column"):
        as_series(frame.rename(columns={"value": "v"}))
    with pytest.raises(SeriesError, match=r"row 1: value 'x' is not a number"):
        as_series(pd.DataFrame({"timestamp": frame["timestamp"][:2], "value": [1, "x"]}))


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "metric.csv"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(("text", "message"), [
    ("time,value\n2026-01-01T00:00Z,1\n", r"line 1: missing column\(s\) timestamp"),
    ("timestamp,value\n2026-01-01T00:00Z,1\n2026-01-01T00:05Z,abc\n",
     r"line 3: value 'abc' is not a number"),
    ("timestamp,value\n2026-01-01T00:00Z,1\n2026-01-01T00:05Z,\n", r"line 3: value is empty"),
    ("timestamp,value\n2026-01-01T00:10Z,1\n2026-01-01T00:05Z,2\n",
     r"line 3: timestamp '2026-01-01T00:05Z' is not after the previous row's "
     r"'2026-01-01T00:10Z' \(line 2\)"),
    ("timestamp,value\n2026-01-01T00:00Z,1\n2026-01-01T00:00Z,2\n", r"line 3: .* not after"),
    ("timestamp,value\nyesterday,1\n", r"line 2: timestamp 'yesterday' is not ISO 8601"),
    ("timestamp,value\n", r"no data rows"),
    ("", r"empty file"),
    ("timestamp,value\n2026-01-01T00:00Z,nan\n", r"line 2: .* not a finite number"),
])
def test_bad_csv_is_a_clear_error(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(MetricCsvError, match=message):
        read_metric_csv(write(tmp_path, text))


def test_csv_accepts_epoch_seconds_and_keeps_raw_timestamps(tmp_path: Path) -> None:
    path = write(tmp_path, "value,timestamp,host\n1.5,1700000000,a\n2.5,1700000300,a\n")
    metric = read_metric_csv(path)
    assert metric.raw_timestamps == ["1700000000", "1700000300"]
    assert metric.series.index[1] == pd.Timestamp("2023-11-14T22:18:20Z")
    assert metric.series.tolist() == [1.5, 2.5]


# --------------------------------------------------------------------------- CLI


def run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    detect_cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["detect", *argv])
    return args.handler(args)


@pytest.fixture(scope="module")
def csv_file(tmp_path_factory) -> tuple[Path, list[str]]:
    s = injected()
    stamps = [t.strftime("%Y-%m-%dT%H:%M:%SZ") for t in s.index]
    path = tmp_path_factory.mktemp("cli") / "cpu.csv"
    pd.DataFrame({"timestamp": stamps, "value": s.to_numpy()}).to_csv(path, index=False)
    return path, stamps


def test_cli_rows_prints_high_confidence_timestamps_one_per_line(csv_file, capsys) -> None:
    path, stamps = csv_file
    assert run_cli(["--csv", str(path), "--rows"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert stamps[SPIKE] in lines and stamps[DROP] in lines and stamps[RAMP_END] in lines
    assert all(line in stamps for line in lines)


def test_cli_all_adds_low_confidence_lines_with_scores(csv_file, capsys) -> None:
    path, stamps = csv_file
    assert run_cli(["--csv", str(path), "--all"]) == 0
    rows = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    assert {r[1] for r in rows} == {"high", "low"}
    spike = next(r for r in rows if r[0] == stamps[SPIKE])
    assert spike[1:3] == ["high", "spike"] and spike[4].startswith("z=")
    assert spike[5].startswith("forecast=")


def test_cli_bad_input_exits_2_with_the_line(tmp_path: Path, capsys) -> None:
    path = write(tmp_path, "timestamp,value\n2026-01-01T00:00Z,1\n2026-01-01T00:05Z,x\n")
    assert run_cli(["--csv", str(path), "--strict"]) == 2
    err = capsys.readouterr().err
    assert "line 3: value 'x' is not a number" in err
    assert run_cli(["--csv", str(path)]) == 0  # lenient: warned, row skipped
    assert "line 3: value 'x' is not a number; row skipped" in capsys.readouterr().err
    assert run_cli(["--csv", str(path), "--window", "1"]) == 2
    assert "window" in capsys.readouterr().err
    assert run_cli(["--csv", str(tmp_path / "missing.csv")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_forecaster_is_tracked_in_mlflow_per_metric(tmp_path: Path) -> None:
    from migrationbox.healer.tracking import load_latest_forecaster, log_forecaster

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert load_latest_forecaster("web-01/cpu", tracking_uri=uri) is None
    s = daily_series(days=2)
    old = Forecaster.fit(s.iloc[:DAY + 10], ForecastConfig())
    new = Forecaster.fit(s, ForecastConfig())
    log_forecaster("web-01/cpu", old, tracking_uri=uri)
    log_forecaster("web-01/cpu", new, tracking_uri=uri, metrics={"holdout_mae": 0.8})
    log_forecaster("db-01/cpu", old, tracking_uri=uri)
    loaded = load_latest_forecaster("web-01/cpu", tracking_uri=uri)
    assert loaded is not None and loaded.trained_until == new.trained_until
    when = pd.date_range(s.index[-1] + timedelta(minutes=5), periods=3, freq="5min")
    pd.testing.assert_frame_equal(loaded.predict(when), new.predict(when))


def test_missing_samples_are_skipped_not_flagged() -> None:
    s = injected()
    s.iloc[SPIKE - 40: SPIKE - 20] = np.nan  # the metric source stopped answering
    result = Detector().detect(s)
    assert not any(SPIKE - 40 <= a.position < SPIKE - 20 for a in result.anomalies)
    assert by_position(result)[SPIKE].confidence is Confidence.high


# --------------------------------------------------------------------------- incidents


def flat_noise(n: int = 600, seed: int = 3) -> pd.Series:
    rng = np.random.default_rng(seed)
    index = pd.date_range("2026-05-01", periods=n, freq="5min", tz="UTC")
    return pd.Series(50 + rng.normal(0, 1, n), index=index)


def test_a_long_anomaly_is_one_incident_not_one_alert_per_row() -> None:
    s = flat_noise(400)  # less than a day after the anomaly: see the seasonal test below
    s.iloc[300:360] += 25  # an hour-long outage: 60 rows far outside the baseline
    result = IncidentDetector(IncidentConfig(cooldown=1000)).detect(s)
    assert int(result.frame["level"].iloc[300:360].ge(4).sum()) == 60  # every row is odd
    assert [i.start_position for i in result.incidents] == [300]  # ... one alert
    assert int(result.alerts.sum()) == 1
    incident = result.incidents[0]
    # its end: the last point any channel is beyond its threshold (a k-point mean lags the
    # level by up to k points; the longest mean here is cut short by the series' end)
    lag = max(IncidentConfig().mean_points, *IncidentConfig().long_means)
    assert incident.direction == "up" and 60 <= incident.points <= 60 + lag
    assert 359 <= incident.end_position <= min(359 + lag, len(s) - 1)
    assert incident.end is None or incident.end == s.index[incident.end_position]
    # with only the short mean, the incident ends within its 12 points of the level
    short = IncidentDetector(IncidentConfig(cooldown=1000, long_means=())).detect(s)
    only = short.incidents[0]
    assert 60 <= only.points <= 72 and 359 <= only.end_position <= 371
    assert only.end == s.index[only.end_position]


def test_an_incident_clears_after_quiet_points_and_a_cooldown_reopens_a_lasting_one() -> None:
    s = flat_noise(500)  # less than a day after the first burst
    s.iloc[300:310] += 25
    s.iloc[400:410] += 40  # a second, larger burst after the first has cleared
    # only the 12-point mean (the longer means keep a burst in view for up to k points)
    cleared = IncidentDetector(IncidentConfig(cooldown=1000, clear_points=20,
                                              long_means=())).detect(s)
    assert [i.start_position for i in cleared.incidents] == [300, 400]
    first = cleared.incidents[0]
    # closed once every channel (the 12-point mean lags the level) stayed below for 20
    assert first.end is not None and 309 <= first.end_position < 322
    assert cleared.frame["incident"].iloc[first.end_position + 21] == -1
    # with the 48-point mean too, the first incident lasts until that mean has let go
    longer = IncidentDetector(IncidentConfig(cooldown=1000, clear_points=20,
                                             long_means=(48,))).detect(s)
    assert [i.start_position for i in longer.incidents] == [300, 400]
    assert 322 <= longer.incidents[0].end_position < 309 + 48 + 1
    # without clearing, only the cooldown ends an incident: the second burst falls inside
    # the first incident's cooldown and opens nothing
    held = IncidentDetector(IncidentConfig(cooldown=200, clear_points=1000)).detect(s)
    assert [i.start_position for i in held.incidents] == [300]
    # a shift that lasts: the cooldown closes the first alert and the shift alone does not
    # alert again; a rise far beyond anything seen since is news and opens a second one
    shift = flat_noise(500)
    shift.iloc[300:] += 25
    lasting = IncidentDetector(IncidentConfig(cooldown=100)).detect(shift)
    assert [i.start_position for i in lasting.incidents] == [300]
    assert lasting.incidents[0].end_position == 399  # closed by the cooldown
    shift.iloc[450:] += 1000
    again = IncidentDetector(IncidentConfig(cooldown=100)).detect(shift)
    assert [i.start_position for i in again.incidents] == [300, 450]


def test_incident_scores_are_causal() -> None:
    s = flat_noise()
    s.iloc[300:340] += 25
    full = IncidentDetector().detect(s).frame
    prefix = IncidentDetector().detect(s.iloc[:320]).frame
    pd.testing.assert_frame_equal(full.iloc[:320], prefix)


def test_repeated_out_of_order_and_missing_timestamps_are_put_up_with() -> None:
    s = flat_noise(400)
    frame = pd.DataFrame({"timestamp": s.index.astype(str), "value": s.to_numpy()})
    frame.loc[300:, "value"] += 30
    frame.loc[100, "timestamp"] = frame.loc[99, "timestamp"]  # repeated (DST, restart)
    frame.loc[[150, 151]] = frame.loc[[151, 150]].to_numpy()  # out of order
    frame.loc[200, "timestamp"] = None  # missing
    result = IncidentDetector().detect(frame)
    kinds = {(i.row, i.kind) for i in result.issues}
    assert kinds == {(100, "repeated"), (151, "out_of_order"), (200, "missing_timestamp")}
    assert len(result.frame) == 399 and result.frame.index.is_monotonic_increasing
    assert [result.positions[i.start_position] for i in result.incidents] == [300]
    with pytest.raises(SeriesError, match=r"row 100: timestamp .* repeats row 99"):
        IncidentDetector().detect(frame, strict=True)


def test_irregular_sampling_and_gaps_still_give_one_incident() -> None:
    rng = np.random.default_rng(5)
    steps = rng.integers(30, 900, 500)  # 30 s .. 15 min between samples
    steps[250] = 6 * 3600  # and a six-hour gap
    index = pd.DatetimeIndex(pd.Timestamp("2026-05-01", tz="UTC")
                             + pd.to_timedelta(np.cumsum(steps), unit="s"))
    s = pd.Series(50 + rng.normal(0, 1, 500), index=index)
    s.iloc[400:430] -= 20
    result = IncidentDetector().detect(s)
    assert [(i.start_position, i.direction) for i in result.incidents] == [(400, "down")]


def test_the_seasonal_channel_sees_a_wrong_time_of_day_that_the_level_does_not() -> None:
    rng = np.random.default_rng(9)
    n = 4 * DAY
    index = pd.date_range("2026-05-01", periods=n, freq="5min", tz="UTC")
    daily = 50 + 20 * np.sin(2 * np.pi * np.arange(n) / DAY)
    s = pd.Series(daily + rng.normal(0, 1, n), index=index)
    at = 3 * DAY  # the morning rise towards the daily peak does not come: flat at 50
    s.iloc[at:at + DAY // 4] = 50 + rng.normal(0, 1, DAY // 4)
    result = IncidentDetector().detect(s)
    assert float(result.frame["level"].iloc[at:at + DAY // 4].max()) < 4  # ordinary values
    opened = [(i.start_position, i.channel) for i in result.incidents]
    assert len(opened) == 1 and opened[0][1] == "seasonal"
    assert at < opened[0][0] < at + DAY // 4
    assert result.incidents[0].direction == "down"


def test_the_two_model_result_gives_the_incidents_of_the_same_series() -> None:
    s = flat_noise(400)
    s.iloc[300:330] += 25
    rows = Detector(DetectorConfig(lazy_forecast=True)).detect(s)
    assert sum(a.model1 for a in rows.anomalies) >= 30  # the z-score flags every row ...
    events = rows.incidents()
    assert [i.start_position for i in events.incidents] == [300]  # ... one incident
    pd.testing.assert_frame_equal(events.frame, IncidentDetector().detect(s).frame,
                                  check_freq=False)


# --------------------------------------------------------------------------- the healer's entry


def live_lookback(seed: int = 4, n: int = 600) -> pd.Series:
    """Ten minutes of a one-second lab metric around 40 %, as sensing reads it."""
    rng = np.random.default_rng(seed)
    index = pd.date_range("2026-05-01 12:00", periods=n, freq="1s", tz="UTC")
    return pd.Series(40 + rng.normal(0, 1, n), index=index)


def test_judge_live_gives_one_high_confidence_anomaly_per_ongoing_incident() -> None:
    detector = IncidentDetector(live_incident_config())
    s = live_lookback()
    s.iloc[540:] += 30  # the last minute: a saturated CPU, still going on
    anomalies = detector.judge_live(s)
    ongoing = [a for a in anomalies if a.position >= 540]
    assert len(ongoing) == 1  # one incident, not 60 rows
    a = ongoing[0]
    # reported at its newest evidence (still recent for the healer), against the
    # baseline from before it began
    assert a.timestamp == s.index[-1] and a.position == len(s) - 1
    assert a.category is Category.spike and a.confidence is Confidence.high
    assert a.baseline_mean == pytest.approx(40, abs=0.5) and a.z_score > 10
    assert a.model1 and a.model2 is None and a.forecast is None
    assert a.to_dict()["category"] == "spike"  # the healer's record, serialisable
    s.iloc[540:] -= 60
    assert [(x.category, x.confidence) for x in detector.judge_live(s) if x.position >= 540] \
        == [(Category.drop, Confidence.high)]


def test_judge_live_grades_confidence_and_sees_a_leak_as_a_trend() -> None:
    detector = IncidentDetector(live_incident_config())
    quiet = [a for seed in range(10) for a in detector.judge_live(live_lookback(seed))]
    assert all(a.confidence is Confidence.low for a in quiet)  # noise never acts
    blip = live_lookback()
    blip.iloc[598] += 6  # one sample a little past the threshold: alert only
    last = detector.judge_live(blip)[-1]
    assert last.position == 598 and last.confidence is Confidence.low
    leak = live_lookback()
    leak.iloc[540:] += np.linspace(0, 60, 60)  # a steady climb over the last minute
    last = detector.judge_live(leak)[-1]
    assert last.category is Category.trend and last.confidence is Confidence.high
    assert last.position == len(leak) - 1


def test_judge_live_puts_up_with_gaps_repeats_and_a_still_metric() -> None:
    detector = IncidentDetector(live_incident_config())
    s = live_lookback()
    s.iloc[100:120] = np.nan  # the metric source stopped answering
    messy = pd.concat([s.iloc[:300], s.iloc[299:300], s.iloc[300:]])  # a repeated sample
    messy.iloc[-30:] += 30
    found = [a for a in detector.judge_live(messy) if a.confidence is Confidence.high]
    assert len(found) == 1 and found[0].timestamp == messy.index[-1]
    still = pd.Series(12.0, index=live_lookback().index)
    still.iloc[300] = 12.05  # a wobble of a perfectly still metric is not an incident
    assert detector.judge_live(still) == []
    with pytest.raises(SeriesError):
        detector.judge_live(pd.Series([1.0, 2.0]))  # not indexed by time
    with pytest.raises(ValueError, match="high_points"):
        detector.judge_live(s, high_points=0)
