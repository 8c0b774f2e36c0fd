"""Render Terraform from ``terraform_templates/<cloud>/*.tf.j2`` with Jinja2.

The templates receive plain data (a ``WaveDesign`` as a dict) and a few filters that
make HCL safe to emit: ``tf_id`` (a valid resource label), ``tf_str`` (a quoted,
escaped string) and ``tf_map`` (an object of quoted keys, for tags such as
``migrationbox:estate``). Undefined variables are errors, never empty strings. When a
``terraform`` binary is on PATH the output goes through ``terraform fmt``, which also
proves it parses as HCL.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jinja2

from migrationbox.config import project_root
from migrationbox.errors import MigrationBoxError


class RenderError(MigrationBoxError, RuntimeError):
    """A template is missing or produced text that is not valid HCL."""


def templates_root() -> Path:
    from migrationbox import settings

    explicit = settings.get("terraform_templates")
    return Path(explicit) if explicit else project_root() / "terraform_templates"


def tf_id(value: Any) -> str:
    """A Terraform block label: letters, digits, underscores, dashes; no leading digit."""
    label = re.sub(r"[^A-Za-z0-9_-]", "_", str(value))
    return label if re.match(r"^[A-Za-z_]", label) else f"r_{label}"


def tf_str(value: Any) -> str:
    """A quoted HCL string; ``${`` and ``%{`` are escaped so nothing interpolates."""
    return json.dumps(str(value)).replace("${", "$${").replace("%{", "%%{")


def tf_map(values: dict[str, Any], indent: int = 2) -> str:
    pad = " " * (indent + 2)
    body = "\n".join(f"{pad}{tf_str(k)} = {tf_str(v)}" for k, v in sorted(values.items()))
    return "{\n" + body + "\n" + " " * indent + "}"


def tf_list(values: list[Any]) -> str:
    return "[" + ", ".join(tf_str(v) for v in values) + "]"


def environment(cloud: str) -> jinja2.Environment:
    folder = templates_root() / cloud
    if not folder.is_dir():
        raise RenderError(f"no Terraform templates for cloud {cloud!r} in {folder}")
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(folder)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,  # HCL, not HTML: escaping is done by tf_str
    )
    env.filters.update(tf_id=tf_id, tf_str=tf_str, tf_map=tf_map, tf_list=tf_list)
    return env


def terraform_fmt(text: str) -> str | None:
    """``terraform fmt`` of ``text``; ``None`` if no binary; RenderError if not HCL."""
    binary = shutil.which("terraform") or shutil.which("tofu")
    if binary is None:
        return None
    proc = subprocess.run(
        [binary, "fmt", "-no-color", "-"], input=text, capture_output=True, text=True,
        timeout=60, check=False,
    )
    if proc.returncode != 0:
        raise RenderError(f"rendered Terraform does not parse: {proc.stderr.strip()[:2000]}")
    return proc.stdout


def render(cloud: str, context: dict[str, Any], template: str = "main.tf.j2") -> str:
    try:
        return environment(cloud).get_template(template).render(**context)
    except jinja2.TemplateNotFound as exc:
        raise RenderError(f"template {cloud}/{template} not found in {templates_root()}") from exc
    except jinja2.UndefinedError as exc:
        raise RenderError(f"template {cloud}/{template}: {exc}") from exc


def write_terraform(
    cloud: str,
    context: dict[str, Any],
    out_dir: Path,
    template: str = "main.tf.j2",
    fmt: bool = True,
) -> Path:
    """Render ``template`` into ``out_dir/<template without .j2>``, atomically."""
    text = render(cloud, context, template)
    if fmt:
        text = terraform_fmt(text) or text
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / template.removesuffix(".j2")
    tmp = target.with_suffix(target.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(target)
    return target
