"""Probe a service, publish the results to CloudWatch, read them back per step window.

Why through the monitoring API rather than straight from the probe: in production the
signals that decide a rollback (error rate, P95, failed health checks, CPU, memory) come
from the cloud's monitoring, fed by agents and load balancers; the controller must read
them the same way, and must notice when that source stops answering. In the lab the
feed is our own probes of the target services plus the CPU and memory of the process
that serves the target port (psutil), published with ``put_metric_data``.

Both directions go through the cloud adapter (``put_metric_data``,
``metric_statistics``), so the same controller runs on any cloud with an adapter.

CloudWatch cannot compute percentiles from ``get_metric_statistics`` on the emulator, so
each probe batch publishes its own P95 (``LatencyP95``) — what the CloudWatch agent does
with its percentile aggregation — and the window's P95 is the maximum of the batches'.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from migrationbox.errors import ExternalServiceError

if TYPE_CHECKING:
    from migrationbox.cloud.base import CloudAdapter, MetricStatistics

NAMESPACE = "MigrationBox/Canary"


class MetricsUnavailable(ExternalServiceError):
    """The monitoring API did not answer, or returned nothing for a window it was fed."""


@dataclass
class Batch:
    """What one probe batch of one service saw."""

    requests: int = 0
    errors: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    health_checks: int = 0
    health_failed: int = 0
    deep_status: str | None = None
    first_error: str | None = None
    cpu_pct: float | None = None
    memory_pct: float | None = None

    @property
    def p95_ms(self) -> float:
        if not self.latencies_ms:
            return 0.0
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


@dataclass
class Window:
    """Aggregated metrics of one service over one step, as read back from CloudWatch."""

    requests: float = 0.0
    errors: float = 0.0
    p95_ms: float = 0.0
    health_checks: float = 0.0
    health_failed: float = 0.0
    cpu_min_pct: float | None = None
    memory_min_pct: float | None = None
    resource_span_s: float = 0.0
    datapoints: int = 0

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    @property
    def health_fail_rate(self) -> float:
        return self.health_failed / self.health_checks if self.health_checks else 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "requests": int(self.requests), "errors": int(self.errors),
            "error_rate": round(self.error_rate, 4), "p95_ms": round(self.p95_ms, 1),
            "health_checks": int(self.health_checks), "health_failed": int(self.health_failed),
            "health_fail_rate": round(self.health_fail_rate, 4),
            "cpu_min_pct": self.cpu_min_pct, "memory_min_pct": self.memory_min_pct,
            "resource_span_s": round(self.resource_span_s, 1), "datapoints": self.datapoints,
        }


def probe_batch(base_url: str, requests: int, health_checks: int, timeout: float,
                deep: bool = True, latency_limit_ms: float | None = None) -> Batch:
    """Real HTTP: ``requests`` GETs of ``/``, ``health_checks`` of ``/health/ready`` and
    (if ``deep``) one ``/health/deep``; plus CPU and memory of the serving process.

    With ``latency_limit_ms``, the batch stops early once more than 5 % (+1) of its
    requests were slower than that: the P95 is already over the limit, and waiting for
    the rest of a slow batch only delays the rollback.
    """
    import httpx

    b = Batch()
    # a new connection per request: with keep-alive, a server that writes headers and
    # body in two sends (Python's http.server does) meets the client's delayed ACK, and
    # every request would measure ~40 ms of TCP artefact instead of the service
    with httpx.Client(timeout=timeout, headers={"Connection": "close"}) as client:
        for _ in range(requests):
            start = time.perf_counter()
            try:
                r = client.get(f"{base_url}/")
                failed = r.status_code >= 500
                if failed and b.first_error is None:
                    b.first_error = f"HTTP {r.status_code}"
            except httpx.HTTPError as exc:
                failed = True
                if b.first_error is None:
                    b.first_error = f"{type(exc).__name__}: {exc}"
            b.latencies_ms.append((time.perf_counter() - start) * 1000)
            b.requests += 1
            b.errors += int(failed)
            if latency_limit_ms is not None and sum(
                    ms > latency_limit_ms for ms in b.latencies_ms) > 0.05 * requests + 1:
                health_checks, deep = 0, False
                break
        for _ in range(health_checks):
            b.health_checks += 1
            try:
                ok = client.get(f"{base_url}/health/ready").status_code == 200
            except httpx.HTTPError:
                ok = False
            b.health_failed += int(not ok)
        if deep:
            try:
                body = client.get(f"{base_url}/health/deep").json()
                b.deep_status = body.get("status") if isinstance(body, dict) else "invalid"
            except (httpx.HTTPError, ValueError) as exc:
                b.deep_status = f"error: {type(exc).__name__}"
    b.cpu_pct, b.memory_pct = process_load(base_url)
    return b


_PROCS: dict[int, Any] = {}


def process_load(base_url: str) -> tuple[float | None, float | None]:
    """CPU (% of the machine) and memory (% of RAM) of the local process listening on the
    URL's port; (None, None) when it is not a local process we can see."""
    from urllib.parse import urlparse

    import psutil

    port = urlparse(base_url).port
    if port is None:
        return None, None
    try:
        pid = next((c.pid for c in psutil.net_connections(kind="tcp")
                    if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port
                    and c.pid), None)
        if pid is None:
            return None, None
        proc = _PROCS.get(pid)
        if proc is None:
            proc = _PROCS[pid] = psutil.Process(pid)
            proc.cpu_percent(None)  # the first call only starts the measurement
            time.sleep(0.05)
        cpu = proc.cpu_percent(None) / (psutil.cpu_count() or 1)
        return round(cpu, 2), round(proc.memory_percent(), 2)
    except (psutil.Error, OSError):
        return None, None


class CanaryMetrics:
    """Publish batches and read windows for one cutover run (dimension ``Step``)."""

    def __init__(self, adapter: CloudAdapter | None, estate: str, run_id: str):
        self.adapter = adapter
        self.estate = estate
        self.run_id = run_id

    def _dims(self, record: str, side: str, step: str) -> dict[str, str]:
        return {"Estate": self.estate, "Record": record, "Side": side,
                "Step": f"{self.run_id}:{step}"}

    def _adapter(self) -> CloudAdapter:
        if self.adapter is None:
            raise MetricsUnavailable("no cloud adapter to publish or read canary metrics")
        return self.adapter

    def publish(self, record: str, side: str, step: str, b: Batch,
                at: datetime | None = None) -> None:
        from migrationbox.cloud.base import MetricDatum

        at = at or datetime.now(UTC)
        dims = self._dims(record, side, step)

        def datum(name: str, value: float, unit: str) -> MetricDatum:
            return MetricDatum(name=name, value=value, dimensions=dims, timestamp=at, unit=unit)

        data = [datum("Requests", b.requests, "Count"), datum("Errors", b.errors, "Count"),
                datum("LatencyP95", b.p95_ms, "Milliseconds"),
                datum("HealthChecks", b.health_checks, "Count"),
                datum("HealthChecksFailed", b.health_failed, "Count")]
        if b.cpu_pct is not None:
            data.append(datum("CPUUtilization", b.cpu_pct, "Percent"))
        if b.memory_pct is not None:
            data.append(datum("MemoryUtilization", b.memory_pct, "Percent"))
        try:
            self._adapter().put_metric_data(NAMESPACE, data)
        except MetricsUnavailable:
            raise
        except Exception as exc:  # the adapter's CloudServiceError, or a connection error
            raise MetricsUnavailable(
                f"monitoring put_metric_data failed ({type(exc).__name__}: {exc})") from exc

    def _stats(self, name: str, dims: dict[str, str], start: datetime,
               end: datetime) -> list[MetricStatistics]:
        try:
            return self._adapter().metric_statistics(NAMESPACE, name, dims, start, end, 60)
        except MetricsUnavailable:
            raise
        except Exception as exc:
            raise MetricsUnavailable(
                f"monitoring metric_statistics failed ({type(exc).__name__}: {exc})"
            ) from exc

    def window(self, record: str, side: str, step: str, start: datetime,
               end: datetime | None = None) -> Window:
        """The step's metrics of one service; ``MetricsUnavailable`` if none came back."""
        end = (end or datetime.now(UTC)) + timedelta(seconds=2)
        start = start - timedelta(seconds=2)
        dims = self._dims(record, side, step)
        w = Window()
        req = self._stats("Requests", dims, start, end)
        if not req:
            raise MetricsUnavailable(
                f"the monitoring API returned no Requests datapoints for {record} ({side}, "
                f"step {step}) although probes were published")
        w.requests = sum(d.sum for d in req)
        w.datapoints = int(sum(d.sample_count for d in req))
        w.errors = sum(d.sum for d in self._stats("Errors", dims, start, end))
        w.p95_ms = max((d.maximum for d in self._stats("LatencyP95", dims, start, end)),
                       default=0.0)
        w.health_checks = sum(d.sum for d in self._stats("HealthChecks", dims, start, end))
        w.health_failed = sum(d.sum for d in self._stats("HealthChecksFailed", dims,
                                                          start, end))
        for name, attr in (("CPUUtilization", "cpu_min_pct"),
                           ("MemoryUtilization", "memory_min_pct")):
            points = self._stats(name, dims, start, end)
            if points:
                setattr(w, attr, min(d.minimum for d in points))
        return w
