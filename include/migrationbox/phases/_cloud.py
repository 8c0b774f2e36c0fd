"""Shared helpers of the cloud-facing phases (preflight, provision, teardown)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from migrationbox.cloud import UnsupportedCloud, get_adapter
from migrationbox.cloud.base import CloudAdapter
from migrationbox.fileio import atomic_write_text
from migrationbox.phases.context import PhaseContext, PhaseFailed


def adapter_for(ctx: PhaseContext, phase: str) -> CloudAdapter:
    """The run's adapter: the collaborator a caller lent, else the plan's cloud's.

    Option ``cloud.poll_seconds`` tunes waiter polling (small against the emulator).
    """
    injected = ctx.collaborators.adapter
    if injected is not None:
        return injected
    kwargs: dict[str, Any] = {}
    if ctx.options.cloud.poll_seconds is not None:
        kwargs["poll_seconds"] = ctx.options.cloud.poll_seconds
    try:
        return get_adapter(
            ctx.plan.settings.cloud, ctx.aws_conn_id, ctx.plan.settings.region, **kwargs
        )
    except UnsupportedCloud as exc:
        raise PhaseFailed(phase, str(exc)) from exc


def target_cidr(ctx: PhaseContext) -> str:
    """The target VPC CIDR: option ``network.target_vpc_cidr`` (with its default)."""
    return ctx.options.network.target_vpc_cidr


def progress(ctx: PhaseContext, message: str, data: dict[str, Any] | None = None) -> None:
    """Log, and tell the orchestrator's ``on_progress`` callback when there is one."""
    ctx.log.info(message)
    callback = ctx.collaborators.on_progress
    if callback is not None:
        callback(message, data or {})


def write_json(path: Path, payload: Any) -> Path:
    """Write atomically, so a reader never sees half a report."""
    return atomic_write_text(path, json.dumps(payload, indent=2, sort_keys=True, default=str))


def write_text(path: Path, text: str) -> Path:
    return atomic_write_text(path, text)


def wave_dir(ctx: PhaseContext) -> Path:
    """The wave's artifact folder shared by all runs (run folders sit below it)."""
    path = ctx.artifacts_dir / ctx.plan.estate / f"wave_{ctx.wave_number:02d}"
    path.mkdir(parents=True, exist_ok=True)
    return path
