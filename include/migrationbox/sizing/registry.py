"""MLflow tracking and the model registry: where trained models live and which one serves.

Local default: a SQLite tracking store and an artifact folder under
``<runtime>/mlflow`` (git-ignored); production: ``MLFLOW_TRACKING_URI`` pointing at a
PostgreSQL database or a tracking server, and ``MIGRATIONBOX_MLFLOW_ARTIFACT_ROOT``
putting the artifacts in object storage (``migrationbox.mlflow_backend``), so a model
registered by one worker loads on any host. Two registered models, each with a
``champion`` alias:

- ``migrationbox-sizing``: the LightGBM quantile model with conformal risk calibration;
- ``migrationbox-forecaster``: the chosen Prophet configuration (pyfunc).

A challenger is registered as a new version without the alias; ``promote`` moves the
alias only when the comparison on the same held-out servers says so, and records
why on the version (tags), so the registry itself explains every promotion.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from migrationbox import mlflow_backend

SIZING_MODEL = "migrationbox-sizing"
FORECAST_MODEL = "migrationbox-forecaster"
CHAMPION = "champion"
EXPERIMENT = "migrationbox-sizing"
RISK_ARTIFACT = "evaluation/option_risk.json"


def mlflow_dir() -> Path:
    from migrationbox.config import runtime_dir

    path = runtime_dir() / "mlflow"
    path.mkdir(parents=True, exist_ok=True)
    return path


def local_uri() -> str:
    return f"sqlite:///{mlflow_dir() / 'mlflow.db'}"


_SET_BY_US: set[str] = set()  # mlflow.set_tracking_uri exports what it is given


def tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI`` if the user set it, else the local SQLite store."""
    explicit = mlflow_backend.tracking_uri_from_env()
    if explicit and explicit not in _SET_BY_US:
        return explicit
    return local_uri()


def is_local() -> bool:
    """True for the embedded store (MLflow itself exports the URI it is given)."""
    return tracking_uri() == local_uri()


def artifact_location() -> str:
    return (mlflow_dir() / "artifacts").as_uri()


def store_exists() -> bool:
    """Whether there is a registry to ask (without creating an empty local one)."""
    if not is_local():
        return True
    from migrationbox.config import runtime_dir

    return (runtime_dir() / "mlflow" / "mlflow.db").exists()


def configure() -> Any:
    """Point MLflow at the store and return a client (the store's schema and the artifact
    store's credentials made ready once per process: ``mlflow_backend.prepare``)."""
    import mlflow

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    uri = tracking_uri()
    if is_local():
        _SET_BY_US.add(uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    mlflow_backend.prepare(uri)
    return mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)


def experiment_id(name: str = EXPERIMENT) -> str:
    """The experiment, created with its artifacts under the configured artifact root, else
    in the runtime folder for the local store (not the CWD), else where the server says."""
    client = configure()
    return mlflow_backend.get_or_create_experiment(
        client, name, local_location=artifact_location() if is_local() else None)


@dataclass(frozen=True, slots=True)
class Champion:
    name: str
    version: str
    run_id: str
    tags: dict[str, str]


def champion(name: str) -> Champion | None:
    """The version holding the ``champion`` alias, or None."""
    client = configure()
    try:
        mv = client.get_model_version_by_alias(name, CHAMPION)
    except Exception:  # no such model or alias
        return None
    return Champion(name, str(mv.version), mv.run_id or "", dict(mv.tags or {}))


def load_model(name: str, version: str | None = None) -> Any:
    """A registered model as pyfunc: a given version, or the champion."""
    import mlflow.pyfunc

    configure()
    uri = f"models:/{name}/{version}" if version else f"models:/{name}@{CHAMPION}"
    return mlflow.pyfunc.load_model(uri)


def unwrap(pyfunc_model: Any) -> Any:
    """The Python object behind a pyfunc model (our ensemble or forecaster)."""
    return pyfunc_model.unwrap_python_model()


def promote(name: str, version: str, reason: str, metrics: dict[str, float]) -> None:
    """Give ``version`` the champion alias and record why on the version."""
    client = configure()
    client.set_registered_model_alias(name, CHAMPION, version)
    client.set_model_version_tag(name, version, "promotion_reason", reason)
    client.set_model_version_tag(name, version, "promotion_metrics",
                                 json.dumps({k: round(v, 6) for k, v in metrics.items()}))


def reject(name: str, version: str, reason: str) -> None:
    client = configure()
    client.set_model_version_tag(name, version, "rejected_reason", reason)


def champion_risk_table() -> dict[str, Any] | None:
    """The option-risk table measured with the champion sizing model, if any."""
    if not store_exists():
        return None
    champ = champion(SIZING_MODEL)
    if champ is None or not champ.run_id:
        return None
    import mlflow.artifacts

    configure()
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = mlflow.artifacts.download_artifacts(run_id=champ.run_id,
                                                       artifact_path=RISK_ARTIFACT, dst_path=tmp)
        except Exception:
            return None
        table = json.loads(Path(path).read_text(encoding="utf-8"))
    table["source"] = f"MLflow {SIZING_MODEL} v{champ.version} (run {champ.run_id[:8]})"
    return table


def load_champion_ensemble() -> tuple[Any, Champion] | None:
    """The champion sizing model, or None when there is no registry or no champion."""
    if not store_exists():
        return None
    champ = champion(SIZING_MODEL)
    if champ is None:
        return None
    return unwrap(load_model(SIZING_MODEL)).model, champ


def champion_card(name: str = SIZING_MODEL) -> dict[str, Any] | None:
    """The champion with its promotion reason and its run's metrics and parameters, as
    MLflow recorded them (what the demo and ``migrationbox size`` show), or None."""
    if not store_exists():
        return None
    champ = champion(name)
    if champ is None:
        return None
    client = configure()
    metrics: dict[str, float] = {}
    params: dict[str, str] = {}
    if champ.run_id:
        run = client.get_run(champ.run_id)
        metrics, params = dict(run.data.metrics), dict(run.data.params)
    return {"name": name, "version": champ.version, "run_id": champ.run_id,
            "reason": champ.tags.get("promotion_reason"), "metrics": metrics,
            "params": params, "tracking_uri": tracking_uri()}
