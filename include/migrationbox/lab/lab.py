"""The local lab for one estate: source disks, databases and services, and their targets.

``Lab(estate, servers).up()`` makes, for every server of the estate:

* disk: ``disks/<server_id>/source`` (deterministic files, see ``datagen``) and an empty
  ``disks/<server_id>/target``;
* database (database-role servers): a seeded source database and an empty target
  (PostgreSQL when reachable, else SQLite files);
* http (web/api/load-balancer servers): a source and a target service, all served by one
  lab process in its own process group.

It then writes ``endpoints.json`` (what phases read), ``lab.json`` (what ``down`` and
``status`` need) and the service process's pid and ports files, all under
``<runtime_dir>/lab/<estate>/``. ``register_endpoints`` stores the endpoints in the
MigrationBox store through the same registration (and rules) as any estate's.

``ssh_sources=True`` makes the lab look like a real estate to replication: the source
disks are served by a real OpenSSH server on loopback (``lab.sshd.SshServer``, its own
keys under ``sshd/``, its own process group) and the disk endpoints become
``ssh://127.0.0.1:PORT/abs/path`` with ``details.ssh_conn_id`` naming the lab's Airflow
SSH connection (``ssh_conn_id``; its JSON, holding the key file and the pinned host key,
is ``airflow_env()``, for ``AIRFLOW_CONN_<ID>``) and the host key pinned per endpoint
(``details.host_key``). The SSH server stops with the lab (``down``).

``up`` is idempotent: existing data is kept and a running
service process with the same spec is reused. ``down`` stops the process group;
``down(purge=True)`` also drops the databases and deletes the folder.

Environment: ``MIGRATIONBOX_LAB_DB`` (``postgresql`` or ``sqlite``) forces the database
backend; ``MIGRATIONBOX_LAB_PG_URL`` is the PostgreSQL admin URL (default
``postgresql+psycopg2://postgres@127.0.0.1:5432/postgres``).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from migrationbox.errors import MigrationBoxError
from migrationbox.inventory.models import ServerRecord
from migrationbox.lab import databases as labdb
from migrationbox.lab.datagen import DiskSpec, disk_size_bytes, generate_disk
from migrationbox.lab.endpoints import (
    Endpoint,
    atomic_write_text,
    lab_dir,
    target_dns_name,
    write_endpoints_file,
)
from migrationbox.lab.servers import (
    LabDependency,
    LabServer,
    from_plan,
    from_records,
    from_server_plans,
)
from migrationbox.planning.models import PlanDocument, ServerPlan

DEFAULT_DATA_SCALE_MB = 4.0
SERVICE_MODULE = "migrationbox.lab.service"
STARTUP_TIMEOUT_S = 20.0
ESTATE_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")  # the store's rule for estate names


class LabError(MigrationBoxError, RuntimeError):
    """The lab could not be started, reached or stopped."""


@dataclass(frozen=True)
class ServicePorts:
    pid: int
    pgid: int
    control_port: int
    services: dict[str, int]

    @property
    def control_url(self) -> str:
        return f"http://127.0.0.1:{self.control_port}"


def _normalise(servers: Sequence[Any] | PlanDocument) -> list[LabServer]:
    if isinstance(servers, PlanDocument):
        return from_plan(servers)
    items = list(servers)
    if all(isinstance(s, LabServer) for s in items):
        return sorted(items, key=lambda s: s.server_id)
    if all(isinstance(s, ServerRecord) for s in items):
        return from_records(items)
    if all(isinstance(s, ServerPlan) for s in items):
        return from_server_plans(items)
    raise TypeError("Lab servers must all be LabServer, ServerPlan or ServerRecord, or a plan")


class Lab:
    """The lab of one estate (see module docstring)."""

    def __init__(
        self,
        estate: str,
        servers: Sequence[Any] | PlanDocument | None = None,
        root: Path | str | None = None,
        data_scale_mb: float = DEFAULT_DATA_SCALE_MB,
        db_backend: str = "auto",
        ssh_sources: bool = False,
    ) -> None:
        if not ESTATE_NAME.fullmatch(estate):
            raise ValueError(f"lab estate name {estate!r} must match {ESTATE_NAME.pattern}")
        self.estate = estate
        self.root = Path(root) if root else None
        self.dir = lab_dir(estate, self.root).resolve()
        self.data_scale_mb = data_scale_mb
        self.db_backend = db_backend
        self.servers: list[LabServer] = _normalise(servers) if servers is not None else []
        self.ssh_sources = ssh_sources
        self._proc: subprocess.Popen[bytes] | None = None
        self._sshd: Any = None  # lab.sshd.SshServer while this object runs it

    # ----------------------------------------------------------------- paths
    @property
    def state_path(self) -> Path:
        return self.dir / "lab.json"

    @property
    def endpoints_path(self) -> Path:
        return self.dir / "endpoints.json"

    @property
    def ports_path(self) -> Path:
        return self.dir / "service.ports.json"

    @property
    def pid_path(self) -> Path:
        return self.dir / "service.pid"

    @property
    def spec_path(self) -> Path:
        return self.dir / "service.spec.json"

    @property
    def log_path(self) -> Path:
        return self.dir / "service.log"

    @property
    def sshd_dir(self) -> Path:
        return self.dir / "sshd"

    @property
    def ssh_conn_id(self) -> str:
        """The Airflow SSH connection the lab's ``ssh://`` disk endpoints name."""
        return f"migrationbox_lab_{self.estate.replace('-', '_')}_ssh"

    def disk_paths(self, server_id: str) -> tuple[Path, Path]:
        base = self.dir / "disks" / server_id
        return base / "source", base / "target"

    # ------------------------------------------------------------- lifecycle
    @classmethod
    def attach(cls, estate: str, root: Path | str | None = None) -> Lab:
        """The lab of an estate as ``up`` left it (for ``down``, ``status``, ``fault``)."""
        lab = cls(estate, root=root)
        state = lab._read_state()
        if state is None:
            raise LabError(f"no lab for estate {estate!r} under {lab.dir}")
        lab.servers = [
            LabServer(
                server_id=s["server_id"], hostname=s["hostname"], role=s.get("role"),
                environment=s.get("environment", "production"),
                data_size_gb=s.get("data_size_gb", 0.0), ports=tuple(s.get("ports", ())),
                dependencies=tuple(LabDependency(**d) for d in s.get("dependencies", ())),
            )
            for s in state["servers"]
        ]
        lab.data_scale_mb = state.get("data_scale_mb", DEFAULT_DATA_SCALE_MB)
        lab.db_backend = state.get("db_backend", "auto")
        lab.ssh_sources = bool(state.get("ssh_sources", False))
        return lab

    def up(self) -> list[Endpoint]:
        """Create whatever is missing, start (or reuse) the service process, write endpoints."""
        if not self.servers:
            raise LabError(f"lab {self.estate}: no servers given")
        self.dir.mkdir(parents=True, exist_ok=True)
        backend, why = self._choose_backend()
        dbs: dict[str, labdb.LabDatabases] = {}
        for server in self.servers:
            src, tgt = self.disk_paths(server.server_id)
            generate_disk(
                DiskSpec(self.estate, server, disk_size_bytes(server.data_size_gb,
                                                              self.data_scale_mb)),
                src,
            )
            tgt.mkdir(parents=True, exist_ok=True)
            if server.is_database:
                try:
                    dbs[server.server_id] = labdb.provision(
                        self.estate, server, backend, self.dir / "db"
                    )
                except Exception as exc:  # driver errors: say which server and backend
                    raise LabError(
                        f"lab {self.estate}: database of {server.server_id} on {backend} "
                        f"({why}): {type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
                    ) from exc
        self._write_state(backend, why, dbs)
        ports = self._ensure_service(dbs)
        if self.ssh_sources:
            self._ensure_sshd()
        endpoints = self._endpoints(dbs, ports)
        write_endpoints_file(self.endpoints_path, self.estate, endpoints)
        return endpoints

    def register_endpoints(self, endpoints: list[Endpoint] | None = None) -> Any:
        """Store the lab's endpoints (``up``'s, by default) as any estate's are registered
        (``endpoints.registry``: same rules, each server's endpoints replaced)."""
        from migrationbox.lab.endpoints import register_lab_endpoints

        return register_lab_endpoints(self.estate, endpoints or self.endpoints())

    def down(self, purge: bool = False) -> dict[str, Any]:
        """Stop the service and SSH process groups; with ``purge`` drop databases and data."""
        self._stop_sshd()
        stopped = self._stop_service()
        dropped: list[str] = []
        if purge:
            state = self._read_state() or {}
            for raw in state.get("databases", {}).values():
                dropped += labdb.drop(labdb.LabDatabases(**raw))
            if self.dir.exists():
                shutil.rmtree(self.dir)
        return {"estate": self.estate, "stopped_pid": stopped, "purged": purge,
                "dropped_databases": dropped}

    def __enter__(self) -> Lab:
        self.up()
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()

    # ----------------------------------------------------------------- state
    def _choose_backend(self) -> tuple[str, str]:
        if self.db_backend in ("postgresql", "sqlite"):
            return self.db_backend, "requested"
        previous = self._read_state()
        if previous and previous.get("databases"):
            return previous["db_backend_used"], "kept from the previous `up`"
        from migrationbox import settings

        forced = settings.get("lab_db")
        if forced:
            return forced, "the lab_db setting"
        ok, why = labdb.postgres_available()
        return ("postgresql", "PostgreSQL reachable") if ok else ("sqlite", f"PostgreSQL: {why}")

    def _read_state(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.state_path.read_text())
        except FileNotFoundError:
            return None

    def _write_state(self, backend: str, why: str, dbs: dict[str, labdb.LabDatabases]) -> None:
        state = {
            "estate": self.estate,
            "data_scale_mb": self.data_scale_mb,
            "db_backend": self.db_backend,
            "db_backend_used": backend,
            "db_backend_reason": why,
            "ssh_sources": self.ssh_sources,
            "servers": [asdict(s) for s in self.servers],
            "databases": {sid: asdict(d) for sid, d in dbs.items()},
        }
        atomic_write_text(self.state_path, json.dumps(state, indent=2, sort_keys=True))

    # --------------------------------------------------------------- service
    def _service_spec(self, dbs: dict[str, labdb.LabDatabases]) -> dict[str, Any]:
        services = []
        for server in self.servers:
            if not server.is_http:
                continue
            db_src, db_tgt = self._dependency_databases(server, dbs)
            for side, db_url in (("source", db_src), ("target", db_tgt)):
                services.append({
                    "name": f"{server.server_id}:{side}",
                    "server_id": server.server_id,
                    "side": side,
                    "hostname": server.hostname,
                    "role": server.role,
                    "database_url": db_url,
                })
        return {"estate": self.estate, "services": services}

    def _dependency_databases(
        self, server: LabServer, dbs: dict[str, labdb.LabDatabases]
    ) -> tuple[str | None, str | None]:
        """The first database this server depends on, at the source and at the target."""
        by_host = {s.hostname.lower(): s.server_id for s in self.servers}
        for dep in server.dependencies:
            sid = by_host.get(dep.hostname.lower())
            if sid in dbs:
                return dbs[sid].source_url, dbs[sid].target_url
        return None, None

    def service_ports(self) -> ServicePorts | None:
        """The running service process's ports, or None when it is not running."""
        try:
            data = json.loads(self.ports_path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None
        ports = ServicePorts(data["pid"], data["pgid"], data["control_port"], data["services"])
        return ports if self._is_our_process(ports.pid) else None

    def _is_our_process(self, pid: int) -> bool:
        """True if ``pid`` is alive and is this lab's service (guards against pid reuse)."""
        import psutil

        try:
            proc = psutil.Process(pid)
            if proc.status() == psutil.STATUS_ZOMBIE:
                return False
            cmd = proc.cmdline()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return False
        return SERVICE_MODULE in cmd and str(self.spec_path) in cmd

    def _ensure_service(self, dbs: dict[str, labdb.LabDatabases]) -> ServicePorts:
        spec = self._service_spec(dbs)
        spec_text = json.dumps(spec, indent=2, sort_keys=True)
        running = self.service_ports()
        if running is not None:
            try:
                same = self.spec_path.read_text() == spec_text
            except FileNotFoundError:
                same = False
            if same:
                return running
            self._stop_service()
        atomic_write_text(self.spec_path, spec_text)
        self.ports_path.unlink(missing_ok=True)
        log = self.log_path.open("ab")
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", SERVICE_MODULE, "--spec", str(self.spec_path),
                 "--ports", str(self.ports_path)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, cwd=str(self.dir),
            )
        finally:
            log.close()
        atomic_write_text(self.pid_path, f"{self._proc.pid}\n")
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                tail = self.log_path.read_text()[-2000:] if self.log_path.exists() else ""
                raise LabError(
                    f"lab service for {self.estate} exited with code {self._proc.returncode}:\n"
                    f"{tail}"
                )
            ports = self.service_ports()
            if ports is not None and ports.pid == self._proc.pid:
                return ports
            time.sleep(0.05)
        self._stop_service()
        raise LabError(f"lab service for {self.estate} did not publish its ports in time")

    def _stop_service(self, timeout: float = 10.0) -> int | None:
        import psutil

        pid: int | None = None
        if self._proc is not None and self._proc.poll() is None:
            pid = self._proc.pid
        else:
            try:
                candidate = int(self.pid_path.read_text().strip())
            except (FileNotFoundError, ValueError):
                candidate = None
            if candidate is not None and self._is_our_process(candidate):
                pid = candidate
        if pid is not None:
            try:
                os.killpg(pid, signal.SIGTERM)  # the service leads its own group
                psutil.Process(pid).wait(timeout=timeout)
            except (ProcessLookupError, psutil.NoSuchProcess):
                pass
            except psutil.TimeoutExpired:
                os.killpg(pid, signal.SIGKILL)
                psutil.Process(pid).wait(timeout=timeout)
        if self._proc is not None:
            self._proc.poll()
            self._proc = None
        self.pid_path.unlink(missing_ok=True)
        self.ports_path.unlink(missing_ok=True)
        return pid

    # ------------------------------------------------------------------ sshd
    @property
    def _sshd_pid_path(self) -> Path:
        return self.dir / "sshd.pid"

    def _ensure_sshd(self) -> Any:
        """Start (or keep) the OpenSSH server that serves the source disks."""
        from migrationbox.lab.sshd import SshServer, SshServerError

        if self._sshd is not None and self._sshd.running:
            return self._sshd
        self._stop_sshd()  # one left by another process: a fresh one, same keys
        self._sshd = SshServer(root=self.sshd_dir)
        try:
            self._sshd.start()
        except SshServerError as exc:
            self._sshd = None
            raise LabError(f"lab {self.estate}: SSH server for the source disks: {exc}") \
                from exc
        atomic_write_text(self._sshd_pid_path, json.dumps(
            {"pid": self._sshd.pid, "port": self._sshd.port,
             "config": str(self._sshd.config_path)}))
        return self._sshd

    def ssh_server(self) -> Any:
        """The running ``SshServer`` of this lab object (``ssh_sources`` labs after ``up``)."""
        if self._sshd is None or not self._sshd.running:
            raise LabError(f"lab {self.estate}: its SSH server is not running in this "
                           "process (start the lab with ssh_sources=True)")
        return self._sshd

    def airflow_env(self) -> dict[str, str]:
        """``{"AIRFLOW_CONN_<ID>": json}``: the lab's SSH connection for the processes
        that replicate (key file and pinned host key; the key itself stays on disk)."""
        server = self.ssh_server()
        return {f"AIRFLOW_CONN_{self.ssh_conn_id.upper()}": server.airflow_connection_json()}

    def airflow_connection_entity(self) -> dict[str, Any]:
        """The same connection as an Airflow REST entity (``PATCH /api/v2/connections``),
        for a running platform whose workers did not inherit ``airflow_env()``."""
        conn = self.ssh_server().airflow_connection()
        return {"connection_id": self.ssh_conn_id, "conn_type": conn["conn_type"],
                "host": conn["host"], "port": conn["port"], "login": conn["login"],
                "extra": json.dumps(conn["extra"])}

    def _stop_sshd(self) -> int | None:
        """Stop the lab's sshd: the one this object runs, else the one ``up`` recorded
        (checked by its command line), with every session process it forked."""
        import psutil

        if self._sshd is not None:
            pid = self._sshd.pid
            self._sshd.stop()  # its folder holds the keys: kept for the next ``up``
            self._sshd = None
            self._sshd_pid_path.unlink(missing_ok=True)
            return pid
        try:
            recorded = json.loads(self._sshd_pid_path.read_text())
        except (FileNotFoundError, ValueError):
            return None
        pid = int(recorded.get("pid") or 0)
        try:
            proc = psutil.Process(pid)
            ours = recorded.get("config") in proc.cmdline()
        except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
            ours = False
        if ours:
            sessions = proc.children(recursive=True)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGTERM)
            for child in sessions:
                with contextlib.suppress(psutil.NoSuchProcess):
                    child.terminate()
            _gone, alive = psutil.wait_procs([proc, *sessions], timeout=10)
            for left in alive:
                with contextlib.suppress(psutil.NoSuchProcess):
                    left.kill()
        self._sshd_pid_path.unlink(missing_ok=True)
        return pid if ours else None

    # ------------------------------------------------------------ endpoints
    def _endpoints(
        self, dbs: dict[str, labdb.LabDatabases], ports: ServicePorts
    ) -> list[Endpoint]:
        out: list[Endpoint] = []
        for server in self.servers:
            common = {
                "hostname": server.hostname,
                "dns_name": target_dns_name(self.estate, server.hostname),
            }
            src, tgt = self.disk_paths(server.server_id)
            if self.ssh_sources:
                sshd = self.ssh_server()
                out.append(Endpoint(
                    server.server_id, "disk", "root",
                    f"ssh://{sshd.host}:{sshd.port}{src.as_posix()}", tgt.as_uri(),
                    {**common, "ssh_conn_id": self.ssh_conn_id,
                     "host_key": sshd.host_public_key}))
            else:
                out.append(Endpoint(server.server_id, "disk", "root", src.as_uri(),
                                    tgt.as_uri(), dict(common)))
            if server.server_id in dbs:
                d = dbs[server.server_id]
                out.append(Endpoint(server.server_id, "database", "app", d.source_url,
                                    d.target_url, {**common, "backend": d.backend}))
            if server.is_http:
                sp = ports.services[f"{server.server_id}:source"]
                tp = ports.services[f"{server.server_id}:target"]
                out.append(Endpoint(
                    server.server_id, "http", "service",
                    f"http://127.0.0.1:{sp}", f"http://127.0.0.1:{tp}",
                    {**common, "control_url": ports.control_url,
                     "source_service": f"{server.server_id}:source",
                     "target_service": f"{server.server_id}:target"},
                ))
        return out

    def endpoints(self) -> list[Endpoint]:
        from migrationbox.lab.endpoints import read_endpoints_file

        return read_endpoints_file(self.endpoints_path)

    # -------------------------------------------------------------- control
    def _control(self) -> ServicePorts:
        ports = self.service_ports()
        if ports is None:
            raise LabError(f"lab service for {self.estate} is not running (run `lab up`)")
        return ports

    def fault(
        self,
        server_id: str,
        health: str,
        side: str = "target",
        latency_ms: int | None = None,
        error_rate: float | None = None,
    ) -> dict[str, Any]:
        """Inject (or clear, ``health='ok'``) a fault into one lab service."""
        import httpx

        body: dict[str, Any] = {"health": health}
        if latency_ms is not None:
            body["latency_ms"] = latency_ms
        if error_rate is not None:
            body["error_rate"] = error_rate
        ports = self._control()
        r = httpx.post(f"{ports.control_url}/services/{server_id}:{side}/fault", json=body,
                       timeout=5.0)
        if r.status_code != 200:
            raise LabError(f"fault {server_id}:{side}: HTTP {r.status_code} {r.text[:300]}")
        return r.json()

    def status(self) -> dict[str, Any]:
        import httpx

        state = self._read_state() or {}
        ports = self.service_ports()
        services: list[dict[str, Any]] = []
        if ports is not None:
            try:
                services = httpx.get(f"{ports.control_url}/services", timeout=5.0).json()
            except httpx.HTTPError as exc:
                services = [{"error": f"control not answering: {exc}"}]
        return {
            "estate": self.estate,
            "dir": str(self.dir),
            "running": ports is not None,
            "pid": ports.pid if ports else None,
            "control_url": ports.control_url if ports else None,
            "db_backend": state.get("db_backend_used"),
            "db_backend_reason": state.get("db_backend_reason"),
            "servers": len(state.get("servers", [])),
            "databases": sorted(state.get("databases", {})),
            "services": services,
        }
