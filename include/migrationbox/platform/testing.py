"""A whole local platform for a test module or a benchmark, started and put back; and
the polling helper those tests share.

Tests and benchmarks that need Airflow itself (not only the emulator) share this so that
each one leaves the process as it found it: the environment, and the AWS clients cached
for the connection the platform defined.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from migrationbox.errors import MigrationBoxError
from migrationbox.platform.supervisor import Platform

if TYPE_CHECKING:
    from migrationbox.platform.production import ProductionConfig

T = TypeVar("T")


@contextlib.contextmanager
def running_platform(runtime: Path, **env: str) -> Iterator[Platform]:
    """A whole platform (emulator + Airflow) on free loopback ports for a test module,
    with ``env`` set before it starts and this process pointed at it; everything (the
    platform, the environment, cached AWS clients) is put back afterwards."""
    from migrationbox.cloud.aws_session import clear_client_cache

    saved = dict(os.environ)
    os.environ.update(env)
    plat = Platform(runtime_dir=runtime, api_port=0, emulator_port=0, teams_port=0)
    try:
        plat.up()
        os.environ.update(plat.env())
        clear_client_cache()
        yield plat
    finally:
        try:
            plat.down()
        finally:
            os.environ.clear()
            os.environ.update(saved)
            clear_client_cache()


def wait_until(what: str, predicate: Callable[[], T], timeout: float, poll: float = 1.0) -> T:
    """Poll ``predicate`` until it returns something truthy (and return that), or fail
    after ``timeout`` seconds naming ``what`` was awaited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


# -- the production profile on throwaway databases ---------------------------------------

#: The loopback Redis the production-profile tests and the executor benchmark use.
LOOPBACK_REDIS = "redis://127.0.0.1:6379"


class NoFreeRedisDatabase(MigrationBoxError, RuntimeError):
    """Every Redis database 1-15 holds keys: none can be lent to a test's broker."""


def production_unavailable() -> str | None:
    """Why the production profile cannot run here (PostgreSQL or Redis not answering on
    loopback), or None."""
    from migrationbox.platform.production import redis_unreachable
    from migrationbox.store.testing import postgres_unavailable_reason

    return postgres_unavailable_reason() or redis_unreachable(f"{LOOPBACK_REDIS}/0")


def _empty_redis_db() -> int:
    """A Redis database number nothing uses now (no keys), highest first so that
    anything using the default database 0 is left alone."""
    import redis

    for number in range(15, 0, -1):
        client = redis.Redis.from_url(f"{LOOPBACK_REDIS}/{number}")
        try:
            if client.dbsize() == 0:
                return number
        finally:
            client.close()
    raise NoFreeRedisDatabase("every Redis database 1-15 on 127.0.0.1:6379 holds keys; "
                              "none is free for a broker")


def _flush_redis_db(number: int) -> None:
    import redis

    client = redis.Redis.from_url(f"{LOOPBACK_REDIS}/{number}")
    try:
        client.flushdb()
    finally:
        client.close()


@contextlib.contextmanager
def throwaway_production_config(prefix: str, **overrides: object
                                 ) -> Iterator[ProductionConfig]:
    """A :class:`~migrationbox.platform.production.ProductionConfig` on three PostgreSQL
    databases created under unique names (Airflow's, the store's, MLflow's) and an empty
    Redis database; on exit the databases are dropped and the Redis database emptied.
    Stop the platform that used them inside the block (its connections are cut anyway).
    ``overrides``: other ProductionConfig fields (schedulers, workers, ...)."""
    from sqlalchemy.engine import make_url

    from migrationbox.platform.production import ProductionConfig
    from migrationbox.store.testing import postgres_admin_url, temporary_postgres_database

    with contextlib.ExitStack() as stack:
        names = {
            f"{kind}_db": make_url(stack.enter_context(
                temporary_postgres_database(f"{prefix}_{kind}"))).database
            for kind in ("airflow", "store", "mlflow")
        }
        redis_db = _empty_redis_db()
        stack.callback(_flush_redis_db, redis_db)
        yield ProductionConfig.model_validate({
            "pg_admin_url": postgres_admin_url(), **names,
            "broker_url": f"{LOOPBACK_REDIS}/{redis_db}", **overrides})
