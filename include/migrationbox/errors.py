"""The exceptions MigrationBox raises, under one common base.

Every error the project raises on purpose derives from ``MigrationBoxError``, so that a
command line, the plugin API, a DAG task or the Teams bot can tell "MigrationBox refused
this, and the message says why" from a bug (any other exception) with one ``except``.
The categories say who has to act:

* ``InputError``: what someone handed over is wrong (a file, a run conf, an HTTP body,
  an endpoint registration); the message names the record and field. Retrying the same
  input cannot help, so tasks fail at once without retries.
* ``ConfigurationError``: a setting, connection or Variable is missing or inconsistent.
* ``NotFoundError``: something named does not exist (an estate, a plan version, a server).
* ``ExternalServiceError``: a system outside MigrationBox (a cloud API, an SSH host, a
  database, a webhook) failed or refused; retrying later may help.

Modules keep their own specific subclasses next to the code that raises them; they only
derive from these bases (and, where callers already rely on it, from the builtin they
always were, such as ``ValueError`` or ``LookupError``).
"""

from __future__ import annotations


class MigrationBoxError(Exception):
    """Base of every error MigrationBox raises on purpose."""


class InputError(MigrationBoxError, ValueError):
    """Input handed over by a person or another system is invalid; the message says where."""


class ConfigurationError(MigrationBoxError, ValueError):
    """A setting, Airflow connection or Variable is missing or inconsistent."""


class NotFoundError(MigrationBoxError, LookupError):
    """A named thing (estate, plan version, server, endpoint) does not exist."""


class ExternalServiceError(MigrationBoxError, RuntimeError):
    """A system outside MigrationBox failed or refused; retrying later may help."""
