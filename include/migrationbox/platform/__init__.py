"""The local platform runtime: AWS emulator, lab and Airflow, started and stopped as one.

``make up`` / ``make down`` / ``make demo`` and the integration tests go through
:class:`~migrationbox.platform.supervisor.Platform`; other commands get the same
connections and paths from :func:`~migrationbox.platform.supervisor.platform_env`, and
talk to Airflow through :class:`~migrationbox.platform.rest.AirflowClient`.

Heavy modules are imported lazily so ``import migrationbox.platform`` stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from migrationbox.platform.rest import AirflowApiError, AirflowClient
    from migrationbox.platform.supervisor import Platform, PlatformError, platform_env

__all__ = ["AirflowApiError", "AirflowClient", "Platform", "PlatformError", "platform_env"]

_LAZY = {
    "AirflowApiError": "migrationbox.platform.rest",
    "AirflowClient": "migrationbox.platform.rest",
    "Platform": "migrationbox.platform.supervisor",
    "PlatformError": "migrationbox.platform.supervisor",
    "platform_env": "migrationbox.platform.supervisor",
}


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'migrationbox.platform' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module_name), name)
