"""Where a server's data and services live, at the source and at the target.

Phases never know whether they run against the local lab or a customer's estate: they
only read endpoints. Each endpoint names one server, one kind (``disk``, ``database``,
``http``), and a source and a target URI:

* ``disk``: ``file:///abs/path`` folders (a disk image tree);
* ``database``: SQLAlchemy URLs (``postgresql+psycopg2://...`` or ``sqlite:///...``);
* ``http``: a base URL (``http://127.0.0.1:PORT``).

``load_endpoints(ctx)`` is the single place phases get them from: the run's options
(the wave DAG passes the store's endpoints there) or, failing that, the JSON file the
lab writes under ``<runtime_dir>/lab/<estate>/endpoints.json``.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import unquote, urlparse

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from migrationbox.config import runtime_dir

if TYPE_CHECKING:
    from migrationbox.phases.context import PhaseContext

EndpointKindName = Literal["disk", "database", "http"]


class EndpointsUnavailable(LookupError):
    """No endpoints could be found for an estate (lab not started, store empty)."""


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
    """Boundary shape of one endpoint (JSON file, run options, store rows).

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


def lab_dir(estate: str, root: Path | None = None) -> Path:
    """The lab's state folder for one estate: ``<runtime_dir>/lab/<estate>``."""
    return (root or runtime_dir() / "lab") / estate


def endpoints_file(estate: str, root: Path | None = None) -> Path:
    return lab_dir(estate, root) / "endpoints.json"


def dns_zone(estate: str) -> str:
    """The private hosted zone that holds a migrated estate's names (provisioning's rule)."""
    from migrationbox.iac.design import dns_zone as _zone

    return _zone(estate)


def target_dns_name(estate: str, hostname: str) -> str:
    """``<short-hostname>.<estate>.migrationbox.internal``: a server's name on the target,
    the same name provisioning gives its A record."""
    from migrationbox.iac.design import record_name

    return record_name(estate, hostname)


def parse_endpoints(raw: Any, origin: str) -> list[Endpoint]:
    """Validate a list of endpoint dicts; errors name the item index and field."""
    if not isinstance(raw, list):
        raise ValueError(f"{origin}: expected a list of endpoints, got {type(raw).__name__}")
    out: list[Endpoint] = []
    for index, item in enumerate(raw):
        if not isinstance(item, dict):
            item = {k: v for k, v in vars(item).items() if not k.startswith("_")}
        try:
            out.append(EndpointModel.model_validate(item).to_endpoint())
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
            )
            sid = item.get("server_id", "?")
            raise ValueError(f"{origin}[{index}] (server {sid}): {problems}") from exc
    return out


def read_endpoints_file(path: Path) -> list[Endpoint]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise EndpointsUnavailable(
            f"no endpoints file at {path}: start the lab (`migrationbox lab up`) or register "
            "the estate's endpoints in the store"
        ) from exc
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from exc
    items = data.get("endpoints") if isinstance(data, dict) else data
    return parse_endpoints(items, str(path))


def write_endpoints_file(path: Path, estate: str, endpoints: list[Endpoint]) -> None:
    """Write atomically (temp file + rename) so readers never see half a file."""
    payload = {"estate": estate, "endpoints": [e.to_dict() for e in endpoints]}
    atomic_write_text(path, json.dumps(payload, indent=2, sort_keys=True))


def atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_endpoints(ctx: PhaseContext) -> list[Endpoint]:
    """All endpoints of the context's estate.

    ``ctx.options['endpoints']`` (a list of dicts) wins when given and non-empty; then
    ``ctx.options['endpoints_file']``; then the lab's file for the estate.
    """
    given = ctx.options.get("endpoints")
    if given:
        return parse_endpoints(given, "options.endpoints")
    explicit = ctx.options.get("endpoints_file")
    path = Path(explicit) if explicit else endpoints_file(ctx.estate)
    return read_endpoints_file(path)


def by_server(endpoints: list[Endpoint], server_id: str, kind: str | None = None) -> list[Endpoint]:
    return [
        e for e in endpoints if e.server_id == server_id and (kind is None or e.kind == kind)
    ]
