"""boto3 clients for AWS, always obtained through Airflow's AWS hook.

Credentials, region and endpoint (the local emulator's URL in the embedded default)
come only from the Airflow connection (``aws_default`` unless told otherwise), never
from code. The hook reads the connection from the Airflow metadata database, a secrets
backend, or an ``AIRFLOW_CONN_<ID>`` environment variable, so this works inside tasks,
in the CLI and in tests alike.

Every client retries with botocore's ``adaptive`` mode: throttling and transient errors
are retried with backoff, and a client that is being throttled slows its own request
rate. Many waves on many workers share one account's API rate limits (the
``migrationbox_cloud_api`` pool bounds how many such tasks run at once; this absorbs the
bursts). ``aws_max_attempts`` (setting) caps the attempts per call. A ``config_kwargs``
in the connection's extra wins over these defaults, key by key (its own ``retries``
included).
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Any

from migrationbox.config import AWS_CONN_ID

RETRY_MODE = "adaptive"


def retry_config(max_attempts: int, connection_config: Any = None) -> Any:
    """botocore ``Config`` with adaptive retries (``max_attempts`` per call), under the
    connection's own ``config_kwargs`` (``connection_config``), which win key by key."""
    from botocore.config import Config

    # total_max_attempts counts the first call (botocore's max_attempts would not)
    ours = Config(retries={"mode": RETRY_MODE, "total_max_attempts": max_attempts})
    return ours.merge(connection_config) if connection_config is not None else ours


@lru_cache(maxsize=64)
def _hook(conn_id: str, service: str, region: str | None, _env_conn: str | None,
          max_attempts: int) -> Any:
    """Hooks are cached per connection *definition*: ``_env_conn`` is the connection's
    environment variable, so a process whose ``AIRFLOW_CONN_*`` changes (an emulator
    restarted on a new port, a test module with its own emulator) never reuses a client
    bound to the old endpoint."""
    from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

    probe = AwsBaseHook(aws_conn_id=conn_id, client_type=service, region_name=region)
    config = retry_config(max_attempts, probe.conn_config.botocore_config)
    return AwsBaseHook(aws_conn_id=conn_id, client_type=service, region_name=region,
                       config=config)


def hook_config(conn_id: str = AWS_CONN_ID, region: str | None = None) -> Any:
    """The botocore ``Config`` a hook built outside :func:`aws_client` should get (a
    provider hook such as ``DmsHook``): adaptive retries under the connection's own
    ``config_kwargs``, the same as every client of :func:`aws_client`."""
    from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

    probe = AwsBaseHook(aws_conn_id=conn_id, client_type="sts", region_name=region)
    return retry_config(max_attempts(), probe.conn_config.botocore_config)


def max_attempts() -> int:
    """The ``aws_max_attempts`` setting (attempts per AWS call, first one included)."""
    from migrationbox import settings

    value = int(settings.get("aws_max_attempts"))
    if value < 1:
        from migrationbox.errors import ConfigurationError

        raise ConfigurationError(f"aws_max_attempts must be at least 1, got {value}")
    return value


def aws_client(service: str, conn_id: str = AWS_CONN_ID, region: str | None = None) -> Any:
    """A boto3 client for ``service`` built from the Airflow connection ``conn_id``,
    retrying in botocore's adaptive mode (see the module docstring)."""
    env_conn = os.environ.get(f"AIRFLOW_CONN_{conn_id.upper()}")
    return _hook(conn_id, service, region, env_conn, max_attempts()).get_conn()


def clear_client_cache() -> None:
    """Forget cached hooks (tests that restart the emulator on a new port call this)."""
    _hook.cache_clear()
