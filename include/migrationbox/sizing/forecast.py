"""Utilisation forecasts 30, 60 and 90 days ahead, with intervals (Prophet).

A forecast is fitted per server and metric on hourly means of its history. What is
*trained* (and tracked, registered and promoted) is the forecaster's configuration:
trend growth, changepoint prior and interval width are chosen on the training VMs of
the trace and judged on held-out VMs by the error of the 30-day forecast and the
coverage of its interval (``evaluate_config``).

A few days of history do not support a trend: a linear trend fitted on one week
extrapolates a Monday spike into a 200 % CPU prediction a month later. Hence the
candidates include ``flat`` growth (seasonality around a level), and forecasts of
percentages are clipped to 0..100.

A server with only a discovery baseline has no series to fit: it gets an explicit
``baseline-fallback`` forecast (the baseline held flat, no interval) that says so.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

    from migrationbox.sizing.features import ServerProfile

HORIZONS = (30, 60, 90)
PERCENT_METRICS = {"cpu_pct", "mem_pct"}
MIN_HISTORY_HOURS = 48


@dataclass(frozen=True, slots=True)
class ForecastConfig:
    growth: str = "flat"  # flat | linear
    changepoint_prior_scale: float = 0.05
    interval_width: float = 0.9

    @property
    def name(self) -> str:
        return f"{self.growth}-cps{self.changepoint_prior_scale:g}-iw{self.interval_width:g}"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


CANDIDATES = (
    ForecastConfig("flat"),
    ForecastConfig("linear", 0.01),
    ForecastConfig("linear", 0.05),
)


@dataclass(frozen=True, slots=True)
class ForecastPoint:
    """The forecast over the 7 days that end ``horizon_days`` after the history."""

    horizon_days: int
    mean: float
    lower: float | None
    upper: float | None
    peak_upper: float | None


@dataclass
class MetricForecast:
    metric: str
    method: str  # "prophet:<config>" or "baseline-fallback"
    points: list[ForecastPoint] = field(default_factory=list)
    note: str = ""
    history_days: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "method": self.method, "note": self.note,
                "history_days": round(self.history_days, 2),
                "points": [asdict(p) for p in self.points]}


def _quiet() -> None:
    """Silence Stan's per-fit INFO lines and Prophet's plotly notice (idempotent)."""
    for name in ("cmdstanpy", "prophet", "prophet.plot"):
        logger = logging.getLogger(name)
        logger.setLevel(logging.ERROR)
        if not any(isinstance(h, logging.NullHandler) for h in logger.handlers):
            # cmdstanpy installs its own INFO handler unless one exists
            logger.addHandler(logging.NullHandler())


def hourly(ts_s: np.ndarray, values: np.ndarray) -> pd.DataFrame:
    """Hourly means as Prophet's (ds, y) frame."""
    import pandas as pd

    frame = pd.DataFrame({"ds": pd.to_datetime(np.asarray(ts_s, dtype=np.int64), unit="s"),
                          "y": np.asarray(values, dtype=float)})
    out = frame.set_index("ds")["y"].resample("1h").mean().dropna().reset_index()
    return out


def fit(frame: pd.DataFrame, config: ForecastConfig) -> Any:
    """A fitted Prophet model (daily seasonality from 2 days, weekly from 14)."""
    _quiet()
    from prophet import Prophet

    days = (frame["ds"].iloc[-1] - frame["ds"].iloc[0]).total_seconds() / 86400
    model = Prophet(growth=config.growth, changepoint_prior_scale=config.changepoint_prior_scale,
                    interval_width=config.interval_width, daily_seasonality=days >= 2,
                    weekly_seasonality=days >= 14, yearly_seasonality=False,
                    uncertainty_samples=200)
    model.fit(frame)
    return model


def predict(model: Any, last: pd.Timestamp, hours: int, clip_max: float | None) -> pd.DataFrame:
    import pandas as pd

    future = pd.DataFrame({"ds": pd.date_range(last + pd.Timedelta(hours=1), periods=hours,
                                               freq="h")})
    out = model.predict(future)[["ds", "yhat", "yhat_lower", "yhat_upper"]]
    for col in ("yhat", "yhat_lower", "yhat_upper"):
        out[col] = out[col].clip(lower=0, upper=clip_max)
    return out


def forecast_metric(ts_s: np.ndarray, values: np.ndarray, metric: str,
                    config: ForecastConfig | None = None,
                    horizons: tuple[int, ...] = HORIZONS) -> MetricForecast:
    """Prophet forecast of one metric at each horizon (mean, interval, peak of the upper)."""
    config = config or ForecastConfig()
    frame = hourly(ts_s, values)
    history_days = len(frame) / 24
    if len(frame) < MIN_HISTORY_HOURS:
        raise ValueError(f"{metric}: {len(frame)} hours of history; a forecast needs at least "
                         f"{MIN_HISTORY_HOURS}")
    model = fit(frame, config)
    clip = 100.0 if metric in PERCENT_METRICS else None
    pred = predict(model, frame["ds"].iloc[-1], max(horizons) * 24, clip)
    points = []
    for h in horizons:
        window = pred.iloc[max(0, (h - 7) * 24): h * 24]
        points.append(ForecastPoint(
            horizon_days=h, mean=round(float(window["yhat"].mean()), 3),
            lower=round(float(window["yhat_lower"].mean()), 3),
            upper=round(float(window["yhat_upper"].mean()), 3),
            peak_upper=round(float(window["yhat_upper"].max()), 3)))
    note = (f"fitted on {history_days:.1f} days of hourly means; "
            f"{config.interval_width:.0%} interval")
    if max(horizons) > 3 * history_days:
        note += (f"; horizons beyond {3 * history_days:.0f} days extrapolate far past the "
                 f"history: read them as a level, not a trend")
    return MetricForecast(metric, f"prophet:{config.name}", points, note, history_days)


def forecast_features(ts_s: np.ndarray, cpu_pct: np.ndarray, mem_pct: np.ndarray,
                      config: ForecastConfig | None = None) -> dict[str, float]:
    """The model's forecast features: 30-day mean and highest upper bound, CPU and memory."""
    out: dict[str, float] = {}
    for key, values in (("cpu", cpu_pct), ("mem", mem_pct)):
        try:
            f = forecast_metric(ts_s, values, f"{key}_pct", config, horizons=(30,))
        except ValueError:
            continue
        out[f"fc_{key}_mean"] = f.points[0].mean
        out[f"fc_{key}_upper"] = f.points[0].peak_upper or math.nan
    return out


def baseline_fallback(profile: ServerProfile, horizons: tuple[int, ...] = HORIZONS
                      ) -> dict[str, MetricForecast]:
    """The explicit no-history forecast: the discovery averages held flat."""
    note = ("no utilisation history: the discovery baseline average is held flat for every "
            "horizon; no interval can be estimated (give --history to forecast)")
    out = {}
    for metric, value in (("cpu_pct", profile.cpu.avg), ("mem_pct", profile.memory.avg)):
        out[metric] = MetricForecast(
            metric, "baseline-fallback",
            [ForecastPoint(h, round(value, 3), None, None, None) for h in horizons], note, 0.0)
    return out


def evaluate_config(series: list[tuple[np.ndarray, np.ndarray]], config: ForecastConfig,
                    history_days: int = 28, horizon_days: int = 30) -> dict[str, float]:
    """Backtest one configuration: fit on ``history_days``, judge the next ``horizon_days``.

    Returns the mean absolute error of hourly means (percentage points), the share of
    hours inside the interval, and how many series were judged.
    """
    errors: list[float] = []
    covered: list[float] = []
    for ts_s, values in series:
        frame = hourly(ts_s, values)
        if frame.empty:
            continue
        start = frame["ds"].iloc[0]
        import pandas as pd

        cut = start + pd.Timedelta(days=history_days)
        end = cut + pd.Timedelta(days=horizon_days)
        hist = frame[frame["ds"] < cut]
        actual = frame[(frame["ds"] >= cut) & (frame["ds"] < end)]
        if len(hist) < MIN_HISTORY_HOURS or len(actual) < 24:
            continue
        model = fit(hist, config)
        pred = predict(model, hist["ds"].iloc[-1], horizon_days * 24 + 24, 100.0)
        joined = actual.merge(pred, on="ds", how="inner")
        if joined.empty:
            continue
        errors.append(float(np.abs(joined["y"] - joined["yhat"]).mean()))
        covered.append(float(((joined["y"] >= joined["yhat_lower"])
                              & (joined["y"] <= joined["yhat_upper"])).mean()))
    return {"mae": float(np.mean(errors)) if errors else math.nan,
            "coverage": float(np.mean(covered)) if covered else math.nan,
            "series": float(len(errors))}


def pyfunc_model(config: ForecastConfig) -> Any:
    """The forecaster as an MLflow pyfunc: input (ds, y) of one series -> hourly forecast."""
    import mlflow.pyfunc

    class ForecasterPyfunc(mlflow.pyfunc.PythonModel):
        def __init__(self, cfg: ForecastConfig) -> None:
            self.config = cfg

        def predict(self, context: Any, model_input: pd.DataFrame,
                    params: dict[str, Any] | None = None) -> pd.DataFrame:
            import pandas as pd

            horizon = int((params or {}).get("horizon_days", 30))
            frame = model_input[["ds", "y"]].copy()
            frame["ds"] = pd.to_datetime(frame["ds"])
            model = fit(frame, self.config)
            return predict(model, frame["ds"].iloc[-1], horizon * 24, None)

    return ForecasterPyfunc(config)
