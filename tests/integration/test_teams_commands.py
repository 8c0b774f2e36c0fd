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
        yield plat


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
