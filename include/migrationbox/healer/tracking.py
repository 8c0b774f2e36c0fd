"""MLflow tracking for the healer's models: where runs go, and the forecaster round trip.

Runs go to ``MLFLOW_TRACKING_URI`` when set (a PostgreSQL database or an MLflow server in
production), else to a local SQLite tracking store under ``<runtime_dir>/mlflow`` with its
artifacts beside it. ``MIGRATIONBOX_MLFLOW_ARTIFACT_ROOT`` puts the artifacts of the
experiments created here in object storage instead (``migrationbox.mlflow_backend``), so
a forecaster or classifier logged on one worker is readable from any host.

The Prophet forecaster of each metric (model 2) is logged as one JSON artifact per run,
tagged with the metric key, so that a scheduled retraining DAG can call
:func:`log_forecaster` and the sensing path :func:`load_latest_forecaster` instead of
fitting inline.

Why the sensing path does not ask MLflow each time: ``import mlflow`` alone takes 5-15 s
on the 2-core lab machine, and a woken heal run is a fresh process, so a lookup per run
(let alone per metric) put those seconds between an incident and its detection. Every
forecaster :func:`log_forecaster` logs is therefore also written to a small *forecaster
index* beside the tracking store (``{metric_key: run_id}`` plus one JSON file per run):
reading it is a ``stat`` and a JSON parse. It is a cache of MLflow, never the other way
round: keyed by run id, rewritten whenever a newer forecaster is logged (the in-process
cache follows the index file's modification time), and rebuilt from one MLflow search
when it is missing (forecasters logged before it existed, or by another host) or when a
rebuilt index is older than ``INDEX_REBUILD_AFTER_S`` (a day; the retraining is weekly).
On a shared tracking store (PostgreSQL or a server, not this host's SQLite file) the
retraining may run on any worker, so even a host that logged forecasters itself keeps
that daily re-search: otherwise it would serve its own forecasters forever once another
host retrained newer ones.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from migrationbox import mlflow_backend

if TYPE_CHECKING:
    from migrationbox.healer.detect import Forecaster

FORECAST_EXPERIMENT = "migrationbox-healer-forecast"
FORECASTER_ARTIFACT = "forecaster.json"
#: an index rebuilt from an MLflow search (not written by this host's retraining) is
#: searched again after this long, so that models logged elsewhere are picked up
INDEX_REBUILD_AFTER_S = 24 * 3600.0
#: forecasters loaded in this process, by (metric key, run id): a newer run is a new key
_models: dict[tuple[str, str], Forecaster] = {}
#: the parsed index per index file, with the file's mtime when it was read
_indexes: dict[Path, tuple[float, dict[str, Any]]] = {}
_lock = threading.RLock()


def mlflow_tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI`` or a local SQLite store under ``<runtime_dir>/mlflow``."""
    explicit = mlflow_backend.tracking_uri_from_env()
    if explicit:
        return explicit
    from migrationbox.config import runtime_dir

    folder = runtime_dir() / "mlflow"
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / 'mlflow.db'}"


def use(mlflow: Any, tracking_uri: str) -> None:
    """Point the fluent ``mlflow`` API at ``tracking_uri`` and make the store usable from
    this process (``mlflow_backend.prepare``: the PostgreSQL schema, S3 credentials)."""
    mlflow.set_tracking_uri(tracking_uri)
    mlflow_backend.prepare(tracking_uri)


def experiment_id(mlflow: Any, name: str, tracking_uri: str) -> str:
    """The experiment's id, creating it if new: its artifacts under the configured
    artifact root, else beside a local SQLite store, else where MLflow puts them."""
    artifact_location = None
    if tracking_uri.startswith("sqlite:///") and mlflow_backend.artifact_root() is None:
        artifacts = Path(tracking_uri.removeprefix("sqlite:///")).parent / "artifacts"
        artifacts.mkdir(parents=True, exist_ok=True)
        artifact_location = artifacts.resolve().as_uri()
    return mlflow_backend.get_or_create_experiment(mlflow, name,
                                                   local_location=artifact_location)


def index_dir(tracking_uri: str) -> Path:
    """Where the forecaster index of ``tracking_uri`` lives: beside a SQLite store, else
    under ``<runtime_dir>/mlflow`` (one folder per tracking URI)."""
    if tracking_uri.startswith("sqlite:///"):
        return Path(tracking_uri.removeprefix("sqlite:///")).parent / "forecaster-index"
    from migrationbox.config import runtime_dir

    digest = hashlib.sha256(tracking_uri.encode()).hexdigest()[:12]
    return runtime_dir() / "mlflow" / f"forecaster-index-{digest}"


def _read_index(folder: Path) -> dict[str, Any] | None:
    """The index document (``entries``: metric key -> run id, file, logged_at), parsed
    once per change of the file; None when there is none (or it is unreadable)."""
    path = folder / "index.json"
    try:
        mtime = path.stat().st_mtime
    except FileNotFoundError:
        return None
    with _lock:
        cached = _indexes.get(path)
        if cached is not None and cached[0] == mtime:
            return cached[1]
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(doc, dict) or not isinstance(doc.get("entries"), dict):
            return None
        _indexes[path] = (mtime, doc)
        return doc


def _write_index(folder: Path, doc: dict[str, Any]) -> None:
    from migrationbox.fileio import atomic_write_text

    atomic_write_text(folder / "index.json", json.dumps(doc, indent=1, sort_keys=True))


def _record(folder: Path, metric_key: str, run_id: str, text: str, logged_at: str, *,
            shared: bool = False) -> None:
    """Store one forecaster's JSON and point the index's entry for ``metric_key`` at it
    (only if it is newer than the entry already there).

    ``shared``: the tracking store is not this host's SQLite file, so other hosts may log
    newer forecasters too; the index keeps its ``rebuilt_at`` (the periodic re-search)
    instead of counting on this host's retraining to keep it current."""
    from migrationbox.fileio import atomic_write_text

    with _lock:
        atomic_write_text(folder / f"{run_id}.json", text)
        doc = _read_index(folder) or {"entries": {}}
        entries = dict(doc["entries"])
        old = entries.get(metric_key)
        if old is None or str(old.get("logged_at", "")) <= logged_at:
            entries[metric_key] = {"run_id": run_id, "file": f"{run_id}.json",
                                   "logged_at": logged_at}
        if shared:  # retrainings elsewhere: keep searching MLflow once a day
            _write_index(folder, doc | {"entries": entries,
                                        "rebuilt_at": doc.get("rebuilt_at", time.time())})
            return
        # maintained by this host's retraining from now on: no periodic re-search
        _write_index(folder, {k: v for k, v in doc.items() if k != "rebuilt_at"}
                     | {"entries": entries})


def log_forecaster(metric_key: str, forecaster: Forecaster, *,
                   tracking_uri: str | None = None,
                   metrics: dict[str, float] | None = None) -> str:
    """Log one trained forecaster for ``metric_key`` (e.g. ``web-01/cpu_utilization_pct``)
    to MLflow and to the forecaster index; returns the run id."""
    import mlflow

    uri = tracking_uri or mlflow_tracking_uri()
    use(mlflow, uri)
    text = forecaster.to_json()
    with mlflow.start_run(experiment_id=experiment_id(mlflow, FORECAST_EXPERIMENT, uri)) as run:
        mlflow.set_tags({"metric_key": metric_key,
                         "trained_until": forecaster.trained_until.isoformat()})
        mlflow.log_params({"n_train": forecaster.n_train,
                           "interval_width": forecaster.interval_width,
                           "interval_method": forecaster.interval_method,
                           "level_window": forecaster.level_window})
        if metrics:
            mlflow.log_metrics(metrics)
        mlflow.log_text(text, FORECASTER_ARTIFACT)
        run_id = run.info.run_id
        started = datetime.fromtimestamp(run.info.start_time / 1000, UTC).isoformat()
    folder = index_dir(uri)
    if not (folder / "index.json").exists():  # forecasters logged before the index
        rebuild_index(uri)
    _record(folder, metric_key, run_id, text, started,
            shared=not uri.startswith("sqlite:///"))
    return run_id


def rebuild_index(tracking_uri: str | None = None) -> dict[str, Any]:
    """Rebuild the forecaster index from MLflow: one search over the experiment, the
    newest finished run per metric key, each artifact copied once."""
    import mlflow

    uri = tracking_uri or mlflow_tracking_uri()
    folder = index_dir(uri)
    use(mlflow, uri)
    entries: dict[str, dict[str, str]] = {}
    experiment = mlflow.get_experiment_by_name(FORECAST_EXPERIMENT)
    if experiment is not None:
        runs = mlflow.search_runs([experiment.experiment_id],
                                  filter_string="attributes.status = 'FINISHED'",
                                  order_by=["attributes.start_time DESC"],
                                  max_results=50_000, output_format="list")
        for run in runs:
            key = run.data.tags.get("metric_key")
            if not key or key in entries:
                continue
            path = folder / f"{run.info.run_id}.json"
            if not path.exists():
                from migrationbox.fileio import atomic_write_text

                atomic_write_text(path, mlflow.artifacts.load_text(
                    f"{run.info.artifact_uri}/{FORECASTER_ARTIFACT}"))
            entries[key] = {"run_id": run.info.run_id, "file": path.name,
                            "logged_at": datetime.fromtimestamp(
                                run.info.start_time / 1000, UTC).isoformat()}
    doc = {"entries": entries, "rebuilt_at": time.time()}
    with _lock:
        _write_index(folder, doc)
    return doc


def forecaster_index(tracking_uri: str | None = None) -> dict[str, Any]:
    """The current index (``entries``), rebuilt from MLflow when missing or stale."""
    uri = tracking_uri or mlflow_tracking_uri()
    folder = index_dir(uri)
    with _lock:
        doc = _read_index(folder)
        rebuilt = doc.get("rebuilt_at") if doc is not None else None
        if doc is None or (isinstance(rebuilt, (int, float))
                           and time.time() - rebuilt > INDEX_REBUILD_AFTER_S):
            doc = rebuild_index(uri)
        return doc


def load_latest_forecaster(metric_key: str, *, tracking_uri: str | None = None
                           ) -> Forecaster | None:
    """The most recently logged forecaster of ``metric_key``, or None if there is none.

    Loaded once per process and run id (a newer model in the index is loaded when it
    appears); MLflow itself is only asked when the index has to be rebuilt."""
    from migrationbox.healer.detect import Forecaster

    uri = tracking_uri or mlflow_tracking_uri()
    entry = forecaster_index(uri)["entries"].get(metric_key)
    if entry is None:
        return None
    run_id = str(entry["run_id"])
    with _lock:
        model = _models.get((metric_key, run_id))
        if model is None:
            text = (index_dir(uri) / str(entry["file"])).read_text(encoding="utf-8")
            model = _models[(metric_key, run_id)] = Forecaster.from_json(text)
        return model


def warm(tracking_uri: str | None = None) -> threading.Thread:
    """Read the index (and import Prophet's deserializer) in a background thread, so
    that a woken heal run has them by the time its first pass needs model 2."""
    def run() -> None:
        try:
            forecaster_index(tracking_uri)
            import prophet.serialize  # noqa: F401  (the slow import, done off the path)
        except Exception:  # warming is an optimisation: the pass loads on demand
            pass

    thread = threading.Thread(target=run, name="forecaster-warm", daemon=True)
    thread.start()
    return thread
