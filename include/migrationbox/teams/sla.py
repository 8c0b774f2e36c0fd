"""The approval SLA as data: how fast each urgency must be answered, on which calendar,
when to remind, when to escalate to a backup approver, and when (and only under which
safety criteria) an emergency gate may pass by itself.

The plan states the SLA in one line per urgency ("Standard: 4 hours (business hours
only); Urgent: 1 hour (24/7, escalate to backup approver if no response); Emergency: 15
minutes (auto-approve if safety criteria met)"). Sites differ in their business hours
and in which gates they treat as urgent, so the numbers and rules live in
``approval_sla.json`` (or a file a site points at) rather than in code; this module
loads and validates that file and does the calendar arithmetic. What an emergency
auto-approve checks is a fixed set of *named* criteria evaluated on real state
(``CRITERIA``): the data picks which ones must hold, never what they mean.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from migrationbox.errors import InputError

SLA_PATH = Path(__file__).resolve().parent / "approval_sla.json"

Urgency = Literal["standard", "urgent", "emergency"]
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class SlaError(InputError):
    """The SLA file cannot be used; the message names the file and the field."""


# -- the named safety criteria ---------------------------------------------------------


@dataclass(frozen=True)
class GateFacts:
    """What the store says about a waiting gate's wave and run, gathered by the approval
    workflow; the criteria read only this, so they can be tested without a platform."""

    gate: str
    environment: str | None
    risk_level: str | None
    #: phase name -> status of this DAG run's phase runs (``phase_runs``)
    phase_status: dict[str, str] = field(default_factory=dict)
    #: phases of this wave, any run, that ended ``success`` (a rollback done before)
    wave_phases_succeeded: frozenset[str] = frozenset()


Criterion = Callable[[GateFacts], tuple[bool, str]]


def _all_checks_passed(f: GateFacts) -> tuple[bool, str]:
    bad = {p: s for p, s in f.phase_status.items() if s not in ("success", "skipped")}
    if not f.phase_status:
        return False, "no phase of this run has finished yet"
    if bad:
        return False, f"phases not passed: {bad}"
    return True, f"{len(f.phase_status)} phase(s) of this run passed"


def _no_failed_phase(f: GateFacts) -> tuple[bool, str]:
    failed = sorted(p for p, s in f.phase_status.items() if s == "failed")
    return (not failed, f"failed phases: {failed}" if failed else "no phase of this run failed")


def _source_intact(f: GateFacts) -> tuple[bool, str]:
    done = f.phase_status.get("decommission")
    if done in ("success", "running"):
        return False, f"the sources are being or were decommissioned ({done})"
    return True, "the sources were not decommissioned: traffic can go back to them"


def _non_production(f: GateFacts) -> tuple[bool, str]:
    env = f.environment or "unknown"
    return env == "non-production", f"wave environment is {env}"


def _risk_low(f: GateFacts) -> tuple[bool, str]:
    risk = f.risk_level or "unknown"
    return risk == "low", f"risk level is {risk}"


def _non_production_or_low_risk(f: GateFacts) -> tuple[bool, str]:
    ok_env, why_env = _non_production(f)
    ok_risk, why_risk = _risk_low(f)
    return ok_env or ok_risk, f"{why_env}; {why_risk}"


def _rollback_tested(f: GateFacts) -> tuple[bool, str]:
    tested = {"cutover_rollback", "cutover_rollback_approved"} & f.wave_phases_succeeded
    return (bool(tested), "a rollback of this wave succeeded before" if tested
            else "no rollback of this wave has been run yet")


#: Every criterion a site's SLA file may name, and what it checks.
CRITERIA: dict[str, Criterion] = {
    "all_checks_passed": _all_checks_passed,
    "no_failed_phase_before_gate": _no_failed_phase,
    "source_intact": _source_intact,
    "non_production": _non_production,
    "risk_low": _risk_low,
    "non_production_or_low_risk": _non_production_or_low_risk,
    "rollback_tested": _rollback_tested,
}


def evaluate(criteria: list[str], facts: GateFacts) -> list[tuple[str, bool, str]]:
    """``(name, holds, why)`` per criterion, in the order given."""
    return [(name, *CRITERIA[name](facts)) for name in criteria]


# -- the file's model ------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _clock(text: str) -> int:
    """Minutes since midnight of ``HH:MM`` (24:00 allowed as the end of the day)."""
    hh, sep, mm = text.partition(":")
    if not sep or not hh.isdigit() or not mm.isdigit() or len(mm) != 2:
        raise ValueError(f"{text!r} is not HH:MM")
    minutes = int(hh) * 60 + int(mm)
    if int(mm) > 59 or minutes > 24 * 60:
        raise ValueError(f"{text!r} is not a time of day")
    return minutes


class Calendar(_Strict):
    """The minutes the SLA clock runs: ``days`` from ``start`` to ``end`` local time."""

    timezone: str = "UTC"
    days: list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]] = Field(min_length=1)
    start: str = "00:00"
    end: str = "24:00"

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @model_validator(mode="after")
    def _window(self) -> Calendar:
        if _clock(self.start) >= _clock(self.end):
            raise ValueError(f"start {self.start} is not before end {self.end}")
        if len(set(self.days)) != len(self.days):
            raise ValueError(f"days repeat: {self.days}")
        return self

    # -- arithmetic ----------------------------------------------------------------

    def _windows(self, day: date) -> tuple[datetime, datetime] | None:
        if DAYS[day.weekday()] not in self.days:
            return None
        zone = ZoneInfo(self.timezone)
        start = datetime.combine(day, time(0), zone) + timedelta(minutes=_clock(self.start))
        end = datetime.combine(day, time(0), zone) + timedelta(minutes=_clock(self.end))
        return start.astimezone(UTC), end.astimezone(UTC)

    def add(self, start: datetime, minutes: float) -> datetime:
        """The moment ``minutes`` of calendar time after ``start``."""
        _aware(start)
        left = timedelta(minutes=minutes)
        zone = ZoneInfo(self.timezone)
        day = start.astimezone(zone).date() - timedelta(days=1)
        for _ in range(400 * 7):  # a year of empty days at most; the validator forbids none
            window = self._windows(day)
            day += timedelta(days=1)
            if window is None:
                continue
            begin, end = max(window[0], start), window[1]
            if begin >= end:
                continue
            if begin + left <= end:
                return begin + left
            left -= end - begin
        raise SlaError("calendar has no working time within a year")  # pragma: no cover

    def minutes_between(self, a: datetime, b: datetime) -> float:
        """Calendar minutes from ``a`` to ``b`` (0 when ``b`` is not after ``a``)."""
        _aware(a)
        _aware(b)
        if b <= a:
            return 0.0
        zone = ZoneInfo(self.timezone)
        total = timedelta()
        day = a.astimezone(zone).date() - timedelta(days=1)
        last = b.astimezone(zone).date() + timedelta(days=1)
        while day <= last:
            window = self._windows(day)
            day += timedelta(days=1)
            if window is None:
                continue
            begin, end = max(window[0], a), min(window[1], b)
            if end > begin:
                total += end - begin
        return total.total_seconds() / 60


def _aware(value: datetime) -> None:
    if value.tzinfo is None:
        raise SlaError(f"SLA times must carry a time zone, got {value.isoformat()}")


class UrgencyPolicy(_Strict):
    """One urgency: minutes count on ``calendar``, from when the gate started waiting
    (or from the time it was rescheduled to)."""

    respond_within_minutes: float = Field(gt=0)
    calendar: str
    remind_at_minutes: float | None = Field(default=None, ge=0)
    escalate_at_minutes: float | None = Field(default=None, ge=0)
    auto_approve_at_minutes: float | None = Field(default=None, ge=0)
    auto_approve_criteria: list[str] = Field(default_factory=list)

    @field_validator("auto_approve_criteria")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        unknown = [c for c in value if c not in CRITERIA]
        if unknown:
            raise ValueError(f"unknown criteria {unknown}; known: {sorted(CRITERIA)}")
        return value

    @model_validator(mode="after")
    def _order(self) -> UrgencyPolicy:
        if (self.remind_at_minutes is not None
                and self.remind_at_minutes >= self.respond_within_minutes):
            raise ValueError("remind_at_minutes must come before respond_within_minutes")
        if self.auto_approve_at_minutes is not None and not self.auto_approve_criteria:
            raise ValueError("auto_approve_at_minutes needs auto_approve_criteria: an "
                             "auto-approve without safety criteria is not allowed")
        if self.auto_approve_criteria and self.auto_approve_at_minutes is None:
            raise ValueError("auto_approve_criteria given without auto_approve_at_minutes")
        return self


class UrgencyRule(_Strict):
    """First matching rule wins; a rule without conditions matches every gate."""

    urgency: Urgency
    why: str = ""
    gates: list[str] | None = None
    environments: list[str] | None = None
    risks: list[str] | None = None

    def matches(self, gate: str, environment: str | None, risk: str | None) -> bool:
        return ((self.gates is None or gate in self.gates)
                and (self.environments is None or environment in self.environments)
                and (self.risks is None or risk in self.risks))


class SlaConfig(_Strict):
    schema_version: Literal[1] = 1
    source: str = ""
    calendars: dict[str, Calendar] = Field(min_length=1)
    urgencies: dict[Urgency, UrgencyPolicy]
    rules: list[UrgencyRule] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> SlaConfig:
        for name, policy in self.urgencies.items():
            if policy.calendar not in self.calendars:
                raise ValueError(f"urgencies.{name}.calendar: {policy.calendar!r} is not one "
                                 f"of the calendars {sorted(self.calendars)}")
        for i, rule in enumerate(self.rules):
            if rule.urgency not in self.urgencies:
                raise ValueError(f"rules.{i}.urgency: {rule.urgency!r} has no entry in "
                                 "urgencies")
        last = self.rules[-1]
        if last.gates is not None or last.environments is not None or last.risks is not None:
            raise ValueError("rules: the last rule must have no conditions (the default "
                             "urgency), so every gate gets one")
        return self

    def urgency_for(self, gate: str, environment: str | None, risk: str | None) -> Urgency:
        for rule in self.rules:
            if rule.matches(gate, environment, risk):
                return rule.urgency
        return self.rules[-1].urgency  # pragma: no cover - the validator guarantees a default

    def policy(self, urgency: str) -> UrgencyPolicy:
        return self.urgencies[urgency]  # type: ignore[index]

    def calendar_of(self, urgency: str) -> Calendar:
        return self.calendars[self.policy(urgency).calendar]

    def respond_by(self, urgency: str, clock_start: datetime) -> datetime:
        return self.calendar_of(urgency).add(clock_start,
                                             self.policy(urgency).respond_within_minutes)

    def elapsed(self, urgency: str, respond_by: datetime, now: datetime) -> float:
        """Calendar minutes since the clock started, read back from ``respond_by``
        (``respond_by`` = start + window, so no start needs storing)."""
        cal = self.calendar_of(urgency)
        window = self.policy(urgency).respond_within_minutes
        if now <= respond_by:
            return window - cal.minutes_between(now, respond_by)
        return window + cal.minutes_between(respond_by, now)


def _where(error: dict) -> str:
    return ".".join(str(p) for p in error.get("loc", ())) or "(file)"


def parse_sla(data: object, source: str = "approval SLA") -> SlaConfig:
    """Validate SLA data; a refusal names the field (``urgencies.urgent.calendar: ...``)."""
    try:
        return SlaConfig.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{_where(e)}: {e['msg']}" for e in exc.errors()[:5])
        raise SlaError(f"{source}: {problems}") from exc


def load_sla(path: Path | str | None = None) -> SlaConfig:
    """The SLA file (the packaged one by default)."""
    file = Path(path) if path is not None else SLA_PATH
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise SlaError(f"{file}: cannot read the approval SLA: {exc.strerror}") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SlaError(f"{file}: not JSON: line {exc.lineno} column {exc.colno}: "
                       f"{exc.msg}") from exc
    return parse_sla(data, str(file))


@lru_cache(maxsize=1)
def default_sla() -> SlaConfig:
    return load_sla()
