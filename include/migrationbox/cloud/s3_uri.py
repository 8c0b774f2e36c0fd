"""``s3://bucket/prefix`` roots: one parser for every setting that names one.

The plans bundle (``plans_root``), the shared files (``shared_root``) and MLflow's
artifact root each point MigrationBox at a place in object storage. They had three
parsers with three slightly different ideas of a valid bucket; a root one accepted and
another refused is a deployment that half works. The rules here are S3's bucket naming
rules (3-63 lowercase letters, digits, dots and hyphens, starting and ending with a letter
or digit, no ``..``) and a prefix of non-empty ``/``-separated parts other than ``.`` and
``..``. Each caller turns :class:`S3RootError` into its own error type.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from migrationbox.errors import InputError

_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
BUCKET_RULE = "3-63 lowercase letters, digits, dots and hyphens"


class S3RootError(InputError):
    """A text meant as ``s3://bucket/prefix`` is not one; the message names the setting."""


@dataclass(frozen=True)
class S3Root:
    bucket: str
    prefix: str = ""

    def uri(self) -> str:
        return f"s3://{self.bucket}" + (f"/{self.prefix}" if self.prefix else "")


def valid_bucket(name: str) -> bool:
    return bool(_BUCKET.match(name)) and ".." not in name


def parse_s3_root(text: str, *, what: str) -> S3Root:
    """``text`` as an :class:`S3Root`; ``what`` (the setting's name) starts every message."""
    value = str(text or "").strip()
    parts = urlsplit(value)
    if parts.scheme != "s3":
        raise S3RootError(f"{what} must be s3://bucket/prefix, got {text!r}")
    if not valid_bucket(parts.netloc):
        raise S3RootError(f"{what}: {parts.netloc!r} is not a valid S3 bucket name "
                          f"({BUCKET_RULE})")
    if parts.query or parts.fragment:
        raise S3RootError(f"{what} {text!r}: no query or fragment allowed")
    prefix = parts.path.strip("/")
    if prefix and any(p in ("", ".", "..") for p in prefix.split("/")):
        raise S3RootError(f"{what} {text!r}: the prefix has an empty, . or .. part")
    return S3Root(parts.netloc, prefix)
