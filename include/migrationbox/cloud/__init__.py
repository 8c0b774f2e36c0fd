"""Cloud adapters behind one interface (``base.CloudAdapter``).

``get_adapter`` is the one place that maps a plan's cloud name to an implementation.
Adding a cloud (Azure, GCP) touches no phase, gate, healer or cutover code:

1. write ``migrationbox/cloud/azure.py`` with a class implementing every method of
   ``base.CloudAdapter`` (the group docstrings there say what each must guarantee:
   tags on everything it creates, look-up before create, provider-neutral value types,
   ``CloudServiceError`` for monitoring and healer-action failures, ``NoFittingImage``
   from ``image_for``; the image table ``os_images.json`` already holds the Azure and
   GCP image references), getting SDK clients only through the Airflow provider's hooks
   (``AzureBaseHook``/``GoogleBaseHook``) and the connection id it is given;
2. register it here: ``ADAPTERS["azure"] = ("migrationbox.cloud.azure:AzureAdapter",
   "azure_default")`` (module path, so that importing this package stays cheap);
3. run the contract tests against it: ``tests/integration/adapter_contract.py`` holds a
   test class parametrised by an adapter factory; a test module for the new cloud
   subclasses it with a factory pointed at that cloud's emulator or a sandbox account.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from migrationbox.config import AWS_CONN_ID
from migrationbox.errors import ConfigurationError

if TYPE_CHECKING:
    from migrationbox.cloud.base import CloudAdapter

#: cloud name -> ("module:Class", default Airflow connection id)
ADAPTERS: dict[str, tuple[str, str]] = {
    "aws": ("migrationbox.cloud.aws:AwsAdapter", AWS_CONN_ID),
}
SUPPORTED_CLOUDS = tuple(ADAPTERS)


class UnsupportedCloud(ConfigurationError):
    """The plan targets a cloud without an adapter yet."""


def get_adapter(
    cloud: str = "aws", conn_id: str | None = None, region: str | None = None, **kwargs: Any
) -> CloudAdapter:
    """An adapter for ``cloud`` using the Airflow connection ``conn_id`` (the cloud's
    default connection when ``None``) in ``region`` (the connection's when ``None``)."""
    entry = ADAPTERS.get(cloud)
    if entry is None:
        raise UnsupportedCloud(
            f"plan settings.cloud is {cloud!r}; adapters exist for {', '.join(ADAPTERS)}"
        )
    target, default_conn = entry
    module, _, name = target.partition(":")
    factory = getattr(import_module(module), name)
    adapter: CloudAdapter = factory(conn_id=conn_id or default_conn, region=region, **kwargs)
    return adapter
