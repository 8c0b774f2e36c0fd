"""``migrationbox lab``: the local lab that stands in for an estate and its target.

    migrationbox lab up [--estate NAME] (--plan-json FILE | --servers-from-estate PATH)
                        [--data-scale-mb N] [--db auto|postgresql|sqlite]
    migrationbox lab status [--estate NAME]
    migrationbox lab fault SERVER --health fail|ok|slow [--side target|source] [--estate NAME]
    migrationbox lab down [--estate NAME] [--purge]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "lab",
        help="start, inspect, fault or stop the local lab (source servers and target data plane)",
        description=(
            "The lab gives every server of an estate a source disk folder, a source "
            "database (database servers) and source/target HTTP services (web, api, load "
            "balancers) on loopback, plus empty targets, and writes the endpoints the "
            "phases read."
        ),
    )
    p.add_argument("--root", type=Path, default=None,
                   help="lab folder (default <runtime dir>/lab)")
    lab_sub = p.add_subparsers(dest="lab_command", metavar="ACTION", required=True)

    up = lab_sub.add_parser("up", help="create the lab for an estate (idempotent)")
    up.add_argument("--estate", default=None,
                    help="estate name (default: the plan's estate, or the records' folder name)")
    src = up.add_mutually_exclusive_group(required=True)
    src.add_argument("--plan-json", type=Path, help="an exported plan (PlanDocument JSON)")
    src.add_argument("--servers-from-estate", type=Path,
                     help="discovery records: a folder of JSON, a .json or a .jsonl file")
    up.add_argument("--data-scale-mb", type=float, default=None,
                    help="largest source disk per server, in MiB (default 4)")
    up.add_argument("--db", choices=("auto", "postgresql", "sqlite"), default="auto",
                    help="lab database backend (auto: PostgreSQL on 127.0.0.1:5432 if reachable)")
    up.set_defaults(handler=_up)

    down = lab_sub.add_parser("down", help="stop the lab's services")
    down.add_argument("--estate", default=None)
    down.add_argument("--purge", action="store_true",
                      help="also drop the lab databases and delete the lab folder")
    down.set_defaults(handler=_down)

    status = lab_sub.add_parser("status", help="show the lab's services and request counts")
    status.add_argument("--estate", default=None)
    status.set_defaults(handler=_status)

    fault = lab_sub.add_parser("fault", help="inject or clear a fault in a lab HTTP service")
    fault.add_argument("server", help="server_id of a web/api/load-balancer server")
    fault.add_argument("--health", required=True, choices=("fail", "ok", "slow"))
    fault.add_argument("--side", choices=("target", "source"), default="target")
    fault.add_argument("--latency-ms", type=int, default=None)
    fault.add_argument("--error-rate", type=float, default=None,
                       help="share of requests answered with 5xx (0..1)")
    fault.add_argument("--estate", default=None)
    fault.set_defaults(handler=_fault)


def _lab_root(args: argparse.Namespace) -> Path:
    from migrationbox.config import runtime_dir

    return args.root or runtime_dir() / "lab"


def _estate(args: argparse.Namespace) -> str:
    """The ``--estate`` given, or the only lab there is."""
    if args.estate:
        return str(args.estate)
    root = _lab_root(args)
    labs = sorted(p.name for p in root.glob("*") if (p / "lab.json").exists()) if root.exists() \
        else []
    if len(labs) == 1:
        return labs[0]
    raise SystemExit(
        f"error: --estate is required ({'labs: ' + ', '.join(labs) if labs else 'no lab found'}"
        f" under {root})"
    )


def _up(args: argparse.Namespace) -> int:
    from migrationbox.lab.lab import DEFAULT_DATA_SCALE_MB, Lab, LabError

    if args.plan_json:
        from migrationbox.planning.models import PlanDocument

        try:
            plan = PlanDocument.model_validate_json(args.plan_json.read_text())
        except FileNotFoundError:
            print(f"error: {args.plan_json} does not exist", file=sys.stderr)
            return 2
        except OSError as exc:  # a folder, no permission
            print(f"error: cannot read {args.plan_json}: {exc.strerror or exc}", file=sys.stderr)
            return 2
        except ValueError as exc:
            print(f"error: {args.plan_json} is not a valid plan: {exc}", file=sys.stderr)
            return 2
        if args.estate and plan.estate != args.estate:
            print(f"error: the plan is for estate {plan.estate!r}, not {args.estate!r}; phases "
                  "find the lab by the plan's estate", file=sys.stderr)
            return 2
        estate = plan.estate
        servers: object = plan
    else:
        from migrationbox.inventory.loaders import UnreadablePath
        from migrationbox.inventory.validation import estate_name_for, validate_inventory

        try:
            report = validate_inventory(args.servers_from_estate, unknown_dependencies="warn")
        except UnreadablePath as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        if report.quarantined:
            print(f"note: {len(report.quarantined)} records quarantined and left out of the "
                  "lab (run `migrationbox validate` for details)", file=sys.stderr)
        if not report.valid:
            print("error: no valid records", file=sys.stderr)
            return 2
        servers = report.valid
        estate = args.estate or estate_name_for(args.servers_from_estate)
    lab = Lab(estate, servers, root=args.root,
              data_scale_mb=args.data_scale_mb or DEFAULT_DATA_SCALE_MB, db_backend=args.db)
    try:
        endpoints = lab.up()
    except LabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    st = lab.status()
    kinds: dict[str, int] = {}
    for e in endpoints:
        kinds[e.kind] = kinds.get(e.kind, 0) + 1
    print(f"lab {estate}: {len(lab.servers)} servers, "
          + ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
          + f"; databases on {st['db_backend']} ({st['db_backend_reason']})")
    print(f"  services pid {st['pid']}, control {st['control_url']}")
    print(f"  endpoints: {lab.endpoints_path}")
    return 0


def _down(args: argparse.Namespace) -> int:
    from migrationbox.lab.lab import Lab, LabError

    try:
        lab = Lab.attach(_estate(args), root=args.root)
    except LabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    out = lab.down(purge=args.purge)
    stopped = f"stopped pid {out['stopped_pid']}" if out["stopped_pid"] else "was not running"
    print(f"lab {lab.estate}: {stopped}"
          + (f"; purged ({len(out['dropped_databases'])} databases dropped)" if args.purge
             else ""))
    return 0


def _status(args: argparse.Namespace) -> int:
    from migrationbox.lab.lab import Lab, LabError

    try:
        lab = Lab.attach(_estate(args), root=args.root)
    except LabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(lab.status(), indent=2))
    return 0


def _fault(args: argparse.Namespace) -> int:
    from migrationbox.lab.lab import Lab, LabError

    try:
        lab = Lab.attach(_estate(args), root=args.root)
        state = lab.fault(args.server, args.health, side=args.side, latency_ms=args.latency_ms,
                          error_rate=args.error_rate)
    except LabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{state['name']}: health={state['health']} latency_ms={state['latency_ms']} "
          f"error_rate={state['error_rate']}")
    return 0
