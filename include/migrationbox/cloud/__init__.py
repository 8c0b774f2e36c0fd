"""Cloud adapters behind one interface (``base.CloudAdapter``).

``get_adapter`` is the one place that maps a plan's cloud name to an implementation;
Azure and GCP join here when their adapters land.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from migrationbox.config import AWS_CONN_ID

if TYPE_CHECKING:
    from migrationbox.cloud.base import CloudAdapter

SUPPORTED_CLOUDS = ("aws",)


class UnsupportedCloud(ValueError):
    """The plan targets a cloud without an adapter yet."""


def get_adapter(
    cloud: str = "aws", conn_id: str = AWS_CONN_ID, region: str | None = None, **kwargs: Any
) -> CloudAdapter:
    """An adapter for ``cloud`` using the Airflow connection ``conn_id``."""
    if cloud == "aws":
        from migrationbox.cloud.aws import AwsAdapter

        return AwsAdapter(conn_id=conn_id, region=region, **kwargs)
    raise UnsupportedCloud(
        f"plan settings.cloud is {cloud!r}; adapters exist for {', '.join(SUPPORTED_CLOUDS)}"
    )
