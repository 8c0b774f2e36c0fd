"""Suggest the endpoints of the machine this runs on, as a file a person edits and imports.

``migrationbox discover --local --endpoints`` prints what it finds; it never registers
anything, because only a person knows which Airflow connection holds the key or the
database login, and which filesystems are worth moving. What it proposes:

* one ``disk`` endpoint per real filesystem (``/`` is ``root``; ``/boot`` and files
  bind-mounted by a container runtime are left out), reached over SSH by default;
* one ``database`` endpoint per database server listening on its usual port
  (PostgreSQL 5432, MySQL 3306, SQL Server 1433, Oracle 1521), naming the Airflow
  connection to create in ``details.conn_id``;
* one ``http`` endpoint per listening TCP port that answers HTTP within a short timeout,
  preferring ``/health`` or ``/healthz`` when those answer below 400.

Every suggestion passes the same rules as an import (a test makes sure of it).
"""

from __future__ import annotations

import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

DATABASE_PORTS: dict[int, str] = {5432: "postgresql", 3306: "mysql", 1433: "mssql",
                                  1521: "oracle"}
#: Ports never probed for HTTP: SSH, mail, DNS and the databases above.
NOT_HTTP_PORTS = {22, 25, 53, 111, 587, *DATABASE_PORTS}
SKIPPED_MOUNTS = ("/boot", "/boot/efi")
HEALTH_PATHS = ("/health", "/healthz", "/")
HTTP_PROBE_TIMEOUT_S = 0.5
MAX_HTTP_PROBES = 40

Via = Literal["ssh", "local"]


@dataclass(frozen=True)
class Listener:
    ip: str
    port: int

    @property
    def loopback_only(self) -> bool:
        return self.ip.startswith("127.") or self.ip == "::1"


def _slug(mount: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", mount.lower()).strip("-") or "root"


def disk_suggestions(server_id: str, filesystems: Iterable[dict[str, Any]], *, via: Via,
                     host: str, ssh_user: str, ssh_conn_id: str) -> list[dict[str, Any]]:
    out = []
    for fs in filesystems:
        mount = fs["mount_point"]
        if mount in SKIPPED_MOUNTS or not Path(mount).is_dir():
            continue  # boot is the target image's own; a bind-mounted file is no disk
        details: dict[str, Any] = {"fs_type": fs.get("fs_type"),
                                   "used_gb": fs.get("used_gb"), "size_gb": fs.get("size_gb")}
        if via == "ssh":
            path = mount if mount.startswith("/") else f"/{mount}"
            source = f"ssh://{ssh_user}@{_uri_host(host)}{path}"
            details["ssh_conn_id"] = ssh_conn_id
        else:
            source = Path(mount).as_uri()
        out.append({"server_id": server_id, "kind": "disk",
                    "name": "root" if mount == "/" else _slug(mount),
                    "source_uri": source, "target_uri": None,
                    "details": {k: v for k, v in details.items() if v is not None}})
    return out


def _uri_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def listening_tcp() -> list[Listener]:
    """Listening TCP sockets of this machine, one per port (the widest address wins)."""
    import psutil

    best: dict[int, Listener] = {}
    for conn in psutil.net_connections(kind="tcp"):
        if conn.status != "LISTEN" or not conn.laddr:
            continue
        found = Listener(conn.laddr.ip, conn.laddr.port)
        known = best.get(found.port)
        if known is None or (known.loopback_only and not found.loopback_only):
            best[found.port] = found
    return [best[p] for p in sorted(best)]


def database_suggestions(server_id: str, listeners: Iterable[Listener], host: str
                         ) -> list[dict[str, Any]]:
    out = []
    for item in listeners:
        engine = DATABASE_PORTS.get(item.port)
        if engine is None:
            continue
        details: dict[str, Any] = {
            "conn_id": f"{server_id}_{engine}".replace("-", "_"),
            "engine": engine,
            "host": "127.0.0.1" if item.loopback_only else host,
            "port": item.port,
        }
        if item.loopback_only:
            details["note"] = ("listens on loopback only: reach it through an SSH tunnel "
                               "or from this machine")
        out.append({"server_id": server_id, "kind": "database", "name": engine,
                    "source_uri": None, "target_uri": None, "details": details})
    return out


def _answers_http(ip: str, port: int) -> str | None:
    """The first of HEALTH_PATHS answering below 400 (or ``/`` answering at all)."""
    import httpx

    base = f"http://{_uri_host(ip)}:{port}"
    try:
        with httpx.Client(timeout=HTTP_PROBE_TIMEOUT_S, follow_redirects=False) as client:
            for path in HEALTH_PATHS:
                response = client.get(base + path)
                if response.status_code < 400 or path == "/":
                    return path
    except (httpx.HTTPError, OSError, UnicodeError):
        return None
    return None


def http_suggestions(server_id: str, listeners: Iterable[Listener], host: str
                     ) -> list[dict[str, Any]]:
    out = []
    candidates = [item for item in listeners if item.port not in NOT_HTTP_PORTS]
    for item in candidates[:MAX_HTTP_PROBES]:
        probe_ip = "127.0.0.1" if item.ip in ("0.0.0.0", "127.0.0.1") else (
            "::1" if item.ip in ("::", "::1") else item.ip)
        path = _answers_http(probe_ip, item.port)
        if path is None:
            continue
        shown_host = probe_ip if item.loopback_only else host
        details: dict[str, Any] = {"port": item.port}
        if item.loopback_only:
            details["note"] = "listens on loopback only"
        out.append({"server_id": server_id, "kind": "http", "name": f"port-{item.port}",
                    "source_uri": f"http://{_uri_host(shown_host)}:{item.port}{path}",
                    "target_uri": None, "details": details})
    return out


def suggest_local_endpoints(*, server_id: str | None = None, via: Via = "ssh",
                            ssh_user: str = "root", ssh_conn_id: str | None = None,
                            probe_http: bool = True) -> list[dict[str, Any]]:
    """Endpoint records for this machine, ready to edit and import."""
    from migrationbox.inventory.collector import (
        default_server_id,
        local_addresses,
        local_filesystems,
    )

    sid = server_id or default_server_id(socket.gethostname())
    addresses = local_addresses()
    host = addresses[0] if addresses and via == "ssh" else (
        socket.gethostname() if via == "ssh" else "127.0.0.1")
    listeners = listening_tcp()
    out = disk_suggestions(sid, local_filesystems(), via=via, host=host, ssh_user=ssh_user,
                           ssh_conn_id=ssh_conn_id or f"ssh_{sid}".replace("-", "_"))
    out += database_suggestions(sid, listeners, host)
    if probe_http:
        out += http_suggestions(sid, listeners, host)
    return out
