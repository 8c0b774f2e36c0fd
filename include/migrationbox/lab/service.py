"""The lab's HTTP services: one process, one thread-backed server per service, all on loopback.

Run as ``python -m migrationbox.lab.service --spec SPEC.json --ports PORTS.json``. For
every web/api/load-balancer server of an estate it serves a *source* and a *target*
service, each on its own ephemeral port, with:

* ``GET /health/live``, ``/health/ready``, ``/health/deep`` (the plan's JSON shape, with a
  real ``SELECT 1`` against the side's database when one is configured) and ``GET /``;
* ``GET /_lab/stats`` (request and error counts, so canary traffic shares are visible)
  and ``POST /_lab/fault`` (``{"health": "fail"|"ok"|"slow", "latency_ms": .., "error_rate": ..}``)
  to inject faults in tests and demos;
* ``GET /_lab/metrics`` (measured CPU, memory, disk, connections, certificate, latency),
  ``POST /_lab/chaos`` and ``POST /_lab/remediate`` (see ``migrationbox.lab.chaos``).

A control server on one more port lists all services and forwards faults by name, so the
CLI (``migrationbox lab fault``) needs only one address. The chosen ports are written
atomically to the ports file once every server is bound; SIGTERM stops all of them.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import signal
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

LOOPBACK = "127.0.0.1"
SLOW_DEFAULT_MS = 1500
log = logging.getLogger("migrationbox.lab.service")


class ServiceSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="'<server_id>:source' or '<server_id>:target'")
    server_id: str
    side: str
    hostname: str
    role: str | None = None
    database_url: str | None = None


class ServiceFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    estate: str
    services: list[ServiceSpec]


class FaultRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    health: str = Field(pattern="^(ok|fail|slow)$")
    latency_ms: int | None = Field(default=None, ge=0, le=60_000)
    error_rate: float | None = Field(default=None, ge=0, le=1)


@dataclass
class ServiceState:
    spec: ServiceSpec
    health: str = "ok"
    latency_ms: int = 0
    error_rate: float = 0.0
    requests: int = 0
    errors: int = 0
    by_path: Counter[str] = field(default_factory=Counter)
    started_at: float = field(default_factory=time.time)
    lock: threading.Lock = field(default_factory=threading.Lock)
    rng: random.Random = field(default_factory=lambda: random.Random(7))
    _engine: Any = None
    chaos: Any = None  # migrationbox.lab.chaos.ChaosState, made in __post_init__

    def __post_init__(self) -> None:
        from migrationbox.lab.chaos import ChaosState

        if self.chaos is None:
            self.chaos = ChaosState(name=self.spec.name)

    def set_fault(self, fault: FaultRequest) -> None:
        with self.lock:
            self.health = fault.health
            if fault.health == "ok":
                self.latency_ms = fault.latency_ms or 0
                self.error_rate = fault.error_rate or 0.0
            elif fault.health == "slow":
                self.latency_ms = SLOW_DEFAULT_MS if fault.latency_ms is None else fault.latency_ms
                self.error_rate = fault.error_rate or 0.0
            else:
                self.latency_ms = fault.latency_ms or 0
                self.error_rate = 1.0 if fault.error_rate is None else fault.error_rate

    def record(self, path: str, status: int) -> None:
        with self.lock:
            self.requests += 1
            self.by_path[path] += 1
            if status >= 500:
                self.errors += 1

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {
                "name": self.spec.name,
                "server_id": self.spec.server_id,
                "side": self.spec.side,
                "health": self.health,
                "latency_ms": self.latency_ms,
                "error_rate": self.error_rate,
                "requests": self.requests,
                "errors": self.errors,
                "by_path": dict(self.by_path),
            }

    def reset_stats(self) -> None:
        with self.lock:
            self.requests = 0
            self.errors = 0
            self.by_path.clear()

    def should_fail(self) -> bool:
        with self.lock:
            if self.health != "fail" and self.error_rate <= 0:
                return False
            return self.rng.random() < self.error_rate

    def database_component(self) -> dict[str, Any] | None:
        if not self.spec.database_url:
            return None
        from sqlalchemy import create_engine, text

        start = time.perf_counter()
        try:
            with self.lock:
                if self._engine is None:
                    self._engine = create_engine(self.spec.database_url, pool_pre_ping=True,
                                                 pool_size=2, max_overflow=2)
                engine = self._engine
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            latency = (time.perf_counter() - start) * 1000
            return {"status": "healthy", "latency_ms": round(latency, 1)}
        except Exception as exc:
            return {"status": "unhealthy", "error": type(exc).__name__}


def _make_handler(state: ServiceState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = f"MigrationBoxLab/{state.spec.side}"
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # quiet by default
            log.debug("%s %s", state.spec.name, format % args)

        def _send(self, status: int, body: dict[str, Any], count: bool = True) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            if count:
                state.record(self.path.split("?", 1)[0], status)

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/_lab/stats":
                self._send(200, state.snapshot(), count=False)
                return
            if state.latency_ms:
                time.sleep(state.latency_ms / 1000)
            failing = state.should_fail()
            if path == "/health/live":
                self._send(200, {"status": "alive"})
            elif path == "/health/ready":
                if failing:
                    self._send(503, {"status": "not_ready"})
                else:
                    self._send(200, {"status": "ready"})
            elif path == "/health/deep":
                body = self._deep(failing)
                self._send(200 if body["status"] != "unhealthy" else 503, body)
            elif path == "/":
                started = time.perf_counter()
                if failing:
                    self._send(500, {"error": "injected fault", "service": state.spec.name})
                elif not state.chaos.acquire_connection():
                    self._send(503, {"error": "database connection pool exhausted",
                                     "service": state.spec.name})
                else:
                    try:
                        self._send(200, {
                            "service": state.spec.hostname,
                            "side": state.spec.side,
                            "server_id": state.spec.server_id,
                        })
                    finally:
                        state.chaos.release_connection()
                state.chaos.observe_latency((time.perf_counter() - started) * 1000
                                            + state.latency_ms)
            elif path == "/_lab/metrics":
                self._send(200, _metrics_body(state), count=False)
            else:
                self._send(404, {"error": f"no route {path}"})

        def _deep(self, failing: bool) -> dict[str, Any]:
            components: dict[str, Any] = {
                "application": {
                    "status": "unhealthy" if failing else (
                        "degraded" if state.health == "slow" else "healthy"),
                    "latency_ms": state.latency_ms,
                    "uptime_s": round(time.time() - state.started_at, 1),
                },
            }
            components.update(_chaos_components(state))
            db = state.database_component()
            if db is not None:
                components["database"] = db
            statuses = [c["status"] for c in components.values()]
            if "unhealthy" in statuses:
                overall = "unhealthy"
            elif "degraded" in statuses:
                overall = "degraded"
            else:
                overall = "healthy"
            score = sum({"healthy": 1.0, "degraded": 0.5}.get(s, 0.0) for s in statuses)
            return {
                "status": overall,
                "timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "components": components,
                "overall_health_score": round(score / len(statuses), 2),
            }

        def do_POST(self) -> None:
            path = self.path.split("?", 1)[0]
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b"{}"
            if path == "/_lab/fault":
                try:
                    fault = FaultRequest.model_validate_json(raw)
                except ValueError as exc:
                    self._send(400, {"error": str(exc)}, count=False)
                    return
                state.set_fault(fault)
                self._send(200, state.snapshot(), count=False)
            elif path == "/_lab/reset-stats":
                state.reset_stats()
                self._send(200, state.snapshot(), count=False)
            elif path in ("/_lab/chaos", "/_lab/remediate"):
                status, body = _chaos_op(state, path.rsplit("/", 1)[1], raw)
                self._send(status, body, count=False)
            else:
                self._send(404, {"error": f"no route {path}"}, count=False)

    return Handler


def _chaos_components(state: ServiceState) -> dict[str, Any]:
    """``/health/deep`` components for the connection pool and the certificate."""
    m = state.chaos.metrics_peek()
    pool = "unhealthy" if m["db_connections_used_ratio"] >= 1 else (
        "degraded" if m["db_connections_used_ratio"] >= 0.9 else "healthy")
    days = m["certificate_days_remaining"]
    cert = "unhealthy" if days <= 0 else ("degraded" if days < 7 else "healthy")
    return {
        "connection_pool": {"status": pool, "used_ratio": m["db_connections_used_ratio"],
                            "max_connections": m["max_connections"]},
        "certificate": {"status": cert, "days_remaining": round(days, 3)},
    }


def _metrics_body(state: ServiceState) -> dict[str, Any]:
    return {**state.chaos.metrics_peek(), "requests": state.snapshot()["requests"],
            "errors": state.snapshot()["errors"], "name": state.spec.name}


def _chaos_op(state: ServiceState, op: str, raw: bytes) -> tuple[int, dict[str, Any]]:
    """Apply a chaos injection or a remediation operation to one service."""
    from migrationbox.lab.chaos import ChaosRequest, RemediationRequest

    extra: dict[str, Any] = {}
    try:
        if op == "chaos":
            req = ChaosRequest.model_validate_json(raw)
            state.chaos.inject(req)
            if req.kind == "clear":
                state.set_fault(FaultRequest(health="ok"))
        else:
            rem = RemediationRequest.model_validate_json(raw)
            extra = state.chaos.remediate(rem)
            if rem.op == "restart":  # a restarted process no longer has the fault
                state.set_fault(FaultRequest(health="ok"))
    except ValueError as exc:
        return 400, {"error": str(exc)}
    return 200, {**extra, **_metrics_body(state), "health": state.health}


def _make_control_handler(states: dict[str, ServiceState], ports: dict[str, int]):
    publisher: dict[str, Any] = {}

    class Control(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("control %s", format % args)

        def _send(self, status: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path == "/healthz":
                self._send(200, {"status": "ok", "pid": os.getpid()})
            elif self.path == "/services":
                self._send(200, [
                    {**s.snapshot(), "port": ports[name]} for name, s in sorted(states.items())
                ])
            elif self.path == "/metrics/publish":
                pub = publisher.get("current")
                self._send(200, pub.status() if pub else {"running": False})
            elif self.path == "/metrics":
                self._send(200, {name: _metrics_body(s) for name, s in sorted(states.items())})
            else:
                self._send(404, {"error": f"no route {self.path}"})

        def do_POST(self) -> None:
            parts = self.path.strip("/").split("/")
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b"{}"
            if parts == ["metrics", "publish"]:
                self._publish(raw)
                return
            if len(parts) == 3 and parts[0] == "services" and parts[2] in ("chaos", "remediate"):
                state = states.get(parts[1])
                if state is None:
                    self._send(404, {"error": f"no service {parts[1]!r}",
                                     "known": sorted(states)})
                    return
                self._send(*_chaos_op(state, parts[2], raw))
                return
            if len(parts) == 3 and parts[0] == "services" and parts[2] in ("fault", "reset-stats"):
                state = states.get(parts[1])
                if state is None:
                    self._send(404, {"error": f"no service {parts[1]!r}",
                                     "known": sorted(states)})
                    return
                if parts[2] == "reset-stats":
                    state.reset_stats()
                    self._send(200, state.snapshot())
                    return
                try:
                    fault = FaultRequest.model_validate_json(raw)
                except ValueError as exc:
                    self._send(400, {"error": str(exc)})
                    return
                state.set_fault(fault)
                self._send(200, state.snapshot())
            else:
                self._send(404, {"error": f"no route {self.path}"})

        def _publish(self, raw: bytes) -> None:
            from migrationbox.lab.metrics import MetricsPublisher, PublishRequest

            try:
                req = PublishRequest.model_validate_json(raw)
            except ValueError as exc:
                self._send(400, {"error": str(exc)})
                return
            old = publisher.pop("current", None)
            if old is not None:
                old.stop()
            pub = MetricsPublisher(states, req)
            pub.start()
            publisher["current"] = pub
            self._send(200, pub.status())

    return Control


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def serve(spec: ServiceFile, ports_path: Path, stop: threading.Event | None = None) -> None:
    """Bind every service, publish the ports, and serve until SIGTERM (or ``stop``)."""
    from migrationbox.lab.endpoints import atomic_write_text

    stop = stop or threading.Event()
    states: dict[str, ServiceState] = {}
    servers: list[ThreadingHTTPServer] = []
    ports: dict[str, int] = {}
    for svc in spec.services:
        if svc.name in states:
            raise ValueError(f"service spec: duplicate service name {svc.name!r}")
        state = ServiceState(spec=svc)
        server = _Server((LOOPBACK, 0), _make_handler(state))
        states[svc.name] = state
        servers.append(server)
        ports[svc.name] = server.server_address[1]
    control = _Server((LOOPBACK, 0), _make_control_handler(states, ports))
    servers.append(control)
    threads = [
        threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.5}, daemon=True)
        for s in servers
    ]
    for t in threads:
        t.start()
    atomic_write_text(
        ports_path,
        json.dumps({
            "pid": os.getpid(),
            "pgid": os.getpgid(0),
            "estate": spec.estate,
            "control_port": control.server_address[1],
            "services": ports,
            "started_at": datetime.now(UTC).isoformat(),
        }, indent=2, sort_keys=True),
    )
    stop.wait()
    for s in servers:
        s.shutdown()
        s.server_close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m migrationbox.lab.service")
    parser.add_argument("--spec", required=True, type=Path)
    parser.add_argument("--ports", required=True, type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    spec = ServiceFile.model_validate_json(args.spec.read_text())
    stop = threading.Event()

    def _on_signal(signum: int, _frame: object) -> None:
        log.info("signal %s: stopping %d services", signum, len(spec.services))
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    serve(spec, args.ports, stop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
