"""The ``migrationbox`` command.

Each sub-command lives in its own module under ``migrationbox.cli`` and exposes
``register(subparsers)``; heavy imports happen inside the handlers so that ``--help``
stays instant.
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMAND_MODULES = (
    "validate",
    "discover",
    "plan",
    "store_cmd",
    "platform_cmd",
    "lab_cmd",
    "demo_cmd",
    "detect",
    "size",
    "heal_cmd",
    "endpoints_cmd",
    "users_cmd",
    "reports_cmd",
    "teams_cmd",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="migrationbox",
        description="Plan and run migrations of on-premise servers to the cloud on Airflow.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"migrationbox.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"migrationbox.cli.{name}":
                continue  # command not built yet
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
