"""Shared helpers of the cloud-facing phases (preflight, provision, teardown)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from migrationbox.cloud import UnsupportedCloud, get_adapter
from migrationbox.cloud.base import CloudAdapter
from migrationbox.phases.context import PhaseContext, PhaseFailed


def adapter_for(ctx: PhaseContext, phase: str) -> CloudAdapter:
    """The run's adapter: ``options['adapter']`` if a caller injected one, else by plan.

    ``options['aws_poll_seconds']`` tunes waiter polling (small against the emulator).
    """
    injected = ctx.options.get("adapter")
    if injected is not None:
        return injected  # type: ignore[no-any-return]
    kwargs: dict[str, Any] = {}
    if "aws_poll_seconds" in ctx.options:
        kwargs["poll_seconds"] = float(ctx.options["aws_poll_seconds"])
    try:
        return get_adapter(
            ctx.plan.settings.cloud, ctx.aws_conn_id, ctx.plan.settings.region, **kwargs
        )
    except UnsupportedCloud as exc:
        raise PhaseFailed(phase, str(exc)) from exc


def target_cidr(ctx: PhaseContext) -> str:
    """The target VPC CIDR: run conf ``target_vpc_cidr`` (or ``target_cidr``), else default."""
    from migrationbox.iac.design import DEFAULT_VPC_CIDR

    value = ctx.options.get("target_vpc_cidr") or ctx.options.get("target_cidr")
    return str(value or DEFAULT_VPC_CIDR)


def progress(ctx: PhaseContext, message: str, data: dict[str, Any] | None = None) -> None:
    """Log, and tell the orchestrator's ``on_progress`` callback when there is one."""
    ctx.log.info(message)
    callback = ctx.options.get("on_progress")
    if callback is not None:
        callback(message, data or {})


def write_json(path: Path, payload: Any) -> Path:
    """Write atomically, so a reader never sees half a report."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str), encoding="utf-8")
    tmp.replace(path)
    return path


def write_text(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + f".{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path


def wave_dir(ctx: PhaseContext) -> Path:
    """The wave's artifact folder shared by all runs (run folders sit below it)."""
    path = ctx.artifacts_dir / ctx.plan.estate / f"wave_{ctx.wave_number:02d}"
    path.mkdir(parents=True, exist_ok=True)
    return path
