"""``migrationbox reports list|show``: a wave run's reports, wherever a task wrote them.

``list --estate E --wave N`` prints the wave's runs; with ``--run R`` the files of that
run and where each is (``local``, ``shared`` or both). ``show --estate E --wave N --run R
NAME`` prints one file (``--path``: the local path holding its current version instead).
With ``shared_root`` set the reports of every worker host are read from shared storage
(:mod:`migrationbox.run_reports`); without it, from this host's artifacts folder.
Exit 2 with the reason when a report, a key or shared storage fails.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Iterator
from typing import Any


@contextlib.contextmanager
def _output_to_stderr() -> Iterator[None]:
    """While object storage is reached, whatever Airflow's logging prints (it logs to
    standard output) goes to standard error: standard output is the report alone, so
    ``reports show ... | jq`` works."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "reports", help="a wave run's reports (local or shared storage)",
        description="List and print the reports a wave run's tasks wrote, on any host.")
    action = parser.add_subparsers(dest="reports_action", metavar="ACTION", required=True)
    ls = action.add_parser("list", help="the runs of a wave, or the files of one run")
    ls.add_argument("--estate", required=True)
    ls.add_argument("--wave", type=int, required=True)
    ls.add_argument("--run", help="DAG run id (default: list the wave's runs)")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(handler=_list)
    show = action.add_parser("show", help="print one report file")
    show.add_argument("--estate", required=True)
    show.add_argument("--wave", type=int, required=True)
    show.add_argument("--run", required=True, help="DAG run id")
    show.add_argument("name", help="file in the run's folder, e.g. preflight.json")
    show.add_argument("--path", action="store_true",
                      help="print the local path of its current version, not its content")
    show.set_defaults(handler=_show)


def _list(args: argparse.Namespace) -> int:
    from migrationbox import run_reports
    from migrationbox.errors import MigrationBoxError

    try:
        with _output_to_stderr():
            runs = run_reports.list_runs(args.estate, args.wave) if args.run is None else []
            files = run_reports.list_files(args.estate, args.wave, args.run) \
                if args.run is not None else []
    except MigrationBoxError as exc:
        print(f"migrationbox reports list: {exc}", file=sys.stderr)
        return 2
    if args.run is None:
        for line in [json.dumps(runs)] if args.json else runs:
            print(line)
        return 0
    if args.json:
        print(json.dumps([{"name": f.name, "size": f.size, "where": f.where}
                          for f in files], indent=1))
        return 0
    for f in files:
        print(f"{f.name}\t{f.size}\t{f.where}")
    return 0


def _show(args: argparse.Namespace) -> int:
    from migrationbox import run_reports
    from migrationbox.errors import MigrationBoxError

    try:
        with _output_to_stderr():
            path = run_reports.report_path(args.estate, args.wave, args.run, args.name)
    except MigrationBoxError as exc:
        print(f"migrationbox reports show: {exc}", file=sys.stderr)
        return 2
    if args.path:
        print(path)
        return 0
    sys.stdout.buffer.write(path.read_bytes())
    sys.stdout.flush()
    return 0
