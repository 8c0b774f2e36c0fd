"""The typed phase boundary against a real moto server and a real store.

A context built the way the wave DAG builds it (``tasks.build_context`` from a run conf
and the store) must give pre-flight and provision the same source networks, so that
the security groups admit the on-premise clients; and pre-flight's remedies must be
run-conf keys that, once set, make the check pass.
"""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest

from migrationbox.cloud.aws_session import aws_client
from migrationbox.cloud.base import TAG_ESTATE
from migrationbox.inventory.models import Estate, ServerRecord
from migrationbox.orchestration import tasks
from migrationbox.phases import preflight, provision, teardown

pytestmark = pytest.mark.integration

ONPREM = {"dns-01": "172.20.5.0/24", "pg-01": "172.20.7.0/24"}


def _record(server_id: str, subnet: str) -> ServerRecord:
    host = subnet.split("/")[0].rsplit(".", 1)[0] + ".10"
    return ServerRecord.model_validate({
        "server_id": server_id, "hostname": f"{server_id}.corp.example", "ip_addresses": [host],
        "os": {"type": "Linux"}, "hardware": {"cpu_cores": 2, "ram_gb": 4},
        "performance_baseline": {"cpu_avg_utilization_pct": 20,
                                 "memory_avg_utilization_pct": 30},
        "network": {"subnets": [subnet]}, "backup": {"available": True},
    })


@pytest.fixture
def stored_plan(small_plan, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from migrationbox.store import repository
    from migrationbox.store.db import dispose, session_scope

    monkeypatch.setenv("MIGRATIONBOX_STORE_URL", f"sqlite:///{tmp_path / 'store.db'}")
    monkeypatch.setenv("MIGRATIONBOX_ARTIFACTS_DIR", str(tmp_path / "artifacts"))
    estate = f"net{uuid.uuid4().hex[:6]}"
    records = [_record(sid, ONPREM.get(sid, "172.20.9.0/24"))
               for sid in ("dns-01", "pg-01", "api-01", "web-01", "web-02", "worker-01")]
    with session_scope() as session:
        repository.save_estate(session, Estate(name=estate, servers=records))
        plan = repository.save_plan(session, small_plan(estate=estate))
    yield plan
    dispose()


def _dag_run_context(conf: dict, task_id: str) -> dict:
    return {"dag_run": SimpleNamespace(conf=conf, run_id=f"manual__{uuid.uuid4().hex[:6]}"),
            "ti": SimpleNamespace(task_id=task_id)}


def test_a_dag_run_admits_the_estates_source_networks(fresh_aws, stored_plan):
    """No source networks in the conf: both phases read the discovery records."""
    plan = stored_plan
    conf = {"cloud": {"poll_seconds": 0.2}, "preflight": {"vcpu_quota": 64}}
    ctx = tasks.build_context(plan.estate, 1, plan.version, _dag_run_context(conf, "preflight"))
    checked = preflight.run(ctx)
    assert checked.details["checks"]["cidr_conflicts"] == "pass"
    report = json.loads(Path(checked.details["report_json"]).read_text())
    cidr = next(c for c in report["checks"] if c["name"] == "cidr_conflicts")
    assert cidr["data"]["networks_checked"] == 12  # 6 servers: an address and a subnet each

    ctx = tasks.build_context(plan.estate, 1, plan.version, _dag_run_context(conf, "provision"))
    try:
        assert provision.run(ctx).ok
        ec2 = aws_client("ec2")
        groups = {g["GroupName"]: g for g in ec2.describe_security_groups(Filters=[
            {"Name": f"tag:{TAG_ESTATE}", "Values": [plan.estate]}])["SecurityGroups"]}
        pg = groups[f"mb-{plan.estate}-pg-01"]
        admitted = {r["CidrIp"] for p in pg["IpPermissions"] if p.get("FromPort") == 5432
                    for r in p.get("IpRanges", [])}
        # pg-01's clients of wave 2 are still on premise while wave 1 moves
        assert {"172.20.5.0/24", "172.20.7.0/24", "172.20.9.0/24"} <= admitted
        # the on_resource collaborator put what was made into the store's ledger
        assert pg["GroupId"] in {r.resource_id for r in _ledger(plan.estate)}
    finally:
        teardown.rollback(tasks.build_context(plan.estate, 1, plan.version,
                                              _dag_run_context(conf, "teardown")))
    assert _ledger(plan.estate) == []  # ... and on_resource_deleted took it out again


def _ledger(estate: str) -> list:
    from migrationbox.store import repository
    from migrationbox.store.db import session_scope

    with session_scope(read_only=True) as session:
        return repository.cloud_resources(session, estate)


def test_the_vcpu_quota_remedy_is_a_conf_key_that_works(fresh_aws, stored_plan):
    plan = stored_plan
    ctx = tasks.build_context(plan.estate, 1, plan.version, _dag_run_context({}, "preflight"))
    result = preflight.run(ctx)
    report = json.loads(Path(result.details["report_json"]).read_text())
    quotas = next(c for c in report["checks"] if c["name"] == "quotas")
    assert quotas["status"] == "warn"  # the emulator does not serve the EC2 vCPU quota
    named = re.findall(r"\bconf ([a-z_]+)\.([a-z_]+)", quotas["remedy"])
    assert named == [("preflight", "vcpu_quota")]
    section, key = named[0]
    ctx = tasks.build_context(plan.estate, 1, plan.version,
                              _dag_run_context({section: {key: 64}}, "preflight"))
    fixed = json.loads(Path(preflight.run(ctx).details["report_json"]).read_text())
    quotas = next(c for c in fixed["checks"] if c["name"] == "quotas")
    assert quotas["status"] == "pass"
    assert quotas["data"]["vcpu_limit_source"] == "conf preflight.vcpu_quota"
