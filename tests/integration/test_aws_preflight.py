"""Pre-flight against a real moto server: passes on a good plan, names every failure."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from migrationbox.inventory.models import Estate, ServerRecord
from migrationbox.orchestration.runconf import parse_run_conf
from migrationbox.phases import preflight
from migrationbox.phases.context import PhaseContext, PhaseFailed

pytestmark = pytest.mark.integration

WAVE1 = ["dns-01", "pg-01"]
#: run confs, exactly as an operator would trigger the wave DAG with them
GOOD = {
    "network": {"source_networks": ["192.168.10.0/24", "192.168.20.0/24"]},
    "preflight": {
        "backups": {"dns-01": True, "pg-01": {"available": True, "restore_tested": True}},
        "data_residency": {"pg-01": "US"},
        "vcpu_quota": 64,
    },
}


def _with(conf: dict, **sections: dict) -> dict:
    """``conf`` with some fields of some sections replaced."""
    return {**conf, **{k: {**conf.get(k, {}), **v} for k, v in sections.items()}}


def _ctx(plan, tmp_path: Path, conf: dict, wave: int = 1, run_id: str = "run-1",
         conn_id: str = "aws_default") -> PhaseContext:
    return PhaseContext(plan=plan, wave_number=wave, run_id=run_id, aws_conn_id=conn_id,
                        artifacts_dir=tmp_path, options=parse_run_conf(conf).phase_options())


def test_good_plan_passes_and_writes_both_reports(fresh_aws, small_plan, tmp_path):
    ctx = _ctx(small_plan(), tmp_path, GOOD)
    result = preflight.run(ctx)
    assert result.ok, result
    assert result.details["checks"] == {
        "credentials": "pass", "region": "pass", "sizing": "pass", "images": "pass",
        "quotas": "pass", "cidr_conflicts": "pass", "backups": "pass", "data_residency": "pass",
    }
    report = json.loads(Path(result.details["report_json"]).read_text())
    assert report["ok"] is True and report["wave"] == 1
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["credentials"]["data"]["account"] == "123456789012"
    assert len(checks["region"]["data"]["availability_zones"]) >= 2
    # r5.large (pg-01) + t3.small (dns-01) = 4 vCPUs, read from the emulator's catalogue
    assert checks["quotas"]["data"]["requested_vcpu"] == 4
    assert checks["quotas"]["data"]["vcpu_limit"] == 64
    markdown = Path(result.details["report_md"]).read_text()
    assert "**PASSED**" in markdown and "data_residency" in markdown


def test_failures_are_all_named_with_what_to_do(fresh_aws, small_plan, tmp_path):
    bad = {
        "network": {"source_networks": {"dns-01": ["192.168.10.53/32"],
                                        "pg-01": ["10.100.7.0/24"]}},
        "preflight": {
            "backups": {"dns-01": True},  # pg-01 has none
            "data_residency": {"pg-01": "EU", "dns-01": "US"},
            "vcpu_quota": 64,
        },
    }
    ctx = _ctx(small_plan(), tmp_path, bad)
    with pytest.raises(PhaseFailed) as err:
        preflight.run(ctx)
    message = str(err.value)
    assert "3 check(s) failed" in message
    # EU data must not go to us-east-1
    assert "pg-01 requires EU" in message and "us-east-1" in message
    # the clashing source network is named with its server
    assert "10.100.7.0/24 (pg-01)" in message
    # the server without a backup is named
    assert "pg-01: no backup recorded" in message
    report = json.loads(Path(err.value.details["report_json"]).read_text())
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["backups"]["data"]["failing"] == {"pg-01": "no backup recorded"}
    assert checks["data_residency"]["data"]["violations"] == {"pg-01": "EU"}
    assert checks["cidr_conflicts"]["data"]["clashes"] == {"10.100.7.0/24": ["pg-01"]}
    statuses = {c["name"]: c["status"] for c in report["checks"]}
    assert statuses == {
        "credentials": "pass", "region": "pass", "sizing": "pass", "images": "pass",
        "quotas": "pass", "cidr_conflicts": "fail", "backups": "fail", "data_residency": "fail",
    }
    assert all(c["remedy"] for c in report["checks"] if c["status"] == "fail")
    assert "**FAILED**" in Path(err.value.details["report_md"]).read_text()


def test_vcpu_quota_and_unknown_instance_type(fresh_aws, small_plan, tmp_path):
    plan = small_plan()
    ctx = _ctx(plan, tmp_path, _with(GOOD, preflight={"vcpu_quota": 3}))
    with pytest.raises(PhaseFailed, match=r"vCPU: 0 in use \+ 4 requested > 3"):
        preflight.run(ctx)

    servers = [s.model_copy(update={"sizing": s.sizing.model_copy(
        update={"instance_type": "zz9.mega"})}) if s.server_id == "pg-01" else s
        for s in plan.servers]
    odd = plan.model_copy(update={"servers": servers})
    with pytest.raises(PhaseFailed, match=r"sizing: .*zz9\.mega"):
        preflight.run(_ctx(odd, tmp_path, GOOD, run_id="run-2"))


def test_uk_region_is_not_eu_unless_the_customer_says_so(fresh_aws, small_plan, tmp_path):
    plan = small_plan(region="eu-west-2")
    eu = _with(GOOD, preflight={"data_residency": {"pg-01": "EU"}})
    with pytest.raises(PhaseFailed, match="pg-01 requires EU"):
        preflight.run(_ctx(plan, tmp_path, eu))
    result = preflight.run(_ctx(plan, tmp_path,
                                _with(eu, preflight={"residency_equivalents": {"EU": ["UK"]}}),
                                run_id="run-2"))
    assert result.details["checks"]["data_residency"] == "pass"
    frankfurt = small_plan(region="eu-central-1")
    assert preflight.run(_ctx(frankfurt, tmp_path, eu, run_id="run-3")).ok


def _record(server_id: str, ip: str, **extra) -> ServerRecord:
    return ServerRecord.model_validate({
        "server_id": server_id, "hostname": f"{server_id}.corp.example", "ip_addresses": [ip],
        "os": {"type": "Linux"}, "hardware": {"cpu_cores": 2, "ram_gb": 4},
        "performance_baseline": {"cpu_avg_utilization_pct": 20,
                                 "memory_avg_utilization_pct": 30},
        **extra,
    })


def test_facts_from_discovery_records(fresh_aws, small_plan, tmp_path):
    """Without options, networks, backups and residency come from the estate's records."""
    recent = (datetime.now(UTC) - timedelta(hours=3)).isoformat()
    old = (datetime.now(UTC) - timedelta(days=30)).isoformat()
    estate = Estate(name="shop", servers=[
        _record("dns-01", "192.168.10.53", backup={"available": True, "last_backup_at": recent},
                network={"subnets": ["192.168.10.0/24"]}),
        _record("pg-01", "10.100.40.12", data_residency="EU",
                backup={"available": True, "last_backup_at": old}),
    ])
    ctx = _ctx(small_plan(), tmp_path,
               {"preflight": {"vcpu_quota": 64, "backup_max_age_hours": 48}})
    with pytest.raises(PhaseFailed) as err:
        preflight.run(ctx, estate=estate)
    message = str(err.value)
    assert "10.100.40.12/32 (pg-01)" in message
    assert "pg-01: last backup" in message and "older than 48 h" in message
    assert "pg-01 requires EU" in message
    report = json.loads(Path(err.value.details["report_json"]).read_text())
    failing = {c["name"]: c["data"] for c in report["checks"] if c["status"] == "fail"}
    assert set(failing) == {"cidr_conflicts", "backups", "data_residency"}
    assert list(failing["backups"]["failing"]) == ["pg-01"]


def test_bad_credentials_fail_first_and_skip_cloud_checks(aws_emulator, small_plan, tmp_path,
                                                          monkeypatch):
    from migrationbox.cloud.aws_session import clear_client_cache
    from migrationbox.cloud.emulator import free_port

    dead = json.dumps({"conn_type": "aws", "login": "x", "password": "y", "extra": {
        "region_name": "us-east-1", "endpoint_url": f"http://127.0.0.1:{free_port()}",
        "config_kwargs": {"retries": {"max_attempts": 1}, "connect_timeout": 2}}})
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEAD", dead)
    clear_client_cache()
    ctx = _ctx(small_plan(), tmp_path, GOOD, conn_id="aws_dead")
    with pytest.raises(PhaseFailed) as err:
        preflight.run(ctx)
    report = json.loads(Path(err.value.details["report_json"]).read_text())
    statuses = {c["name"]: c["status"] for c in report["checks"]}
    assert statuses["credentials"] == "fail"
    assert statuses["region"] == statuses["images"] == statuses["quotas"] == "skip"
    # checks that need no cloud still ran
    assert statuses["backups"] == "pass" and statuses["data_residency"] == "pass"


def test_facts_from_the_store(fresh_aws, small_plan, tmp_path):
    """No options and no argument: pre-flight reads the estate's records from the store."""
    from migrationbox.store import repository
    from migrationbox.store.db import session_scope

    estate = Estate(name="storeshop", servers=[
        _record("dns-01", "192.168.10.53", backup={"available": True}),
        _record("pg-01", "192.168.10.54", backup={"available": False}, data_residency="US"),
    ])
    with session_scope() as session:
        repository.save_estate(session, estate)
    ctx = _ctx(small_plan(estate="storeshop"), tmp_path, {"preflight": {"vcpu_quota": 64}})
    with pytest.raises(PhaseFailed) as err:
        preflight.run(ctx)
    report = json.loads(Path(err.value.details["report_json"]).read_text())
    assert report["fact_sources"] == ["store"]
    statuses = {c["name"]: c["status"] for c in report["checks"]}
    assert statuses["cidr_conflicts"] == "pass" and statuses["data_residency"] == "pass"
    assert statuses["backups"] == "fail" and "pg-01: backup not available" in str(err.value)
