"""``migrationbox heal incidents [list|show ID]`` and ``migrationbox heal watch``.

``list`` prints one line per incident (newest first; ``--estate``, ``--status``,
``--json``); ``show ID`` prints the stored report in the plan's template (Markdown), or the
incident as JSON with ``--json``. Unknown ids exit 2 with the id in the message.

``watch`` runs the estate watch once (what the Asset watcher checks in the triggerer,
:mod:`migrationbox.healer.watch`) and prints each reason it would wake the healer, so an
operator can see what the healer sees; exit 0 when quiet, 1 when something is off.

``backup --estate E [--server S]`` takes a backup of each migrated database of the estate's
completed waves (what ``restore_from_backup`` restores corrupt rows from, and what the
integrity check compares against); ``--list`` shows the latest one per database.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "heal", help="the autonomous healer: incidents",
        description="Inspect the healer's incidents (sensing runs in the heal DAG).")
    area = parser.add_subparsers(dest="heal_area", metavar="AREA", required=True)
    incidents = area.add_parser("incidents", help="list and show incident reports")
    actions = incidents.add_subparsers(dest="incident_action", metavar="ACTION")
    incidents.set_defaults(handler=_list, estate=None, status=None, json=False, limit=50,
                           url=None)
    ls = actions.add_parser("list", help="one line per incident, newest first")
    ls.add_argument("--estate")
    ls.add_argument("--status", choices=["open", "awaiting_approval", "alerted", "resolved",
                                         "failed"])
    ls.add_argument("--limit", type=int, default=50)
    ls.add_argument("--json", action="store_true")
    ls.add_argument("--url", help="SQLAlchemy URL of the store (default: the configured one)")
    ls.set_defaults(handler=_list)
    show = actions.add_parser("show", help="print one incident report")
    show.add_argument("incident_id")
    show.add_argument("--json", action="store_true")
    show.add_argument("--url", help="SQLAlchemy URL of the store")
    show.set_defaults(handler=_show)
    watch = area.add_parser("watch", help="one estate-watch check: what would wake the healer")
    watch.add_argument("--estate", action="append", dest="estates", metavar="ESTATE",
                       help="estate to check (repeat; default: every estate with a "
                            "completed wave)")
    watch.add_argument("--json", action="store_true")
    watch.set_defaults(handler=_watch)
    bk = area.add_parser("backup", help="back up the migrated databases of an estate")
    bk.add_argument("--estate", required=True)
    bk.add_argument("--server", action="append", dest="servers", metavar="SERVER_ID",
                    help="only this server's database (repeat)")
    bk.add_argument("--list", action="store_true", help="show the latest backups, take none")
    bk.set_defaults(handler=_backup)


def _store(url: str | None) -> Any:
    from migrationbox.healer.store import IncidentStore
    from migrationbox.store.db import engine

    return IncidentStore(engine(url))


def _list(args: argparse.Namespace) -> int:
    rows = _store(args.url).list(estate=args.estate, status=args.status, limit=args.limit)
    if args.json:
        print(json.dumps([r.as_dict() for r in rows], indent=2))
        return 0
    if not rows:
        print("no incidents")
        return 0
    for r in rows:
        print(f"{r.incident_id}  {r.detected_at:%Y-%m-%d %H:%M:%S}  {r.severity}  "
              f"{r.status:<17}  {r.estate}/{r.resource}  {r.anomaly_type}  {r.title}")
    return 0


def _show(args: argparse.Namespace) -> int:
    found = _store(args.url).get(args.incident_id)
    if found is None:
        print(f"migrationbox heal: no incident {args.incident_id!r}", file=sys.stderr)
        return 2
    incident, report = found
    if args.json:
        print(incident.model_dump_json(indent=2))
    else:
        from migrationbox.healer.incident import render_markdown

        print(report or render_markdown(incident))
    return 0


def _watch(args: argparse.Namespace) -> int:
    import os

    from migrationbox.healer.jobs import watched_estates
    from migrationbox.healer.watch import EstateWatch

    if "AIRFLOW_CONN_AWS_DEFAULT" not in os.environ:
        # the local platform's connections, as `eval "$(migrationbox platform env)"` sets
        from migrationbox.platform.supervisor import platform_env

        for key, value in platform_env().items():
            os.environ.setdefault(key, value)
    estates = args.estates or watched_estates()
    result = EstateWatch().check(estates)
    if args.json:
        print(json.dumps({"estates": estates, "targets": result.targets,
                          "signals": [s.to_dict() for s in result.signals],
                          "problems": result.problems}, indent=2))
    else:
        for problem in result.problems:
            print(f"problem: {problem}")
        for sig in result.signals:
            print(f"{sig.estate}/{sig.server_id}  {sig.kind:<9}  {sig.detail}")
        if not result.signals:
            print(f"quiet: {result.targets} target(s) in "
                  f"{', '.join(estates) or 'no estate with a completed wave'}")
    return 1 if result.signals else 0


def _backup(args: argparse.Namespace) -> int:
    from migrationbox.healer import backup
    from migrationbox.healer.sensing import load_targets

    targets = [t for t in load_targets(args.estate) if t.database_url
               and (not args.servers or t.server_id in args.servers)]
    if not targets:
        print(f"migrationbox heal: estate {args.estate!r} has no migrated database"
              + (f" among {', '.join(args.servers)}" if args.servers else "")
              + " (only completed waves count)", file=sys.stderr)
        return 2
    for t in targets:
        if args.list:
            latest = backup.latest_backup(args.estate, t.server_id)
            when = f"{latest.taken_at:%Y-%m-%d %H:%M:%S}" if latest else ""
            print(f"{t.server_id}  " + (f"{latest.path}  taken {when} UTC" if latest
                                        else "no backup"))
            continue
        taken = backup.take_backup(t.database_url or "", args.estate, t.server_id)
        rows = sum(int(e["rows"]) for e in taken.manifest.values())
        print(f"{t.server_id}  {len(taken.manifest)} table(s), {rows} row(s) -> {taken.path}")
    return 0
