"""Integration fixtures: a real moto server process for the whole session.

``aws_emulator`` starts one ``EmulatorProcess`` on a free loopback port, points the
``aws_default`` Airflow connection at it (``AIRFLOW_CONN_AWS_DEFAULT``), and stops its
process group at the end. ``fresh_aws`` additionally wipes the emulator's state for a
test that wants an empty account. ``small_plan`` builds a two-wave PlanDocument by hand.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from migrationbox.cloud.emulator import EmulatorProcess
from migrationbox.planning.models import (
    MoveGroup,
    PlanDocument,
    PlanSettings,
    ServerPlan,
    Sizing,
    Wave,
)

CONN_ENV = "AIRFLOW_CONN_AWS_DEFAULT"


@pytest.fixture(scope="session")
def aws_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorProcess]:
    from migrationbox.cloud.aws_session import clear_client_cache

    log_path = tmp_path_factory.mktemp("moto") / "moto.log"
    emulator = EmulatorProcess(log_path=log_path).start()
    previous = os.environ.get(CONN_ENV)
    os.environ[CONN_ENV] = emulator.airflow_connection()
    clear_client_cache()
    try:
        yield emulator
    finally:
        emulator.stop()
        if previous is None:
            os.environ.pop(CONN_ENV, None)
        else:
            os.environ[CONN_ENV] = previous
        clear_client_cache()


@pytest.fixture
def fresh_aws(aws_emulator: EmulatorProcess) -> EmulatorProcess:
    aws_emulator.reset()
    return aws_emulator


_SIZES = {
    "t3.small": (2, 2.0, 0.0208),
    "t3.medium": (2, 4.0, 0.0416),
    "m5.large": (2, 8.0, 0.096),
    "r5.large": (2, 16.0, 0.126),
    "m6g.large": (2, 8.0, 0.077),
}


def _sizing(instance_type: str, region: str = "us-east-1", storage_gb: float = 20) -> Sizing:
    vcpu, mem, hourly = _SIZES[instance_type]
    return Sizing(
        region=region, method="rule:peak*1.3", required_vcpu=vcpu * 0.6,
        required_memory_gib=mem * 0.6, instance_type=instance_type, vcpu=vcpu, memory_gib=mem,
        hourly_usd=hourly, monthly_usd=round(hourly * 730, 2), storage_gb=storage_gb,
        price_source="test fixture, hand-written",
    )


# server_id, hostname, role, ports, depends_on, instance type, wave
_SERVERS = [
    ("dns-01", "dns01.corp.example", "dns", [53], [], "t3.small", 1),
    ("pg-01", "pg01.corp.example", "postgresql", [5432], ["dns-01"], "r5.large", 1),
    ("api-01", "api01.corp.example", "api", [8080], ["pg-01", "dns-01"], "m5.large", 2),
    ("web-01", "web01.corp.example", "web", [80, 443], ["api-01"], "t3.medium", 2),
    ("web-02", "web02.corp.example", "web", [80], ["api-01"], "m6g.large", 2),
    ("worker-01", "worker01.corp.example", "worker", [], ["pg-01", "api-01"], "t3.small", 2),
]


def build_plan(
    estate: str = "shop",
    region: str = "us-east-1",
    unsized: tuple[str, ...] = (),
) -> PlanDocument:
    servers = [
        ServerPlan(
            server_id=sid, hostname=host, environment="production", role=role,
            criticality=0.1, move_group=f"mg-{sid}", depends_on=deps, ports=ports,
            data_size_gb=10, sizing=None if sid in unsized else _sizing(itype, region),
        )
        for sid, host, role, ports, deps, itype, _ in _SERVERS
    ]
    waves = []
    for number in (1, 2):
        ids = [s[0] for s in _SERVERS if s[6] == number]
        waves.append(Wave(
            number=number, name=f"wave {number}", server_ids=ids,
            move_groups=[f"mg-{i}" for i in ids], depends_on_waves=[1] if number == 2 else [],
            environment="production", criticality=0.1, estimated_hours=1.0,
            needs_approval=False,
        ))
    return PlanDocument(
        estate=estate, version=1, created_at=datetime(2026, 5, 1, tzinfo=UTC),
        settings=PlanSettings(region=region),
        servers=servers,
        move_groups=[MoveGroup(group_id=f"mg-{s[0]}", server_ids=[s[0]]) for s in _SERVERS],
        waves=waves,
    )


@pytest.fixture
def small_plan() -> Callable[..., PlanDocument]:
    """``small_plan(estate=..., region=..., unsized=(...))`` → a two-wave plan.

    Wave 1: dns-01, pg-01. Wave 2: api-01 (api), web-01/web-02 (web, one of them
    Graviton), worker-01; dependencies run from wave 2 to wave 1 and inside wave 2.
    """
    return build_plan


@pytest.fixture(scope="module")
def sshd_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A real OpenSSH server on loopback for one test module (key auth, pinned host key);
    skipped with the reason when sshd is not installed (`make test` installs it)."""
    from migrationbox.lab.sshd import SshServer, sshd_available

    ok, why = sshd_available()
    if not ok:
        pytest.skip(why)
    with SshServer(root=tmp_path_factory.mktemp("sshd")) as srv:
        yield srv


@pytest.fixture
def ssh_connection(sshd_server: Any, monkeypatch: pytest.MonkeyPatch) -> Callable[[str], str]:
    """``ssh_connection(conn_id)`` defines an Airflow SSH connection to ``sshd_server``
    (key file, pinned host key) for the test and returns its id."""

    def define(conn_id: str) -> str:
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}",
                           sshd_server.airflow_connection_json())
        return conn_id

    return define
