"""What an endpoint is: where one server's data or service lives, at the source and target.

Phases never know whether they run against the local lab or a customer's estate: they
only read endpoints. Each endpoint names one server, one kind and a source and a target:

* ``disk``: a file tree or disk image. Source ``file:///abs/path`` (reachable from the
  MigrationBox host) or ``ssh://[user@]host[:port]/abs/path`` with ``details.ssh_conn_id``
  naming the Airflow SSH connection that holds the key (one connection shared by many
  hosts, the URI overriding host, port and user, or one connection per host). The host
  key is pinned (``details.host_key``, the connection's ``host_key`` extra, or
  ``known_hosts``); an unknown or changed key is refused, never accepted.
* ``database``: ``details.conn_id`` names an Airflow connection resolved to a SQLAlchemy
  URL only when it is used, or ``source_uri`` is a SQLAlchemy URL without a password
  (SQLite files, peer/trust-authenticated servers). The same holds for the target
  (``details.target_conn_id`` or ``target_uri``).
* ``http``: a health URL (``http://host:port/path``).

Two shapes: :class:`EndpointModel` reads what the store, the run options and the lab's
file hold (shape only), and :class:`EndpointSpec` is what a person registers, with every
rule above checked and a credential anywhere in it refused, so that no secret reaches
the store or a log.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Literal
from urllib.parse import unquote, urlparse

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from migrationbox.errors import InputError, NotFoundError

EndpointKindName = Literal["disk", "database", "http"]
KINDS: tuple[str, ...] = ("disk", "database", "http")
#: The name an endpoint gets when a registration leaves it out (the lab's names).
DEFAULT_NAMES: dict[str, str] = {"disk": "root", "database": "app", "http": "service"}
#: Keys of ``details`` that would hold a secret: secrets live in Airflow connections.
SECRET_KEY = re.compile(r"pass(word|phrase)?|secret|token|private_?key|api_?key|credential",
                        re.IGNORECASE)


class EndpointsUnavailable(NotFoundError):
    """No endpoints could be found for an estate (lab not started, store empty)."""


class EndpointError(InputError):
    """An endpoint is malformed or cannot be used; the message names server and field."""


@dataclass(frozen=True)
class Endpoint:
    server_id: str
    kind: str
    name: str
    source_uri: str | None
    target_uri: str | None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def source_path(self) -> Path:
        return file_uri_path(self.source_uri, self, "source_uri")

    @property
    def target_path(self) -> Path:
        return file_uri_path(self.target_uri, self, "target_uri")

    def label(self) -> str:
        return f"{self.server_id}/{self.kind}/{self.name}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class EndpointModel(BaseModel):
    """Boundary shape of one stored endpoint (JSON file, run options, store rows).

    Extra keys are ignored because the store's rows carry ids and timestamps that phases
    have no use for.
    """

    model_config = ConfigDict(extra="ignore")

    server_id: str = Field(min_length=1)
    kind: EndpointKindName
    name: str = Field(min_length=1)
    source_uri: str | None = None
    target_uri: str | None = None
    details: dict[str, Any] = Field(default_factory=dict)

    def to_endpoint(self) -> Endpoint:
        return Endpoint(
            server_id=self.server_id,
            kind=self.kind,
            name=self.name,
            source_uri=self.source_uri,
            target_uri=self.target_uri,
            details=dict(self.details or {}),
        )


# ----------------------------------------------------------------------------- URIs


def file_uri_path(uri: str | None, endpoint: Endpoint | None = None, attr: str = "uri") -> Path:
    """The local path of a ``file://`` URI (or a bare absolute path)."""
    where = f"endpoint {endpoint.label()} field {attr}" if endpoint else attr
    if not uri:
        raise ValueError(f"{where}: no URI")
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    if parsed.scheme == "" and uri.startswith("/"):
        return Path(uri)
    raise ValueError(f"{where}: expected a file:// URI, got scheme {parsed.scheme!r}")


@dataclass(frozen=True)
class SshLocation:
    """The parts of an ``ssh://[user@]host[:port]/abs/path`` URI."""

    host: str
    path: str
    user: str | None = None
    port: int | None = None

    def address(self) -> str:
        return f"{self.host}:{self.port or 22}"


def parse_ssh_uri(uri: str) -> SshLocation:
    """Split an ``ssh://`` URI; a password in it or a relative path is refused."""
    parsed = urlparse(uri)
    if parsed.scheme != "ssh":
        raise ValueError(f"expected an ssh:// URI, got scheme {parsed.scheme!r}")
    if parsed.password is not None:
        raise ValueError("an ssh:// URI must not carry a password; keys live in the "
                         "Airflow SSH connection named by details.ssh_conn_id")
    if not parsed.hostname:
        raise ValueError("ssh:// URI has no host (ssh://[user@]host[:port]/abs/path)")
    try:
        port = parsed.port
    except ValueError as exc:
        raise ValueError(f"ssh:// URI has a bad port: {exc}") from exc
    path = unquote(parsed.path)
    if not path.startswith("/"):
        raise ValueError("ssh:// URI needs an absolute path after the host")
    return SshLocation(host=parsed.hostname, path=str(PurePosixPath(path)),
                       user=unquote(parsed.username) if parsed.username else None, port=port)


def url_has_password(url: str) -> bool:
    """True when a SQLAlchemy or HTTP URL embeds a password (``user:secret@host``)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).password is not None
    except (ArgumentError, ValueError):
        return urlparse(url).password is not None


def _sqlalchemy_url_problem(url: str) -> str | None:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        return "not a SQLAlchemy URL (e.g. postgresql+psycopg2://user@host:5432/db)"
    if parsed.password is not None:
        return ("embeds a password: register an Airflow connection holding the credentials "
                "and name it in details.conn_id (details.target_conn_id for the target); "
                "nothing was stored")
    if (parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:")
            and not Path(parsed.database).is_absolute()):
        return "sqlite URL needs an absolute path (sqlite:////abs/file.db)"
    return None


def _disk_uri_problem(uri: str, side: str) -> str | None:
    parsed = urlparse(uri)
    if parsed.scheme == "file" or (parsed.scheme == "" and uri.startswith("/")):
        path = unquote(parsed.path)
        if parsed.netloc not in ("", "localhost"):
            return f"file:// URI names host {parsed.netloc!r}; use ssh://host/path for remote"
        return None if path.startswith("/") else "file:// URI needs an absolute path"
    if parsed.scheme == "ssh":
        try:
            parse_ssh_uri(uri)
        except ValueError as exc:
            return str(exc)
        return None
    return (f"{side} of a disk must be file:///abs/path or ssh://[user@]host[:port]/abs/path, "
            f"got scheme {parsed.scheme!r}")


def _http_uri_problem(uri: str) -> str | None:
    parsed = urlparse(uri)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        return "must be an http:// or https:// URL with a host"
    if parsed.password is not None:
        return "embeds a password; health URLs are read without credentials"
    try:
        parsed.port  # noqa: B018 - raises on a bad port
    except ValueError as exc:
        return f"bad port: {exc}"
    return None


def host_key_problem(value: Any) -> str | None:
    """Why a pinned host key is unusable (None when paramiko can load it)."""
    import base64
    import binascii

    import paramiko

    if not isinstance(value, str) or len(value.split()) < 2:
        return "must be '<type> <base64>' as a known_hosts line has it (ssh-keyscan)"
    key_type, data = value.split()[:2]
    try:
        paramiko.PKey.from_type_string(key_type, base64.b64decode(data, validate=True))
    except (binascii.Error, ValueError, paramiko.SSHException) as exc:
        return f"not a usable {key_type} public key ({type(exc).__name__})"
    except Exception as exc:  # paramiko raises assorted errors on corrupt key data
        return f"not a usable {key_type} public key ({type(exc).__name__})"
    return None


# ----------------------------------------------------------------------------- registration


class EndpointSpec(EndpointModel):
    """One endpoint as a person registers it: every rule of the kind checked.

    Unknown top-level keys are refused (a typo such as ``source_url`` must not vanish).
    """

    model_config = ConfigDict(extra="forbid")

    name: str = Field(default="", max_length=255)

    @model_validator(mode="before")
    @classmethod
    def _default_name(cls, data: Any) -> Any:
        kind = data.get("kind") if isinstance(data, dict) else None
        if isinstance(kind, str) and kind in DEFAULT_NAMES and not data.get("name"):
            data = {**data, "name": DEFAULT_NAMES[data["kind"]]}
        return data

    @model_validator(mode="after")
    def _rules(self) -> EndpointSpec:
        problems: list[tuple[str, str]] = []
        for key, value in (self.details or {}).items():
            if SECRET_KEY.search(key) and key != "host_key":
                problems.append((f"details.{key}", "looks like a secret; keep credentials in "
                                 "an Airflow connection and name it here instead"))
            elif isinstance(value, str) and url_has_password(value) and "://" in value:
                problems.append((f"details.{key}", "embeds a password; keep credentials in "
                                 "an Airflow connection"))
        for key_name in ("host_key", "target_host_key"):
            host_key = (self.details or {}).get(key_name)
            problem = host_key_problem(host_key) if host_key is not None else None
            if problem:
                problems.append((f"details.{key_name}", problem))
        kind = self.kind
        if kind == "disk":
            problems += self._disk_rules()
        elif kind == "database":
            problems += self._database_rules()
        else:
            problems += self._http_rules()
        if problems:
            raise ValueError("\n".join(f"{where}: {msg}" for where, msg in problems))
        return self

    def _disk_rules(self) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        if not self.source_uri:
            return [("source_uri", "a disk needs a source (file:///path or ssh://host/path)")]
        for side, uri in (("source_uri", self.source_uri), ("target_uri", self.target_uri)):
            if uri is None:
                continue
            problem = _disk_uri_problem(uri, side)
            if problem:
                out.append((side, problem))
            elif uri.startswith("ssh:"):
                conn_key = "ssh_conn_id" if side == "source_uri" else "target_ssh_conn_id"
                conn = self.details.get(conn_key) or self.details.get("ssh_conn_id")
                if not isinstance(conn, str) or not conn.strip():
                    out.append((f"details.{conn_key}", "an ssh:// disk needs the id of the "
                                "Airflow SSH connection that holds its key"))
        return out

    def _database_rules(self) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        for key in ("tables", "schemas"):
            value = self.details.get(key)
            if value is not None and (not isinstance(value, list) or not all(
                    isinstance(v, str) and v for v in value)):
                out.append((f"details.{key}", "must be a list of names"
                            + (" (schema.table or table)" if key == "tables" else "")))
        for side, uri, conn_key in (("source_uri", self.source_uri, "conn_id"),
                                    ("target_uri", self.target_uri, "target_conn_id")):
            conn = self.details.get(conn_key)
            if conn is not None and (not isinstance(conn, str) or not conn.strip()):
                out.append((f"details.{conn_key}", "must be an Airflow connection id"))
            if uri is not None:
                problem = _sqlalchemy_url_problem(uri)
                if problem:
                    out.append((side, problem))
                elif conn:
                    out.append((side, f"give either {side} or details.{conn_key}, not both"))
        if not self.source_uri and not self.details.get("conn_id"):
            out.append(("details.conn_id", "a database needs details.conn_id (an Airflow "
                        "connection) or a password-less source_uri"))
        return out

    def _http_rules(self) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        if not self.source_uri:
            return [("source_uri", "an http endpoint needs its health URL")]
        for side, uri in (("source_uri", self.source_uri), ("target_uri", self.target_uri)):
            if uri is not None:
                problem = _http_uri_problem(uri)
                if problem:
                    out.append((side, problem))
        return out


def validation_problems(exc: ValidationError) -> list[tuple[str, str]]:
    """(field, message) pairs of a pydantic error, our own rules split per field."""
    out: list[tuple[str, str]] = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        msg = str(err["msg"]).removeprefix("Value error, ")
        if not loc and ": " in msg:
            for part in msg.split("\n"):
                where, _, text = part.partition(": ")
                out.append((where, text) if text else ("(record)", part))
            continue
        out.append((loc or "(record)", msg))
    return out


# ----------------------------------------------------------------------------- lists


def parse_endpoints(raw: Any, origin: str) -> list[Endpoint]:
    """Validate a list of endpoint dicts; errors name the item index, server and field."""
    if not isinstance(raw, list):
        raise EndpointError(f"{origin}: expected a list of endpoints, got {type(raw).__name__}")
    out: list[Endpoint] = []
    for index, item in enumerate(raw):
        if not isinstance(item, dict):
            item = {k: v for k, v in vars(item).items() if not k.startswith("_")}
        try:
            out.append(EndpointModel.model_validate(item).to_endpoint())
        except ValidationError as exc:
            problems = "; ".join(f"{where}: {msg}" for where, msg in validation_problems(exc))
            sid = item.get("server_id", "?")
            raise EndpointError(f"{origin}[{index}] (server {sid}): {problems}") from exc
    return out


def by_server(endpoints: list[Endpoint], server_id: str, kind: str | None = None) -> list[Endpoint]:
    return [
        e for e in endpoints if e.server_id == server_id and (kind is None or e.kind == kind)
    ]
