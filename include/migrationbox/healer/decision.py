"""The decision engine: the plan's decision matrix as data, and the rules that apply it.

The matrix lives in ``decision_matrix.json`` beside this module (ten rows: root cause,
machine-checkable condition, action, confidence, risk, auto-heal allowed, needs approval)
so that operators can read and change it without touching code. It is validated on load;
a row that makes a high-risk action automatic is refused. Each row also says how its
recovery is verified (``verify``: ``min_points``, ``min_seconds``, ``settle_seconds``,
``max_gap_seconds``, ``zero_is_reset``; see :mod:`migrationbox.healer.verification`),
defaults when left out; a window that can never verify (``zero_is_reset`` on a condition
whose only recovered value is 0) is refused.

For one situation (an anomaly type on a resource, with the detector's confidence, the
root-cause confidence and the observed metric) the engine answers, in this order:

1. no matrix row for the anomaly type -> **alert** people;
2. the row's condition is not met (e.g. CPU 85 % is not "> 90 % for 5 min") -> **alert**;
3. the row is risky (``needs_approval``: data restore, killing queries) -> **needs_approval**,
   whatever the confidence: a person decides through an approval task;
4. the row does not allow auto-heal -> **alert**;
5. the detector is not highly confident (only model 1 fired) -> **alert**;
6. the root cause is uncertain (top cause below ``min_rca_confidence``) -> **alert**;
7. the action's confidence (static matrix value, or learned, see ``learning``) is below
   the auto-heal threshold -> **alert**;
8. the resource is locked by another remediation, or its rate limit is used up ->
   **suppressed** (said in the incident; nothing is repeated in a loop);
9. otherwise -> **auto_heal**, holding a lease on the resource until ``finish``.

The threshold is inclusive (``confidence >= 0.85``): the plan's own matrix auto-heals its
0.85 row (DNS cache flush), which a strict "above" would contradict.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from migrationbox.healer.guard import GuardRefused, Lease, ResourceGuard
from migrationbox.healer.verification import VerifyWindow

MATRIX_FILE = "decision_matrix.json"
RISKY_ACTIONS = frozenset({"restore_from_backup", "kill_blocking_query"})

_OPERATORS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le,
    "==": operator.eq,
}


class ConditionSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    metric: str = Field(min_length=1)
    operator: Literal[">", ">=", "<", "<=", "=="]
    threshold: float
    for_seconds: float = Field(default=0, ge=0)

    def holds(self, value: float) -> bool:
        """Whether one value meets the comparison (not the "for how long")."""
        return bool(_OPERATORS[self.operator](value, self.threshold))

    def describe(self) -> str:
        text = f"{self.metric} {self.operator} {self.threshold:g}"
        return text + (f" for {self.for_seconds:g} s" if self.for_seconds else "")


class MatrixRow(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1)
    root_cause: str
    condition: ConditionSpec
    action: str = Field(min_length=1)
    action_params: dict[str, Any] = Field(default_factory=dict)
    action_description: str
    confidence: float = Field(ge=0.0, le=1.0)
    risk: Literal["low", "medium", "high"]
    auto_heal_allowed: bool
    needs_approval: bool
    #: the evidence recovery needs after the action (see ``verification``)
    verify: VerifyWindow = Field(default_factory=VerifyWindow)

    @model_validator(mode="after")
    def _window_can_verify(self) -> MatrixRow:
        c = self.condition
        if self.verify.zero_is_reset and c.operator in (">", ">=") and c.threshold <= 0:
            raise ValueError(f"row {self.id!r}: verify.zero_is_reset with condition "
                             f"{c.describe()}: its only recovered value is 0, which would "
                             "never count")
        return self

    @model_validator(mode="after")
    def _risky_needs_a_person(self) -> MatrixRow:
        risky = self.risk == "high" or self.action in RISKY_ACTIONS
        if risky and (self.auto_heal_allowed or not self.needs_approval):
            raise ValueError(f"row {self.id!r}: risky action {self.action!r} (risk "
                             f"{self.risk}) must have auto_heal_allowed=false and "
                             "needs_approval=true")
        if self.needs_approval and self.auto_heal_allowed:
            raise ValueError(f"row {self.id!r}: needs_approval and auto_heal_allowed "
                             "cannot both be true")
        return self


class DecisionMatrix(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int
    source: str = ""
    auto_heal_threshold: float = Field(ge=0.0, le=1.0)
    rows: list[MatrixRow] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_ids(self) -> DecisionMatrix:
        seen: set[str] = set()
        for index, row in enumerate(self.rows):
            if row.id in seen:
                raise ValueError(f"rows[{index}].id: {row.id!r} appears more than once")
            seen.add(row.id)
        return self

    def row(self, anomaly_type: str) -> MatrixRow | None:
        return next((r for r in self.rows if r.id == anomaly_type), None)

    def by_action(self, action: str) -> MatrixRow | None:
        return next((r for r in self.rows if r.action == action), None)


def load_matrix(path: str | Path | None = None) -> DecisionMatrix:
    """Load and validate the matrix (the packaged one by default).

    Errors name the file and the field (``rows[3].confidence: ...``).
    """
    if path is None:
        text = resources.files("migrationbox.healer").joinpath(MATRIX_FILE).read_text("utf-8")
        where = MATRIX_FILE
    else:
        text, where = Path(path).read_text(encoding="utf-8"), str(path)
    try:
        return DecisionMatrix.model_validate(json.loads(text))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{where}: not valid JSON: {exc}") from exc
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in first["loc"])
        raise ValueError(f"{where}: {loc.lstrip('.') or '(top)'}: {first['msg']}") from exc


# --------------------------------------------------------------------------- inputs


class DetectionConfidence(StrEnum):
    high = "high"
    low = "low"


@dataclass(frozen=True)
class Observation:
    """The metric the matrix condition is about, and for how long it has held."""

    metric: str
    value: float
    sustained_seconds: float = 0.0


@dataclass(frozen=True)
class Situation:
    """Everything the engine decides on. ``resource`` is the remediation target: the top
    root cause, not necessarily the service where the anomaly was seen."""

    anomaly_type: str
    resource: str
    detection_confidence: DetectionConfidence | str
    rca_confidence: float | None
    observation: Observation | None = None
    severity: str = "P3"
    root_cause: str = "self"
    at: datetime | None = None


def condition_met(spec: ConditionSpec, observation: Observation | None) -> tuple[bool, str]:
    if observation is None:
        return False, f"no observation of {spec.metric} to check {spec.describe()}"
    if observation.metric != spec.metric:
        return False, (f"observation is of {observation.metric}, the condition needs "
                       f"{spec.metric}")
    if not spec.holds(observation.value):
        return False, (f"{spec.metric} = {observation.value:g} does not satisfy "
                       f"{spec.operator} {spec.threshold:g}")
    if observation.sustained_seconds < spec.for_seconds:
        return False, (f"{spec.metric} held for {observation.sustained_seconds:g} s, "
                       f"needs {spec.for_seconds:g} s")
    return True, f"{spec.describe()} holds ({observation.value:g})"


class ConfidenceSource(Protocol):
    """Where an action's confidence comes from: the static matrix, Beta posteriors per
    action, or the learned classifier (see ``migrationbox.healer.learning``)."""

    def confidence(self, row: MatrixRow, situation: Situation) -> tuple[float, str]: ...


class StaticConfidence:
    def confidence(self, row: MatrixRow, situation: Situation) -> tuple[float, str]:
        return row.confidence, "matrix"


# --------------------------------------------------------------------------- outputs


class Outcome(StrEnum):
    auto_heal = "auto_heal"
    needs_approval = "needs_approval"
    alert = "alert"
    suppressed = "suppressed"


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    situation: Situation
    row: MatrixRow | None
    confidence: float | None
    confidence_source: str | None
    reasons: tuple[str, ...]
    lease: Lease | None = None
    approved_by: str | None = None

    @property
    def action(self) -> str | None:
        return self.row.action if self.row else None

    def summary(self) -> str:
        what = self.row.action_description if self.row else "no matching rule"
        conf = "" if self.confidence is None else f" (confidence {self.confidence:.2f})"
        return f"{self.outcome.value}: {what} on {self.situation.resource}{conf}: " + (
            "; ".join(self.reasons))


@dataclass
class DecisionEngine:
    guard: ResourceGuard
    matrix: DecisionMatrix = field(default_factory=load_matrix)
    confidence_source: ConfidenceSource = field(default_factory=StaticConfidence)
    threshold: float | None = None  # None: the matrix's auto_heal_threshold
    min_rca_confidence: float = 0.5
    holder: str = "healer"

    @property
    def auto_heal_threshold(self) -> float:
        return self.matrix.auto_heal_threshold if self.threshold is None else self.threshold

    def decide(self, situation: Situation) -> Decision:
        row = self.matrix.row(situation.anomaly_type)
        if row is None:
            return Decision(Outcome.alert, situation, None, None, None,
                            (f"no decision-matrix row for {situation.anomaly_type!r}",))
        met, why = condition_met(row.condition, situation.observation)
        if not met:
            return Decision(Outcome.alert, situation, row, None, None,
                            (f"condition not met: {why}",))
        reasons = [why]
        confidence, source = self.confidence_source.confidence(row, situation)
        confidence = round(confidence, 4)
        reasons.append(f"action confidence {confidence:.2f} ({source})")

        def done(outcome: Outcome, reason: str, lease: Lease | None = None) -> Decision:
            return Decision(outcome, situation, row, confidence, source,
                            (*reasons, reason), lease)

        if row.needs_approval:
            return done(Outcome.needs_approval,
                        f"{row.risk}-risk action: a person must approve it")
        if not row.auto_heal_allowed:
            return done(Outcome.alert, "the matrix does not allow auto-heal for this row")
        if str(situation.detection_confidence) != DetectionConfidence.high.value:
            return done(Outcome.alert, "low-confidence anomaly (model 2 did not confirm)")
        if situation.rca_confidence is None or (
                situation.rca_confidence < self.min_rca_confidence):
            shown = "none" if situation.rca_confidence is None else (
                f"{situation.rca_confidence:.2f}")
            return done(Outcome.alert, f"root cause uncertain (confidence {shown} < "
                                       f"{self.min_rca_confidence:.2f})")
        if confidence < self.auto_heal_threshold:
            return done(Outcome.alert, f"confidence below the auto-heal threshold "
                                       f"{self.auto_heal_threshold:.2f}")
        return self._acquire(done(Outcome.auto_heal, "auto-heal"))

    def approve(self, decision: Decision, approver: str) -> Decision:
        """A person approved a ``needs_approval`` decision: take the resource's lease."""
        if decision.outcome is not Outcome.needs_approval:
            raise ValueError(f"only needs_approval decisions can be approved, this one is "
                             f"{decision.outcome.value}")
        approved = replace(decision, outcome=Outcome.auto_heal, approved_by=approver,
                           reasons=(*decision.reasons, f"approved by {approver}"))
        return self._acquire(approved)

    def finish(self, decision: Decision) -> None:
        """Release the resource after the remediation (and its verification) ended."""
        if decision.lease is not None:
            self.guard.release(decision.lease)

    def _acquire(self, decision: Decision) -> Decision:
        assert decision.row is not None
        try:
            lease = self.guard.acquire(decision.situation.resource, decision.row.action,
                                       self.holder, now=decision.situation.at)
        except GuardRefused as exc:
            return replace(decision, outcome=Outcome.suppressed,
                           reasons=(*decision.reasons, exc.reason))
        return replace(decision, lease=lease)
