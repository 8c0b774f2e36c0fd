"""Incident reports in the plan's template (component 6), rendered as Markdown.

An :class:`Incident` holds what happened (timeline, root cause, remediation, prevention)
and the moments that make the metrics: ``onset_at`` (the anomaly began, when known),
``detected_at``, ``decided_at``, ``resolved_at``. The report derives from them

* detection time = detected - onset,
* decision time = decided - detected,
* execution time = resolved - decided,
* MTTR = resolved - detected (the plan's example: detected 14:23:45, resolved 14:28:12,
  "MTTR 4.45 minutes (Target: <5 minutes) ✅").

A time that is missing is printed as "not measured" rather than guessed, and an incident
that is not resolved says so: a failed or half-done remediation still gets a report.

A remediation's verification is kept as a :class:`VerificationRecord` (the window asked
for, the instant the action took effect, the points used to verify or to refuse, their
n / min / mean / max / span): the numbers a reader needs to see that recovery was proven
on points published after the action, not on the first reading after it. The same values
are in the timeline (the remediation's "verified:" / "verification failed:" step).
The template is ``templates/incident.md.j2`` (Jinja2). Notifiers live in ``notify``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from functools import lru_cache
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from migrationbox.healer.verification import VerifyWindow, WindowVerdict

SEVERITY_LABELS = {
    "P1": "Service Down",
    "P2": "Service Degraded",
    "P3": "Minor Impact",
    "P4": "No User Impact",
}
MTTR_TARGET = timedelta(minutes=5)
#: points after the action a verification record keeps (the newest)
SEEN_KEPT = 120


class IncidentStatus(StrEnum):
    open = "open"
    awaiting_approval = "awaiting_approval"
    alerted = "alerted"  # people were told; the healer did not act
    resolved = "resolved"
    failed = "failed"  # a remediation ran and did not fix it (rolled back)


def format_incident_id(day: date, sequence: int) -> str:
    """``INC-2026-05-15-001``: the plan's id; the sequence is per day (kept by the store)."""
    if sequence < 1:
        raise ValueError(f"sequence: must be >= 1, got {sequence}")
    return f"INC-{day.isoformat()}-{sequence:03d}"


class TimelineEvent(BaseModel):
    model_config = ConfigDict(extra="forbid")

    at: datetime
    text: str = Field(min_length=1)


class VerificationPoint(BaseModel):
    model_config = ConfigDict(extra="forbid")

    at: datetime
    value: float


class VerificationRecord(BaseModel):
    """The window a remediation was verified (or refused) on."""

    model_config = ConfigDict(extra="forbid")

    verified: bool
    reason: str
    effective_at: datetime
    window: str  # e.g. ">= 5 point(s) over >= 4 s, 3 s after the action, ..."
    #: the evidence run (verified) or the last run that fell short
    points: list[VerificationPoint] = Field(default_factory=list)
    #: every point published after the action took effect (the last SEEN_KEPT)
    seen: list[VerificationPoint] = Field(default_factory=list)
    points_after_action: int = 0
    ignored: list[str] = Field(default_factory=list)  # what broke earlier runs
    summary: str = ""

    @classmethod
    def of(cls, verdict: WindowVerdict, window: VerifyWindow) -> VerificationRecord:
        """From a verdict and the window it was judged on."""
        return cls(verified=verdict.recovered, reason=verdict.reason,
                   effective_at=verdict.effective_at, window=window.describe(),
                   points=[VerificationPoint(at=p.at, value=p.value) for p in verdict.points],
                   seen=[VerificationPoint(at=p.at, value=p.value)
                         for p in verdict.seen[-SEEN_KEPT:]],
                   points_after_action=verdict.after, ignored=list(verdict.breaks),
                   summary=verdict.summary())

    @property
    def values(self) -> list[float]:
        return [p.value for p in self.points]

    def stats(self) -> dict[str, float] | None:
        """n, min, mean, max and span (seconds) of the points; None without points."""
        if not self.points:
            return None
        v = self.values
        span = (self.points[-1].at - self.points[0].at).total_seconds()
        return {"n": float(len(v)), "min": min(v), "mean": sum(v) / len(v), "max": max(v),
                "span_s": span}


class RemediationSummary(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: str
    description: str
    decision: str  # e.g. "auto-heal (confidence 0.95)" or "approved by alice"
    success: bool | None = None  # None: not executed (alerted, suppressed, awaiting)
    rolled_back: bool = False
    rollback_reason: str | None = None
    approved_by: str | None = None
    side_effects: list[str] = Field(default_factory=list)
    cost_impact: str | None = None
    verification: VerificationRecord | None = None


class Prevention(BaseModel):
    model_config = ConfigDict(extra="forbid")

    recommendation: str
    action_item: str
    owner: str = "DevOps team"
    due_date: date | None = None


class Incident(BaseModel):
    model_config = ConfigDict(extra="forbid")

    incident_id: str = Field(pattern=r"^INC-\d{4}-\d{2}-\d{2}-\d{3,}$")
    title: str = Field(min_length=1)
    resource: str = Field(min_length=1)
    severity: str = Field(pattern=r"^P[1-4]$")
    status: IncidentStatus
    summary: str
    onset_at: datetime | None = None
    detected_at: datetime
    decided_at: datetime | None = None
    resolved_at: datetime | None = None
    timeline: list[TimelineEvent] = Field(default_factory=list)
    root_cause: str = "Not determined."
    root_cause_confidence: float | None = Field(default=None, ge=0, le=1)
    root_cause_candidates: list[str] = Field(default_factory=list)
    remediation: RemediationSummary | None = None
    prevention: Prevention | None = None
    availability_impact: str | None = None
    customer_impact: str | None = None
    lessons: list[str] = Field(default_factory=list)
    follow_ups: list[str] = Field(default_factory=list)

    @field_validator("onset_at", "detected_at", "decided_at", "resolved_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("must carry a timezone (UTC)")
        return value.astimezone(UTC) if value is not None else None

    def add_event(self, at: datetime, text: str) -> None:
        self.timeline.append(TimelineEvent(at=at, text=text))

    @property
    def mttr(self) -> timedelta | None:
        return None if self.resolved_at is None else self.resolved_at - self.detected_at


def human_duration(delta: timedelta | None) -> str:
    """``4 minutes 27 seconds``; ``not measured`` for None."""
    if delta is None:
        return "not measured"
    total = round(delta.total_seconds())
    if total < 0:
        return f"-{human_duration(-delta)}"
    hours, rest = divmod(total, 3600)
    minutes, seconds = divmod(rest, 60)
    parts = []
    if hours:
        parts.append(f"{hours} hour{'s' if hours != 1 else ''}")
    if minutes:
        parts.append(f"{minutes} minute{'s' if minutes != 1 else ''}")
    if seconds or not parts:
        parts.append(f"{seconds} second{'s' if seconds != 1 else ''}")
    return " ".join(parts)


def _between(start: datetime | None, end: datetime | None) -> timedelta | None:
    return None if start is None or end is None else end - start


@dataclass(frozen=True)
class IncidentMetrics:
    detection: timedelta | None
    decision: timedelta | None
    execution: timedelta | None
    mttr: timedelta | None
    target: timedelta = MTTR_TARGET

    @classmethod
    def of(cls, incident: Incident) -> IncidentMetrics:
        return cls(detection=_between(incident.onset_at, incident.detected_at),
                   decision=_between(incident.detected_at, incident.decided_at),
                   execution=_between(incident.decided_at, incident.resolved_at),
                   mttr=incident.mttr)

    @property
    def within_target(self) -> bool | None:
        return None if self.mttr is None else self.mttr < self.target

    def as_text(self) -> dict[str, str]:
        target_min = self.target.total_seconds() / 60
        if self.mttr is None:
            mttr_line = f"not resolved (Target: <{target_min:g} minutes)"
            total = "not resolved"
        else:
            mark = "✅" if self.within_target else "❌"
            mttr_line = (f"{self.mttr.total_seconds() / 60:.2f} minutes (Target: "
                         f"<{target_min:g} minutes) {mark}")
            total = f"{human_duration(self.mttr)} {mark} (Target: <{target_min:g} minutes)"
        return {"duration": human_duration(self.mttr) if self.mttr else "ongoing",
                "mttr_line": mttr_line, "mttr_total": total,
                "detection": human_duration(self.detection),
                "decision": human_duration(self.decision),
                "execution": human_duration(self.execution)}


@lru_cache(maxsize=1)
def _environment() -> Any:
    from jinja2 import Environment, PackageLoader, StrictUndefined

    env = Environment(loader=PackageLoader("migrationbox.healer", "templates"),
                      undefined=StrictUndefined, keep_trailing_newline=True,
                      autoescape=False)  # Markdown, not HTML
    env.filters["ts"] = lambda v: v.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    env.filters["hms"] = lambda v: v.astimezone(UTC).strftime("%H:%M:%S")
    return env


def render_markdown(incident: Incident) -> str:
    """The incident report in the plan's template (Markdown)."""
    metrics = IncidentMetrics.of(incident)
    text = _environment().get_template("incident.md.j2").render(
        i=incident, m=metrics.as_text(),
        severity_label=SEVERITY_LABELS.get(incident.severity, ""))
    return text.rstrip() + "\n"
