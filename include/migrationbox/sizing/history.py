"""Utilisation history files: exported monitoring data for one server.

Format: CSV with a header. ``timestamp`` (ISO 8601, or Unix seconds) plus ``cpu_pct``
and ``mem_pct`` (0-100, percent of the server's current capacity); any other numeric
column (``disk_iops``, ``net_mbps`` ...) is kept and forecast too. Common aliases are
accepted (``time``, ``cpu``, ``memory_pct`` ...).

The file is refused (:class:`HistoryError`, listing up to ten problems by line and
column) when a value is not a number, a percentage is out of range, a timestamp
repeats or goes backwards, or the history is too short or too sparse to say
anything. Gaps that leave enough data are reported as warnings: monitoring agents
restart, and refusing a month of data for one lost hour would be worse.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from migrationbox.errors import InputError
from migrationbox.sizing.features import ServerProfile, usage_stats

if TYPE_CHECKING:
    import pandas as pd

ALIASES = {
    "timestamp": ("timestamp", "time", "ts", "datetime", "date", "timestamp_s"),
    "cpu_pct": ("cpu_pct", "cpu", "cpu_percent", "cpu_usage_pct", "cpu_utilization_pct"),
    "mem_pct": ("mem_pct", "mem", "memory", "memory_pct", "mem_percent", "memory_percent",
                "memory_utilization_pct"),
}
# Per-interval maxima, as cloud monitors export them beside the average (CloudWatch
# "Maximum", Azure Monitor "Max", ...): optional, validated like the averages.
MAX_ALIASES = {
    "cpu_max_pct": ("cpu_max_pct", "cpu_max", "cpu_maximum_pct", "cpu_max_percent",
                    "cpu_utilization_max_pct", "max_cpu_pct"),
    "mem_max_pct": ("mem_max_pct", "mem_max", "memory_max_pct", "memory_maximum_pct",
                    "mem_max_percent", "memory_utilization_max_pct", "max_mem_pct"),
}
PERCENT_COLUMNS = ("cpu_pct", "mem_pct", *MAX_ALIASES)
MIN_SPAN_S = 86400  # one day
MAX_GAP_SHARE = 0.5
WINDOW_DAYS = 7  # the window the backtest judged: the last week sizes, all of it forecasts
MAX_LISTED = 10
LATEST_TIMESTAMP = 4_102_444_800  # 2100-01-01T00:00:00Z


class HistoryError(InputError):
    """The history file cannot be used; the message lists what is wrong, by line."""

    def __init__(self, path: str, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        shown = problems[:MAX_LISTED]
        more = f" (and {len(problems) - MAX_LISTED} more)" if len(problems) > MAX_LISTED else ""
        super().__init__(f"history {path}: " + "; ".join(shown) + more)


@dataclass
class History:
    path: str
    timestamps: np.ndarray  # Unix seconds, strictly increasing
    columns: dict[str, np.ndarray]  # cpu_pct, mem_pct and any other numeric column
    interval_s: float
    warnings: list[str] = field(default_factory=list)

    @property
    def span_days(self) -> float:
        return float(self.timestamps[-1] - self.timestamps[0]) / 86400

    def frame(self) -> pd.DataFrame:
        import pandas as pd

        return pd.DataFrame({"timestamp_s": self.timestamps, **self.columns})

    def describe(self) -> str:
        start = datetime.fromtimestamp(self.timestamps[0], UTC).strftime("%Y-%m-%d %H:%M")
        end = datetime.fromtimestamp(self.timestamps[-1], UTC).strftime("%Y-%m-%d %H:%M")
        return (f"history {Path(self.path).name}: {len(self.timestamps)} samples every "
                f"~{self.interval_s / 60:g} min, {start} to {end} UTC")


def _parse_time(text: str) -> float:
    """Unix seconds of an ISO 8601 or Unix-seconds cell; ``ValueError`` says why not.

    Only 1970 to 2100 is accepted: a NaN, infinite or far-future value cannot be a
    monitoring sample and would fail later, without a line number, when the history
    is described or forecast. Milliseconds (a common export mistake) are named.
    """
    value = text.strip()
    try:
        seconds = float(value)
    except ValueError:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        seconds = parsed.timestamp()
    if not math.isfinite(seconds) or not 0 <= seconds < LATEST_TIMESTAMP:
        hint = ("; it looks like milliseconds: divide by 1000"
                if math.isfinite(seconds) and 0 <= seconds / 1000 < LATEST_TIMESTAMP else "")
        raise ValueError(f"outside 1970-2100{hint}")
    return seconds


def _shown(cell: str) -> str:
    """A cell as a message quotes it: repr, cut short (a 5,000-digit number)."""
    text = repr(cell)
    return text if len(text) <= 40 else text[:37] + "...'"


def _resolve(header: list[str]) -> dict[str, str]:
    lower = {h.strip().lower(): h for h in header}
    found = {}
    for canonical, names in {**ALIASES, **MAX_ALIASES}.items():
        for name in names:
            if name in lower:
                found[canonical] = lower[name]
                break
    return found


def load_history(path: str | Path) -> History:
    """Read and validate one history file (see module docstring)."""
    from migrationbox.inventory.importers.tables import decode_text

    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise HistoryError(str(p), [f"cannot read: {exc.strerror or exc}"]) from exc
    # UTF-8 (with or without BOM), UTF-16 with a BOM, else Windows-1252 with a warning:
    # the same rule as the discovery importers, since the same spreadsheets write both
    text, encoding_note = decode_text(raw)
    try:
        reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff"), newline=""))
        header = list(reader.fieldnames or [])
        rows = list(reader)
    except csv.Error as exc:
        raise HistoryError(str(p), [f"not valid CSV: {exc}"]) from exc
    names = _resolve(header)
    missing = [c for c in ALIASES if c not in names]
    if missing:
        raise HistoryError(str(p), [f"missing column {c!r} (header: {', '.join(header)})"
                                    for c in missing])
    extra = [h for h in header if h not in names.values() and h.strip()]
    maxima = [c for c in MAX_ALIASES if c in names]
    problems: list[str] = []
    times: list[float] = []
    values: dict[str, list[float]] = {c: [] for c in ("cpu_pct", "mem_pct", *maxima, *extra)}
    sources = {"cpu_pct": names["cpu_pct"], "mem_pct": names["mem_pct"],
               **{c: names[c] for c in maxima}, **{c: c for c in extra}}
    non_numeric_extra: set[str] = set()
    for line, row in enumerate(rows, start=2):
        raw_time = row.get(names["timestamp"]) or ""
        try:
            t = _parse_time(raw_time)
        except ValueError as exc:
            why = str(exc) if str(exc).startswith("outside") else "ISO 8601 or Unix seconds"
            problems.append(f"line {line}, column {names['timestamp']!r}: {_shown(raw_time)} "
                            f"is not a timestamp ({why})")
            continue
        ok = True
        parsed: dict[str, float] = {}
        for canonical, column in sources.items():
            cell = (row.get(column) or "").strip()
            try:
                number = float(cell)
                if not math.isfinite(number):
                    raise ValueError
            except ValueError:
                if canonical in extra:
                    non_numeric_extra.add(canonical)
                    number = math.nan
                else:
                    problems.append(f"line {line}, column {column!r}: {_shown(cell)} is not a "
                                    "number")
                    ok = False
                    continue
            if canonical in PERCENT_COLUMNS and not 0 <= number <= 100:
                problems.append(f"line {line}, column {column!r}: {number:g} is outside 0-100")
                ok = False
            parsed[canonical] = number
        if not ok:
            continue
        if times and t == times[-1]:
            problems.append(f"line {line}: duplicate timestamp {raw_time!r} (same as the line "
                            f"before)")
            continue
        if times and t < times[-1]:
            problems.append(f"line {line}: timestamp {raw_time!r} is earlier than the line "
                            f"before: rows must be in time order")
            continue
        times.append(t)
        for canonical, number in parsed.items():
            values[canonical].append(number)
    if problems:
        raise HistoryError(str(p), problems)
    if len(times) < 3:
        raise HistoryError(str(p), [f"only {len(times)} samples"])
    ts = np.array(times)
    steps = np.diff(ts)
    interval = float(np.median(steps))
    span = ts[-1] - ts[0]
    if span < MIN_SPAN_S:
        raise HistoryError(str(p), [f"covers {span / 3600:.1f} hours; at least 24 hours are "
                                    f"needed"])
    gaps = np.nonzero(steps > 3 * interval)[0]
    missing_s = float(np.sum(steps[gaps] - interval))
    if missing_s > MAX_GAP_SHARE * span:
        raise HistoryError(str(p), [f"too sparse: {missing_s / span:.0%} of the covered time "
                                    f"is in {len(gaps)} gaps"])
    warnings = [encoding_note] if encoding_note else []
    if len(gaps):
        listed = ", ".join(
            f"{datetime.fromtimestamp(ts[i], UTC):%Y-%m-%d %H:%M}+{steps[i] / 3600:.1f}h"
            for i in gaps[:5])
        warnings.append(f"{len(gaps)} gap(s) longer than 3 sample intervals ({listed}"
                        f"{' ...' if len(gaps) > 5 else ''}); statistics use the samples "
                        f"present")
    for column in sorted(non_numeric_extra):
        warnings.append(f"column {column!r} has non-numeric cells; it is ignored")
    columns = {c: np.array(v) for c, v in values.items() if c not in non_numeric_extra}
    return History(str(p), ts, columns, interval, warnings)


def apply_history(profile: ServerProfile, history: History,
                  forecast_config: object | None = None, with_forecast: bool = True
                  ) -> tuple[ServerProfile, dict[str, object]]:
    """The profile with demand statistics from the history, and its forecasts.

    Statistics come from the last 7 days (the window the backtest measured every
    method on); forecasts use the whole history. When the history carries per-interval
    maxima (``cpu_max_pct``/``mem_max_pct``), the peak is the highest of them: averages
    hide the bursts inside each interval that under-provision a server. Average, p95
    and p99.5 stay on the averages, the figures the backtest judged every rule on.
    """
    from migrationbox.sizing import forecast as fc

    ts = history.timestamps
    window = ts >= ts[-1] - WINDOW_DAYS * 86400
    cpu = usage_stats(ts[window], history.columns["cpu_pct"][window])
    mem = usage_stats(ts[window], history.columns["mem_pct"][window])
    used_max = []
    for name, stats in (("cpu", cpu), ("mem", mem)):
        column = history.columns.get(f"{name}_max_pct")
        if column is not None and np.isfinite(column[window]).any():
            peak = max(float(np.nanmax(column[window])), stats.peak)
            stats = replace(stats, peak=peak)
            used_max.append(f"{name}_max_pct")
            if name == "cpu":
                cpu = stats
            else:
                mem = stats
    forecasts: dict[str, object] = {}
    features: dict[str, float] = {}
    if with_forecast:
        config = forecast_config if isinstance(forecast_config, fc.ForecastConfig) else None
        for metric, series in history.columns.items():
            try:
                forecasts[metric] = fc.forecast_metric(ts, series, metric, config)
            except ValueError as exc:
                history.warnings.append(f"no forecast for {metric}: {exc}")
        features = fc.forecast_features(ts[window], history.columns["cpu_pct"][window],
                                        history.columns["mem_pct"][window], config)
    source = history.describe() + f"; sizing statistics from the last {WINDOW_DAYS} days"
    if used_max:
        source += f"; peaks from the per-interval maxima ({', '.join(used_max)})"
    return profile.with_history(cpu, mem, source, features), forecasts
