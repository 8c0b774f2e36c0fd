"""boto3 clients for AWS, always obtained through Airflow's AWS hook.

Credentials, region and endpoint (the local emulator's URL in the embedded default)
come only from the Airflow connection (``aws_default`` unless told otherwise), never
from code. The hook reads the connection from the Airflow metadata database, a secrets
backend, or an ``AIRFLOW_CONN_<ID>`` environment variable, so this works inside tasks,
in the CLI and in tests alike.
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Any

from migrationbox.config import AWS_CONN_ID


@lru_cache(maxsize=64)
def _hook(conn_id: str, service: str, region: str | None, _env_conn: str | None) -> Any:
    """Hooks are cached per connection *definition*: ``_env_conn`` is the connection's
    environment variable, so a process whose ``AIRFLOW_CONN_*`` changes (an emulator
    restarted on a new port, a test module with its own emulator) never reuses a client
    bound to the old endpoint."""
    from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

    return AwsBaseHook(aws_conn_id=conn_id, client_type=service, region_name=region)


def aws_client(service: str, conn_id: str = AWS_CONN_ID, region: str | None = None) -> Any:
    """A boto3 client for ``service`` built from the Airflow connection ``conn_id``."""
    env_conn = os.environ.get(f"AIRFLOW_CONN_{conn_id.upper()}")
    return _hook(conn_id, service, region, env_conn).get_conn()


def clear_client_cache() -> None:
    """Forget cached hooks (tests that restart the emulator on a new port call this)."""
    _hook.cache_clear()
