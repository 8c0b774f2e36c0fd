"""``migrationbox demo``: the whole journey on the embedded default, end to end."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


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
    p.add_argument("--no-teams", action="store_true",
                   help="skip the Teams act (a command and the first gate's approval "
                        "through the bot endpoint, with a loopback tenant)")
    p.set_defaults(handler=_handle)


def run_conf_argument(text: str | None) -> dict[str, Any] | None:
    """The ``--conf`` JSON, checked as a wave run conf before anything starts.

    Raises ``RunConfError`` (an ``InputError``) naming what is wrong: not JSON (with
    line and column), not an object, or a key the run conf refuses. Checking here
    saves starting the platform for a run whose first task would fail on it.
    """
    from migrationbox.orchestration.runconf import RunConfError, parse_run_conf

    if not text:
        return None
    try:
        conf = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RunConfError(f"--conf is not JSON: {exc.msg} (column {exc.colno})") from None
    except (ValueError, RecursionError) as exc:  # integers of 4300+ digits, deep nesting
        raise RunConfError(f"--conf is not usable JSON: {exc}") from None
    parse_run_conf(conf)
    return conf


def _handle(args: argparse.Namespace) -> int:
    from migrationbox.errors import InputError
    from migrationbox.orchestration.demo import main_demo

    try:
        conf = run_conf_argument(args.conf)
    except InputError as exc:
        print(f"migrationbox demo: {exc}", file=sys.stderr)
        return 2
    return main_demo(
        args.estate_path,
        estate=args.estate,
        wave=args.wave,
        approve=not args.no_approve,
        keep_running=not args.stop,
        conf=conf,
        timeout=args.timeout,
        heal=not args.no_heal,
        teams=not args.no_teams,
    )
