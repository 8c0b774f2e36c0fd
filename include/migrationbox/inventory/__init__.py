"""Discovery schema, loaders, validation and the local Linux collector."""

from migrationbox.inventory.models import Estate, ServerRecord

__all__ = ["Estate", "ServerRecord"]
