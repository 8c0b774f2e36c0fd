"""Follow a wave DAG run over Airflow's REST API, answering approval gates if asked.

Used by ``migrationbox demo``, by ``migrationbox run-wave --follow`` and by the
integration tests: the same code path a person's tooling would use, with no access to
Airflow's database.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

TERMINAL_RUN_STATES = {"success", "failed"}
_STATE_MARK = {
    "success": "✔",
    "failed": "✘",
    "upstream_failed": "⤫",
    "skipped": "↷",
    "running": "▶",
    "queued": "…",
    "scheduled": "…",
    "up_for_reschedule": "⟳",
    "up_for_retry": "↻",
    "awaiting_input": "✋",
    "deferred": "⏸",
}


@dataclass
class Approver:
    """Answers HITL gates by REST the way a named approver would, and says so."""

    decision: str | Callable[[dict[str, Any]], str] = "Approve"
    name: str = "admin"
    answered: list[dict[str, Any]] = field(default_factory=list)
    #: Gates (HITL details) this approver leaves to someone else, e.g. the demo's gate
    #: answered from a Teams card.
    leave: Callable[[dict[str, Any]], bool] | None = None

    def choose(self, detail: dict[str, Any]) -> str:
        return self.decision(detail) if callable(self.decision) else self.decision


@dataclass
class RunOutcome:
    dag_id: str
    run_id: str
    state: str
    task_states: dict[str, str]
    approvals: list[dict[str, Any]]
    seconds: float


def _hitl_task_id(detail: dict[str, Any]) -> str | None:
    ti = detail.get("task_instance") or {}
    return detail.get("task_id") or ti.get("task_id")


def follow_run(
    client: Any,
    dag_id: str,
    run_id: str,
    *,
    approver: Approver | None = None,
    timeout: float = 1800,
    poll: float = 2.0,
    settle_seconds: float = 4.0,
    say: Callable[[str], None] = print,
) -> RunOutcome:
    """Poll the run until it ends; print each task's state change; answer gates."""
    started = time.monotonic()
    seen: dict[str, str] = {}
    answered: set[str] = set()
    approvals: list[dict[str, Any]] = []
    waiting_since: dict[str, float] = {}
    state = "queued"
    while time.monotonic() - started < timeout:
        run = client.dag_run(dag_id, run_id)
        state = run.get("state") or state
        for ti in client.task_instances(dag_id, run_id):
            tid, tstate = ti["task_id"], ti.get("state") or "none"
            if tstate == "awaiting_input":
                waiting_since.setdefault(tid, time.monotonic())
            if seen.get(tid) != tstate:
                seen[tid] = tstate
                if tstate not in ("none", "scheduled", "queued"):
                    mark = _STATE_MARK.get(tstate, "·")
                    say(f"  {time.monotonic() - started:7.1f}s  {mark} {tid:<42} {tstate}")
        if approver is not None:
            for detail in client.hitl_details(dag_id, run_id):
                tid = _hitl_task_id(detail)
                if not tid or tid in answered or detail.get("response_received"):
                    continue
                if approver.leave is not None and approver.leave(detail):
                    continue
                # Answer only once the gate has sat in awaiting_input for a moment: an
                # answer that lands before the worker that parked the task has reported
                # back races the executor in Airflow 3.3 and fails the gate.
                since = waiting_since.get(tid)
                if since is None or time.monotonic() - since < settle_seconds:
                    continue
                choice = approver.choose(detail)
                say(
                    f"  approver '{approver.name}' answers gate {tid}: {choice} "
                    f"(by REST, as an approver would in the UI)"
                )
                client.respond_hitl(dag_id, run_id, tid, chosen_options=[choice])
                answered.add(tid)
                record = {"task_id": tid, "choice": choice, "by": approver.name}
                approvals.append(record)
                approver.answered.append(record)
        if state in TERMINAL_RUN_STATES:
            break
        time.sleep(poll)
    else:
        raise TimeoutError(f"{dag_id} run {run_id} still {state} after {timeout:.0f}s")
    return RunOutcome(
        dag_id=dag_id,
        run_id=run_id,
        state=state,
        task_states=dict(seen),
        approvals=approvals,
        seconds=time.monotonic() - started,
    )
