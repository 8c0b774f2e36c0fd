"""``migrationbox teams manifest``: the Teams app package a tenant uploads to install the
bot (manifest.json of schema 1.29 and its two icons, zipped).

``--app-id`` is the bot's Entra application (client) id, the login of the bot's Airflow
connection; ``--base-url`` the public https address the endpoint and the dashboard tab are
reached at. Exit 2 with the reason when the package cannot be built (a non-GUID id, an
http URL, a manifest that would not validate).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "teams", help="Microsoft Teams: the bot's app package and approvers",
        description="Build what Microsoft Teams needs to install the MigrationBox bot.")
    action = parser.add_subparsers(dest="teams_action", metavar="ACTION", required=True)
    manifest = action.add_parser(
        "manifest", help="write the Teams app package (manifest.json + icons) as a zip",
        description="Write the Teams app package: manifest.json (schema 1.29, validated), "
                    "color.png 192x192 and outline.png 32x32. Upload it in Teams "
                    "(Apps > Manage your apps > Upload an app) or the Teams admin center.")
    manifest.add_argument("--app-id", required=True,
                          help="the bot's Entra application (client) id (a GUID)")
    manifest.add_argument("--base-url", required=True,
                          help="public https URL the bot is reached at "
                               "(messaging endpoint: <base-url>/api/messages)")
    manifest.add_argument("--out", default="migrationbox-teams-app.zip",
                          help="the package to write (default: %(default)s)")
    manifest.add_argument("--version", default="1.0.0",
                          help="the app's version, semver; raise it for every change "
                               "(default: %(default)s)")
    manifest.add_argument("--name", default="MigrationBox",
                          help="short name shown in Teams, up to 30 characters")
    manifest.set_defaults(handler=_manifest)
    from migrationbox.cli.teams_approvers_cmd import add_approvers_action

    add_approvers_action(action)


def _manifest(args: argparse.Namespace) -> int:
    from migrationbox.teams.manifest import ManifestError, build_package

    try:
        path = build_package(args.app_id, args.base_url, args.out, version=args.version,
                             short_name=args.name)
    except ManifestError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: cannot write {args.out}: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {path} (manifest.json, color.png, outline.png); messaging endpoint to "
          f"register for the bot: {args.base_url.rstrip('/')}/api/messages")
    return 0
