"""Credentials of an endpoint, resolved from Airflow connections at the moment of use.

The store only ever holds connection ids; the key or password is read from the Airflow
connection (metadata database, secrets backend or ``AIRFLOW_CONN_<ID>``) when something
connects, and never copied anywhere else. URLs are shown with the password masked.

SSH: the connection named by ``details.ssh_conn_id`` gives the key (``key_file`` or
``private_key`` extra), the user and the defaults; the endpoint's ``ssh://`` URI
overrides host, port and user, so one connection can serve a whole estate, or each
host can have its own. The host key must be pinned — ``details.host_key`` (per host),
the connection's ``host_key`` extra, or the system's ``known_hosts`` — and a connection
that turns host-key checking off is refused: an unknown or changed key never passes.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from migrationbox.endpoints.model import Endpoint, EndpointError, SshLocation, parse_ssh_uri
from migrationbox.errors import ConfigurationError

if TYPE_CHECKING:
    from airflow.providers.ssh.hooks.ssh import SSHHook
    from sqlalchemy.engine import URL

#: Airflow connection type -> SQLAlchemy driver name (``extra.sqlalchemy_scheme`` wins).
DRIVERS: dict[str, str] = {
    "postgres": "postgresql+psycopg2",
    "postgresql": "postgresql+psycopg2",
    "mysql": "mysql+pymysql",
    "mssql": "mssql+pymssql",
    "oracle": "oracle+oracledb",
    "sqlite": "sqlite",
}
SSH_CONNECT_TIMEOUT_S = 10


class ConnectionMissing(ConfigurationError):
    """An endpoint names an Airflow connection that Airflow does not have."""


def get_connection(conn_id: str, endpoint: Endpoint | None = None, field: str = "") -> Any:
    """The Airflow connection ``conn_id`` (the Task SDK's lookup: any backend, env vars)."""
    from airflow.sdk import Connection

    try:
        return Connection.get(conn_id)
    except Exception as exc:  # AirflowNotFoundException and backend failures alike
        where = f"endpoint {endpoint.label()} {field}: " if endpoint else ""
        raise ConnectionMissing(
            f"{where}Airflow connection {conn_id!r} is not defined ({type(exc).__name__}); "
            f"add it in the Airflow UI, with `airflow connections add`, or as "
            f"AIRFLOW_CONN_{conn_id.upper()}"
        ) from exc


# ----------------------------------------------------------------------------- databases


def connection_url(conn: Any, database: str | None = None) -> URL:
    """A SQLAlchemy URL built from an Airflow connection (the password stays inside)."""
    from sqlalchemy.engine import URL

    extra = dict(conn.extra_dejson or {})
    driver = extra.pop("sqlalchemy_scheme", None) or DRIVERS.get(conn.conn_type or "")
    if not driver:
        raise ConfigurationError(
            f"Airflow connection {conn.conn_id!r}: type {conn.conn_type!r} has no known "
            "SQLAlchemy driver; set extra.sqlalchemy_scheme (e.g. postgresql+psycopg2)"
        )
    if driver == "sqlite":
        return URL.create("sqlite", database=conn.host or conn.schema or None)
    query = {k: str(v) for k, v in extra.items() if isinstance(v, str | int | float | bool)}
    return URL.create(
        driver, username=conn.login or None, password=conn.password or None,
        host=conn.host or None, port=conn.port or None,
        database=database or conn.schema or None, query=query,
    )


def database_url(endpoint: Endpoint, side: str = "source") -> URL:
    """The SQLAlchemy URL of a database endpoint's source or target, resolved now."""
    from sqlalchemy.engine import make_url

    if endpoint.kind != "database":
        raise EndpointError(f"endpoint {endpoint.label()}: not a database endpoint")
    conn_key = "conn_id" if side == "source" else "target_conn_id"
    conn_id = endpoint.details.get(conn_key)
    if conn_id:
        conn = get_connection(conn_id, endpoint, f"details.{conn_key}")
        return connection_url(conn, endpoint.details.get("database"))
    uri = endpoint.source_uri if side == "source" else endpoint.target_uri
    if not uri:
        raise EndpointError(f"endpoint {endpoint.label()}: no {side} (neither "
                            f"details.{conn_key} nor {side}_uri)")
    return make_url(uri)


def shown_url(url: URL | str) -> str:
    """A URL fit for a message or a log: the password replaced by ``***``."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


# ----------------------------------------------------------------------------- ssh


class HostKeyNotPinned(EndpointError):
    """The SSH server's key is not known, so the connection is refused."""


@dataclass(frozen=True)
class SshTarget:
    """Everything needed to open one pinned SSH connection (no secret held here)."""

    location: SshLocation
    conn_id: str
    host_key: str | None  # "ssh-ed25519 AAAA..." from details, if given per host
    known_hosts: str | None = None  # a known_hosts file from details, if given


def ssh_target(uri: str, details: dict[str, Any], *, conn_key: str = "ssh_conn_id",
               label: str = "") -> SshTarget:
    try:
        location = parse_ssh_uri(uri)
    except ValueError as exc:
        raise EndpointError(f"{label or uri}: {exc}") from exc
    conn_id = details.get(conn_key) or details.get("ssh_conn_id")
    if not conn_id:
        raise EndpointError(f"{label or uri}: details.{conn_key} names no Airflow SSH connection")
    key_name = "host_key" if conn_key == "ssh_conn_id" else "target_host_key"
    return SshTarget(location, str(conn_id), details.get(key_name), details.get("known_hosts"))


def _public_key(text: str) -> Any:
    import paramiko

    parts = text.strip().split()
    if len(parts) < 2:
        raise ValueError("host_key must be '<type> <base64>' as in known_hosts")
    key_type, data = parts[0], parts[1]
    return paramiko.PKey.from_type_string(key_type, base64.b64decode(data))


def _known_host_key(path: str, host: str, port: int) -> Any:
    """The key a known_hosts file pins for ``host`` (``[host]:port`` off port 22)."""
    import paramiko

    try:
        keys = paramiko.HostKeys(path)
    except OSError as exc:
        raise HostKeyNotPinned(f"known_hosts file {path}: {exc.strerror or exc}") from exc
    name = host if port == 22 else f"[{host}]:{port}"
    entry = keys.lookup(name)
    if not entry:
        raise HostKeyNotPinned(f"host key of {host}:{port} is not pinned: {path} has no "
                               f"entry for {name}")
    return next(iter(entry.values()))


def ssh_hook(target: SshTarget, *, timeout: int = SSH_CONNECT_TIMEOUT_S,
             retries: int = 1) -> SSHHook:
    """An SSH provider hook for one host, its host key pinned and checking enforced."""
    from airflow.providers.ssh.hooks.ssh import SSHHook

    get_connection(target.conn_id, None)  # a clear message when it is missing
    loc = target.location
    hook = SSHHook(
        ssh_conn_id=target.conn_id, remote_host=loc.host, port=loc.port, username=loc.user,
        conn_timeout=timeout, conn_retry_attempts=retries, no_host_key_check=False,
        keepalive_interval=30, banner_timeout=float(timeout), auth_timeout=timeout,
    )
    if hook.allow_host_key_change:
        raise HostKeyNotPinned(
            f"Airflow connection {target.conn_id!r} sets allow_host_key_change: MigrationBox "
            "refuses to connect without checking the host key; remove that extra"
        )
    if target.host_key:
        try:
            hook.host_key = _public_key(target.host_key)
        except Exception as exc:
            raise EndpointError(f"details.host_key of {loc.address()}: {exc}") from exc
    if hook.host_key is None:
        extra = dict(get_connection(target.conn_id).extra_dejson or {})
        known_hosts = target.known_hosts or extra.get("known_hosts")
        if known_hosts:
            hook.host_key = _known_host_key(str(known_hosts), hook.remote_host, int(hook.port))
    if hook.key_file or hook.pkey:
        hook.look_for_keys = False  # the connection's key, not whatever ~/.ssh holds
    return hook
