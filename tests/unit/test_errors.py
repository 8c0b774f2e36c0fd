"""Every error MigrationBox raises on purpose shares one base (``migrationbox.errors``)."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import migrationbox
from migrationbox.errors import (
    ConfigurationError,
    ExternalServiceError,
    InputError,
    MigrationBoxError,
    NotFoundError,
)


def _public_exception_classes() -> list[type[BaseException]]:
    found = []
    for info in pkgutil.walk_packages(migrationbox.__path__, "migrationbox."):
        # __main__ runs the CLI; the Alembic environment only runs inside Alembic
        if info.name.endswith("__main__") or ".store.migrations" in info.name:
            continue
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if (inspect.isclass(obj) and issubclass(obj, BaseException)
                    and obj.__module__ == module.__name__ and not name.startswith("_")):
                found.append(obj)
    return found


def test_every_public_exception_derives_from_the_common_base() -> None:
    classes = _public_exception_classes()
    assert len(classes) > 30  # the walk really found the package's errors
    outside = sorted(f"{c.__module__}.{c.__qualname__}" for c in classes
                     if not issubclass(c, MigrationBoxError))
    assert outside == []


def test_categories_keep_the_builtins_callers_catch() -> None:
    assert issubclass(InputError, ValueError) and issubclass(ConfigurationError, ValueError)
    assert issubclass(NotFoundError, LookupError)
    assert issubclass(ExternalServiceError, RuntimeError)
