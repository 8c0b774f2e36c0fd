"""Which machine image fits a server's operating system: the table and its reading.

The table (``os_images.json`` beside this module) is data: OS family and version →
how each cloud names a fitting image. This module is the provider-neutral half: it
turns what discovery found (``os.distribution`` or ``os.type``, ``os.version``) into a
family and the table rows to try, best first, and refuses what no cloud can boot
(AIX, Solaris, ...). Each adapter's ``image_for`` then looks the rows up in its own
catalogue (AWS: ``DescribeImages`` by owner and name) and picks the newest image.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from migrationbox.cloud.base import ImageChoice, NoFittingImage

if TYPE_CHECKING:
    from migrationbox.cloud.base import CloudAdapter
    from migrationbox.planning.models import ServerPlan

TABLE_PATH = Path(__file__).with_name("os_images.json")

#: match kinds, best first
EXACT, RELEASE_LINE, FAMILY_DEFAULT = "exact", "same-release-line", "family-default"


@dataclass(frozen=True)
class ImageRule:
    """One row of the table to try for a server: a family version and its cloud entry."""

    family: str
    version: str
    match: str
    platform: str
    arch_token: str
    entry: dict[str, Any]

    @property
    def rule(self) -> str:
        return f"{self.family} {self.version}"


@lru_cache(maxsize=1)
def table() -> dict[str, Any]:
    return dict(json.loads(TABLE_PATH.read_text(encoding="utf-8")))


def _describe(os_name: str, os_version: str | None, architecture: str) -> str:
    return f"{os_name} {os_version or '(version unknown)'} ({architecture})"


def family_of(os_name: str) -> dict[str, Any] | None:
    """The table's family for an OS name ("Ubuntu", "Red Hat Enterprise Linux", ...)."""
    name = os_name.strip().lower()
    best: tuple[int, dict[str, Any]] | None = None
    for fam in table()["families"]:
        for alias in fam["aliases"]:
            if alias in name and (best is None or len(alias) > best[0]):
                best = (len(alias), fam)
    return best[1] if best else None


def unsupported_reason(os_name: str) -> str | None:
    name = os_name.strip().lower()
    for key, reason in table()["unsupported"].items():
        if key in name or key.replace("-", "") in name.replace("-", ""):
            return str(reason)
    if "sunos" in name:
        return str(table()["unsupported"]["solaris"])
    return None


def _windows_version(fam: dict[str, Any], os_name: str, os_version: str | None) -> str | None:
    """"2019" from "Windows Server 2019 Datacenter" or from build "10.0.17763"."""
    for text in (os_version or "", os_name):
        year = re.search(r"\b(20\d\d)(\s*r2)?\b", text, re.IGNORECASE)
        if year:
            return year.group(1) + (" R2" if year.group(2) else "")
    if os_version:
        builds: dict[str, str] = fam.get("builds", {})
        for build in sorted(builds, key=len, reverse=True):
            if os_version.strip().startswith(build):
                return builds[build]
    return None


def _version_number(os_version: str | None) -> str | None:
    if not os_version:
        return None
    found = re.search(r"\d+(\.\d+)*", os_version)
    return found.group(0) if found else None


def rules_for(
    cloud: str,
    os_name: str,
    os_version: str | None,
    architecture: str = "x86_64",
    server: str | None = None,
) -> list[ImageRule]:
    """The table rows to look up, best match first; ``NoFittingImage`` when none can fit.

    Matching: the discovered version equal to a row's version is ``exact``; the same
    release line (Ubuntu 22.04.4 on the 22.04 row, RHEL 9.3 on the 9 row) is
    ``same-release-line``; no version at all tries the family's rows newest first
    (``family-default``). A newer release is never offered for a known older one:
    upgrading the OS is a change of its own, not a lift and shift.
    """
    who = f"server {server}: " if server else ""
    described = _describe(os_name, os_version, architecture)
    reason = unsupported_reason(os_name)
    if reason:
        raise NoFittingImage(f"{who}no {cloud} image for {described}: {reason}")
    fam = family_of(os_name)
    if fam is None:
        known = ", ".join(f["family"] for f in table()["families"])
        raise NoFittingImage(
            f"{who}no {cloud} image for {described}: the OS is not in the image table "
            f"(families known: {known}); add a row to {TABLE_PATH.name} or re-platform")
    arch_token = fam["arch"].get(architecture)
    if arch_token is None:
        raise NoFittingImage(
            f"{who}no {cloud} image for {described}: {fam['family']} images exist for "
            f"{', '.join(sorted(fam['arch']))} only")
    rows = [r for r in fam["versions"] if r.get(cloud)]
    if not rows:
        raise NoFittingImage(f"{who}no {cloud} image for {described}: the table has no "
                             f"{cloud} entry for {fam['family']}")
    if fam["family"] == "windows-server":
        wanted = _windows_version(fam, os_name, os_version)
        number = wanted
    else:
        number = _version_number(os_version)
        wanted = ".".join((number or "").split(".")[: int(fam.get("precision", 1))]) or None

    def rule(row: dict[str, Any], match: str) -> ImageRule:
        return ImageRule(fam["family"], row["version"], match, fam["platform"], arch_token,
                         row[cloud])

    if wanted is None:
        return [rule(r, FAMILY_DEFAULT) for r in rows]
    same = [r for r in rows if r["version"].lower() == wanted.lower()]
    if not same:
        listed = ", ".join(r["version"] for r in rows)
        raise NoFittingImage(
            f"{who}no {cloud} image for {described}: {fam['family']} {wanted} is not in the "
            f"image table (versions with {cloud} images: {listed})")
    exact = number is not None and number.lower() == wanted.lower()
    return [rule(same[0], EXACT if exact else RELEASE_LINE)]


def family_rows(cloud: str, family: str) -> list[dict[str, Any]]:
    """Every row of a family that has an entry for ``cloud`` (to say what exists)."""
    for fam in table()["families"]:
        if fam["family"] == family:
            return [r for r in fam["versions"] if r.get(cloud)]
    return []


def natural_key(text: str) -> list[Any]:
    """Sort key that orders "RHEL-9.10" after "RHEL-9.3"."""
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", text)]


_ARCH = {"x86_64": "x86_64", "amd64": "x86_64", "x64": "x86_64", "x86-64": "x86_64",
         "arm64": "arm64", "aarch64": "arm64"}


def image_for_server(adapter: CloudAdapter, server: ServerPlan) -> ImageChoice | None:
    """The image that fits a planned server's source OS (and its SQL Server edition).

    ``None`` for a plan written before plans carried the source OS: the adapter's
    default image then boots, as it always did. ``NoFittingImage`` names the server.
    """
    if server.os is None:
        return None
    arch = _ARCH.get((server.os.architecture or "x86_64").strip().lower(),
                     (server.os.architecture or "").strip().lower())
    edition = server.licence.sql_server if server.licence is not None else None
    return adapter.image_for(server.os.name, server.os.version, arch, sql_server=edition,
                             server=server.server_id)


def images_for_servers(adapter: CloudAdapter, servers: list[ServerPlan]
                       ) -> tuple[dict[str, ImageChoice | None], list[str]]:
    """Images for a wave's servers, and every refusal at once (one line per server).

    Pre-flight and provision call this before creating anything, so that a server no
    image fits stops the wave whole rather than half-provisioned.
    """
    chosen: dict[str, ImageChoice | None] = {}
    refused: list[str] = []
    for server in sorted(servers, key=lambda s: s.server_id):
        try:
            chosen[server.server_id] = image_for_server(adapter, server)
        except NoFittingImage as exc:
            refused.append(str(exc))
    return chosen, refused
