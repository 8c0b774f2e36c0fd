"""``migrationbox detect`` on a real exported series (NAB's speed_7578, shipped in
ml/data/anomaly/nab-dev): incidents, scores, and files with repeated, out-of-order and
missing timestamps (warned and carried on; ``--strict`` refuses, naming the line)."""

from __future__ import annotations

import argparse
import gzip
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from migrationbox.cli import detect as detect_cli

REAL = (Path(__file__).resolve().parents[2] / "ml" / "data" / "anomaly" / "nab-dev" / "data"
        / "realTraffic" / "speed_7578.csv.gz")


def run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    detect_cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["detect", *argv])
    return args.handler(args)


@pytest.fixture
def real_lines() -> list[str]:
    return gzip.decompress(REAL.read_bytes()).decode().splitlines()


@pytest.fixture
def regular_lines(real_lines: list[str]) -> list[str]:
    """The real values on an even 5-minute grid (the export itself has gaps, which
    ``--strict`` refuses before any fault a test plants)."""
    start = pd.Timestamp(real_lines[1].split(",")[0])
    return real_lines[:1] + [f"{start + pd.Timedelta(minutes=5 * i)},{line.split(',')[1]}"
                             for i, line in enumerate(real_lines[1:])]


def write(tmp_path: Path, lines: list[str]) -> Path:
    path = tmp_path / "speed.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_incidents_are_lines_with_start_end_and_peak(tmp_path: Path, real_lines, capsys) -> None:
    path = write(tmp_path, real_lines)
    assert run_cli(["--csv", str(path)]) == 0
    out = capsys.readouterr()
    # the one warning: the export's sampling has gaps (the detector carries on)
    assert out.err.count("\n") == 1 and "sampling is irregular" in out.err
    assert "the longest 7 h before line 451" in out.err
    rows = [line.split("\t") for line in out.out.splitlines()]
    stamps = {line.split(",")[0] for line in real_lines[1:]}
    assert 0 < len(rows) < 20  # incidents, not rows: the file has 1,127 points
    for start, end, peak, score, direction, points in rows:
        assert start in stamps and (end in stamps or end == "open")
        assert peak.removeprefix("peak=") in stamps and float(score.removeprefix("score=")) >= 1
        assert direction in ("up", "down") and int(points.removeprefix("points=")) >= 1
    # the .gz file itself is read too, with the same answer
    assert run_cli(["--csv", str(REAL)]) == 0
    assert [line.split("\t") for line in capsys.readouterr().out.splitlines()] == rows


def test_scores_print_every_point_and_mark_the_alerts(tmp_path: Path, real_lines,
                                                      capsys) -> None:
    path = write(tmp_path, real_lines)
    assert run_cli(["--csv", str(path)]) == 0
    incidents = capsys.readouterr().out.splitlines()
    assert run_cli(["--csv", str(path), "--scores"]) == 0
    rows = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == len(real_lines) - 1
    assert rows[0][2] == "-"  # no history yet: no score
    alerts = [r[0] for r in rows if r[-1] == "alert"]
    assert alerts == [line.split("\t")[0] for line in incidents]


def test_repeated_out_of_order_and_missing_rows_warn_and_carry_on(tmp_path: Path,
                                                                  regular_lines,
                                                                  capsys) -> None:
    lines = list(regular_lines)
    clean = write(tmp_path, lines)
    assert run_cli(["--csv", str(clean)]) == 0
    expected = capsys.readouterr().out
    # file line numbers are list index + 1 (the header is line 1)
    stamp_40 = lines[39].split(",")[0]
    lines.insert(40, f"{stamp_40},{lines[39].split(',')[1]}")  # line 41 repeats line 40
    lines[60], lines[61] = lines[61], lines[60]  # line 62 is now earlier than line 61
    lines.insert(80, ",55")  # line 81: no timestamp
    messy = tmp_path / "messy.csv"
    messy.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert run_cli(["--csv", str(messy)]) == 0
    out = capsys.readouterr()
    assert f"line 41: timestamp '{stamp_40}' repeats line 40's; both rows kept" in out.err
    assert "line 62: timestamp" in out.err and "sorted into place" in out.err
    assert "line 81: timestamp is empty; row skipped" in out.err
    assert out.out.count("\n") == expected.count("\n")  # the same incidents are found
    # strict names the file's first bad line, whatever kind of fault comes first
    assert run_cli(["--csv", str(messy), "--strict"]) == 2
    err = capsys.readouterr().err
    assert f"messy.csv line 41: timestamp '{stamp_40}' is not after the previous row's" in err
    assert "(line 40)" in err
    del lines[40]  # without the repeat, the swap (line 61) comes before the empty stamp
    messy.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert run_cli(["--csv", str(messy), "--strict"]) == 2
    assert "messy.csv line 61: timestamp" in capsys.readouterr().err
    lines[59], lines[60] = lines[60], lines[59]  # in order again: the empty stamp is left
    messy.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert run_cli(["--csv", str(messy), "--strict"]) == 2
    assert "messy.csv line 80: timestamp is empty" in capsys.readouterr().err


def test_many_warnings_are_counted_not_all_printed(tmp_path: Path, regular_lines,
                                                   capsys) -> None:
    lines = regular_lines[:1] + [f"{line},extra" if i % 2 else line.split(",")[0] + ",x"
                                 for i, line in enumerate(regular_lines[1:300])]
    path = write(tmp_path, lines)
    assert run_cli(["--csv", str(path)]) == 0
    err = capsys.readouterr().err.splitlines()
    assert len(err) == detect_cli.MAX_WARNINGS + 1
    assert err[-1].endswith("... and 140 more such rows")


def test_bad_options_and_unreadable_files_exit_2(tmp_path: Path, real_lines, capsys) -> None:
    path = write(tmp_path, real_lines)
    assert run_cli(["--csv", str(path), "--window", "1"]) == 2
    assert "window" in capsys.readouterr().err
    assert run_cli(["--csv", str(path), "--cooldown", "0"]) == 2
    assert "cooldown" in capsys.readouterr().err
    assert run_cli(["--csv", str(tmp_path / "nope.csv")]) == 2
    assert "cannot read" in capsys.readouterr().err
    only_bad = write(tmp_path, ["timestamp,value", "soon,1", "later,2"])
    assert run_cli(["--csv", str(only_bad)]) == 2
    assert "no row has a readable timestamp" in capsys.readouterr().err


CELLS = st.one_of(
    st.sampled_from(["", "nan", "inf", "-1e400", "1e308", "0", "x", "2026-01-01T00:00Z",
                     "2026-03-29 02:30:00", "1700000000", "99999999999999999999", "\x00"]),
    st.text(max_size=12),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.lists(CELLS, min_size=0, max_size=3), max_size=40),
       strict=st.booleans())
def test_no_file_content_crashes_the_command(tmp_path: Path, capsys, rows, strict) -> None:
    path = tmp_path / "fuzz.csv"
    body = "\n".join(",".join(r) for r in rows)
    path.write_text("timestamp,value\n" + body + "\n", encoding="utf-8", errors="replace")
    code = run_cli(["--csv", str(path), *(["--strict"] if strict else [])])
    err = capsys.readouterr().err
    assert code in (0, 2)
    assert "Traceback" not in err
    if code == 2:
        assert "fuzz.csv" in err  # the message names the file (and the line when it can)


def test_irregular_sampling_warns_once_and_strict_refuses_at_the_first_gap(
        tmp_path: Path, real_lines, regular_lines, capsys) -> None:
    path = write(tmp_path, regular_lines)
    assert run_cli(["--csv", str(path), "--strict"]) == 0  # evenly sampled: accepted
    even = capsys.readouterr()
    assert even.err == ""
    path = write(tmp_path, real_lines)
    assert run_cli(["--csv", str(path)]) == 0
    assert capsys.readouterr().out.count("\n") > 0  # incidents still found
    assert run_cli(["--csv", str(path), "--strict"]) == 2
    err = capsys.readouterr().err
    # the export's line 5 comes 20 minutes after line 4 (5-minute median step)
    assert "speed.csv line 5: a gap of 20 min after line 4" in err
    assert "median step is 5 min" in err
