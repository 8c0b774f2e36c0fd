"""MigrationBox sizing: instance catalogs with real prices, and the sizing rules.

Heavy work (reading the catalogs) happens lazily on first use, so importing this
package stays cheap for DAG parsing.
"""

from migrationbox.sizing.catalog import (
    CatalogError,
    InstanceCatalog,
    InstanceType,
    NoInstanceFits,
    StoragePrice,
    UnsupportedArchitecture,
    block_storage_price,
    cheapest_fitting,
    load_catalog,
)
from migrationbox.sizing.rule import required_resources, size_server

__all__ = [
    "CatalogError",
    "InstanceCatalog",
    "InstanceType",
    "NoInstanceFits",
    "StoragePrice",
    "UnsupportedArchitecture",
    "block_storage_price",
    "cheapest_fitting",
    "load_catalog",
    "required_resources",
    "size_server",
]
