"""``migrationbox platform up|down|status|env``: the local platform (emulator, lab, Airflow)."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "platform",
        help="start, stop or inspect the local platform (AWS emulator, lab, Airflow)",
        description=(
            "The embedded default runtime: a moto AWS emulator, the local lab and Airflow "
            "(api-server, scheduler, dag-processor, triggerer; SQLite, LocalExecutor), all on "
            "127.0.0.1, each in its own process group, state under the runtime folder."
        ),
    )
    p.add_argument("--runtime-dir", type=Path, default=None,
                   help="runtime folder (default: $MIGRATIONBOX_HOME or .runtime)")
    actions = p.add_subparsers(dest="platform_action", metavar="ACTION", required=True)

    up = actions.add_parser("up", help="start the platform and leave it running")
    up.add_argument("--api-port", type=int, default=None,
                    help="Airflow API/UI port (default $MIGRATIONBOX_API_PORT or 8080; "
                         "0 = any free)")
    up.add_argument("--emulator-port", type=int, default=None,
                    help="AWS emulator port (default $MIGRATIONBOX_EMULATOR_PORT or 4566; "
                         "0 = any free)")
    up.add_argument("--lab", type=Path, default=None, metavar="ESTATE",
                    help="also start the local lab for this estate (folder of discovery JSON)")
    up.add_argument("--timeout", type=float, default=300.0,
                    help="seconds to wait for Airflow to become healthy")
    up.add_argument("--profile", choices=("embedded", "production"), default=None,
                    help="embedded: SQLite + LocalExecutor; production: PostgreSQL + "
                         "CeleryExecutor with Redis, two schedulers, two workers "
                         "(docs/production.md); default: the platform_profile setting "
                         "(embedded)")
    up.set_defaults(handler=_up)

    down = actions.add_parser("down", help="stop everything the platform started")
    down.set_defaults(handler=_down)

    status = actions.add_parser("status", help="show what runs and whether Airflow is healthy")
    status.add_argument("--json", action="store_true", help="print the status as JSON")
    status.set_defaults(handler=_status)

    env = actions.add_parser("env", help="print the environment that points tools at the platform")
    env.add_argument("--format", choices=("shell", "json"), default="shell",
                     help="shell: `export` lines for eval; json: one object")
    env.set_defaults(handler=_env)


def _platform(args: argparse.Namespace, **kwargs: object):  # type: ignore[no-untyped-def]
    from migrationbox.platform.supervisor import Platform

    return Platform(args.runtime_dir, **kwargs)  # type: ignore[arg-type]


def _up(args: argparse.Namespace) -> int:
    from migrationbox.platform.supervisor import PlatformError

    platform = _platform(
        args,
        api_port=args.api_port,
        emulator_port=args.emulator_port,
        startup_timeout=args.timeout,
        profile=args.profile,
    )
    already = platform.running_state() is not None
    print("MigrationBox platform: " + ("already running" if already else "starting ..."),
          flush=True)
    try:
        state = platform.up(with_lab_estate=args.lab)
    except (PlatformError, RuntimeError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        print(f"logs: {platform.logs_dir}", file=sys.stderr)
        return 1
    # the embedded default prints its admin/admin login; the production profile's
    # generated password stays in its 0600 file (docs/access-control.md)
    print(f"  Airflow UI and REST API  {state.api_url}   ({platform.login_hint()})")
    print(f"  AWS emulator             {state.emulator_url}")
    if state.teams_url:
        print(f"  Teams bot endpoint       {state.teams_url}/api/messages  "
              "(docs/teams-endpoint.md: register it in a tenant)")
    if state.labs:
        print(f"  lab estates              {', '.join(state.labs)}")
    print(f"  runtime folder           {state.runtime_dir}")
    print(f"  logs                     {platform.logs_dir}")
    print("  stop with `make down` (or `migrationbox platform down`)")
    return 0


def _down(args: argparse.Namespace) -> int:
    from migrationbox.platform.supervisor import PlatformError

    platform = _platform(args)
    try:
        report = platform.down()
    except PlatformError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if not report.stopped and not report.labs and not report.leftovers_killed:
        print("MigrationBox platform: nothing was running")
        return 0
    print(f"MigrationBox platform stopped: {', '.join(report.stopped) or '-'}")
    if report.labs:
        print(f"  labs stopped: {', '.join(report.labs)}")
    if report.leftovers_killed:
        print(f"  stray processes killed: {', '.join(map(str, report.leftovers_killed))}")
    return 0


def _status(args: argparse.Namespace) -> int:
    platform = _platform(args)
    status = platform.status()
    if args.json:
        print(status.model_dump_json(indent=2))
        return 0 if status.running else 1
    if status.state is None:
        print("MigrationBox platform: not running")
        return 1
    print(f"MigrationBox platform: {'running' if status.running else 'NOT healthy'}"
          f"{'' if status.problem is None else ' - ' + status.problem}")
    print(f"  Airflow {status.state.api_url}   emulator {status.state.emulator_url}")
    for component in status.components:
        print(f"  {component.name:<24} pid {component.pid:<8} "
              f"{'running' if component.running else 'stopped'}")
    if status.health:
        parts = []
        for key, value in status.health.items():
            if isinstance(value, dict):
                parts.append(f"{key}={value.get('status')}")
        print("  health: " + ", ".join(parts))
    return 0 if status.running else 1


def _env(args: argparse.Namespace) -> int:
    from migrationbox.platform.supervisor import platform_env

    env = platform_env(args.runtime_dir)
    if args.format == "json":
        print(json.dumps(env, indent=2, sort_keys=True))
    else:
        for key in sorted(env):
            print(f"export {key}={shlex.quote(env[key])}")
    return 0
