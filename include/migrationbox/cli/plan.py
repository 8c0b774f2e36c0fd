"""``migrationbox plan PATH``: validate, store and plan an estate; print its waves."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "plan",
        help="plan an estate into dependency-ordered waves and store the plan",
        description=(
            "Validate the inventory at PATH, store it, build the dependency graph, move "
            "groups and waves, store a new plan version and write the wave-DAG spec that "
            "Airflow turns into one DAG per wave."
        ),
    )
    p.add_argument("path", type=Path, help="folder of JSON records, a .json or a .jsonl file")
    p.add_argument("--estate", help="estate name (default: the folder name)")
    p.add_argument("--max-per-wave", type=int, default=None, help="servers per wave (default 40)")
    p.add_argument("--production-first", action="store_true",
                   help="do not move non-production servers ahead of production ones")
    p.add_argument("--region", default=None, help="target AWS region (default us-east-1)")
    p.add_argument("--option", choices=("conservative", "balanced", "aggressive"),
                   default=None, help="sizing option to provision (default balanced)")
    p.add_argument("--no-safe-variant", action="store_true",
                   help="provision the option even where it measured unsafe for a server")
    p.add_argument("--export", type=Path, help="also write the full plan as JSON to this file")
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.add_argument("--no-store", action="store_true",
                   help="plan only; store nothing and write no DAG spec")
    p.add_argument("--allow-quarantine", action="store_true",
                   help="plan the valid records even if some were quarantined")
    p.set_defaults(handler=_handle)


def _handle(args: argparse.Namespace) -> int:
    import tempfile

    from migrationbox.inventory.validation import InventoryError
    from migrationbox.planning.export import plan_to_json
    from migrationbox.planning.models import PlanSettings
    from migrationbox.planning.render import render_sequence
    from migrationbox.service import plan_estate

    if not args.path.exists():
        print(f"error: {args.path} does not exist", file=sys.stderr)
        return 2
    overrides = {}
    if args.max_per_wave:
        overrides["max_servers_per_wave"] = args.max_per_wave
    if args.production_first:
        overrides["non_production_first"] = False
    if args.region:
        overrides["region"] = args.region
    if args.option:
        overrides["sizing_option"] = args.option
    if args.no_safe_variant:
        overrides["use_safe_variant"] = False
    settings = PlanSettings(**overrides)
    try:
        result = plan_estate(
            args.path,
            estate=args.estate,
            settings=settings,
            allow_quarantine=args.allow_quarantine,
            store=not args.no_store,
            spec_folder=Path(tempfile.mkdtemp()) if args.no_store else None,
        )
    except InventoryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:  # e.g. the store refusing a plan
        print(f"error: {exc}", file=sys.stderr)
        return 1
    plan = result.plan
    if args.export:
        args.export.write_text(plan_to_json(plan))
    if args.format == "json":
        print(plan_to_json(plan))
        return 0
    print(render_sequence(plan))
    for line in sized_by_lines(plan):
        print(line)
    for warning in plan.warnings:
        print(f"warning: {warning}")
    if result.quarantined:
        print(f"note: {result.quarantined} record(s) quarantined and left out of the plan")
    if args.no_store:
        print("(not stored: --no-store)")
    else:
        print(f"\nStored plan {plan.estate} v{plan.version}; wave DAGs: "
              f"migrate__{plan.estate}__wave_01 .. wave_{len(plan.waves):02d} "
              f"(spec {result.spec_path})")
    if args.export:
        print(f"Exported the plan to {args.export}")
    return 0


def sized_by_lines(plan: object, listed: int = 8) -> list[str]:
    """Which model version (or rule) sized each server, grouped, servers named.

    The plan records it per server in ``sizing.method`` (``...+safe:ml (model
    migrationbox-sizing vN ...)`` when the champion's capacity was provisioned).
    """
    groups: dict[str, list[str]] = {}
    for server in getattr(plan, "servers", []):
        sizing = server.sizing
        if sizing is None:
            key = "not sized"
        elif "+safe:ml (" in sizing.method:
            key = sizing.method.split("+safe:ml (", 1)[1].rstrip(")")
        else:
            key = f"rules ({sizing.method})"
        groups.setdefault(key, []).append(server.server_id)
    lines = []
    for key, ids in sorted(groups.items()):
        shown = ", ".join(ids[:listed]) + (f" and {len(ids) - listed} more"
                                           if len(ids) > listed else "")
        lines.append(f"Sized by {key}: {len(ids)} server{'s' if len(ids) != 1 else ''} "
                     f"({shown})")
    return lines
