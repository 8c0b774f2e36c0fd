"""Publish the lab services' measured metrics to the cloud's monitoring API.

In a real estate the CloudWatch agent (or Azure Monitor / Cloud Monitoring agents) ships
host and application metrics; in the lab, this publisher plays that agent: a thread in
the lab service process that, every ``interval_s``, reads each service's measurements
(:meth:`ChaosState.metrics` plus request and error counters) and sends them through the
cloud adapter's ``put_metric_data`` (the emulator's CloudWatch), one data point per
metric, dimension ``Service=<server_id>:<side>``, high resolution (1 s storage) so that
sensing can read second-level series. It is started by ``POST /metrics/publish`` on the
lab's control server (idempotent: a second call replaces the settings).

The request names the monitoring endpoint, not a connection, because the lab service
runs outside Airflow: the publisher defines the connection ``LAB_CONN_ID`` for its own
process (an ``AIRFLOW_CONN_*`` variable, the emulator accepts any key; a real agent uses
the instance role) and gets its adapter from ``migrationbox.cloud.get_adapter``.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

log = logging.getLogger("migrationbox.lab.metrics")

NAMESPACE = "MigrationBox/Lab"
LAB_CONN_ID = "migrationbox_lab_metrics"
#: the metrics the lab publishes; names match the decision matrix's conditions
PUBLISHED = (
    "cpu_utilization_pct", "memory_utilization_pct", "disk_used_pct",
    "db_connections_used_ratio", "certificate_days_remaining", "latency_ms",
    "request_rate", "error_rate", "external_api_p95_latency_s",
)


class PublishRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    endpoint_url: str = Field(pattern=r"^https?://")
    region: str = "us-east-1"
    namespace: str = NAMESPACE
    interval_s: float = Field(default=1.0, ge=0.2, le=300)
    services: list[str] | None = None  # None: all


@dataclass
class MetricsPublisher:
    """One thread; ``states`` maps service name -> ``ServiceState``."""

    states: dict[str, Any]
    request: PublishRequest
    published: int = 0
    errors: int = 0
    last_error: str | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _last_counts: dict[str, tuple[float, int, int]] = field(default_factory=dict)

    def start(self) -> None:
        """Start publishing and return at once: the thread builds the adapter (its first
        client loads the Airflow AWS provider, seconds on a busy machine) and then
        publishes every ``interval_s``; ``status()["published"]`` says when points flow."""
        os.environ[f"AIRFLOW_CONN_{LAB_CONN_ID.upper()}"] = json.dumps({
            "conn_type": "aws", "login": "lab", "password": "lab",
            "extra": {"region_name": self.request.region,
                      "endpoint_url": self.request.endpoint_url}})
        self._adapter: Any = None
        self._thread = threading.Thread(target=self._run, name="metrics-publisher",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def status(self) -> dict[str, Any]:
        return {"running": bool(self._thread and self._thread.is_alive()),
                "published": self.published, "errors": self.errors,
                "last_error": self.last_error, **self.request.model_dump()}

    def sample(self, name: str, state: Any) -> dict[str, float]:
        """One reading of a service: chaos measurements plus rates from its counters."""
        values = {k: float(v) for k, v in state.chaos.metrics().items()
                  if k in PUBLISHED}
        snap = state.snapshot()
        now = time.monotonic()
        prev = self._last_counts.get(name)
        self._last_counts[name] = (now, snap["requests"], snap["errors"])
        if prev is not None:
            dt = max(1e-6, now - prev[0])
            d_req = max(0, snap["requests"] - prev[1])
            d_err = max(0, snap["errors"] - prev[2])
            values["request_rate"] = round(d_req / dt, 3)
            values["error_rate"] = round(d_err / d_req, 4) if d_req else 0.0
        return values

    def publish_once(self) -> int:
        from migrationbox.cloud.base import MetricDatum

        at = datetime.now(UTC)
        sent = 0
        wanted = self.request.services
        for name, state in sorted(self.states.items()):
            if wanted is not None and name not in wanted:
                continue
            data = [
                MetricDatum(name=metric, value=value, dimensions={"Service": name},
                            timestamp=at, high_resolution=True)
                for metric, value in self.sample(name, state).items()
            ]
            self._adapter.put_metric_data(self.request.namespace, data)
            sent += len(data)
        return sent

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                if self._adapter is None:
                    from migrationbox.cloud import get_adapter

                    self._adapter = get_adapter("aws", LAB_CONN_ID, self.request.region)
                self.published += self.publish_once()
            except Exception as exc:  # the emulator may be gone: keep trying, say why
                self.errors += 1
                self.last_error = f"{type(exc).__name__}: {exc}"[:300]
                log.warning("metrics publish failed: %s", self.last_error)
            self._stop.wait(max(0.0, self.request.interval_s - (time.monotonic() - started)))
