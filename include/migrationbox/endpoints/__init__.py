"""Endpoints are domain data: how to reach each server's disks, databases and services.

They are registered per estate (``migrationbox endpoints import``, the plugin API, or
the lab registering its own), kept in the store with connection ids only, resolved to
credentials from Airflow connections when used, and tried by ``migrationbox endpoints
check``. Modules: ``model`` (the type and its rules), ``files`` (the JSON file and run
options), ``registry`` (import with per-record quarantine), ``connections`` (SSH hooks
and database URLs from Airflow connections), ``checks`` and ``suggest`` (what
``discover --local`` proposes).
"""

from migrationbox.endpoints.files import (
    atomic_write_text,
    read_endpoints_file,
    write_endpoints_file,
)
from migrationbox.endpoints.model import (
    DEFAULT_NAMES,
    KINDS,
    Endpoint,
    EndpointError,
    EndpointKindName,
    EndpointModel,
    EndpointSpec,
    EndpointsUnavailable,
    SshLocation,
    by_server,
    file_uri_path,
    parse_endpoints,
    parse_ssh_uri,
)

__all__ = [
    "DEFAULT_NAMES",
    "KINDS",
    "Endpoint",
    "EndpointError",
    "EndpointKindName",
    "EndpointModel",
    "EndpointSpec",
    "EndpointsUnavailable",
    "SshLocation",
    "atomic_write_text",
    "by_server",
    "file_uri_path",
    "parse_endpoints",
    "parse_ssh_uri",
    "read_endpoints_file",
    "write_endpoints_file",
]
