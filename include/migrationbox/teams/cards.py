"""Adaptive Cards 1.5 for the bot's answers that are more than a line.

Each builder takes a small pydantic view (what the platform knows, gathered by the
endpoint) and returns the card as a dict. Buttons are ``Action.Execute`` (Universal
Actions, 1.4+): Teams sends them back as an ``invoke`` activity named
``adaptiveCard/action`` whose ``value`` carries the ``verb`` and ``data``; the endpoint
answers with the updated card (an approval card becomes "approved by X at T").
``CardActionData`` is the data contract of those buttons.

``validate_card`` checks a card against the published 1.5 schema (the copy in
``migrationbox/schemas``), so a card that Teams would refuse to render fails in the tests
and before it is sent.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from migrationbox.errors import InputError
from migrationbox.teams.grammar import GRAMMARS
from migrationbox.teams.models import Intent, Language
from migrationbox.teams.parser import SLOT_NAMES, confirmation_question

ADAPTIVE_CARD_VERSION = "1.5"
CARD_CONTENT_TYPE = "application/vnd.microsoft.card.adaptive"
SCHEMA_PATH = Path(__file__).resolve().parent.parent / "schemas" / "adaptive-card-1.5.schema.json"

Verb = Literal["approve", "reject", "reschedule", "confirm", "decline", "pause",
               "request-approval", "status"]


class CardValidationError(InputError):
    """A card does not validate against the Adaptive Cards 1.5 schema."""


class CardActionData(BaseModel):
    """What an ``Action.Execute`` button sends back (merged with the card's inputs:
    ``reason`` on reject, ``date``/``time`` on reschedule)."""

    model_config = ConfigDict(extra="allow")

    verb: Verb
    migration_id: str | None = None
    gate: str | None = None
    confirmation_id: str | None = None


def _when(value: datetime | None) -> str:
    if value is None:
        return "-"
    if value.tzinfo is not None:
        value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%d %H:%M UTC")


def _card(body: list[dict[str, Any]], actions: list[dict[str, Any]] | None = None
          ) -> dict[str, Any]:
    card: dict[str, Any] = {
        "type": "AdaptiveCard",
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "version": ADAPTIVE_CARD_VERSION,
        "body": body,
    }
    if actions:
        card["actions"] = actions
    return card


def _title(text: str, color: str = "Default") -> dict[str, Any]:
    return {"type": "TextBlock", "text": text, "weight": "Bolder", "size": "Medium",
            "wrap": True, "color": color}


def _facts(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    return {"type": "FactSet", "facts": [{"title": t, "value": v} for t, v in pairs]}


def _execute(title: str, data: CardActionData, style: str | None = None) -> dict[str, Any]:
    action: dict[str, Any] = {"type": "Action.Execute", "title": title, "verb": data.verb,
                              "data": data.model_dump(mode="json", exclude_none=True)}
    if style:
        action["style"] = style
    return action


def progress_bar(percent: float, width: int = 24) -> str:
    """A text progress bar (1.5 has no progress element; Teams renders it monospace)."""
    pct = min(100.0, max(0.0, percent))
    filled = round(pct / 100 * width)
    return "█" * filled + "░" * (width - filled) + f" {pct:.0f}%"


# ---------------------------------------------------------------------------- status


class ActivityItem(BaseModel):
    at: datetime
    text: str


class StatusView(BaseModel):
    """One migration (an estate and its plan) as the status command shows it."""

    migration_id: str
    environment: str
    server_count: int | None = Field(default=None, ge=0)
    cloud: str
    region: str
    phase_index: int = Field(ge=0)
    phase_total: int = Field(ge=1)
    phase_name: str
    percent: float = Field(ge=0, le=100)
    state: str = "running"
    elapsed_hours: float | None = Field(default=None, ge=0)
    estimated_hours: float | None = Field(default=None, ge=0)
    downtime_minutes: float | None = Field(default=None, ge=0)
    cutover_at: datetime | None = None
    estimated_completion: datetime | None = None
    activity: list[ActivityItem] = Field(default_factory=list)
    details_url: str | None = None


def status_card(view: StatusView, *, recent: int = 5) -> dict[str, Any]:
    """The plan's status card: facts, progress, recent activity, next actions."""
    env = view.environment + (f" ({view.server_count} servers)"
                              if view.server_count is not None else "")
    facts = [
        ("Environment", env),
        ("Target", f"{view.cloud.upper()} {view.region}"),
        ("Phase", f"{view.phase_index}/{view.phase_total} - {view.phase_name} "
                  f"({view.percent:.0f}% complete)"),
        ("State", view.state),
    ]
    if view.elapsed_hours is not None:
        estimate = (f" / {view.estimated_hours:g} hours estimated"
                    if view.estimated_hours is not None else "")
        facts.append(("Duration", f"{view.elapsed_hours:g} hours{estimate}"))
    if view.downtime_minutes is not None:
        cutover = f" (cutover scheduled for {_when(view.cutover_at)})" if view.cutover_at else ""
        facts.append(("Downtime", f"{view.downtime_minutes:g} minutes{cutover}"))
    body: list[dict[str, Any]] = [
        _title(f"Migration Status: {view.migration_id}"),
        _facts(facts),
        {"type": "TextBlock", "text": progress_bar(view.percent), "fontType": "Monospace",
         "wrap": False},
    ]
    items = sorted(view.activity, key=lambda a: a.at)[-recent:]
    if items:
        body.append({"type": "TextBlock", "text": "Recent Activity", "weight": "Bolder",
                     "spacing": "Medium"})
        body.extend({"type": "TextBlock", "text": f"- {a.at.strftime('%H:%M')} - {a.text}",
                     "wrap": True, "spacing": "None"} for a in items)
    if view.estimated_completion is not None:
        body.append({"type": "TextBlock", "isSubtle": True, "wrap": True,
                     "text": f"Estimated Completion: {_when(view.estimated_completion)}"})
    actions: list[dict[str, Any]] = []
    if view.details_url:
        actions.append({"type": "Action.OpenUrl", "title": "View Details",
                        "url": view.details_url})
    actions.append(_execute("Pause", CardActionData(verb="pause",
                                                    migration_id=view.migration_id)))
    actions.append(_execute("Request Approval for Cutover", CardActionData(
        verb="request-approval", migration_id=view.migration_id, gate="cutover")))
    return _card(body, actions)


def status_list_card(views: list[StatusView]) -> dict[str, Any]:
    """``status`` without an id: every active migration, one table row each."""
    header = ["Migration", "Target", "Phase", "Progress", "State"]
    rows = [_row(header, bold=True)]
    rows.extend(_row([v.migration_id, f"{v.cloud.upper()} {v.region}",
                      f"{v.phase_index}/{v.phase_total} {v.phase_name}",
                      f"{v.percent:.0f}%", v.state]) for v in views)
    body: list[dict[str, Any]] = [_title(f"Active migrations: {len(views)}")]
    if views:
        body.append(_table(len(header), rows))
    else:
        body.append({"type": "TextBlock", "text": "No migration is running.", "wrap": True})
    return _card(body)


def _row(cells: list[str], *, bold: bool = False, color: str | None = None
         ) -> dict[str, Any]:
    out = []
    for text in cells:
        block: dict[str, Any] = {"type": "TextBlock", "text": text, "wrap": True}
        if bold:
            block["weight"] = "Bolder"
        if color:
            block["color"] = color
        out.append({"type": "TableCell", "items": [block]})
    return {"type": "TableRow", "cells": out}


def _table(columns: int, rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {"type": "Table", "columns": [{"width": 1} for _ in range(columns)],
            "rows": rows, "firstRowAsHeader": True, "showGridLines": True}


# ---------------------------------------------------------------------------- approvals


class Check(BaseModel):
    name: str
    passed: bool


GateKind = Literal["phase", "budget", "risk", "rollback", "cutover", "decommission"]
Sla = Literal["standard", "urgent", "emergency"]


class ApprovalRequest(BaseModel):
    """A gate waiting for a human, with the evidence the plan shows on its card."""

    migration_id: str
    gate: str = Field(description="the gate's name, as approve/reject commands use it")
    kind: GateKind
    title: str
    phase_index: int | None = Field(default=None, ge=0)
    phase_total: int | None = Field(default=None, ge=1)
    risk_level: str | None = None
    estimated_downtime: str | None = None
    checks: list[Check] = Field(default_factory=list)
    scheduled_at: datetime | None = None
    requested_at: datetime | None = None
    sla: Sla = "standard"
    respond_by: datetime | None = None
    approvers: list[str] = Field(default_factory=list)


class ApprovalDecision(BaseModel):
    decision: Literal["approved", "rejected", "rescheduled"]
    by: str
    at: datetime
    reason: str | None = None
    new_time: datetime | None = None


def _approval_body(req: ApprovalRequest) -> list[dict[str, Any]]:
    facts: list[tuple[str, str]] = []
    if req.phase_index is not None and req.phase_total is not None:
        facts.append(("Migration Phase", f"{req.phase_index}/{req.phase_total}"))
    facts.append(("Gate", f"{req.gate} ({req.kind})"))
    if req.risk_level:
        facts.append(("Risk Level", req.risk_level))
    if req.estimated_downtime:
        facts.append(("Estimated Downtime", req.estimated_downtime))
    if req.scheduled_at:
        facts.append(("Scheduled", _when(req.scheduled_at)))
    facts.append(("SLA", req.sla + (f" (respond by {_when(req.respond_by)})"
                                    if req.respond_by else "")))
    if req.approvers:
        facts.append(("Approvers", ", ".join(req.approvers)))
    body: list[dict[str, Any]] = [
        _title(f"Approval Required: {req.title} - {req.migration_id}", "Warning"),
        _facts(facts),
    ]
    if req.checks:
        body.append({"type": "TextBlock", "text": "Checks", "weight": "Bolder"})
        body.extend({"type": "TextBlock", "wrap": True, "spacing": "None",
                     "color": "Good" if c.passed else "Attention",
                     "text": ("✅ " if c.passed else "❌ ") + c.name} for c in req.checks)
    return body


def approval_card(req: ApprovalRequest) -> dict[str, Any]:
    """Approve / Reject (a reason is required) / Reschedule (a new date and time)."""
    def data(verb: Verb) -> CardActionData:
        return CardActionData(verb=verb, migration_id=req.migration_id, gate=req.gate)

    reject = _card(
        [{"type": "Input.Text", "id": "reason", "label": "Reason", "isRequired": True,
          "errorMessage": "A reason is required to reject.", "isMultiline": True,
          "maxLength": 500}],
        [_execute("Reject", data("reject"), "destructive")])
    reschedule = _card(
        [{"type": "Input.Date", "id": "date", "label": "New date", "isRequired": True,
          "errorMessage": "Pick a date."},
         {"type": "Input.Time", "id": "time", "label": "New time (UTC)", "isRequired": True,
          "errorMessage": "Pick a time."}],
        [_execute("Reschedule", data("reschedule"))])
    for sub in (reject, reschedule):
        del sub["$schema"]
    actions = [
        _execute("Approve", data("approve"), "positive"),
        {"type": "Action.ShowCard", "title": "Reject", "card": reject},
        {"type": "Action.ShowCard", "title": "Reschedule", "card": reschedule},
    ]
    return _card(_approval_body(req), actions)


def approval_decided_card(req: ApprovalRequest, decision: ApprovalDecision
                          ) -> dict[str, Any]:
    """The approval card after someone answered: who, when, why; no buttons left."""
    body = _approval_body(req)
    icon = {"approved": "✅ Approval granted", "rejected": "❌ Rejected",
            "rescheduled": "🕑 Rescheduled"}[decision.decision]
    text = f"{icon} by {decision.by} at {_when(decision.at)}"
    if decision.new_time:
        text += f"; new time {_when(decision.new_time)}"
    body.append({"type": "TextBlock", "text": text, "weight": "Bolder", "wrap": True,
                 "color": "Good" if decision.decision == "approved" else "Attention"})
    if decision.reason:
        body.append({"type": "TextBlock", "text": f"Reason: {decision.reason}",
                     "wrap": True})
    return _card(body)


# ---------------------------------------------------------------------------- costs


class CostLine(BaseModel):
    item: str
    predicted: float = Field(ge=0)
    actual: float | None = Field(default=None, ge=0)


class CostsView(BaseModel):
    scope: str = Field(description="a migration id or 'all migrations'")
    period: str = "per month"
    currency: str = "USD"
    lines: list[CostLine]
    tolerance: float = Field(default=0.10, ge=0,
                             description="actual over predicted by more is flagged")


def _money(value: float | None, currency: str) -> str:
    return "-" if value is None else f"{value:,.2f} {currency}"


def _variance(predicted: float, actual: float | None) -> float | None:
    if actual is None or predicted == 0:
        return None
    return (actual - predicted) / predicted


def costs_card(view: CostsView) -> dict[str, Any]:
    """Predicted against actual, per line and in total; over-tolerance lines in red."""
    header = ["Item", "Predicted", "Actual", "Variance"]
    rows = [_row(header, bold=True)]
    for line in view.lines:
        var = _variance(line.predicted, line.actual)
        color = "Attention" if var is not None and var > view.tolerance else None
        rows.append(_row([line.item, _money(line.predicted, view.currency),
                          _money(line.actual, view.currency),
                          "-" if var is None else f"{var:+.1%}"], color=color))
    predicted = sum(x.predicted for x in view.lines)
    actuals = [x.actual for x in view.lines if x.actual is not None]
    actual = sum(actuals) if len(actuals) == len(view.lines) and view.lines else None
    total_var = _variance(predicted, actual)
    rows.append(_row(["Total", _money(predicted, view.currency),
                      _money(actual, view.currency),
                      "-" if total_var is None else f"{total_var:+.1%}"], bold=True))
    body = [_title(f"Costs: {view.scope} ({view.period})"), _table(len(header), rows)]
    if actual is None:
        body.append({"type": "TextBlock", "isSubtle": True, "wrap": True,
                     "text": "Some actual costs are not known yet; the total shows "
                             "predicted costs only."})
    return _card(body)


# ---------------------------------------------------------------------------- metrics


class Metric(BaseModel):
    name: str
    value: float
    unit: str = ""
    target: float | None = None
    higher_is_better: bool = True


class MetricsView(BaseModel):
    migration_id: str
    servers_total: int = Field(ge=0)
    servers_migrated: int = Field(ge=0)
    metrics: list[Metric] = Field(default_factory=list)
    measured_at: datetime | None = None


def metrics_card(view: MetricsView) -> dict[str, Any]:
    pct = 100.0 * view.servers_migrated / view.servers_total if view.servers_total else 0.0
    rows = [_row(["Metric", "Value", "Target"], bold=True)]
    for m in view.metrics:
        ok = None
        if m.target is not None:
            ok = m.value >= m.target if m.higher_is_better else m.value <= m.target
        rows.append(_row([m.name, f"{m.value:g} {m.unit}".strip(),
                          "-" if m.target is None else f"{m.target:g} {m.unit}".strip()],
                         color=None if ok is None else ("Good" if ok else "Attention")))
    body: list[dict[str, Any]] = [
        _title(f"Metrics: {view.migration_id}"),
        _facts([("Servers migrated", f"{view.servers_migrated} / {view.servers_total}"),
                ("Measured", _when(view.measured_at))]),
        {"type": "TextBlock", "text": progress_bar(pct), "fontType": "Monospace"},
    ]
    if view.metrics:
        body.append(_table(3, rows))
    return _card(body)


# ---------------------------------------------------------------------------- confirmation

_CONFIRM_WORDS: dict[Language, tuple[str, str, str]] = {
    Language.EN: ("Please confirm", "Yes, proceed", "No, cancel"),
    Language.DE: ("Bitte bestätigen", "Ja, ausführen", "Nein, abbrechen"),
    Language.ES: ("Confirme, por favor", "Sí, continuar", "No, cancelar"),
    Language.HU: ("Kérlek, erősítsd meg", "Igen, mehet", "Nem, mégse"),
}


def confirmation_card(intent: Intent, confirmation_id: str) -> dict[str, Any]:
    """Asks before a destructive command runs, in the user's language. The buttons carry
    only ``confirmation_id``: the endpoint keeps the pending intent and runs that, so a
    tampered button cannot change what is run."""
    title, yes, no = _CONFIRM_WORDS[intent.language]
    names = SLOT_NAMES[intent.language]
    label = GRAMMARS[intent.language].command_labels[intent.command]
    facts = [(names[k] + (" *" if k in intent.inferred else ""), str(v))
             for k, v in intent.slots.model_dump(mode="json").items() if v is not None]
    body: list[dict[str, Any]] = [
        _title(f"{title}: {label}", "Warning"),
        _facts(facts),
        {"type": "TextBlock", "text": confirmation_question(intent), "wrap": True,
         "isSubtle": True},
    ]
    if intent.inferred:
        body.append({"type": "TextBlock", "isSubtle": True, "wrap": True,
                     "text": "* " + ", ".join(names[s] for s in intent.inferred)})
    actions = [
        _execute(yes, CardActionData(verb="confirm", confirmation_id=confirmation_id),
                 "destructive"),
        _execute(no, CardActionData(verb="decline", confirmation_id=confirmation_id)),
    ]
    return _card(body, actions)


# ---------------------------------------------------------------------------- checks


@lru_cache(maxsize=1)
def _validator() -> Any:
    import jsonschema

    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    return jsonschema.Draft6Validator(schema)


def _likeliest(errors: list[Any]) -> Any:
    """Among an anyOf's failures, the branch whose element ``type`` matched says what is
    wrong (a TextBlock without text, not "is not an ActionSet"); deeper is more precise."""
    branches: dict[Any, list[Any]] = {}
    for error in errors:
        branches.setdefault(error.relative_schema_path[0] if error.relative_schema_path
                            else None, []).append(error)

    def type_mismatch(error: Any) -> bool:
        return error.validator in ("enum", "const") and list(error.absolute_path)[-1:] == [
            "type"]

    matching = [e for errs in branches.values() if not any(map(type_mismatch, errs))
                for e in errs]
    return max(matching or errors, key=lambda e: len(e.absolute_path))


def validate_card(card: dict[str, Any]) -> None:
    """Raise ``CardValidationError`` naming the first place the card breaks the schema."""
    from jsonschema.exceptions import best_match

    first = best_match(_validator().iter_errors(card))
    if first is not None:
        # the schema's root is an anyOf: name the deepest failing part, not the whole card
        while first.context:
            first = _likeliest(first.context)
        where = "/".join(str(p) for p in first.absolute_path) or "(card)"
        raise CardValidationError(f"adaptive card invalid at {where}: {first.message[:300]}")
    if card.get("version") != ADAPTIVE_CARD_VERSION:
        raise CardValidationError(f"adaptive card version is {card.get('version')!r}, "
                                  f"Teams renders up to {ADAPTIVE_CARD_VERSION}")


def card_attachment(card: dict[str, Any]) -> dict[str, Any]:
    """The Bot Framework attachment that carries a card in a message activity."""
    return {"contentType": CARD_CONTENT_TYPE, "content": card}
