"""Anomaly detection: a fast causal z-score confirmed by a Prophet forecast interval.

**Causality.** Every decision at time *t* uses only data up to *t*:

* Model 1 (rolling z-score) compares the value at *t* with the mean and standard
  deviation of the ``window`` points strictly *before* *t* (so a spike does not inflate
  its own baseline). It needs ``min_history`` earlier points before it says anything.
* Model 2 (Prophet) is retrained once per ``retrain_every`` chunk (one day by default),
  on at most ``train_window`` of history strictly before the chunk starts, and forecasts
  every point of the chunk (the interval: see :class:`Forecaster`). Its forecasts are
  therefore up to one chunk stale: that is the real retraining cadence, chosen because a
  Prophet fit costs ~0.3-1 s and fitting per point would cost that much per sample.
  Points that both models already flagged are left out of later training sets, so a
  past incident does not widen future intervals. Prophet ignores the latest
  observations when it forecasts, so each forecast is shifted by the median residual of
  the previous ``level_window`` points (also strictly before *t*): the forecast follows
  level changes between retrainings while the daily shape still comes from Prophet.
  A point counts as outside the forecast when ``|value - yhat|`` exceeds
  ``interval_scale`` times the interval's half-width on that side
  (``forecast_score = residual / half-width``; ``|score| > interval_scale``).

**Confidence** (the plan's combined logic): both models flag the point, in the same
direction (both above, or both below, what they expect) -> ``high`` (the healer may act);
only model 1 flags it -> ``low`` (alert only). A point only model 2 flags is reported as a
``low`` confidence ``pattern`` anomaly, and only when it is beyond ``pattern_scale``
half-widths (2 by default: the plan's "actual > predicted + 2 * prediction_interval"),
because a 95 % interval is, by construction, left by about one point in twenty. When
model 2 has too little history (less than ``min_train_history``) it abstains, and model 1
alone can only raise low-confidence alerts.

**Categories**, decided per flagged point, in this order (the deviation and ``sigma`` are
model 1's baseline mean and std when model 1 flagged the point, else the forecast and the
spread implied by its interval):

* ``trend``: over the last ``trend_points`` points a straight line fits well
  (R² >= ``trend_min_r2``), rises (or falls) in the direction of the deviation by at least
  ``trend_min_sigma`` sigma, and the last step is at most ``trend_max_step_fraction`` of
  the deviation: a gradual degradation (memory leak, disk fill), not a jump.
* ``pattern``: only model 2 flagged it (beyond ``pattern_scale``) and it is not a trend:
  the value is ordinary for the recent window but wrong for this time of day/week (e.g.
  night-time traffic at noon).
* ``spike``: otherwise, value above the baseline (sudden increase).
* ``drop``: otherwise, value below the baseline (sudden decrease).
"""

from __future__ import annotations

import csv
import logging
import math
import warnings
import zlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from statistics import NormalDist
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from migrationbox.errors import InputError

if TYPE_CHECKING:
    from prophet import Prophet

log = logging.getLogger(__name__)


class Category(StrEnum):
    spike = "spike"
    drop = "drop"
    trend = "trend"
    pattern = "pattern"


class Confidence(StrEnum):
    high = "high"
    low = "low"


@dataclass(frozen=True)
class ZScoreConfig:
    """Model 1. ``window`` and ``min_history`` count points, not time."""

    window: int = 288  # one day of 5-minute samples
    threshold: float = 3.0
    min_history: int = 30
    #: floor of the baseline std, as a fraction of |mean| (and an absolute floor), so that
    #: a perfectly flat metric does not turn every wobble into an infinite z-score
    min_std_fraction: float = 0.01
    min_std: float = 1e-9

    def __post_init__(self) -> None:
        if self.window < 2:
            raise ValueError(f"window: must be at least 2 points, got {self.window}")
        if not 2 <= self.min_history <= self.window:
            raise ValueError(f"min_history: must be between 2 and window ({self.window}), "
                             f"got {self.min_history}")
        if self.threshold <= 0:
            raise ValueError(f"threshold: must be positive, got {self.threshold}")


@dataclass(frozen=True)
class ForecastConfig:
    """Model 2 (Prophet)."""

    retrain_every: timedelta = timedelta(days=1)
    train_window: timedelta = timedelta(days=14)
    min_train_history: timedelta = timedelta(days=1)
    interval_width: float = 0.95
    interval_scale: float = 1.0
    #: a point only model 2 flags is reported (as ``pattern``) only beyond this many
    #: half-widths: the plan's "actual > predicted + 2 * prediction_interval"
    pattern_scale: float = 2.0
    #: "residual" (in-sample residual quantiles around yhat; deterministic) or "sampled"
    #: (Prophet's simulated interval); see :class:`Forecaster`
    interval_method: str = "residual"
    uncertainty_samples: int = 300  # only for "sampled"
    #: Prophet's default (4) smooths away features shorter than ~3 h; sub-hourly metrics
    #: have sharper daily shapes (a lunch-time peak), so the default here is 10 (~1.2 h)
    daily_fourier_order: int = 10
    changepoint_prior_scale: float = 0.05  # Prophet's default trend flexibility
    growth: str = "linear"  # or "flat": level + seasonality, no extrapolated trend
    #: Prophet does not look at the latest observations when it forecasts; with
    #: ``level_window`` > 0 each forecast is shifted by the median residual of the
    #: previous ``level_window`` points (all strictly before t), which follows level
    #: changes between retrainings (the benchmark: false positives of model 2 alone fall
    #: from ~335 to ~40 per 1,000 points on real traces). 0 disables it.
    level_window: int = 12
    exclude_confirmed: bool = True

    def __post_init__(self) -> None:
        if self.retrain_every <= timedelta(0):
            raise ValueError("retrain_every: must be positive")
        if self.growth not in ("linear", "flat"):
            raise ValueError(f"growth: 'linear' or 'flat', got {self.growth!r}")
        if self.interval_method not in ("residual", "sampled"):
            raise ValueError(f"interval_method: 'residual' or 'sampled', got "
                             f"{self.interval_method!r}")
        if not 0 < self.interval_width < 1:
            raise ValueError(f"interval_width: must be in (0, 1), got {self.interval_width}")


@dataclass(frozen=True)
class CategoryConfig:
    trend_points: int = 12
    trend_min_r2: float = 0.6
    trend_min_sigma: float = 2.0
    trend_max_step_fraction: float = 0.5


@dataclass(frozen=True)
class DetectorConfig:
    zscore: ZScoreConfig = field(default_factory=ZScoreConfig)
    forecast: ForecastConfig = field(default_factory=ForecastConfig)
    category: CategoryConfig = field(default_factory=CategoryConfig)
    #: run model 2 only on chunks where model 1 flagged something. High-confidence
    #: results are identical (they need model 1), model-2-only ``pattern`` anomalies and
    #: model 2 scores elsewhere are not computed.
    lazy_forecast: bool = False


@dataclass(frozen=True)
class Anomaly:
    timestamp: pd.Timestamp
    value: float
    z_score: float | None
    baseline_mean: float | None
    baseline_std: float | None
    forecast: float | None
    forecast_lower: float | None
    forecast_upper: float | None
    forecast_score: float | None
    model1: bool
    model2: bool | None  # None: model 2 had too little history and abstained
    category: Category
    confidence: Confidence
    position: int

    @property
    def high_confidence(self) -> bool:
        return self.confidence is Confidence.high

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["timestamp"] = self.timestamp.isoformat()
        out["category"] = self.category.value
        out["confidence"] = self.confidence.value
        return out


@dataclass
class DetectionResult:
    """All scores per point (``frame``) and the flagged points (``anomalies``).

    ``frame`` columns: value; model 1's mean, std, z, model1; model 2's yhat, lower,
    upper, fscore, model2 (NA where it abstained); high (both agree).
    """

    frame: pd.DataFrame
    anomalies: list[Anomaly]
    forecast_fits: int
    config: DetectorConfig

    def high(self) -> list[Anomaly]:
        return [a for a in self.anomalies if a.high_confidence]

    def incidents(self, config: IncidentConfig | None = None) -> IncidentResult:
        """The same series through the incident detector (:class:`IncidentDetector`):
        a score per point and the alert events, computed on demand (the two models judge
        rows; this groups what is news into incidents)."""
        return IncidentDetector(config).score(self.frame["value"])

    @property
    def cadence(self) -> str:
        f = self.config.forecast
        return (f"model 1 per point (window {self.config.zscore.window} points); model 2 "
                f"retrained every {_human(f.retrain_every)} on up to "
                f"{_human(f.train_window)} of earlier history ({self.forecast_fits} fits)")


def _human(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds % size == 0:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"


class SeriesError(InputError):
    """The input is not a usable time series; the message names the row and field."""


# --------------------------------------------------------------------------- input


def as_series(data: pd.Series | pd.DataFrame, *, timestamp_col: str = "timestamp",
              value_col: str = "value") -> pd.Series:
    """Normalise input to a float Series on a strictly increasing UTC DatetimeIndex.

    Accepts a Series indexed by time, or a DataFrame with ``timestamp`` and ``value``
    columns. NaN values are kept (a missing sample is scored as nothing and skipped by the
    baselines); non-numeric values and unordered or duplicate timestamps are errors.
    """
    if isinstance(data, pd.DataFrame):
        missing = [c for c in (timestamp_col, value_col) if c not in data.columns]
        if missing:
            raise SeriesError(f"missing column(s) {', '.join(missing)}; found "
                              f"{', '.join(map(str, data.columns)) or 'none'}")
        index = pd.DatetimeIndex(pd.to_datetime(data[timestamp_col], utc=True))
        values = pd.to_numeric(data[value_col], errors="coerce")
        bad = values.isna() & data[value_col].notna()
        if bad.any():
            pos = int(np.flatnonzero(bad.to_numpy())[0])
            raise SeriesError(f"row {pos}: value {data[value_col].iloc[pos]!r} is not a number")
        series = pd.Series(values.to_numpy(dtype=float), index=index, name=value_col)
    elif isinstance(data, pd.Series):
        if not isinstance(data.index, pd.DatetimeIndex):
            raise SeriesError("a Series must be indexed by timestamps (DatetimeIndex)")
        index = data.index.tz_localize("UTC") if data.index.tz is None else (
            data.index.tz_convert("UTC"))
        try:
            series = pd.Series(data.to_numpy(dtype=float), index=index, name=data.name)
        except (TypeError, ValueError) as exc:
            raise SeriesError(f"values are not numeric: {exc}") from exc
    else:
        raise SeriesError(f"expected a pandas Series or DataFrame, got {type(data).__name__}")
    if index.hasnans:
        pos = int(np.flatnonzero(index.isna())[0])
        raise SeriesError(f"row {pos}: timestamp is missing")
    if len(index) > 1:
        steps = np.diff(index.asi8)
        if (steps <= 0).any():
            pos = int(np.flatnonzero(steps <= 0)[0]) + 1
            raise SeriesError(f"row {pos}: timestamp {index[pos].isoformat()} is not after the "
                              f"previous row's {index[pos - 1].isoformat()} (timestamps must "
                              "be strictly increasing)")
    return series


@dataclass(frozen=True)
class MetricCsv:
    """A metric file's rows in time order. ``raw_timestamps[i]`` and ``lines[i]`` are how
    row ``i`` of ``series`` was written and where; ``warnings`` name the lines the lenient
    reader put up with (repeated, out-of-order, missing timestamps or values)."""

    series: pd.Series
    raw_timestamps: list[str]  # as written in the file, for echoing back to the user
    lines: list[int] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


class MetricCsvError(InputError):
    def __init__(self, path: str | Path, line: int | None, message: str) -> None:
        where = f"{path}" + (f" line {line}" if line is not None else "")
        super().__init__(f"{where}: {message}")
        self.path, self.line = str(path), line


#: what reading a metric file can raise besides our own errors: undecodable text, a
#: field beyond the csv module's limit, and a .gz file cut short (EOFError) or corrupted
#: (zlib.error, gzip.BadGzipFile which is an OSError)
_READ_ERRORS = (UnicodeDecodeError, OSError, csv.Error, EOFError, zlib.error)


def _read_error(exc: BaseException) -> str:
    if isinstance(exc, EOFError | zlib.error):
        return f"the gzip data is truncated or corrupt ({exc})"
    if isinstance(exc, UnicodeDecodeError):
        return f"not UTF-8 text ({exc}); save the export as UTF-8"
    return str(exc)


def read_metric_csv(path: str | Path, *, strict: bool = True) -> MetricCsv:
    """Read a ``timestamp,value`` CSV (header required; other columns are ignored;
    ``.gz`` files are decompressed).

    Timestamps are ISO 8601 (with or without offset; naive means UTC) or Unix epoch
    seconds. Errors name the file line (the header is line 1).

    ``strict`` (the default, for callers that need a clean series): any row with an empty,
    unreadable, repeated or out-of-order timestamp or a missing or non-numeric value is an
    error, and so is irregular sampling (a step over ``GAP_FACTOR`` times the median
    step); the error names the first such line of the file. Not strict (what
    ``migrationbox detect`` does unless ``--strict``): such rows become ``warnings``
    naming their line; rows without a usable timestamp or value are
    dropped, repeated timestamps kept (both rows, in file order: daylight-saving changes
    and agent restarts produce them), out-of-order rows sorted into place, and irregular
    sampling is one warning naming the longest gap.
    """
    import gzip

    path = Path(path)
    try:
        handle = (gzip.open(path, "rt", newline="", encoding="utf-8-sig")  # noqa: SIM115 (closed below)
                  if path.suffix == ".gz" else path.open(newline="", encoding="utf-8-sig"))
    except OSError as exc:
        raise MetricCsvError(path, None, f"cannot read: {exc.strerror or exc}") from exc
    warnings: list[str] = []
    first: MetricCsvError | None = None  # strict: the first bad row read (rows come in order)

    def problem(line: int, message: str) -> None:
        nonlocal first
        if strict:
            first = first or MetricCsvError(path, line, message)
        else:
            warnings.append(f"{path} line {line}: {message}; row skipped")

    with handle:
        reader = csv.reader(handle)
        try:
            header = next(reader)
        except StopIteration:
            raise MetricCsvError(path, None, "empty file (expected a header "
                                 "'timestamp,value')") from None
        except _READ_ERRORS as exc:
            raise MetricCsvError(path, 1, f"cannot read: {_read_error(exc)}") from None
        names = [h.strip().lower() for h in header]
        missing = [c for c in ("timestamp", "value") if c not in names]
        if missing:
            raise MetricCsvError(path, 1, f"missing column(s) {', '.join(missing)} in the "
                                 f"header; found {', '.join(header) or 'none'}")
        ti, vi = names.index("timestamp"), names.index("value")
        stamps: list[str] = []
        values: list[float] = []
        lines: list[int] = []
        try:
            for row in reader:
                line = reader.line_num
                if not row or all(not c.strip() for c in row):
                    continue
                if len(row) <= max(ti, vi):
                    problem(line, f"expected at least {max(ti, vi) + 1} columns, got {len(row)}")
                    continue
                stamp, raw = row[ti].strip(), row[vi].strip()
                if not stamp:
                    problem(line, "timestamp is empty")
                    continue
                if not raw:
                    problem(line, "value is empty")
                    continue
                try:
                    value = float(raw)
                except ValueError:
                    problem(line, f"value {raw!r} is not a number")
                    continue
                if not math.isfinite(value):
                    problem(line, f"value {raw!r} is not a finite number")
                    continue
                stamps.append(stamp)
                values.append(value)
                lines.append(line)
        except _READ_ERRORS as exc:
            # the csv module has consumed the row it refuses; a decoding error happens
            # while reading the next one
            line = reader.line_num + (0 if isinstance(exc, csv.Error) else 1)
            raise MetricCsvError(path, line, f"cannot read: {_read_error(exc)}") from None
    if not stamps:
        raise first or MetricCsvError(path, None, "no data rows after the header")
    stamp_error: MetricCsvError | None = None
    try:
        index = _parse_timestamps(path, stamps, lines, strict=strict, warnings=warnings)
    except MetricCsvError as exc:  # strict: keep looking for an earlier bad line
        stamp_error = exc
        index = _parse_timestamps(path, stamps, lines, strict=False)
    keep = ~index.isna()
    if not keep.any():
        raise _earliest(first, stamp_error) or MetricCsvError(
            path, None, "no row has a readable timestamp")
    kept = np.flatnonzero(keep)
    stamps = [stamps[i] for i in kept]
    lines = [lines[i] for i in kept]
    index = index[kept]
    vals = np.asarray(values, dtype=float)[kept]
    steps = np.diff(index.asi8)
    if strict:
        order_error = None
        if (steps <= 0).any():
            pos = int(np.flatnonzero(steps <= 0)[0]) + 1
            order_error = MetricCsvError(
                path, lines[pos], f"timestamp {stamps[pos]!r} is not after the previous "
                f"row's {stamps[pos - 1]!r} (line {lines[pos - 1]}); rows must be in "
                "strictly increasing time order")
        gap_error = None
        try:
            _sampling_gaps(path, index, lines, strict=True)
        except MetricCsvError as exc:
            gap_error = exc
        error = _earliest(first, stamp_error, order_error, gap_error)
        if error is not None:
            raise error
    series, order, issues = lenient_series(index, vals)
    gap = None if strict else _sampling_gaps(path, series.index, [lines[i] for i in order],
                                             strict=False)
    for issue in issues:  # only repeated / out-of-order remain here
        earlier = ""
        if issue.kind == "repeated":
            first = int(np.flatnonzero(index.asi8 == index.asi8[issue.row])[0])
            earlier = f" repeats line {lines[first]}'s; both rows kept"
        else:
            earlier = " is earlier than a previous row's; sorted into place"
        warnings.append(f"{path} line {lines[issue.row]}: timestamp "
                        f"{stamps[issue.row]!r}{earlier}")
    if gap:
        warnings.append(gap)
    return MetricCsv(series.rename("value"), [stamps[i] for i in order],
                     [lines[i] for i in order], warnings)


#: a step between two rows longer than this many times the median step is a gap
GAP_FACTOR = 3.0


def _span(nanoseconds: float) -> str:
    seconds = nanoseconds / 1e9
    for unit, size, limit in (("s", 1, 120), ("min", 60, 7200), ("h", 3600, 172800)):
        if seconds < limit:
            return f"{seconds / size:.3g} {unit}"
    return f"{seconds / 86400:.3g} d"


def _sampling_gaps(path: Path, index: pd.DatetimeIndex, lines: list[int], *, strict: bool
                   ) -> str | None:
    """Irregular sampling: steps longer than ``GAP_FACTOR`` times the median step. The
    detector copes (its windows count points; the seasonal channel matches by time and
    has no reference after a gap rather than a wrong one), so this is one warning, naming
    the longest gap; strict refuses the file at the first gap."""
    t = index.as_unit("ns").asi8
    steps = np.diff(t)
    positive = steps[steps > 0]
    if len(positive) == 0:
        return None
    median = float(np.median(positive))
    gaps = np.flatnonzero(steps > GAP_FACTOR * median)
    if len(gaps) == 0:
        return None
    if strict:
        k = int(gaps[0])
        raise MetricCsvError(path, lines[k + 1], f"a gap of {_span(steps[k])} after line "
                             f"{lines[k]} (the median step is {_span(median)}): sampling is "
                             f"irregular (steps over {GAP_FACTOR:g}x the median)")
    k = int(gaps[np.argmax(steps[gaps])])
    return (f"{path}: sampling is irregular: {len(gaps)} gap(s) over {GAP_FACTOR:g}x the "
            f"median step of {_span(median)}, the longest {_span(steps[k])} before line "
            f"{lines[k + 1]}; carried on (windows count points)")


def _earliest(*errors: MetricCsvError | None) -> MetricCsvError | None:
    """The error about the earliest file line (strict mode reports the first bad line)."""
    found = [e for e in errors if e is not None]
    return min(found, key=lambda e: e.line if e.line is not None else 0) if found else None


def _parse_timestamps(path: Path, stamps: list[str], lines: list[int], *, strict: bool = True,
                      warnings: list[str] | None = None) -> pd.DatetimeIndex:
    """Parse every timestamp; a bad one raises (strict) or becomes NaT and a warning.

    A file of numbers is Unix epoch seconds; otherwise ISO 8601, with any epoch rows kept.
    Values pandas cannot represent (beyond the years 1677-2262) count as unreadable."""
    numeric = pd.to_numeric(pd.Series(stamps), errors="coerce").to_numpy(dtype=float)
    epoch = np.isfinite(numeric) & (np.abs(numeric) < 9.2e9)
    out_of_range = ~np.isnan(numeric) & ~epoch
    if np.isnan(numeric).any():  # some rows are not numbers: ISO 8601 for those
        parsed = pd.to_datetime(pd.Series(stamps), utc=True, errors="coerce",
                                format="ISO8601")
        # pandas parses 9999-12-31 or 1600-01-01 at a coarser unit; the series needs
        # nanoseconds, so those are unreadable here (not an OutOfBoundsDatetime later)
        lo, hi = pd.Timestamp.min.tz_localize("UTC"), pd.Timestamp.max.tz_localize("UTC")
        beyond = (parsed.notna() & ((parsed < lo) | (parsed > hi))).to_numpy()
        out_of_range |= beyond
        parsed = parsed.where(~beyond).astype("datetime64[ns, UTC]")
    else:
        parsed = pd.Series(pd.NaT, index=range(len(stamps)), dtype="datetime64[ns, UTC]")
    if epoch.any():
        parsed[epoch] = pd.to_datetime(numeric[epoch], unit="s", utc=True).as_unit("ns")
    parsed[~np.isnan(numeric) & ~epoch] = pd.NaT
    for pos in np.flatnonzero(parsed.isna().to_numpy()):
        message = (f"timestamp {stamps[pos]!r} is outside the years 1677-2262"
                   if out_of_range[pos] and np.isnan(numeric[pos]) else
                   f"timestamp {stamps[pos]!r} is not ISO 8601 (e.g. 2026-05-15T14:23:45Z) "
                   "or Unix epoch seconds")
        if strict:
            raise MetricCsvError(path, lines[pos], message)
        if warnings is not None:
            warnings.append(f"{path} line {lines[pos]}: {message}; row skipped")
    return pd.DatetimeIndex(parsed)


# --------------------------------------------------------------------------- model 1


def zscore_scores(series: pd.Series, config: ZScoreConfig) -> pd.DataFrame:
    """Causal rolling baseline: mean/std of the ``window`` points strictly before each t."""
    before = series.shift(1)
    roll = before.rolling(config.window, min_periods=config.min_history)
    mean = roll.mean()
    std = roll.std(ddof=1)
    floor = np.maximum(config.min_std, config.min_std_fraction * mean.abs())
    std = std.where(std > floor, floor)
    z = (series - mean) / std
    flag = z.abs() > config.threshold
    return pd.DataFrame({"mean": mean, "std": std, "z": z, "model1": flag.fillna(False)})


# --------------------------------------------------------------------------- model 2


def _quiet_prophet() -> None:
    """Keep Prophet/cmdstanpy from printing per-fit INFO lines and the plotly warning.

    cmdstanpy installs its own stderr handler unless the logger already has one, so a
    NullHandler goes first; warnings still reach the root logger.
    """
    stan = logging.getLogger("cmdstanpy")
    if not stan.handlers:
        stan.addHandler(logging.NullHandler())
    stan.setLevel(logging.WARNING)
    logging.getLogger("prophet").setLevel(logging.WARNING)
    logging.getLogger("prophet.plot").setLevel(logging.CRITICAL)


@dataclass
class Forecaster:
    """A Prophet model fitted on history ending at ``trained_until`` (nothing later).

    Its interval is either ``residual`` (default): Prophet's point forecast ``yhat`` plus
    the empirical quantiles of its in-sample residuals, which is deterministic, cheap and
    the same whichever points are asked for; or ``sampled``: Prophet's own simulated
    ``yhat_lower``/``yhat_upper``, which include trend uncertainty but vary from run to
    run and with the set of points predicted together (so a live and a replayed decision
    could differ).

    Serialisable with :meth:`to_json` / :meth:`from_json` so that a scheduled retraining
    DAG can track it in MLflow and the sensing path can load it instead of fitting.
    """

    model: Prophet
    trained_until: pd.Timestamp
    n_train: int
    interval_width: float
    interval_method: str = "residual"
    resid_lower: float = 0.0
    resid_upper: float = 0.0
    level_window: int = 0

    @classmethod
    def fit(cls, history: pd.Series, config: ForecastConfig) -> Forecaster:
        """Fit on ``history`` (NaN dropped). Daily seasonality needs at least a day of data,
        weekly at least two weeks; shorter histories fit trend + noise only."""
        _quiet_prophet()
        from prophet import Prophet

        clean = history.dropna()
        if len(clean) < 3:
            raise ValueError(f"need at least 3 points to fit a forecast, got {len(clean)}")
        # the span a sample covers includes its own interval: 288 five-minute samples
        # are one day of data even though the first and last are 23:55 apart
        span = clean.index[-1] - clean.index[0] + pd.Timedelta(
            int(np.median(np.diff(clean.index.as_unit("ns").asi8))), "ns")
        sampled = config.interval_method == "sampled"
        model = Prophet(
            growth=config.growth,
            changepoint_prior_scale=config.changepoint_prior_scale,
            interval_width=config.interval_width,
            uncertainty_samples=config.uncertainty_samples if sampled else 0,
            daily_seasonality=False, weekly_seasonality=False, yearly_seasonality=False,
        )
        if span >= pd.Timedelta(days=1):
            model.add_seasonality("daily", period=1, fourier_order=config.daily_fourier_order)
        if span >= pd.Timedelta(days=14):
            model.add_seasonality("weekly", period=7, fourier_order=3)
        naive = clean.index.tz_convert("UTC").tz_localize(None)
        model.fit(pd.DataFrame({"ds": naive, "y": clean.to_numpy()}))
        lower = upper = 0.0
        if not sampled:
            fitted = model.predict(pd.DataFrame({"ds": naive}))["yhat"].to_numpy()
            resid = pd.Series(clean.to_numpy() - fitted)
            if config.level_window > 0:
                resid = (resid - _level(resid, config.level_window)).dropna()
            tail = (1 - config.interval_width) / 2
            lower, upper = (float(q) for q in np.quantile(resid, [tail, 1 - tail]))
        return cls(model=model, trained_until=clean.index[-1], n_train=len(clean),
                   interval_width=config.interval_width,
                   interval_method=config.interval_method, resid_lower=lower,
                   resid_upper=upper, level_window=config.level_window)

    def predict(self, timestamps: pd.DatetimeIndex, context: pd.Series | None = None
                ) -> pd.DataFrame:
        """``yhat``, ``lower``, ``upper`` per timestamp (UTC index).

        ``context``: observed values up to the last timestamp, starting at least
        ``level_window`` points earlier; only used for the level correction.
        """
        naive = timestamps.tz_convert("UTC").tz_localize(None)
        out = self.model.predict(pd.DataFrame({"ds": naive}))
        yhat = out["yhat"].to_numpy()
        if self.level_window > 0 and context is not None and len(context):
            ctx_naive = context.index.tz_convert("UTC").tz_localize(None)
            ctx_hat = self.model.predict(pd.DataFrame({"ds": ctx_naive}))["yhat"].to_numpy()
            resid = pd.Series(context.to_numpy() - ctx_hat, index=context.index)
            shift = _level(resid, self.level_window).reindex(timestamps).fillna(0.0)
            yhat = yhat + shift.to_numpy()
        if self.interval_method == "sampled":
            lower, upper = out["yhat_lower"].to_numpy(), out["yhat_upper"].to_numpy()
        else:
            lower, upper = yhat + self.resid_lower, yhat + self.resid_upper
        return pd.DataFrame({"yhat": yhat, "lower": lower, "upper": upper}, index=timestamps)

    def to_json(self) -> str:
        import json

        from prophet.serialize import model_to_json

        return json.dumps({"model": model_to_json(self.model),
                           "trained_until": self.trained_until.isoformat(),
                           "n_train": self.n_train, "interval_width": self.interval_width,
                           "interval_method": self.interval_method,
                           "resid_lower": self.resid_lower, "resid_upper": self.resid_upper,
                           "level_window": self.level_window})

    @classmethod
    def from_json(cls, text: str) -> Forecaster:
        import json

        from prophet.serialize import model_from_json

        _quiet_prophet()
        data = json.loads(text)
        return cls(model=model_from_json(data["model"]),
                   trained_until=pd.Timestamp(data["trained_until"]),
                   n_train=int(data["n_train"]), interval_width=float(data["interval_width"]),
                   interval_method=data.get("interval_method", "residual"),
                   resid_lower=float(data.get("resid_lower", 0.0)),
                   resid_upper=float(data.get("resid_upper", 0.0)),
                   level_window=int(data.get("level_window", 0)))


def _level(resid: pd.Series, window: int) -> pd.Series:
    """Median residual of the ``window`` points strictly before each point."""
    return resid.shift(1).rolling(window, min_periods=max(1, window // 2)).median()


def forecast_scores(pred: pd.DataFrame, values: pd.Series, scale: float) -> pd.DataFrame:
    """Signed residual in units of the interval half-width on the residual's side."""
    resid = values.to_numpy() - pred["yhat"].to_numpy()
    half = np.where(resid >= 0, pred["upper"].to_numpy() - pred["yhat"].to_numpy(),
                    pred["yhat"].to_numpy() - pred["lower"].to_numpy())
    half = np.maximum(half, 1e-9)
    score = resid / half
    out = pred.copy()
    out["fscore"] = score
    out["model2"] = np.abs(score) > scale
    return out


def _chunks(index: pd.DatetimeIndex, every: timedelta) -> Iterator[tuple[pd.Timestamp, np.ndarray]]:
    """Positions grouped by chunk of length ``every``, chunks aligned to midnight UTC of
    the first timestamp (so daily chunks are calendar days)."""
    origin = index[0].floor("D")
    step = pd.Timedelta(every).as_unit("ns").value
    keys = (index.as_unit("ns").asi8 - origin.as_unit("ns").value) // step
    bounds = np.flatnonzero(np.diff(keys)) + 1
    starts = np.concatenate([[0], bounds])
    ends = np.concatenate([bounds, [len(index)]])
    for s, e in zip(starts, ends, strict=True):
        yield origin + pd.Timedelta(int(keys[s]) * step), np.arange(s, e)


# --------------------------------------------------------------------------- categories


def categorize(values: np.ndarray, pos: int, *, deviation: float, sigma: float,
               model1: bool, config: CategoryConfig) -> Category:
    """Category of a flagged point (rules in the module docstring).

    ``deviation`` is measured from model 1's baseline mean when model 1 flagged the point,
    else from model 2's forecast; ``sigma`` is the matching spread.
    """
    k = config.trend_points
    if pos >= k - 1 and sigma > 0 and deviation != 0:
        window = values[pos - k + 1: pos + 1]
        if np.isfinite(window).all():
            x = np.arange(k, dtype=float)
            slope, intercept = np.polyfit(x, window, 1)
            fitted = slope * x + intercept
            ss_tot = float(((window - window.mean()) ** 2).sum())
            r2 = 1.0 - float(((window - fitted) ** 2).sum()) / ss_tot if ss_tot > 0 else 0.0
            rise = slope * (k - 1)
            last_step = abs(window[-1] - window[-2])
            if (r2 >= config.trend_min_r2 and np.sign(rise) == np.sign(deviation)
                    and abs(rise) >= config.trend_min_sigma * sigma
                    and last_step <= config.trend_max_step_fraction * abs(deviation)):
                return Category.trend
    if not model1:
        return Category.pattern
    return Category.spike if deviation > 0 else Category.drop


# --------------------------------------------------------------------------- detector


def _opt(value: Any) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else (
        float(value))


class Detector:
    """Model 1 + model 2 over one metric series.

    ``detect`` is a batch, causal replay: each point is judged only on what came before it,
    as the sensing loop would have judged it live. Pass ``forecaster`` (e.g. loaded from
    MLflow by the sensing DAG) to use a pre-trained model 2 for the points after its
    ``trained_until`` instead of retraining per chunk.
    """

    def __init__(self, config: DetectorConfig | None = None) -> None:
        self.config = config or DetectorConfig()

    def detect(self, data: pd.Series | pd.DataFrame, *,
               forecaster: Forecaster | None = None) -> DetectionResult:
        series = as_series(data)
        cfg = self.config
        frame = zscore_scores(series, cfg.zscore)
        frame.insert(0, "value", series)
        for col in ("yhat", "lower", "upper", "fscore"):
            frame[col] = np.nan
        frame["model2"] = pd.array([pd.NA] * len(frame), dtype="boolean")
        fits = 0
        if len(series):
            fits = self._run_forecasts(series, frame, forecaster)
        anomalies = self._collect(frame)
        high = np.zeros(len(frame), dtype=bool)
        high[[a.position for a in anomalies if a.high_confidence]] = True
        frame["high"] = high
        return DetectionResult(frame=frame, anomalies=anomalies, forecast_fits=fits, config=cfg)

    def _run_forecasts(self, series: pd.Series, frame: pd.DataFrame,
                       forecaster: Forecaster | None) -> int:
        fc = self.config.forecast
        confirmed = np.zeros(len(series), dtype=bool)
        model1 = frame["model1"].to_numpy(dtype=bool)
        fits = 0
        values = series.to_numpy()
        for start, positions in _chunks(series.index, fc.retrain_every):
            if self.config.lazy_forecast and not model1[positions].any():
                continue
            model = None
            if forecaster is not None and forecaster.trained_until < series.index[positions[0]]:
                model = forecaster
            else:
                lo = start - pd.Timedelta(fc.train_window)
                mask = (series.index < start) & (series.index >= lo)
                if fc.exclude_confirmed:
                    mask &= ~confirmed
                history = series[mask].dropna()
                if len(history) < 3 or (start - history.index[0]
                                        < pd.Timedelta(fc.min_train_history)):
                    continue  # model 2 abstains: too little history
                model = Forecaster.fit(history, fc)
                fits += 1
            live = positions[~np.isnan(values[positions])]
            if not len(live):
                continue
            context = None
            if model.level_window > 0:
                context = series.iloc[max(0, int(live[0]) - model.level_window): live[-1] + 1]
            scored = forecast_scores(model.predict(series.index[live], context),
                                     series.iloc[live], fc.interval_scale)
            for col in ("yhat", "lower", "upper", "fscore"):
                frame.iloc[live, frame.columns.get_loc(col)] = scored[col].to_numpy()
            frame.iloc[live, frame.columns.get_loc("model2")] = scored["model2"].to_numpy()
            agree = np.sign(scored["fscore"].to_numpy()) == np.sign(frame["z"].to_numpy()[live])
            confirmed[live] = model1[live] & scored["model2"].to_numpy(dtype=bool) & agree
        return fits

    def _collect(self, frame: pd.DataFrame) -> list[Anomaly]:
        cc = self.config.category
        values = frame["value"].to_numpy(dtype=float)
        m1 = frame["model1"].to_numpy(dtype=bool)
        m2_raw = frame["model2"]
        m2 = m2_raw.fillna(False).to_numpy(dtype=bool)
        fscore = frame["fscore"].to_numpy(dtype=float)
        with np.errstate(invalid="ignore"):
            pattern = m2 & (np.abs(fscore) > self.config.forecast.pattern_scale)
        z = frame["z"].to_numpy(dtype=float)
        with np.errstate(invalid="ignore"):
            agree = np.sign(z) == np.sign(fscore)
        band_z = NormalDist().inv_cdf(0.5 + self.config.forecast.interval_width / 2)
        out: list[Anomaly] = []
        for pos in np.flatnonzero(m1 | pattern):
            row = frame.iloc[pos]
            mean, std = _opt(row["mean"]), _opt(row["std"])
            yhat = _opt(row["yhat"])
            if m1[pos]:
                deviation = values[pos] - (mean if mean is not None else 0.0)
                sigma = std or 0.0
            else:  # model 2 only: residual against the forecast, its spread from the band
                deviation = values[pos] - (yhat if yhat is not None else 0.0)
                sigma = (float(row["upper"]) - float(row["lower"])) / (2 * band_z)
            category = categorize(values, int(pos), deviation=deviation, sigma=sigma,
                                  model1=bool(m1[pos]), config=cc)
            m2_value = None if pd.isna(m2_raw.iloc[pos]) else bool(m2_raw.iloc[pos])
            out.append(Anomaly(
                timestamp=frame.index[pos], value=float(values[pos]), z_score=_opt(row["z"]),
                baseline_mean=mean, baseline_std=std, forecast=yhat,
                forecast_lower=_opt(row["lower"]), forecast_upper=_opt(row["upper"]),
                forecast_score=_opt(row["fscore"]), model1=bool(m1[pos]), model2=m2_value,
                category=category,
                confidence=Confidence.high if (m1[pos] and m2[pos] and agree[pos])
                else Confidence.low,
                position=int(pos)))
        return out


def detect(data: pd.Series | pd.DataFrame, config: DetectorConfig | None = None
           ) -> DetectionResult:
    """Shortcut for ``Detector(config).detect(data)``."""
    return Detector(config).detect(data)


# --------------------------------------------------------------------------- input, lenient


@dataclass(frozen=True)
class SeriesIssue:
    """Something odd about one input row that the lenient reader put up with.

    ``row`` is the 0-based position in the input (a CSV reader maps it to a file line).
    ``kind``: ``repeated`` (same timestamp as an earlier row; both kept), ``out_of_order``
    (earlier than a previous row; sorted into place), ``missing_timestamp`` or
    ``missing_value`` (row dropped).
    """

    row: int
    kind: str
    message: str


def lenient_series(timestamps: Any, values: Any, *, strict: bool = False
                   ) -> tuple[pd.Series, np.ndarray, list[SeriesIssue]]:
    """Put ``(timestamps, values)`` in time order, putting up with what real exports do.

    Repeated timestamps (daylight-saving changes, agent restarts) are kept, in input order;
    rows out of time order are moved to their place (stable sort); rows without a
    timestamp or value are dropped. Each case is an issue in the returned list. With
    ``strict`` the first such row raises :class:`SeriesError` naming it instead.

    Returns the series (UTC index, non-decreasing), the input position of each of its rows
    and the issues.
    """
    index = pd.DatetimeIndex(pd.to_datetime(pd.Index(timestamps), utc=True, errors="coerce"))
    vals = pd.to_numeric(pd.Series(list(values)), errors="coerce").to_numpy(dtype=float)
    if len(index) != len(vals):
        raise SeriesError(f"{len(index)} timestamps but {len(vals)} values")
    issues: list[SeriesIssue] = []
    keep = np.ones(len(vals), dtype=bool)
    for pos in np.flatnonzero(index.isna()):
        issues.append(SeriesIssue(int(pos), "missing_timestamp",
                                  f"row {pos}: timestamp is missing; row dropped"))
        keep[pos] = False
    for pos in np.flatnonzero(~np.isfinite(vals) & keep):
        issues.append(SeriesIssue(int(pos), "missing_value",
                                  f"row {pos}: value is missing or not a finite number; "
                                  "row dropped"))
        keep[pos] = False
    rows = np.flatnonzero(keep)
    stamps = index.asi8[rows]
    repeated = pd.Index(stamps).duplicated(keep="first")
    before = np.concatenate([[np.iinfo(np.int64).min],
                             np.maximum.accumulate(stamps)[:-1]]) if len(stamps) else stamps
    earlier = (stamps < before) & ~repeated
    first_row = pd.Series(rows).groupby(stamps).transform("first").to_numpy()
    for k in np.flatnonzero(repeated):
        pos = int(rows[k])
        issues.append(SeriesIssue(pos, "repeated",
                                  f"row {pos}: timestamp {index[pos].isoformat()} repeats "
                                  f"row {int(first_row[k])}'s; both kept"))
    for k in np.flatnonzero(earlier):
        pos = int(rows[k])
        issues.append(SeriesIssue(pos, "out_of_order",
                                  f"row {pos}: timestamp {index[pos].isoformat()} is earlier "
                                  "than a previous row's; sorted into place"))
    issues.sort(key=lambda i: i.row)
    if strict and issues:
        raise SeriesError(issues[0].message.split(";")[0] + " (strict: refused)")
    order = np.argsort(stamps, kind="stable")
    rows = rows[order]
    series = pd.Series(vals[rows], index=index[rows], name="value")
    return series, rows, issues


# --------------------------------------------------------------------------- incidents


#: the incident detector's fixed channels, each a view of the series judged on its own
#: history; :attr:`IncidentConfig.long_means` adds ``mean<k>`` channels
CHANNELS = ("level", "change", "seasonal", "mean")


@dataclass(frozen=True)
class IncidentConfig:
    """The incident detector (:class:`IncidentDetector`). Windows count points, not time.

    Channels, each a robust z-score of one view of the series against the median and
    spread of its own ``window`` points strictly before t: ``level`` (the value),
    ``change`` (the step from the previous point), ``seasonal`` (the value minus the
    median of the values one, two, ... ``seasons`` earlier), ``mean`` (the mean of the
    last ``mean_points`` points) and one ``mean<k>`` per entry of ``long_means`` (the mean
    of the last k points). The means are the multi-scale part: a shift too small to stand
    out point by point stands out in a mean over an hour or half a day, whose own history
    is much less noisy. A channel's threshold of 0 switches it off.

    Defaults were chosen on the tuning half of the NAB development files
    (``nab.split_names``; see ``benchmarks/bench_detector.py`` and docs/detector.md), not
    on the held-out half: 5-minute samples, so 12 / 48 / 144 points are 1 h / 4 h / 12 h.
    For second-resolution live series see :func:`live_incident_config`.
    """

    #: baseline: median and spread of up to this many points strictly before t
    window: int = 4000
    min_history: int = 100
    #: a point can open an alert only beyond a channel's threshold (robust z) ...
    threshold: float = 4.0  # level
    #: off by default: on the tuning files every step worth an alert was also a level
    #: alert, and the steps alone were mostly noise (false positives)
    change_threshold: float = 0.0
    seasonal_threshold: float = 4.0
    #: every mean channel (``mean`` and the ``long_means``)
    mean_threshold: float = 5.0
    #: ... and only when that channel's score exceeds ``novelty_ratio`` times the largest
    #: score of the ``novelty_window`` points before it: a deviation larger than anything
    #: seen lately is news; one like yesterday's is not
    novelty_window: int = 8000
    #: a little above 1: an exactly repeating deviation (a spike every hour) scores the
    #: same each time up to rounding, and rounding must not make it news again
    novelty_ratio: float = 1.02
    mean_points: int = 12
    #: longer means, each its own channel ``mean<k>`` (k points, at least ``mean_points``)
    long_means: tuple[int, ...] = (48, 144)
    season: timedelta = timedelta(days=1)
    #: the seasonal channel compares with the median of this many earlier seasons
    seasons: int = 2
    #: an open alert closes after ``clear_points`` consecutive points below every
    #: threshold, or ``cooldown`` points after it opened, whichever comes first; a new
    #: alert needs the previous one closed
    cooldown: int = 100
    clear_points: int = 12
    #: spread floor: the baseline's IQR/1.349, but at least this fraction of its std (a
    #: series that is flat most of the time still has a scale) and ``min_scale``
    std_fraction: float = 0.2
    min_scale: float = 1e-9
    #: and at least this fraction of the baseline median's magnitude (0: off). A lab metric
    #: can sit perfectly still (CPU at exactly 12 %); a 1 % floor keeps a 0.2-point wobble
    #: from being a thousand "spreads" away (the two-model detector's ``min_std_fraction``)
    relative_floor: float = 0.0

    def __post_init__(self) -> None:
        for name in ("window", "min_history", "novelty_window", "cooldown", "clear_points",
                     "mean_points", "seasons"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be at least 1, got {getattr(self, name)}")
        if self.min_history < 2 or self.min_history > self.window:
            raise ValueError(f"min_history: must be between 2 and window ({self.window}), "
                             f"got {self.min_history}")
        if self.threshold <= 0:
            raise ValueError(f"threshold: must be positive, got {self.threshold}")
        for name in ("change_threshold", "seasonal_threshold", "mean_threshold",
                     "novelty_ratio", "relative_floor"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}: must be >= 0, got {getattr(self, name)}")
        if self.season <= timedelta(0):
            raise ValueError("season: must be positive")
        if any(k < 2 for k in self.long_means):
            raise ValueError(f"long_means: each must be at least 2 points, got "
                             f"{self.long_means}")

    def thresholds(self) -> dict[str, float]:
        """Threshold per active channel."""
        out = {"level": self.threshold, "change": self.change_threshold,
               "seasonal": self.seasonal_threshold, "mean": self.mean_threshold}
        for k in self.long_means:
            out[f"mean{k}"] = self.mean_threshold
        return {k: v for k, v in out.items() if v > 0}


@dataclass(frozen=True)
class Incident:
    """One alert event: from the point that opened it to the point that closed it."""

    start: pd.Timestamp
    end: pd.Timestamp | None  # None: still open at the end of the series
    start_position: int
    end_position: int  # last point of the incident (the series' last if still open)
    peak: pd.Timestamp
    peak_position: int
    peak_score: float  # in units of the channel's threshold (1 = at the threshold)
    channel: str  # the channel that opened it: level, change, seasonal, mean or mean<k>
    direction: str  # "up" or "down": the opening channel's deviation at the opening point
    points: int  # points at or above a threshold inside the incident

    def to_dict(self) -> dict[str, Any]:
        return {"start": self.start.isoformat(),
                "end": None if self.end is None else self.end.isoformat(),
                "peak": self.peak.isoformat(), "peak_score": self.peak_score,
                "channel": self.channel, "direction": self.direction, "points": self.points,
                "start_position": self.start_position, "end_position": self.end_position}


@dataclass
class IncidentResult:
    """Per point (``frame``, see :func:`incident_scores`): value, the channels' scores
    and novelty, ``score`` (largest channel score over its threshold), ``alert`` (the
    point opened an incident) and ``incident`` (its number, -1 outside any).
    ``incidents``: the alert events. ``issues``: input rows the lenient reader put up
    with. ``positions``: the input row of each frame row (the frame is in time order)."""

    frame: pd.DataFrame
    incidents: list[Incident]
    config: IncidentConfig
    issues: list[SeriesIssue] = field(default_factory=list)
    positions: np.ndarray | None = None  # input position of each frame row

    @property
    def alerts(self) -> np.ndarray:
        return self.frame["alert"].to_numpy(dtype=bool)


def robust_scores(view: pd.Series, config: IncidentConfig) -> dict[str, np.ndarray]:
    """One channel: robust z of each point against the median and spread of the
    ``window`` points strictly before it, and its novelty (score over the largest score of
    the ``novelty_window`` points before it). Arrays, in the order of ``view``."""
    roll = view.shift(1).rolling(config.window, min_periods=config.min_history)
    median = roll.median().to_numpy(dtype=float)
    iqr = roll.quantile(0.75).to_numpy(dtype=float) - roll.quantile(0.25).to_numpy(dtype=float)
    with np.errstate(invalid="ignore"):
        scale = np.fmax(iqr / 1.349, config.std_fraction * roll.std().to_numpy(dtype=float))
        if config.relative_floor > 0:
            scale = np.fmax(scale, config.relative_floor * np.abs(median))
        scale = np.where(scale > config.min_scale, scale, config.min_scale)
        scale[np.isnan(median)] = np.nan
    values = view.to_numpy(dtype=float)
    with np.errstate(invalid="ignore", over="ignore"):
        z = (values - median) / scale
    score = np.abs(z)
    recent = pd.Series(score).shift(1).rolling(config.novelty_window, min_periods=1).max()
    recent = recent.to_numpy(dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        novelty = score / recent
    novelty[(recent <= 0) & ~np.isnan(score)] = np.inf
    return {"median": median, "scale": scale, "z": z, "score": score, "novelty": novelty}


def seasonal_difference(series: pd.Series, season: timedelta, seasons: int = 1) -> pd.Series:
    """Value minus the median of the values 1, 2, ... ``seasons`` seasons earlier (each
    the nearest earlier row within half the median sampling step of that instant; those
    missing are left out, NaN when none is there). The median over several seasons keeps
    one anomalous day from making the next day look anomalous. Rows must be in time
    order; repeated timestamps are fine."""
    t = series.index.as_unit("ns").asi8
    n = len(t)
    if n < 2:
        return pd.Series(np.nan, index=series.index)
    lag = pd.Timedelta(season).as_unit("ns").value
    steps = np.diff(t)
    tolerance = max(1, int(np.median(steps[steps > 0])) // 2) if (steps > 0).any() else 1
    values = series.to_numpy(dtype=float)
    earlier = np.full((max(1, seasons), n), np.nan)
    for k in range(max(1, seasons)):
        target = t - (k + 1) * lag
        idx = np.clip(np.searchsorted(t, target, side="left"), 0, n - 1)
        found = (idx < np.arange(n)) & (np.abs(t[idx] - target) <= tolerance)
        earlier[k] = np.where(found, values[idx], np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: no reference
        reference = np.nanmedian(earlier, axis=0)
    return pd.Series(values - reference, index=series.index)


def incident_scores(series: pd.Series, config: IncidentConfig) -> pd.DataFrame:
    """Causal per-point scores of every active channel (vectorised; rows in time order).

    Columns: ``value``; the level channel's ``median``, ``scale`` and signed ``z``;
    ``<channel>`` (robust z magnitude) and ``<channel>_novelty`` per active channel;
    ``score``, the largest channel score in units of its threshold (1 = at the threshold),
    and ``channel``, the channel giving it (empty where nothing could be scored).
    """
    views = {"level": series, "change": series.diff(),
             "seasonal": seasonal_difference(series, config.season, config.seasons),
             "mean": series.rolling(config.mean_points, min_periods=config.mean_points).mean()}
    for k in config.long_means:
        views[f"mean{k}"] = series.rolling(k, min_periods=k).mean()
    level = robust_scores(series, config)
    columns: dict[str, np.ndarray] = {"value": series.to_numpy(dtype=float),
                                      "median": level["median"], "scale": level["scale"],
                                      "z": level["z"]}
    ratios = []
    for name, threshold in config.thresholds().items():
        scored = level if name == "level" else robust_scores(views[name], config)
        columns[name] = scored["score"]
        columns[f"{name}_novelty"] = scored["novelty"]
        columns[f"{name}_z"] = scored["z"]
        ratios.append(scored["score"] / threshold)
    filled = np.where(np.isnan(np.vstack(ratios)), -np.inf, np.vstack(ratios))
    best = filled.max(axis=0)
    columns["score"] = np.where(np.isneginf(best), np.nan, best)
    columns["channel"] = np.where(np.isneginf(best), "",
                                  np.array(list(config.thresholds()))[filled.argmax(axis=0)])
    return pd.DataFrame(columns, index=series.index)


def group_incidents(frame: pd.DataFrame, config: IncidentConfig) -> tuple[np.ndarray,
                                                                          np.ndarray,
                                                                          list[Incident]]:
    """Alert events from per-point scores: a point opens an incident when some channel is
    beyond its threshold and novel and no incident is open; the incident closes after
    ``clear_points`` points below every threshold or ``cooldown`` points after opening."""
    score = frame["score"].to_numpy(dtype=float)
    opens = np.zeros(len(frame), dtype=bool)
    opener = np.full(len(frame), "", dtype=object)
    for name, threshold in config.thresholds().items():
        with np.errstate(invalid="ignore"):
            hit = ((frame[name].to_numpy(dtype=float) >= threshold)
                   & (frame[f"{name}_novelty"].to_numpy(dtype=float) > config.novelty_ratio))
        opener[hit & ~opens] = name
        opens |= hit
    with np.errstate(invalid="ignore"):
        above = score >= 1.0
    n = len(score)
    alert = np.zeros(n, dtype=bool)
    member = np.full(n, -1, dtype=int)
    spans: list[tuple[int, int, bool]] = []  # (start, end, closed)
    pos = 0
    candidates = np.flatnonzero(opens)
    k = 0
    while k < len(candidates):
        start = int(candidates[k])
        if start < pos:
            k += 1
            continue
        alert[start] = True
        limit = min(n, start + config.cooldown)  # closes at this point at the latest
        end, below, closed = start, 0, False
        i = start + 1
        while i < limit:
            if above[i]:
                below, end = 0, i
            elif not np.isnan(score[i]):
                below += 1
                if below >= config.clear_points:
                    closed = True
                    break
            i += 1
        if not closed and limit < n:  # cooldown over: closed, a new alert may open
            closed, i = True, limit - 1
        last = i if closed else n - 1
        spans.append((start, end if closed else n - 1, closed))
        member[start:last + 1] = len(spans) - 1
        pos = last + 1 if closed else n
        k += 1
    index = frame.index
    incidents = []
    for start, end, closed in spans:
        seg = score[start:end + 1]
        peak = start + int(np.nanargmax(seg))
        incidents.append(Incident(
            start=index[start], end=index[end] if closed else None, start_position=start,
            end_position=end, peak=index[peak], peak_position=peak,
            peak_score=float(score[peak]), channel=str(opener[start]),
            direction="up" if frame[f"{opener[start]}_z"].iloc[start] > 0 else "down",
            points=int(np.count_nonzero(above[start:end + 1]))))
    return alert, member, incidents


class IncidentDetector:
    """A causal per-point score and alert *events* over one metric series.

    Each point is scored only on the points before it (in time order; repeated timestamps
    in input order) by four channels (:class:`IncidentConfig`): how far its value, its step
    from the previous point, its difference from the same time one season earlier and the
    mean of the last few points are from their own recent medians, in robust spread units.
    A point opens an incident when a channel passes its threshold *and* exceeds every
    score that channel gave in the ``novelty_window`` points before, so a long anomaly
    makes one alert, not one per row, and a deviation the series has been showing for a
    while does not alert again. See :class:`IncidentConfig` for closing and cooldown.
    """

    def __init__(self, config: IncidentConfig | None = None) -> None:
        self.config = config or IncidentConfig()

    def detect(self, data: pd.Series | pd.DataFrame, *, strict: bool = False
               ) -> IncidentResult:
        """Score ``data`` (a Series on a DatetimeIndex, or a frame with ``timestamp`` and
        ``value`` columns). Unordered, repeated or missing timestamps and missing values
        are put up with (``result.issues``) unless ``strict``."""
        if isinstance(data, pd.DataFrame):
            missing = [c for c in ("timestamp", "value") if c not in data.columns]
            if missing:
                raise SeriesError(f"missing column(s) {', '.join(missing)}; found "
                                  f"{', '.join(map(str, data.columns)) or 'none'}")
            stamps, values = data["timestamp"], data["value"]
        elif isinstance(data, pd.Series):
            if not isinstance(data.index, pd.DatetimeIndex):
                raise SeriesError("a Series must be indexed by timestamps (DatetimeIndex)")
            stamps, values = data.index, data
        else:
            raise SeriesError(f"expected a pandas Series or DataFrame, got "
                              f"{type(data).__name__}")
        series, positions, issues = lenient_series(stamps, values, strict=strict)
        return self.score(series, issues=issues, positions=positions)

    def score(self, series: pd.Series, *, issues: list[SeriesIssue] | None = None,
              positions: np.ndarray | None = None) -> IncidentResult:
        """Score a series already in time order (NaN values are skipped, not scored)."""
        frame = incident_scores(series.astype(float), self.config)
        alert, member, incidents = group_incidents(frame, self.config)
        frame["alert"] = alert
        frame["incident"] = member
        return IncidentResult(frame=frame, incidents=incidents, config=self.config,
                              issues=list(issues or []), positions=positions)

    def judge_live(self, series: pd.Series, *, high_score: float = 2.0, high_points: int = 3,
                   category: CategoryConfig | None = None) -> list[Anomaly]:
        """The healer's entry point: the incidents of a live lookback as the healer's
        :class:`Anomaly` records, oldest first, one per incident (not one per row).

        ``series``: the metric's lookback on a DatetimeIndex (NaN samples, repeated and
        out-of-order timestamps are put up with, as :meth:`detect` does; they cannot be
        refused mid-incident). Each incident is reported at its *newest evidence*: the
        latest point of it at or above a threshold, so an incident still going on stays
        recent for the healer however long ago it opened. Fields: ``value`` there,
        ``z_score`` the level's robust z there, ``baseline_mean`` / ``baseline_std`` the
        level's median and spread just before the incident opened (later baselines
        already contain it), ``position`` the evidence's row in time order; no
        forecast (``model2`` None: this detector has no model 2), ``model1`` True.

        ``confidence``: ``high`` (the healer may act) when the incident peaked at least
        ``high_score`` times its channel's threshold or has had at least ``high_points``
        points beyond a threshold (a clear or a sustained deviation); otherwise ``low``
        (alert only: one point just over the line). ``category``: ``trend`` when the
        points before the evidence rise or fall in a line (:func:`categorize`, gradual:
        a leak); else ``pattern`` when the seasonal channel opened it (an ordinary value
        at the wrong time of day); else ``spike`` / ``drop`` by direction.
        """
        if high_points < 1 or high_score <= 0:
            raise ValueError("high_points must be >= 1 and high_score > 0")
        rules = category or CategoryConfig()
        result = self.detect(series)
        frame = result.frame
        values = frame["value"].to_numpy(dtype=float)
        score = frame["score"].to_numpy(dtype=float)
        out: list[Anomaly] = []
        for incident in result.incidents:
            span = score[incident.start_position:incident.end_position + 1]
            with np.errstate(invalid="ignore"):
                hits = np.flatnonzero(span >= 1.0)
            pos = incident.start_position + (int(hits[-1]) if len(hits) else 0)
            # the baseline *before* the incident: later ones already contain it
            median = _opt(frame["median"].iloc[incident.start_position])
            scale = _opt(frame["scale"].iloc[incident.start_position])
            deviation = values[pos] - (median if median is not None else values[pos])
            if deviation == 0:  # the level is back: the opening channel's direction counts
                deviation = 1.0 if incident.direction == "up" else -1.0
            kind = categorize(values, pos, deviation=deviation, sigma=scale or 0.0,
                              model1=incident.channel != "seasonal", config=rules)
            if kind in (Category.spike, Category.drop):
                kind = Category.spike if incident.direction == "up" else Category.drop
            high = incident.peak_score >= high_score or incident.points >= high_points
            out.append(Anomaly(
                timestamp=frame.index[pos], value=float(values[pos]),
                z_score=_opt(frame["z"].iloc[pos]), baseline_mean=median,
                baseline_std=scale, forecast=None, forecast_lower=None, forecast_upper=None,
                forecast_score=None, model1=True, model2=None, category=kind,
                confidence=Confidence.high if high else Confidence.low, position=pos))
        return out


def live_incident_config() -> IncidentConfig:
    """Incident detector settings for the healer's live series (one sample a second, a
    ten-minute lookback): a five-minute baseline judged after 30 samples (a median and
    IQR of fewer are too rough: ten samples made a false alert in one of three quiet
    lookbacks), novelty over the same five minutes, 5- and 30-sample means, no seasonal
    channel (a ten-minute lookback holds no earlier day), and a spread floor of 1 % of
    the level (lab metrics can sit perfectly still). An incident closes only after 5
    quiet samples (the cooldown is the whole lookback): a deviation still going on stays
    one open incident whose newest evidence is recent, which is what the healer acts on.
    Not tuned on NAB (5-minute data); the lab chaos tests are its check."""
    return IncidentConfig(window=300, min_history=30, novelty_window=300, mean_points=5,
                          long_means=(30,), seasonal_threshold=0.0, cooldown=600,
                          clear_points=5, relative_floor=0.01)
