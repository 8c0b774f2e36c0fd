"""Teams commands against the real embedded platform: Airflow 3 by REST and the store.

One platform for the module (``platform.testing.running_platform``), one planned estate
with two waves. Wave 1 is recorded as skipped, so ``start`` picks wave 2, whose first
task waits (a rescheduling sensor) until wave 1 is completed: the run stays running long
enough to be seen by ``status``, refused a second ``start`` and ``rollback`` (traffic never
moved), and cancelled. No lab is needed because no phase runs.

Run under ``flock /tmp/mbx/platform.lock`` (one platform test at a time on this machine).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.airflow]

ESTATE = "teamscmd"
WAVE2 = f"migrate__{ESTATE}__wave_02"


def _record(sid: str, role: str, ip: str, port: int) -> dict:
    return {
        "server_id": sid,
        "hostname": f"{sid}.corp.local",
        "ip_addresses": [ip],
        "os": {"type": "Linux", "distribution": "Ubuntu", "version": "22.04"},
        "hardware": {"cpu_cores": 2, "ram_gb": 8, "disk_total_gb": 50},
        "applications": [{"name": role, "ports": [port], "kind": "web", "data_size_gb": 1}],
        "network_dependencies": [],
        "performance_baseline": {"cpu_avg_utilization_pct": 30,
                                 "memory_avg_utilization_pct": 50,
                                 "cpu_p95_utilization_pct": 60},
        "environment": "production",
        "role": role,
        "backup": {"available": True, "last_backup_at": "2026-11-24T02:00:00Z"},
    }


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    from migrationbox.platform.testing import running_platform

    with running_platform(tmp_path_factory.mktemp("teams-platform")) as plat:
        try:
            yield plat
        finally:  # the labs' source and target databases too, not only their processes
            while _LABS:
                _LABS.pop().down(purge=True)


#: labs the module's tests started: purged when the module's platform stops
_LABS: list = []


@pytest.fixture(scope="module")
def planned(platform, tmp_path_factory):
    from migrationbox.planning.models import PlanSettings
    from migrationbox.service import plan_estate
    from migrationbox.store import repository
    from migrationbox.store.db import session_scope

    folder = tmp_path_factory.mktemp("estate") / ESTATE
    folder.mkdir()
    for i, (sid, role) in enumerate((("web-01", "web"), ("api-01", "api"),
                                     ("app-01", "app"))):
        (folder / f"{sid}.json").write_text(json.dumps(
            _record(sid, role, f"10.41.0.{11 + i}", 8080 + i)))
    plan = plan_estate(folder, estate=ESTATE,
                       settings=PlanSettings(max_servers_per_wave=2)).plan
    assert len(plan.waves) == 2, plan.waves
    with session_scope() as s:
        repository.set_wave_status(s, ESTATE, 1, "skipped")
    client = platform.client()
    client.wait_for_dag(WAVE2, timeout=240)
    return plan


@pytest.fixture()
def dispatcher(platform, planned):
    from migrationbox.teams.dispatch import CommandDispatcher

    return CommandDispatcher(os.environ["MIGRATIONBOX_STORE_URL"], platform.client)


def _inbound(text: str = "", user: str = "u-alice"):
    from migrationbox.teams.contracts import ConversationRef, Inbound

    return Inbound(activity_id="a", text=text, user_id=user, user_name="Alice",
                   locale="en-US",
                   conversation=ConversationRef(conversation_id="teams-it-1",
                                                service_url="https://smba.example/emea/",
                                                bot_id="bot"))


def test_pause_and_resume_are_visible_in_airflow(dispatcher, platform):
    client = platform.client()
    (reply,) = dispatcher.handle_message(_inbound(f"pause {ESTATE}"))
    assert "Paused" in (reply.text or ""), reply
    assert client.get_dag(WAVE2)["is_paused"] is True
    assert client.get_dag(f"migrate__{ESTATE}__wave_01")["is_paused"] is True
    (reply,) = dispatcher.handle_message(_inbound(f"resume {ESTATE}"))
    assert "Resumed" in (reply.text or ""), reply
    assert client.get_dag(WAVE2)["is_paused"] is False


def test_start_confirm_status_then_cancel_on_a_real_run(dispatcher, platform):
    from migrationbox.platform.testing import wait_until
    from migrationbox.teams.cards import CardActionData, validate_card

    client = platform.client()
    (planned_card,) = dispatcher.handle_message(_inbound(f"status {ESTATE}"))
    assert planned_card.card and "planned" in json.dumps(planned_card.card)

    # a cloud without an execution adapter: what can be done instead, no confirmation
    (azure,) = dispatcher.handle_message(_inbound("start production azure eastus"))
    assert azure.card is None and "execution adapter" in (azure.text or "")

    (ask,) = dispatcher.handle_message(_inbound("start production aws us-east-1"))
    assert ask.card, ask
    validate_card(ask.card)
    assert client.dag_runs(WAVE2) == []
    cid = ask.card["actions"][0]["data"]["confirmation_id"]
    refused = dispatcher.handle_card_action(
        _inbound(user="u-mallory"), CardActionData(verb="confirm", confirmation_id=cid))
    assert "Only the person who asked" in (refused.text or "")
    assert client.dag_runs(WAVE2) == []
    done = dispatcher.handle_card_action(_inbound(), CardActionData(verb="confirm",
                                                                    confirmation_id=cid))
    assert "Started wave 2" in (done.text or ""), done
    run_id = f"teams__{cid}"
    run = client.dag_run(WAVE2, run_id)
    assert run["conf"] == {} and "Alice" in (run.get("note") or "")

    # the run waits for wave 1 (skipped, not completed) in its first sensor
    wait_until("the wave 2 run to be running",
               lambda: client.dag_run(WAVE2, run_id)["state"] == "running", timeout=120)
    (status,) = dispatcher.handle_message(_inbound(f"status {ESTATE}"))
    validate_card(status.card)
    facts = {f["title"]: f["value"] for f in status.card["body"][1]["facts"]}
    assert facts["State"].startswith("wave 2 running"), facts
    assert facts["Phase"].startswith("1/7 - preflight"), facts
    (listed,) = dispatcher.handle_message(_inbound("status"))
    assert ESTATE in json.dumps(listed.card)

    (again,) = dispatcher.handle_message(_inbound("start production aws us-east-1"))
    assert "already running" in (again.text or "")
    (rollback,) = dispatcher.handle_message(_inbound(f"rollback {ESTATE}"))
    assert "never moved" in (rollback.text or "") and rollback.card is None

    (ask_cancel,) = dispatcher.handle_message(_inbound(f"cancel {ESTATE}"))
    assert ask_cancel.card
    (cancelled,) = dispatcher.handle_message(_inbound("yes"))
    assert "marked failed" in (cancelled.text or ""), cancelled
    final = wait_until("the run to be failed",
                       lambda: (r := client.dag_run(WAVE2, run_id))["state"] == "failed"
                       and r, timeout=60)
    assert "cancelled from Microsoft Teams" in (final.get("note") or "")

    from migrationbox.store.db import session_scope
    from migrationbox.teams import state

    with session_scope() as s:
        log = [(r.command, r.outcome) for r in reversed(state.recent_commands(s))]
    assert ("start", "asked") in log and ("start", "ok") in log
    assert ("cancel", "ok") in log and ("rollback", "refused") in log


def test_airflow_down_is_one_line(planned, tmp_path: Path):
    """A client pointed at a closed port: the answer is a line, not a traceback."""
    from migrationbox.platform.rest import AirflowClient
    from migrationbox.teams.dispatch import CommandDispatcher

    d = CommandDispatcher(os.environ["MIGRATIONBOX_STORE_URL"],
                          lambda: AirflowClient("http://127.0.0.1:9", "admin", "admin",
                                                timeout=2))
    (reply,) = d.handle_message(_inbound(f"status {ESTATE}"))
    assert reply.text and "not answering" in reply.text and "\n" not in reply.text


# -- a rollback asked from Teams after a completed cutover --------------------------

RB = "teamsrb"
RB_DAG = f"migrate__{RB}__wave_01"
FAST_CONF = {"cutover": {"steps": [5, 25, 50, 100], "dwell_seconds": 0.5},
             "health": {"probe_requests": 10}}


def _service(sid: str, role: str, ip: str, port: int, kind: str, data_gb: float = 1.0
             ) -> dict:
    record = _record(sid, role, ip, port)
    record["hardware"]["ram_gb"] = 16
    record["applications"] = [{"name": role, "ports": [port], "kind": kind,
                               "data_size_gb": data_gb}]
    return record


def _rb_weights() -> dict[str, dict[str, int]]:
    from migrationbox.cloud.aws import AwsAdapter
    from migrationbox.cloud.aws_session import aws_client

    zone = f"{RB}.migrationbox.internal."
    zones = aws_client("route53").list_hosted_zones_by_name(DNSName=zone)["HostedZones"]
    zone_id = next(z["Id"].split("/")[-1] for z in zones if z["Name"] == zone)
    adapter = AwsAdapter()
    return {host: {w.set_identifier: w.weight
                   for w in adapter.get_weighted_records(zone_id, f"{host}.{zone}")}
            for host in ("web-01", "api-01")}


def test_rollback_from_teams_after_a_completed_cutover_passes_the_rollback_gate(
        dispatcher, platform, tmp_path):
    """A wave migrated to 100 % target (lab, emulator, approvals by REST); then
    `rollback` from Teams: confirmed, the run's rollback group runs again and waits at
    the rollback approval gate; approved by REST, traffic is back on the source."""
    from migrationbox.lab.lab import Lab
    from migrationbox.orchestration.demo import register_lab_endpoints
    from migrationbox.orchestration.follow import Approver, follow_run
    from migrationbox.platform.testing import wait_until
    from migrationbox.service import plan_estate
    from migrationbox.store import repository
    from migrationbox.store.db import session_scope

    folder = tmp_path / RB
    folder.mkdir()
    for record in (_service("web-01", "web", "10.42.0.11", 80, "web"),
                   _service("api-01", "api", "10.42.0.12", 8080, "api"),
                   _service("db-01", "postgresql-primary", "10.42.0.13", 5432, "database",
                            2.0)):
        (folder / f"{record['server_id']}.json").write_text(json.dumps(record))
    plan = plan_estate(folder, estate=RB).plan
    assert len(plan.waves) == 1
    with session_scope() as s:
        servers = repository.get_estate(s, RB).servers
    lab = Lab(RB, servers, root=Path(platform.runtime_dir) / "lab", data_scale_mb=2)
    _LABS.append(lab)
    register_lab_endpoints(RB, lab.up())
    client = platform.client()
    client.wait_for_dag(RB_DAG, timeout=240)
    run_id = client.trigger(RB_DAG, conf=FAST_CONF)["dag_run_id"]
    outcome = follow_run(client, RB_DAG, run_id, approver=Approver(name="admin"),
                         timeout=900, say=print)
    assert outcome.state == "success", outcome.task_states
    assert _rb_weights()["web-01"] == {"source": 0, "target": 100}

    (ask,) = dispatcher.handle_message(_inbound(f"rollback {RB}"))
    assert ask.card, ask
    (done,) = dispatcher.handle_message(_inbound("yes"))
    assert "approval gate" in (done.text or ""), done

    def gate_waiting() -> bool:
        states = {t["task_id"]: t.get("state") for t in client.task_instances(RB_DAG, run_id)}
        return states.get("rollback.approve_rollback") == "awaiting_input"

    wait_until("the rollback gate to wait for approval", gate_waiting, timeout=300, poll=2)
    final = follow_run(client, RB_DAG, run_id, approver=Approver(name="admin"),
                       timeout=600, say=print)
    assert final.task_states["rollback.restore_dns_after_approval"] == "success", \
        final.task_states
    assert _rb_weights()["web-01"] == {"source": 100, "target": 0}
    with session_scope() as s:
        assert repository.wave_statuses(s, RB)[1] == "rolled_back"
