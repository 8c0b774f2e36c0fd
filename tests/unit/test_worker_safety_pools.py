"""Cloud API limits (issue 12 item 2): a pool bounds the tasks that mostly call the
cloud's APIs across every wave, and every boto3 client retries in botocore's adaptive
mode with a configurable number of attempts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from migrationbox.cloud import aws_session
from migrationbox.config import project_root
from migrationbox.orchestration import graph as g
from migrationbox.orchestration.spec import PlanSpec

CLOUD_API_TASKS = {g.PREFLIGHT_CHECKS_TASK_ID, g.INSTANCES_RUNNING_TASK_ID,
                   g.SMOKE_TESTS_TASK_ID, g.CUTOVER_SHIFT_TASK_ID, g.ROLLBACK_RESTORE_TASK_ID,
                   g.ROLLBACK_RESTORE_APPROVED_TASK_ID, g.TEARDOWN_TASK_ID}


def _graph() -> g.WaveGraph:
    spec = PlanSpec.model_validate({
        "schema_version": 1, "estate": "lab", "version": 3,
        "created_at": "2026-11-25T00:00:00+00:00",
        "waves": [{"number": 1, "name": "Wave 1", "server_count": 3,
                   "environment": "production", "needs_approval": False,
                   "approval_reasons": [], "predicted_monthly_usd": 10.0,
                   "depends_on_waves": [], "estimated_hours": 4.0}],
    })
    return g.build_wave_graph(spec, spec.waves[0])


def _declared_pools() -> dict[str, int]:
    data = yaml.safe_load((project_root() / "airflow_settings.yaml").read_text())
    return {p["pool_name"]: int(p["pool_slot"]) for p in data["airflow"]["pools"]}


def test_cloud_api_tasks_share_one_pool():
    graph = _graph()
    pooled = {n.task_id for n in graph.nodes if n.pool == g.CLOUD_API_POOL}
    assert pooled == CLOUD_API_TASKS
    assert graph.by_id[g.PROVISION_TASK_ID].pool == g.PROVISION_POOL  # its own, as before


def test_every_pool_the_wave_dag_uses_is_declared():
    """A task in a pool that does not exist never runs: airflow_settings.yaml (applied
    by `platform up` and by deploy/bin/migrationbox-init.sh) must declare each one."""
    used = {n.pool for n in _graph().nodes if n.pool}
    declared = _declared_pools()
    assert used <= set(declared), f"undeclared pools: {used - set(declared)}"
    assert declared[g.CLOUD_API_POOL] >= 1


def test_retry_config_is_adaptive_and_the_connection_wins_key_by_key():
    from botocore.config import Config

    ours = aws_session.retry_config(7)
    assert ours.retries == {"mode": "adaptive", "total_max_attempts": 7}
    merged = aws_session.retry_config(7, Config(connect_timeout=3))
    assert merged.retries == {"mode": "adaptive", "total_max_attempts": 7}
    assert merged.connect_timeout == 3
    theirs = aws_session.retry_config(7, Config(retries={"mode": "standard",
                                                         "max_attempts": 2}))
    assert theirs.retries == {"mode": "standard", "max_attempts": 2}


@pytest.fixture
def conn(monkeypatch: pytest.MonkeyPatch) -> str:
    conn_id = "mbx_retry_probe"
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps({
        "conn_type": "aws", "login": "testing", "password": "testing",
        "extra": {"region_name": "us-east-1", "endpoint_url": "http://127.0.0.1:9"}}))
    aws_session.clear_client_cache()
    yield conn_id
    aws_session.clear_client_cache()


def test_clients_retry_adaptively_with_the_setting(conn: str,
                                                   monkeypatch: pytest.MonkeyPatch):
    client = aws_session.aws_client("route53", conn)
    assert client.meta.config.retries["mode"] == "adaptive"
    # the first call included: 5 attempts, the setting's default
    assert client.meta.config.retries["total_max_attempts"] == 5
    monkeypatch.setenv("MIGRATIONBOX_AWS_MAX_ATTEMPTS", "3")
    client = aws_session.aws_client("route53", conn)  # a new setting, a new client
    assert client.meta.config.retries["total_max_attempts"] == 3
    monkeypatch.setenv("MIGRATIONBOX_AWS_MAX_ATTEMPTS", "0")
    from migrationbox.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="aws_max_attempts"):
        aws_session.aws_client("route53", conn)


def test_the_init_script_creates_the_declared_pools():
    """deploy/bin/migrationbox-init.sh reads the pools from airflow_settings.yaml, so a
    new pool reaches a cluster without editing the script."""
    script = (project_root() / "deploy" / "bin" / "migrationbox-init.sh").read_text()
    assert "airflow_settings.yaml" in script and 'airflow pools set "${name}"' in script
    assert Path(project_root() / "airflow_settings.yaml").is_file()


def test_the_dms_service_clients_retry_adaptively_too(conn: str,
                                                      monkeypatch: pytest.MonkeyPatch):
    """The DMS service builds provider hooks (DmsHook, SecretsManagerHook, IAM) rather
    than going through aws_client: they get the same adaptive retries."""
    from migrationbox.cloud.aws_dms import AwsDmsService

    monkeypatch.setenv("MIGRATIONBOX_AWS_MAX_ATTEMPTS", "4")
    service = AwsDmsService(conn_id=conn, region="us-east-1")
    for client in (service.client, service.secrets, service.iam):
        assert client.meta.config.retries == {"mode": "adaptive", "total_max_attempts": 4}
