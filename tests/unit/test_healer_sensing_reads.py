"""Metric reads of the healer: incremental (a tail per pass, not the whole lookback), and
the one "condition holds now" test the estate watch and the sensing pass share."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from migrationbox.healer.sensing import MetricSource, sustained_seconds

T0 = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)


class FakeMonitoring:
    """An in-memory monitoring API: points per (service, metric); records each window."""

    def __init__(self) -> None:
        self.points: dict[tuple[str, str], dict[datetime, float]] = {}
        self.monitoring_calls = 0
        self.windows: list[tuple[datetime, datetime, int]] = []

    def put(self, service: str, metric: str, at: datetime, value: float) -> None:
        self.points.setdefault((service, metric), {})[at] = value

    def metric_series(self, queries, start, end):
        self.monitoring_calls += 1
        self.windows.append((start, end, len(queries)))
        out = {}
        for q in queries:
            pts = self.points.get((q.dimensions["Service"], q.metric), {})
            out[q.id] = sorted((t, v) for t, v in pts.items() if start <= t < end)
        return out


def publish(api: FakeMonitoring, seconds: range, value=lambda s: 50.0 + s % 7) -> None:
    for s in seconds:
        api.put("web", "cpu", T0 + timedelta(seconds=s), value(s))
        api.put("db", "cpu", T0 + timedelta(seconds=s), 10.0)


KEYS = [("web", "cpu"), ("db", "cpu")]


def read(source: MetricSource, now_s: int, window_s: int) -> dict:
    now = T0 + timedelta(seconds=now_s)
    return source.series(KEYS, now - timedelta(seconds=window_s), now + timedelta(seconds=1))


def test_later_reads_ask_for_the_tail_only_and_return_what_a_full_read_would() -> None:
    api = FakeMonitoring()
    inc = MetricSource(adapter=api, incremental=True, overlap=timedelta(seconds=10))
    full = MetricSource(adapter=FakeMonitoring(), incremental=False)
    full.adapter.points = api.points  # the same data, read whole every time
    publish(api, range(0, 120))
    first = read(inc, 119, 100)
    assert api.windows[-1][0] == T0 + timedelta(seconds=19)  # the whole window once
    for now_s in (121, 123, 140):
        publish(api, range(now_s - 2, now_s + 1))
        got, want = read(inc, now_s, 100), read(full, now_s, 100)
        start, end, queries = api.windows[-1]
        assert queries == 2 and (end - start).total_seconds() < 40  # the tail, one call
        for key in KEYS:
            pd.testing.assert_series_equal(got[key], want[key])
    assert api.monitoring_calls == 4
    assert len(first[("web", "cpu")]) == 101


def test_a_late_point_inside_the_overlap_is_picked_up_and_a_value_revised() -> None:
    api = FakeMonitoring()
    source = MetricSource(adapter=api, overlap=timedelta(seconds=15))
    publish(api, range(0, 60))
    read(source, 59, 50)
    api.put("web", "cpu", T0 + timedelta(seconds=55), 99.0)  # the period filled later
    publish(api, range(60, 62))
    got = read(source, 61, 50)[("web", "cpu")]
    assert got[pd.Timestamp(T0 + timedelta(seconds=55))] == 99.0
    assert got.index.is_monotonic_increasing and not got.index.has_duplicates


def test_a_shorter_window_on_the_same_source_does_not_force_full_rereads() -> None:
    """A woken run's healer (100 s) and its watch check (90 s) share one source."""
    api = FakeMonitoring()
    source = MetricSource(adapter=api, overlap=timedelta(seconds=10))
    publish(api, range(0, 200))
    read(source, 150, 100)
    for now_s in (152, 154, 156):
        read(source, now_s, 90)
        assert (api.windows[-1][1] - api.windows[-1][0]).total_seconds() < 40
        got = read(source, now_s, 100)
        assert (api.windows[-1][1] - api.windows[-1][0]).total_seconds() < 40
        assert len(got[("web", "cpu")]) == 101  # [now - 100 s, now + 1 s)


def test_a_new_key_is_read_whole_and_the_others_keep_reading_their_tail() -> None:
    api = FakeMonitoring()
    source = MetricSource(adapter=api, overlap=timedelta(seconds=10))
    publish(api, range(0, 120))
    api.put("cache", "cpu", T0, 1.0)
    read(source, 119, 100)
    now = T0 + timedelta(seconds=119)
    got = source.series([*KEYS, ("cache", "cpu")], now - timedelta(seconds=130),
                        now + timedelta(seconds=1))
    # the window grew past what was held: everything is read again, whole
    assert api.windows[-1][0] == now - timedelta(seconds=130)
    assert len(got[("cache", "cpu")]) == 1


@pytest.mark.parametrize(("values", "held"), [
    ([95, 95, 95, 95], 4.0),          # held for the whole spell
    ([95, 95, 89, 95, 95], 5.0),      # one dip inside a spell does not end it
    ([95, 95, 95, 89], 0.0),          # the newest point must hold
    ([80, 80, 80, 95], 1.0),          # just started
])
def test_sustained_seconds_is_one_spell_ending_at_the_newest_point(values, held) -> None:
    idx = pd.date_range(T0, periods=len(values), freq="1s", tz="UTC")
    got, since = sustained_seconds(pd.Series(values, index=idx, dtype=float),
                                   lambda v: v > 90)
    assert got == held
    assert (since is None) == (held == 0)
