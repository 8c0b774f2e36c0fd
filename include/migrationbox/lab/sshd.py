"""A real OpenSSH server on loopback, for tests and the lab: what SSH sources are tested against.

Why the real ``sshd`` and not an in-process fake (paramiko's server classes): the sources
MigrationBox replicates from are Linux servers running OpenSSH, and the faults that matter
(a refused key, a changed host key, a session killed mid-transfer, the SFTP subsystem,
a remote command's exit status) are the ones OpenSSH produces. Debian's openssh-server is
installed by ``scripts/install-test-deps.sh``.

Each ``SshServer`` has its own folder with its own ``sshd_config``, a host key generated
for it, a client key pair generated for it (key authentication only: passwords and
keyboard-interactive are off) and an ``authorized_keys`` file. ``sshd`` runs in the
foreground (``-D -e``) in its own process group on 127.0.0.1 and a free port; ``stop``
ends it and every session process it forked. As root, ``sshd`` needs its privilege
separation directory (``/run/sshd``), which is created when missing.

The server logs in as the user running it (root here): a non-root ``sshd`` can only
authenticate its own user, and the tests only need one.
"""

from __future__ import annotations

import contextlib
import ctypes
import getpass
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from migrationbox.errors import MigrationBoxError

SSHD = "/usr/sbin/sshd"  # sshd refuses to start from a relative path (it re-executes itself)
SSH_KEYGEN = "ssh-keygen"
PRIVSEP_DIR = Path("/run/sshd")
INSTALL_HINT = "install it with scripts/install-test-deps.sh (Debian package openssh-server)"


class SshServerError(MigrationBoxError, RuntimeError):
    """The test SSH server could not be started; the message says why (and its log)."""


def sshd_available() -> tuple[bool, str]:
    """Whether an OpenSSH server and ``ssh-keygen`` are installed, and why not otherwise."""
    if not os.access(SSHD, os.X_OK):
        return False, f"{SSHD} is not installed: {INSTALL_HINT}"
    if shutil.which(SSH_KEYGEN) is None:
        return False, f"{SSH_KEYGEN} is not installed: {INSTALL_HINT}"
    return True, "ok"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the process that started sshd dies, so a
    test run killed outright (a timeout, kill -9) leaves no listener behind (Linux)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _keygen(path: Path, kind: str, comment: str) -> None:
    path.unlink(missing_ok=True)
    Path(f"{path}.pub").unlink(missing_ok=True)
    args = [SSH_KEYGEN, "-q", "-t", kind, "-N", "", "-C", comment, "-f", str(path)]
    if kind == "rsa":
        args[4:4] = ["-b", "3072"]
    subprocess.run(args, check=True, capture_output=True)


def _children(pid: int) -> list[int]:
    """Every process whose parent chain leads to ``pid`` (sshd's per-connection children
    call ``setsid`` and so leave its process group; they are found through /proc)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat_line = (entry / "stat").read_text()
        except OSError:
            continue
        # the command name may contain spaces and parentheses: the ppid follows the last ')'
        fields = stat_line[stat_line.rfind(")") + 2:].split()
        parents[int(entry.name)] = int(fields[1])
    found: list[int] = []
    frontier = [pid]
    while frontier:
        parent = frontier.pop()
        kids = [child for child, ppid in parents.items() if ppid == parent]
        found += kids
        frontier += kids
    return found


def _signal(pids: list[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


@dataclass
class SshServer:
    """An ``sshd`` on 127.0.0.1 with its own keys; use as a context manager or start/stop.

    ``client_key`` is the private key that may log in as ``user``; ``host_public_key`` is the
    server's key as ``"<type> <base64>"`` (what a connection's ``host_key`` extra pins) and
    ``known_hosts`` a file that pins it for ``ssh``/``rsync``.
    """

    root: Path | None = None
    key_type: str = "ed25519"  # of the client key; "rsa" works too
    host: str = "127.0.0.1"
    user: str = field(default_factory=getpass.getuser)
    port: int = 0
    startup_timeout_s: float = 20.0
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    _own_root: bool = field(default=False, init=False, repr=False)

    # ----- files ---------------------------------------------------------------------------
    @property
    def host_key_path(self) -> Path:
        return self._dir / "ssh_host_ed25519_key"

    @property
    def client_key(self) -> Path:
        return self._dir / f"client_{self.key_type}"

    @property
    def config_path(self) -> Path:
        return self._dir / "sshd_config"

    @property
    def log_path(self) -> Path:
        return self._dir / "sshd.log"

    @property
    def known_hosts(self) -> Path:
        return self._dir / "known_hosts"

    @property
    def host_public_key(self) -> str:
        """``"ssh-ed25519 AAAA..."``: the host key to pin (no comment)."""
        parts = Path(f"{self.host_key_path}.pub").read_text().split()
        return f"{parts[0]} {parts[1]}"

    @property
    def client_public_key(self) -> str:
        return Path(f"{self.client_key}.pub").read_text().strip()

    @property
    def _dir(self) -> Path:
        if self.root is None:
            raise SshServerError("SshServer has no folder yet: call start() first")
        return self.root

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # ----- life cycle ----------------------------------------------------------------------
    def start(self) -> SshServer:
        ok, why = sshd_available()
        if not ok:
            raise SshServerError(why)
        if self.running:
            return self
        if self.root is None:
            self.root = Path(tempfile.mkdtemp(prefix="mbx-sshd-"))
            self._own_root = True
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o700)
        if not self.host_key_path.exists():
            _keygen(self.host_key_path, "ed25519", "migrationbox-test-host")
        if not self.client_key.exists():
            _keygen(self.client_key, self.key_type, "migrationbox-test-client")
        (self._dir / "authorized_keys").write_text(self.client_public_key + "\n")
        if os.geteuid() == 0 and not PRIVSEP_DIR.is_dir():
            PRIVSEP_DIR.mkdir(mode=0o755, parents=True, exist_ok=True)
        last_error = ""
        for _attempt in range(5):  # the free port may be taken between probe and bind
            port = self.port or _free_port()
            self._write_config(port)
            self._write_known_hosts(port)
            log = self.log_path.open("ab")
            try:
                self._proc = subprocess.Popen(
                    [SSHD, "-D", "-e", "-f", str(self.config_path)],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
                    preexec_fn=_die_with_parent)
            finally:
                log.close()
            if self._wait_ready(port):
                self.port = port
                return self
            last_error = self._log_tail()
            self._terminate()
            if self.port:  # a fixed port (a restart) that did not come up: no retry elsewhere
                break
        raise SshServerError(f"sshd did not start on 127.0.0.1 (log {self.log_path}): "
                             f"{last_error}")

    def _write_config(self, port: int) -> None:
        d = self._dir
        self.config_path.write_text("\n".join([
            f"Port {port}",
            f"ListenAddress {self.host}",
            f"HostKey {self.host_key_path}",
            f"PidFile {d / 'sshd.pid'}",
            f"AuthorizedKeysFile {d / 'authorized_keys'}",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PermitRootLogin prohibit-password",
            "UsePAM no",
            # the folder lives under /tmp (world-writable): the modes check would refuse it
            "StrictModes no",
            f"AllowUsers {self.user}",
            "Subsystem sftp internal-sftp",
            "MaxStartups 50:30:100",
            "MaxSessions 20",
            "LogLevel VERBOSE",
            "",
        ]))

    def _write_known_hosts(self, port: int) -> None:
        self.known_hosts.write_text(f"[{self.host}]:{port} {self.host_public_key}\n")

    def _wait_ready(self, port: int) -> bool:
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self._proc is None or self._proc.poll() is not None:
                return False
            try:
                with socket.create_connection((self.host, port), timeout=2) as s:
                    s.settimeout(5)
                    if s.recv(64).startswith(b"SSH-"):
                        return True
            except OSError:
                time.sleep(0.1)
        return False

    def _log_tail(self, lines: int = 5) -> str:
        try:
            return " | ".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def kill_sessions(self, sig: int = signal.SIGKILL) -> int:
        """End every open SSH session (the listener keeps running); how many processes.

        What a dropped network connection looks like to a client mid-transfer.
        """
        if self._proc is None:
            return 0
        pids = _children(self._proc.pid)
        _signal(pids, sig)
        return len(pids)

    def _terminate(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        sessions = _children(proc.pid)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        _signal(sessions, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        _signal([p for p in sessions if Path(f"/proc/{p}").exists()], signal.SIGKILL)

    def restart(self, new_host_key: bool = False) -> SshServer:
        """Stop and start on the same port; ``new_host_key`` regenerates the host key first
        (the server a client pinned now presents another key: a changed host key)."""
        port = self.port
        self._terminate()
        if new_host_key:
            _keygen(self.host_key_path, "ed25519", "migrationbox-test-host")
        self.port = port
        return self.start()

    def stop(self) -> None:
        self._terminate()
        if self._own_root and self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None
            self._own_root = False
            self.port = 0

    def __enter__(self) -> SshServer:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    # ----- how clients reach it ------------------------------------------------------------
    def airflow_connection(self, inline_key: bool = False) -> dict[str, Any]:
        """The Airflow SSH connection (as a dict in Airflow's JSON form) that reaches this
        server: key auth from ``key_file`` (or the key itself as ``private_key``), the host
        key pinned (``host_key``), and no other key tried (``look_for_keys`` false)."""
        extra: dict[str, Any] = {"host_key": self.host_public_key, "look_for_keys": "false",
                                 "conn_timeout": 10}
        if inline_key:
            extra["private_key"] = self.client_key.read_text()
        else:
            extra["key_file"] = str(self.client_key)
        return {"conn_type": "ssh", "host": self.host, "port": self.port, "login": self.user,
                "extra": extra}

    def airflow_connection_json(self, inline_key: bool = False) -> str:
        """For ``AIRFLOW_CONN_<ID>`` (Airflow accepts JSON there)."""
        return json.dumps(self.airflow_connection(inline_key))

    def airflow_connection_uri(self) -> str:
        """The same connection as an Airflow URI (``ssh://user@host:port/?key_file=...``)."""
        conn = self.airflow_connection()
        query = urlencode({k: str(v) for k, v in conn["extra"].items()})
        return f"ssh://{quote(self.user, safe='')}@{self.host}:{self.port}/?{query}"

    def ssh_command(self) -> list[str]:
        """``ssh`` arguments that reach this server with its key and pinned host key
        (for ``rsync -e``); the user and host still have to be added."""
        return ["ssh", "-p", str(self.port), "-i", str(self.client_key),
                "-o", f"UserKnownHostsFile={self.known_hosts}", "-o", "StrictHostKeyChecking=yes",
                "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes"]
