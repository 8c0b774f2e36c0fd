"""Endpoints as a JSON file, and as the list a run's options carry.

The file is ``{"estate": ..., "endpoints": [...]}`` (or a bare list); it is written
atomically (temp file + rename) so that a phase reading it never sees half a file.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from migrationbox.endpoints.model import (
    Endpoint,
    EndpointError,
    EndpointsUnavailable,
    parse_endpoints,
)
from migrationbox.fileio import atomic_write_text


def read_endpoints_file(path: Path) -> list[Endpoint]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise EndpointsUnavailable(
            f"no endpoints file at {path}: start the lab (`migrationbox lab up`) or register "
            "the estate's endpoints (`migrationbox endpoints import FILE --estate E`)"
        ) from exc
    except json.JSONDecodeError as exc:
        raise EndpointError(f"{path}: not valid JSON ({exc})") from exc
    items = data.get("endpoints") if isinstance(data, dict) else data
    return parse_endpoints(items, str(path))


def write_endpoints_file(path: Path, estate: str, endpoints: list[Endpoint]) -> None:
    payload = {"estate": estate, "endpoints": [e.to_dict() for e in endpoints]}
    atomic_write_text(path, json.dumps(payload, indent=2, sort_keys=True))


def endpoints_from_options(options: Mapping[str, Any],
                           default_file: Path | None = None) -> list[Endpoint]:
    """The endpoints a run was given: ``options['endpoints']`` (a non-empty list) wins,
    then ``options['endpoints_file']``, then ``default_file``."""
    given = options.get("endpoints")
    if given:
        return parse_endpoints(given, "options.endpoints")
    explicit = options.get("endpoints_file")
    path = Path(explicit) if explicit else default_file
    if path is None:
        raise EndpointsUnavailable("the run was given no endpoints and no endpoints file")
    return read_endpoints_file(path)
