"""``migrationbox store upgrade|current|info``: look after the MigrationBox database.

``current`` and ``info`` never change the database (not even the automatic upgrade the
library does on first use), so they are safe to point at a production store.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "store",
        help="migrate and inspect the MigrationBox store",
        description="Migrate and inspect the MigrationBox store (SQLite or PostgreSQL).",
    )
    actions = parser.add_subparsers(dest="store_action", metavar="ACTION", required=True)
    for name, help_text, handler in (
        ("upgrade", "apply the schema migrations (alembic upgrade head)", _upgrade),
        ("current", "print the schema revision the store is at", _current),
        ("info", "list estates, plans and their versions", _info),
    ):
        action = actions.add_parser(name, help=help_text, description=help_text)
        action.add_argument(
            "--url",
            help="SQLAlchemy URL of the store (default: MIGRATIONBOX_STORE_URL, the Airflow "
            "connection migrationbox_store, or the SQLite file in .runtime/)",
        )
        action.set_defaults(handler=handler)


def _shown(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def _missing_sqlite_file(url: str) -> str | None:
    """The path of a SQLite store file that does not exist (reading must not create it)."""
    from pathlib import Path

    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    path = Path(parsed.database).expanduser()
    return None if path.exists() else str(path)


def _guard(args: argparse.Namespace, body: Any, *, read_only: bool = True) -> int:
    from sqlalchemy.exc import SQLAlchemyError

    from migrationbox.store import db

    url = db.resolve_url(args.url)
    missing = _missing_sqlite_file(url) if read_only else None
    if missing:
        print(f"store {_shown(url)}: no database file at {missing} "
              "(run `migrationbox store upgrade` to create it)")
        return 0 if args.store_action == "current" else 1
    try:
        return int(body(url) or 0)
    except (SQLAlchemyError, db.StoreSchemaError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"migrationbox store {args.store_action}: {_shown(url)}: {first}", file=sys.stderr)
        return 1


def _upgrade(args: argparse.Namespace) -> int:
    from migrationbox.store import db

    def body(url: str) -> int:
        before = db.current_revision(url)
        after = db.upgrade(url)
        change = "already at head" if before == after else f"upgraded from {before or 'empty'}"
        print(f"store {_shown(url)}: revision {after} ({change})")
        return 0

    return _guard(args, body, read_only=False)


def _current(args: argparse.Namespace) -> int:
    from migrationbox.store import db

    def body(url: str) -> int:
        current, head = db.current_revision(url), db.head_revision()
        if current is None:
            print(f"store {_shown(url)}: empty (head is {head}; run `migrationbox store upgrade`)")
        elif current == head:
            print(f"store {_shown(url)}: revision {current} (head)")
        else:
            print(f"store {_shown(url)}: revision {current} (head is {head}; "
                  "run `migrationbox store upgrade`)")
        return 0

    return _guard(args, body)


def _info(args: argparse.Namespace) -> int:
    from sqlalchemy.orm import Session

    from migrationbox.store import db, repository

    def body(url: str) -> int:
        current, head = db.current_revision(url), db.head_revision()
        print(f"store {_shown(url)}: revision {current or 'none'} (head {head})")
        if current != head:
            print("the schema is not at head: run `migrationbox store upgrade` first",
                  file=sys.stderr)
            return 1
        with Session(db.engine(url, migrate=False)) as session:
            estates = repository.list_estates(session)
            if not estates:
                print("no estates stored")
                return 0
            for est in estates:
                latest = f", latest plan v{est.latest_plan_version}" if est.plan_count else ""
                print(f"estate {est.name}: {est.server_count} servers, {est.plan_count} plan(s)"
                      f"{latest}; updated {est.updated_at:%Y-%m-%d %H:%M:%S} UTC")
                for plan in repository.list_plans(session, est.name):
                    print(f"  v{plan.version:<3} {plan.status:<11} "
                          f"created {plan.created_at:%Y-%m-%d %H:%M:%S} UTC  "
                          f"{plan.wave_count} waves, {plan.server_count} servers")
        return 0

    return _guard(args, body)
