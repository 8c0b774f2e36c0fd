"""Adaptive Cards the bot sends: every builder's card validates against the published 1.5
schema, and the cards carry what the plan shows (progress, evidence, predicted vs actual)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from migrationbox.teams import parse
from migrationbox.teams.cards import (
    CARD_CONTENT_TYPE,
    SCHEMA_PATH,
    ActivityItem,
    ApprovalDecision,
    ApprovalRequest,
    CardActionData,
    CardValidationError,
    Check,
    CostLine,
    CostsView,
    Metric,
    MetricsView,
    StatusView,
    approval_card,
    approval_decided_card,
    card_attachment,
    confirmation_card,
    costs_card,
    metrics_card,
    progress_bar,
    status_card,
    status_list_card,
    validate_card,
)
from migrationbox.teams.models import Intent

T = datetime(2026, 5, 17, 14, 25, tzinfo=UTC)


def status_view() -> StatusView:
    """The plan's status example (component 1)."""
    return StatusView(
        migration_id="prod-migration-001", environment="Production", server_count=50,
        cloud="aws", region="us-east-1", phase_index=3, phase_total=7,
        phase_name="Data Replication", percent=72, elapsed_hours=48, estimated_hours=96,
        downtime_minutes=0, cutover_at=datetime(2026, 5, 18, 2, 0, tzinfo=UTC),
        estimated_completion=datetime(2026, 5, 17, 18, 0, tzinfo=UTC),
        activity=[
            ActivityItem(at=T, text="36 servers replicated successfully"),
            ActivityItem(at=T + timedelta(minutes=5), text="Database sync: 1.8TB / 2.5TB"),
            ActivityItem(at=T + timedelta(minutes=10),
                         text="Health checks passing (100% success rate)"),
        ],
        details_url="https://migrationbox.example/estates/prod-migration-001")


def approval_request() -> ApprovalRequest:
    """The plan's cutover approval (component 5)."""
    return ApprovalRequest(
        migration_id="prod-migration-001", gate="cutover", kind="cutover",
        title="Traffic Cutover", phase_index=6, phase_total=7, risk_level="Medium",
        estimated_downtime="10-15 minutes",
        checks=[Check(name="All health checks passing (100%)", passed=True),
                Check(name="Data replication complete (2.5TB synced)", passed=True),
                Check(name="DNS records configured", passed=True),
                Check(name="Rollback plan tested", passed=False)],
        scheduled_at=datetime(2026, 5, 18, 2, 0, tzinfo=UTC), requested_at=T,
        sla="urgent", respond_by=T + timedelta(hours=1), approvers=["sarah", "bob"])


def texts(card: dict[str, Any]) -> str:
    return json.dumps(card, ensure_ascii=False)


def actions(card: dict[str, Any]) -> list[dict[str, Any]]:
    return card.get("actions", [])


def all_cards() -> dict[str, dict[str, Any]]:
    confirm = parse("Indítsd el a production migrációt Azure-ra eastus")
    assert isinstance(confirm, Intent)
    return {
        "status": status_card(status_view()),
        "status_list": status_list_card([status_view(), status_view()]),
        "status_list_empty": status_list_card([]),
        "approval": approval_card(approval_request()),
        "approval_decided": approval_decided_card(approval_request(), ApprovalDecision(
            decision="rejected", by="sarah", at=T, reason="Rollback plan not tested")),
        "costs": costs_card(CostsView(scope="prod-migration-001", lines=[
            CostLine(item="Compute", predicted=12000, actual=13800),
            CostLine(item="Storage", predicted=2000, actual=1900),
            CostLine(item="Network", predicted=500, actual=None)])),
        "metrics": metrics_card(MetricsView(
            migration_id="prod-migration-001", servers_total=50, servers_migrated=36,
            measured_at=T, metrics=[
                Metric(name="Error rate", value=0.4, unit="%", target=1,
                       higher_is_better=False),
                Metric(name="Replication lag", value=45, unit="s", target=30,
                       higher_is_better=False),
                Metric(name="Health checks", value=100, unit="%")])),
        "confirmation": confirmation_card(confirm, "c-123"),
    }


@pytest.mark.parametrize("name", list(all_cards()))
def test_every_card_validates_against_the_1_5_schema(name: str) -> None:
    card = all_cards()[name]
    validate_card(card)
    assert card["version"] == "1.5"


def test_the_schema_is_the_published_one_and_refuses_broken_cards() -> None:
    assert json.loads(SCHEMA_PATH.read_text())["$schema"].startswith(
        "http://json-schema.org/draft-06/")
    card = status_card(status_view())
    broken = json.loads(json.dumps(card))
    broken["body"][0].pop("text")
    with pytest.raises(CardValidationError,
                       match="invalid at body/0: 'text' is a required property"):
        validate_card(broken)
    broken = json.loads(json.dumps(card))
    broken["actions"][1]["verbb"] = "typo"
    with pytest.raises(CardValidationError, match=r"at actions/1: .*'verbb' was unexpected"):
        validate_card(broken)
    newer = dict(card, version="1.6")
    with pytest.raises(CardValidationError, match=r"1\.5"):
        validate_card(newer)


def test_status_card_shows_progress_activity_and_next_actions() -> None:
    card = status_card(status_view())
    text = texts(card)
    assert "Migration Status: prod-migration-001" in text
    assert "3/7 - Data Replication (72% complete)" in text
    assert progress_bar(72) in text and "72%" in progress_bar(72)
    assert "Database sync" in text and "2026-05-18 02:00 UTC" in text
    verbs = [a.get("verb") for a in actions(card)]
    assert verbs == [None, "pause", "request-approval"]
    assert actions(card)[0]["type"] == "Action.OpenUrl"


def test_progress_bar_clamps() -> None:
    assert progress_bar(-5).endswith(" 0%") and progress_bar(250).endswith(" 100%")


def test_approval_card_has_the_evidence_and_three_answers() -> None:
    card = approval_card(approval_request())
    text = texts(card)
    for part in ("Approval Required: Traffic Cutover - prod-migration-001", "Medium",
                 "10-15 minutes", "✅ All health checks passing", "❌ Rollback plan tested",
                 "2026-05-18 02:00 UTC", "urgent", "sarah, bob"):
        assert part in text, part
    approve, reject, reschedule = actions(card)
    assert approve["verb"] == "approve" and approve["data"] == {
        "verb": "approve", "migration_id": "prod-migration-001", "gate": "cutover"}
    assert reject["type"] == "Action.ShowCard"
    reason = reject["card"]["body"][0]
    assert (reason["id"], reason["isRequired"]) == ("reason", True)
    assert reject["card"]["actions"][0]["verb"] == "reject"
    ids = [i["id"] for i in reschedule["card"]["body"]]
    assert ids == ["date", "time"]
    # what Teams sends back parses into the data contract, inputs merged in
    back = CardActionData.model_validate({**reject["card"]["actions"][0]["data"],
                                          "reason": "not tested"})
    assert (back.verb, back.gate, back.model_extra) == ("reject", "cutover",
                                                        {"reason": "not tested"})


def test_decided_card_says_who_and_when_and_has_no_buttons() -> None:
    card = approval_decided_card(approval_request(), ApprovalDecision(
        decision="approved", by="SarahDevOps", at=datetime(2026, 5, 18, 0, 0, tzinfo=UTC)))
    assert "Approval granted by SarahDevOps at 2026-05-18 00:00 UTC" in texts(card)
    assert "actions" not in card


def test_costs_card_compares_predicted_and_actual() -> None:
    card = all_cards()["costs"]
    text = texts(card)
    assert "+15.0%" in text and "-5.0%" in text
    assert "14,500.00 USD" in text  # predicted total
    assert "not known yet" in text  # network has no actual
    table = next(b for b in card["body"] if b["type"] == "Table")
    compute = table["rows"][1]["cells"]
    assert compute[0]["items"][0]["color"] == "Attention"  # over the 10 % tolerance
    storage = table["rows"][2]["cells"]
    assert "color" not in storage[0]["items"][0]


def test_metrics_card_marks_targets() -> None:
    card = all_cards()["metrics"]
    table = next(b for b in card["body"] if b["type"] == "Table")
    colors = [row["cells"][0]["items"][0].get("color") for row in table["rows"][1:]]
    assert colors == ["Good", "Attention", None]
    assert "36 / 50" in texts(card)


def test_confirmation_card_speaks_the_users_language_and_carries_only_an_id() -> None:
    card = all_cards()["confirmation"]
    text = texts(card)
    assert "Kérlek, erősítsd meg: migráció indítása" in text
    assert "eastus" in text
    yes, no = actions(card)
    assert yes["title"] == "Igen, mehet" and no["title"] == "Nem, mégse"
    assert yes["data"] == {"verb": "confirm", "confirmation_id": "c-123"}
    assert no["data"] == {"verb": "decline", "confirmation_id": "c-123"}


def test_inferred_values_are_marked_on_the_confirmation_card() -> None:
    from migrationbox.teams import ParseContext
    from migrationbox.teams.models import Cloud

    got = parse("Starte die Produktionsmigration nach Azure",
                ParseContext(default_regions={Cloud.AZURE: "westeurope"}))
    assert isinstance(got, Intent)
    card = confirmation_card(got, "c-9")
    validate_card(card)
    assert "Region *" in texts(card) and "Ja, ausführen" in texts(card)


def test_attachment_envelope() -> None:
    card = status_card(status_view())
    assert card_attachment(card) == {"contentType": CARD_CONTENT_TYPE, "content": card}
