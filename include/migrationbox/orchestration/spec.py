"""The plan spec: the one model ``migrationbox plan`` writes and the wave-DAG file reads.

``migrationbox plan`` writes one JSON file per estate into ``config.plans_dir()``
(``planning.export.write_wave_spec`` builds a :class:`PlanSpec` and dumps it); the DAG
file reads the same model back at parse time: no database, no network, and no
per-server data, so parsing stays fast for a 10,000-server plan. Writer and reader share
this one model, so a field cannot be written that the reader does not know.

``schema_version`` is checked before anything else: a spec written by a newer
MigrationBox is refused with a message naming the file and the MigrationBox version
that wrote it, not half-read. Reading creates nothing (no folder, no file).

Next to the specs, in ``<plans>/dags/``, ``migrationbox plan`` also writes one tiny
*loader* per estate (``migrate__<estate>.py``, :func:`loader_source`): the DAG file of
that estate's waves in the plans DAG bundle. One file per estate is what makes a broken
spec an Airflow import error of its own estate only (see ``wave_dag``).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from migrationbox.errors import InputError

#: the plan-spec format this MigrationBox writes and the newest it reads
SCHEMA_VERSION = 1
#: what an estate name may be (it names files, DAG ids and a Python loader)
ESTATE_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"
#: what specs written before ``schema_version`` existed carried instead (= version 1)
_LEGACY_SCHEMA = "migrationbox.wave-spec/1"


class SpecError(InputError):
    """A plan spec file that cannot be turned into DAGs (the message names the file)."""

    def __init__(self, message: str, *, path: Path | None = None, estate: str | None = None):
        super().__init__(message)
        self.path = path
        self.estate = estate


class WaveSpec(BaseModel):
    """One wave, as much as building its DAG needs (no server list)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    number: int = Field(ge=1)
    name: str
    server_count: int = Field(ge=1)
    environment: str
    needs_approval: bool
    approval_reasons: list[str] = Field(default_factory=list)
    live_servers: list[str] = Field(
        default_factory=list,
        description="server ids the plan migrates live (pre-copy, short freeze): their "
                    "wave's cutover passes a risk approval first")
    predicted_monthly_usd: float = Field(ge=0)
    depends_on_waves: list[int] = Field(default_factory=list)
    estimated_hours: float = Field(ge=0)


class PlanSpec(BaseModel):
    """One estate's plan, compact: what the wave-DAG file builds every wave DAG from."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: int = Field(default=SCHEMA_VERSION, ge=1, le=SCHEMA_VERSION)
    written_by: str | None = Field(
        default=None, description="MigrationBox version that wrote the spec"
    )
    estate: str = Field(pattern=ESTATE_PATTERN)
    version: int = Field(ge=1)
    created_at: str
    waves: list[WaveSpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _waves_refer_to_earlier_waves(self) -> PlanSpec:
        numbers = [w.number for w in self.waves]
        if len(set(numbers)) != len(numbers):
            raise ValueError(f"waves: duplicate wave numbers {sorted(numbers)}")
        for wave in self.waves:
            bad = [d for d in wave.depends_on_waves if d not in numbers or d >= wave.number]
            if bad:
                raise ValueError(
                    f"waves[{wave.number}].depends_on_waves: {bad} are not earlier waves"
                )
        return self

    def to_json(self) -> str:
        """Stable text (sorted keys) so that an unchanged plan writes identical bytes."""
        return json.dumps(self.model_dump(mode="json"), indent=2, sort_keys=True) + "\n"


def migrationbox_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("migrationbox")
    except PackageNotFoundError:
        return "unknown"


def _check_schema_version(path: Path, raw: dict[str, Any]) -> dict[str, Any]:
    """Refuse a spec this MigrationBox cannot read; map the pre-version format to 1."""
    raw = dict(raw)
    if "schema_version" not in raw and raw.get("schema") == _LEGACY_SCHEMA:
        raw.pop("schema")
        raw["schema_version"] = 1
    found = raw.get("schema_version")
    if isinstance(found, bool) or not isinstance(found, int) or found < 1:
        raise SpecError(
            f"{path}: schema_version: missing or not a positive integer ({found!r}); "
            f"this MigrationBox ({migrationbox_version()}) reads plan-spec schema version "
            f"{SCHEMA_VERSION}: re-run `migrationbox plan` to rewrite the spec",
            path=path,
        )
    if found > SCHEMA_VERSION:
        writer = raw.get("written_by") or "a newer MigrationBox"
        raise SpecError(
            f"{path}: plan-spec schema version {found} was written by MigrationBox {writer}; "
            f"this MigrationBox ({migrationbox_version()}) reads schema version "
            f"{SCHEMA_VERSION} and older: upgrade to MigrationBox {writer} or later to "
            "read it, or re-run `migrationbox plan` with this version",
            path=path,
            estate=raw.get("estate") if isinstance(raw.get("estate"), str) else None,
        )
    return raw


def parse_spec(path: Path, text: str) -> PlanSpec:
    """Validate the text of one spec file; every error names ``path`` and the field."""
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SpecError(
            f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno})", path=path
        ) from exc
    if not isinstance(raw, dict):
        raise SpecError(f"{path}: a plan spec is a JSON object, got {type(raw).__name__}",
                        path=path)
    raw = _check_schema_version(path, raw)
    try:
        return PlanSpec.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            (f"{'.'.join(str(p) for p in err['loc'])}: " if err["loc"] else "")
            + err["msg"].removeprefix("Value error, ")
            for err in exc.errors()
        )
        estate = raw.get("estate") if isinstance(raw.get("estate"), str) else None
        raise SpecError(f"{path}: invalid plan spec: {problems}", path=path,
                        estate=estate) from exc


def read_spec(path: Path) -> PlanSpec:
    """One spec file; raises :class:`SpecError` naming the file and the field."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError(f"{path}: cannot read the plan spec: {exc.strerror or exc}",
                        path=path) from exc
    spec = parse_spec(path, text)
    if path.stem != spec.estate:
        raise SpecError(
            f"{path}: estate: the spec is for estate {spec.estate!r} but the file is named "
            f"{path.name!r} (expected {spec.estate}.json)",
            path=path, estate=path.stem,
        )
    return spec


def spec_files(folder: Path) -> list[Path]:
    """The spec files of ``folder`` by estate name (none, and nothing created, if absent)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob("*.json") if not p.name.startswith("."))


def read_specs(folder: Path) -> list[PlanSpec]:
    """All specs in ``folder``, sorted by estate; the first broken one raises.

    The wave-DAG file does not use this (it reads estate by estate, so that one broken
    spec fails only its own estate); tools that want all-or-nothing do.
    """
    return [read_spec(p) for p in spec_files(folder)]


#: the folder of the plans folder that holds one loader DAG file per estate (a DAG bundle)
LOADERS_FOLDER = "dags"


def loaders_dir(plans_folder: Path) -> Path:
    """``<plans>/dags``: the folder the plans DAG bundle points at (not created)."""
    return Path(plans_folder) / LOADERS_FOLDER


def loader_path(plans_folder: Path, estate: str) -> Path:
    """The loader DAG file of ``estate``: ``<plans>/dags/migrate__<estate>.py``."""
    return loaders_dir(plans_folder) / f"migrate__{estate}.py"


def spec_path_for_loader(loader: Path | str, estate: str) -> Path:
    """The spec a loader reads: ``<estate>.json`` in the folder above the loader's own.

    Found from the loader's location, not from a setting, so a loader always reads the
    spec it was written next to, whatever the parsing process's environment says.
    """
    return Path(loader).resolve().parent.parent / f"{estate}.json"


def loader_source(estate: str) -> str:
    """The text of ``estate``'s loader DAG file (the same bytes for the same estate).

    It holds no plan data: the spec stays the one source, so re-planning rewrites only
    the spec and the loader never changes. The words "airflow" and "DAG" in its text are
    what Airflow's safe-mode check looks for before importing a file.
    """
    if not re.fullmatch(ESTATE_PATTERN, estate):
        raise SpecError(f"estate {estate!r} is not a valid estate name ({ESTATE_PATTERN})",
                        estate=estate)
    return f'''"""Airflow DAG loader of estate {estate!r}: its wave DAGs, from ../{estate}.json.

Written by `migrationbox plan`; do not edit. One loader file per estate, so that a
broken plan spec is an Airflow import error of this estate only.
"""

from migrationbox.orchestration.wave_dag import load_estate

globals().update(load_estate(__file__, {estate!r}))
'''


def dag_id_for(estate: str, wave: int) -> str:
    return f"migrate__{estate}__wave_{wave:02d}"


def estate_of_dag_id(dag_id: str | None) -> str | None:
    """The estate a ``migrate__<estate>__…`` DAG id belongs to (None for other ids)."""
    if not dag_id or not dag_id.startswith("migrate__"):
        return None
    rest = dag_id.removeprefix("migrate__")
    estate, sep, _ = rest.rpartition("__")
    return estate if sep else None
