"""NAB scoring on cases computed by hand, and on a two-file subset of the shipped data."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from migrationbox.healer import nab

STANDARD = nab.PROFILES["standard"]
NAB_DEV = Path(__file__).resolve().parents[2] / "ml" / "data" / "anomaly" / "nab-dev"

# 100 rows: probation is the first 15; one window, rows 40..59 (width 20)
N, WINDOW = 100, [(40, 59)]


def flags(*rows: int, n: int = N) -> np.ndarray:
    out = np.zeros(n, dtype=bool)
    out[list(rows)] = True
    return out


def sig(x: float) -> float:  # NAB's scaled sigmoid, written out for the expected values
    return 2 / (1 + math.exp(5 * x)) - 1


def test_probation_is_fifteen_percent_at_most_750_rows() -> None:
    assert nab.probation_length(100) == 15
    assert nab.probation_length(4032) == 604
    assert nab.probation_length(15902) == 750


def test_scaled_sigmoid_matches_the_published_anchor_points() -> None:
    assert nab.scaled_sigmoid(-1.0) == pytest.approx(0.98661, abs=1e-5)
    assert nab.scaled_sigmoid(-0.5) == pytest.approx(0.84828, abs=1e-5)
    assert nab.scaled_sigmoid(0.0) == 0.0
    assert nab.scaled_sigmoid(1.0) == pytest.approx(-0.98661, abs=1e-5)
    assert nab.scaled_sigmoid(3.0) == -1.0


def test_perfect_detector_scores_100_and_null_0() -> None:
    perfect = nab.score_file(flags(40), WINDOW, STANDARD)
    null = nab.score_file(flags(), WINDOW, STANDARD)
    assert perfect.score == pytest.approx(1.0) and null.score == -1.0
    assert nab.normalise([perfect], STANDARD).normalised == pytest.approx(100.0)
    assert nab.normalise([null], STANDARD).normalised == 0.0
    low_fn = nab.PROFILES["reward_low_FN_rate"]
    assert nab.normalise([nab.score_file(flags(), WINDOW, low_fn)], low_fn).null == -2.0


def test_one_false_positive_before_the_window_costs_the_full_fp_weight() -> None:
    score = nab.score_file(flags(20, 40), WINDOW, STANDARD)
    assert score.score == pytest.approx(1.0 - 0.11)
    assert score.fp_rows == 1 and score.tp_rows == 1
    assert nab.normalise([score], STANDARD).normalised == pytest.approx(100 * 1.89 / 2)
    low_fp = nab.PROFILES["reward_low_FP_rate"]
    assert nab.score_file(flags(20, 40), WINDOW, low_fp).score == pytest.approx(1 - 0.22)


def test_a_false_positive_just_after_the_window_costs_little_far_after_the_full_weight() -> None:
    near = nab.score_file(flags(40, 60), WINDOW, STANDARD)
    assert near.score == pytest.approx(1.0 + 0.11 * sig(1 / 19))
    far = nab.score_file(flags(40, 99), WINDOW, STANDARD)  # 40 rows past: ~2 widths
    assert far.score == pytest.approx(1.0 + 0.11 * sig(40 / 19))
    assert far.score < near.score


def test_late_detection_earns_less_and_only_the_earliest_counts() -> None:
    late = nab.score_file(flags(59), WINDOW, STANDARD)
    assert late.score == pytest.approx(sig(-1 / 20) / sig(-1))  # ~0.126
    middle_and_late = nab.score_file(flags(50, 59), WINDOW, STANDARD)
    assert middle_and_late.score == pytest.approx(sig(-0.5) / sig(-1))
    assert middle_and_late.tp_rows == 2 and middle_and_late.detected_windows == 1
    assert nab.normalise([late], STANDARD).normalised == pytest.approx(
        100 * (sig(-0.05) / sig(-1) + 1) / 2)


def test_probation_rows_and_windows_are_not_scored() -> None:
    # a detection in probation is free; a window wholly in probation is not counted
    score = nab.score_file(flags(5, 40), [(2, 10), (40, 59)], STANDARD)
    assert score.windows == 1 and score.score == pytest.approx(1.0) and score.fp_rows == 0


def test_a_window_wholly_in_probation_still_counts_in_the_perfect_score() -> None:
    # NAB's runner.normalize: perfect = tpWeight * every labelled window, while its null
    # detector scores -fnWeight per *scored* window; so null -1, perfect 2 here
    score = nab.score_file(flags(40), [(2, 10), (40, 59)], STANDARD)
    assert score.labelled_windows == 2
    result = nab.normalise([score], STANDARD)
    assert (result.null, result.perfect) == (-1.0, 2.0)
    assert result.normalised == pytest.approx(100 * 2 / 3)


def test_a_repeated_end_timestamp_closes_the_window_at_its_first_row() -> None:
    # NAB finds the window's right edge with timestamps.index(end): the first such row
    stamps = list(pd.date_range("2026-01-01", periods=N, freq="5min"))
    stamps.insert(60, stamps[59])  # row 59 and row 60 share the end timestamp
    rows = nab.window_rows(stamps, [(str(stamps[40]), str(stamps[59]))])
    assert rows == [(40, 59)]
    # limits that are not a row's timestamp are widened inwards to rows
    plain = pd.date_range("2026-01-01", periods=N, freq="5min")
    inside = nab.window_rows(plain, [("2026-01-01 03:21", "2026-01-01 04:58")])
    assert inside == [(41, 59)]


def test_window_rows_match_by_time_and_corpus_scoring_sums_files() -> None:
    stamps = pd.date_range("2026-01-01", periods=N, freq="5min")
    rows = nab.window_rows(stamps, [(str(stamps[40]), str(stamps[59]))])
    assert rows == [(40, 59)]
    result = nab.score_corpus({"a": flags(40), "b": flags()}, {"a": WINDOW, "b": WINDOW})
    assert result["standard"].normalised == pytest.approx(50.0)
    assert result["standard"].windows == 2 and result["standard"].detected_windows == 1


def test_overlapping_windows_are_refused() -> None:
    with pytest.raises(ValueError, match="overlap"):
        nab.score_file(flags(), [(10, 30), (30, 40)], STANDARD, name="x.csv")


def test_split_alternates_sorted_files_within_each_category() -> None:
    tune, held = nab.split_names(["b/2.csv", "a/2.csv", "a/1.csv", "b/1.csv", "a/3.csv"])
    assert tune == ["a/1.csv", "a/3.csv", "b/1.csv"] and held == ["a/2.csv", "b/2.csv"]


def test_shipped_subset_loads_with_its_windows_and_profiles() -> None:
    files = nab.load_corpus(NAB_DEV, ["realTraffic/speed_7578.csv",
                                      "artificialNoAnomaly/art_flatline.csv"])
    speed = next(f for f in files if f.category == "realTraffic")
    assert len(speed.values) == 1127 and speed.windows[0] == (303, 331)
    assert len(speed.windows) == 4
    assert nab.load_profiles(NAB_DEV / "labels" / "profiles.json") == nab.PROFILES
    perfect = {f.name: flags(*[w[0] for w in f.windows], n=len(f.values)) for f in files}
    windows = {f.name: f.windows for f in files}
    assert nab.score_corpus(perfect, windows)["standard"].normalised == pytest.approx(100.0)


def test_a_false_positive_costs_what_nab_itself_wrote_for_it() -> None:
    # NAB's results for Numenta HTM (numenta/NAB results/numenta/realTraffic/
    # numenta_speed_7578.csv) score its detection at 2015-09-12 00:16:00 (row 363, 32
    # rows after the 29-row window ending at row 331) S(t)_standard = -0.109276714495
    # and S(t)_reward_low_FP_rate = -0.21855342899
    speed = nab.load_corpus(NAB_DEV, ["realTraffic/speed_7578.csv"])[0]
    row = int(speed.timestamps.get_loc(pd.Timestamp("2015-09-12 00:16:00")))
    assert row == 363
    detection = flags(row, n=len(speed.values))
    standard = nab.score_file(detection, speed.windows, STANDARD)
    low_fp = nab.score_file(detection, speed.windows, nab.PROFILES["reward_low_FP_rate"])
    assert standard.fp_cost == pytest.approx(-0.109276714495, abs=1e-11)
    assert low_fp.fp_cost == pytest.approx(-0.21855342899, abs=1e-10)
