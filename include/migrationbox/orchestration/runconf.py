"""The conf a wave DAG run accepts (UI "Trigger w/ config", REST, Teams bot).

Validated with pydantic so that a typo in a conf key fails the first task with a message
naming the key, instead of being silently ignored.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class WaveRunConf(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dry_run: bool = Field(
        default=False, description="plan and check only: create nothing, move no traffic"
    )
    approvals: Literal["required", "auto_non_production"] = Field(
        default="required",
        description=(
            "auto_non_production: approval gates of non-production waves pass by themselves"
        ),
    )
    ignore_previous_wave: bool = Field(
        default=False, description="do not wait for the previous wave (re-runs, lab tests)"
    )
    cutover_steps: list[int] | None = Field(default=None, description="traffic % steps to target")
    cutover_dwell_seconds: float | None = Field(default=None, ge=0)
    health_probe_requests: int | None = Field(default=None, ge=1)
    target_vpc_cidr: str | None = None
    replication_block_mib: float | None = Field(default=None, gt=0)
    replication_bandwidth_mib_s: float | None = Field(default=None, gt=0)
    replication_cadence_seconds: float | None = Field(default=None, ge=0)
    cutover_probe_interval_seconds: float | None = Field(default=None, ge=0)
    validation_gx: bool | None = Field(
        default=None, description="run the great-expectations suites in validate (default on)"
    )

    def phase_options(self) -> dict[str, Any]:
        """The subset phases read from ``PhaseContext.options`` (unset keys omitted)."""
        keys = (
            "cutover_steps",
            "cutover_dwell_seconds",
            "health_probe_requests",
            "target_vpc_cidr",
            "replication_block_mib",
            "replication_bandwidth_mib_s",
            "replication_cadence_seconds",
            "cutover_probe_interval_seconds",
            "validation_gx",
        )
        return {k: getattr(self, k) for k in keys if getattr(self, k) is not None}


class RunConfError(ValueError):
    pass


def parse_run_conf(raw: dict[str, Any] | None) -> WaveRunConf:
    try:
        return WaveRunConf.model_validate(raw or {})
    except ValidationError as exc:
        problems = "; ".join(
            f"conf.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise RunConfError(f"invalid DAG run conf: {problems}") from exc
