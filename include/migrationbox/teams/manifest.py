"""The Teams app package: ``manifest.json`` (schema 1.29) and the two icons, zipped.

A tenant installs the bot by uploading this package (Teams admin center or "Upload a
custom app"); the manifest names the bot (its Entra app id), the scopes it works in, the
command menus Teams shows, the dashboard tab the next issue serves, and the domains the
tab loads from. ``build_manifest`` validates what it builds against the published
schema (``schemas/teams-app-manifest-1.29.schema.json``), so a package Teams would refuse
is refused here with the failing field named.

The command menus: Teams allows one command list per scope with at most 12 commands,
and the bot has 18 verbs. Every scope lists the nine that run migrations and answer
gates; personal chats add the ones a person asks for themselves (costs, metrics,
search), channels and group chats the ones that steer what a conversation hears (report,
mute, unmute). The others work when typed (``help`` lists all of them); the menu is only
a set of suggestions.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema

from migrationbox.errors import InputError
from migrationbox.teams.models import Command

SCHEMA_PATH = (Path(__file__).resolve().parent.parent / "schemas"
               / "teams-app-manifest-1.29.schema.json")
MANIFEST_VERSION = "1.29"
SCHEMA_URL = ("https://developer.microsoft.com/json-schemas/teams/v1.29/"
              "MicrosoftTeams.schema.json")
ACCENT = (0x1F, 0x6F, 0xEB)
COLOR_ICON = "color.png"
OUTLINE_ICON = "outline.png"
COLOR_SIZE = 192
OUTLINE_SIZE = 32
DASHBOARD_TAB_PATH = "/teams/tab/dashboard"
_GUID = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
_SEMVER = re.compile(r"^\d+\.\d+\.\d+(?:[-+][0-9A-Za-z.-]+)?$")

#: What each command's menu entry says (syntax and an example).
COMMAND_HELP: dict[Command, str] = {
    Command.STATUS: "Progress of all migrations, or one: status [migration id]",
    Command.START: "Start a migration: start <environment> <cloud> <region> "
                   "(asks to confirm)",
    Command.PAUSE: "Pause a running migration: pause <migration id>",
    Command.RESUME: "Resume a paused migration: resume <migration id>",
    Command.ROLLBACK: "Roll a migration back: rollback <migration id> (asks to confirm)",
    Command.CANCEL: "Cancel a migration: cancel <migration id> (asks to confirm)",
    Command.APPROVE: "Approve a gate: approve <migration id> <gate>",
    Command.REJECT: 'Reject a gate: reject <migration id> <gate> "reason"',
    Command.REQUEST_APPROVAL: "Ask the approvers: request-approval <migration id> <gate>",
    Command.REPORT: "Summary report: report weekly | report monthly",
    Command.METRICS: "Migration metrics against targets: metrics [migration id]",
    Command.COSTS: "Predicted vs actual costs: costs [migration id]",
    Command.SEARCH: 'Search migrations and runbooks: search "query"',
    Command.RUNBOOK: "The runbook of a migration: runbook [migration id]",
    Command.LESSONS_LEARNED: "Lessons learned from past migrations: lessons-learned",
    Command.ALERT_CONFIG: "What this conversation is told about: alert-config",
    Command.MUTE: "Stop notifications here for a while: mute [kind] [duration]",
    Command.UNMUTE: "Notifications here again: unmute",
}
_CORE = (Command.STATUS, Command.START, Command.PAUSE, Command.RESUME, Command.ROLLBACK,
         Command.CANCEL, Command.APPROVE, Command.REJECT, Command.REQUEST_APPROVAL)
COMMAND_MENUS: dict[str, tuple[Command, ...]] = {
    "personal": (*_CORE, Command.COSTS, Command.METRICS, Command.SEARCH),
    "team": (*_CORE, Command.REPORT, Command.MUTE, Command.UNMUTE),
    "groupChat": (*_CORE, Command.REPORT, Command.MUTE, Command.UNMUTE),
}


class ManifestError(InputError):
    """The app package cannot be built from what was given (or fails the schema)."""


@lru_cache(maxsize=1)
def _validator() -> jsonschema.Draft4Validator:
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    return jsonschema.Draft4Validator(schema)


def validate_manifest(manifest: dict[str, Any]) -> None:
    """Raise ``ManifestError`` naming each field that departs from the 1.29 schema."""
    errors = sorted(_validator().iter_errors(manifest), key=lambda e: list(e.path))
    if errors:
        listing = "; ".join(f"{'/'.join(str(p) for p in e.path) or '(root)'}: "
                            f"{e.message[:200]}" for e in errors[:10])
        raise ManifestError(f"manifest does not validate against schema "
                            f"{MANIFEST_VERSION}: {listing}")


def _base(base_url: str) -> tuple[str, str]:
    parts = urlsplit(base_url.strip())
    if parts.scheme != "https" or not parts.hostname:
        raise ManifestError(f"base URL {base_url!r} must be https://<public host>[/path]: "
                            "Teams loads tabs and reaches bots over https only")
    if parts.query or parts.fragment:
        raise ManifestError(f"base URL {base_url!r} must not carry a query or fragment")
    host = parts.hostname + (f":{parts.port}" if parts.port else "")
    return f"https://{host}{parts.path.rstrip('/')}", host


def build_manifest(app_id: str, base_url: str, *, version: str = "1.0.0",
                   short_name: str = "MigrationBox",
                   developer_name: str = "MigrationBox") -> dict[str, Any]:
    """The manifest for the bot ``app_id`` (its Entra application id, also the Teams
    app's id) served behind ``base_url`` (public https; the messaging endpoint is
    ``<base_url>/api/messages``, configured in the Azure Bot resource, not here)."""
    app_id = app_id.strip()
    if not _GUID.match(app_id):
        raise ManifestError(f"app id {app_id!r} is not a GUID: use the bot's Entra "
                            "application (client) id")
    if not _SEMVER.match(version):
        raise ManifestError(f"version {version!r} is not semver (e.g. 1.0.0)")
    base, host = _base(base_url)
    menus = [{"scopes": [scope],
              "commands": [{"title": str(c), "description": COMMAND_HELP[c]}
                           for c in commands]}
             for scope, commands in COMMAND_MENUS.items()]
    manifest: dict[str, Any] = {
        "$schema": SCHEMA_URL,
        "manifestVersion": MANIFEST_VERSION,
        "version": version,
        "id": app_id,
        "developer": {"name": developer_name[:32], "websiteUrl": base,
                      "privacyUrl": f"{base}/privacy", "termsOfUseUrl": f"{base}/terms"},
        "name": {"short": short_name[:30], "full": "MigrationBox: cloud migrations on Airflow"},
        "description": {
            "short": "Status, approvals and alerts of your cloud migrations in Teams",
            "full": ("MigrationBox plans and runs migrations of on-premise servers to the "
                     "cloud. In Teams you ask for the status of a migration, start, pause, "
                     "resume, roll back or cancel one (destructive commands ask to confirm), "
                     "approve or reject gates from a card, get notified when a wave starts, "
                     "fails, rolls back or finishes and when an approval waits, and speak "
                     "or write commands in English, German, Spanish or Hungarian."),
        },
        "icons": {"color": COLOR_ICON, "outline": OUTLINE_ICON},
        "accentColor": "#{:02X}{:02X}{:02X}".format(*ACCENT),
        "bots": [{
            "botId": app_id,
            "scopes": ["personal", "team", "groupChat"],
            "supportsFiles": True,  # voice messages and files in personal chats
            "isNotificationOnly": False,
            "commandLists": menus,
        }],
        "staticTabs": [{
            "entityId": "migrationbox-dashboard",
            "name": "Dashboard",
            "contentUrl": f"{base}{DASHBOARD_TAB_PATH}",
            "websiteUrl": f"{base}{DASHBOARD_TAB_PATH}",
            "scopes": ["personal"],
        }],
        "permissions": ["identity", "messageTeamMembers"],
        "validDomains": [host],
        "webApplicationInfo": {"id": app_id, "resource": f"api://{host}/{app_id}"},
    }
    validate_manifest(manifest)
    return manifest


# -- icons ------------------------------------------------------------------------------


def _png(image: Any) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return out.getvalue()


def color_icon(size: int = COLOR_SIZE) -> bytes:
    """Full-colour icon: a white server box and an arrow to a cloud-ish circle on the
    accent colour (Teams shows it on app cards and the store)."""
    from PIL import Image, ImageDraw

    image = Image.new("RGBA", (size, size), (*ACCENT, 255))
    draw = ImageDraw.Draw(image)
    u = size / 12
    white = (255, 255, 255, 255)
    draw.rectangle([2 * u, 4 * u, 5 * u, 8 * u], outline=white, width=max(2, int(u / 2)))
    draw.line([2.5 * u, 5.5 * u, 4.5 * u, 5.5 * u], fill=white, width=max(1, int(u / 3)))
    draw.line([2.5 * u, 6.8 * u, 4.5 * u, 6.8 * u], fill=white, width=max(1, int(u / 3)))
    draw.line([5.6 * u, 6 * u, 7.4 * u, 6 * u], fill=white, width=max(2, int(u / 2)))
    draw.polygon([(7.2 * u, 5.2 * u), (8.2 * u, 6 * u), (7.2 * u, 6.8 * u)], fill=white)
    draw.ellipse([8.4 * u, 4.4 * u, 10.6 * u, 7.6 * u], fill=white)
    return _png(image)


def outline_icon(size: int = OUTLINE_SIZE) -> bytes:
    """Outline icon: white on transparent, as Teams requires for the app bar."""
    from PIL import Image, ImageDraw

    image = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    white = (255, 255, 255, 255)
    draw.rectangle([3, 9, 12, 23], outline=white, width=2)
    draw.line([14, 16, 19, 16], fill=white, width=2)
    draw.polygon([(18, 12), (22, 16), (18, 20)], fill=white)
    draw.ellipse([24, 11, 30, 21], outline=white, width=2)
    return _png(image)


def build_package(app_id: str, base_url: str, out: Path | str, **options: Any) -> Path:
    """Write the app package (``manifest.json``, ``color.png``, ``outline.png`` at the
    zip's root, as Teams expects) to ``out``; returns its path."""
    manifest = build_manifest(app_id, base_url, **options)
    path = Path(out)
    if path.suffix.lower() != ".zip":
        raise ManifestError(f"{path}: the app package must be a .zip file")
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("manifest.json", json.dumps(manifest, indent=2) + "\n")
        archive.writestr(COLOR_ICON, color_icon())
        archive.writestr(OUTLINE_ICON, outline_icon())
    return path
