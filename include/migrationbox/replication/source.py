"""Where replication reads from: a local folder, or a folder on a server reached over SSH.

Replication is agentless: nothing is installed on a source server. An SSH source is
reached through the Airflow SSH provider's hook (``SSHHook``, paramiko underneath) with
the Airflow connection named by the endpoint's ``details["ssh_conn_id"]`` (key and
defaults live there, never in the store); the URI's user, host and port override the
connection's. Two things cross the wire:

* one remote command, ``python3 -`` fed ``remote_hash.py``, that walks the tree and
  returns the SHA-256 of every block (64 hex characters per block);
* the blocks whose hash differs from the target's manifest, read over SFTP at their
  offsets (pipelined reads).

The host key must be pinned (the endpoint's ``details.host_key``, read as
``endpoints.connections`` reads it, the connection's ``host_key`` extra, a ``known_hosts``
file named in its extra or the endpoint's details, or the worker's ``~/.ssh/known_hosts``);
a connection that turns host key checking off is refused, and a server presenting
another key than the pinned one is refused (paramiko's ``RejectPolicy``), never accepted.

Every error names the endpoint and the server and derives from ``ExternalServiceError``
(the server failed or refused: retry later) or ``InputError``/``ConfigurationError``
(the endpoint or connection is wrong: fix it first).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable
from urllib.parse import unquote, urlparse

from migrationbox.errors import ConfigurationError, ExternalServiceError, InputError
from migrationbox.replication.manifest import FileEntry, Manifest, walk_tree

#: read at most this much per pipelined SFTP request batch (memory bound per batch)
READ_BATCH_BYTES = 32 * 1024 * 1024
#: the largest read OpenSSH's sftp-server answers in one message (256 KiB - 1024); paramiko
#: asks for 32 KiB per request, which costs twice the time on loopback (measured, 256 MiB)
OPENSSH_MAX_READ = 256 * 1024 - 1024


class SourceUriError(InputError):
    """An endpoint's source URI or details cannot name a source (scheme, path, conn id)."""


class SourceUnreachable(ExternalServiceError):
    """The source server did not answer (refused, timed out, unknown name)."""


class SourceAuthRefused(ExternalServiceError):
    """The source server refused the key (or the connection offered none)."""


class HostKeyRefused(ExternalServiceError):
    """The source server's host key is not the pinned one, or no key is pinned for it."""


class SourceConnectionLost(ExternalServiceError):
    """The connection dropped during a round; the next round resumes from the journal."""


class SourceCommandFailed(ExternalServiceError):
    """The remote hashing command failed (no python3 there, an unreadable file, ...)."""


@dataclass
class SourceEntry:
    """One entry of a source tree with its block hashes (computed where the data lives)."""

    rel: str
    type: str  # "dir", "file" or "symlink"
    mode: int
    size: int = 0
    mtime_ns: int = 0
    link: str | None = None
    blocks: list[str] = field(default_factory=list)
    #: the file's size or mtime changed while it was hashed: its hashes are not one state
    unstable: bool = False


class SourceScan:
    """The entries of one scan, streamed: the copy of file k overlaps the hashing of k+1.

    ``ok`` is False when the root is not a directory. ``complete`` turns True only when
    the stream ended with its end marker; a scan cut short raises instead.
    """

    def __init__(self, ok: bool, total_bytes: int, entries: Iterator[SourceEntry],
                 on_close: Callable[[], None] | None = None):
        self.ok = ok
        self.total_bytes = total_bytes
        self._entries = entries
        self._on_close = on_close
        self.complete = False

    def __iter__(self) -> Iterator[SourceEntry]:
        yield from self._entries
        self.complete = True

    def close(self) -> None:
        """Stop the scan (a round that fails half-way must not leave it running remotely)."""
        if self._on_close is not None:
            with contextlib.suppress(Exception):
                self._on_close()
            self._on_close = None


@runtime_checkable
class SourceTree(Protocol):
    """What a replication round needs from a source (see module docstring)."""

    label: str

    def scan(self, block_size: int) -> SourceScan:
        """Walk the tree and hash every block of every file, where the data lives."""
        ...

    def read_blocks(self, rel: str, chunks: list[tuple[int, int]]) -> Iterator[bytes]:
        """The bytes at each ``(offset, length)`` of file ``rel``, in order (a chunk comes
        back short when the file shrank). ``FileNotFoundError`` if the file is gone."""
        ...

    def total_bytes(self) -> int:
        """Bytes in the tree's regular files, from a stat-only walk (no hashing)."""
        ...

    @property
    def wire_bytes(self) -> int:
        """Bytes sent plus received on the network so far (0 for a local folder)."""
        ...

    def close(self) -> None: ...

    def __enter__(self) -> SourceTree: ...

    def __exit__(self, *exc: object) -> None: ...


def scan_manifest(source: SourceTree, block_size: int) -> Manifest:
    """The source's manifest from one scan (hashes computed at the source)."""
    scan = source.scan(block_size)
    if not scan.ok:
        from migrationbox.replication.disk import SourceVanished

        raise SourceVanished(f"{source.label}: the source folder is not a directory "
                             "(unmounted or deleted?)")
    files: dict[str, FileEntry] = {}
    dirs: list[str] = []
    for entry in scan:
        if entry.type == "dir":
            dirs.append(entry.rel)
        elif entry.type == "symlink":
            files[entry.rel] = FileEntry(type="symlink", link=entry.link, mode=entry.mode)
        else:
            files[entry.rel] = FileEntry(size=entry.size, mode=entry.mode, blocks=entry.blocks)
    return Manifest(block_size=block_size, files=files, dirs=dirs).sealed(0)


# ----- local folders -------------------------------------------------------------------------
@dataclass
class LocalTree:
    """A folder on this machine (``file:///abs/path``). Replication uses its one-pass local
    copy for it (``disk.replicate_round`` unwraps ``root``); ``scan``/``read_blocks`` serve
    anything else that wants the generic interface."""

    root: Path
    label: str = ""

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        self.label = self.label or f"file://{self.root}"

    def scan(self, block_size: int) -> SourceScan:
        ok = self.root.is_dir()
        listing = list(walk_tree(self.root)) if ok else []
        total = sum(st.st_size for _, st in listing if stat.S_ISREG(st.st_mode))
        return SourceScan(ok, total, self._entries(listing, block_size))

    def _entries(self, listing: list[tuple[str, os.stat_result]],
                 block_size: int) -> Iterator[SourceEntry]:
        for rel, st in listing:
            path = self.root / rel
            mode = stat.S_IMODE(st.st_mode)
            if stat.S_ISDIR(st.st_mode):
                yield SourceEntry(rel, "dir", mode)
            elif stat.S_ISLNK(st.st_mode):
                try:
                    yield SourceEntry(rel, "symlink", mode, link=os.readlink(path))
                except FileNotFoundError:
                    continue
            elif stat.S_ISREG(st.st_mode):
                try:
                    entry = _hash_local(path, rel, mode, block_size)
                except FileNotFoundError:
                    continue
                yield entry

    def total_bytes(self) -> int:
        return sum(st.st_size for _, st in walk_tree(self.root) if stat.S_ISREG(st.st_mode))

    def read_blocks(self, rel: str, chunks: list[tuple[int, int]]) -> Iterator[bytes]:
        with (self.root / rel).open("rb") as fh:
            for offset, length in chunks:
                fh.seek(offset)
                yield fh.read(length)

    @property
    def wire_bytes(self) -> int:
        return 0

    def close(self) -> None:
        return None

    def __enter__(self) -> LocalTree:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _hash_local(path: Path, rel: str, mode: int, block_size: int) -> SourceEntry:
    with path.open("rb") as fh:
        before = os.fstat(fh.fileno())
        hashes: list[str] = []
        size = 0
        while data := fh.read(block_size):
            size += len(data)
            hashes.append(hashlib.sha256(data).hexdigest())
        after = os.fstat(fh.fileno())
    unstable = (before.st_size, before.st_mtime_ns) != (after.st_size, after.st_mtime_ns) \
        or size != after.st_size
    return SourceEntry(rel, "file", mode, size, after.st_mtime_ns, blocks=hashes,
                       unstable=unstable)


# ----- SSH sources ---------------------------------------------------------------------------
class CountingSocket:
    """A connected TCP socket that counts the bytes it sends and receives: handed to
    paramiko as the transport's socket, it measures what really crossed the network
    (SSH framing, encryption and the hash lists included)."""

    def __init__(self, sock: socket.socket):
        self._sock = sock
        self.sent = 0
        self.received = 0

    def send(self, data: bytes) -> int:
        n = self._sock.send(data)
        self.sent += n
        return n

    def sendall(self, data: bytes) -> None:
        self._sock.sendall(data)
        self.sent += len(data)

    def recv(self, n: int) -> bytes:
        data = self._sock.recv(n)
        self.received += len(data)
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


@dataclass(frozen=True)
class SshTarget:
    """Who to reach, parsed from ``ssh://[user@]host[:port]/abs/path`` (None: from the
    connection)."""

    host: str | None
    port: int | None
    user: str | None
    path: str


def parse_ssh_uri(uri: str, where: str) -> SshTarget:
    parsed = urlparse(uri)
    path = unquote(parsed.path or "")
    if not path.startswith("/") or path == "/":
        raise SourceUriError(f"{where}: source URI {uri!r} must name an absolute folder "
                             "(ssh://[user@]host[:port]/abs/path)")
    try:
        port = parsed.port
    except ValueError as exc:
        raise SourceUriError(f"{where}: source URI {uri!r} has a bad port ({exc})") from None
    return SshTarget(parsed.hostname or None, port, unquote(parsed.username or "") or None,
                     path.rstrip("/") or "/")


class SshTree:
    """A folder on a server reached over SSH (see module docstring).

    One SSH connection serves the round: an exec channel for the hashing command and an
    SFTP channel for the reads. It is opened on first use and re-opened after a drop.
    """

    def __init__(self, uri: str, details: dict[str, Any], name: str | None = None,
                 python: str = "python3"):
        self.uri = uri
        self.details = dict(details)
        where = f"endpoint {name}" if name else f"source {uri}"
        self.conn_id = self.details.get("ssh_conn_id")
        if not self.conn_id or not isinstance(self.conn_id, str):
            raise SourceUriError(f"{where}: details.ssh_conn_id must name the Airflow SSH "
                                 "connection that holds the key for this source")
        self.target = parse_ssh_uri(uri, where)
        self.python = str(self.details.get("python", python))
        #: SFTP reads are pipelined per batch of this many bytes (the memory a batch holds)
        self.read_batch_bytes = READ_BATCH_BYTES
        self.read_timeout_s = float(self.details.get("ssh_read_timeout_s", 120))
        self._hook: Any = None
        self._sftp: Any = None
        self._socket: CountingSocket | None = None
        self._wire_before = 0
        self.server = ""  # "user@host:port", known once the hook resolved the connection
        self.label = f"{where} ({uri})"
        self._hook = self._make_hook(where)
        self.server = f"{self._hook.username}@{self._hook.remote_host}:{self._hook.port}"
        self.label = f"{where} on {self.server} ({self.target.path})"

    # ----- connection ------------------------------------------------------------------------
    def _make_hook(self, where: str) -> Any:
        from airflow.exceptions import AirflowNotFoundException
        from airflow.providers.ssh.hooks.ssh import SSHHook

        try:
            hook = SSHHook(ssh_conn_id=self.conn_id, remote_host=self.target.host or "",
                           username=self.target.user, port=self.target.port,
                           conn_retry_attempts=int(self.details.get("ssh_connect_attempts", 1)),
                           keepalive_interval=15)
        except AirflowNotFoundException:
            raise ConfigurationError(f"{where}: Airflow connection {self.conn_id!r} does not "
                                     "exist (define it, e.g. AIRFLOW_CONN_"
                                     f"{self.conn_id.upper()})") from None
        except Exception as exc:  # the provider raises AirflowException/ValueError for bad extras
            raise ConfigurationError(f"{where}: Airflow connection {self.conn_id!r} cannot "
                                     f"be used: {exc}") from None
        if hook.no_host_key_check or hook.allow_host_key_change:
            raise ConfigurationError(
                f"{where}: Airflow connection {self.conn_id!r} turns host key checking off "
                "(no_host_key_check / allow_host_key_change); MigrationBox only reads sources "
                "whose host key is pinned: set the host_key extra or a known_hosts file")
        pinned = self.details.get("host_key")
        if pinned:  # pinned for this host: wins over a connection shared by many hosts
            from migrationbox.endpoints.connections import _public_key

            try:
                hook.host_key = _public_key(str(pinned))
            except Exception as exc:
                raise SourceUriError(f"{where}: details.host_key: {exc}") from None
        extra = self._conn_extra(hook)
        known_hosts = self.details.get("known_hosts") or extra.get("known_hosts")
        if hook.host_key is None and known_hosts:
            hook.host_key = _pinned_key(Path(str(known_hosts)), hook.remote_host,
                                        int(hook.port), where)
        if hook.conn_timeout is None:
            hook.conn_timeout = int(self.details.get("ssh_timeout_s", 10))
        return hook

    @staticmethod
    def _conn_extra(hook: Any) -> dict[str, Any]:
        try:
            return dict(hook.get_connection(hook.ssh_conn_id).extra_dejson)
        except Exception:  # already resolved once by the hook itself
            return {}

    def _client(self) -> Any:
        hook = self._hook
        if hook.client is not None:
            transport = hook.client.get_transport()
            if transport is not None and transport.is_active():
                return hook.client
            self._drop()
        import paramiko

        where = self.label
        try:
            sock = socket.create_connection((hook.remote_host, int(hook.port)),
                                            timeout=hook.conn_timeout)
        except OSError as exc:
            raise SourceUnreachable(f"{where}: cannot reach the SSH server {self.server}: "
                                    f"{exc.strerror or exc}") from None
        counting = CountingSocket(sock)
        if not hook.host_proxy_cmd:
            hook.__dict__["host_proxy"] = counting  # the hook hands it to paramiko as ``sock``
        try:
            client = hook.get_conn()
        except paramiko.BadHostKeyException as exc:
            sock.close()
            raise HostKeyRefused(
                f"{where}: the SSH server {self.server} presented host key "
                f"{exc.key.get_name()} {exc.key.get_base64()[:24]}..., not the pinned one: "
                "refused. If the server was really re-installed, pin its new key in "
                f"connection {self.conn_id!r}") from None
        except paramiko.AuthenticationException as exc:
            sock.close()
            raise SourceAuthRefused(f"{where}: the SSH server {self.server} refused the key "
                                    f"of connection {self.conn_id!r} ({exc})") from None
        except paramiko.SSHException as exc:
            sock.close()
            text = str(exc)
            if "known_hosts" in text:
                raise HostKeyRefused(
                    f"{where}: no host key is pinned for {self.server}: refused. Set the "
                    f"host_key extra of connection {self.conn_id!r} (or a known_hosts "
                    "file)") from None
            raise SourceUnreachable(f"{where}: SSH with {self.server} failed: {text}") from None
        except OSError as exc:
            sock.close()
            raise SourceUnreachable(f"{where}: SSH with {self.server} failed: "
                                    f"{exc.strerror or exc}") from None
        self._socket = counting if not hook.host_proxy_cmd else None
        return client

    def _sftp_client(self) -> Any:
        client = self._client()
        if self._sftp is None:
            try:
                self._sftp = client.open_sftp()
                # no SFTP answer may be awaited forever (a server that stalls, or a
                # request paramiko would wait on for good): a timeout ends the round
                self._sftp.get_channel().settimeout(self.read_timeout_s)
            except Exception as exc:
                raise SourceConnectionLost(f"{self.label}: SFTP on {self.server} failed: "
                                           f"{exc}") from None
        return self._sftp

    def _drop(self) -> None:
        if self._socket is not None:
            self._wire_before += self._socket.sent + self._socket.received
            self._socket = None
        if self._sftp is not None:
            with contextlib.suppress(Exception):  # the channel may already be dead
                self._sftp.close()
            self._sftp = None
        if self._hook.client is not None:
            with contextlib.suppress(Exception):
                self._hook.client.close()
            self._hook.client = None

    @property
    def wire_bytes(self) -> int:
        live = self._socket.sent + self._socket.received if self._socket is not None else 0
        return self._wire_before + live

    def close(self) -> None:
        self._drop()

    def __enter__(self) -> SshTree:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def check(self) -> dict[str, Any]:
        """Connect, authenticate and ask the source about its folder (for ``endpoints
        check``): ``{"server", "path", "is_dir", "python", "readable"}``."""
        client = self._client()
        cmd = (f"{self.python} -c 'import os,sys,json; p=sys.argv[1]; print(json.dumps("
               "{\"is_dir\": os.path.isdir(p), \"readable\": os.access(p, os.R_OK | os.X_OK),"
               " \"python\": sys.version.split()[0]}))' " + _quote(self.target.path))
        out, err, status = _run(client, cmd, b"", self.label)
        if status != 0:
            raise self._command_error(status, err)
        info = json.loads(out.decode().strip().splitlines()[-1])
        return {"server": self.server, "path": self.target.path, **info}

    def run(self, command: str, timeout_s: float = 60.0) -> tuple[int, str, str]:
        """Run a shell command on the source server over this connection (the live path's
        freeze and thaw): ``(exit status, stdout, stderr)``. A connection that drops or a
        command that outlives ``timeout_s`` raises ``SourceConnectionLost``."""
        client = self._client()
        try:
            _stdin, stdout, stderr = client.exec_command(command, timeout=timeout_s)
            _stdin.channel.shutdown_write()
            out, err = stdout.read(), stderr.read()
            status = stdout.channel.recv_exit_status()
        except Exception as exc:
            self._drop()
            raise SourceConnectionLost(
                f"{self.label}: the command {command!r} on {self.server} did not complete "
                f"({type(exc).__name__}: {exc})") from None
        return status, out.decode(errors="replace"), err.decode(errors="replace")

    # ----- scanning --------------------------------------------------------------------------
    def total_bytes(self) -> int:
        scan = self.scan(1, hash_blocks=False)
        if not scan.ok:
            from migrationbox.replication.disk import SourceVanished

            raise SourceVanished(f"{self.label}: the source folder is not a directory")
        return scan.total_bytes

    def scan(self, block_size: int, hash_blocks: bool = True) -> SourceScan:
        client = self._client()
        script = Path(__file__).with_name("remote_hash.py").read_text()
        params = json.dumps({"root": self.target.path, "block_size": block_size,
                             "hash": hash_blocks})
        program = f"{script}\nmain(json.loads({params!r}))\n".encode()
        try:
            stdin, stdout, stderr = client.exec_command(f"{self.python} -")
            stdin.write(program)
            stdin.flush()
            stdin.channel.shutdown_write()
        except Exception as exc:
            raise self._lost(exc) from None
        lines = self._lines(stdout, stderr)
        head = next(lines, None)
        if head is None or "root" not in head:
            raise self._command_error(stdout.channel.recv_exit_status(), stderr.read())
        channel = stdout.channel
        if not head.get("ok"):
            channel.close()
            return SourceScan(False, 0, iter(()))
        totals = next(lines, None) or {}
        if not hash_blocks:
            channel.close()
            return SourceScan(True, int(totals.get("total_bytes", 0)), iter(()))
        return SourceScan(True, int(totals.get("total_bytes", 0)), self._entries(lines),
                          on_close=channel.close)

    def _lines(self, stdout: Any, stderr: Any) -> Iterator[dict[str, Any]]:
        try:
            for raw in stdout:
                yield json.loads(raw)
        except json.JSONDecodeError as exc:
            raise SourceCommandFailed(f"{self.label}: the hashing command on {self.server} "
                                      f"wrote something unexpected ({exc})") from None
        except Exception as exc:
            raise self._lost(exc) from None

    def _entries(self, lines: Iterator[dict[str, Any]]) -> Iterator[SourceEntry]:
        for rec in lines:
            if rec.get("end"):
                return
            if "error" in rec:
                raise SourceCommandFailed(f"{self.label}: cannot read {rec['rel']} on "
                                          f"{self.server}: {rec['error']}")
            yield SourceEntry(rel=rec["rel"], type=rec["type"], mode=int(rec["mode"]),
                              size=int(rec.get("size", 0)), mtime_ns=int(rec.get("mtime_ns", 0)),
                              link=rec.get("link"), blocks=list(rec.get("blocks", [])),
                              unstable=bool(rec.get("unstable", False)))
        raise SourceConnectionLost(f"{self.label}: the listing from {self.server} was cut "
                                   "short (connection lost?); run the round again")

    def _command_error(self, status: int, err: bytes) -> SourceCommandFailed:
        text = err.decode(errors="replace").strip()[-400:]
        if status == 127:
            return SourceCommandFailed(
                f"{self.label}: {self.python} is not installed on {self.server}; the block "
                "hashes are computed on the source: install Python 3 there (or name another "
                "interpreter in the endpoint's details.python)")
        return SourceCommandFailed(f"{self.label}: the hashing command on {self.server} "
                                   f"failed (exit {status}): {text}")

    def _lost(self, exc: BaseException) -> SourceConnectionLost:
        self._drop()
        return SourceConnectionLost(
            f"{self.label}: the connection to {self.server} was lost during the round "
            f"({type(exc).__name__}: {exc}); run it again: it resumes from its journal")

    # ----- reading ---------------------------------------------------------------------------
    def read_blocks(self, rel: str, chunks: list[tuple[int, int]]) -> Iterator[bytes]:
        sftp = self._sftp_client()
        path = f"{self.target.path.rstrip('/')}/{rel}"
        fh = self._open(sftp, path, rel, prefetch=True)
        try:
            batches: list[list[tuple[int, int]]] = [[]]
            size = 0
            for offset, length in chunks:
                if size >= self.read_batch_bytes:
                    batches.append([])
                    size = 0
                batches[-1].append((offset, length))
                size += length
            for batch in batches:
                got = self._readv(fh, batch)
                if len(got) < len(batch) or any(len(d) < n for d, (_o, n) in zip(got, batch,
                                                                                  strict=False)):
                    # a short chunk: paramiko's prefetch on this handle may now wait
                    # forever for answers that will not come; settle on a fresh handle
                    with contextlib.suppress(Exception):
                        fh.close()
                    fh = self._open(sftp, path, rel, prefetch=False)
                    got = self._settle_short_reads(fh, batch, got)
                yield from got
        finally:
            with contextlib.suppress(Exception):
                fh.close()

    def _open(self, sftp: Any, path: str, rel: str, prefetch: bool) -> Any:
        try:
            fh = sftp.open(path, "rb")
        except FileNotFoundError:
            raise
        except OSError as exc:
            if getattr(exc, "errno", None) == 2:
                raise FileNotFoundError(path) from None
            if not _channel_alive_sftp(sftp):
                raise self._lost(exc) from None
            raise SourceCommandFailed(f"{self.label}: cannot open {rel} on {self.server}: "
                                      f"{exc}") from None
        except Exception as exc:
            raise self._lost(exc) from None
        if prefetch:
            _send_prefetch_requests_inline(fh)
            if "OpenSSH" in str(getattr(sftp.get_channel().get_transport(), "remote_version",
                                        "")):
                # other servers may answer large reads short, which paramiko handles slowly
                fh.MAX_REQUEST_SIZE = OPENSSH_MAX_READ
        return fh

    def _readv(self, fh: Any, batch: list[tuple[int, int]]) -> list[bytes]:
        """The chunks of ``batch`` through paramiko's pipelined ``readv``, up to and
        including the first short one (a file that shrank, or a closed channel, which
        paramiko also reports as a short read)."""
        got: list[bytes] = []
        try:
            for data in fh.readv(batch):
                got.append(data)
                if len(data) < batch[len(got) - 1][1]:
                    break
        except EOFError:
            pass  # told apart from a dead connection by ``_settle_short_reads``
        except Exception as exc:
            raise self._lost(exc) from None
        return got

    def _settle_short_reads(self, fh: Any, batch: list[tuple[int, int]],
                            got: list[bytes]) -> list[bytes]:
        """One round trip on the channel tells a closed connection (raises) from a file
        that shrank; the chunks the file still covers are read again, one request at a
        time, on a handle without prefetch (``fh``)."""
        got = got + [b""] * (len(batch) - len(got))
        if not _channel_alive(fh):
            raise self._lost(EOFError("the SFTP channel closed"))
        try:
            size = fh.stat().st_size
            for i, (offset, length) in enumerate(batch):
                if len(got[i]) < length and offset + len(got[i]) < size:
                    fh.seek(offset)
                    got[i] = fh.read(length)
        except Exception as exc:
            raise self._lost(exc) from None
        return got


def _channel_alive(fh: Any) -> bool:
    return _channel_alive_sftp(fh.sftp)


def _channel_alive_sftp(sftp: Any) -> bool:
    channel = sftp.get_channel()
    if channel is None or channel.closed or channel.eof_received:
        return False
    transport = channel.get_transport()
    return transport is not None and transport.is_active()


def _send_prefetch_requests_inline(fh: Any) -> None:
    """Make ``fh.readv`` send all its read requests before it reads any answer.

    paramiko's ``readv`` sends its requests from a helper thread while the caller already
    reads the answers; when the answers catch up with the requests, it takes the prefetch
    for finished, turns the rest of the reads into one-at-a-time round trips, and the
    requests still coming get answered for nothing (measured: 1.25 bytes on the wire per
    byte read, and 5 times slower, on 256 MiB). Sending them in the calling thread first
    (small packets; the answers wait in the channel's window meanwhile) removes the race;
    everything else is paramiko's own prefetch code.
    """
    def start_prefetch(chunks: list[tuple[int, int]],
                       max_concurrent_requests: int | None = None) -> None:
        fh._prefetching = True
        fh._prefetch_done = False
        fh._prefetch_thread(chunks, max_concurrent_requests)

    fh._start_prefetch = start_prefetch


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\"'\"'") + "'"


def _run(client: Any, cmd: str, data: bytes, where: str) -> tuple[bytes, bytes, int]:
    try:
        stdin, stdout, stderr = client.exec_command(cmd)
        if data:
            stdin.write(data)
        stdin.channel.shutdown_write()
        out, err = stdout.read(), stderr.read()
        return out, err, stdout.channel.recv_exit_status()
    except Exception as exc:
        raise SourceConnectionLost(f"{where}: remote command failed: {exc}") from None


def _pinned_key(path: Path, host: str, port: int, where: str) -> Any:
    import paramiko

    try:
        keys = paramiko.HostKeys(str(path))
    except OSError as exc:
        raise ConfigurationError(f"{where}: known_hosts file {path} cannot be read: "
                                 f"{exc.strerror or exc}") from None
    name = host if port == 22 else f"[{host}]:{port}"
    found = keys.lookup(name)
    if not found:
        raise HostKeyRefused(f"{where}: {path} pins no host key for {name}: refused")
    return next(iter(found.values()))


# ----- one entry point -----------------------------------------------------------------------
def open_source(uri: str, details: dict[str, Any] | None = None,
                name: str | None = None) -> LocalTree | SshTree:
    """The source tree an endpoint's ``source_uri`` names (``file:///abs/path`` or
    ``ssh://[user@]host[:port]/abs/path`` with ``details["ssh_conn_id"]``); ``name`` (the
    endpoint's label) goes into every error message. Use it as a context manager."""
    where = f"endpoint {name}" if name else f"source {uri!r}"
    if not uri or not isinstance(uri, str):
        raise SourceUriError(f"{where}: no source URI")
    parsed = urlparse(uri)
    if parsed.scheme == "file" or (not parsed.scheme and uri.startswith("/")):
        path = unquote(parsed.path if parsed.scheme else uri)
        if parsed.scheme and parsed.netloc not in ("", "localhost"):
            raise SourceUriError(f"{where}: file URI {uri!r} names host {parsed.netloc!r}; "
                                 "a remote folder is ssh://host/abs/path")
        if not path.startswith("/"):
            raise SourceUriError(f"{where}: file URI {uri!r} must be absolute (file:///abs)")
        return LocalTree(Path(path), label=f"{where} ({uri})" if name else "")
    if parsed.scheme == "ssh":
        return SshTree(uri, details or {}, name)
    raise SourceUriError(f"{where}: source URI {uri!r} is neither file:///abs/path nor "
                         "ssh://[user@]host[:port]/abs/path")
