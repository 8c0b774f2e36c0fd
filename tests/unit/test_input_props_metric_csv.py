"""Property tests: no metric file makes ``read_metric_csv`` or ``migrationbox detect`` fail
with anything but a clear message.

Whatever the bytes (deep junk, NUL, NaN/inf, huge values, UTF-16 or Latin-1 files, a
gzip file cut short or corrupted, fields longer than the csv module allows, timestamps
pandas cannot represent), the reader either returns a series in time order or raises
:class:`MetricCsvError` naming the file; the command exits 0 or 2 and never prints a
traceback. Repeated, missing and out-of-order timestamps and irregular sampling warn and
carry on, and ``--strict`` refuses them. (``--rows`` fits Prophet per chunk and is too slow to fuzz;
its input is the same reader's.)
"""

from __future__ import annotations

import argparse
import gzip
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from migrationbox.cli import detect as detect_cli
from migrationbox.healer.detect import MetricCsv, MetricCsvError, read_metric_csv

REAL = (Path(__file__).resolve().parents[2] / "ml" / "data" / "anomaly" / "nab-dev" / "data"
        / "realTraffic" / "speed_7578.csv.gz")
FUZZ = settings(max_examples=40, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


def run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    detect_cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["detect", *argv])
    return int(args.handler(args))


def check_reader(path: Path, strict: bool) -> MetricCsv | None:
    """The reader's contract: a clean result or a MetricCsvError naming the file."""
    try:
        metric = read_metric_csv(path, strict=strict)
    except MetricCsvError as exc:
        assert str(path) in str(exc) and str(exc).strip()
        return None
    series = metric.series
    assert len(series) > 0 and series.index.is_monotonic_increasing
    assert np.isfinite(series.to_numpy(dtype=float)).all()
    assert len(metric.raw_timestamps) == len(series) == len(metric.lines)
    if strict:
        assert metric.warnings == []
        assert series.index.is_unique
    return metric


def check_cli(path: Path, strict: bool, capsys: pytest.CaptureFixture[str],
              *extra: str) -> int:
    code = run_cli(["--csv", str(path), *extra, *(["--strict"] if strict else [])])
    err = capsys.readouterr().err
    assert code in (0, 2)
    assert "Traceback" not in err
    if code == 2:
        assert path.name in err and "error:" in err
    return code


# --------------------------------------------------------------------------- strategies

STAMPS = st.one_of(
    st.sampled_from(["2026-01-01T00:00:00Z", "2026-01-01 00:05:00", "2026-03-29 02:30:00",
                     "2026-10-25T01:30:00+01:00", "1700000000", "1700000300.5", "-1",
                     "0", "9e9", "99999999999999999999", "9999-12-31T23:59:59Z",
                     "1600-01-01", "nan", "inf", "", " ", "yesterday", "2026-02-30"]),
    st.datetimes().map(lambda d: d.isoformat()),
    st.integers(min_value=-10**12, max_value=10**12).map(str),
    st.text(max_size=20),
)
VALUES = st.one_of(
    st.sampled_from(["", "nan", "NaN", "inf", "-inf", "1e308", "-1e308", "1e400", "1e-320",
                     "0", "-0", "0x10", "1_000", "١٢", "12 %", "true"]),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.floats(min_value=-1e308, max_value=1e308).map(lambda x: f"{x:.17g}"),
    st.text(max_size=12),
)
ROWS = st.lists(st.tuples(STAMPS, VALUES, st.lists(st.text(max_size=5), max_size=2)),
                max_size=60)


def csv_text(rows: list[tuple[str, str, list[str]]], header: str = "timestamp,value") -> str:
    def cell(text: str) -> str:  # quote what would break the row, as a CSV writer would
        if any(c in text for c in ',"\r\n'):
            return '"' + text.replace('"', '""') + '"'
        return text

    lines = [header] + [",".join(cell(c) for c in (stamp, value, *more))
                        for stamp, value, more in rows]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- properties


@FUZZ
@given(rows=ROWS, strict=st.booleans())
def test_any_rows_give_a_clean_series_or_a_named_error(tmp_path: Path, capsys, rows,
                                                       strict) -> None:
    path = tmp_path / "rows.csv"
    path.write_text(csv_text(rows), encoding="utf-8", errors="surrogatepass")
    metric = check_reader(path, strict)
    code = check_cli(path, strict, capsys)
    assert (metric is None) == (code == 2)


@FUZZ
@given(data=st.binary(max_size=2000), strict=st.booleans(), gz=st.booleans())
def test_deep_junk_bytes_never_crash(tmp_path: Path, capsys, data, strict, gz) -> None:
    path = tmp_path / ("junk.csv.gz" if gz else "junk.csv")
    path.write_bytes(data)
    check_reader(path, strict)
    check_cli(path, strict, capsys)
    # the same junk after a valid header
    path.write_bytes(b"timestamp,value\n" + data)
    check_reader(path, strict)
    check_cli(path, strict, capsys)


@FUZZ
@given(encoding=st.sampled_from(["utf-16", "utf-16-le", "utf-32", "latin-1", "cp1252",
                                 "utf-8-sig"]),
       strict=st.booleans())
def test_other_encodings_are_read_or_refused_by_name(tmp_path: Path, capsys, encoding,
                                                     strict) -> None:
    text = csv_text([("2026-01-01T00:00:00Z", "1.5", ["café"]),
                     ("2026-01-01T00:05:00Z", "2.5", ["Müller"])], "timestamp,value,note")
    path = tmp_path / "encoded.csv"
    path.write_bytes(text.encode(encoding))
    metric = check_reader(path, strict)
    if encoding in ("utf-8-sig",):  # what the reader reads: the same two rows
        assert metric is not None and list(metric.series) == [1.5, 2.5]
    if encoding.startswith("utf-16") or encoding == "utf-32":
        assert metric is None  # NUL-riddled text is refused, not misread
    check_cli(path, strict, capsys)


@FUZZ
@given(cut=st.floats(min_value=0.0, max_value=1.0), flip=st.integers(min_value=0),
       strict=st.booleans())
def test_a_truncated_or_corrupted_gzip_export_is_a_clear_error(tmp_path: Path, capsys, cut,
                                                               flip, strict) -> None:
    raw = REAL.read_bytes()
    path = tmp_path / "speed.csv.gz"
    path.write_bytes(raw[:int(len(raw) * cut)])
    check_reader(path, strict)
    check_cli(path, strict, capsys)
    broken = bytearray(raw)
    broken[flip % len(raw)] ^= 0xFF
    path.write_bytes(bytes(broken))
    check_reader(path, strict)
    check_cli(path, strict, capsys)


@FUZZ
@given(scale=st.sampled_from([1e300, 1e308, -1e308, 1e-300, 0.0]),
       spikes=st.lists(st.integers(min_value=0, max_value=499), max_size=5),
       strict=st.booleans())
def test_huge_and_tiny_values_are_scored_without_overflowing_into_a_crash(
        tmp_path: Path, capsys, scale, spikes, strict) -> None:
    rng = np.random.default_rng(0)
    values = scale * (1 + 0.01 * rng.normal(size=500))
    for k in spikes:
        values[k] = math.copysign(1.7e308, scale or 1.0)
    rows = [(f"2026-01-01T00:{i // 60:02d}:{i % 60:02d}Z", repr(float(v)), [])
            for i, v in enumerate(values)]
    path = tmp_path / "huge.csv"
    path.write_text(csv_text(rows), encoding="utf-8")
    metric = check_reader(path, strict)
    assert metric is not None and len(metric.series) == 500
    assert check_cli(path, strict, capsys) == 0
    assert check_cli(path, strict, capsys, "--scores") == 0


def test_a_field_longer_than_the_csv_module_allows_is_named(tmp_path: Path, capsys) -> None:
    path = tmp_path / "long.csv"
    path.write_text("timestamp,value\n2026-01-01T00:00:00Z,1\n" + "x" * 300_000 + ",2\n",
                    encoding="utf-8")
    with pytest.raises(MetricCsvError, match=r"long\.csv line 3: cannot read"):
        read_metric_csv(path, strict=False)
    assert check_cli(path, False, capsys) == 2


def test_repeated_missing_and_out_of_order_rows_warn_and_strict_refuses(
        tmp_path: Path, capsys) -> None:
    real = gzip.decompress(REAL.read_bytes()).decode().splitlines()
    start = np.datetime64(real[1].split(",")[0])
    # the real values on an even 5-minute grid (the export's own gaps would come first)
    lines = real[:1] + [f"{start + np.timedelta64(5 * i, 'm')},{line.split(',')[1]}"
                        for i, line in enumerate(real[1:])]
    lines.insert(11, lines[10])  # line 12 repeats line 11
    lines[30], lines[31] = lines[31], lines[30]  # line 32 earlier than line 31
    lines[50] = "," + lines[50].split(",")[1]  # line 51: no timestamp
    lines[70] = lines[70].split(",")[0] + ",nan"  # line 71: no number
    path = tmp_path / "messy.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    metric = read_metric_csv(path, strict=False)
    joined = "\n".join(metric.warnings)
    for line in ("line 12", "line 32", "line 51", "line 71"):
        assert line in joined
    assert metric.series.index.is_monotonic_increasing
    assert check_cli(path, False, capsys) == 0
    with pytest.raises(MetricCsvError, match=r"messy\.csv line 12"):
        read_metric_csv(path, strict=True)
    assert check_cli(path, True, capsys) == 2


@FUZZ
@given(steps=st.lists(st.integers(min_value=-600, max_value=86_400), min_size=2,
                      max_size=300))
def test_irregular_sampling_is_scored_in_time_order(tmp_path: Path, capsys, steps) -> None:
    stamps = 1_700_000_000 + np.cumsum(steps)
    rng = np.random.default_rng(len(steps))
    rows = [(str(int(t)), f"{v:.3f}", []) for t, v in zip(stamps, rng.normal(50, 5, len(steps)),
                                                          strict=True)]
    path = tmp_path / "irregular.csv"
    path.write_text(csv_text(rows), encoding="utf-8")
    metric = check_reader(path, strict=False)
    assert metric is not None and len(metric.series) == len(steps)
    ordered = bool((np.diff(stamps) > 0).all())
    after = np.diff(np.sort(stamps))
    positive = after[after > 0]
    gaps = len(positive) > 0 and bool((after > 3 * np.median(positive)).any())
    clean = ordered and not gaps
    assert (metric.warnings == []) == clean
    assert any("sampling is irregular" in w for w in metric.warnings) == gaps
    assert check_cli(path, False, capsys) == 0
    assert check_cli(path, True, capsys) == (0 if clean else 2)
