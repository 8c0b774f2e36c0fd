"""No utilisation history CSV crashes sizing: it loads, or ``HistoryError`` names the line.

Histories come from whatever monitoring export a user has (``migrationbox size
--history``): NaN and Infinity spelled every way, huge numbers and timestamps,
truncated files, other encodings, odd headers, the per-interval maxima columns
(``cpu_max_pct``). ``load_history`` must return a history whose every value is finite
and whose timestamps rise strictly, or raise ``HistoryError`` (an ``InputError``) with
the file, line and column; never a ``ValueError``, ``OverflowError`` or numpy warning
turned error further on. The ``size`` command then exits 0, 1 or 2 with the message.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from migrationbox.cli import size as size_cli
from migrationbox.sizing.features import ServerProfile, UsageStats
from migrationbox.sizing.history import HistoryError, apply_history, load_history

T0 = 1_751_328_000
HEADER = ["timestamp", "cpu_pct", "mem_pct", "cpu_max_pct", "disk_iops"]

HOSTILE_NUMBERS = ["NaN", "nan", "inf", "-inf", "Infinity", "1e309", "1e308", "-1e308", "-0",
                   "", " ", "\u0661\u0662", "0x10", "1_000", "9" * 5000, "\x00", "50%", "12,5",
                   '"', "1e-320", "100.0000001", "-0.0001", "١", "1" + "0" * 400]
HOSTILE_TIMES = ["NaN", "inf", "-inf", "1e20", "-1e20", "1e308", "99999999999", "2026-13-01",
                 "", "2026-01-01T00:00:00+25:00", "0", "-62135596801", "253402300800",
                 "2026-01-01T00:00:00", "9" * 5000, "1e400", "2026-01-01 00:00:00Z"]


def base_rows(hours: int = 72) -> list[list[str]]:
    return [[str(T0 + i * 3600), f"{30 + i % 10}", "50", f"{45 + i % 10}", f"{100 + i}"]
            for i in range(hours)]


def _csv(header: list[str], rows: list[list[str]], newline: str = "\n") -> str:
    return newline.join(",".join(r) for r in [header, *rows]) + newline


@st.composite
def history_file(draw: st.DrawFn) -> bytes:
    header = list(draw(st.sampled_from([
        HEADER, HEADER[:3], ["time", "cpu", "memory", "max_cpu_pct"],
        ["timestamp", "cpu_pct", "mem_pct", "cpu_pct"], ["timestamp", "cpu_pct"],
        ["\ufefftimestamp", "cpu_pct", "mem_pct"], ["timestamp", "cpu_pct", "mem_pct", ""],
        ["Timestamp ", " CPU_PCT", "mem_pct", "cpu_max", "caf\u00e9"]])))
    rows = [r[:len(header)] + [""] * (len(header) - len(r)) for r in base_rows(
        draw(st.sampled_from([2, 30, 72])))]
    for _ in range(draw(st.integers(0, 4))):
        i = draw(st.integers(0, len(rows) - 1))
        column = draw(st.integers(0, len(header) - 1))
        pool = HOSTILE_TIMES if column == 0 else HOSTILE_NUMBERS
        rows[i][column] = draw(st.sampled_from(pool))
    if draw(st.booleans()):  # a ragged row: too many or too few cells
        i = draw(st.integers(0, len(rows) - 1))
        rows[i] = rows[i][:draw(st.integers(0, len(header)))] + draw(
            st.lists(st.sampled_from(["1", "x", ""]), max_size=2))
    text = _csv(header, rows, draw(st.sampled_from(["\n", "\r\n", "\r"])))
    raw = text.encode(draw(st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "latin-1"])),
                      errors="replace")
    if draw(st.booleans()):
        raw = raw[:draw(st.integers(0, len(raw)))]
    return raw


def _profile() -> ServerProfile:
    return ServerProfile(server_id="h", hostname="h", vcpu=4, memory_gib=16,
                         cpu=UsageStats(avg=0.0), memory=UsageStats(avg=0.0),
                         stats_source="none")


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(raw=history_file())
def test_any_history_loads_clean_or_is_refused_by_line(tmp_path: Path, raw: bytes) -> None:
    path = tmp_path / "srv.csv"
    path.write_bytes(raw)
    try:
        history = load_history(path)
    except HistoryError as exc:
        assert str(exc).startswith(f"history {path}: ")
        assert exc.problems and all(p.strip() for p in exc.problems)
        return
    assert np.all(np.diff(history.timestamps) > 0)
    assert np.isfinite(history.timestamps).all() and history.span_days >= 1
    for name in ("cpu_pct", "mem_pct", "cpu_max_pct"):
        if name in history.columns:
            values = history.columns[name]
            assert np.isfinite(values).all() and (values >= 0).all() and (values <= 100).all()
    history.describe()
    sized, _ = apply_history(_profile(), history, with_forecast=False)
    for stat in (sized.cpu.avg, sized.cpu.p95, sized.cpu.peak, sized.memory.avg):
        assert math.isfinite(stat)


def test_huge_timestamp_is_refused_by_line_not_an_overflow(tmp_path: Path) -> None:
    rows = base_rows()
    rows[-1][0] = "1e20"
    path = tmp_path / "h.csv"
    path.write_text(_csv(HEADER, rows))
    with pytest.raises(HistoryError, match=r"line 73, column 'timestamp'"):
        load_history(path)


def test_not_a_number_timestamp_is_refused_by_line(tmp_path: Path) -> None:
    for bad in ("NaN", "inf", "9" * 5000):
        rows = base_rows()
        rows[5][0] = bad
        path = tmp_path / "h.csv"
        path.write_text(_csv(HEADER, rows))
        with pytest.raises(HistoryError, match=r"line 7, column 'timestamp'"):
            load_history(path)


def test_out_of_range_extra_column_is_refused_by_line(tmp_path: Path) -> None:
    rows = base_rows()
    rows[3][4] = "1e309"
    path = tmp_path / "h.csv"
    path.write_text(_csv(HEADER, rows))
    history = load_history(path)  # a non-finite extra cell: the column is ignored, said so
    assert "disk_iops" not in history.columns
    assert any("disk_iops" in w for w in history.warnings)


def test_other_encodings_load_and_a_guess_is_a_warning(tmp_path: Path) -> None:
    text = _csv([*HEADER, "d\u00e9bit"], [[*r, "1"] for r in base_rows()])
    for encoding in ("latin-1", "utf-16", "utf-8-sig"):
        path = tmp_path / f"h-{encoding}.csv"
        path.write_bytes(text.encode(encoding))
        history = load_history(path)
        assert "d\u00e9bit" in history.columns
        guessed = [w for w in history.warnings if "not UTF-8" in w]
        assert bool(guessed) == (encoding == "latin-1")


# ------------------------------------------------------------------ the size command

def _size(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="migrationbox")
    size_cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(argv))
    return args.handler(args)


@pytest.fixture()
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MIGRATIONBOX_HOME", str(tmp_path / "mb"))
    monkeypatch.setenv("MIGRATIONBOX_PRICING_DIR", str(tmp_path / "pricing"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


@settings(max_examples=6, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(raw=history_file())
def test_size_command_with_any_history_exits_with_a_message(
        tmp_path: Path, isolated: None, capsys: Any, raw: bytes) -> None:
    path = tmp_path / "app-1.csv"
    path.write_bytes(raw)
    code = _size("size", "--history", str(path), "--vcpu", "4", "--memory-gib", "16",
                 "--cloud", "aws", "--format", "json", "--no-model")
    out, err = capsys.readouterr()
    assert code in (0, 1, 2)
    if code == 2:
        assert err.startswith("migrationbox size: history ")
    else:
        data = json.loads(out)
        assert data["servers"][0]["server_id"] == "app-1"
