"""Apply ``airflow_settings.yaml`` (the Astro CLI format) to a running Airflow.

The file lists connections, pools and variables under ``airflow:``, exactly as the
Astro CLI reads it, so the same file serves an Astro project. Values may hold
``${VAR}`` or ``${VAR:-default}`` placeholders, filled from the environment when the
platform starts: the emulator's endpoint and the store's path are only known then.

Applying goes through the REST API's bulk endpoints with ``action_on_existence:
overwrite``: one request per kind, idempotent, and visible in the UI afterwards.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from migrationbox.errors import ConfigurationError
from migrationbox.platform.rest import AirflowClient

_PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class SettingsError(ConfigurationError):
    """The settings file is unreadable, incomplete or names an unset variable."""


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ConnectionSetting(_Entry):
    conn_id: str = Field(pattern=r"^[\w.-]+$", max_length=200)
    conn_type: str
    conn_host: str | None = None
    conn_schema: str | None = None
    conn_login: str | None = None
    conn_password: str | None = None
    conn_port: int | None = None
    conn_extra: dict[str, Any] | str | None = None
    conn_description: str | None = None

    @field_validator("conn_extra")
    @classmethod
    def _extra_is_json_object(cls, value: dict[str, Any] | str | None) -> dict[str, Any] | None:
        if value is None or isinstance(value, dict):
            return value
        if not value.strip():
            return None
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ValueError(f"not a JSON object: {exc}") from exc
        if not isinstance(parsed, dict):
            raise ValueError("must be a JSON object")
        return parsed

    def to_api(self) -> dict[str, Any]:
        return {
            "connection_id": self.conn_id,
            "conn_type": self.conn_type,
            "description": self.conn_description,
            "host": self.conn_host,
            "schema": self.conn_schema,
            "login": self.conn_login,
            "password": self.conn_password,
            "port": self.conn_port,
            "extra": json.dumps(self.conn_extra) if self.conn_extra else None,
        }


class PoolSetting(_Entry):
    pool_name: str = Field(min_length=1, max_length=256)
    pool_slot: int = Field(ge=-1)
    pool_description: str | None = None

    def to_api(self) -> dict[str, Any]:
        return {
            "name": self.pool_name,
            "slots": self.pool_slot,
            "description": self.pool_description,
            "include_deferred": False,
        }


class VariableSetting(_Entry):
    variable_name: str = Field(min_length=1, max_length=250)
    variable_value: Any
    variable_description: str | None = None

    def to_api(self) -> dict[str, Any]:
        value = self.variable_value
        if not isinstance(value, str):
            value = json.dumps(value)
        return {"key": self.variable_name, "value": value, "description": self.variable_description}


class AirflowSettings(_Entry):
    connections: list[ConnectionSetting] = Field(default_factory=list)
    pools: list[PoolSetting] = Field(default_factory=list)
    variables: list[VariableSetting] = Field(default_factory=list)


class AppliedSettings(BaseModel):
    connections: list[str]
    pools: list[str]
    variables: list[str]


def substitute(value: Any, environ: Mapping[str, str], where: str = "airflow") -> Any:
    """Replace ``${VAR}`` / ``${VAR:-default}`` in every string of a YAML tree.

    An unset variable without a default is an error naming the entry, e.g.
    ``airflow.connections[0].conn_extra.endpoint_url: ${MIGRATIONBOX_EMULATOR_URL} is not set``.
    """
    if isinstance(value, str):

        def _one(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in environ:
                return environ[name]
            if default is not None:
                return default
            raise SettingsError(f"{where}: ${{{name}}} is not set in the environment")

        return _PLACEHOLDER.sub(_one, value)
    if isinstance(value, Mapping):
        return {k: substitute(v, environ, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, environ, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


def parse_settings(
    raw: Any, environ: Mapping[str, str], source: str = "<settings>"
) -> AirflowSettings:
    """Validate a loaded YAML document (``{"airflow": {...}}``) after substitution."""
    if raw is None:
        return AirflowSettings()
    if not isinstance(raw, Mapping) or not isinstance(raw.get("airflow", {}), Mapping):
        raise SettingsError(f"{source}: expected a mapping with an 'airflow:' section")
    section = {k: v for k, v in (raw.get("airflow") or {}).items() if v is not None}
    filled = substitute(section, environ)
    try:
        return AirflowSettings.model_validate(filled)
    except ValidationError as exc:
        problems = "; ".join(
            "airflow." + ".".join(str(p) for p in err["loc"]) + f": {err['msg']}"
            for err in exc.errors()
        )
        raise SettingsError(f"{source}: {problems}") from exc


def load_settings(path: Path | str, environ: Mapping[str, str]) -> AirflowSettings:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError as exc:
        raise SettingsError(f"{path}: file not found") from exc
    except yaml.YAMLError as exc:
        raise SettingsError(f"{path}: not valid YAML ({exc})") from exc
    try:
        return parse_settings(raw, environ, str(path))
    except SettingsError as exc:
        if str(exc).startswith(str(path)):
            raise
        raise SettingsError(f"{path}: {exc}") from exc


def apply_settings(client: AirflowClient, settings: AirflowSettings) -> AppliedSettings:
    """Create or overwrite every connection, pool and variable; safe to repeat."""
    client.bulk_upsert("connections", [c.to_api() for c in settings.connections])
    client.bulk_upsert("pools", [p.to_api() for p in settings.pools])
    client.bulk_upsert("variables", [v.to_api() for v in settings.variables])
    return AppliedSettings(
        connections=[c.conn_id for c in settings.connections],
        pools=[p.pool_name for p in settings.pools],
        variables=[v.variable_name for v in settings.variables],
    )
