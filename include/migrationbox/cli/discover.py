"""``migrationbox discover --local``: describe this machine as a discovery record."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

ENVIRONMENTS = ("production", "staging", "test", "development")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "discover",
        help="write a discovery record for this machine (/proc, psutil, sockets)",
        description=(
            "Discover the local Linux machine: hardware, OS, listening services, "
            "established outbound connections (as network_dependencies) and a short "
            "performance sample. Prints JSON, or writes it to --output."
        ),
    )
    parser.add_argument("--local", action="store_true", required=True,
                        help="discover the machine this runs on (the only mode so far)")
    parser.add_argument("--output", "-o", metavar="FILE", help="write here instead of stdout")
    parser.add_argument("--environment", choices=ENVIRONMENTS, default="production")
    parser.add_argument("--role", help="e.g. web, api, database (free text)")
    parser.add_argument("--server-id", help="default: the short hostname")
    parser.add_argument(
        "--estate",
        metavar="PATH",
        help="an estate (folder/JSON/JSONL): peers that are its servers are not marked "
        "external; without it every peer is external",
    )
    parser.add_argument("--sample-seconds", type=float, default=1.0,
                        help="length of the CPU/memory/IO sample (default 1s)")
    parser.add_argument("--no-packages", action="store_true",
                        help="leave out the installed package list")
    parser.add_argument(
        "--endpoints", action="store_true",
        help="instead of the record, print the endpoints this machine seems to have "
        "(filesystems, listening databases, HTTP health URLs) as an endpoints file to "
        "edit and load with `migrationbox endpoints import`; nothing is registered",
    )
    parser.add_argument("--via", choices=("ssh", "local"), default="ssh",
                        help="with --endpoints: disks as ssh:// URIs (default) or file://")
    parser.add_argument("--ssh-user", default="root",
                        help="with --endpoints: the user in the ssh:// URIs (default root)")
    parser.add_argument("--ssh-conn-id", metavar="ID",
                        help="with --endpoints: the Airflow SSH connection to name "
                        "(default ssh_<server_id>)")
    parser.add_argument("--no-http-probe", action="store_true",
                        help="with --endpoints: do not probe listening ports for HTTP")
    parser.set_defaults(handler=run)


def run_endpoints(args: argparse.Namespace) -> int:
    """Print (or write) suggested endpoints: a file the person edits, never registered."""
    from migrationbox.endpoints.suggest import suggest_local_endpoints

    records = suggest_local_endpoints(
        server_id=args.server_id, via=args.via, ssh_user=args.ssh_user,
        ssh_conn_id=args.ssh_conn_id, probe_http=not args.no_http_probe,
    )
    text = json.dumps({"endpoints": records}, indent=2) + "\n"
    if args.output:
        _write_atomically(Path(args.output), text)
        print(f"wrote {args.output}: {len(records)} suggested endpoint(s); edit it, create "
              "the Airflow connections it names, then `migrationbox endpoints import "
              f"{args.output} --estate ESTATE`", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def run(args: argparse.Namespace) -> int:
    if args.endpoints:
        return run_endpoints(args)
    from pydantic import ValidationError

    from migrationbox.inventory.collector import collect_local
    from migrationbox.inventory.loaders import UnreadablePath
    from migrationbox.inventory.resolve import AddressBook
    from migrationbox.inventory.validation import validate_inventory

    book = None
    if args.estate:
        try:
            report = validate_inventory(args.estate, unknown_dependencies="ignore")
        except UnreadablePath as exc:
            print(f"migrationbox discover: cannot read estate {exc}", file=sys.stderr)
            return 2
        book = AddressBook.from_servers(report.valid)
    try:
        record = collect_local(
            environment=args.environment,
            role=args.role,
            server_id=args.server_id,
            sample_seconds=max(args.sample_seconds, 0.1),
            estate=book,
            include_packages=not args.no_packages,
        )
    except ValidationError as exc:  # a bug in the collector, or an odd --server-id
        print(f"migrationbox discover: the discovered record is invalid:\n{exc}",
              file=sys.stderr)
        return 1
    text = json.dumps(record, indent=2) + "\n"
    if args.output:
        _write_atomically(Path(args.output), text)
        print(f"wrote {args.output} ({record['server_id']}: "
              f"{len(record['applications'])} applications, "
              f"{len(record['network_dependencies'])} dependencies)", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0
