"""``migrationbox endpoints import|list|check``: register and try an estate's endpoints.

Exit codes: ``import`` 0 when every record was stored, 1 when some were quarantined
(the others are stored), 2 when the file or the estate cannot be used at all;
``check`` 0 when every endpoint passed, 1 when any failed; ``list`` 0, or 2 for an
estate the store does not have.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "endpoints",
        help="register, list and check how to reach an estate's servers",
        description=(
            "Endpoints say how to reach each server's disks (file:// or ssh:// with an "
            "Airflow SSH connection), databases (an Airflow connection id) and health URLs. "
            "See docs/endpoints.md for the file format."
        ),
    )
    actions = parser.add_subparsers(dest="endpoints_action", metavar="ACTION", required=True)

    imp = actions.add_parser(
        "import", help="register endpoints from a JSON or CSV file",
        description="Validate every record; store the valid ones (each named server's "
        "endpoints are replaced), quarantine the others with their server and field.")
    imp.add_argument("file", help="endpoints file (.json or .csv)")
    imp.add_argument("--estate", required=True)
    imp.add_argument("--json", action="store_true", help="print the report as JSON")
    imp.set_defaults(handler=_import)

    lst = actions.add_parser("list", help="list the registered endpoints of an estate")
    lst.add_argument("--estate", required=True)
    lst.add_argument("--server", help="only this server")
    lst.add_argument("--json", action="store_true",
                     help="print an endpoints file (importable as it is)")
    lst.set_defaults(handler=_list)

    chk = actions.add_parser(
        "check", help="try each endpoint: reachable, authenticated, readable, room",
        description="Connect to every endpoint (TCP, SSH with the host key pinned, database "
        "login, HTTP), check the source can be read and the target has room. Prints what "
        "is wrong per server; exits 1 when anything failed.")
    chk.add_argument("--estate", required=True)
    chk.add_argument("--server", help="only this server")
    chk.add_argument("--json", action="store_true")
    chk.set_defaults(handler=_check)


def _err(action: str, message: str) -> int:
    print(f"migrationbox endpoints {action}: {message}", file=sys.stderr)
    return 2


def _import(args: argparse.Namespace) -> int:
    from migrationbox.endpoints.registry import import_records, read_file
    from migrationbox.errors import MigrationBoxError
    from migrationbox.store.db import session_scope

    try:
        file_estate, records = read_file(args.file)
        with session_scope() as session:
            report = import_records(session, args.estate, records, args.file, file_estate)
    except MigrationBoxError as exc:
        return _err("import", str(exc))
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        for line in report.issue_lines():
            print(f"  quarantined  {line}")
        print(report.summary())
    return 0 if report.ok else 1


def _stored(args: argparse.Namespace) -> list[Any] | None:
    from migrationbox.endpoints.model import Endpoint
    from migrationbox.store import repository
    from migrationbox.store.db import session_scope

    with session_scope(read_only=True) as session:
        if not repository.server_ids(session, args.estate):
            return None
        rows = repository.endpoints(session, args.estate, args.server)
    return [Endpoint(r.server_id, r.kind, r.name, r.source_uri, r.target_uri, dict(r.details))
            for r in rows]


def _list(args: argparse.Namespace) -> int:
    found = _stored(args)
    if found is None:
        return _err("list", f"estate {args.estate!r} is not in the store")
    if args.json:
        print(json.dumps({"estate": args.estate, "endpoints": [e.to_dict() for e in found]},
                         indent=2))
        return 0
    if not found:
        print(f"estate {args.estate}: no endpoints registered"
              + (f" for server {args.server}" if args.server else ""))
        return 0
    for e in found:
        via = e.details.get("ssh_conn_id") or e.details.get("conn_id")
        print(f"{e.server_id:<20} {e.kind:<9} {e.name:<14} {e.source_uri or '-'}"
              + (f"  (connection {via})" if via else "")
              + (f"  -> {e.target_uri}" if e.target_uri else ""))
    print(f"{len(found)} endpoint(s)")
    return 0


def _check(args: argparse.Namespace) -> int:
    from migrationbox.endpoints.checks import check_endpoints, render_checks

    found = _stored(args)
    if found is None:
        return _err("check", f"estate {args.estate!r} is not in the store")
    if not found:
        return _err("check", f"estate {args.estate!r} has no endpoints registered"
                    + (f" for server {args.server}" if args.server else ""))
    checks = check_endpoints(found)
    if args.json:
        print(json.dumps({"estate": args.estate, "ok": all(c.ok for c in checks),
                          "endpoints": [c.to_dict() for c in checks]}, indent=2))
    else:
        print("\n".join(render_checks(checks)))
    return 0 if all(c.ok for c in checks) else 1
