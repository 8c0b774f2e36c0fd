"""``migrationbox users create|list|sync-roles``: people of the production profile.

Users live in the FAB auth manager of the production profile (the embedded default has
only the platform's admin). Passwords are read from standard input or a file, never from
the command line, where ``ps`` and shell history would show them.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "users",
        help="create and list the production profile's users (roles: viewer, operator, "
             "approver per estate, admin)",
        description=(
            "Users of the production profile's FAB auth manager (docs/access-control.md). "
            "viewer reads; operator triggers, pauses and clears runs; approver answers the "
            "approval gates of its estates' wave DAGs; admin does everything, connections "
            "and users included."
        ),
    )
    p.add_argument("--runtime-dir", type=Path, default=None,
                   help="runtime folder (default: $MIGRATIONBOX_HOME or .runtime)")
    actions = p.add_subparsers(dest="users_action", metavar="ACTION", required=True)

    create = actions.add_parser(
        "create", help="create a user (the password from stdin or --password-file)")
    create.add_argument("username")
    create.add_argument("--role", required=True, choices=("viewer", "operator", "approver",
                                                          "admin"))
    create.add_argument("--estate", action="append", default=[], metavar="ESTATE",
                        help="approver: an estate whose gates this user answers (repeat "
                             "for several)")
    create.add_argument("--heal-approvals", action="store_true",
                        help="approver: also decide the healer's risky remediations "
                             "(migrationbox_heal_approval)")
    create.add_argument("--password-file", type=Path, default=None,
                        help="read the password from this file (first line); default: "
                             "standard input, or a prompt on a terminal")
    create.add_argument("--email", default="")
    create.add_argument("--first-name", default="")
    create.add_argument("--last-name", default="")
    create.add_argument("--update", action="store_true",
                        help="the user exists: reset its password, roles and names")
    create.set_defaults(handler=_create)

    listing = actions.add_parser("list", help="list users and their FAB roles")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=_list)

    sync = actions.add_parser(
        "sync-roles", help="create or refresh the roles: an estate's approver role for a "
                           "group mapping of an identity provider (--estate), and the "
                           "rights on wave DAGs beyond wave 99 of estates planned since")
    sync.add_argument("--estate", action="append", default=[], metavar="ESTATE",
                      help="create this estate's approver role (repeat for several)")
    sync.add_argument("--heal-approvals", action="store_true",
                      help="create the role that decides the healer's remediations")
    sync.set_defaults(handler=_sync)


def _read_password(args: argparse.Namespace) -> str:
    from migrationbox.platform.auth import AuthError

    if args.password_file is not None:
        try:
            text = args.password_file.read_text()
        except OSError as exc:
            raise AuthError(f"cannot read --password-file {args.password_file}: "
                            f"{exc.strerror or exc}") from exc
        return text.splitlines()[0] if text.strip() else ""
    if sys.stdin.isatty():
        first = getpass.getpass(f"password for {args.username}: ")
        if getpass.getpass("again: ") != first:
            raise AuthError("the two passwords differ")
        return first
    return sys.stdin.read()


def _env(args: argparse.Namespace) -> dict[str, str]:
    import os

    from migrationbox.platform.auth import FAB_AUTH_MANAGER, AuthError
    from migrationbox.platform.supervisor import Platform, PlatformError

    platform = Platform(args.runtime_dir)
    try:
        env = platform.env()
    except PlatformError as exc:
        raise AuthError(str(exc)) from exc
    if env.get("AIRFLOW__CORE__AUTH_MANAGER") != FAB_AUTH_MANAGER:
        raise AuthError("users belong to the production profile (FAB auth manager); the "
                        "embedded default runs SimpleAuthManager, whose only user is the "
                        "platform's admin (start with --profile production)")
    if platform.read_state() is None and not platform.airflow_home.joinpath(
            "airflow.cfg").exists():
        raise AuthError(f"no platform in {platform.runtime_dir}: start the production "
                        "profile once (migrationbox platform up --profile production)")
    return {**os.environ, **env}


def _create(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from migrationbox.platform.auth import AuthError, UserRequest, run_fab, validate_password

    try:
        request = UserRequest(
            username=args.username, role=args.role, estates=args.estate,
            heal_approvals=args.heal_approvals, first_name=args.first_name,
            last_name=args.last_name, email=args.email, update=args.update)
    except ValidationError as exc:
        for error in exc.errors():
            print(f"error: {error['msg'].removeprefix('Value error, ')}", file=sys.stderr)
        return 2
    try:
        password = validate_password(_read_password(args))
        env = _env(args)
        answer = run_fab(env, {"op": "upsert_user", "user": request.model_dump(),
                               "password": password})
    except AuthError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"user {answer['user']} {answer['action']}: roles {', '.join(answer['roles'])}")
    return 0


def _list(args: argparse.Namespace) -> int:
    from migrationbox.platform.auth import AuthError, run_fab

    try:
        answer = run_fab(_env(args), {"op": "list_users"})
    except AuthError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(answer["users"], indent=2))
        return 0
    for user in answer["users"]:
        state = "" if user["active"] else "  (inactive)"
        print(f"{user['username']:<24} {', '.join(user['roles'])}{state}")
    return 0


def _sync(args: argparse.Namespace) -> int:
    from migrationbox.platform.auth import AuthError, run_fab

    try:
        answer = run_fab(_env(args), {"op": "sync_roles", "estates": args.estate,
                                      "heal_approvals": args.heal_approvals})
    except AuthError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for role, count in sorted(answer["roles"].items()):
        print(f"{role:<40} {count} permissions")
    return 0
