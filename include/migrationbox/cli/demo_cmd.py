"""``migrationbox demo``: the whole journey on the embedded default, end to end."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="start the platform, plan the sample estate and migrate wave 1 through Airflow",
    )
    p.add_argument("--estate-path", default=None, help="inventory to plan (default: sample)")
    p.add_argument("--estate", default="sample", help="estate name (default: sample)")
    p.add_argument("--wave", type=int, default=1, help="wave to migrate (default 1)")
    p.add_argument("--no-approve", action="store_true",
                   help="do not answer approval gates; answer them in the UI yourself")
    p.add_argument("--stop", action="store_true", help="stop the platform at the end")
    p.add_argument("--conf", default=None, help="extra DAG run conf as JSON")
    p.add_argument("--timeout", type=float, default=1800)
    p.add_argument("--no-heal", action="store_true",
                   help="skip the last act (a fault injected and healed by migrationbox_heal)")
    p.set_defaults(handler=_handle)


def _handle(args: argparse.Namespace) -> int:
    from migrationbox.orchestration.demo import main_demo

    return main_demo(
        args.estate_path,
        estate=args.estate,
        wave=args.wave,
        approve=not args.no_approve,
        keep_running=not args.stop,
        conf=json.loads(args.conf) if args.conf else None,
        timeout=args.timeout,
        heal=not args.no_heal,
    )
