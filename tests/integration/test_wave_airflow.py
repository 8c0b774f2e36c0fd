"""A whole wave through a real Airflow: REST trigger, HITL approvals, emulator, lab.

One platform (AWS emulator + Airflow API server, scheduler, DAG processor, triggerer) is
started for the module on free loopback ports in a temporary runtime folder. Each test
plans its own small estate, starts its lab, triggers the wave DAG by REST and answers the
approval gates by REST, as a person's tooling would.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.airflow]

FAST_CONF = {
    "cutover": {"steps": [5, 25, 50, 100], "dwell_seconds": 0.5},
    "health": {"probe_requests": 10},
}


def _record(sid: str, host: str, role: str, ip: str, ports: list[int], kind: str,
            data_gb: float = 1.0, deps: list[str] | None = None) -> dict:
    return {
        "server_id": sid,
        "hostname": f"{host}.corp.local",
        "ip_addresses": [ip],
        "os": {"type": "Linux", "distribution": "Ubuntu", "version": "22.04"},
        "hardware": {"cpu_cores": 4, "ram_gb": 16, "disk_total_gb": 100},
        "applications": [{"name": role, "ports": ports, "kind": kind, "data_size_gb": data_gb}],
        "network_dependencies": [{"destination": d, "protocol": "tcp"} for d in deps or []],
        "performance_baseline": {
            "cpu_avg_utilization_pct": 30,
            "memory_avg_utilization_pct": 50,
            "cpu_p95_utilization_pct": 60,
        },
        "environment": "production",
        "role": role,
        "backup": {"available": True, "last_backup_at": "2026-11-24T02:00:00Z"},
    }


def _write_estate(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    records = [
        _record("web-01", "web-01", "web", "10.40.0.11", [80, 443], "web"),
        _record("api-01", "api-01", "api", "10.40.0.12", [8080], "api"),
        _record("db-01", "db-01", "postgresql-primary", "10.40.0.13", [5432], "database", 2.0),
    ]
    for r in records:
        (folder / f"{r['server_id']}.json").write_text(json.dumps(r))
    return folder


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    from migrationbox.platform.testing import running_platform

    with running_platform(tmp_path_factory.mktemp("wave-platform")) as plat:
        try:
            yield plat
        finally:  # the labs' source and target databases too, not only their processes
            while _LABS:
                _LABS.pop().down(purge=True)


#: labs the module's tests started: purged when the module's platform stops
_LABS: list = []


def _prepare(platform, tmp_path: Path, estate: str, ssh_sources: bool = False):
    from migrationbox.lab.lab import Lab
    from migrationbox.orchestration.demo import register_lab_endpoints
    from migrationbox.service import plan_estate

    planned = plan_estate(_write_estate(tmp_path / estate), estate=estate)
    plan = planned.plan
    assert len(plan.waves) == 1, plan.waves
    from migrationbox.store import repository
    from migrationbox.store.db import session_scope

    with session_scope() as s:
        servers = repository.get_estate(s, estate).servers
    if ssh_sources:
        from migrationbox.lab.sshd import sshd_available

        ok, why = sshd_available()
        if not ok:
            pytest.skip(f"the lab's SSH sources need OpenSSH: {why}")
    lab = Lab(estate, servers, root=Path(platform.runtime_dir) / "lab", data_scale_mb=2,
              ssh_sources=ssh_sources)
    _LABS.append(lab)
    endpoints = lab.up()
    if ssh_sources:  # the workers read the lab's SSH connection from Airflow
        platform.client().bulk_upsert("connections", [lab.airflow_connection_entity()])
    register_lab_endpoints(estate, endpoints)
    return plan, lab


def _weights(estate: str) -> dict[str, dict[str, int]]:
    """Weighted DNS records of the test's services, read back from the emulator."""
    from migrationbox.cloud.aws import AwsAdapter
    from migrationbox.cloud.aws_session import aws_client

    zone = f"{estate}.migrationbox.internal."
    zones = aws_client("route53").list_hosted_zones_by_name(DNSName=zone)["HostedZones"]
    zone_id = next(z["Id"].split("/")[-1] for z in zones if z["Name"] == zone)
    adapter = AwsAdapter()
    return {
        host: {
            w.set_identifier: w.weight
            for w in adapter.get_weighted_records(zone_id, f"{host}.{zone}")
        }
        for host in ("web-01", "api-01")
    }


def test_wave_migrates_end_to_end_with_rest_approvals(platform, tmp_path):
    """The lab's source disks are reached over SSH (a real sshd on loopback), as a real
    estate's would be."""
    from migrationbox.orchestration.follow import Approver, follow_run
    from migrationbox.store import repository
    from migrationbox.store.db import session_scope

    plan, _lab = _prepare(platform, tmp_path, "itok", ssh_sources=True)
    client = platform.client()
    dag_id = "migrate__itok__wave_01"
    client.wait_for_dag(dag_id, timeout=240)
    run = client.trigger(dag_id, conf=FAST_CONF)
    outcome = follow_run(client, dag_id, run["dag_run_id"], approver=Approver(name="admin"),
                         timeout=900, say=print)
    assert outcome.state == "success", outcome.task_states
    gates = {a["task_id"] for a in outcome.approvals}
    assert {"cutover.approve_cutover", "validate.approve_decommission"} <= gates

    with session_scope() as s:
        runs = {r.phase: r for r in repository.phase_runs(s, "itok", 1, run["dag_run_id"])}
        approvals = repository.approvals(s, "itok", 1, dag_run_id=run["dag_run_id"])
        status = repository.wave_statuses(s, "itok", plan.version)
    for phase in ("preflight", "provision", "replicate", "configure", "cutover", "validate",
                  "decommission"):
        assert runs[phase].status == "success", (phase, runs[phase].summary)
    assert {(a.gate, a.decision) for a in approvals} >= {
        ("cutover", "approved"), ("decommission", "approved")}
    assert all(a.approved_by for a in approvals)
    assert status[1] == "completed"
    replicated = runs["replicate"].details["details"]["servers"]
    for sid in ("web-01", "api-01", "db-01"):
        disk = replicated[sid]["disks"]["root"]
        assert " on " in disk["source"] and "127.0.0.1" in disk["source"], disk["source"]
        assert disk["verify"]["ok"] and disk["wire_bytes"] > 0
    assert replicated["db-01"]["databases"]["app"]["checksum_match"]
    assert replicated["db-01"]["databases"]["app"]["fallback_reason"]
    weights = _weights("itok")
    assert weights["web-01"] == {"source": 0, "target": 100}
    assert weights["api-01"] == {"source": 0, "target": 100}

    # the plugin's API serves the same progress, behind Airflow's authentication
    import httpx

    anonymous = httpx.get(f"{client.base_url}/migrationbox/estates/itok/events", timeout=10)
    assert anonymous.status_code == 401
    events = client.request("GET", "/migrationbox/estates/itok/events", params={"wave": 1})
    kinds = {e["kind"] for e in events}
    assert {"phase_started", "phase_success", "approval"} <= kinds


def test_failing_cutover_health_check_rolls_back_to_source(platform, tmp_path):
    from migrationbox.orchestration.follow import Approver, follow_run
    from migrationbox.store import repository
    from migrationbox.store.db import session_scope

    plan, lab = _prepare(platform, tmp_path, "itfail")
    client = platform.client()
    dag_id = "migrate__itfail__wave_01"
    client.wait_for_dag(dag_id, timeout=240)

    def decide(detail: dict) -> str:
        task = detail.get("task_id") or (detail.get("task_instance") or {}).get("task_id")
        if task == "cutover.approve_cutover":
            # the target web service starts failing right when traffic begins to move
            lab.fault("web-01", health="fail", side="target")
        return "Approve"

    run = client.trigger(dag_id, conf=FAST_CONF)
    outcome = follow_run(client, dag_id, run["dag_run_id"], approver=Approver(decide),
                         timeout=900, say=print)
    assert outcome.state == "failed"
    assert outcome.task_states["cutover.canary_shift"] == "failed"
    assert outcome.task_states["rollback.restore_dns"] == "success"
    assert outcome.task_states["rollback.keep_source_authoritative"] == "success"
    assert outcome.task_states["validate.decommission_sources"] in ("upstream_failed", "skipped")

    weights = _weights("itfail")
    assert weights["web-01"] == {"source": 100, "target": 0}
    assert weights["api-01"] == {"source": 100, "target": 0}
    with session_scope() as s:
        runs = {r.phase: r for r in repository.phase_runs(s, "itfail", 1, run["dag_run_id"])}
        status = repository.wave_statuses(s, "itfail", plan.version)
    assert runs["cutover"].status == "failed"
    assert "web-01" in (runs["cutover"].summary or "")
    assert status[1] == "rolled_back"


def test_scheduler_killed_mid_wave_comes_back_and_the_wave_completes(platform, tmp_path):
    """SIGKILL the scheduler (and its executor workers) while the wave waits at its
    cutover gate, start it again, approve: the same run carries on to success."""
    from migrationbox.orchestration.follow import Approver, follow_run

    _prepare(platform, tmp_path, "itcrash")
    client = platform.client()
    dag_id = "migrate__itcrash__wave_01"
    client.wait_for_dag(dag_id, timeout=240)
    restarted: list[int] = []

    def decide(detail: dict) -> str:
        task = detail.get("task_id") or (detail.get("task_instance") or {}).get("task_id")
        if task == "cutover.approve_cutover" and not restarted:
            old = platform.read_state().processes["airflow-scheduler"].pid
            record = platform.restart_component("scheduler", kill=True)
            assert record.pid != old
            restarted.append(record.pid)
        return "Approve"

    run = client.trigger(dag_id, conf=FAST_CONF)
    outcome = follow_run(client, dag_id, run["dag_run_id"], approver=Approver(decide),
                         timeout=900, say=print)
    assert restarted, "the scheduler was never restarted"
    assert outcome.state == "success", outcome.task_states
    assert outcome.task_states["validate.decommission_sources"] == "success"
