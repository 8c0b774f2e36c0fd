"""MigrationBox in Microsoft Teams: the bot's self-contained core.

* ``parser`` / ``grammar`` / ``models``: text (typed or transcribed) to an ``Intent`` or a
  ``Clarification``, with a deterministic grammar per language (en, de, es, hu).
* ``cards``: Adaptive Cards 1.5 for the answers (status, approval, costs, metrics,
  confirmation), validated against the published schema.
* ``auth``: inbound Bot Framework / Entra bearer-token validation.

The HTTP endpoint, the platform actions, notifications and voice build on these
(docs/teams.md says what is done and what is left).
"""

from migrationbox.teams.models import (
    Clarification,
    Command,
    Intent,
    Language,
    ParseContext,
)
from migrationbox.teams.parser import (
    confirmation_question,
    detect_language,
    parse,
    parse_confirmation,
)

__all__ = [
    "Clarification",
    "Command",
    "Intent",
    "Language",
    "ParseContext",
    "confirmation_question",
    "detect_language",
    "parse",
    "parse_confirmation",
]
