"""The lab's side of endpoints: where its files live and how it registers its endpoints.

The endpoint type, its rules and its file format are domain data in
``migrationbox.endpoints``; they are re-exported here so that code written against the
lab module keeps working. What stays here is the lab's own: its state folder
(``<runtime_dir>/lab/<estate>``), the endpoints file it writes there, the fallback that
phases use when they were handed no endpoints, and registering the lab's endpoints in
the store through the same path (and the same rules) as any estate's.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from migrationbox.config import runtime_dir
from migrationbox.endpoints.files import (
    atomic_write_text,
    read_endpoints_file,
    write_endpoints_file,
)
from migrationbox.endpoints.model import (
    Endpoint,
    EndpointKindName,
    EndpointModel,
    EndpointsUnavailable,
    by_server,
    file_uri_path,
    parse_endpoints,
)

if TYPE_CHECKING:
    from migrationbox.endpoints.registry import ImportReport
    from migrationbox.phases.context import PhaseContext

__all__ = [
    "Endpoint",
    "EndpointKindName",
    "EndpointModel",
    "EndpointsUnavailable",
    "atomic_write_text",
    "by_server",
    "dns_zone",
    "endpoints_file",
    "file_uri_path",
    "lab_dir",
    "load_endpoints",
    "parse_endpoints",
    "read_endpoints_file",
    "register_lab_endpoints",
    "target_dns_name",
    "write_endpoints_file",
]


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


def load_endpoints(ctx: PhaseContext) -> list[Endpoint]:
    """All endpoints of the context's estate: those the caller handed over
    (``ctx.endpoints``, read from the store by the wave DAG), else the lab's file.

    Run options never carry endpoints (``PhaseContext.options`` is the typed
    ``PhaseOptions``, which has no such field), so they are not consulted.
    """
    given = getattr(ctx, "endpoints", None)
    if given:
        return list(given)
    return read_endpoints_file(endpoints_file(ctx.estate))


def register_lab_endpoints(estate: str, endpoints: Iterable[Endpoint]) -> ImportReport:
    """Store the lab's endpoints as any estate's are registered (same rules, each
    server's endpoints replaced), so phases read them from the store as in production."""
    from migrationbox.endpoints.registry import register_endpoints
    from migrationbox.store.db import session_scope

    with session_scope() as session:
        return register_endpoints(session, estate, list(endpoints), origin=f"lab {estate}")
