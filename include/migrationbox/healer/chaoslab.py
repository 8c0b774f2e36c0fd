"""A migrated lab estate for chaos runs (tests, benchmark, demo): the same setup each time.

``ChaosEstate.up()`` stores a small estate (web-01 and web-02 → api-01 → db-01), plans it,
marks its wave completed (what a finished migration leaves behind), starts the lab,
registers the lab's endpoints, and starts the lab's metrics publisher towards the
emulator's CloudWatch. ``baseline()`` waits for a baseline and trains the per-metric
forecasters (model 2) on it, as the weekly retraining DAG would. ``inject`` / ``clear``
drive :mod:`migrationbox.lab.chaos` through the lab's control server.

It needs the AWS connection (``AIRFLOW_CONN_AWS_DEFAULT``, the emulator) and the store
(``MIGRATIONBOX_STORE_URL`` or the default) to be configured by the caller.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from migrationbox.healer import sensing

SCENARIOS: dict[str, dict[str, Any]] = {
    # scenario: server, chaos body, the matrix row that must heal it
    "cpu_burn": {"server": "web-01", "chaos": {"kind": "cpu", "cpu_demand": 0.97},
                 "row": "high_cpu"},
    "memory_pressure": {"server": "api-01", "chaos": {"kind": "memory", "memory_mb": 60},
                        "row": "high_memory"},
    "disk_fill": {"server": "web-01", "chaos": {"kind": "disk", "disk_mb": 24},
                  "row": "disk_full"},
    "failing_health": {"server": "api-01", "fault": {"health": "fail"},
                       "row": "health_check_failed"},
    "expiring_certificate": {"server": "web-01",
                             "chaos": {"kind": "certificate", "certificate_days": -0.01},
                             "row": "ssl_certificate_expired"},
    "db_connection_exhaustion": {"server": "api-01", "chaos": {"kind": "db_connections"},
                                 "row": "db_connections_exhausted"},
}

#: faults the matrix leaves to people (confidence under 0.85, no auto-heal): the healer
#: detects them and alerts, proposing the action
ALERT_SCENARIOS: dict[str, dict[str, Any]] = {
    # the partner API web-01's sync job calls answers after 8 s (p95 > 5 s)
    "slow_partner_api": {"server": "web-01",
                         "chaos": {"kind": "external_api", "external_latency_s": 8.0},
                         "row": "external_api_timeout"},
}

#: faults whose remediation is risky: the healer must ask a person (approval DAG)
RISKY_SCENARIOS: dict[str, dict[str, Any]] = {
    # a session takes an exclusive lock on the migrated database and never commits;
    # another session queues behind it (PostgreSQL targets only)
    "blocking_lock": {"server": "db-01", "row": "database_deadlock"},
    # rows of the migrated database changed behind the application's back (its updated_at
    # watermark untouched); the restore from the backup taken at ``up`` needs a person
    "data_corruption": {"server": "db-01", "row": "data_corruption"},
}
#: the orders the corruption scenario damages
CORRUPTED_ORDERS = (3, 7, 11, 19, 42)


def _record(sid: str, role: str, ip: str, ports: list[int], kind: str,
            deps: list[str]) -> dict[str, Any]:
    return {
        "server_id": sid, "hostname": f"{sid}.corp.local", "ip_addresses": [ip],
        "os": {"type": "Linux", "distribution": "Ubuntu", "version": "22.04"},
        "hardware": {"cpu_cores": 2, "ram_gb": 4, "disk_total_gb": 40},
        "applications": [{"name": role, "ports": ports, "kind": kind, "data_size_gb": 1}],
        "network_dependencies": [{"destination": d, "protocol": "tcp"} for d in deps],
        "performance_baseline": {"cpu_avg_utilization_pct": 20,
                                 "memory_avg_utilization_pct": 40,
                                 "cpu_p95_utilization_pct": 50},
        "environment": "production", "role": role,
        "backup": {"available": True, "last_backup_at": "2026-11-24T02:00:00Z"},
    }


def write_estate(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    records = [
        _record("web-01", "web", "10.60.0.11", [80], "web", ["10.60.0.21:8080"]),
        _record("web-02", "web", "10.60.0.12", [80], "web", ["10.60.0.21:8080"]),
        _record("api-01", "api", "10.60.0.21", [8080], "api", ["10.60.0.31:5432"]),
        _record("db-01", "postgresql-primary", "10.60.0.31", [5432], "database", []),
    ]
    for r in records:
        (folder / f"{r['server_id']}.json").write_text(json.dumps(r))
    return folder


@dataclass
class ChaosEstate:
    estate: str
    root: Path
    emulator_url: str
    publish_interval_s: float = 1.0
    lab: Any = None
    targets: list[sensing.Target] = field(default_factory=list)
    _traffic_stop: threading.Event = field(default_factory=threading.Event)
    _locks: list[Any] = field(default_factory=list)

    def up(self) -> ChaosEstate:
        from migrationbox.lab.lab import Lab
        from migrationbox.orchestration.demo import register_lab_endpoints
        from migrationbox.service import plan_estate
        from migrationbox.store import repository
        from migrationbox.store.db import session_scope

        planned = plan_estate(write_estate(self.root / "estate"), estate=self.estate)
        with session_scope() as s:
            for wave in planned.plan.waves:
                repository.set_wave_status(s, self.estate, wave.number, "completed",
                                           planned.plan.version)
            servers = repository.get_estate(s, self.estate).servers
        self.lab = Lab(self.estate, servers, root=self.root / "lab", data_scale_mb=1)
        register_lab_endpoints(self.estate, self.lab.up())
        self.targets = sensing.load_targets(self.estate)
        self._migrate_and_back_up("db-01")
        sensing.start_lab_publishing(self.control_url, self.emulator_url,
                                     self.publish_interval_s)
        return self

    def _migrate_and_back_up(self, server_id: str) -> None:
        """The migrated database holds the application's rows (what the wave's database
        copy left) and has a backup (what the nightly backup leaves)."""
        from migrationbox.healer import backup
        from migrationbox.lab.databases import seed_source

        url = self.target(server_id).database_url
        server = next(s for s in self.lab.servers if s.server_id == server_id)
        if url:
            seed_source(url, self.estate, server)
            backup.take_backup(url, self.estate, server_id)

    @property
    def control_url(self) -> str:
        return self.lab.service_ports().control_url

    def target(self, server_id: str) -> sensing.Target:
        return next(t for t in self.targets if t.server_id == server_id)

    def baseline(self, seconds: float = 30.0, *, traffic_burst_at: float | None = 8.0,
                 metrics: tuple[str, ...] = ("cpu_utilization_pct", "memory_utilization_pct",
                                             "disk_used_pct", "request_rate")) -> dict[str, str]:
        """Steady background traffic, one short traffic burst on web-02 (a routine peak
        the forecaster learns), then train and log the forecasters."""
        self.start_traffic("web-01", 5.0)
        self.start_traffic("api-01", 5.0)
        started = time.monotonic()
        if traffic_burst_at is not None:
            time.sleep(traffic_burst_at)
            self.burst("web-02", seconds=3.0, rate=60.0)
        time.sleep(max(0.0, seconds - (time.monotonic() - started)))
        src = sensing.MetricSource()
        return sensing.train_forecasters(self.targets, source=src, metrics=metrics)

    # --------------------------------------------------------------- traffic
    def _get(self, server_id: str) -> None:
        url = self.target(server_id).http_url
        with contextlib.suppress(httpx.HTTPError):
            httpx.get(f"{url}/", timeout=2.0)

    def start_traffic(self, server_id: str, rate: float) -> None:
        def loop() -> None:
            while not self._traffic_stop.is_set():
                self._get(server_id)
                self._traffic_stop.wait(1.0 / rate)
        threading.Thread(target=loop, daemon=True, name=f"traffic-{server_id}").start()

    def burst(self, server_id: str, *, seconds: float, rate: float) -> int:
        end, n = time.monotonic() + seconds, 0
        with httpx.Client(timeout=2.0) as client:
            url = f"{self.target(server_id).http_url}/"
            while time.monotonic() < end:
                with contextlib.suppress(httpx.HTTPError):
                    client.get(url)
                n += 1
                time.sleep(1.0 / rate)
        return n

    # --------------------------------------------------------------- chaos
    def inject(self, scenario: str) -> None:
        if scenario == "data_corruption":
            self._corrupt(self.target(RISKY_SCENARIOS[scenario]["server"]))
            return
        if scenario in RISKY_SCENARIOS:
            self._hold_lock(self.target(RISKY_SCENARIOS[scenario]["server"]))
            return
        spec = SCENARIOS.get(scenario) or ALERT_SCENARIOS[scenario]
        name = f"{spec['server']}:target"
        if "fault" in spec:
            r = httpx.post(f"{self.control_url}/services/{name}/fault", json=spec["fault"],
                           timeout=10)
        else:
            r = httpx.post(f"{self.control_url}/services/{name}/chaos", json=spec["chaos"],
                           timeout=10)
        r.raise_for_status()

    def supports(self, scenario: str) -> bool:
        """Lock chains need a PostgreSQL target (the lab falls back to SQLite without one)."""
        if scenario == "data_corruption":
            return bool(self.target(RISKY_SCENARIOS[scenario]["server"]).database_url)
        if scenario in RISKY_SCENARIOS:
            url = self.target(RISKY_SCENARIOS[scenario]["server"]).database_url or ""
            return url.startswith("postgresql")
        return scenario in SCENARIOS

    def _corrupt(self, target: sensing.Target) -> None:
        """Damage a few orders the way a bad script or a broken disk would: values change,
        the application's ``updated_at`` watermark does not."""
        from sqlalchemy import create_engine, text

        engine = create_engine(target.database_url or "")
        try:
            with engine.begin() as conn:
                for order_id in CORRUPTED_ORDERS:
                    conn.execute(text("UPDATE orders SET amount = amount + 1000, status = "
                                      "'corrupt' WHERE id = :i"), {"i": order_id})
        finally:
            engine.dispose()

    def _hold_lock(self, target: sensing.Target) -> None:
        """A blocker (exclusive table lock, transaction left open) and a waiter behind it."""
        from sqlalchemy import create_engine, text

        url = target.database_url or ""
        if not url.startswith("postgresql"):
            raise RuntimeError(f"{target.server_id}: lock chains need a PostgreSQL target "
                               f"database, not {url.split(':', 1)[0] or 'none'}")
        engine = create_engine(url, pool_size=2)
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE IF NOT EXISTS healer_chaos_lock (id integer)"))
        blocker = engine.connect()
        blocker.execute(text("LOCK TABLE healer_chaos_lock IN ACCESS EXCLUSIVE MODE"))

        def wait() -> None:
            with contextlib.suppress(Exception), engine.connect() as conn:
                conn.execute(text("SELECT count(*) FROM healer_chaos_lock"))

        waiter = threading.Thread(target=wait, daemon=True, name="chaos-lock-waiter")
        waiter.start()
        self._locks.append((engine, blocker, waiter))

    def release_locks(self) -> None:
        while self._locks:
            engine, blocker, waiter = self._locks.pop()
            with contextlib.suppress(Exception):
                blocker.rollback()
            with contextlib.suppress(Exception):
                blocker.close()
            waiter.join(timeout=10)
            engine.dispose()

    def clear(self, server_id: str) -> None:
        httpx.post(f"{self.control_url}/services/{server_id}:target/chaos",
                   json={"kind": "clear"}, timeout=10).raise_for_status()

    def metrics(self, server_id: str) -> dict[str, Any]:
        return httpx.get(f"{self.control_url}/metrics", timeout=10).json()[
            f"{server_id}:target"]

    def down(self) -> None:
        self._traffic_stop.set()
        self.release_locks()
        if self.lab is not None:
            self.lab.down(purge=True)
