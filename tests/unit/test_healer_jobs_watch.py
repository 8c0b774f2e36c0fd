"""A woken heal run and the estate watch judge alike: the watch fires on the pass's own
"condition holds now" test, and a run hands back to the watcher only when the watch's
check agrees the estate is quiet. Forecasters come from the forecaster index, once per
process and run id."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from migrationbox.healer import jobs
from migrationbox.healer.runtime import PassReport
from migrationbox.healer.sensing import MetricSource, Target
from migrationbox.healer.watch import EstateWatch, Signal

T0 = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)


class Source(MetricSource):
    """Fixed series per (service, metric), whatever the window."""

    def __init__(self, data: dict[tuple[str, str], pd.Series]) -> None:
        self.data = data
        self.calls = 0

    def series(self, keys, start, end, period_s=1):
        return {k: self.data.get(k, pd.Series(dtype=float)) for k in keys}


def cpu(values: list[float]) -> pd.Series:
    return pd.Series(values, index=pd.date_range(T0, periods=len(values), freq="1s",
                                                 tz="UTC"), dtype=float)


WEB = Target(estate="e", server_id="web-01", wave=1, service="web")


@pytest.mark.parametrize(("values", "fires"), [
    ([50] * 20 + [95] * 10, True),
    ([50] * 20 + [95, 95, 89, 95, 95], True),   # a dip inside the spell: still a spell
    ([50] * 20 + [95] * 10 + [89], False),      # the newest point does not hold
])
def test_the_watch_fires_exactly_when_the_pass_sees_a_spell(values, fires) -> None:
    from migrationbox.healer.sensing import sustained_seconds

    watch = EstateWatch(source=Source({("web", "cpu_utilization_pct"): cpu(values)}))
    signals = [s for s in watch.check_targets([WEB], []) if s.kind == "condition"]
    assert bool(signals) is fires
    held, _ = sustained_seconds(cpu(values), watch.matrix.row("high_cpu").condition.holds)
    assert (held > 0) is fires  # what the pass watches or acts on


class FakeHealer:
    def __init__(self) -> None:
        self.passes = 0
        self.source = Source({})

        class Probes:
            def prune(self, before: datetime) -> int:
                return 0

        self.probes = Probes()

    def run_pass(self, estate: str) -> PassReport:
        self.passes += 1
        return PassReport(estate=estate, started_at=T0.isoformat(), targets=1,
                          health={"web-01": "healthy"},
                          timings_s={"total": 0.01})  # quiet: nothing seen


def run_window(monkeypatch: pytest.MonkeyPatch, watch_answers: list[list[Signal]],
               **conf: Any) -> tuple[dict[str, Any], FakeHealer, list[str]]:
    healer = FakeHealer()
    answers = iter(watch_answers)
    monkeypatch.setattr(jobs, "_healer", lambda conf: healer)
    monkeypatch.setattr(jobs, "still_signalled",
                        lambda healer, estates, watch=None: next(answers, []))
    said: list[str] = []
    summary = jobs.sense_window({"estates": ["e"], "interval_s": 0.5, "window_s": 60,
                                 "stop_when_quiet": True, "warm_forecasters": False,
                                 **conf}, say=said.append)
    return summary, healer, said


def test_a_woken_run_keeps_sensing_while_the_watch_still_sees_the_condition(
        monkeypatch: pytest.MonkeyPatch) -> None:
    burn = [Signal("e", "web-01", "condition", "cpu_utilization_pct > 90 (95): high_cpu")]
    summary, healer, said = run_window(monkeypatch, [burn, burn, []])
    assert summary["passes"] == healer.passes == 3
    assert sum("the watch still sees" in s for s in said) == 2
    assert "back to the watcher" in said[-1]


def test_a_quiet_pass_the_watch_agrees_with_hands_back_at_once(
        monkeypatch: pytest.MonkeyPatch) -> None:
    summary, _, said = run_window(monkeypatch, [])
    assert summary["passes"] == 1 and "back to the watcher" in said[-1]
    summary, _, _ = run_window(monkeypatch, [[Signal("e", "w", "health", "down")]],
                               confirm_quiet_with_watch=False)
    assert summary["passes"] == 1  # the old behaviour, when asked for


def test_the_window_still_bounds_a_run_the_watch_keeps_awake(
        monkeypatch: pytest.MonkeyPatch) -> None:
    burn = [Signal("e", "web-01", "condition", "cpu > 90")]
    summary, _, _ = run_window(monkeypatch, [burn] * 100, window_s=1.2)
    assert 2 <= summary["passes"] <= 3


def test_only_signals_the_pass_acts_on_keep_a_run_awake() -> None:
    class Watch:
        def check(self, estates: list[str]) -> Any:
            from migrationbox.healer.watch import WatchResult

            return WatchResult([Signal("e", "a", "anomaly", "latency z +4"),
                                Signal("e", "b", "condition", "cpu > 90")], 2, [])

    held = jobs.still_signalled(FakeHealer(), ["e"], Watch())
    assert [s.server_id for s in held] == ["b"]


def test_forecasters_load_from_the_index_once_per_run_id(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from migrationbox.healer import tracking
    from migrationbox.healer.detect import Forecaster
    from migrationbox.healer.sensing import lab_detector_config

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    folder = tracking.index_dir(uri)

    def no_mlflow(*a: Any, **k: Any) -> Any:
        raise AssertionError("the sensing path asked MLflow")

    monkeypatch.setattr(tracking, "rebuild_index", no_mlflow)
    series = cpu([50.0 + (i % 5) for i in range(60)])
    fc = Forecaster.fit(series, lab_detector_config().forecast)
    tracking._record(folder, "e/web-01/cpu", "run1", fc.to_json(), "2026-12-07T09:00:00")
    loads: list[str] = []
    real = Forecaster.from_json
    monkeypatch.setattr(Forecaster, "from_json",
                        classmethod(lambda cls, text: loads.append("x") or real(text)))
    first = tracking.load_latest_forecaster("e/web-01/cpu", tracking_uri=uri)
    again = tracking.load_latest_forecaster("e/web-01/cpu", tracking_uri=uri)
    assert first is again and len(loads) == 1
    assert tracking.load_latest_forecaster("e/db-01/cpu", tracking_uri=uri) is None
    # an older run logged later does not replace the newer one; a newer run does
    tracking._record(folder, "e/web-01/cpu", "run0", fc.to_json(), "2026-12-06T09:00:00")
    assert tracking.load_latest_forecaster("e/web-01/cpu", tracking_uri=uri) is first
    tracking._record(folder, "e/web-01/cpu", "run2", fc.to_json(), "2026-12-07T10:00:00")
    newer = tracking.load_latest_forecaster("e/web-01/cpu", tracking_uri=uri)
    assert newer is not first and len(loads) == 2
    assert newer.trained_until == fc.trained_until


def test_a_missing_index_is_rebuilt_from_one_mlflow_search(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from migrationbox.healer import tracking

    uri = f"sqlite:///{tmp_path / 'other' / 'mlflow.db'}"
    calls: list[str] = []

    def rebuild(tracking_uri: str | None = None) -> dict[str, Any]:
        calls.append(str(tracking_uri))
        doc = {"entries": {}, "rebuilt_at": datetime.now(UTC).timestamp()}
        tracking._write_index(tracking.index_dir(str(tracking_uri)), doc)
        return doc

    monkeypatch.setattr(tracking, "rebuild_index", rebuild)
    assert tracking.load_latest_forecaster("k", tracking_uri=uri) is None
    assert tracking.load_latest_forecaster("k", tracking_uri=uri) is None
    assert calls == [uri]
    stale = {"entries": {}, "rebuilt_at": (datetime.now(UTC) - timedelta(days=2)).timestamp()}
    tracking._write_index(tracking.index_dir(uri), stale)
    tracking.load_latest_forecaster("k", tracking_uri=uri)
    assert calls == [uri, uri]


def test_a_retraining_process_yields_the_cpu(tmp_path: Path) -> None:
    import subprocess
    import sys

    code = ("from migrationbox.healer.jobs import lower_cpu_priority as f; import os; "
            "before = os.nice(0); print(before, f(), f())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    before, first, again = map(int, out)
    assert first == again == max(before, 10)
