"""Approval gates: Airflow's HITL ApprovalOperator plus a record in the MigrationBox store.

Who approved what, and when, must outlive Airflow's metadata retention and be visible to
reports, so every decision (including an automatic pass of a non-production wave, when the
run's conf asks for it) is written to the store's ``approvals`` table.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from airflow.providers.standard.operators.hitl import ApprovalOperator


class MigrationApprovalOperator(ApprovalOperator):
    """An ``ApprovalOperator`` that records decisions and honours ``approvals`` in the conf."""

    def __init__(
        self,
        *,
        gate: str,
        estate: str,
        wave: int,
        plan_version: int,
        non_production: bool,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.gate = gate
        self.estate = estate
        self.wave = wave
        self.plan_version = plan_version
        self.non_production = non_production

    def execute(self, context: Any) -> Any:
        from airflow.sdk.exceptions import AirflowFailException

        from migrationbox.orchestration.runconf import RunConfError, parse_run_conf
        from migrationbox.orchestration.tasks import record_refusal

        try:
            conf = parse_run_conf(context["dag_run"].conf)
        except RunConfError as exc:
            message = f"{self.gate}: refused before it started: {exc}"
            record_refusal(self.estate, self.plan_version, self.wave,
                           context["dag_run"].run_id, self.gate, message, type(exc).__name__)
            raise AirflowFailException(message) from exc
        if conf.approvals == "auto_non_production" and self.non_production:
            now = datetime.now(UTC)
            self.log.info(
                "Gate %s passes without a person: non-production wave and conf "
                "approvals=auto_non_production.",
                self.gate,
            )
            self._record(context, "approved", "auto:conf.approvals=auto_non_production", now)
            return {
                "chosen_options": [self.APPROVE],
                "params_input": {},
                "responded_at": now.isoformat(),
                "responded_by_user": {"id": "migrationbox", "name": "auto (non-production)"},
            }
        self._event(context, f"waiting for approval at gate '{self.gate}'")
        return super().execute(context)

    def execute_complete(self, context: Any, event: dict[str, Any]) -> Any:
        try:
            result = super().execute_complete(context=context, event=event)
        except Exception:
            self._record(context, "failed", "timeout or error", datetime.now(UTC))
            raise
        chosen = (event.get("chosen_options") or [""])[0]
        user = event.get("responded_by_user") or {}
        who = user.get("name") or user.get("id") or "unknown"
        # An answer from the Teams bot comes through the bot's Airflow user; the person
        # who clicked is in params_input. "via <airflow user>" stays in the record because
        # any Airflow user answering by REST could write a teams_user value there.
        given = event.get("params_input") or {}
        teams_user = given.get("teams_user") if isinstance(given, dict) else None
        if isinstance(teams_user, str) and teams_user.strip():
            who = f"{teams_user.strip()} (Teams, via {who})"[:255]
        reason = given.get("reason") if isinstance(given, dict) else None
        at = event.get("responded_at")
        if isinstance(at, str):
            at = datetime.fromisoformat(at)
        decision = "approved" if chosen == self.APPROVE else "rejected"
        self._record(context, decision, who, at or datetime.now(UTC),
                     comment=reason if isinstance(reason, str) and reason else None)
        return result

    def _record(self, context: Any, decision: str, who: str, at: datetime,
                comment: str | None = None) -> None:
        from migrationbox.store import repository
        from migrationbox.store.db import session_scope

        run_id = context["dag_run"].run_id
        with session_scope() as session:
            repository.record_approval(
                session,
                estate=self.estate,
                wave=self.wave,
                dag_run_id=run_id,
                gate=self.gate,
                decision=decision,
                approved_by=who,
                responded_at=at,
                comment=comment,
            )
            repository.add_event(
                session,
                estate=self.estate,
                wave=self.wave,
                run_id=run_id,
                phase=self.gate,
                kind="approval",
                message=f"gate '{self.gate}' {decision} by {who}",
                data={"decision": decision, "by": who},
            )

    def _event(self, context: Any, message: str) -> None:
        from migrationbox.store import repository
        from migrationbox.store.db import session_scope

        with session_scope() as session:
            repository.add_event(
                session,
                estate=self.estate,
                wave=self.wave,
                run_id=context["dag_run"].run_id,
                phase=self.gate,
                kind="approval_requested",
                message=message,
                data={},
            )
