"""MLflow tracking for the healer's models: where runs go, and the forecaster round trip.

Runs go to ``MLFLOW_TRACKING_URI`` when set (an MLflow server in production), else to a
local SQLite tracking store under ``<runtime_dir>/mlflow`` with its artifacts beside it.

The Prophet forecaster of each metric (model 2) is logged as one JSON artifact per run,
tagged with the metric key, so that a scheduled retraining DAG can call
:func:`log_forecaster` and the sensing path :func:`load_latest_forecaster` instead of
fitting inline.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from migrationbox.healer.detect import Forecaster

FORECAST_EXPERIMENT = "migrationbox-healer-forecast"
FORECASTER_ARTIFACT = "forecaster.json"


def mlflow_tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI`` or a local SQLite store under ``<runtime_dir>/mlflow``."""
    explicit = os.environ.get("MLFLOW_TRACKING_URI")
    if explicit:
        return explicit
    from migrationbox.config import runtime_dir

    folder = runtime_dir() / "mlflow"
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / 'mlflow.db'}"


def experiment_id(mlflow: Any, name: str, tracking_uri: str) -> str:
    """The experiment's id, creating it (artifacts beside a local SQLite store) if new."""
    experiment = mlflow.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    artifact_location = None
    if tracking_uri.startswith("sqlite:///"):
        artifacts = Path(tracking_uri.removeprefix("sqlite:///")).parent / "artifacts"
        artifacts.mkdir(parents=True, exist_ok=True)
        artifact_location = artifacts.resolve().as_uri()
    return mlflow.create_experiment(name, artifact_location=artifact_location)


def log_forecaster(metric_key: str, forecaster: Forecaster, *,
                   tracking_uri: str | None = None,
                   metrics: dict[str, float] | None = None) -> str:
    """Log one trained forecaster for ``metric_key`` (e.g. ``web-01/cpu_utilization_pct``);
    returns the run id."""
    import mlflow

    uri = tracking_uri or mlflow_tracking_uri()
    mlflow.set_tracking_uri(uri)
    with mlflow.start_run(experiment_id=experiment_id(mlflow, FORECAST_EXPERIMENT, uri)) as run:
        mlflow.set_tags({"metric_key": metric_key,
                         "trained_until": forecaster.trained_until.isoformat()})
        mlflow.log_params({"n_train": forecaster.n_train,
                           "interval_width": forecaster.interval_width,
                           "interval_method": forecaster.interval_method,
                           "level_window": forecaster.level_window})
        if metrics:
            mlflow.log_metrics(metrics)
        mlflow.log_text(forecaster.to_json(), FORECASTER_ARTIFACT)
        return run.info.run_id


def load_latest_forecaster(metric_key: str, *, tracking_uri: str | None = None
                           ) -> Forecaster | None:
    """The most recently logged forecaster of ``metric_key``, or None if there is none."""
    import mlflow

    from migrationbox.healer.detect import Forecaster

    uri = tracking_uri or mlflow_tracking_uri()
    mlflow.set_tracking_uri(uri)
    experiment = mlflow.get_experiment_by_name(FORECAST_EXPERIMENT)
    if experiment is None:
        return None
    escaped = metric_key.replace("'", "\\'")
    runs = mlflow.search_runs([experiment.experiment_id],
                              filter_string=f"tags.metric_key = '{escaped}'",
                              order_by=["attributes.start_time DESC"], max_results=1,
                              output_format="list")
    if not runs:
        return None
    text = mlflow.artifacts.load_text(f"{runs[0].info.artifact_uri}/{FORECASTER_ARTIFACT}")
    return Forecaster.from_json(text)
