"""Alembic environment of the MigrationBox store.

Used two ways: programmatically by ``migrationbox.store.db.upgrade`` (which hands over
an open connection in ``config.attributes["connection"]``, already holding the lock that
serialises concurrent upgraders), and by developers running the ``alembic`` command with
``include/migrationbox/store/alembic.ini`` to autogenerate new revisions (then the URL
is ``MIGRATIONBOX_STORE_URL`` / the Airflow connection / the embedded SQLite file).
"""

from __future__ import annotations

from logging.config import fileConfig

from alembic import context
from sqlalchemy import Connection

from migrationbox.store.db import VERSION_TABLE, resolve_url
from migrationbox.store.models import Base

config = context.config
if config.config_file_name is not None:  # the alembic command, not db.upgrade()
    fileConfig(config.config_file_name, disable_existing_loggers=False)
target_metadata = Base.metadata


def _options() -> dict[str, object]:
    return {
        "target_metadata": target_metadata,
        "version_table": config.get_main_option("version_table") or VERSION_TABLE,
        "compare_type": True,
        # SQLite cannot ALTER most things; batch mode rewrites tables instead.
        "render_as_batch": True,
    }


def _url() -> str:
    return resolve_url(config.attributes.get("url") or config.get_main_option("sqlalchemy.url"))


def run_migrations_offline() -> None:
    context.configure(
        url=_url(), literal_binds=True, dialect_opts={"paramstyle": "named"}, **_options()
    )
    with context.begin_transaction():
        context.run_migrations()


def _run(connection: Connection) -> None:
    context.configure(connection=connection, **_options())
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    from migrationbox.store import db

    with db.engine(_url(), migrate=False).begin() as conn:
        _run(conn)


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
