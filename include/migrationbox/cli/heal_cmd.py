"""``migrationbox heal incidents [list|show ID]``: the healer's incident reports.

``list`` prints one line per incident (newest first; ``--estate``, ``--status``,
``--json``); ``show ID`` prints the stored report in the plan's template (Markdown), or the
incident as JSON with ``--json``. Unknown ids exit 2 with the id in the message.
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
