"""Chaos for the lab's HTTP services: real resource faults the healer must find and fix.

Each lab service carries a :class:`ChaosState` that does *real* work and reports *real*
measurements, so the healer's sensing reads numbers that move because something
happened, not because a test wrote them:

* **CPU burn** — a thread that busy-loops for a duty cycle of ``demand / instances``;
  ``cpu_utilization_pct`` is the burner's measured busy time over wall time (what a guest
  OS reports for a busy vCPU, steal included: stable on a shared 2-core test machine).
  Scaling out (``instances``) spreads the demand, as a load balancer in front of more
  instances would, so the burner really does less work.
* **Memory pressure** — real ``bytearray`` allocations; ``memory_utilization_pct`` is the
  allocated bytes over the instance's memory budget (``memory_limit_mb``). A restart frees
  them; a vertical scale doubles the budget.
* **Disk fill** — real files written into the service's data volume (a folder with a
  quota); ``disk_used_pct`` is the bytes on disk over the quota. Cleanup deletes old log
  files (by mtime), expansion raises the quota.
* **Failing health** — the existing ``/_lab/fault`` (``health=fail``).
* **Expiring certificate** — the service's certificate ``not_after``;
  ``certificate_days_remaining`` counts down from it. Renewal sets a new ``not_after``.
* **DB connection exhaustion** — a bounded connection pool (a semaphore of
  ``max_connections``); the fault leaks every connection, so ``GET /`` answers 503 and
  ``db_connections_used_ratio`` reaches 1. Raising ``max_connections`` plus a restart
  (which drops the leaked connections) heals it.
* **Slow partner API** — the service's partner-sync job calls an external API once a
  second; the fault makes that API answer after ``external_latency_s`` (the call's wait
  is real wall time of the job's thread). ``external_api_p95_latency_s`` is the p95 of
  the calls of the last 10 s, an unfinished call counted at its elapsed time. A circuit
  breaker (``circuit_breaker`` operation: a call deadline, a failure count that opens the
  breaker, a reset time after which one trial call goes through) makes the job fail fast
  and fall back to its cached copy instead of waiting.

Remediation operations (``restart``, ``scale_out``, ``vertical_scale``, ``cleanup_disk``,
``expand_disk``, ``renew_certificate``, ``set_max_connections``, ``circuit_breaker``) are
the lab side of the healer's actions; the cloud side (EC2, ACM) is done by the healer
against the emulator.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

MB = 1024 * 1024
BASE_MEMORY_MB = 8  # the "application" itself, allocated for real at start
OLD_LOG_AGE_DAYS = 45  # chaos disk files are old logs: cleanup may delete them
#: the partner-sync job: one call a second; its HTTP client gives up after 30 s
SYNC_EVERY_S = 1.0
CLIENT_TIMEOUT_S = 30.0
P95_WINDOW_S = 10.0


class ChaosRequest(BaseModel):
    """Body of ``POST /_lab/chaos`` (and the control server's ``/services/NAME/chaos``)."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["cpu", "memory", "disk", "certificate", "db_connections", "external_api",
                  "clear"]
    cpu_demand: float = Field(default=0.97, ge=0, le=4, description="cores of demand")
    memory_mb: int = Field(default=60, ge=0, le=2048)
    disk_mb: int = Field(default=20, ge=0, le=4096)
    certificate_days: float = Field(default=-0.01, ge=-3650, le=3650)
    external_latency_s: float = Field(default=8.0, ge=0, le=600)


class RemediationRequest(BaseModel):
    """Body of ``POST /_lab/remediate``: one lab-side remediation operation."""

    model_config = ConfigDict(extra="forbid")

    op: Literal["restart", "scale_out", "scale_in", "vertical_scale", "cleanup_disk",
                "expand_disk", "renew_certificate", "set_max_connections",
                "set_memory_limit", "set_disk_quota", "circuit_breaker"]
    instances: int | None = Field(default=None, ge=1, le=64)
    memory_limit_mb: int | None = Field(default=None, ge=1, le=65536)
    disk_quota_mb: int | None = Field(default=None, ge=1, le=1_000_000)
    max_connections: int | None = Field(default=None, ge=1, le=100_000)
    max_age_days: float | None = Field(default=None, ge=0)
    certificate_days: float | None = Field(default=None, ge=1, le=3650)
    #: ``circuit_breaker``: on/off, the call deadline, failures that open it, and how
    #: long it stays open before one trial call
    breaker_enabled: bool | None = None
    breaker_timeout_s: float | None = Field(default=None, gt=0, le=60)
    breaker_failures: int | None = Field(default=None, ge=1, le=100)
    breaker_reset_s: float | None = Field(default=None, gt=0, le=3600)


@dataclass
class ChaosState:
    """Real resource usage of one lab service; thread-safe."""

    name: str
    instances: int = 1
    memory_limit_mb: int = 64
    disk_quota_mb: int = 24
    max_connections: int = 10
    cert_not_after: datetime = field(
        default_factory=lambda: datetime.now(UTC) + timedelta(days=90))
    disk_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="mbx-vol-")))
    restarts: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    _cpu_demand: float = 0.0
    _burn_cpu_s: float = 0.0
    _burner: threading.Thread | None = None
    _stop_burn: threading.Event = field(default_factory=threading.Event)
    _memory: list[bytearray] = field(default_factory=list)
    _held: int = 0
    _cpu_mark: tuple[float, float] | None = None  # (wall, process cpu) at last reading
    _burn_mark: float = 0.0
    _latency_sum_ms: float = 0.0
    _latency_n: int = 0
    breaker: dict[str, Any] = field(default_factory=lambda: {
        "enabled": False, "timeout_s": 1.0, "failures": 3, "reset_s": 30.0})
    _external_latency_s: float = 0.0
    _sync: threading.Thread | None = None
    _stop_sync: threading.Event = field(default_factory=threading.Event)
    _calls: list[tuple[float, float]] = field(default_factory=list)  # (ended, seconds)
    _call_started: float | None = None
    _failures: int = 0
    _open_until: float = 0.0
    _short_circuited: int = 0

    def __post_init__(self) -> None:
        self._memory.append(bytearray(BASE_MEMORY_MB * MB))
        self._connections = threading.BoundedSemaphore(self.max_connections)

    # ------------------------------------------------------------------ faults
    def inject(self, req: ChaosRequest) -> None:
        if req.kind == "cpu":
            self._start_burn(req.cpu_demand)
        elif req.kind == "memory":
            with self.lock:
                for _ in range(req.memory_mb):
                    chunk = bytearray(MB)
                    chunk[::4096] = b"\x01" * len(chunk[::4096])  # touch pages: resident
                    self._memory.append(chunk)
        elif req.kind == "disk":
            self._fill_disk(req.disk_mb)
        elif req.kind == "certificate":
            with self.lock:
                self.cert_not_after = datetime.now(UTC) + timedelta(days=req.certificate_days)
        elif req.kind == "db_connections":
            while self.acquire_connection(timeout=0):
                with self.lock:
                    self._held += 1  # leaked: never released until a restart
        elif req.kind == "external_api":
            with self.lock:
                self._external_latency_s = req.external_latency_s
            self._start_sync()
        elif req.kind == "clear":
            self._stop_burner()
            self._free_memory()
            self._release_leaked()
            with self.lock:
                self._external_latency_s = 0.0

    def _start_burn(self, demand: float) -> None:
        with self.lock:
            self._cpu_demand = demand
            if self._burner is not None and self._burner.is_alive():
                return
            self._stop_burn.clear()
            self._burner = threading.Thread(target=self._burn, name=f"burn-{self.name}",
                                            daemon=True)
            self._burner.start()

    def _burn(self) -> None:
        """Busy-loop so that busy time keeps up with ``demand/instances`` of wall time (at
        most 98 %: the service's own threads still get the rest).

        The duty is kept on the running totals, not per slice: on a saturated machine a
        short sleep overshoots by tens of milliseconds, and a per-slice loop then reads
        ~70 % for a 0.97 demand (never over a 90 % threshold). Owing the missed busy time
        to the next slice keeps the reading at the demand, as a guest that really has
        that much work would show (its queue does not shrink because the host was slow).
        A change of demand (a scale-out) starts a new account.
        """
        slice_s = 0.1
        start, busy, duty_was = time.perf_counter(), 0.0, -1.0
        while not self._stop_burn.is_set():
            with self.lock:
                duty = min(0.98, self._cpu_demand / max(1, self.instances))
            now = time.perf_counter()
            if duty != duty_was:
                start, busy, duty_was = now, 0.0, duty
            owed = duty * (now - start + slice_s) - busy
            if owed > 0:
                busy_until = now + min(owed, slice_s)
                x = 0
                while time.perf_counter() < busy_until:
                    x += 1
                spent = time.perf_counter() - now
                busy += spent
                with self.lock:
                    self._burn_cpu_s += spent
            time.sleep(max(0.001, slice_s * (1 - duty)))

    def _stop_burner(self) -> None:
        self._stop_burn.set()
        burner = self._burner
        if burner is not None:
            burner.join(timeout=2)
        with self.lock:
            self._burner = None
            self._cpu_demand = 0.0

    def _free_memory(self) -> None:
        with self.lock:
            del self._memory[1:]

    def _release_leaked(self) -> None:
        with self.lock:
            held, self._held = self._held, 0
        for _ in range(held):
            self._connections.release()

    def _fill_disk(self, mb: int) -> None:
        self.disk_dir.mkdir(parents=True, exist_ok=True)
        old = time.time() - OLD_LOG_AGE_DAYS * 86400
        block = os.urandom(MB)
        for i in range(mb):
            path = self.disk_dir / f"app-{time.time_ns()}-{i}.log"
            path.write_bytes(block)
            os.utime(path, (old, old))

    # ------------------------------------------------------------------ requests
    def acquire_connection(self, timeout: float = 0.0) -> bool:
        return self._connections.acquire(timeout=timeout) if timeout else (
            self._connections.acquire(blocking=False))

    def release_connection(self) -> None:
        self._connections.release()

    # ------------------------------------------------------------------ partner API
    def _start_sync(self) -> None:
        with self.lock:
            if self._sync is not None and self._sync.is_alive():
                return
            self._stop_sync.clear()
            self._sync = threading.Thread(target=self._sync_loop, daemon=True,
                                          name=f"partner-sync-{self.name}")
            self._sync.start()

    def _sync_loop(self) -> None:
        while not self._stop_sync.is_set():
            started = time.monotonic()
            self.call_partner()
            self._stop_sync.wait(max(0.0, SYNC_EVERY_S - (time.monotonic() - started)))

    def call_partner(self) -> str:
        """One call of the partner API as the sync job makes it: through the breaker when
        it is on. Returns ``ok``, ``timeout`` or ``short_circuit`` (fallback to cache)."""
        started = time.monotonic()
        with self.lock:
            if self.breaker["enabled"] and started < self._open_until:
                self._short_circuited += 1
                self._calls.append((started, 0.0))
                return "short_circuit"
            self._call_started = started
        outcome = "ok"
        while not self._stop_sync.is_set():
            with self.lock:  # the partner's delay and the deadline are read live
                answer_after = self._external_latency_s
                deadline = self.breaker["timeout_s"] if self.breaker["enabled"] \
                    else CLIENT_TIMEOUT_S
            elapsed = time.monotonic() - started
            if elapsed >= answer_after:
                break
            if elapsed >= deadline:
                outcome = "timeout"
                break
            self._stop_sync.wait(min(0.05, answer_after - elapsed, deadline - elapsed))
        ended = time.monotonic()
        with self.lock:
            self._call_started = None
            self._calls.append((ended, ended - started))
            if outcome == "timeout" and self.breaker["enabled"]:
                self._failures += 1
                # a failed trial call (half-open) reopens at once
                if self._open_until > 0 or self._failures >= int(self.breaker["failures"]):
                    self._open_until = ended + float(self.breaker["reset_s"])
                    self._failures = 0
            elif outcome == "ok":
                self._failures, self._open_until = 0, 0.0
        return outcome

    def _partner_p95(self) -> float:
        """Nearest-rank p95 of the last ``P95_WINDOW_S`` of calls (caller holds the lock)."""
        now = time.monotonic()
        self._calls = [c for c in self._calls if now - c[0] <= P95_WINDOW_S]
        durations = sorted([d for _, d in self._calls] + (
            [now - self._call_started] if self._call_started is not None else []))
        if not durations:
            return 0.0
        return durations[max(0, -(-95 * len(durations) // 100) - 1)]

    def observe_latency(self, ms: float) -> None:
        with self.lock:
            self._latency_sum_ms += ms
            self._latency_n += 1

    # ------------------------------------------------------------------ remediation
    def remediate(self, req: RemediationRequest) -> dict[str, Any]:
        if req.op == "restart":
            # a restart ends whatever ran in the process: burn, leaks, leaked connections
            self._stop_burner()
            self._free_memory()
            self._release_leaked()
            with self.lock:
                self.restarts += 1
        elif req.op in ("scale_out", "scale_in"):
            with self.lock:
                self.instances = req.instances or (
                    self.instances + 1 if req.op == "scale_out" else max(1, self.instances - 1))
        elif req.op in ("vertical_scale", "set_memory_limit"):
            with self.lock:
                self.memory_limit_mb = req.memory_limit_mb or self.memory_limit_mb * 2
        elif req.op == "cleanup_disk":
            cutoff = time.time() - (30 if req.max_age_days is None else req.max_age_days) * 86400
            removed = 0
            for path in sorted(self.disk_dir.glob("*.log")):
                if path.stat().st_mtime < cutoff:
                    path.unlink(missing_ok=True)
                    removed += 1
            return {"removed_files": removed, **self.metrics()}
        elif req.op in ("expand_disk", "set_disk_quota"):
            with self.lock:
                self.disk_quota_mb = req.disk_quota_mb or self.disk_quota_mb * 2
        elif req.op == "renew_certificate":
            with self.lock:
                self.cert_not_after = datetime.now(UTC) + timedelta(
                    days=req.certificate_days or 90)
        elif req.op == "circuit_breaker":
            with self.lock:
                for key, value in (("enabled", req.breaker_enabled),
                                   ("timeout_s", req.breaker_timeout_s),
                                   ("failures", req.breaker_failures),
                                   ("reset_s", req.breaker_reset_s)):
                    if value is not None:
                        self.breaker[key] = value
                if not self.breaker["enabled"]:
                    self._open_until, self._failures = 0.0, 0
        elif req.op == "set_max_connections":
            new = req.max_connections or self.max_connections * 2
            with self.lock:
                extra = new - self.max_connections
                self.max_connections = new
            if extra > 0:
                # a BoundedSemaphore cannot grow: widen it by replacing its bound
                self._connections._initial_value += extra  # type: ignore[attr-defined]
                for _ in range(extra):
                    self._connections.release()
        return self.metrics()

    # ------------------------------------------------------------------ metrics
    def disk_used_bytes(self) -> int:
        if not self.disk_dir.exists():
            return 0
        return sum(p.stat().st_size for p in self.disk_dir.iterdir() if p.is_file())

    def metrics_peek(self) -> dict[str, Any]:
        """Measured values without starting a new measurement interval (health, probes)."""
        return self.metrics(consume=False)

    def metrics(self, consume: bool = True) -> dict[str, Any]:
        """Measured values now. CPU and latency are over the interval since the previous
        consuming reading (the publisher's), which ``consume=True`` starts anew."""
        now_wall, now_cpu = time.perf_counter(), time.process_time()
        with self.lock:
            burn = self._burn_cpu_s
            if self._cpu_mark is None:
                cpu_pct = 0.0
            else:
                wall = max(1e-6, now_wall - self._cpu_mark[0])
                cpu_pct = min(100.0, 100.0 * (burn - self._burn_mark) / wall)
            if consume or self._cpu_mark is None:
                self._cpu_mark, self._burn_mark = (now_wall, now_cpu), burn
            mem_bytes = sum(len(b) for b in self._memory)
            latency = (self._latency_sum_ms / self._latency_n) if self._latency_n else 0.0
            if consume:
                self._latency_sum_ms, self._latency_n = 0.0, 0
            in_use = self.max_connections - self._connections._value  # type: ignore[attr-defined]
            days = (self.cert_not_after - datetime.now(UTC)).total_seconds() / 86400
            limit, quota, instances = self.memory_limit_mb, self.disk_quota_mb, self.instances
            max_conn, restarts = self.max_connections, self.restarts
            partner_p95 = self._partner_p95()
            breaker = dict(self.breaker, open=time.monotonic() < self._open_until,
                           short_circuited=self._short_circuited)
        return {
            "cpu_utilization_pct": round(cpu_pct, 2),
            "memory_utilization_pct": round(100.0 * mem_bytes / (limit * MB), 2),
            "memory_allocated_mb": round(mem_bytes / MB, 1),
            "disk_used_pct": round(100.0 * self.disk_used_bytes() / (quota * MB), 2),
            "db_connections_used_ratio": round(in_use / max_conn, 3),
            "certificate_days_remaining": round(days, 3),
            "latency_ms": round(latency, 2),
            "external_api_p95_latency_s": round(partner_p95, 3),
            "circuit_breaker": breaker,
            "instances": instances,
            "memory_limit_mb": limit,
            "disk_quota_mb": quota,
            "max_connections": max_conn,
            "restarts": restarts,
            "certificate_not_after": self.cert_not_after.isoformat(),
        }

    def close(self) -> None:
        self._stop_sync.set()
        self._stop_burner()
        shutil.rmtree(self.disk_dir, ignore_errors=True)
