"""The shape every remediation has: pre-check, action, verification, rollback.

An action is a :class:`Remediation` with four steps. :func:`execute` runs them in order
and never raises for an action's own failure: whatever happened (pre-check refused, the
API call failed half-way, the metric did not recover, the rollback failed too) ends in a
:class:`RemediationOutcome` with every step written down, so the incident says what
happened and the caller releases the resource's lease in all cases.

Verification (:mod:`migrationbox.healer.verification`) proves recovery on a *window*:
the executor notes when ``apply`` returned, adds the window's ``settle_seconds`` (the
instant the action took effect), then reads only points published after that instant
(``ctx.signal``: the matrix metric read back from the monitoring API, or probes the healer
takes) until an unbroken run of at least ``min_points`` recovered points spanning
``min_seconds`` is seen or ``verify_timeout_s`` (counted from that instant) runs out. An
empty window or a reset reading (a 0 from a metric measured over an interval) never
verifies. The window's values are written into the outcome's steps (hence the incident).
When it does not verify, the action's rollback restores what the action changed (the undo
data the action returned), so a remediation that did not help does not leave changes
behind.

A context built by hand with only a ``check`` and no window (tests, one-off calls) is
verified on a single passing check after the action, and the step says so.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

import httpx

from migrationbox.errors import MigrationBoxError
from migrationbox.healer.verification import (
    SINGLE_READING,
    RecoverySignal,
    Verification,
    VerifyWindow,
    WindowVerdict,
    check_signal,
    watch,
)

if TYPE_CHECKING:
    from migrationbox.cloud.base import CloudAdapter


class RemediationError(MigrationBoxError, RuntimeError):
    """An action step failed; the message says which call and why."""


@dataclass
class RemediationContext:
    """What an action needs about its target. ``signal`` is what verification watches
    (the row's metric, or probes) and ``verify_window`` how much of it proves recovery;
    without a signal, ``check`` (``(recovered, detail)`` from a fresh reading) is sampled
    instead."""

    estate: str
    server_id: str
    action: str
    params: dict[str, Any]
    remediation_id: str
    service: str | None = None  # lab service name ("web-01:target") when there is one
    control_url: str | None = None  # the lab's control server (lab side of actions)
    dns_name: str | None = None
    check: Callable[[], tuple[bool, str]] = lambda: (False, "no verification configured")
    #: the cloud the server runs on (its plan's adapter); None: lab side only
    cloud: CloudAdapter | None = None
    verify_timeout_s: float = 30.0
    verify_interval_s: float = 1.0
    signal: RecoverySignal | None = None
    #: None: a single passing reading after the action (contexts built by hand)
    verify_window: VerifyWindow | None = None
    #: the time verification goes by (tests drive it with a simulated clock)
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    sleep: Callable[[float], None] = time.sleep

    def lab(self, op: str, **body: Any) -> dict[str, Any]:
        """One lab-side operation on the service (``POST /services/NAME/remediate``)."""
        if not (self.control_url and self.service):
            raise RemediationError(f"{self.server_id}: no lab control URL/service to {op}")
        try:
            r = httpx.post(f"{self.control_url}/services/{self.service}/remediate",
                           json={"op": op, **body}, timeout=10.0)
        except httpx.HTTPError as exc:
            raise RemediationError(f"lab {op} on {self.service}: {exc}") from exc
        if r.status_code != 200:
            raise RemediationError(f"lab {op} on {self.service}: HTTP {r.status_code} "
                                   f"{r.text[:200]}")
        return r.json()

    def lab_metrics(self) -> dict[str, Any]:
        if not (self.control_url and self.service):
            raise RemediationError(f"{self.server_id}: no lab control URL/service")
        r = httpx.get(f"{self.control_url}/metrics", timeout=10.0)
        r.raise_for_status()
        return r.json()[self.service]


class Remediation(Protocol):
    action: str
    risky: bool

    def precheck(self, ctx: RemediationContext) -> str | None:
        """``None`` when the action may run, else the reason it must not."""

    def apply(self, ctx: RemediationContext, log: Callable[[str], None]) -> dict[str, Any]:
        """Do it; return the undo data rollback needs (even when it fails half-way, the
        steps done so far are in ``log``)."""

    def rollback(self, ctx: RemediationContext, undo: dict[str, Any],
                 log: Callable[[str], None]) -> None: ...


@dataclass
class RemediationOutcome:
    action: str
    success: bool
    started_at: datetime
    finished_at: datetime
    steps: list[tuple[datetime, str]] = field(default_factory=list)
    verified: bool = False
    rolled_back: bool = False
    rollback_reason: str | None = None
    error: str | None = None
    refused: str | None = None
    undo: dict[str, Any] = field(default_factory=dict)
    side_effects: list[str] = field(default_factory=list)
    cost_impact_monthly: float | None = None
    #: when the action took effect (apply returned + settle) and what the window showed
    effective_at: datetime | None = None
    verification: WindowVerdict | None = None

    @property
    def seconds(self) -> float:
        return (self.finished_at - self.started_at).total_seconds()


def verify(ctx: RemediationContext, effective_at: datetime) -> Verification:
    """Watch ``ctx.signal`` (or the sampled ``ctx.check``) on the window after
    ``effective_at``; see :mod:`migrationbox.healer.verification` for the rule."""
    signal = ctx.signal if ctx.signal is not None else check_signal(ctx.check)
    window = ctx.verify_window or SINGLE_READING
    result = watch(signal, window, effective_at, timeout_s=ctx.verify_timeout_s,
                   interval_s=ctx.verify_interval_s, clock=ctx.clock, sleep=ctx.sleep)
    if ctx.verify_window is None:
        result.detail += " (single reading: no verification window configured)"
    return result


def execute(remediation: Remediation, ctx: RemediationContext) -> RemediationOutcome:
    started = datetime.now(UTC)
    steps: list[tuple[datetime, str]] = []

    def log(text: str) -> None:
        steps.append((datetime.now(UTC), text))

    def done(**kw: Any) -> RemediationOutcome:
        return RemediationOutcome(action=remediation.action, started_at=started,
                                  finished_at=datetime.now(UTC), steps=steps, **kw)

    try:
        refused = remediation.precheck(ctx)
    except Exception as exc:
        refused = f"pre-check failed: {type(exc).__name__}: {exc}"
    if refused:
        log(f"pre-check refused: {refused}")
        return done(success=False, refused=refused)
    log("pre-check passed")
    undo: dict[str, Any] = {}
    error: str | None = None
    try:
        undo = remediation.apply(ctx, log) or {}
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
        undo = getattr(exc, "undo", {}) or {}
        log(f"action failed: {error}")
    ok = False
    effective: datetime | None = None
    verdict: WindowVerdict | None = None
    if error is None:
        window = ctx.verify_window or SINGLE_READING
        effective = ctx.clock() + timedelta(seconds=window.settle_seconds)
        log(f"action applied; counted as in effect from {effective:%H:%M:%S} (settle "
            f"{window.settle_seconds:g} s); recovery needs {window.describe()}")
        result = verify(ctx, effective)
        ok, verdict = result.ok, result.verdict
        log(("verified: " if ok else "verification failed: ") + result.detail)
    side = list(undo.pop("_side_effects", []))
    cost = undo.pop("_cost_impact_monthly", None)
    if ok:
        return done(success=True, verified=True, undo=undo, side_effects=side,
                    cost_impact_monthly=cost, effective_at=effective, verification=verdict)
    reason = error or "the metric did not recover within the verification window" + (
        f": {verdict.reason}" if verdict is not None else "")
    rolled = False
    try:
        remediation.rollback(ctx, undo, log)
        rolled = True
        log("rolled back")
    except Exception as exc:
        log(f"rollback failed: {type(exc).__name__}: {exc}")
        error = (error + "; " if error else "") + f"rollback failed: {exc}"
    return done(success=False, rolled_back=rolled, rollback_reason=reason, error=error,
                undo=undo, side_effects=side, effective_at=effective, verification=verdict)
