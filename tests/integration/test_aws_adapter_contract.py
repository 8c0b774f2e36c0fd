"""The AWS adapter against the cloud adapter contract, on the real moto server."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import pytest
from adapter_contract import AdapterContract

from migrationbox.cloud import get_adapter
from migrationbox.cloud.aws import AwsAdapter
from migrationbox.cloud.base import IngressRule, SubnetSpec, resource_tags
from migrationbox.cloud.emulator import free_port

pytestmark = pytest.mark.integration

DEAD_CONN = "mbx_contract_dead"


@pytest.fixture(scope="module")
def adapter(aws_emulator) -> AwsAdapter:
    aws_emulator.reset()
    made = get_adapter("aws", region="us-east-1", poll_seconds=0.2, timeout_seconds=60)
    assert isinstance(made, AwsAdapter)
    return made


@pytest.fixture(scope="module")
def dead_adapter() -> Iterator[AwsAdapter]:
    """An adapter whose connection points at a loopback port nobody listens on."""
    key = f"AIRFLOW_CONN_{DEAD_CONN.upper()}"
    os.environ[key] = json.dumps({
        "conn_type": "aws", "login": "x", "password": "x",
        "extra": {"region_name": "us-east-1",
                  "endpoint_url": f"http://127.0.0.1:{free_port()}",
                  "config_kwargs": {"retries": {"max_attempts": 1}, "connect_timeout": 1,
                                    "read_timeout": 1}}})
    try:
        yield AwsAdapter(conn_id=DEAD_CONN, region="us-east-1")
    finally:
        os.environ.pop(key, None)


@pytest.fixture(scope="module")
def network(adapter: AwsAdapter) -> tuple[str, list[str]]:
    tags = resource_tags("contract-net", "landing-zone", "contract-net")
    vpc = adapter.ensure_vpc("10.88.0.0/16", tags)
    az = adapter.availability_zones()[0]
    subnets = adapter.ensure_subnets(vpc, [SubnetSpec("private", az, "10.88.1.0/24",
                                                      "contract-private")], tags)
    sg = adapter.ensure_security_group("contract-app", vpc,
                                       [IngressRule(port=22, cidr="10.0.0.0/8")], tags)
    return subnets["contract-private"], [sg]


class TestAwsAdapterContract(AdapterContract):
    """Every contract test, for ``AwsAdapter``."""
