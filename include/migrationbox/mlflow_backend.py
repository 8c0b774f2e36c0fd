"""Where MLflow keeps runs and artifacts: one place for the sizing registry and the healer.

The embedded default keeps both in the runtime folder (a SQLite tracking store and an
artifact folder beside it), which only works while every process that trains or loads
a model runs on one host. The production profile separates the two halves so that a
model trained by one Celery worker is loadable by any other host:

* the **tracking and registry store** is ``MLFLOW_TRACKING_URI``: a PostgreSQL database
  (``postgresql+psycopg2://.../migrationbox_mlflow``) or an MLflow server;
* the **artifacts** (models, metric files, plots) go to object storage under
  ``MIGRATIONBOX_MLFLOW_ARTIFACT_ROOT`` (``s3://migrationbox-mlflow/artifacts``): each
  experiment MigrationBox creates gets ``<root>/<experiment name>`` as its artifact
  location, which MLflow records in the tracking store, so every reader finds the
  objects wherever it runs. ``MLFLOW_S3_ENDPOINT_URL`` points MLflow's boto3 client at
  an S3-compatible endpoint (the moto emulator here); unset, it is AWS itself.

Unset root: nothing changes (experiments get the location the caller asked for, or
MLflow's default), so the embedded default behaves exactly as before.

Two things MLflow does not do on its own, done here once per process (:func:`prepare`):

* **Schema creation on PostgreSQL.** MLflow's SQL store creates its tables and runs its
  Alembic migrations when it first meets an empty database, with no lock between hosts
  (its own file lock only serialises processes of one machine, and the tracking store
  does not even take that). Several Celery workers meeting a fresh database at once
  would race on ``CREATE TABLE``. :func:`ensure_tracking_schema` takes a PostgreSQL
  advisory lock first, so one process creates the schema and the others wait, then find
  it complete. A schema from an older MLflow is not upgraded behind anyone's back:
  MLflow refuses it with its own message (back up, then ``mlflow db upgrade <uri>``).
* **Credentials for the artifact store.** MLflow builds its S3 client from boto3's
  default session (environment variables, shared files, instance role). A MigrationBox
  component has its AWS credentials in the Airflow connection instead (``aws_default``),
  so when the root is ``s3://`` and the environment names no key or profile, the
  connection's boto3 session becomes boto3's default session for this process. No key
  is ever put into the environment or written anywhere.

:func:`production_mlflow_env` is what the supervisor adds to every component of the
production profile; :func:`ensure_artifact_bucket` creates the emulator's bucket at
platform start (a real deployment creates and secures its bucket itself).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
from collections.abc import Mapping
from typing import Any, Protocol
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, field_validator

from migrationbox.cloud.s3_uri import S3RootError, parse_s3_root
from migrationbox.errors import ConfigurationError, ExternalServiceError

log = logging.getLogger(__name__)

TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"
ARTIFACT_ROOT_ENV = "MIGRATIONBOX_MLFLOW_ARTIFACT_ROOT"
S3_ENDPOINT_ENV = "MLFLOW_S3_ENDPOINT_URL"
#: the Airflow connection whose credentials MLflow's S3 client uses when the environment
#: has none; empty = leave boto3's own chain alone (an instance role, for example)
AWS_CONN_ENV = "MIGRATIONBOX_MLFLOW_AWS_CONN_ID"
DEFAULT_AWS_CONN_ID = "aws_default"
#: the advisory lock key (per database) held while MLflow creates its schema
SCHEMA_LOCK_KEY = int.from_bytes(hashlib.sha256(b"migrationbox-mlflow-schema").digest()[:8],
                                 "big", signed=True)
#: how long a process waits for another one creating the schema before giving up
SCHEMA_LOCK_TIMEOUT_S = 300

_SEGMENT_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")

_prepared: set[str] = set()
_credentials_installed = False
_lock = threading.Lock()


class MlflowBackendError(ConfigurationError):
    """The MLflow backend settings are invalid or its stores cannot be used."""


class MlflowBackend(BaseModel):
    """The three values that place MLflow's stores (validated; see the module docstring)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    tracking_uri: str | None = None
    artifact_root: str | None = None
    s3_endpoint_url: str | None = None

    @field_validator("tracking_uri", "s3_endpoint_url", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("artifact_root", mode="before")
    @classmethod
    def _root(cls, value: Any) -> str | None:
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        return normalise_root(str(value))

    @field_validator("s3_endpoint_url")
    @classmethod
    def _endpoint(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"must be an http(s) URL, got {value!r}")
        return value.rstrip("/")

    @classmethod
    def build(cls, tracking_uri: str | None = None, artifact_root: str | None = None,
              s3_endpoint_url: str | None = None) -> MlflowBackend:
        """Validated; a bad value raises ``MlflowBackendError`` naming its variable."""
        from pydantic import ValidationError

        try:
            return cls(tracking_uri=tracking_uri, artifact_root=artifact_root,
                       s3_endpoint_url=s3_endpoint_url)
        except ValidationError as exc:
            names = {"tracking_uri": TRACKING_URI_ENV, "artifact_root": ARTIFACT_ROOT_ENV,
                     "s3_endpoint_url": S3_ENDPOINT_ENV}
            problems = "; ".join(
                f"{names.get(str(e['loc'][0]), e['loc'][0])}: "
                f"{str(e['msg']).removeprefix('Value error, ')}" for e in exc.errors())
            raise MlflowBackendError(f"invalid MLflow backend settings: {problems}") from exc

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> MlflowBackend:
        """The backend this process's environment describes."""
        env = os.environ if environ is None else environ
        return cls.build(env.get(TRACKING_URI_ENV), env.get(ARTIFACT_ROOT_ENV),
                         env.get(S3_ENDPOINT_ENV))

    def env(self) -> dict[str, str]:
        """The environment variables that give a process this backend (unset ones left
        out). Holds no AWS key: those come from the Airflow connection or boto3's chain.
        A password inside the tracking URI is whatever the URL given holds (the production
        profile's PostgreSQL URL policy: better ``PGPASSWORD`` / ``~/.pgpass``)."""
        out: dict[str, str] = {}
        if self.tracking_uri:
            out[TRACKING_URI_ENV] = self.tracking_uri
        if self.artifact_root:
            out[ARTIFACT_ROOT_ENV] = self.artifact_root
        if self.s3_endpoint_url:
            out[S3_ENDPOINT_ENV] = self.s3_endpoint_url
        return out


def normalise_root(root: str) -> str:
    """``root`` without trailing slashes, checked: a URI with a scheme; for ``s3://`` a
    valid bucket name; for ``file://`` an absolute path. Raises ``MlflowBackendError``."""
    value = root.strip().rstrip("/")
    parts = urlsplit(value)
    if not parts.scheme or len(parts.scheme) == 1:  # "C:" is a drive, not a scheme
        raise MlflowBackendError(
            f"{ARTIFACT_ROOT_ENV} must be a URI such as s3://bucket/prefix, got {root!r}")
    if parts.scheme == "s3":
        try:
            parse_s3_root(value, what=ARTIFACT_ROOT_ENV)
        except S3RootError as exc:
            raise MlflowBackendError(str(exc)) from None
    elif parts.scheme == "file" and (parts.netloc not in ("", "localhost")
                                     or not parts.path.startswith("/")):
        raise MlflowBackendError(
            f"{ARTIFACT_ROOT_ENV}: a file:// root must be an absolute local path, "
            f"got {root!r}")
    return value


def artifact_root(environ: Mapping[str, str] | None = None) -> str | None:
    """``MIGRATIONBOX_MLFLOW_ARTIFACT_ROOT`` (normalised), or None for MLflow's default."""
    return MlflowBackend.from_env(environ).artifact_root


def tracking_uri_from_env(environ: Mapping[str, str] | None = None) -> str | None:
    """``MLFLOW_TRACKING_URI`` when set (callers fall back to their local store)."""
    return MlflowBackend.from_env(environ).tracking_uri


def split_s3(root: str) -> tuple[str, str]:
    """``(bucket, key prefix)`` of an ``s3://`` root (the prefix without slashes)."""
    parts = urlsplit(normalise_root(root))
    if parts.scheme != "s3":
        raise MlflowBackendError(f"not an s3:// artifact root: {root!r}")
    return parts.netloc, parts.path.strip("/")


def experiment_location(root: str, experiment: str) -> str:
    """``<root>/<experiment>``: one folder (key prefix) per experiment, named after it so
    a person browsing the bucket sees what is what. Characters outside letters, digits,
    ``.``, ``_`` and ``-`` become ``_`` (MigrationBox's own names need none of that)."""
    segment = _SEGMENT_UNSAFE.sub("_", experiment).strip(".") or "experiment"
    return f"{normalise_root(root)}/{segment}"


# --------------------------------------------------------------------------- experiments


class _ExperimentApi(Protocol):
    """What both ``mlflow`` (the fluent module) and ``MlflowClient`` offer."""

    def get_experiment_by_name(self, name: str) -> Any: ...

    def create_experiment(self, name: str, artifact_location: str | None = None,
                          tags: dict[str, Any] | None = None) -> str: ...


def _same_location(a: str | None, b: str | None) -> bool:
    return (a or "").rstrip("/") == (b or "").rstrip("/")


def get_or_create_experiment(api: _ExperimentApi, name: str, *,
                             local_location: str | None = None,
                             root: str | None = None) -> str:
    """The id of experiment ``name``, created if missing.

    Its artifact location: ``<root>/<name>`` when an artifact root is configured (``root``
    or ``MIGRATIONBOX_MLFLOW_ARTIFACT_ROOT``), else ``local_location`` (the caller's
    embedded default; None = MLflow's default). An existing experiment is used as it is:
    MLflow cannot move an experiment's artifacts, so one whose location differs from the
    root's is kept and a warning names both (create a new experiment name, or migrate
    the artifacts and the tracking rows, to change it). A concurrent creation by another
    process is not an error: the experiment it created is returned.
    """
    configured = root if root is not None else artifact_root()
    wanted = experiment_location(configured, name) if configured else local_location
    found = api.get_experiment_by_name(name)
    if found is None:
        try:
            return str(api.create_experiment(name, artifact_location=wanted))
        except Exception:  # created meanwhile by another worker: use that one
            found = api.get_experiment_by_name(name)
            if found is None:
                raise
    if configured and not _same_location(found.artifact_location, wanted):
        log.warning("MLflow experiment %r keeps its artifact location %s; the configured "
                    "artifact root would give %s (%s=%s). New runs of this experiment "
                    "still go to %s.", name, found.artifact_location, wanted,
                    ARTIFACT_ROOT_ENV, configured, found.artifact_location)
    return str(found.experiment_id)


# --------------------------------------------------------------------------- per process


def is_postgresql(uri: str) -> bool:
    return uri.split(":", 1)[0].split("+", 1)[0] in ("postgresql", "postgres")


def prepare(tracking_uri: str) -> None:
    """Make ``tracking_uri`` and the artifact root usable from this process, once per
    process and URI: the schema of a PostgreSQL tracking database (under the advisory
    lock), and the connection's AWS credentials for an ``s3://`` artifact root."""
    if tracking_uri in _prepared:
        return
    with _lock:
        if tracking_uri in _prepared:
            return
        backend = MlflowBackend.from_env()
        if is_postgresql(tracking_uri):
            ensure_tracking_schema(tracking_uri, backend.artifact_root)
        if backend.artifact_root and backend.artifact_root.startswith("s3://"):
            use_connection_credentials()
        _prepared.add(tracking_uri)


def ensure_tracking_schema(tracking_uri: str, default_artifact_root: str | None = None,
                           timeout_s: float = SCHEMA_LOCK_TIMEOUT_S) -> None:
    """Create MLflow's tables in an empty PostgreSQL database, one process at a time.

    Holds a session-level advisory lock (scoped to that database) while MLflow's own SQL
    store initialises, which is when it creates the tables and runs its migrations; a
    second process waits on the lock (up to ``timeout_s``) and then finds the schema
    complete. The store also checks the schema revision: a database of an older MLflow
    raises MLflow's "out-of-date database schema" error, to be fixed with a backup and
    ``mlflow db upgrade``, not here. ``default_artifact_root`` is what MLflow gives its
    ``Default`` experiment on a fresh database (``./mlruns`` when None, MLflow's own).
    """
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    engine = create_engine(tracking_uri, poolclass=NullPool, isolation_level="AUTOCOMMIT",
                           connect_args={"connect_timeout": 10})
    try:
        with engine.connect() as conn:
            conn.execute(text(f"SET lock_timeout = '{int(timeout_s * 1000)}ms'"))
            try:
                conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": SCHEMA_LOCK_KEY})
            except Exception as exc:
                raise ExternalServiceError(
                    f"MLflow tracking database: waited {timeout_s:.0f}s for another process "
                    f"creating its schema ({_first_line(exc)})") from exc
            try:
                from mlflow.store.tracking import DEFAULT_LOCAL_FILE_AND_ARTIFACT_PATH
                from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

                SqlAlchemyStore(tracking_uri,
                                default_artifact_root or DEFAULT_LOCAL_FILE_AND_ARTIFACT_PATH)
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:key)"),
                             {"key": SCHEMA_LOCK_KEY})
    finally:
        engine.dispose()


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _environment_has_aws_credentials() -> bool:
    return any(os.environ.get(name) for name in (
        "AWS_ACCESS_KEY_ID", "AWS_PROFILE", "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"))


def aws_session() -> Any:
    """The boto3 session for the artifact store: boto3's own when the environment names
    credentials (or ``MIGRATIONBOX_MLFLOW_AWS_CONN_ID`` is empty), else the Airflow
    connection's (``aws_default``: keys, role or profile as the connection says)."""
    import boto3

    conn_id = os.environ.get(AWS_CONN_ENV, DEFAULT_AWS_CONN_ID)
    if _environment_has_aws_credentials() or not conn_id:
        return boto3.Session()
    from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

    return AwsBaseHook(aws_conn_id=conn_id, client_type="s3").get_session()


def use_connection_credentials() -> None:
    """Make :func:`aws_session` boto3's default session in this process (MLflow's S3
    artifact client is built from the default session), once; a connection that cannot
    be read leaves boto3's chain as it is and says so in the log."""
    global _credentials_installed
    if _credentials_installed or _environment_has_aws_credentials():
        return
    conn_id = os.environ.get(AWS_CONN_ENV, DEFAULT_AWS_CONN_ID)
    if not conn_id:
        return
    import boto3

    try:
        session = aws_session()
    except Exception as exc:
        log.warning("MLflow artifacts: AWS connection %r unusable (%s); boto3's default "
                    "credential chain applies", conn_id, _first_line(exc))
        return
    boto3.DEFAULT_SESSION = session
    _credentials_installed = True


def s3_client(endpoint_url: str | None = None, session: Any = None) -> Any:
    """An S3 client on the artifact store's endpoint (``endpoint_url``, else
    ``MLFLOW_S3_ENDPOINT_URL``, else AWS) with :func:`aws_session`'s credentials."""
    endpoint = endpoint_url or os.environ.get(S3_ENDPOINT_ENV) or None
    return (session or aws_session()).client("s3", endpoint_url=endpoint)


def ensure_artifact_bucket(root: str, endpoint_url: str | None = None, *,
                           client: Any = None) -> bool:
    """Create the bucket of an ``s3://`` root unless it exists; True if created.

    Idempotent, also against a concurrent creation. For the emulator at platform start;
    a real deployment creates its bucket (encryption, lifecycle, access policy) itself.
    ``client`` is an S3 client to use instead of :func:`s3_client` (the supervisor passes
    one with the emulator's test credentials).
    """
    from botocore.exceptions import ClientError

    bucket, _ = split_s3(root)
    s3 = client or s3_client(endpoint_url)
    try:
        s3.head_bucket(Bucket=bucket)
        return False
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code not in ("404", "NoSuchBucket", "NotFound"):
            raise ExternalServiceError(
                f"MLflow artifact bucket {bucket!r}: {_first_line(exc)}") from exc
    region = s3.meta.region_name
    kwargs: dict[str, Any] = {"Bucket": bucket}
    if region and region != "us-east-1":
        kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
    try:
        s3.create_bucket(**kwargs)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("BucketAlreadyOwnedByYou",):
            return False
        raise ExternalServiceError(
            f"cannot create MLflow artifact bucket {bucket!r}: {_first_line(exc)}") from exc
    return True


def production_mlflow_env(db_url: str, artifact_root: str,
                          s3_endpoint: str | None = None) -> dict[str, str]:
    """What every component of the production profile needs to reach MLflow: the
    PostgreSQL tracking database, the artifact root and (emulator) the S3 endpoint.

    Nothing secret beyond what ``db_url`` itself holds: AWS credentials come from the
    ``aws_default`` connection (or boto3's chain), never from this environment.
    """
    if not is_postgresql(db_url):
        raise MlflowBackendError(f"the production MLflow store is PostgreSQL, got "
                                 f"{db_url.split(':', 1)[0]!r}")
    return MlflowBackend.build(db_url, artifact_root, s3_endpoint).env()

