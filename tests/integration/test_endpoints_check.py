"""``endpoints check`` against real servers: OpenSSH on loopback, PostgreSQL, SQLite, HTTP.

Faults tried for real: an unreachable host, a wrong key, an unpinned and a changed host
key (refused), a missing path (locally and over SSH), a database login without rights,
a login that does not exist, and a target without room (a 1 MiB tmpfs, mounted only
when this runs as root, else skipped with the reason).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from migrationbox.cli import main
from migrationbox.endpoints.checks import EndpointCheck, check_endpoint
from migrationbox.endpoints.model import Endpoint
from migrationbox.lab.sshd import SshServer, sshd_available
from migrationbox.store import repository
from migrationbox.store.db import session_scope
from migrationbox.store.testing import (
    postgres_unavailable_reason,
    temporary_postgres_database,
    tiny_estate,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]


def step(check: EndpointCheck, name: str) -> tuple[str, str]:
    found = next(s for s in check.steps if s.name == name)
    return found.status, found.message


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def tiny_tmpfs(path: Path, size: str = "1m") -> Iterator[Path]:
    """A real filesystem with little room; needs root (mount), else the test skips."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=True)


@pytest.fixture
def tree(tmp_path) -> Path:
    src = tmp_path / "source"
    (src / "etc").mkdir(parents=True)
    (src / "etc" / "app.conf").write_text("port = 8080\n")
    (src / "data.bin").write_bytes(os.urandom(300_000))
    return src


# ----------------------------------------------------------------------------- local disks


def test_local_disk_readable_with_room_and_a_missing_path(tree, tmp_path):
    ok = check_endpoint(Endpoint("web-01", "disk", "root", tree.as_uri(),
                                 (tmp_path / "target" / "web-01").as_uri()))
    assert ok.ok, ok.steps
    assert ok.source_bytes is not None and ok.source_bytes >= 300_000
    assert step(ok, "room")[0] == "ok" and ok.target_free_bytes > ok.source_bytes
    missing = check_endpoint(Endpoint("web-01", "disk", "data", (tmp_path / "nope").as_uri(),
                                      None))
    assert not missing.ok
    assert step(missing, "readable") == ("failed", f"{tmp_path / 'nope'} does not exist")
    assert step(missing, "room")[0] == "skipped"


def test_a_target_without_room_is_reported_with_the_shortfall(tree, tmp_path):
    (tree / "big.bin").write_bytes(os.urandom(1_500_000))  # more than the 1 MiB target
    with tiny_tmpfs(tmp_path / "small") as small:
        check = check_endpoint(Endpoint("web-01", "disk", "root", tree.as_uri(),
                                        (small / "web-01").as_uri()))
        status, message = step(check, "room")
        assert status == "failed" and not check.ok
        assert "free but the source needs" in message and "bytes short" in message
        assert check.target_free_bytes is not None
        assert check.target_free_bytes < check.source_bytes  # the real free space of 1 MiB
        room = check_endpoint(Endpoint("web-01", "disk", "conf", (tree / "etc").as_uri(),
                                       (small / "conf").as_uri()))
        assert room.ok, room.steps


# ----------------------------------------------------------------------------- SSH


@pytest.fixture(scope="module")
def sshd() -> Iterator[SshServer]:
    ok, why = sshd_available()
    if not ok:
        pytest.skip(why)
    with SshServer() as server:
        yield server


@pytest.fixture
def ssh_conn(sshd, monkeypatch) -> str:
    monkeypatch.setenv("AIRFLOW_CONN_SSH_ESTATE", sshd.airflow_connection_json())
    return "ssh_estate"


def ssh_uri(server: SshServer, path: Path | str, port: int | None = None) -> str:
    return f"ssh://{server.user}@127.0.0.1:{port or server.port}{path}"


def test_ssh_source_readable_and_target_room_measured_over_ssh(sshd, ssh_conn, tree, tmp_path):
    ep = Endpoint("db-01", "disk", "root", ssh_uri(sshd, tree),
                  ssh_uri(sshd, tmp_path / "target" / "db-01"), {"ssh_conn_id": ssh_conn})
    check = check_endpoint(ep)
    assert check.ok, check.steps
    assert step(check, "reachable")[1].endswith("matches")
    assert "key accepted" in step(check, "authenticated")[1]
    assert check.source_bytes >= 300_000
    assert "127.0.0.1:" in step(check, "room")[1]  # measured with df over the connection


def test_one_shared_connection_with_a_per_host_override(sshd, tree, monkeypatch):
    """The connection points elsewhere (a closed port); the URI's port wins."""
    shared = sshd.airflow_connection()
    shared["port"] = free_port()
    monkeypatch.setenv("AIRFLOW_CONN_SSH_SHARED", json.dumps(shared))
    check = check_endpoint(Endpoint("a", "disk", "root", ssh_uri(sshd, tree), None,
                                    {"ssh_conn_id": "ssh_shared"}))
    assert check.ok, check.steps


def test_missing_path_over_ssh(sshd, ssh_conn, tmp_path):
    check = check_endpoint(Endpoint("db-01", "disk", "root",
                                    ssh_uri(sshd, tmp_path / "gone"), None,
                                    {"ssh_conn_id": ssh_conn}))
    assert step(check, "authenticated")[0] == "ok"
    assert step(check, "readable") == ("failed", f"127.0.0.1:{tmp_path / 'gone'} does not exist")


def test_unreachable_host(sshd, ssh_conn, tree):
    port = free_port()  # nothing listens there
    check = check_endpoint(Endpoint("db-01", "disk", "root", ssh_uri(sshd, tree, port), None,
                                    {"ssh_conn_id": ssh_conn}))
    status, message = step(check, "reachable")
    assert status == "failed" and f"127.0.0.1:{port}" in message and "cannot connect" in message
    assert [s.status for s in check.steps[1:]] == ["skipped"] * 3


def test_wrong_key_is_an_authentication_failure(sshd, tree, tmp_path, monkeypatch):
    other = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)],
                   check=True)
    conn = sshd.airflow_connection()
    conn["extra"]["key_file"] = str(other)
    monkeypatch.setenv("AIRFLOW_CONN_SSH_WRONG", json.dumps(conn))
    check = check_endpoint(Endpoint("db-01", "disk", "root", ssh_uri(sshd, tree), None,
                                    {"ssh_conn_id": "ssh_wrong"}))
    assert step(check, "reachable")[0] == "ok"
    status, message = step(check, "authenticated")
    assert status == "failed" and "refused the key" in message and "'ssh_wrong'" in message


def test_an_unpinned_host_key_is_refused(sshd, tree, monkeypatch):
    conn = sshd.airflow_connection()
    del conn["extra"]["host_key"]
    monkeypatch.setenv("AIRFLOW_CONN_SSH_UNPINNED", json.dumps(conn))
    check = check_endpoint(Endpoint("db-01", "disk", "root", ssh_uri(sshd, tree), None,
                                    {"ssh_conn_id": "ssh_unpinned"}))
    status, message = step(check, "reachable")
    assert status == "failed" and "not pinned" in message
    # pinning it per host in the endpoint's details is enough
    pinned = check_endpoint(Endpoint("db-01", "disk", "root", ssh_uri(sshd, tree), None,
                                     {"ssh_conn_id": "ssh_unpinned",
                                      "host_key": sshd.host_public_key}))
    assert pinned.ok, pinned.steps
    # or a known_hosts file that has the host
    by_file = check_endpoint(Endpoint("db-01", "disk", "root", ssh_uri(sshd, tree), None,
                                      {"ssh_conn_id": "ssh_unpinned",
                                       "known_hosts": str(sshd.known_hosts)}))
    assert by_file.ok, by_file.steps


def test_a_connection_that_allows_host_key_changes_is_refused(sshd, tree, monkeypatch):
    conn = sshd.airflow_connection()
    conn["extra"]["allow_host_key_change"] = "true"
    monkeypatch.setenv("AIRFLOW_CONN_SSH_LAX", json.dumps(conn))
    check = check_endpoint(Endpoint("db-01", "disk", "root", ssh_uri(sshd, tree), None,
                                    {"ssh_conn_id": "ssh_lax"}))
    status, message = step(check, "reachable")
    assert status == "failed" and "allow_host_key_change" in message


def test_a_changed_host_key_is_refused(tree, monkeypatch, tmp_path):
    ok, why = sshd_available()
    if not ok:
        pytest.skip(why)
    with SshServer(root=tmp_path / "sshd") as server:
        monkeypatch.setenv("AIRFLOW_CONN_SSH_PINNED", server.airflow_connection_json())
        ep = Endpoint("db-01", "disk", "root", ssh_uri(server, tree), None,
                      {"ssh_conn_id": "ssh_pinned"})
        assert check_endpoint(ep).ok
        old_key = server.host_public_key
        server.restart(new_host_key=True)
        assert server.host_public_key != old_key
        check = check_endpoint(ep)
        status, message = step(check, "reachable")
        assert status == "failed" and "CHANGED" in message and "refused" in message
        assert step(check, "authenticated")[0] == "skipped"


def test_an_undefined_ssh_connection_is_named(sshd, tree):
    check = check_endpoint(Endpoint("db-01", "disk", "root", ssh_uri(sshd, tree), None,
                                    {"ssh_conn_id": "no_such_conn_h4"}))
    status, message = step(check, "reachable")
    assert status == "failed" and "'no_such_conn_h4' is not defined" in message
    assert "AIRFLOW_CONN_NO_SUCH_CONN_H4" in message


def test_ssh_target_without_room(sshd, ssh_conn, tree, tmp_path):
    (tree / "big.bin").write_bytes(os.urandom(1_500_000))
    with tiny_tmpfs(tmp_path / "small-remote") as small:
        check = check_endpoint(Endpoint("db-01", "disk", "root", ssh_uri(sshd, tree),
                                        ssh_uri(sshd, small / "db-01"),
                                        {"ssh_conn_id": ssh_conn}))
        status, message = step(check, "room")
        assert status == "failed" and "bytes short" in message
        assert check.target_free_bytes <= 1024 * 1024


# ----------------------------------------------------------------------------- databases


def test_sqlite_readable_and_missing(tmp_path):
    db = tmp_path / "app.sqlite"
    engine = create_engine(f"sqlite:///{db}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE orders (id INTEGER PRIMARY KEY, total REAL)"))
        conn.execute(text("INSERT INTO orders VALUES (1, 9.5)"))
    engine.dispose()
    ok = check_endpoint(Endpoint("db-01", "database", "app", f"sqlite:///{db}", None))
    assert ok.ok and "1 table(s)" in step(ok, "readable")[1]
    gone = tmp_path / "gone.sqlite"
    missing = check_endpoint(Endpoint("db-01", "database", "app", f"sqlite:///{gone}", None))
    assert step(missing, "reachable")[0] == "failed" and not gone.exists()


@pytest.fixture
def pg_role() -> Iterator[str]:
    """A login role with no rights at all; dropped after the database that granted it any."""
    reason = postgres_unavailable_reason()
    if reason:
        pytest.skip(reason)
    from migrationbox.store.testing import postgres_admin_url

    role = f"mbx_norights_{uuid.uuid4().hex[:8]}"
    admin = create_engine(postgres_admin_url(), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE ROLE {role} LOGIN PASSWORD 'Pw-never-shown-77'"))
    try:
        yield role
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"DROP ROLE IF EXISTS {role}"))
        admin.dispose()


@pytest.fixture
def pg_database(pg_role) -> Iterator[str]:
    with temporary_postgres_database("mbx_h4_ep") as url:
        yield url


def test_a_database_login_without_rights_is_reported(pg_database, pg_role, monkeypatch):
    from sqlalchemy.engine import make_url

    role = pg_role
    admin = create_engine(pg_database, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text("CREATE TABLE orders (id int primary key, total numeric)"))
        conn.execute(text("CREATE TABLE customers (id int primary key)"))
        conn.execute(text("GRANT SELECT ON customers TO PUBLIC"))
    url = make_url(pg_database)
    monkeypatch.setenv(f"AIRFLOW_CONN_{role.upper()}", json.dumps({
        "conn_type": "postgres", "host": url.host, "port": url.port or 5432,
        "login": role, "password": "Pw-never-shown-77", "schema": url.database}))
    ep = Endpoint("db-01", "database", "app", None, None, {"conn_id": role})
    try:
        check = check_endpoint(ep)
        assert step(check, "authenticated") == ("ok", f"logged in as {role!r}")
        status, message = step(check, "readable")
        assert status == "failed"
        assert f"login {role!r} cannot SELECT from 1 of 2 table(s): orders" in message
        assert "permission denied" in message
        assert "Pw-never-shown-77" not in json.dumps(check.to_dict())
        with admin.connect() as conn:
            conn.execute(text(f"GRANT SELECT ON orders TO {role}"))
        assert check_endpoint(ep).ok
        named = check_endpoint(Endpoint("db-01", "database", "app", None, None,
                                        {"conn_id": role, "tables": ["public.orders"]}))
        assert "all 1 table(s)" in step(named, "readable")[1]
        monkeypatch.setenv("AIRFLOW_CONN_GHOST_LOGIN", json.dumps({
            "conn_type": "postgres", "host": url.host, "port": url.port or 5432,
            "login": "ghost_h4_nobody", "password": "x", "schema": url.database}))
        refused = check_endpoint(Endpoint("db-01", "database", "app", None, None,
                                          {"conn_id": "ghost_login"}))
        status, message = step(refused, "authenticated")
        assert status == "failed" and "ghost_h4_nobody" in message
    finally:
        admin.dispose()


# ----------------------------------------------------------------------------- http


class _Health(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        code = 200 if self.path == "/health" else 503
        self.send_response(code)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *_args: object) -> None:
        return


@pytest.fixture
def http_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_http_health_urls(http_server):
    assert check_endpoint(Endpoint("web-01", "http", "service", f"{http_server}/health",
                                   None)).ok
    bad = check_endpoint(Endpoint("web-01", "http", "service", f"{http_server}/down", None))
    assert step(bad, "readable") == ("failed", f"GET {http_server}/down answered HTTP 503")
    port = free_port()
    dead = check_endpoint(Endpoint("web-01", "http", "service",
                                   f"http://127.0.0.1:{port}/health", None))
    assert step(dead, "reachable")[0] == "failed"


# ----------------------------------------------------------------------------- CLI and API


def test_cli_and_api_check_say_per_server_what_is_wrong(tree, tmp_path, monkeypatch, capsys,
                                                         http_server):
    monkeypatch.setenv("MIGRATIONBOX_STORE_URL", f"sqlite:///{tmp_path / 'store.db'}")
    with session_scope() as s:
        repository.save_estate(s, tiny_estate())
    endpoints_file = tmp_path / "endpoints.json"
    endpoints_file.write_text(json.dumps({"estate": "tiny", "endpoints": [
        {"server_id": "web-01", "kind": "disk", "source_uri": tree.as_uri(),
         "target_uri": (tmp_path / "tgt").as_uri()},
        {"server_id": "web-01", "kind": "http", "source_uri": f"{http_server}/health"},
        {"server_id": "db-01", "kind": "disk", "source_uri": (tmp_path / "missing").as_uri()},
    ]}))
    assert main(["endpoints", "import", str(endpoints_file), "--estate", "tiny"]) == 0
    capsys.readouterr()
    assert main(["endpoints", "check", "--estate", "tiny"]) == 1
    out = capsys.readouterr().out
    assert "db-01: 1 of 1 endpoint(s) FAILED" in out
    assert "[FAIL] readable:" in out and "missing does not exist" in out
    assert "web-01: ok" in out
    assert main(["endpoints", "check", "--estate", "tiny", "--server", "web-01"]) == 0
    capsys.readouterr()
    assert main(["endpoints", "check", "--estate", "tiny", "--json"]) == 1
    body = json.loads(capsys.readouterr().out)
    assert body["ok"] is False and len(body["endpoints"]) == 3
    assert main(["endpoints", "check", "--estate", "tiny", "--server", "dns-01"]) == 2

    from migrationbox.api.app import build_app

    client = TestClient(build_app())
    checked = client.get("/estates/tiny/endpoints/check").json()
    assert checked["ok"] is False
    assert {(e["server_id"], e["ok"]) for e in checked["endpoints"]} == {
        ("web-01", True), ("db-01", False)}
    assert client.get("/estates/tiny/endpoints/check",
                      params={"server": "web-01"}).json()["ok"] is True


# ----------------------------------------------------------------------------- the lab


def test_the_lab_registers_through_the_domain_path_and_its_endpoints_pass(tmp_path,
                                                                          monkeypatch):
    from migrationbox.endpoints.checks import check_endpoints
    from migrationbox.lab.endpoints import register_lab_endpoints
    from migrationbox.lab.lab import Lab
    from migrationbox.lab.testing import tiny_plan

    monkeypatch.setenv("MIGRATIONBOX_STORE_URL", f"sqlite:///{tmp_path / 'store.db'}")
    estate = f"lab{uuid.uuid4().hex[:8]}"
    plan = tiny_plan(estate)
    with session_scope() as s:
        repository.save_estate(s, tiny_estate(estate, tuple(p.server_id for p in plan.servers)))
    lab = Lab(estate, plan, root=tmp_path / "lab", data_scale_mb=1.0)
    try:
        endpoints = lab.up()
        report = register_lab_endpoints(estate, endpoints)
        assert sorted(report.stored_servers) == sorted({e.server_id for e in endpoints})
        with session_scope(read_only=True) as s:
            stored = repository.endpoints(s, estate)
        assert len(stored) == len(endpoints)
        checks = check_endpoints([Endpoint(e.server_id, e.kind, e.name, e.source_uri,
                                           e.target_uri, e.details) for e in stored])
        failed = {c.label(): c.problems() for c in checks if not c.ok}
        assert not failed
    finally:
        lab.down(purge=True)
