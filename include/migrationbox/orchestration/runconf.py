"""The conf a wave DAG run accepts (UI "Trigger w/ config", REST, Teams bot).

It is ``phases.options.PhaseOptions`` (a section per phase) plus the run flags, so a key
a phase tells an operator to set is always a key a run can take. Validated with pydantic
so that a typo fails the first task with a message naming the key path
(``conf.cutover.stepz: ...``) instead of being silently ignored.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, ValidationError

from migrationbox.errors import InputError
from migrationbox.phases.options import PhaseOptions

#: The run flags: what the orchestrator itself reads; everything else is for the phases.
RUN_FLAGS = ("dry_run", "approvals", "ignore_previous_wave")


class WaveRunConf(PhaseOptions):
    """A wave DAG run's conf: the phase options and the run flags."""

    dry_run: bool = Field(
        default=False, description="plan and check only: create nothing, move no traffic"
    )
    approvals: Literal["required", "auto_non_production"] = Field(
        default="required",
        description=(
            "auto_non_production: approval gates of non-production waves pass by themselves"
        ),
    )
    ignore_previous_wave: bool = Field(
        default=False, description="do not wait for the previous wave (re-runs, lab tests)"
    )

    def phase_options(self, defaults: dict[str, dict[str, Any]] | None = None) -> PhaseOptions:
        """What the phases are told: every section, without the run flags.

        ``defaults`` (``{section: {field: value}}``, the site's settings) fill the fields
        this conf leaves unset; what the conf sets wins.
        """
        data: dict[str, dict[str, Any]] = {k: dict(v) for k, v in (defaults or {}).items()}
        given = self.model_dump(by_alias=True, exclude_unset=True, exclude=set(RUN_FLAGS))
        for section, values in given.items():
            data[section] = {**data.get(section, {}), **values}
        try:
            return PhaseOptions.model_validate(data)
        except ValidationError as exc:
            raise RunConfError(f"invalid phase options with the site's defaults: "
                               f"{_problems(exc)}") from exc


class RunConfError(InputError):
    """The DAG run's conf is invalid; the message names every bad key path."""


def parse_run_conf(raw: dict[str, Any] | None) -> WaveRunConf:
    if raw is not None and not isinstance(raw, dict):
        raise RunConfError(f"invalid DAG run conf: expected an object, got {type(raw).__name__}")
    where = _unpaired_surrogate(raw or {})
    if where is not None:
        where = where.encode("utf-8", "backslashreplace").decode("utf-8")  # printable
        raise RunConfError(f"invalid DAG run conf: conf.{where}: text holds an unpaired "
                           "surrogate escape (\\ud800-\\udfff), which is not Unicode")
    try:
        return WaveRunConf.model_validate(raw or {})
    except ValidationError as exc:
        raise RunConfError(f"invalid DAG run conf: {_problems(exc)}") from exc


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _unpaired_surrogate(data: Any) -> str | None:
    """The key path of the first key or string with an unpaired surrogate, else None.

    Such text passes pydantic but no log, database or report can encode it, so a run
    would fail later, far from the key; refused here like any other bad value.
    """
    stack: list[tuple[Any, str]] = [(data, "")]
    while stack:
        node, path = stack.pop()
        if isinstance(node, str):
            if _LONE_SURROGATE.search(node):
                return path or "(conf)"
        elif isinstance(node, dict):
            for key, value in node.items():
                inner = f"{path}.{key}" if path else str(key)
                if isinstance(key, str) and _LONE_SURROGATE.search(key):
                    return inner
                stack.append((value, inner))
        elif isinstance(node, list):
            stack.extend((value, f"{path}[{i}]") for i, value in enumerate(node))
    return None


def _problems(exc: ValidationError) -> str:
    return "; ".join(
        f"conf.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
    )


def conf_schema() -> dict[str, Any]:
    """The run conf's JSON schema (for the trigger form's Params and the API docs)."""
    return WaveRunConf.model_json_schema(by_alias=True)


def param_specs() -> dict[str, dict[str, Any]]:
    """Keyword arguments of one Airflow ``Param`` per run-conf key, built from the model.

    ``{key: {"default": ..., "description": ..., <JSON schema keywords>}}``; the wave DAG
    passes each to ``airflow.sdk.Param`` so the trigger form shows the same fields the
    run conf accepts. A section's default is ``{}`` (not its fields' defaults), so a form
    left alone sets nothing and the site's settings still apply. No Airflow import here:
    this runs at DAG-parse time and in tests.
    """
    schema = conf_schema()
    defs = schema.get("$defs", {})
    specs: dict[str, dict[str, Any]] = {}
    for key, prop in schema["properties"].items():
        resolved = _resolve(prop, defs)
        description = resolved.pop("description", None) or resolved.get("title", key)
        resolved.pop("title", None)
        if key in RUN_FLAGS:
            default = resolved.pop("default", None)
        else:
            resolved.pop("default", None)
            default = {}
        specs[key] = {"default": default, "description": description, **resolved}
    return specs


def _resolve(node: Any, defs: dict[str, Any]) -> Any:
    """``node`` with every ``$ref`` into ``$defs`` inlined (the form has no ``$defs``)."""
    if isinstance(node, dict):
        if "$ref" in node:
            target = defs[node["$ref"].rsplit("/", 1)[-1]]
            merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
            return _resolve(merged, defs)
        return {k: _resolve(v, defs) for k, v in node.items()}
    if isinstance(node, list):
        return [_resolve(v, defs) for v in node]
    return node
