"""Replication rounds at a cadence without holding a worker: a trigger and its operator.

Design (why a deferrable operator and not a reschedule-mode sensor): a round is heavy
I/O and belongs in a worker; the wait between rounds (5 minutes in production, seconds
in the lab) is idle time and belongs in the triggerer, which waits for thousands of such
timers in one event loop. ``ReplicationRoundsOperator`` runs one round
(``phases.replicate.sync_round``) and, unless the round's delta is under the threshold,
defers on ``ReplicationCadenceTrigger`` until the next round is due. The round number
travels in the trigger's event, so a scheduler or triggerer restart resumes the loop at
the right round; the disk rounds themselves resume from their journals. A reschedule
sensor would do the same waits but re-enter the task (a new try, full start-up cost)
for every poke and cannot carry the round number except through XCom.

Once converged it calls ``phases.replicate.run`` for the final, verified rounds, which
writes the state the ``replication_converged`` gate reads.

Cadence: ``cadence_seconds`` argument, else the run conf's ``replicate.cadence_seconds``,
else the ``replication_cadence_seconds`` setting (``migrationbox.settings``: environment
``MIGRATIONBOX_REPLICATION_CADENCE_SECONDS``, airflow.cfg ``[migrationbox]``), else 300 s.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import BaseOperator
from airflow.triggers.base import BaseTrigger, TriggerEvent

DEFAULT_CADENCE_S = 300.0
CLASSPATH = "migrationbox.orchestration.triggers.ReplicationCadenceTrigger"


def default_cadence() -> float:
    """The ``replication_cadence_seconds`` setting (300 s unless configured)."""
    from migrationbox import settings

    return float(settings.get("replication_cadence_seconds"))


class ReplicationCadenceTrigger(BaseTrigger):
    """Fires once, when the next replication round of a wave is due."""

    def __init__(self, due_at: str, next_round: int, label: str = ""):
        super().__init__()
        self.due_at = due_at
        self.next_round = next_round
        self.label = label

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return CLASSPATH, {"due_at": self.due_at, "next_round": self.next_round,
                           "label": self.label}

    async def run(self) -> AsyncIterator[TriggerEvent]:
        due = datetime.fromisoformat(self.due_at)
        while (left := (due - datetime.now(UTC)).total_seconds()) > 0:
            await asyncio.sleep(min(left, 30.0))  # short naps: a cancelled trigger ends fast
        yield TriggerEvent({"round": self.next_round, "due_at": self.due_at,
                            "woke_at": datetime.now(UTC).isoformat(), "label": self.label})


class ReplicationRoundsOperator(BaseOperator):
    """Round, wait in the triggerer, round again, until converged; then the final sync."""

    template_fields = ("cadence_seconds",)

    def __init__(self, *, estate: str, wave: int, plan_version: int,
                 cadence_seconds: float | None = None, max_rounds: int = 50, **kwargs: Any):
        super().__init__(**kwargs)
        self.estate = estate
        self.wave = wave
        self.plan_version = plan_version
        self.cadence_seconds = cadence_seconds
        self.max_rounds = max_rounds

    def execute(self, context: Any) -> Any:
        return self._round(context, 1)

    def resume(self, context: Any, event: dict[str, Any] | None = None) -> Any:
        return self._round(context, int((event or {}).get("round", 1)))

    def _round(self, context: Any, round_no: int) -> Any:
        from airflow.sdk.exceptions import AirflowFailException

        from migrationbox.orchestration.tasks import context_or_fail, run_phase
        from migrationbox.phases import replicate
        from migrationbox.phases.context import PhaseFailed

        ctx = context_or_fail("replicate", self.estate, self.wave, self.plan_version, context)
        try:
            report = replicate.sync_round(ctx, round_no)
        except PhaseFailed as exc:
            raise AirflowFailException(str(exc)) from exc
        if report["converged"] or round_no >= self.max_rounds or ctx.dry_run:
            return run_phase("replicate", self.estate, self.wave, self.plan_version, **context)
        if self.cadence_seconds is not None:
            cadence = float(self.cadence_seconds)
        elif ctx.options.replicate.cadence_seconds is not None:
            cadence = ctx.options.replicate.cadence_seconds
        else:
            cadence = default_cadence()
        due = datetime.now(UTC) + timedelta(seconds=cadence)
        self.log.info("round %d sent %d bytes (threshold %d); next round at %s",
                      round_no, report["bytes_sent"], report["threshold_bytes"], due)
        self.defer(
            trigger=ReplicationCadenceTrigger(due.isoformat(), round_no + 1,
                                              f"{self.estate}/wave-{self.wave}"),
            method_name="resume",
        )
