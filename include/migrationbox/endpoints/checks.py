"""Try each endpoint before a wave needs it, and say per server what is wrong.

Every endpoint goes through the same four steps, in order; once one fails the later
ones are skipped (a login cannot be judged on a host that does not answer):

* ``reachable``: a TCP connection to the host, and for SSH the handshake with the host
  key checked against the pinned key (an unknown or changed key fails here);
* ``authenticated``: key authentication over SSH; the database login;
* ``readable``: the path exists and can be read (over SSH, or locally), its size
  measured with ``du``; a ``SELECT`` on every table the migration will copy (a login
  without rights fails here, naming the tables); a health URL answering below 400;
* ``room``: free space at the target path (``df`` over SSH, or locally) against the
  source's size.

Messages name the server, the endpoint and what to do; no credential is ever in them.
"""

from __future__ import annotations

import shlex
import shutil
import socket
import subprocess
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

from migrationbox.endpoints.connections import (
    ConnectionMissing,
    HostKeyNotPinned,
    database_url,
    shown_url,
    ssh_hook,
    ssh_target,
)
from migrationbox.endpoints.model import Endpoint, EndpointError, file_uri_path
from migrationbox.errors import ConfigurationError

StepName = Literal["reachable", "authenticated", "readable", "room"]
STEPS: tuple[StepName, ...] = ("reachable", "authenticated", "readable", "room")
Status = Literal["ok", "failed", "skipped"]
TCP_TIMEOUT_S = 5.0
COMMAND_TIMEOUT_S = 600.0
DEFAULT_DB_PORTS = {"postgresql": 5432, "mysql": 3306, "mssql": 1433, "oracle": 1521}


@dataclass
class Step:
    name: StepName
    status: Status
    message: str


@dataclass
class EndpointCheck:
    """The outcome of trying one endpoint."""

    server_id: str
    kind: str
    name: str
    source: str  # the source as shown (no password)
    steps: list[Step] = field(default_factory=list)
    source_bytes: int | None = None
    target_free_bytes: int | None = None

    @property
    def ok(self) -> bool:
        return all(s.status != "failed" for s in self.steps)

    def label(self) -> str:
        return f"{self.server_id}/{self.kind}/{self.name}"

    def problems(self) -> list[str]:
        return [f"{s.name}: {s.message}" for s in self.steps if s.status == "failed"]

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


class _Failed(Exception):
    """Stops the steps of one endpoint: ``step`` failed with this message."""

    def __init__(self, step: StepName, message: str):
        super().__init__(message)
        self.step = step
        self.message = message


class _Run:
    """Collects the steps of one endpoint; ``fail`` ends the run, the rest are skipped."""

    def __init__(self, check: EndpointCheck):
        self.check = check

    def ok(self, step: StepName, message: str) -> None:
        self.check.steps.append(Step(step, "ok", message))

    def skip(self, step: StepName, message: str) -> None:
        self.check.steps.append(Step(step, "skipped", message))

    def finish(self, failure: _Failed | None) -> EndpointCheck:
        done = {s.name for s in self.check.steps}
        if failure is not None:
            self.check.steps.append(Step(failure.step, "failed", failure.message))
            done.add(failure.step)
        for name in STEPS:
            if name not in done:
                self.check.steps.append(Step(name, "skipped", f"not tried: {failure.step} failed"
                                             if failure else "not applicable"))
        order = {name: i for i, name in enumerate(STEPS)}
        self.check.steps.sort(key=lambda s: order[s.name])
        return self.check


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:400]


def human_bytes(n: int | None) -> str:
    if n is None:
        return "?"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def tcp_probe(host: str, port: int, timeout: float = TCP_TIMEOUT_S) -> None:
    """Raise ``_Failed('reachable')`` when nothing accepts a TCP connection there."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise _Failed("reachable", f"cannot connect to {host}:{port}: {reason}") from exc


# ----------------------------------------------------------------------------- sizes


def _du_output(rc: int, out: str, err: str, where: str) -> int:
    """Bytes from ``du -sb``; unreadable entries below the path are a failure."""
    denied = [line for line in err.splitlines() if line.strip()]
    if denied:
        raise _Failed("readable", f"{where} is only partly readable ({len(denied)} "
                      f"error(s)), first: {denied[0].removeprefix('du: ')}")
    try:
        return int(out.split()[0])
    except (IndexError, ValueError) as exc:
        raise _Failed("readable", f"{where}: could not measure its size (du exit {rc}: "
                      f"{(err or out).strip()[:200]})") from exc


def _local_size(path: Path) -> int:
    if path.is_block_device():
        with path.open("rb") as fh:
            return fh.seek(0, 2)
    proc = subprocess.run(["du", "-sb", "--", str(path)], capture_output=True, text=True,
                          timeout=COMMAND_TIMEOUT_S, check=False)
    return _du_output(proc.returncode, proc.stdout, proc.stderr, str(path))


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def room_verdict(run: _Run, needed: int, free: int, where: str) -> None:
    """The arithmetic of the room step, shared by local and SSH targets."""
    run.check.target_free_bytes = free
    if free < needed:
        raise _Failed("room", f"target {where} has {human_bytes(free)} free but the source "
                      f"needs {human_bytes(needed)} ({needed - free} bytes short)")
    run.ok("room", f"{human_bytes(free)} free at {where} for {human_bytes(needed)}")


# ----------------------------------------------------------------------------- ssh


class _Ssh:
    """One pinned SSH connection, opened by the ``reachable``/``authenticated`` steps."""

    def __init__(self, uri: str, details: dict[str, Any], label: str,
                 conn_key: str = "ssh_conn_id"):
        self.target = ssh_target(uri, details, conn_key=conn_key, label=label)
        self.label = label
        self.client: Any = None

    def connect(self, run: _Run) -> None:
        import paramiko

        loc = self.target.location
        address = loc.address()
        tcp_probe(loc.host, loc.port or 22)
        try:
            hook = ssh_hook(self.target)
        except (HostKeyNotPinned, ConnectionMissing) as exc:
            raise _Failed("reachable", str(exc)) from exc
        except (EndpointError, ConfigurationError) as exc:
            raise _Failed("authenticated", str(exc)) from exc
        except Exception as exc:  # the provider refusing the connection's extras
            raise _Failed("authenticated", f"Airflow connection {self.target.conn_id!r}: "
                          f"{_first_line(exc)}") from exc
        try:
            self.client = hook.get_conn()
        except paramiko.BadHostKeyException as exc:
            raise _Failed("reachable", (
                f"host key of {address} CHANGED: it offers {exc.key.get_name()} "
                f"{exc.key.fingerprint} but {exc.expected_key.fingerprint} is pinned; "
                "refused. If the server was rebuilt, verify the new key out of band and "
                "update details.host_key (or the connection's host_key extra)")) from exc
        except paramiko.AuthenticationException as exc:
            # paramiko checks the host key before it authenticates: the host passed
            run.ok("reachable", f"{address} answered; its host key matches the pinned one")
            raise _Failed("authenticated", (
                f"{address} refused the key of Airflow connection {self.target.conn_id!r} "
                f"for user {hook.username!r} ({_first_line(exc)})")) from exc
        except paramiko.SSHException as exc:
            text = _first_line(exc)
            if "known_hosts" in text:
                raise _Failed("reachable", (
                    f"host key of {address} is not pinned, so it is refused: set "
                    "details.host_key ('<type> <base64>', from `ssh-keyscan` checked out "
                    "of band), the connection's host_key extra, or known_hosts")) from exc
            raise _Failed("reachable", f"SSH handshake with {address} failed: {text}") from exc
        except OSError as exc:
            raise _Failed("reachable", f"cannot connect to {address}: "
                          f"{exc.strerror or _first_line(exc)}") from exc
        run.ok("reachable", f"{address} answered; host key {self._fingerprint()} matches")
        run.ok("authenticated", f"key accepted for user {hook.username!r} "
               f"(connection {self.target.conn_id!r})")

    def _fingerprint(self) -> str:
        key = self.client.get_transport().get_remote_server_key()
        return f"{key.get_name()} {key.fingerprint}"

    def run(self, command: str, timeout: float = COMMAND_TIMEOUT_S) -> tuple[int, str, str]:
        _stdin, stdout, stderr = self.client.exec_command(command, timeout=timeout)
        out = stdout.read().decode(errors="replace")
        err = stderr.read().decode(errors="replace")
        return stdout.channel.recv_exit_status(), out, err

    def size(self, path: str) -> int:
        q = shlex.quote(path)
        rc, out, err = self.run(
            f"if [ ! -e {q} ]; then echo missing; exit 3; fi; "
            f"if [ ! -r {q} ] || {{ [ -d {q} ] && [ ! -x {q} ]; }}; then "
            "echo unreadable; exit 4; fi; "
            f"if [ -b {q} ]; then blockdev --getsize64 {q}; else du -sb -- {q}; fi")
        where = f"{self.target.location.host}:{path}"
        if rc == 3:
            raise _Failed("readable", f"{where} does not exist")
        if rc == 4:
            raise _Failed("readable", f"{where} exists but user cannot read it")
        return _du_output(rc, out, err, where)

    def free(self, path: str) -> tuple[int, str]:
        q = shlex.quote(path)
        rc, out, err = self.run(
            f"p={q}; while [ ! -e \"$p\" ] && [ \"$p\" != / ]; do p=$(dirname \"$p\"); done; "
            "df -Pk -- \"$p\"")
        lines = out.strip().splitlines()
        try:
            return int(lines[-1].split()[3]) * 1024, lines[-1].split()[-1]
        except (IndexError, ValueError) as exc:
            raise _Failed("room", f"df on {self.target.location.host}:{path} failed "
                          f"(exit {rc}): {(err or out).strip()[:200]}") from exc

    def close(self) -> None:
        if self.client is not None:
            self.client.close()


# ----------------------------------------------------------------------------- disks


def _check_disk(ep: Endpoint, run: _Run) -> None:
    uri = ep.source_uri or ""
    opened: list[_Ssh] = []
    try:
        if uri.startswith("ssh:"):
            src = _Ssh(uri, ep.details, ep.label())
            opened.append(src)
            src.connect(run)
            size = src.size(src.target.location.path)
            where = f"{src.target.location.host}:{src.target.location.path}"
        else:
            path = file_uri_path(uri, ep, "source_uri")
            run.ok("reachable", "local path on the MigrationBox host")
            run.skip("authenticated", "local path, no login")
            if not path.exists():
                raise _Failed("readable", f"{path} does not exist")
            if not _readable(path):
                raise _Failed("readable", f"{path} exists but this user cannot read it")
            size = _local_size(path)
            where = str(path)
        run.check.source_bytes = size
        run.ok("readable", f"{where} readable, {human_bytes(size)}")
        _check_room(ep, run, size, opened)
    finally:
        for conn in opened:
            conn.close()


def _readable(path: Path) -> bool:
    import os

    if path.is_dir():
        return os.access(path, os.R_OK | os.X_OK)
    return os.access(path, os.R_OK)


def _check_room(ep: Endpoint, run: _Run, needed: int, opened: list[_Ssh]) -> None:
    target = ep.target_uri
    if not target:
        run.skip("room", "no target yet (provisioning sets it)")
        return
    if target.startswith("ssh:"):
        tgt = _Ssh(target, ep.details, ep.label(), conn_key="target_ssh_conn_id")
        opened.append(tgt)
        probe = _Run(EndpointCheck(ep.server_id, ep.kind, ep.name, target))
        try:
            tgt.connect(probe)
        except _Failed as exc:
            raise _Failed("room", f"target {target}: {exc.message}") from exc
        free, mount = tgt.free(tgt.target.location.path)
        room_verdict(run, needed, free, f"{tgt.target.location.host}:{mount}")
        return
    path = file_uri_path(target, ep, "target_uri")
    base = _nearest_existing(path)
    room_verdict(run, needed, shutil.disk_usage(base).free, str(base))


# ----------------------------------------------------------------------------- databases


def _check_database(ep: Endpoint, run: _Run) -> None:
    from sqlalchemy import create_engine, inspect, literal, select, table
    from sqlalchemy.exc import SQLAlchemyError

    try:
        url = database_url(ep, "source")
    except (ConfigurationError, EndpointError) as exc:
        raise _Failed("reachable", str(exc)) from exc
    run.check.source = shown_url(url)
    backend = url.get_backend_name()
    connect_args: dict[str, Any] = {}
    if backend == "sqlite":
        db_file = url.database or ""
        if db_file in ("", ":memory:") or not Path(db_file).is_file():
            raise _Failed("reachable", f"no SQLite database file at {db_file or '(none)'}")
        url = url.set(query={**url.query, "mode": "ro"}, database=f"file:{db_file}")
        url = url.update_query_dict({"uri": "true"})
        run.ok("reachable", f"SQLite file {db_file}")
    else:
        host = url.host or "localhost"
        port = url.port or DEFAULT_DB_PORTS.get(backend)
        if port is not None and not host.startswith("/"):
            tcp_probe(host, port)
            run.ok("reachable", f"{host}:{port} accepts connections")
        else:
            run.ok("reachable", "local socket")
        if backend == "postgresql":
            connect_args["connect_timeout"] = int(TCP_TIMEOUT_S)
    engine = create_engine(url, connect_args=connect_args, poolclass=None)
    try:
        try:
            conn = engine.connect()
        except SQLAlchemyError as exc:
            raise _Failed("authenticated", f"login to {shown_url(url)} failed: "
                          f"{_first_line(exc)}") from exc
        with conn:
            user = url.username or "(default user)"
            if backend == "sqlite":
                run.skip("authenticated", "SQLite has no login")
            else:
                run.ok("authenticated", f"logged in as {user!r}")
            wanted = _tables_to_read(ep, conn, inspect)
            if not wanted:
                run.ok("readable", "connected; the database has no tables to copy")
            denied: list[str] = []
            for schema, name in wanted:
                stmt = select(literal(1)).select_from(table(name, schema=schema)).limit(1)
                try:
                    with conn.begin_nested() if backend != "sqlite" else nullcontext():
                        conn.execute(stmt).all()
                except SQLAlchemyError as exc:
                    denied.append(f"{schema + '.' if schema else ''}{name} "
                                  f"({_first_line(exc)})")
            if denied:
                raise _Failed("readable", f"login {user!r} cannot SELECT from "
                              f"{len(denied)} of {len(wanted)} table(s): "
                              + "; ".join(denied[:5])
                              + (f"; ... {len(denied) - 5} more" if len(denied) > 5 else ""))
            if wanted:
                run.ok("readable", f"SELECT works on all {len(wanted)} table(s)")
    finally:
        engine.dispose()
    run.skip("room", "not measured for databases (the cloud's service sizes the target)")


def _tables_to_read(ep: Endpoint, conn: Any, inspect: Callable[[Any], Any]) -> list[
        tuple[str | None, str]]:
    """``details.tables`` (``schema.table`` or ``table``), else every table the login can
    see in ``details.schemas`` (default: the default schema)."""
    listed = ep.details.get("tables")
    if listed:
        out = []
        for item in listed:
            schema, _, name = str(item).rpartition(".")
            out.append((schema or None, name))
        return out
    inspector = inspect(conn)
    schemas = ep.details.get("schemas") or [None]
    return [(schema, name) for schema in schemas for name in inspector.get_table_names(schema)]


# ----------------------------------------------------------------------------- http


def _check_http(ep: Endpoint, run: _Run) -> None:
    import httpx

    url = ep.source_uri or ""
    parsed = urlparse(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    tcp_probe(parsed.hostname or "", port)
    run.ok("reachable", f"{parsed.hostname}:{port} accepts connections")
    run.skip("authenticated", "health URLs are read without credentials")
    try:
        response = httpx.get(url, timeout=TCP_TIMEOUT_S, follow_redirects=True)
    except httpx.HTTPError as exc:
        raise _Failed("readable", f"GET {url} failed: {_first_line(exc)}") from exc
    if response.status_code >= 400:
        raise _Failed("readable", f"GET {url} answered HTTP {response.status_code}")
    run.ok("readable", f"GET {url} answered HTTP {response.status_code}")
    run.skip("room", "not applicable to a service")


# ----------------------------------------------------------------------------- entry points

_CHECKERS: dict[str, Callable[[Endpoint, _Run], None]] = {
    "disk": _check_disk,
    "database": _check_database,
    "http": _check_http,
}


def check_endpoint(ep: Endpoint) -> EndpointCheck:
    """Try one endpoint; never raises for what the endpoint itself gets wrong."""
    shown = ep.source_uri or ""
    if ep.kind == "database" and shown:
        shown = shown_url(shown)
    elif ep.kind == "database":
        shown = f"Airflow connection {ep.details.get('conn_id')!r}"
    run = _Run(EndpointCheck(ep.server_id, ep.kind, ep.name, shown))
    checker = _CHECKERS.get(ep.kind)
    if checker is None:
        return run.finish(_Failed("reachable", f"unknown endpoint kind {ep.kind!r}"))
    try:
        checker(ep, run)
    except _Failed as failure:
        return run.finish(failure)
    except (EndpointError, ConfigurationError, ValueError) as exc:
        return run.finish(_Failed(_next_step(run), str(exc)))
    except Exception as exc:  # a server or driver failing in a way not foreseen above
        return run.finish(_Failed(_next_step(run), f"{type(exc).__name__}: {_first_line(exc)}"))
    return run.finish(None)


def _next_step(run: _Run) -> StepName:
    done = {x.name for x in run.check.steps}
    return next((s for s in STEPS if s not in done), "room")


def check_endpoints(endpoints: Iterable[Endpoint], workers: int = 4) -> list[EndpointCheck]:
    """Try many endpoints a few at a time; results in the order given."""
    items = list(endpoints)
    if not items:
        return []
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(items)))) as pool:
        return list(pool.map(check_endpoint, items))


def render_checks(checks: list[EndpointCheck]) -> list[str]:
    """Lines for a person: per server, what works and what is wrong."""
    lines: list[str] = []
    servers: dict[str, list[EndpointCheck]] = {}
    for c in checks:
        servers.setdefault(c.server_id, []).append(c)
    for server_id, items in servers.items():
        bad = [c for c in items if not c.ok]
        lines.append(f"{server_id}: " + ("ok" if not bad else f"{len(bad)} of {len(items)} "
                                          "endpoint(s) FAILED"))
        for c in items:
            lines.append(f"  {c.kind}/{c.name}  {c.source}  " + ("ok" if c.ok else "FAILED"))
            for s in c.steps:
                if s.status != "skipped" or not c.ok:
                    mark = {"ok": "ok  ", "failed": "FAIL", "skipped": "skip"}[s.status]
                    lines.append(f"    [{mark}] {s.name}: {s.message}")
    failed = sum(1 for c in checks if not c.ok)
    lines.append(f"{len(checks)} endpoint(s) on {len(servers)} server(s): "
                 + ("all ok" if not failed else f"{failed} failed"))
    return lines
