"""Endpoints as a JSON file.

The file is ``{"estate": ..., "endpoints": [...]}`` (or a bare list); it is written
atomically (temp file + rename) so that a phase reading it never sees half a file.
"""

from __future__ import annotations

import json
from pathlib import Path

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
    except UnicodeDecodeError as exc:
        raise EndpointError(f"{path}: not UTF-8 (byte {exc.start}: {exc.reason})") from exc
    except RecursionError as exc:
        raise EndpointError(f"{path}: nested too deeply to read") from exc
    items = data.get("endpoints") if isinstance(data, dict) else data
    return parse_endpoints(items, str(path))


def write_endpoints_file(path: Path, estate: str, endpoints: list[Endpoint]) -> None:
    payload = {"estate": estate, "endpoints": [e.to_dict() for e in endpoints]}
    atomic_write_text(path, json.dumps(payload, indent=2, sort_keys=True))
