"""What the Teams bot understood from a message: an intent to act on, or a question back.

The parser never guesses an action. Its answer is either an ``Intent`` with every slot the
command needs (filled from the text or, marked as ``inferred``, from the conversation's
context) or a ``Clarification`` that asks the user, in their language, for what is missing
or ambiguous. The endpoint (a later slice) turns an ``Intent`` into platform calls and asks
for confirmation first when ``needs_confirmation`` is set.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field


class Language(StrEnum):
    """Languages the grammar covers (ISO 639-1)."""

    EN = "en"
    DE = "de"
    ES = "es"
    HU = "hu"


class Command(StrEnum):
    """The plan's commands (Capability 4, component 1). ``status`` with and without an id
    and ``report weekly`` / ``report monthly`` make the plan's twenty."""

    STATUS = "status"
    START = "start"
    PAUSE = "pause"
    RESUME = "resume"
    ROLLBACK = "rollback"
    CANCEL = "cancel"
    APPROVE = "approve"
    REJECT = "reject"
    REQUEST_APPROVAL = "request-approval"
    REPORT = "report"
    METRICS = "metrics"
    COSTS = "costs"
    SEARCH = "search"
    RUNBOOK = "runbook"
    LESSONS_LEARNED = "lessons-learned"
    ALERT_CONFIG = "alert-config"
    MUTE = "mute"
    UNMUTE = "unmute"


#: Commands that change or destroy a running migration: asked back before they run.
DESTRUCTIVE: frozenset[Command] = frozenset({Command.START, Command.ROLLBACK, Command.CANCEL})

#: Commands that act (as opposed to show); a negated or conditional phrasing of one of
#: these is asked back instead of being run.
ACTIONS: frozenset[Command] = frozenset({
    Command.START, Command.PAUSE, Command.RESUME, Command.ROLLBACK, Command.CANCEL,
    Command.APPROVE, Command.REJECT, Command.REQUEST_APPROVAL, Command.MUTE, Command.UNMUTE,
})

#: The approval family: their gate word (``rollback``, ``budget`` ...) is a slot, not a
#: second command.
APPROVAL_FAMILY: frozenset[Command] = frozenset({
    Command.APPROVE, Command.REJECT, Command.REQUEST_APPROVAL,
})


class Environment(StrEnum):
    PRODUCTION = "production"
    STAGING = "staging"
    TEST = "test"
    DEVELOPMENT = "development"


class Cloud(StrEnum):
    AWS = "aws"
    AZURE = "azure"
    GCP = "gcp"


class Period(StrEnum):
    WEEKLY = "weekly"
    MONTHLY = "monthly"


SlotName = Literal[
    "migration_id", "environment", "cloud", "region", "gate", "reason", "period", "query",
    "duration", "severity", "kinds",
]

#: Severities ``alert-config`` takes: the notifier's levels and an incident's P1-P4 (kept
#: as said; the action maps P1/P2 to critical, P3 to warning, P4 to info).
Severity = Literal["P1", "P2", "P3", "P4", "info", "warning", "critical"]

#: The longest duration the grammar reads; longer ones are read as this (``mute`` itself
#: stops at 30 days). Keeps the seconds far from ``timedelta``'s limits.
MAX_DURATION_S = 366 * 86_400


class CommandSpec(BaseModel):
    """Which slots a command needs and which it may take."""

    model_config = ConfigDict(frozen=True)

    required: tuple[SlotName, ...] = ()
    optional: tuple[SlotName, ...] = ()


_FILTERS: tuple[SlotName, ...] = ("migration_id", "environment", "cloud")

COMMAND_SPECS: dict[Command, CommandSpec] = {
    Command.STATUS: CommandSpec(optional=_FILTERS),
    Command.START: CommandSpec(required=("environment", "cloud", "region")),
    Command.PAUSE: CommandSpec(required=("migration_id",)),
    Command.RESUME: CommandSpec(required=("migration_id",)),
    Command.ROLLBACK: CommandSpec(required=("migration_id",)),
    Command.CANCEL: CommandSpec(required=("migration_id",)),
    Command.APPROVE: CommandSpec(required=("migration_id", "gate")),
    Command.REJECT: CommandSpec(required=("migration_id", "gate", "reason")),
    Command.REQUEST_APPROVAL: CommandSpec(required=("migration_id", "gate")),
    Command.REPORT: CommandSpec(required=("period",), optional=_FILTERS),
    Command.METRICS: CommandSpec(optional=_FILTERS),
    Command.COSTS: CommandSpec(optional=_FILTERS),
    Command.SEARCH: CommandSpec(required=("query",)),
    Command.RUNBOOK: CommandSpec(optional=("query",)),
    Command.LESSONS_LEARNED: CommandSpec(optional=("migration_id",)),
    Command.ALERT_CONFIG: CommandSpec(optional=("migration_id", "severity", "kinds")),
    Command.MUTE: CommandSpec(optional=("migration_id", "duration", "kinds")),
    Command.UNMUTE: CommandSpec(optional=("migration_id",)),
}


class Slots(BaseModel):
    """The values a command acts on. Only the ones its ``CommandSpec`` names are kept."""

    model_config = ConfigDict(extra="forbid")

    migration_id: str | None = None
    environment: Environment | None = None
    cloud: Cloud | None = None
    region: str | None = None
    gate: str | None = Field(default=None, description="phase-N, cutover, live-cutover, "
                             "decommission, rollback, budget or risk")
    reason: str | None = None
    period: Period | None = None
    query: str | None = Field(default=None, description="search text or runbook topic")
    duration: int | None = Field(default=None, ge=0, le=MAX_DURATION_S,
                                 description="seconds (mute: 30m, 2 hours, 2 Stunden)")
    severity: Severity | None = None
    kinds: tuple[str, ...] | None = Field(
        default=None, description="notification kinds (teams.grammar.NOTIFICATION_KINDS)")


class ParseContext(BaseModel):
    """What the conversation knows beyond the text: its migration (a channel per
    migration), the ids that exist, the user's locale and the organisation's default
    regions. Values taken from here are reported in ``Intent.inferred``."""

    model_config = ConfigDict(extra="forbid")

    locale: str | None = Field(default=None, description="the activity's locale, e.g. de-DE")
    migration_id: str | None = None
    known_migration_ids: tuple[str, ...] = ()
    default_regions: dict[Cloud, str] = Field(default_factory=dict)
    bot_names: tuple[str, ...] = ("MigrationBox",)
    known_ids_only: bool = Field(
        default=False,
        description="take migration ids only from known_migration_ids (exactly, or a "
                    "close match that names one of them alone) and ask back for any other "
                    "id-like word: set for transcribed speech, where a misheard word looks "
                    "like an id")


class Intent(BaseModel):
    """A command the bot understood completely."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["intent"] = "intent"
    command: Command
    slots: Slots = Field(default_factory=Slots)
    language: Language
    needs_confirmation: bool = False
    inferred: list[SlotName] = Field(default_factory=list)
    text: str = Field(default="", description="the cleaned text the intent came from")


class ClarificationReason(StrEnum):
    EMPTY = "empty"
    TOO_LONG = "too_long"
    UNKNOWN_COMMAND = "unknown_command"
    AMBIGUOUS_COMMAND = "ambiguous_command"
    MISSING_SLOT = "missing_slot"
    CONFLICTING_SLOT = "conflicting_slot"
    REGION_NOT_IN_CLOUD = "region_not_in_cloud"
    UNKNOWN_REGION = "unknown_region"
    UNKNOWN_MIGRATION = "unknown_migration"
    CONDITIONAL = "conditional"
    NEGATED = "negated"


class Clarification(BaseModel):
    """A question back to the user; nothing is run until they answer."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["clarification"] = "clarification"
    reason: ClarificationReason
    question: str
    language: Language
    command: Command | None = None
    options: list[Command] = Field(default_factory=list)
    missing: list[SlotName] = Field(default_factory=list)
    slots: Slots = Field(default_factory=Slots)


ParseResult = Annotated[Intent | Clarification, Field(discriminator="kind")]
