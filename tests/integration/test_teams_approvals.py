"""An approval answered from a Teams card moves a real wave past its gate.

One platform (emulator + Airflow) for the module and a loopback Bot Connector
(``ConnectorStub``, checking every body against the published swagger) reached through
the real ``BotConnectorClient``. A production estate whose plan asks for a risk approval
is triggered with the default conf (``approvals: required``), so its wave stops at
``risk.approve_plan_risks`` right after pre-flight; no lab is needed to get there. The
test stops the run as soon as the gate has passed and the next task was scheduled.

Run under ``flock /tmp/mbx/platform.lock``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.airflow]

ESTATE = "tapprove"
DAG_ID = f"migrate__{ESTATE}__wave_01"
GATE_TASK = "risk.approve_plan_risks"
CONVERSATION = "19:tapprove@thread.tacv2"


def _record(sid: str, role: str, ip: str, ports: list[int], kind: str) -> dict:
    return {
        "server_id": sid, "hostname": f"{sid}.corp.local", "ip_addresses": [ip],
        "os": {"type": "Linux", "distribution": "Ubuntu", "version": "22.04"},
        "hardware": {"cpu_cores": 2, "ram_gb": 8, "disk_total_gb": 50},
        "applications": [{"name": role, "ports": ports, "kind": kind, "data_size_gb": 1.0}],
        "network_dependencies": [],
        "performance_baseline": {"cpu_avg_utilization_pct": 30,
                                 "memory_avg_utilization_pct": 50},
        "environment": "production", "role": role,
        "backup": {"available": True, "last_backup_at": "2026-11-24T02:00:00Z"},
    }


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from migrationbox.platform.testing import running_platform

    # the platform's own bot would post the same cards from its background scan (to a
    # connector it cannot reach, claiming and dropping them): this test drives the
    # approval workflow itself, so the bot's scan is off (interval 0)
    with running_platform(tmp_path_factory.mktemp("teams-approvals"),
                          MIGRATIONBOX_TEAMS_NOTIFY_INTERVAL_S="0") as plat:
        yield plat


@pytest.fixture(scope="module")
def connector() -> Iterator[Any]:
    from migrationbox.teams.connector_stub import ConnectorStub

    with ConnectorStub() as stub:
        yield stub


def _wait(what: str, predicate, timeout: float, poll: float = 2.0):
    from migrationbox.platform.testing import wait_until

    return wait_until(what, predicate, timeout, poll)


def _inbound(connector: Any, aad: str, name: str):
    from migrationbox.teams.contracts import ConversationRef, Inbound

    ref = ConversationRef(conversation_id=CONVERSATION, service_url=connector.url,
                          bot_id="28:" + connector.app_id, tenant_id="tenant-1",
                          is_group=True, conversation_type="channel")
    return Inbound(activity_id=f"act-{aad}", user_id=f"29:{aad}", user_aad_id=aad,
                   user_name=name, conversation=ref)


def _task_states(client: Any, run_id: str) -> dict[str, str | None]:
    return {t["task_id"]: t.get("state") for t in client.task_instances(DAG_ID, run_id)}


def test_an_approver_moves_the_wave_past_its_gate_and_others_are_refused(
        platform: Any, connector: Any, tmp_path: Path) -> None:
    from migrationbox.service import plan_estate
    from migrationbox.store import repository
    from migrationbox.store.db import session_scope
    from migrationbox.teams import approvals, state
    from migrationbox.teams.cards import validate_card
    from migrationbox.teams.connector import BotConnectorClient, ClientCredentialsTokenProvider

    folder = tmp_path / ESTATE
    folder.mkdir()
    for r in (_record("web-01", "web", "10.41.0.11", [443], "web"),
              _record("db-01", "postgresql-primary", "10.41.0.13", [5432], "database")):
        (folder / f"{r['server_id']}.json").write_text(json.dumps(r))
    plan = plan_estate(folder, estate=ESTATE).plan
    assert plan.waves[0].approval_reasons, "the wave must ask for a risk approval"

    sarah = _inbound(connector, "aad-sarah", "Sarah DevOps")
    mallory = _inbound(connector, "aad-mallory", "Mallory")
    with session_scope() as s:
        state.remember_conversation(s, sarah.conversation, estate=ESTATE)
        state.set_approvers(s, ESTATE, [("aad-sarah", "Sarah DevOps", "primary")])
    sender = BotConnectorClient(ClientCredentialsTokenProvider(
        connector.token_url, connector.app_id, connector.secret, connector.scope))

    client = platform.client()
    client.wait_for_dag(DAG_ID, timeout=240)
    run_id = client.trigger(DAG_ID, conf={})["dag_run_id"]
    try:
        gates = _wait("the wave to wait at its risk gate",
                      lambda: approvals.waiting_gates(client, ESTATE), timeout=420)
        assert [(g.gate, g.task_id, g.dag_run_id) for g in gates] == [
            ("plan_risks", GATE_TASK, run_id)]

        # the card, through the real Bot Connector client, checked against the swagger
        assert approvals.post_waiting_gates(store_url=None, client=client, sender=sender) == 1
        assert approvals.post_waiting_gates(store_url=None, client=client, sender=sender) == 0
        sent = connector.activities("send_to_conversation")
        assert len(sent) == 1 and sent[0].status in (200, 201) and not sent[0].errors
        card = sent[0].body["attachments"][0]["content"]
        validate_card(card)
        text = json.dumps(card, ensure_ascii=False)
        assert "plan_risks@wave-1" in text and "preflight" in text and "Sarah DevOps" in text

        # someone not on the list: refused, the gate keeps waiting
        refused = approvals.answer_gate(
            store_url=None, client=client, estate=ESTATE, gate="plan_risks@wave-1",
            decision="approve", user=mallory, reason=None, when=None, sender=sender)
        assert not refused.ok
        assert refused.message == f"you may not approve {ESTATE}; approvers are Sarah DevOps"
        assert client.hitl_details(DAG_ID, run_id, pending_only=True)

        # the approver, from the card's button (estate + gate reference)
        time.sleep(3)  # the park has been reported (orchestration.follow settles the same)
        answer = approvals.answer_gate(
            store_url=None, client=client, estate=ESTATE, gate="plan_risks@wave-1",
            decision="approve", user=sarah, reason=None, when=None, sender=sender)
        assert answer.ok, answer.message

        states = _wait("the gate to pass and the next task to be scheduled",
                       lambda: (lambda st: st if st.get(GATE_TASK) == "success"
                                and st.get("provision.infrastructure") not in (None, "none")
                                else None)(_task_states(client, run_id)), timeout=300)
        assert states[GATE_TASK] == "success"

        detail = next(d for d in client.hitl_details(DAG_ID, run_id)
                      if d["task_instance"]["task_id"] == GATE_TASK)
        assert detail["chosen_options"] == ["Approve"]
        assert detail["params_input"]["teams_user"] == "Sarah DevOps"

        def recorded():
            with session_scope() as s:
                rows = repository.approvals(s, ESTATE, 1, dag_run_id=run_id)
            return [r for r in rows if r.gate == "plan_risks" and r.decision == "approved"]
        approval = _wait("the operator's approval record", recorded, timeout=60)[0]
        # the operator names the Teams user who clicked, and the bot's Airflow user the
        # answer came through
        assert approval.approved_by == f"Sarah DevOps (Teams, via {platform.username})"

        updates = connector.activities("update_activity")
        assert len(updates) == 1 and not updates[0].errors
        assert updates[0].activity_id == sent[0].answer_id
        decided = updates[0].body["attachments"][0]["content"]
        validate_card(decided)
        assert "Approval granted by Sarah DevOps" in json.dumps(decided, ensure_ascii=False)

        again = approvals.answer_gate(
            store_url=None, client=client, estate=ESTATE, gate="plan_risks@wave-1",
            decision="approve", user=sarah, reason=None, when=None, sender=sender)
        assert not again.ok and "already decided (approved) by Sarah DevOps" in again.message
    finally:  # stop as soon as the gate is passed: nothing after it is under test
        client.request("PATCH", f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}",
                       json={"state": "failed"})
