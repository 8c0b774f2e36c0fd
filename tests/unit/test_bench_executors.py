"""The figures of benchmarks/bench_executors.py, computed from constructed records.

Only the pure computations (percentiles, tasks per minute, readiness latencies, growth,
memory summaries); the benchmark itself needs a whole platform and is not run here.
"""

from __future__ import annotations

import importlib.util
import statistics
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_executors.py"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_executors", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # pydantic resolves the models' annotations here
    try:
        spec.loader.exec_module(module)
    finally:
        sys.modules.pop(spec.name, None)
    return module


def _ti(bench: ModuleType, run: str, task: str, state: str | None, start: float | None,
        end: float | None, upstream: tuple[str, ...] = (), queued: float | None = None):
    return bench.TaskRecord(run_id=run, task_id=task, state=state, start=start, end=end,
                            queued=queued, upstream=upstream)


def _chain(bench: ModuleType, run: str, t0: float) -> list:
    """a -> b -> c, and d (skipped, never ran) after c; b started 2 s after a ended,
    c 5 s after b ended."""
    return [
        _ti(bench, run, "a", "success", t0 + 1, t0 + 4, queued=t0 + 0.5),
        _ti(bench, run, "b", "success", t0 + 6, t0 + 9, ("a",), queued=t0 + 5),
        _ti(bench, run, "c", "failed", t0 + 14, t0 + 15, ("b",), queued=t0 + 10),
        _ti(bench, run, "d", "skipped", None, t0 + 15, ("c",)),
    ]


def test_percentile_interpolates_between_ranks_like_statistics(bench) -> None:
    values = [7.0, 1.0, 3.0, 10.0, 2.0, 4.0]
    assert bench.percentile(values, 0) == 1.0
    assert bench.percentile(values, 100) == 10.0
    assert bench.percentile(values, 50) == pytest.approx(3.5)
    expected = statistics.quantiles(sorted(values), n=100, method="inclusive")
    assert bench.percentile(values, 95) == pytest.approx(expected[94])
    assert bench.percentile(values, 25) == pytest.approx(expected[24])
    assert bench.percentile([5.0], 95) == 5.0
    assert bench.percentile([], 50) is None
    with pytest.raises(ValueError):
        bench.percentile(values, 101)


def test_tasks_per_minute_counts_only_tasks_that_ran(bench) -> None:
    tasks = _chain(bench, "r1", 1000.0) + _chain(bench, "r2", 1010.0)
    # a, b, c of each run ran (c failed); d was skipped: 6 completed in 30 s
    assert len(bench.completed_tasks(tasks)) == 6
    assert bench.tasks_per_minute(tasks, 1000.0, 1030.0) == pytest.approx(12.0)
    with pytest.raises(ValueError):
        bench.tasks_per_minute(tasks, 1030.0, 1030.0)


def test_ready_to_start_is_the_gap_after_the_latest_upstream_end(bench) -> None:
    tasks = [
        *_chain(bench, "r1", 0.0),
        # e waits for b (ends 9) and a (ends 4): ready at 9, started at 12
        _ti(bench, "r1", "e", "success", 12.0, 13.0, ("a", "b")),
        # f's upstream never ended: unknown readiness, left out
        _ti(bench, "r1", "f", "success", 20.0, 21.0, ("ghost",)),
        # same task ids in another run do not mix with r1's
        _ti(bench, "r2", "b", "success", 100.0, 101.0, ("a",)),
        # skipped: Airflow gives it a start_date, but it never waited for a slot
        _ti(bench, "r1", "g", "skipped", 30.0, 30.0, ("b",)),
    ]
    assert sorted(bench.ready_to_start(tasks)) == [2.0, 3.0, 5.0]
    assert sorted(bench.queued_to_start(tasks)) == [0.5, 1.0, 4.0]


def test_batch_figures_from_records(bench) -> None:
    tasks = _chain(bench, "r1", 1000.0) + _chain(bench, "r2", 1020.0)
    runs = [bench.RunRecord(dag_id="d1", run_id="r1", state="failed", end=1016.0),
            bench.RunRecord(dag_id="d2", run_id="r2", state="success", end=1040.0)]
    gates = [bench.GateRecord(dag_id="d1", run_id="r1", task_id="g", created=1002.0,
                              answered=1008.0)]
    fig = bench.batch_figures(
        waves=2, tasks=tasks, runs=runs, first_trigger=1000.0, gates=gates,
        db_before={"metadata": 1000, "store": 10}, db_after={"metadata": 5000, "store": 30},
        rss={"scheduler": [100 * 2**20, 300 * 2**20], "never": []},
        cpu_s={"scheduler": 12.5})
    assert fig["wall_s"] == 40.0
    assert fig["tasks_completed"] == 6 and fig["tasks_failed"] == 2
    assert fig["tasks_skipped"] == 2
    assert fig["tasks_per_min"] == pytest.approx(9.0)
    assert fig["runs"] == {"failed": 1, "success": 1} and fig["runs_succeeded"] == 1
    assert fig["ready_to_start_p50_s"] == pytest.approx(3.5)  # of 2, 5, 2, 5
    assert fig["ready_to_start_n"] == 4
    assert fig["gate_wait_p50_s"] == 6.0
    assert fig["db_growth_bytes"] == {"metadata": 4000, "store": 20}
    assert fig["memory"] == {"scheduler": {"peak_mb": 300.0, "mean_mb": 200.0}}
    assert fig["cpu_s"] == {"scheduler": 12.5}
    with pytest.raises(ValueError):
        bench.batch_figures(waves=1, tasks=tasks, runs=[runs[0].model_copy(update={"end": None})],
                            first_trigger=1000.0)


def test_growth_divides_the_large_batch_by_the_small_one(bench) -> None:
    small = {"waves": 10, "wall_s": 100.0, "tasks_per_min": 30.0, "flag": True,
             "db_growth_bytes": {"metadata": 2_000_000, "store": 0}, "profile": "x"}
    large = {"waves": 50, "wall_s": 700.0, "tasks_per_min": 24.0, "flag": False,
             "db_growth_bytes": {"metadata": 9_000_000, "store": 5}}
    ratios = bench.growth(small, large)
    assert ratios["waves"] == 5.0
    assert ratios["wall_s"] == 7.0
    assert ratios["tasks_per_min"] == pytest.approx(0.8)
    assert ratios["db_growth_bytes.metadata"] == 4.5
    assert ratios["db_growth_bytes.store"] is None  # nothing to divide by
    assert "flag" not in ratios and "profile" not in ratios


def test_upstream_map_inverts_downstream_lists(bench) -> None:
    tasks = [{"task_id": "a", "downstream_task_ids": ["b", "c"]},
             {"task_id": "b", "downstream_task_ids": ["c"]},
             {"task_id": "c", "downstream_task_ids": []}]
    assert bench.upstream_map(tasks) == {"a": (), "b": ("a",), "c": ("a", "b")}
    ti = {"dag_run_id": "r", "task_id": "c", "state": "success",
          "start_date": "2026-12-07T10:00:05Z", "end_date": "2026-12-07T10:00:07.500000+00:00",
          "queued_when": "2026-12-07T10:00:04Z", "scheduled_when": None}
    record = bench.task_record(ti, bench.upstream_map(tasks))
    assert record.upstream == ("a", "b")
    assert record.end - record.start == pytest.approx(2.5)
    assert record.start - record.queued == pytest.approx(1.0)
    assert record.scheduled is None
