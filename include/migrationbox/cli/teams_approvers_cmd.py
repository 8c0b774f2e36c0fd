"""``migrationbox teams approvers set|list``: who may answer an estate's gates from Teams.

``set ESTATE USER[:ROLE] ...`` replaces the estate's list (ROLE ``primary``, the default,
or ``backup``: who an unanswered urgent gate escalates to); USER is the person's Entra
object id (what Teams sends as ``aadObjectId``, the sure key) or sign-in name.
``--name USER=DISPLAY`` gives the name cards show. ``set ESTATE`` with no users clears
the list (then nobody may answer from Teams). ``list ESTATE`` prints it.

The bot's own ``teams`` command (``cli/teams_cmd.py``) adds these as its ``approvers``
action through ``add_approvers_action``. Exit 2 with the reason on bad input.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from migrationbox.errors import InputError

ROLES = ("primary", "backup")


class ApproverSpecError(InputError):
    """A ``USER[:ROLE]`` or ``USER=NAME`` argument that cannot be used."""


def parse_approver(text: str) -> tuple[str, str]:
    """``USER[:ROLE]`` -> ``(user, role)``. Entra object ids and sign-in names hold no
    colon, so anything after one must be a role."""
    value = text.strip()
    chosen = "primary"
    if ":" in value:
        value, _, role = value.rpartition(":")
        value = value.strip()
        chosen = role.strip().lower()
        if chosen not in ROLES:
            raise ApproverSpecError(f"{text!r}: role {role!r} is not one of "
                                    f"{', '.join(ROLES)}")
    if not value:
        raise ApproverSpecError(f"{text!r}: the user is empty")
    if len(value) > 255 or ":" in value or any(c.isspace() or not c.isprintable()
                                               for c in value):
        raise ApproverSpecError(f"{text!r}: a user is one word of at most 255 characters "
                                "(Entra object id or sign-in name)")
    return value, chosen


def parse_names(items: list[str]) -> dict[str, str]:
    names: dict[str, str] = {}
    for item in items:
        key, sep, name = item.partition("=")
        if not sep or not key.strip() or not name.strip():
            raise ApproverSpecError(f"--name {item!r}: expected USER=DISPLAY NAME")
        names[key.strip().lower()] = name.strip()[:255]
    return names


def add_approvers_action(actions: Any) -> None:
    """Add ``approvers set|list`` under the ``teams`` command's actions."""
    parser = actions.add_parser(
        "approvers", help="who may answer an estate's gates from Teams",
        description="Set or list the Teams approvers of an estate.")
    sub = parser.add_subparsers(dest="approvers_action", metavar="ACTION", required=True)
    put = sub.add_parser("set", help="replace an estate's approvers")
    put.add_argument("estate")
    put.add_argument("users", nargs="*", metavar="USER[:ROLE]",
                     help="Entra object id or sign-in name; role primary (default) or backup")
    put.add_argument("--name", action="append", default=[], metavar="USER=DISPLAY",
                     help="the name cards show for USER")
    put.add_argument("--store-url", help="store URL (default: the site's store_url)")
    put.set_defaults(handler=_set)
    show = sub.add_parser("list", help="print an estate's approvers")
    show.add_argument("estate")
    show.add_argument("--json", action="store_true")
    show.add_argument("--store-url", help="store URL (default: the site's store_url)")
    show.set_defaults(handler=_list)


def _set(args: argparse.Namespace) -> int:
    from migrationbox.store.db import session_scope
    from migrationbox.teams import state

    try:
        parsed = [parse_approver(u) for u in args.users]
        names = parse_names(args.name)
    except ApproverSpecError as exc:
        print(f"teams approvers: {exc}", file=sys.stderr)
        return 2
    keys = [k.lower() for k, _ in parsed]
    if len(set(keys)) != len(keys):
        print(f"teams approvers: a user is listed twice: {args.users}", file=sys.stderr)
        return 2
    unknown = set(names) - set(keys)
    if unknown:
        print(f"teams approvers: --name for users not listed: {sorted(unknown)}",
              file=sys.stderr)
        return 2
    try:
        with session_scope(args.store_url) as session:
            result = state.set_approvers(
                session, args.estate, [(k, names.get(k.lower()), r) for k, r in parsed])
    except ValueError as exc:
        print(f"teams approvers: {exc}", file=sys.stderr)
        return 2
    if not result:
        print(f"{args.estate}: no approvers (nobody may answer its gates from Teams)")
    for a in result:
        print(f"{args.estate}: {a.user_key} ({a.role})"
              + (f" shown as {a.display_name}" if a.display_name else ""))
    return 0


def _list(args: argparse.Namespace) -> int:
    from migrationbox.store.db import session_scope
    from migrationbox.teams import state

    with session_scope(args.store_url, read_only=True) as session:
        found = state.approvers_of(session, args.estate)
    if args.json:
        print(json.dumps([{"user": a.user_key, "role": a.role, "name": a.display_name}
                          for a in found], indent=2))
        return 0
    if not found:
        print(f"{args.estate}: no approvers")
    for a in found:
        print(f"{a.user_key}\t{a.role}\t{a.display_name or ''}")
    return 0
