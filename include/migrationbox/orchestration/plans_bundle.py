"""The plans DAG bundle in object storage (``plans_root``, e.g. ``s3://bucket/prefix``).

Locally the plans folder *is* the ``migrationbox-plans`` bundle (a ``LocalDagBundle``
over ``<plans>/dags``). On a cluster every DAG processor, scheduler and worker would
need that folder on shared storage; with ``plans_root`` set, planning instead publishes
what the bundle needs to object storage and Airflow's ``S3DagBundle`` downloads it to a
local folder on each host (the DAG processor on every refresh, a Celery worker before
each task).

The keys mirror the local plans folder, relative to the root's prefix::

    <prefix>/<estate>.json            the wave spec (read by the loader, parse and run time)
    <prefix>/dags/migrate__<estate>.py  the estate's loader DAG file

so the bundle is the whole prefix and a downloaded loader finds its spec where it always
does, in the folder above its own (``spec.spec_path_for_loader``), whatever the host's
``MIGRATIONBOX_PLANS_DIR`` says. Publishing puts the spec before the loader (a new
loader never looks for a missing spec); withdrawing deletes the loader first. An
object whose bytes are already there is not rewritten, so re-planning an unchanged
estate makes no host download or re-parse anything. Objects go through the Airflow
connection ``aws_default`` (``cloud.aws_session``): credentials and endpoint never come
from code.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from migrationbox.cloud.s3_uri import S3RootError, parse_s3_root
from migrationbox.errors import ConfigurationError, ExternalServiceError
from migrationbox.orchestration.spec import (
    LOADERS_FOLDER,
    loader_path,
    loader_source,
    spec_files,
)

#: an object at the bundle's prefix from the moment the bucket is set up, because
#: ``S3DagBundle`` refuses to initialise over a prefix with no object under it
MARKER = "README.txt"
MARKER_TEXT = (
    "The migrationbox-plans Airflow DAG bundle (S3DagBundle): <estate>.json is an "
    "estate's wave spec, dags/migrate__<estate>.py its loader DAG file. Written by "
    "`migrationbox plan`; do not edit.\n"
)


class PlansBundleError(ExternalServiceError):
    """Object storage refused a read or write of the plans bundle (names bucket and key)."""


class PlansRootError(ConfigurationError):
    """``plans_root`` is not an ``s3://bucket/prefix`` URI."""


@dataclass(frozen=True)
class PlansRoot:
    """Where the plans bundle lives: a bucket and a key prefix (no slashes at the ends)."""

    bucket: str
    prefix: str

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    def key(self, relative: str) -> str:
        return f"{self.prefix}/{relative}" if self.prefix else relative

    def spec_key(self, estate: str) -> str:
        return self.key(f"{estate}.json")

    def loader_key(self, estate: str) -> str:
        return self.key(f"{LOADERS_FOLDER}/migrate__{estate}.py")


def parse_plans_root(root: str) -> PlansRoot:
    """``s3://bucket[/prefix]`` as a :class:`PlansRoot`; raise :class:`PlansRootError`."""
    try:
        parsed = parse_s3_root(root, what="plans_root")
    except S3RootError as exc:
        raise PlansRootError(str(exc)) from None
    return PlansRoot(parsed.bucket, parsed.prefix)


def configured_root() -> PlansRoot | None:
    """The ``plans_root`` setting, parsed; None when unset (the local folder is the bundle)."""
    from migrationbox import settings

    value = settings.get("plans_root", variables=False)
    return parse_plans_root(value) if value else None


def s3_client() -> Any:
    """An S3 client of the ``aws_default`` connection (what the S3DagBundle uses too)."""
    from migrationbox.cloud.aws_session import aws_client

    return aws_client("s3")


def _etag(body: bytes) -> str:
    # single-part uploads (everything here is a few KB) have the MD5 of the body as ETag
    return '"' + hashlib.md5(body, usedforsecurity=False).hexdigest() + '"'


def _put_if_changed(client: Any, root: PlansRoot, key: str, body: bytes, what: str,
                    content_type: str) -> bool:
    from botocore.exceptions import BotoCoreError, ClientError

    where = f"s3://{root.bucket}/{key} ({what})"
    try:
        try:
            if client.head_object(Bucket=root.bucket, Key=key).get("ETag") == _etag(body):
                return False
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchKey",
                                                                  "NotFound"):
                raise
        client.put_object(Bucket=root.bucket, Key=key, Body=body, ContentType=content_type)
        return True
    except (BotoCoreError, ClientError) as exc:
        raise PlansBundleError(f"plans bundle: cannot publish {where}: {exc}") from exc


def publish_estate(plans_folder: Path, estate: str, root: PlansRoot | str,
                   *, client: Any = None) -> list[str]:
    """Publish ``estate``'s wave spec, then its loader, from the local ``plans_folder``
    to ``root``; returns the keys written (those already holding the same bytes are not).

    Re-planning replaces both objects under the same keys, so an estate never has two
    loaders in the bundle; a spec with fewer waves leaves Airflow to drop the waves its
    loader no longer defines, as it does locally.
    """
    root = parse_plans_root(root) if isinstance(root, str) else root
    spec = Path(plans_folder) / f"{estate}.json"
    try:
        spec_bytes = spec.read_bytes()
    except OSError as exc:
        raise PlansBundleError(f"plans bundle: estate {estate} has no readable wave spec "
                               f"{spec} to publish to {root.uri}: {exc}") from exc
    loader_bytes = loader_source(estate).encode()  # also checks the estate's name
    client = client or s3_client()
    written = []
    for key, body, kind in ((root.spec_key(estate), spec_bytes, "application/json"),
                            (root.loader_key(estate), loader_bytes, "text/x-python")):
        if _put_if_changed(client, root, key, body, f"estate {estate}", kind):
            written.append(key)
    return written


def withdraw_estate(estate: str, root: PlansRoot | str, *, client: Any = None) -> list[str]:
    """Delete ``estate``'s loader, then its spec, from the bundle; returns the keys that
    were there. Each host's next refresh deletes its copies and Airflow drops the DAGs."""
    from botocore.exceptions import BotoCoreError, ClientError

    root = parse_plans_root(root) if isinstance(root, str) else root
    loader_source(estate)  # refuse a name that is no estate before touching anything
    client = client or s3_client()
    removed = []
    for key in (root.loader_key(estate), root.spec_key(estate)):
        try:
            try:
                client.head_object(Bucket=root.bucket, Key=key)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey",
                                                                  "NotFound"):
                    continue
                raise
            client.delete_object(Bucket=root.bucket, Key=key)
            removed.append(key)
        except (BotoCoreError, ClientError) as exc:
            raise PlansBundleError(f"plans bundle: cannot delete s3://{root.bucket}/{key} "
                                   f"(estate {estate}): {exc}") from exc
    return removed


def published_estates(root: PlansRoot | str, *, client: Any = None) -> list[str]:
    """The estates whose loader is in the bundle, sorted."""
    from botocore.exceptions import BotoCoreError, ClientError

    root = parse_plans_root(root) if isinstance(root, str) else root
    client = client or s3_client()
    folder = root.key(f"{LOADERS_FOLDER}/")
    estates = []
    try:
        for page in client.get_paginator("list_objects_v2").paginate(
                Bucket=root.bucket, Prefix=folder):
            for item in page.get("Contents", []):
                name = item["Key"][len(folder):]
                if "/" not in name and name.startswith("migrate__") and name.endswith(".py"):
                    estates.append(name.removeprefix("migrate__").removesuffix(".py"))
    except (BotoCoreError, ClientError) as exc:
        raise PlansBundleError(f"plans bundle: cannot list s3://{root.bucket}/{folder}: "
                               f"{exc}") from exc
    return sorted(estates)


def prepare_bundle(plans_folder: Path, root: PlansRoot | str, *, client: Any = None
                   ) -> list[str]:
    """At platform start: the marker object (so the bundle's prefix exists before the
    first plan) and every estate planned in the local ``plans_folder`` that has a loader
    there; returns the keys written. Publishes only, never deletes: on a cluster another
    host's estates are in the bundle and not in this host's folder."""
    root = parse_plans_root(root) if isinstance(root, str) else root
    client = client or s3_client()
    written = []
    if _put_if_changed(client, root, root.key(MARKER), MARKER_TEXT.encode(), "bundle marker",
                       "text/plain"):
        written.append(root.key(MARKER))
    for spec in spec_files(Path(plans_folder)):
        if loader_path(Path(plans_folder), spec.stem).is_file():
            written += publish_estate(plans_folder, spec.stem, root, client=client)
    return written


def publish_if_configured(plans_folder: Path, estate: str) -> list[str]:
    """:func:`publish_estate` to the ``plans_root`` setting; nothing when it is unset."""
    root = configured_root()
    return publish_estate(plans_folder, estate, root) if root else []
