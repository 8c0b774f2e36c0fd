"""Where MigrationBox keeps its state and how it finds its store.

Nothing in the code knows whether it runs on the embedded default (SQLite files in a
git-ignored ``.runtime`` folder of the checkout) or in production (PostgreSQL behind an
Airflow connection); only the values resolved here differ.
"""

from __future__ import annotations

import os
from pathlib import Path

from migrationbox import settings

STORE_CONN_ID = "migrationbox_store"
AWS_CONN_ID = "aws_default"


def project_root() -> Path:
    """The checkout root: the folder holding ``pyproject.toml`` above this package."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "pyproject.toml").exists() and (parent / "include").is_dir():
            return parent
    return Path.cwd()


def runtime_dir() -> Path:
    """Folder for local state: stores, plan exports, lab data, logs, pid files.

    Pure: it names the folder and creates nothing (it is read at DAG-parse time);
    whoever writes below it creates the folders it writes into.
    """
    return Path(settings.get("home") or project_root() / ".runtime")


def plans_dir() -> Path:
    """Folder of exported plan specs read by the wave-DAG file at parse time (not created)."""
    return Path(settings.get("plans_dir") or runtime_dir() / "plans")


def artifacts_dir() -> Path:
    """Folder of phase reports and run artifacts (not created; writers create it)."""
    return Path(settings.get("artifacts_dir") or runtime_dir() / "artifacts")


def _url_from_airflow_connection(conn_id: str) -> str | None:
    """Return the SQLAlchemy URL of an Airflow connection, if Airflow knows it.

    Only consulted when ``MIGRATIONBOX_STORE_URL`` is unset; a missing connection is
    not an error (the embedded default is used).
    """
    if os.environ.get(f"AIRFLOW_CONN_{conn_id.upper()}") is None and not os.environ.get(
        "MIGRATIONBOX_STORE_FROM_AIRFLOW"
    ):
        return None
    try:
        from airflow.sdk import Connection

        conn = Connection.get(conn_id)
    except Exception:
        return None
    uri = conn.get_uri()
    if conn.conn_type in ("sqlite",):
        return f"sqlite:///{conn.host}"
    if conn.conn_type in ("postgres", "postgresql"):
        return uri.replace("postgres://", "postgresql+psycopg2://", 1).replace(
            "postgresql://", "postgresql+psycopg2://", 1
        )
    return uri


def store_url() -> str:
    """The MigrationBox store's SQLAlchemy URL.

    Order: the ``store_url`` setting (``MIGRATIONBOX_STORE_URL``, or ``[migrationbox]
    store_url`` of airflow.cfg); the Airflow connection ``migrationbox_store``; a SQLite
    file in the runtime folder. Not cached: the environment may change in a long-lived
    process (tests, the demo) and the lookup is cheap.
    """
    explicit = settings.get("store_url")
    if explicit:
        return explicit
    from_airflow = _url_from_airflow_connection(STORE_CONN_ID)
    if from_airflow:
        return from_airflow
    return f"sqlite:///{runtime_dir() / 'migrationbox.db'}"
