"""Remediation executors: one per decision-matrix action (see ``actions``), all run by
``base.execute`` (pre-check, action, verification, rollback)."""

from migrationbox.healer.remediation.actions import REGISTRY, remediation_for
from migrationbox.healer.remediation.base import (
    RemediationContext,
    RemediationError,
    RemediationOutcome,
    execute,
)
from migrationbox.healer.verification import VerifyWindow

__all__ = ["REGISTRY", "RemediationContext", "RemediationError", "RemediationOutcome",
           "VerifyWindow", "execute", "remediation_for"]
