"""sensing.judge: the healer judges a live series with the incident detector too.

Why: the two-model detector is "high" only when model 1 (z-score) and model 2 (the
trained Prophet forecaster) agree, so without a loaded forecaster a matrix row could only
alert, and a pass that comes late finds the z-score's flags at the onset only. The
incident detector (the one `detect` and the NAB benchmark measure) is high on a clear or
sustained deviation by itself and reports each incident at its newest evidence.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

from migrationbox.healer import sensing

TARGET = sensing.Target(estate="e", server_id="web-01", wave=1, service="web-01:target")


def _series(values: np.ndarray, end: datetime) -> pd.Series:
    index = pd.date_range(end=end, periods=len(values), freq="1s", tz="UTC")
    return pd.Series(values, index=index)


def _quiet(n: int, rng: np.random.Generator) -> np.ndarray:
    return 20 + rng.normal(0, 1.0, n)


def test_a_burn_two_minutes_old_is_a_high_confidence_incident_without_model_2():
    """With no forecaster loaded (a fresh estate, or its run not yet indexed), the
    two-model detector never says "high" (that needs both models), so a matrix row could
    only alert; the incident detector's sustained deviation is high on its own, and its
    newest evidence is well after the onset, inside the pass's judged window."""
    rng = np.random.default_rng(7)
    now = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
    values = np.concatenate([_quiet(480, rng), 97 + rng.normal(0, 0.5, 120)])
    series = _series(values, now)
    config = sensing.SensingConfig(use_forecasters=False)
    judged = sensing.judge(TARGET, "cpu_utilization_pct", series, now=now, config=config,
                           forecasters=None)
    high = [a for a in judged.incidents if a.high_confidence]
    assert not [a for a in judged.anomalies if a.high_confidence]  # two-model: not alone
    assert high and (high[-1].z_score or 0) > 0 and high[-1].value > 90
    onset = series.index[480]
    assert high[-1].timestamp - onset > timedelta(seconds=30)  # evidence after the onset

    alone = sensing.judge(TARGET, "cpu_utilization_pct", series, now=now,
                          config=replace(config, incident=None), forecasters=None)
    assert alone.incidents == []


def test_a_quiet_series_gives_no_high_confidence_incident():
    rng = np.random.default_rng(11)
    now = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
    series = _series(_quiet(600, rng), now)
    judged = sensing.judge(TARGET, "latency_ms", series, now=now,
                           config=sensing.SensingConfig(use_forecasters=False),
                           forecasters=None)
    assert not [a for a in judged.anomalies + judged.incidents if a.high_confidence]


def test_too_short_a_series_is_judged_without_the_incident_detector():
    now = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
    series = _series(np.full(10, 50.0), now - timedelta(seconds=1))
    judged = sensing.judge(TARGET, "cpu_utilization_pct", series, now=now,
                           config=sensing.SensingConfig(use_forecasters=False),
                           forecasters=None)
    assert judged.anomalies == [] and judged.incidents == [] and judged.points == 10
