"""Remediation executors: one per decision-matrix action (see ``actions``), all run by
``base.execute`` (pre-check, action, verification, rollback)."""

from migrationbox.healer.remediation.actions import REGISTRY, remediation_for
from migrationbox.healer.remediation.base import (
    RemediationContext,
    RemediationError,
    RemediationOutcome,
    execute,
)

__all__ = ["REGISTRY", "RemediationContext", "RemediationError", "RemediationOutcome",
           "execute", "remediation_for"]
