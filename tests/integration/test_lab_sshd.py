"""The lab's OpenSSH server: starts on loopback, key auth only, its host key pinned, and
nothing left running after ``stop`` (sessions included)."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from migrationbox.lab.sshd import SshServer, sshd_available

pytestmark = pytest.mark.integration

_ok, _why = sshd_available()
if not _ok:
    pytest.skip(_why, allow_module_level=True)


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for a parent to reap it has ended)."""
    try:
        return "zombie" not in Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False


def test_key_login_works_and_stop_ends_server_and_sessions() -> None:
    server = SshServer().start()
    try:
        assert server.host == "127.0.0.1" and server.port > 0
        # a session left open while the server stops must not outlive it
        session = subprocess.Popen(
            [*server.ssh_command(), f"{server.user}@{server.host}", "echo up; sleep 300"],
            stdout=subprocess.PIPE, text=True)
        assert session.stdout is not None and session.stdout.readline().strip() == "up"
        master = server.pid
        assert master is not None
        from migrationbox.lab.sshd import _children

        forked = _children(master)
        assert forked, "the open session has sshd processes"
    finally:
        server.stop()
    session.wait(timeout=30)
    assert not _alive(master)
    deadline = time.monotonic() + 30  # a killed process still has to be scheduled to exit
    while [p for p in forked if _alive(p)] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [p for p in forked if _alive(p)]
    assert server.root is None  # its own folder (keys included) is gone


def test_password_and_unknown_keys_are_refused(tmp_path: Path) -> None:
    with SshServer(root=tmp_path / "srv") as server:
        other = tmp_path / "other_key"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)],
                       check=True)
        args = server.ssh_command()
        args[args.index("-i") + 1] = str(other)
        refused = subprocess.run([*args, f"{server.user}@{server.host}", "true"],
                                 capture_output=True, text=True, timeout=60)
        assert refused.returncode == 255
        assert "Permission denied" in refused.stderr


def test_airflow_connection_forms_pin_the_host_key() -> None:
    with SshServer(key_type="rsa") as server:
        conn = json.loads(server.airflow_connection_json())
        assert conn["conn_type"] == "ssh" and conn["port"] == server.port
        assert conn["extra"]["host_key"] == server.host_public_key
        assert conn["extra"]["host_key"].startswith("ssh-ed25519 ")
        assert Path(conn["extra"]["key_file"]) == server.client_key
        inline = server.airflow_connection(inline_key=True)["extra"]
        assert "BEGIN OPENSSH PRIVATE KEY" in inline["private_key"]
        uri = server.airflow_connection_uri()
        assert uri.startswith(f"ssh://{server.user}@127.0.0.1:{server.port}/?")
        old_key = server.host_public_key
        server.restart(new_host_key=True)
        assert server.host_public_key != old_key
        assert server.known_hosts.read_text().split()[-1] == server.host_public_key.split()[1]
