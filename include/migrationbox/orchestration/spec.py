"""Wave-DAG specs: the compact, parse-time view of stored plans.

``migrationbox plan`` writes one JSON file per estate into ``config.plans_dir()``. The DAG
file reads only these files at parse time: no database, no network, and no per-server
data, so parsing stays fast for a 10,000-server plan. A spec that does not validate is
raised as an import error naming the file and the field, never skipped silently.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class WaveSpec(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    number: int = Field(ge=1)
    name: str
    server_count: int = Field(ge=1)
    environment: str
    needs_approval: bool
    approval_reasons: list[str] = Field(default_factory=list)
    predicted_monthly_usd: float = Field(ge=0)
    depends_on_waves: list[int] = Field(default_factory=list)
    estimated_hours: float = Field(ge=0)


class PlanSpec(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    estate: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")
    version: int = Field(ge=1)
    created_at: str
    waves: list[WaveSpec] = Field(min_length=1)


class SpecError(ValueError):
    """A plan spec file that cannot be turned into DAGs."""


def read_spec(path: Path) -> PlanSpec:
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise SpecError(f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno})") from exc
    try:
        spec = PlanSpec.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise SpecError(f"{path}: invalid plan spec: {problems}") from exc
    numbers = [w.number for w in spec.waves]
    if len(set(numbers)) != len(numbers):
        raise SpecError(f"{path}: waves: duplicate wave numbers {sorted(numbers)}")
    for wave in spec.waves:
        unknown = [n for n in wave.depends_on_waves if n not in numbers or n >= wave.number]
        if unknown:
            raise SpecError(
                f"{path}: waves[{wave.number}].depends_on_waves: {unknown} are not earlier waves"
            )
    return spec


def read_specs(folder: Path) -> list[PlanSpec]:
    """All specs in ``folder``, sorted by estate so DAG generation is deterministic."""
    if not folder.is_dir():
        return []
    specs = [read_spec(p) for p in sorted(folder.glob("*.json"))]
    seen: dict[str, int] = {}
    for s in specs:
        seen[s.estate] = seen.get(s.estate, 0) + 1
    dupes = [e for e, n in seen.items() if n > 1]
    if dupes:
        raise SpecError(f"{folder}: more than one spec for estate(s) {dupes}")
    return specs


def dag_id_for(estate: str, wave: int) -> str:
    return f"migrate__{estate}__wave_{wave:02d}"
