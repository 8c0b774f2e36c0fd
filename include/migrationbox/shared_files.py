"""Files every host must reach: objects under the ``shared_root`` setting, cached per host.

The embedded default keeps everything in the runtime folder of one machine. On a cluster
a file written by a task on one worker (a run report, a healer backup, refreshed prices)
must be readable on another, so with ``shared_root`` set (``s3://bucket/prefix``; the
production profile sets it from ``production_shared_root``) such files are also
**published** as objects under that root, and a host that does not have one (or has an
older copy) **fetches** it into its own folder. Object storage is the truth; the local
folders are each host's cache of it. Without ``shared_root`` nothing here is used and
every caller keeps exactly its local behaviour (:func:`configured` returns ``None``).

Access goes through the project's AWS access only (``cloud.aws_session``: a boto3 client
from the ``aws_default`` Airflow connection, the emulator here, with adaptive retries):
no other S3 library, no credentials of its own.

**Keys** are relative paths below the root (``artifacts/<estate>/wave_01/<run>/x.json``),
checked by :func:`check_key`: segments separated by ``/``, none empty, ``.`` or ``..``,
no backslash or control character, each at most 255 bytes (it becomes a file name in a
host's cache) and the whole object key at most 1024 bytes (S3's limit). A key can
therefore never name a file outside the folder it is cached in.

**Caching** (:meth:`SharedFiles.fetch`): a fetched or published copy is recorded with the
object's ETag and the copy's size and modification time (``<home>/shared-cache/etags``).
A later fetch asks only for the object's ETag (one HEAD, or none when a listing already
gave it) and downloads again only when the object changed or the local copy was changed
or removed. Downloads go to a temporary file renamed into place, so a reader never sees
half a file, and two processes fetching at once both end with a whole copy.

**Errors** are ``MigrationBoxError`` subclasses naming the bucket and key: a bad setting
(:class:`SharedRootError`), a bad key (:class:`SharedKeyError`), a missing object
(:class:`SharedObjectMissing`) and anything object storage refused or could not answer
(:class:`SharedStorageError`; the clients already retried throttling and transient
errors).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from migrationbox.cloud.s3_uri import S3RootError, parse_s3_root
from migrationbox.errors import (
    ConfigurationError,
    ExternalServiceError,
    InputError,
    NotFoundError,
)

log = logging.getLogger("migrationbox.shared_files")

#: S3's limit on an object key, in UTF-8 bytes
MAX_KEY_BYTES = 1024
#: a key segment becomes a file or folder name in a host's cache
MAX_SEGMENT_BYTES = 255
_CHUNK = 1024 * 1024


class SharedRootError(ConfigurationError):
    """The ``shared_root`` setting is not a usable ``s3://bucket/prefix``."""


class SharedKeyError(InputError):
    """A key (a path below the shared root) is not allowed; the message says why."""


class SharedObjectMissing(NotFoundError):
    """The object named (bucket and key) is not in object storage."""


class SharedStorageError(ExternalServiceError):
    """Object storage refused or failed a request; the message names bucket, key and call."""


def check_key(key: str) -> str:
    """``key`` if it is an allowed relative key, else :class:`SharedKeyError` saying why."""
    if not isinstance(key, str):
        raise SharedKeyError(f"shared file key must be a string, got {type(key).__name__}")
    shown = repr(key) if len(key) <= 80 else repr(key[:77] + "...")
    if not key:
        raise SharedKeyError("shared file key is empty")
    if key.startswith("/"):
        raise SharedKeyError(f"shared file key {shown} must be relative (no leading '/')")
    if "\\" in key:
        raise SharedKeyError(f"shared file key {shown} contains a backslash")
    if any(ord(c) < 32 or ord(c) == 127 for c in key):
        raise SharedKeyError(f"shared file key {shown} contains a control character")
    try:
        encoded = key.encode("utf-8")
    except UnicodeEncodeError:
        raise SharedKeyError(f"shared file key {shown} is not valid Unicode (a lone "
                             "surrogate)") from None
    if len(encoded) > MAX_KEY_BYTES:
        raise SharedKeyError(f"shared file key {shown} is {len(encoded)} bytes long; at "
                             f"most {MAX_KEY_BYTES}")
    for segment in key.split("/"):
        if segment in ("", ".", ".."):
            raise SharedKeyError(f"shared file key {shown} has an empty, '.' or '..' "
                                 "segment")
        if len(segment.encode("utf-8")) > MAX_SEGMENT_BYTES:
            raise SharedKeyError(f"shared file key {shown} has a segment longer than "
                                 f"{MAX_SEGMENT_BYTES} bytes")
    return key


def key_of(*parts: str) -> str:
    """The key made of ``parts`` joined with ``/`` (each may hold ``/`` itself), checked."""
    return check_key("/".join(p.strip("/") for p in parts if p.strip("/")))


@dataclass(frozen=True)
class SharedRoot:
    """``s3://bucket/prefix``: where the shared files of this installation live."""

    bucket: str
    prefix: str = ""

    @classmethod
    def parse(cls, text: str) -> SharedRoot:
        try:
            parsed = parse_s3_root(text, what="shared_root")
        except S3RootError as exc:
            raise SharedRootError(str(exc)) from None
        bucket, prefix = parsed.bucket, parsed.prefix
        if prefix:
            try:
                check_key(prefix)
            except SharedKeyError as exc:
                raise SharedRootError(f"shared_root {text!r}: its prefix: {exc}") from None
        return cls(bucket, prefix)

    def object_key(self, key: str) -> str:
        full = f"{self.prefix}/{check_key(key)}" if self.prefix else check_key(key)
        if len(full.encode("utf-8")) > MAX_KEY_BYTES:
            raise SharedKeyError(f"shared file key {key!r} under prefix {self.prefix!r} is "
                                 f"longer than {MAX_KEY_BYTES} bytes")
        return full

    def uri(self, key: str = "") -> str:
        base = f"s3://{self.bucket}" + (f"/{self.prefix}" if self.prefix else "")
        return f"{base}/{key}" if key else base

    def __str__(self) -> str:
        return self.uri()


@dataclass(frozen=True)
class SharedObject:
    """One object below the root: its key relative to the root, ETag, size and date."""

    key: str
    etag: str
    size: int
    last_modified: datetime | None = None


def _etag(raw: Any) -> str:
    return str(raw or "").strip('"')


def _code(exc: BaseException) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def _reason(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]


def _stat(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_size, st.st_mtime_ns


def file_md5(path: Path) -> str:
    """The MD5 of a file, hex: S3's ETag of an object uploaded in one part."""
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


class SharedFiles:
    """Put, get, list and delete objects under one :class:`SharedRoot`, and keep copies
    of them in local folders (a host's cache), through the ``aws_default`` connection.

    ``state_dir`` holds the cache's records (which ETag each local copy holds); default
    ``<home>/shared-cache``. ``client`` is an S3 client to use instead of the
    connection's (tests that want their own).
    """

    def __init__(self, root: SharedRoot | str, *, state_dir: Path | None = None,
                 conn_id: str | None = None, client: Any = None) -> None:
        self.root = root if isinstance(root, SharedRoot) else SharedRoot.parse(root)
        if state_dir is None:
            from migrationbox.config import runtime_dir

            state_dir = runtime_dir() / "shared-cache"
        self.state_dir = Path(state_dir)
        self._conn_id = conn_id
        self._client = client

    # ------------------------------------------------------------------ plumbing
    @property
    def client(self) -> Any:
        if self._client is None:
            from migrationbox.cloud.aws_session import aws_client
            from migrationbox.config import AWS_CONN_ID

            try:
                return aws_client("s3", self._conn_id or AWS_CONN_ID)
            except Exception as exc:  # a connection that cannot be read
                raise SharedStorageError(
                    f"shared files {self.root}: no S3 client from the AWS connection "
                    f"{self._conn_id or AWS_CONN_ID!r}: {_reason(exc)}") from exc
        return self._client

    @contextlib.contextmanager
    def _call(self, what: str, key: str = "") -> Iterator[None]:
        where = f"s3://{self.root.bucket}/{self.root.object_key(key)}" if key else \
            str(self.root)
        try:
            yield
        except (SharedStorageError, SharedObjectMissing, SharedKeyError):
            raise
        except Exception as exc:  # botocore's ClientError, connection errors, ...
            code = _code(exc)
            if code in ("NoSuchBucket",):
                raise SharedStorageError(
                    f"{what} {where}: bucket {self.root.bucket!r} does not exist (create it, "
                    "or fix shared_root)") from exc
            raise SharedStorageError(f"{what} {where}: {_reason(exc)}") from exc

    def _relative(self, object_key: str) -> str:
        return object_key[len(self.root.prefix) + 1:] if self.root.prefix else object_key

    # ------------------------------------------------------------------ objects
    def put_bytes(self, key: str, data: bytes) -> SharedObject:
        """Write ``data`` as object ``key`` (replacing it); its ETag, size and key."""
        full = self.root.object_key(key)
        with self._call("put", key):
            response = self.client.put_object(Bucket=self.root.bucket, Key=full, Body=data)
        return SharedObject(key, _etag(response.get("ETag")), len(data))

    def put_file(self, key: str, path: Path) -> SharedObject:
        """Upload the file ``path`` as object ``key`` (replacing it) and record ``path``
        as this host's copy of it, so that a later :meth:`fetch` into ``path`` does not
        download what this host wrote."""
        path = Path(path)
        full = self.root.object_key(key)
        before = _stat(path)
        if before is None:
            raise SharedStorageError(f"put s3://{self.root.bucket}/{full}: local file "
                                     f"{path} does not exist")
        with self._call("put", key), path.open("rb") as handle:
            response = self.client.put_object(Bucket=self.root.bucket, Key=full,
                                              Body=handle)
        obj = SharedObject(key, _etag(response.get("ETag")), before[0])
        if _stat(path) == before:  # not rewritten meanwhile: the copy is this object
            self._remember(key, path, obj.etag)
        return obj

    def get_bytes(self, key: str) -> bytes:
        """The content of object ``key``; :class:`SharedObjectMissing` if there is none."""
        with self._call("get", key):
            return bytes(self._get_object(self.root.object_key(key))["Body"].read())

    def _get_object(self, full: str) -> Any:
        """``GetObject`` of the full key; :class:`SharedObjectMissing` if there is none
        (inside the caller's ``_call``, which names the key on other errors)."""
        try:
            return self.client.get_object(Bucket=self.root.bucket, Key=full)
        except Exception as exc:
            if _code(exc) in ("NoSuchKey", "404", "NotFound"):
                raise SharedObjectMissing(
                    f"s3://{self.root.bucket}/{full} does not exist") from None
            raise

    def head(self, key: str) -> SharedObject | None:
        """ETag and size of object ``key``, or ``None`` when there is no such object."""
        full = self.root.object_key(key)
        with self._call("head", key):
            try:
                response = self.client.head_object(Bucket=self.root.bucket, Key=full)
            except Exception as exc:
                if _code(exc) in ("404", "NoSuchKey", "NotFound"):
                    return None
                raise
        return SharedObject(key, _etag(response.get("ETag")),
                            int(response.get("ContentLength", 0)),
                            response.get("LastModified"))

    def list(self, prefix: str = "") -> list[SharedObject]:
        """Every object whose key starts with the folder ``prefix`` (``a/b`` lists
        ``a/b/...``; empty: everything under the root), sorted by key."""
        folder = self.root.object_key(prefix) + "/" if prefix else (
            f"{self.root.prefix}/" if self.root.prefix else "")
        found: list[SharedObject] = []
        with self._call("list", prefix):
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.root.bucket, Prefix=folder):
                for item in page.get("Contents", []) or []:
                    found.append(SharedObject(self._relative(str(item["Key"])),
                                              _etag(item.get("ETag")), int(item.get("Size", 0)),
                                              item.get("LastModified")))
        return sorted(found, key=lambda o: o.key)

    def delete(self, key: str) -> None:
        """Delete object ``key``; deleting what is not there is not an error."""
        full = self.root.object_key(key)
        with self._call("delete", key):
            self.client.delete_object(Bucket=self.root.bucket, Key=full)
        self._forget(key)

    def delete_prefix(self, prefix: str) -> int:
        """Delete every object below the folder ``prefix``; how many were deleted."""
        objects = self.list(prefix)
        for start in range(0, len(objects), 1000):
            batch = objects[start:start + 1000]
            with self._call("delete", prefix):
                self.client.delete_objects(Bucket=self.root.bucket, Delete={
                    "Objects": [{"Key": self.root.object_key(o.key)} for o in batch],
                    "Quiet": True})
        return len(objects)

    # ------------------------------------------------------------------ local copies
    def _marker(self, key: str, dest: Path) -> Path:
        ident = f"{self.root.uri(key)}\n{Path(dest).absolute()}"
        return self.state_dir / "etags" / f"{hashlib.sha256(ident.encode()).hexdigest()}.json"

    def _remember(self, key: str, dest: Path, etag: str) -> None:
        from migrationbox.fileio import atomic_write_text

        stat = _stat(dest)
        if stat is None:
            return
        atomic_write_text(self._marker(key, dest), json.dumps({
            "uri": self.root.uri(key), "path": str(Path(dest).absolute()), "etag": etag,
            "size": stat[0], "mtime_ns": stat[1]}))

    def _forget(self, key: str, dest: Path | None = None) -> None:
        if dest is not None:
            self._marker(key, dest).unlink(missing_ok=True)

    def cached_etag(self, key: str, dest: Path) -> str | None:
        """The ETag of the object ``dest`` holds a copy of, when it was fetched or
        published by this host and not changed since; else ``None``."""
        try:
            doc = json.loads(self._marker(key, dest).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(doc, dict) or _stat(Path(dest)) != (doc.get("size"),
                                                               doc.get("mtime_ns")):
            return None
        return str(doc.get("etag") or "") or None

    def fetch(self, key: str, dest: Path, *, known: SharedObject | None = None
              ) -> SharedObject | None:
        """Make ``dest`` a copy of object ``key``: downloaded only when ``dest`` is not
        already a copy of its current version. ``known``: the object as a listing just
        gave it (saves the HEAD). ``None`` (and ``dest`` untouched) when the object does
        not exist."""
        dest = Path(dest)
        current = known if known is not None else self.head(key)
        if current is None:
            return None
        if current.etag and self.cached_etag(key, dest) == current.etag:
            return current
        return self.download(key, dest)

    def download(self, key: str, dest: Path) -> SharedObject:
        """Download object ``key`` into ``dest`` (atomically) whatever ``dest`` holds."""
        dest = Path(dest)
        full = self.root.object_key(key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name[:200]}.", suffix=".part",
                                   dir=dest.parent)
        try:
            with self._call("get", key):
                response = self._get_object(full)
                size = 0
                with os.fdopen(fd, "wb") as handle:
                    for chunk in iter(lambda: response["Body"].read(_CHUNK), b""):
                        handle.write(chunk)
                        size += len(chunk)
                    handle.flush()
                    os.fsync(handle.fileno())
            os.chmod(tmp, 0o644)
            os.replace(tmp, dest)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        obj = SharedObject(key, _etag(response.get("ETag")), size,
                           response.get("LastModified"))
        self._remember(key, dest, obj.etag)
        return obj

    def forget_copy(self, key: str, dest: Path) -> None:
        """Drop this host's record that ``dest`` is a copy of ``key`` (not the file)."""
        self._forget(key, Path(dest))


# ---------------------------------------------------------------------------- folders


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """``{relative posix path: (size, mtime_ns)}`` of every file below ``folder`` (none
    when it does not exist): compared after a task to find what the task wrote."""
    folder = Path(folder)
    if not folder.is_dir():
        return {}
    out: dict[str, tuple[int, int]] = {}
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink():
            stat = _stat(path)
            if stat is not None:
                out[path.relative_to(folder).as_posix()] = stat
    return out


def changed_since(folder: Path, before: dict[str, tuple[int, int]]) -> list[str]:
    """Relative paths of the files below ``folder`` that are new or changed since
    ``before`` (a :func:`snapshot`), skipping temporary files of atomic writes."""
    now = snapshot(folder)
    return sorted(rel for rel, stat in now.items()
                  if before.get(rel) != stat and not _temporary(rel))


def _temporary(rel: str) -> bool:
    name = rel.rsplit("/", 1)[-1]
    return name.endswith((".tmp", ".part", ".partial"))


def publish_files(shared: SharedFiles, folder: Path, relative: Iterable[str],
                  key_prefix: str) -> list[SharedObject]:
    """Upload ``folder/<rel>`` as ``<key_prefix>/<rel>`` for each ``rel`` (replacing the
    objects: publishing again is idempotent); files gone meanwhile are skipped."""
    published: list[SharedObject] = []
    for rel in relative:
        path = Path(folder) / rel
        if not path.is_file():
            continue
        published.append(shared.put_file(key_of(key_prefix, rel), path))
    return published


# ---------------------------------------------------------------------------- setting


def shared_root() -> SharedRoot | None:
    """The ``shared_root`` setting, parsed; ``None`` when unset (local files only)."""
    from migrationbox import settings

    raw = settings.get("shared_root")
    if raw is None or not str(raw).strip():
        return None
    return SharedRoot.parse(str(raw))


def configured() -> SharedFiles | None:
    """A :class:`SharedFiles` for the ``shared_root`` setting, or ``None`` when it is
    unset: the caller then keeps its local-only behaviour. Read on every call (a long
    process may see its environment change; building it costs nothing)."""
    root = shared_root()
    return SharedFiles(root) if root is not None else None
