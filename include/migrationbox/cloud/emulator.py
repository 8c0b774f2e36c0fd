"""The local AWS emulator: a real moto server process on loopback.

The embedded default (``make demo``, ``make up``, the integration tests) reaches "AWS"
through the ordinary ``aws_default`` Airflow connection whose ``endpoint_url`` points
here. The emulator is a separate process in its own process group so that stopping it
(``os.killpg``) never leaves an orphan, and so that phase code exercises the same HTTP
path it would against the real cloud.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx

from migrationbox.errors import ExternalServiceError

LOOPBACK = "127.0.0.1"


def _reap(pid: int) -> None:
    """Collect the exit status if ``pid`` is our child (so it does not linger as a zombie)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def _listening(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


EXTRA_IMAGES = Path(__file__).with_name("emulator_images.json")


def write_image_catalogue(path: Path) -> Path:
    """moto's own AMI catalogue (its ``amis.json`` and every region's ``latest_amis``,
    so the SSM "latest Amazon Linux" parameters still resolve) plus ``EXTRA_IMAGES``,
    as one ``MOTO_AMIS_PATH`` file. moto reads only that file when the variable is set."""
    from importlib import resources

    from moto.utilities.utils import load_resource

    amis: dict[str, dict[str, Any]] = {}
    for ami in load_resource("ec2/resources/amis.json"):
        amis[ami["ami_id"]] = ami
    latest = resources.files("moto") / "ec2" / "resources" / "latest_amis"
    for entry in sorted(latest.iterdir(), key=lambda e: e.name):
        name = entry.name.removesuffix(".gz")
        for ami in load_resource(f"ec2/resources/latest_amis/{name}"):
            amis.setdefault(ami["ami_id"], ami)
    for ami in json.loads(EXTRA_IMAGES.read_text(encoding="utf-8"))["images"]:
        amis[ami["ami_id"]] = ami
    path.write_text(json.dumps(list(amis.values())), encoding="utf-8")
    return path


def image_catalogue() -> Path:
    """The catalogue file for this moto version and ``EXTRA_IMAGES``, written once.

    moto reads ``MOTO_AMIS_PATH`` when its EC2 backend first loads (the first EC2 call,
    possibly long after start), so the file must outlive any one ``EmulatorProcess``
    object: it lives in the temp folder under a name derived from its inputs, and is
    written atomically so that emulators starting at once never read half a file.
    """
    import hashlib

    import moto

    digest = hashlib.sha256(EXTRA_IMAGES.read_bytes() + moto.__version__.encode()
                            ).hexdigest()[:16]
    path = Path(tempfile.gettempdir()) / f"migrationbox-moto-amis-{digest}.json"
    if not path.exists():
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        write_image_catalogue(tmp)
        os.replace(tmp, path)
    return path


class EmulatorError(ExternalServiceError):
    """The emulator could not be started, reached or reset."""


def free_port(host: str = LOOPBACK) -> int:
    """A port that was free on ``host`` a moment ago (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass
class EmulatorProcess:
    """Start, probe, reset and stop one moto server.

    ``port=None`` picks a free port at start time (retrying if another process grabs
    it first). ``log_path`` receives the server's stdout and stderr; without it the
    output is discarded.
    """

    port: int | None = None
    host: str = LOOPBACK
    log_path: Path | str | None = None
    startup_timeout: float = 30.0
    #: seed the catalogue with ``EXTRA_IMAGES`` (current Ubuntu, Debian, RHEL, Windows
    #: Server with and without SQL Server) besides moto's own images
    extra_images: bool = True
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    _log: IO[bytes] | None = field(default=None, init=False, repr=False)

    @property
    def url(self) -> str:
        if self.port is None:
            raise EmulatorError("emulator has no port yet: call start() first")
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> EmulatorProcess:
        """Start the server and return once it answers HTTP; idempotent."""
        if self.is_running():
            return self
        fixed = self.port is not None
        attempts = 1 if fixed else 3
        last_error = ""
        for _ in range(attempts):
            if not fixed:
                self.port = free_port(self.host)
            if _listening(self.host, int(self.port or 0)):
                # Someone else answers there: waiting would mistake it for our server.
                last_error = f"port {self.port} is already in use"
                continue
            self._spawn()
            try:
                self._wait_ready()
                return self
            except EmulatorError as exc:
                last_error = str(exc)
                self._kill()
        raise EmulatorError(f"moto server did not start on {self.host}: {last_error}")

    def _spawn(self) -> None:
        # moto's server with GetMetricData indexed by metric (emulator_server says why)
        cmd = [sys.executable, "-m", "migrationbox.cloud.emulator_server", "-H", self.host,
               "-p", str(self.port)]
        if self.log_path is not None:
            path = Path(self.log_path)
            path.parent.mkdir(parents=True, exist_ok=True)
            self._log = path.open("ab")
            out: Any = self._log
        else:
            out = subprocess.DEVNULL
        env = dict(os.environ)
        # The server must never try real AWS for anything it proxies.
        env.setdefault("AWS_ACCESS_KEY_ID", "testing")
        env.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
        if self.extra_images:
            env["MOTO_AMIS_PATH"] = str(image_catalogue())
        self._proc = subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._proc is None or self._proc.poll() is not None:
                code = self._proc.returncode if self._proc else None
                raise EmulatorError(f"process exited with code {code} (port {self.port} busy?)")
            try:
                response = httpx.get(f"{self.url}/moto-api/data.json", timeout=1.0)
                if response.status_code < 500:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise EmulatorError(f"no answer on {self.url} within {self.startup_timeout:.0f}s")

    def reset(self) -> None:
        """Forget every emulated resource (moto's ``/moto-api/reset``)."""
        if not self.is_running():
            raise EmulatorError("cannot reset: emulator is not running")
        response = httpx.post(f"{self.url}/moto-api/reset", timeout=10.0)
        if response.status_code != 200:
            raise EmulatorError(f"reset failed: HTTP {response.status_code} {response.text[:200]}")

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the whole process group: TERM, then KILL after ``timeout``; idempotent."""
        self._kill(timeout)

    def _kill(self, timeout: float = 10.0) -> None:
        proc = self._proc
        if proc is not None and proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=timeout)
            except ProcessLookupError:
                pass
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=timeout)
        self._proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    @staticmethod
    def stop_group(pid: int, timeout: float = 10.0) -> bool:
        """Stop the process group led by ``pid`` (e.g. from a pid file written by ``make up``).

        For a supervisor that outlives no ``EmulatorProcess`` object: TERM, then KILL
        after ``timeout``. Returns False when no such group exists.
        """
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            return False
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                os.killpg(pid, 0)
            except ProcessLookupError:
                return True
            _reap(pid)
            time.sleep(0.1)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        _reap(pid)
        return True

    def airflow_connection(self, region: str = "us-east-1") -> str:
        """The ``AIRFLOW_CONN_AWS_DEFAULT`` JSON value that points the AWS hook here."""
        return json.dumps(
            {
                "conn_type": "aws",
                "login": "testing",
                "password": "testing",
                "extra": {"region_name": region, "endpoint_url": self.url},
            }
        )

    def __enter__(self) -> EmulatorProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
