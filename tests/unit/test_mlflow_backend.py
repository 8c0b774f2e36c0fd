"""The MLflow backend settings: artifact root, per-experiment locations, component env.

The PostgreSQL + S3 round trip across processes is in
``tests/integration/test_mlflow_production_backend.py``; here the pure parts, and the
experiment placement on a real local (SQLite) MLflow store.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from migrationbox import mlflow_backend as mb

PG = "postgresql+psycopg2://postgres@127.0.0.1:5432/migrationbox_mlflow"


@pytest.fixture
def no_backend_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (mb.TRACKING_URI_ENV, mb.ARTIFACT_ROOT_ENV, mb.S3_ENDPOINT_ENV,
                 mb.AWS_CONN_ENV):
        monkeypatch.delenv(name, raising=False)


def test_roots_are_normalised_and_bad_ones_refused_naming_the_setting() -> None:
    assert mb.normalise_root("s3://migrationbox-mlflow/artifacts/") == \
        "s3://migrationbox-mlflow/artifacts"
    assert mb.normalise_root(" s3://b.example-1 ") == "s3://b.example-1"
    assert mb.normalise_root("file:///srv/mlflow/") == "file:///srv/mlflow"
    assert mb.normalise_root("gs://bucket/p") == "gs://bucket/p"  # MLflow resolves others
    for bad, words in [("migrationbox-mlflow/artifacts", "must be a URI"),
                       ("C:/mlflow", "must be a URI"),
                       ("s3://Bad_Bucket/x", "not a valid S3 bucket name"),
                       ("s3://ab/x", "not a valid S3 bucket name"),
                       ("s3://a..b/x", "not a valid S3 bucket name"),
                       ("file://relative/path", "absolute local path")]:
        with pytest.raises(mb.MlflowBackendError, match=words) as err:
            mb.normalise_root(bad)
        assert mb.ARTIFACT_ROOT_ENV in str(err.value)


def test_environment_is_read_blank_as_unset_and_errors_name_the_variable() -> None:
    env = {mb.TRACKING_URI_ENV: PG, mb.ARTIFACT_ROOT_ENV: "s3://mbx-a/artifacts/",
           mb.S3_ENDPOINT_ENV: "http://127.0.0.1:5000/"}
    backend = mb.MlflowBackend.from_env(env)
    assert backend.tracking_uri == PG
    assert backend.artifact_root == "s3://mbx-a/artifacts"
    assert backend.s3_endpoint_url == "http://127.0.0.1:5000"
    assert mb.artifact_root(env) == "s3://mbx-a/artifacts"
    assert mb.tracking_uri_from_env(env) == PG
    blank = mb.MlflowBackend.from_env({mb.ARTIFACT_ROOT_ENV: "  ", mb.TRACKING_URI_ENV: ""})
    assert blank == mb.MlflowBackend()
    assert mb.artifact_root({}) is None
    with pytest.raises(mb.MlflowBackendError, match=mb.S3_ENDPOINT_ENV):
        mb.MlflowBackend.from_env({mb.S3_ENDPOINT_ENV: "127.0.0.1:5000"})
    with pytest.raises(mb.MlflowBackendError, match="not a valid S3 bucket"):
        mb.MlflowBackend.from_env({mb.ARTIFACT_ROOT_ENV: "s3://UPPER/x"})


def test_each_experiment_gets_its_own_folder_under_the_root() -> None:
    assert mb.experiment_location("s3://mbx/artifacts/", "migrationbox-sizing") == \
        "s3://mbx/artifacts/migrationbox-sizing"
    assert mb.experiment_location("s3://mbx", "migrationbox-healer-forecast") == \
        "s3://mbx/migrationbox-healer-forecast"
    assert mb.experiment_location("s3://mbx", "my exp/../v2") == "s3://mbx/my_exp_.._v2"
    assert mb.split_s3("s3://mbx/artifacts/x/") == ("mbx", "artifacts/x")
    assert mb.split_s3("s3://mbx") == ("mbx", "")
    with pytest.raises(mb.MlflowBackendError, match="not an s3:// artifact root"):
        mb.split_s3("file:///srv/mlflow")


def test_production_env_names_the_stores_and_holds_no_aws_key() -> None:
    env = mb.production_mlflow_env(PG, "s3://migrationbox-mlflow/artifacts/",
                                   "http://127.0.0.1:5000")
    assert env == {mb.TRACKING_URI_ENV: PG,
                   mb.ARTIFACT_ROOT_ENV: "s3://migrationbox-mlflow/artifacts",
                   mb.S3_ENDPOINT_ENV: "http://127.0.0.1:5000"}
    # real AWS: no endpoint variable at all (boto3 then uses the region's S3 endpoint)
    assert mb.S3_ENDPOINT_ENV not in mb.production_mlflow_env(PG, "s3://b-1/a")
    assert not [k for k in env if k.startswith("AWS_")]
    assert mb.is_postgresql(PG) and mb.is_postgresql("postgresql://u@h/d")
    assert not mb.is_postgresql("sqlite:///x.db") and not mb.is_postgresql("http://mlflow:5000")
    with pytest.raises(mb.MlflowBackendError, match="PostgreSQL, got 'sqlite'"):
        mb.production_mlflow_env("sqlite:///tmp/mlflow.db", "s3://b-1/a")
    with pytest.raises(mb.MlflowBackendError, match="not a valid S3 bucket"):
        mb.production_mlflow_env(PG, "s3://No/a")


def test_environment_credentials_win_over_the_airflow_connection(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDFROMENV")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret-from-env")
    monkeypatch.setenv(mb.AWS_CONN_ENV, "no_such_connection")
    creds = mb.aws_session().get_credentials()
    assert creds is not None and creds.access_key == "AKIDFROMENV"
    import boto3

    before = boto3.DEFAULT_SESSION
    monkeypatch.setattr(mb, "_credentials_installed", False)
    mb.use_connection_credentials()  # the environment has keys: boto3's chain is kept
    assert boto3.DEFAULT_SESSION is before and mb._credentials_installed is False


def test_unset_root_keeps_the_callers_location_and_set_root_places_new_experiments(
        tmp_path: Path, no_backend_env: None, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.MlflowClient(tracking_uri=uri)
    local = (tmp_path / "local-artifacts").as_uri()
    first = mb.get_or_create_experiment(client, "unset-root", local_location=local)
    assert client.get_experiment(first).artifact_location == local
    assert mb.get_or_create_experiment(client, "unset-root", local_location=local) == first

    root = (tmp_path / "bucket").as_uri()
    monkeypatch.setenv(mb.ARTIFACT_ROOT_ENV, root + "/")
    placed = mb.get_or_create_experiment(client, "migrationbox-sizing", local_location=local)
    assert client.get_experiment(placed).artifact_location == f"{root}/migrationbox-sizing"

    # an experiment created before the root was set keeps its artifacts where they are
    with caplog.at_level(logging.WARNING, logger="migrationbox.mlflow_backend"):
        again = mb.get_or_create_experiment(client, "unset-root")
    assert again == first and client.get_experiment(first).artifact_location == local
    warning = " ".join(r.getMessage() for r in caplog.records)
    assert local in warning and f"{root}/unset-root" in warning
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="migrationbox.mlflow_backend"):
        mb.get_or_create_experiment(client, "migrationbox-sizing")
    assert not caplog.records  # same location: nothing to say


def test_registry_and_healer_create_their_experiments_under_the_root(
        tmp_path: Path, no_backend_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """Both callers go through the one function; with the root unset each keeps its own
    embedded default (the registry's runtime folder, artifacts beside the SQLite file)."""
    import mlflow

    from migrationbox.healer import learning, tracking
    from migrationbox.sizing import registry

    monkeypatch.setenv("MIGRATIONBOX_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(registry, "_SET_BY_US", set())
    sizing_id = registry.experiment_id("sizing-unset")
    assert registry.configure().get_experiment(sizing_id).artifact_location == \
        registry.artifact_location()
    uri = f"sqlite:///{tmp_path / 'one-store.db'}"
    client = mlflow.MlflowClient(tracking_uri=uri)
    tracking.use(mlflow, uri)
    healer_id = tracking.experiment_id(mlflow, "healer-unset", uri)
    assert client.get_experiment(healer_id).artifact_location == \
        (tmp_path / "artifacts").resolve().as_uri()

    # the production shape: one tracking URI for both, artifacts under the root
    root = (tmp_path / "object-store").as_uri()
    monkeypatch.setenv(mb.TRACKING_URI_ENV, uri)
    monkeypatch.setenv(mb.ARTIFACT_ROOT_ENV, root)
    sizing_id = registry.experiment_id()
    assert client.get_experiment(sizing_id).artifact_location == \
        f"{root}/{registry.EXPERIMENT}"
    tracking.use(mlflow, tracking.mlflow_tracking_uri())
    healer_id = tracking.experiment_id(mlflow, learning.EXPERIMENT, uri)
    assert client.get_experiment(healer_id).artifact_location == \
        f"{root}/{learning.EXPERIMENT}"


def test_a_shared_store_keeps_the_forecaster_index_searching(tmp_path: Path) -> None:
    """On this host's SQLite store the index is maintained by this host's retraining (no
    re-search); on a shared store another worker may log newer forecasters, so the
    index keeps its rebuild time and ``forecaster_index`` searches MLflow again daily."""
    import json

    from migrationbox.healer import tracking

    folder = tmp_path / "index"
    tracking._write_index(folder, {"entries": {}, "rebuilt_at": 1000.0})
    tracking._record(folder, "shop/web-01/cpu", "run1", "{}", "2026-12-07T09:00:00")
    assert "rebuilt_at" not in json.loads((folder / "index.json").read_text())

    tracking._write_index(folder, {"entries": {}, "rebuilt_at": 1000.0})
    tracking._record(folder, "shop/web-01/cpu", "run2", "{}", "2026-12-07T10:00:00",
                     shared=True)
    doc = json.loads((folder / "index.json").read_text())
    assert doc["rebuilt_at"] == 1000.0
    assert doc["entries"]["shop/web-01/cpu"]["run_id"] == "run2"
    tracking._write_index(folder, {"entries": {}})  # written before this rule existed
    tracking._record(folder, "shop/db-01/cpu", "run3", "{}", "2026-12-07T11:00:00",
                     shared=True)
    assert isinstance(json.loads((folder / "index.json").read_text())["rebuilt_at"], float)
