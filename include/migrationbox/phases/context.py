"""What every phase receives and returns.

A phase is a module in ``migrationbox.phases`` with ``run(ctx) -> PhaseResult`` and,
where it changes anything, ``rollback(ctx) -> PhaseResult``. Both are idempotent: the
wave DAG may call them again after any failure or success.

A phase is told two kinds of things, kept apart: ``options`` (typed, JSON-able, what an
operator may set in the run conf) and ``collaborators`` (objects the caller lends it:
the cloud adapter, callbacks that record progress and resources). The estate's
endpoints are data the caller loads (the wave DAG from the store) and hands over.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from migrationbox.config import AWS_CONN_ID
from migrationbox.errors import MigrationBoxError
from migrationbox.phases.options import PhaseOptions
from migrationbox.planning.models import PlanDocument, ServerPlan, Wave

if TYPE_CHECKING:
    from migrationbox.cloud.base import CloudAdapter
    from migrationbox.endpoints import Endpoint
    from migrationbox.phases.handoff import WaveStateStore

#: ``(message, data)``: a phase's progress line for the store's event log.
OnProgress = Callable[[str, dict[str, Any]], Any]
#: ``(resource_type, resource_id, name, tags)``: a cloud resource created or deleted.
OnResource = Callable[[str, str, str, dict[str, str]], Any]


@dataclass
class Collaborators:
    """Objects a phase may use but is never configured with (not options, not JSON).

    ``adapter``: the cloud adapter to use instead of the plan's cloud default (tests,
    another account); ``monitoring``: the adapter the cutover's canary metrics go
    through, when not ``adapter`` (a separate monitoring account, tests); the ``on_*``
    callbacks tell the orchestrator what happened (the wave DAG records them);
    ``wave_state``: where state handed from one task to a later one lives
    (``phases.handoff``: the store in the wave DAG; unset, local files).
    """

    adapter: CloudAdapter | None = None
    monitoring: CloudAdapter | None = None
    on_progress: OnProgress | None = None
    on_resource: OnResource | None = None
    on_resource_deleted: OnResource | None = None
    wave_state: WaveStateStore | None = None


@dataclass
class PhaseContext:
    plan: PlanDocument
    wave_number: int
    run_id: str = "manual"
    dry_run: bool = False
    aws_conn_id: str = AWS_CONN_ID
    artifacts_dir: Path = field(default_factory=lambda: Path(".runtime/artifacts"))
    options: PhaseOptions = field(default_factory=PhaseOptions)
    collaborators: Collaborators = field(default_factory=Collaborators)
    #: the estate's endpoints as the caller loaded them; ``None``: the lab's file
    endpoints: list[Endpoint] | None = None
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("migrationbox.phase"))

    @property
    def estate(self) -> str:
        return self.plan.estate

    @property
    def wave(self) -> Wave:
        return self.plan.wave(self.wave_number)

    @property
    def servers(self) -> list[ServerPlan]:
        wanted = set(self.wave.server_ids)
        return [s for s in self.plan.servers if s.server_id in wanted]

    @property
    def wave_tag(self) -> str:
        """Deterministic tag value that marks every cloud resource this wave creates."""
        return f"{self.plan.estate}/wave-{self.wave_number:02d}"

    def run_artifacts(self) -> Path:
        path = self.artifacts_dir / self.plan.estate / f"wave_{self.wave_number:02d}" / _safe(
            self.run_id
        )
        path.mkdir(parents=True, exist_ok=True)
        return path


def _safe(value: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in value)


class PhaseResult(BaseModel):
    """Small, JSON-able summary of a phase run (it travels through XCom)."""

    phase: str
    ok: bool
    summary: str
    details: dict[str, Any] = Field(default_factory=dict)
    failures: list[str] = Field(default_factory=list)


class PhaseFailed(MigrationBoxError, RuntimeError):
    """A phase found a problem it must not continue past; the message says what to do."""

    def __init__(self, phase: str, message: str, details: dict[str, Any] | None = None):
        super().__init__(f"{phase}: {message}")
        self.phase = phase
        self.details = details or {}
