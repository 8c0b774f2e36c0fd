"""The Teams bot end to end: the platform's own bot process, called over HTTP with signed
tokens, acting on the real platform.

One embedded platform (its ``teams-bot`` component, started by ``up`` like in ``make
up``) and ``teams.dev_tenant.DevTenant`` in the test: the keys the tokens are signed with
(a loopback JWKS) and the Bot Connector the bot answers to (a loopback stub that checks
every request against the published swagger and the tokens it issued). ``attach`` writes
both into the bot's Airflow connection and restarts it, as an operator does with a real
tenant. A two-server production estate whose wave stops at its risk gate after
pre-flight: a command starts it (after a confirmation), the bot's own background scan
posts the approval card, a person not on the approvers list is refused, the approver's
click moves the real wave past the gate, and a cancel (confirmed) ends the run.

Run under ``flock /tmp/mbx/platform.lock`` when other platform tests run on the machine.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

pytestmark = [pytest.mark.integration, pytest.mark.airflow]

ESTATE = "tbot"
DAG_ID = f"migrate__{ESTATE}__wave_01"
GATE_TASK = "risk.approve_plan_risks"
CHANNEL = "19:tbot-migration@thread.tacv2"


def _record(sid: str, role: str, ip: str, ports: list[int], kind: str) -> dict[str, Any]:
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

    with running_platform(tmp_path_factory.mktemp("teams-e2e"),
                          MIGRATIONBOX_TEAMS_NOTIFY_INTERVAL_S="2") as plat:
        yield plat


@pytest.fixture(scope="module")
def tenant(platform: Any) -> Iterator[tuple[Any, str]]:
    from migrationbox.teams.dev_tenant import DevTenant

    with DevTenant() as dev:
        yield dev, dev.attach(platform)


def _wait(what: str, predicate: Any, timeout: float, poll: float = 2.0) -> Any:
    from migrationbox.platform.testing import wait_until

    return wait_until(what, predicate, timeout, poll)


def _task_states(client: Any, run_id: str) -> dict[str, Any]:
    return {t["task_id"]: t.get("state") for t in client.task_instances(DAG_ID, run_id)}


def _texts(replies: list[Any]) -> str:
    from migrationbox.teams.dev_tenant import card_text, cards_of

    parts = []
    for r in replies:
        parts.append(str(r.body.get("text") or ""))
        parts.extend(card_text(c) for c in cards_of(r))
    return "\n".join(parts)


def test_forged_and_replayed_calls_are_refused_and_run_nothing(tenant: tuple[Any, str]):
    from migrationbox.store.db import session_scope
    from migrationbox.teams import state
    from migrationbox.teams.testing import bot_claims, make_key

    dev, url = tenant
    sarah = dev.user(url, name="Sarah DevOps", aad_id="aad-sarah", conversation_id=CHANNEL)
    body = sarah.activity("message", text=f"pause {ESTATE}")
    forger = make_key(dev.key.kid)  # another key claiming the published key id
    forged = forger.sign(bot_claims(dev.app_id, service_url=dev.connector.url))
    answer = httpx.post(f"{url}/api/messages", json=body,
                        headers={"Authorization": f"Bearer {forged}"}, timeout=60)
    assert answer.status_code == 401
    assert "pause" not in answer.text  # a generic body, nothing echoed

    good = dev.key.sign(bot_claims(dev.app_id, service_url=dev.connector.url))
    body = sarah.activity("message", text="hello there")
    first = httpx.post(f"{url}/api/messages", json=body,
                       headers={"Authorization": f"Bearer {good}"}, timeout=60)
    assert first.status_code in (200, 201, 202), first.text
    again = httpx.post(f"{url}/api/messages", json=body,
                       headers={"Authorization": f"Bearer {good}"}, timeout=60)
    assert again.status_code == 401
    with session_scope() as s:
        logged = [c.text for c in state.recent_commands(s, limit=50)]
    assert logged == ["hello there"]  # the forged pause and the replay never ran


def test_a_command_starts_a_wave_and_a_card_approval_moves_it_past_its_gate(
        platform: Any, tenant: tuple[Any, str], tmp_path: Path) -> None:
    from migrationbox.service import plan_estate
    from migrationbox.store import repository
    from migrationbox.store.db import session_scope
    from migrationbox.teams import state
    from migrationbox.teams.cards import validate_card
    from migrationbox.teams.dev_tenant import card_verbs, cards_of

    folder = tmp_path / ESTATE
    folder.mkdir()
    for r in (_record("web-01", "web", "10.42.0.11", [443], "web"),
              _record("db-01", "postgresql-primary", "10.42.0.13", [5432], "database")):
        (folder / f"{r['server_id']}.json").write_text(json.dumps(r))
    plan = plan_estate(folder, estate=ESTATE).plan
    assert plan.waves[0].approval_reasons, "the wave must ask for a risk approval"
    with session_scope() as s:
        state.set_approvers(s, ESTATE, [("aad-sarah", "Sarah DevOps", "primary")])
    client = platform.client()
    client.wait_for_dag(DAG_ID, timeout=240)

    dev, url = tenant
    sarah = dev.user(url, name="Sarah DevOps", aad_id="aad-sarah", conversation_id=CHANNEL)
    mallory = dev.user(url, name="Mallory", aad_id="aad-mallory", conversation_id=CHANNEL)

    # a command with a card answer, through the endpoint and back through the connector
    status = sarah.say(f"status {ESTATE}")
    assert status and all(not r.errors for r in status)
    (status_card,) = [c for r in status for c in cards_of(r)]
    validate_card(status_card)
    assert ESTATE in json.dumps(status_card)

    # a destructive command asks first; only the confirmation starts the real run
    (ask,) = sarah.say("start production aws us-east-1")
    (confirm_card,) = cards_of(ask)
    validate_card(confirm_card)
    assert client.dag_runs(DAG_ID) == []
    confirm = card_verbs(confirm_card)["confirm"]
    started = sarah.click("confirm", confirm, reply_to=ask.answer_id)
    assert "Started wave 1" in json.dumps(started), started
    (run,) = client.dag_runs(DAG_ID)
    run_id = run["dag_run_id"]
    try:
        # the bot's own background scan posts the approval card once the gate waits
        posted = dev.wait_for(
            "approval card",
            lambda r: any("approve" in card_verbs(c) and "plan_risks" in json.dumps(c)
                          for c in cards_of(r)),
            timeout=480, after=0)
        assert not posted.errors and posted.conversation_id == CHANNEL
        (approval_card,) = cards_of(posted)
        validate_card(approval_card)
        approve = card_verbs(approval_card)["approve"]

        # not on the approvers list: told so, and the gate keeps waiting
        refused = mallory.click("approve", approve, reply_to=posted.answer_id)
        assert "may not approve" in json.dumps(refused), refused
        assert client.hitl_details(DAG_ID, run_id, pending_only=True)

        decided = sarah.click("approve", approve, reply_to=posted.answer_id)
        assert isinstance(decided, dict), decided
        validate_card(decided)
        assert "Sarah DevOps" in json.dumps(decided)

        try:
            _wait("the gate to pass",
                  lambda: _task_states(client, run_id).get(GATE_TASK) == "success",
                  timeout=300)
        except AssertionError:
            raise AssertionError(
                f"gate not passed: the answer was {json.dumps(decided)[:1500]}; tasks "
                f"{_task_states(client, run_id)}; HITL "
                f"{json.dumps(client.hitl_details(DAG_ID, run_id))[:1500]}") from None
        with session_scope() as s:
            rows = [a for a in repository.approvals(s, ESTATE, 1, dag_run_id=run_id)
                    if a.gate == "plan_risks"]
        assert [r.decision for r in rows] == ["approved"]
        assert rows[0].approved_by == f"Sarah DevOps (Teams, via {platform.username})"

        # the posted card was updated in place, and a second click is told who decided
        updates = [r for r in dev.connector.activities("update_activity")
                   if r.activity_id == posted.answer_id]
        assert updates and not updates[-1].errors
        assert "Approval granted by Sarah DevOps" in json.dumps(cards_of(updates[-1]),
                                                                ensure_ascii=False)
        again = sarah.click("approve", approve, reply_to=posted.answer_id)
        assert "already decided (approved) by Sarah DevOps" in json.dumps(
            again, ensure_ascii=False), again
    finally:
        # cancel (asks first), as a user would; the run ends failed
        (ask_cancel,) = sarah.say(f"cancel {ESTATE}")
        cancel_cards = cards_of(ask_cancel)
        if cancel_cards:
            sarah.click("confirm", card_verbs(cancel_cards[0])["confirm"])
        if client.dag_run(DAG_ID, run_id)["state"] not in ("failed", "success"):
            client.request("PATCH", f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}",
                           json={"state": "failed"})
    assert client.dag_run(DAG_ID, run_id)["state"] == "failed"
    with session_scope() as s:
        commands = {c.command for c in state.recent_commands(s, limit=50)}
    assert {"status", "start", "cancel"} <= commands


#: The plan's twenty commands as a person types them (the estate is the module's).
TWENTY = [
    ("status", f"status {ESTATE}"), ("status", "status"),
    ("start", "start production aws us-east-1"),
    ("pause", f"pause {ESTATE}"), ("resume", f"resume {ESTATE}"),
    ("rollback", f"rollback {ESTATE}"), ("cancel", f"cancel {ESTATE}"),
    ("approve", f"approve {ESTATE} risk"),
    ("reject", f'reject {ESTATE} risk "not during the freeze"'),
    ("request-approval", f"request-approval {ESTATE} risk"),
    ("report", "report weekly"), ("report", "report monthly"),
    ("metrics", f"metrics {ESTATE}"), ("costs", f"costs {ESTATE}"),
    ("search", 'search "database"'), ("runbook", "runbook"),
    ("lessons-learned", "lessons-learned"),
    ("alert-config", f"alert-config {ESTATE} incidents P2"),
    ("mute", f"mute {ESTATE} 30m"), ("unmute", f"unmute {ESTATE}"),
]


def test_each_command_answers_through_the_endpoint(platform: Any,
                                                   tenant: tuple[Any, str]) -> None:
    """Every command, typed to the platform's bot over HTTP, gets an answer the connector
    accepts (cards valid) and none ends in an error; destructive ones only ask (and are
    declined here), so nothing runs. Runs after the wave test: the estate exists."""
    from migrationbox.store.db import session_scope
    from migrationbox.teams import state
    from migrationbox.teams.cards import validate_card
    from migrationbox.teams.dev_tenant import card_verbs, cards_of

    dev, url = tenant
    ada = dev.user(url, name="Ada", aad_id="aad-ada", conversation_id="a:ada-personal",
                   conversation_type="personal")
    client = platform.client()
    runs_before = len(client.dag_runs(DAG_ID))
    with session_scope() as s:
        first_id = max((c.id for c in state.recent_commands(s, limit=1)), default=0)
    for _command, text in TWENTY:
        replies = ada.say(text)
        assert replies, f"{text!r}: no answer"
        assert all(not r.errors for r in replies), (text, [r.errors for r in replies])
        for card in (c for r in replies for c in cards_of(r)):
            validate_card(card)
            if "decline" in card_verbs(card):  # a destructive command asks first: say no
                ada.click("decline", card_verbs(card)["decline"])
    assert len(client.dag_runs(DAG_ID)) == runs_before  # nothing destructive ran
    with session_scope() as s:
        logged = [c for c in state.recent_commands(s, limit=200) if c.id > first_id]
    by_text = {c.text: c for c in logged}
    for command, text in TWENTY:
        row = by_text.get(text)
        assert row is not None, f"{text!r} was not logged"
        assert row.command == command, (text, row.command, row.outcome, row.detail)
        assert row.outcome != "error", (text, row.detail)
