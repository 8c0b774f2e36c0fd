"""Health of one resource: the plan's ``/health/deep`` shape and what the healer keeps.

The sensing side probes ``/health/live``, ``/health/ready`` and ``/health/deep`` and turns
the three answers into one :class:`HealthResult`. Root-cause analysis only reads
``HealthResult`` (a dict of them, keyed by resource id), so a result that came from a
cloud monitoring API instead of an HTTP probe looks the same to it.

A probe that did not answer is *unhealthy* (the service is down from its users' point of
view), but a resource for which nobody collected anything is *unknown*: root-cause
analysis must not read missing data as "healthy".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class HealthStatus(StrEnum):
    healthy = "healthy"
    degraded = "degraded"
    unhealthy = "unhealthy"
    unknown = "unknown"


class ComponentHealth(BaseModel):
    """One entry of ``components`` in ``/health/deep``; metric keys vary per component."""

    model_config = ConfigDict(extra="allow")

    status: HealthStatus
    latency_ms: float | None = Field(default=None, ge=0)


class DeepHealth(BaseModel):
    """The body of ``GET /health/deep`` (Capability 3, component 1 of the plan)."""

    model_config = ConfigDict(extra="allow")

    status: HealthStatus
    timestamp: datetime
    components: dict[str, ComponentHealth] = Field(default_factory=dict)
    overall_health_score: float = Field(ge=0.0, le=1.0)


@dataclass(frozen=True)
class HealthResult:
    """What the healer knows about one resource's health at one moment.

    ``unhealthy_since`` is the onset of the current bad spell (``None`` when healthy or
    unknown); temporal-precedence scoring in root-cause analysis compares these onsets.
    """

    resource: str
    status: HealthStatus
    observed_at: datetime | None = None
    unhealthy_since: datetime | None = None
    score: float | None = None
    detail: str = ""
    components: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def is_bad(self) -> bool:
        """Degraded counts as bad: a slow database is a root-cause candidate."""
        return self.status in (HealthStatus.unhealthy, HealthStatus.degraded)

    @property
    def is_known(self) -> bool:
        return self.status is not HealthStatus.unknown


def parse_deep_health(body: Any, resource: str) -> DeepHealth:
    """Validate a ``/health/deep`` body; the error names the resource and the field."""
    try:
        return DeepHealth.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(body)"
        raise ValueError(f"{resource}: /health/deep {where}: {first['msg']}") from exc


def health_from_probes(
    resource: str,
    *,
    observed_at: datetime,
    live_status: int | None,
    ready_status: int | None,
    deep_body: Any = None,
    previous: HealthResult | None = None,
) -> HealthResult:
    """Combine the three probes into one result.

    ``live_status``/``ready_status`` are HTTP status codes, ``None`` when the endpoint did
    not answer. ``previous`` carries the onset of an ongoing bad spell forward, so that
    ``unhealthy_since`` is the first bad observation, not the latest.
    """
    detail: list[str] = []
    components: dict[str, dict[str, Any]] = {}
    score: float | None = None
    if live_status != 200:
        status = HealthStatus.unhealthy
        detail.append("/health/live " + ("did not answer" if live_status is None
                                         else f"answered {live_status}"))
    elif ready_status != 200:
        status = HealthStatus.unhealthy
        detail.append("/health/ready " + ("did not answer" if ready_status is None
                                          else f"answered {ready_status}"))
    else:
        status = HealthStatus.healthy
    if deep_body is not None:
        try:
            deep = parse_deep_health(deep_body, resource)
        except ValueError as exc:
            detail.append(str(exc))
        else:
            score = deep.overall_health_score
            components = {name: c.model_dump(mode="json") for name, c in deep.components.items()}
            bad = sorted(n for n, c in deep.components.items()
                         if c.status in (HealthStatus.unhealthy, HealthStatus.degraded))
            if bad:
                detail.append("components not healthy: " + ", ".join(
                    f"{n} ({deep.components[n].status.value})" for n in bad))
            if status is HealthStatus.healthy and deep.status is not HealthStatus.unknown:
                status = deep.status
    since: datetime | None = None
    if status in (HealthStatus.unhealthy, HealthStatus.degraded):
        since = observed_at
        if previous is not None and previous.is_bad and previous.unhealthy_since is not None:
            since = previous.unhealthy_since
    return HealthResult(resource=resource, status=status, observed_at=observed_at,
                        unhealthy_since=since, score=score, detail="; ".join(detail),
                        components=components)
