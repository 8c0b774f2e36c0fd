"""Operating system names as inventory tools write them -> the record's ``os`` section.

vSphere names guests by its guest-OS list ("Microsoft Windows Server 2019 (64-bit)",
"Red Hat Enterprise Linux 8 (64-bit)", "Other 4.x or later Linux (64-bit)"); VMware
Tools reports what the guest says about itself ("Ubuntu 22.04.3 LTS",
"Microsoft Windows Server 2022 Datacenter"); the Migration Hub template has free text
split into a name and a version. Target images are chosen from type, distribution and
version, so those three are pulled out; the full string is kept as ``name``.
"""

from __future__ import annotations

import re
from typing import Any

# (pattern on the lower-cased name, type, distribution); first match wins
_DISTRIBUTIONS: tuple[tuple[str, str, str | None], ...] = (
    (r"windows server", "Windows", "Windows Server"),
    (r"windows", "Windows", "Windows"),
    (r"red hat enterprise linux|\brhel\b", "Linux", "Red Hat Enterprise Linux"),
    (r"centos", "Linux", "CentOS"),
    (r"rocky", "Linux", "Rocky Linux"),
    (r"alma", "Linux", "AlmaLinux"),
    (r"oracle linux", "Linux", "Oracle Linux"),
    (r"ubuntu", "Linux", "Ubuntu"),
    (r"debian", "Linux", "Debian"),
    (r"suse linux enterprise|\bsles\b", "Linux", "SUSE Linux Enterprise"),
    (r"opensuse", "Linux", "openSUSE"),
    (r"amazon linux", "Linux", "Amazon Linux"),
    (r"photon", "Linux", "VMware Photon OS"),
    (r"fedora", "Linux", "Fedora"),
    (r"linux", "Linux", None),
    (r"freebsd", "FreeBSD", "FreeBSD"),
    (r"solaris", "Solaris", "Solaris"),
    (r"\baix\b", "AIX", "AIX"),
)

_WINDOWS_VERSION = re.compile(r"windows(?: server)?\s+(\d{4}(?:\s*r2)?|\d{2}|xp|vista|nt)",
                              re.IGNORECASE)
_VERSION = re.compile(r"(?<![\w.])(\d+(?:\.\d+){0,3})(?:\s+(lts))?(?![\w.])", re.IGNORECASE)
_BITS = re.compile(r"\((?:[^)]*?)(32|64)-bit\)", re.IGNORECASE)
_EDITION = re.compile(r"\b(datacenter|standard|enterprise|essentials|web)\b", re.IGNORECASE)


def parse_os(name: str | None, version: str | None = None) -> dict[str, Any] | None:
    """The ``os`` section for a name (and optional separate version), or None if blank."""
    if not name or not name.strip():
        if version and version.strip():
            return {"type": "Unknown", "version": version.strip(), "name": version.strip()}
        return None
    full = " ".join(name.split())
    lower = full.lower()
    os_type, distribution = "Other", None
    for pattern, kind, distro in _DISTRIBUTIONS:
        if re.search(pattern, lower):
            os_type, distribution = kind, distro
            break
    found_version: str | None = None
    without_bits = _BITS.sub("", full)
    if os_type == "Windows":
        match = _WINDOWS_VERSION.search(without_bits)
        if match:
            found_version = re.sub(r"\s*r2$", " R2", match.group(1), flags=re.IGNORECASE)
    elif not lower.startswith("other"):  # "Other 4.x or later Linux": a kernel, not a release
        match = _VERSION.search(without_bits)
        if match:
            found_version = match.group(1) + (" LTS" if match.group(2) else "")
    section: dict[str, Any] = {"type": os_type, "name": full}
    if distribution:
        section["distribution"] = distribution
    given = version.strip() if version and version.strip() else None
    if given or found_version:
        section["version"] = given or found_version
    bits = _BITS.search(full)
    if bits:
        section["architecture"] = "x86_64" if bits.group(1) == "64" else "i386"
    edition = _EDITION.search(full) if os_type == "Windows" else None
    if edition:
        section["edition"] = edition.group(1).capitalize()
    return section
