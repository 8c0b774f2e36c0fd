"""``discover --local --endpoints``: what this machine offers, as an importable file."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from migrationbox.cli import main
from migrationbox.endpoints.registry import RawEndpoint, validate_records
from migrationbox.endpoints.suggest import (
    Listener,
    database_suggestions,
    disk_suggestions,
    listening_tcp,
    suggest_local_endpoints,
)
from migrationbox.store import repository
from migrationbox.store.db import session_scope
from migrationbox.store.testing import postgres_unavailable_reason, tiny_estate


class _Health(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/health" else 404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_args: object) -> None:
        return


@pytest.fixture
def http_port() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def assert_importable(records: list[dict]) -> None:
    report = validate_records("any", [RawEndpoint(i, r) for i, r in enumerate(records)],
                              "suggestions", None)
    assert report.ok, report.issue_lines()


def test_disks_skip_boot_and_bind_mounted_files():
    filesystems = [
        {"mount_point": "/", "fs_type": "ext4", "size_gb": 50, "used_gb": 20},
        {"mount_point": "/boot", "fs_type": "ext4", "size_gb": 1, "used_gb": 0.2},
        {"mount_point": "/etc/hostname", "fs_type": "ext4", "size_gb": 50, "used_gb": 20},
        {"mount_point": "/tmp", "fs_type": "xfs", "size_gb": 10, "used_gb": 1},
    ]
    ssh = disk_suggestions("app-01", filesystems, via="ssh", host="10.1.2.3",
                           ssh_user="migrate", ssh_conn_id="ssh_app_01")
    assert [(d["name"], d["source_uri"]) for d in ssh] == [
        ("root", "ssh://migrate@10.1.2.3/"), ("tmp", "ssh://migrate@10.1.2.3/tmp")]
    assert all(d["details"]["ssh_conn_id"] == "ssh_app_01" for d in ssh)
    local = disk_suggestions("app-01", filesystems, via="local", host="x", ssh_user="u",
                             ssh_conn_id="c")
    assert [d["source_uri"] for d in local] == ["file:///", "file:///tmp"]
    v6 = disk_suggestions("a", filesystems[:1], via="ssh", host="fd00::2", ssh_user="u",
                          ssh_conn_id="c")
    assert v6[0]["source_uri"] == "ssh://u@[fd00::2]/"
    for records in (ssh, local, v6):
        assert_importable(records)


def test_databases_name_the_connection_to_create():
    found = database_suggestions("db-01", [Listener("0.0.0.0", 5432),
                                           Listener("127.0.0.1", 3306),
                                           Listener("0.0.0.0", 8080)], "10.0.0.5")
    assert [(d["name"], d["details"]["conn_id"], d["details"]["host"]) for d in found] == [
        ("postgresql", "db_01_postgresql", "10.0.0.5"), ("mysql", "db_01_mysql", "127.0.0.1")]
    assert "loopback" in found[1]["details"]["note"]
    assert_importable(found)


def test_this_machine_listening_services_are_suggested(http_port):
    assert any(item.port == http_port for item in listening_tcp())
    records = suggest_local_endpoints(server_id="here-01", via="local")
    http = [r for r in records if r["kind"] == "http" and r["details"]["port"] == http_port]
    assert http and http[0]["source_uri"] == f"http://127.0.0.1:{http_port}/health"
    assert any(r["kind"] == "disk" and r["name"] == "root" for r in records)
    if postgres_unavailable_reason() is None:
        assert any(r["kind"] == "database" and r["details"]["port"] == 5432 for r in records)
    assert_importable(records)
    assert {r["server_id"] for r in records} == {"here-01"}


def test_discover_prints_a_file_that_imports_and_registers_nothing(tmp_path, monkeypatch,
                                                                    capsys):
    monkeypatch.setenv("MIGRATIONBOX_STORE_URL", f"sqlite:///{tmp_path / 'store.db'}")
    with session_scope() as s:
        repository.save_estate(s, tiny_estate())
    out = tmp_path / "mine.json"
    assert main(["discover", "--local", "--endpoints", "--server-id", "web-01",
                 "--no-http-probe", "-o", str(out)]) == 0
    assert "endpoints import" in capsys.readouterr().err
    with session_scope(read_only=True) as s:
        assert repository.endpoints(s, "tiny") == []  # suggested, never registered
    data = json.loads(out.read_text())
    assert data["endpoints"] and all(e["kind"] != "http" for e in data["endpoints"])
    assert main(["endpoints", "import", str(out), "--estate", "tiny"]) == 0
    with session_scope(read_only=True) as s:
        assert len(repository.endpoints(s, "tiny", "web-01")) == len(data["endpoints"])
