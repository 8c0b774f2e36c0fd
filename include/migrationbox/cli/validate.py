"""``migrationbox validate PATH``: check discovery records before planning.

Exit codes: 0 all records valid, 1 some records were quarantined, 2 the path (or the
quarantine folder) could not be used at all.
"""

from __future__ import annotations

import argparse
import json
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "validate",
        help="validate discovery JSON / JSON Lines / RVTools / Migration Hub CSV; "
        "list bad records and quarantine them",
        description=(
            "Validate a folder of discovery JSON files, a JSON file or a JSON Lines file, "
            "or RVTools / AWS Migration Hub import exports (.xlsx, .csv; docs/discovery.md). "
            "Each bad record is printed with its file, record (server_id or #index), field "
            "path and message; valid records still load. Exits 1 if any record was "
            "quarantined, 2 if the path cannot be read."
        ),
    )
    parser.add_argument("path", help="folder, .json, .jsonl, .xlsx or .csv file")
    parser.add_argument("--format", choices=("text", "json"), default="text")
    parser.add_argument(
        "--quarantine-dir",
        metavar="DIR",
        help="write each bad record and a reason file here (replaces a previous quarantine)",
    )
    parser.add_argument(
        "--unknown-dependencies",
        choices=("error", "warn", "ignore"),
        default="error",
        help="dependencies on hosts outside the estate (not marked external): "
        "quarantine the record (default), warn, or ignore",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from migrationbox.inventory.loaders import UnreadablePath
    from migrationbox.inventory.validation import validate_inventory, write_quarantine

    try:
        report = validate_inventory(args.path, unknown_dependencies=args.unknown_dependencies)
    except UnreadablePath as exc:
        print(f"migrationbox validate: cannot read {exc}", file=sys.stderr)
        return 2

    written = []
    if args.quarantine_dir and report.quarantined:
        try:
            written = write_quarantine(report, args.quarantine_dir)
        except OSError as exc:
            print(f"migrationbox validate: quarantine folder: {exc}", file=sys.stderr)
            return 2

    if args.format == "json":
        payload = report.to_dict()
        if args.quarantine_dir:
            payload["quarantine_dir"] = args.quarantine_dir
            payload["quarantine_files"] = [str(p) for p in written]
        json.dump(payload, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        for line in report.issue_lines():
            print(line)
        for notice in report.warnings:
            print(f"warning: {notice.file}  record {notice.record}  {notice.field}: "
                  f"{notice.message}")
        if written:
            print(f"quarantined records written to {args.quarantine_dir}")
        print(report.summary())
    return 1 if report.quarantined else 0
