"""The seams between the bot's parts: what the endpoint hands to the command handler,
what comes back, and how anything reaches a conversation through the Bot Connector.

Kept apart from the parts themselves so the endpoint (HTTP, tokens), the command handler
(platform actions), the notifier and the approval workflow can each be built and tested
on their own, and the next issue's knowledge search and digests plug in the same way.
"""

from __future__ import annotations

from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field

from migrationbox.teams.cards import CardActionData


class ConversationRef(BaseModel):
    """What the Bot Connector needs to reach a conversation again (the Bot Framework's
    ConversationReference, reduced to the fields a send uses)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    conversation_id: str = Field(min_length=1, max_length=512)
    service_url: str = Field(min_length=1, max_length=1024)
    channel_id: str = "msteams"
    tenant_id: str | None = None
    bot_id: str = Field(min_length=1, max_length=255)
    bot_name: str | None = None
    is_group: bool = False
    #: The conversation type Teams reports: personal, groupChat or channel.
    conversation_type: str | None = None


class Inbound(BaseModel):
    """One authenticated message or card action, as the command handler sees it."""

    model_config = ConfigDict(extra="forbid")

    activity_id: str
    text: str = ""
    user_id: str
    #: Entra object id of the user (``from.aadObjectId``): what approver lists name.
    user_aad_id: str | None = None
    user_name: str = ""
    locale: str | None = None
    conversation: ConversationRef
    #: Attachments as the activity carries them (contentType, contentUrl, name, content).
    attachments: list[dict[str, Any]] = Field(default_factory=list)


class Reply(BaseModel):
    """An answer: a line of text, an Adaptive Card (content only), or both."""

    model_config = ConfigDict(extra="forbid")

    text: str | None = None
    card: dict[str, Any] | None = None


class Dispatcher(Protocol):
    """The command handler: called by the endpoint after authentication, off the event
    loop (it may block on the Airflow REST API and the store)."""

    def handle_message(self, inbound: Inbound) -> list[Reply]: ...

    def handle_card_action(self, inbound: Inbound, data: CardActionData) -> Reply:
        """Answer an ``adaptiveCard/action`` invoke; the reply's card replaces the card
        the button was on."""
        ...


class Sender(Protocol):
    """Outbound messages through the Bot Connector REST API (proactive: no inbound turn)."""

    def send(self, ref: ConversationRef, reply: Reply) -> str:
        """Post ``reply`` to the conversation; returns the new activity's id."""
        ...

    def update(self, ref: ConversationRef, activity_id: str, reply: Reply) -> None:
        """Replace an activity the bot posted (an approval card once it is answered)."""
        ...
