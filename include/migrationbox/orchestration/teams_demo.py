"""The demo's Teams act: one command and one gate approved from a card, through the bot
endpoint the platform runs.

Teams cannot reach a laptop's loopback, so ``teams.dev_tenant.DevTenant`` plays Microsoft's
side on screen: it signs the calls the Bot Connector would make and receives what the bot
sends. It is written into the bot's Airflow connection (``attach``), as an operator writes
a real tenant's values. A person, "Sarah (approver)", types ``status <estate>`` and gets
the status card; when the wave reaches its first gate the bot's own scan posts the approval
card, Sarah clicks Approve, and the demo's REST approver leaves that gate alone. If the
Teams path fails, the REST approver answers the gate so the wave still runs, and the demo
says the Teams step failed (and ends with a failure code).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

APPROVER_NAME = "Sarah (approver)"
APPROVER_AAD = "demo-approver-sarah"
CHANNEL = "19:migrationbox-demo@thread.tacv2"
CARD_TIMEOUT_S = 900.0


def _hitl_task_id(detail: dict[str, Any]) -> str | None:
    ti = detail.get("task_instance") or {}
    return detail.get("task_id") or ti.get("task_id")


@dataclass
class TeamsDemo:
    """Holds the loopback tenant and the gate Teams answers for the length of the demo."""

    estate: str
    say: Callable[[str], None]
    tenant: Any = None
    user: Any = None
    gate_task: str | None = None
    approved: threading.Event = field(default_factory=threading.Event)
    failed: str | None = None
    _thread: threading.Thread | None = None

    def start(self, platform: Any) -> None:
        from migrationbox.store.db import session_scope
        from migrationbox.teams import state
        from migrationbox.teams.dev_tenant import DevTenant

        self.tenant = DevTenant().start()
        url = self.tenant.attach(platform)
        with session_scope() as s:
            state.set_approvers(s, self.estate, [(APPROVER_AAD, APPROVER_NAME, "primary")])
        self.user = self.tenant.user(url, name=APPROVER_NAME, aad_id=APPROVER_AAD,
                                     conversation_id=CHANNEL)
        self.say(f"  Teams bot endpoint {url}/api/messages (component teams-bot), attached "
                 "to a loopback tenant: signed Bot Connector calls in, replies to a "
                 "Bot Connector stub that checks the published request shapes")
        self.say(f"  approvers of {self.estate}: {APPROVER_NAME}")

    def command(self, text: str) -> None:
        from migrationbox.teams.dev_tenant import card_text, cards_of

        t0 = time.monotonic()
        replies = self.user.say(text)
        self.say(f"  {APPROVER_NAME} types: {text!r}  -> answered in "
                 f"{time.monotonic() - t0:.1f}s")
        for reply in replies:
            if reply.body.get("text"):
                self.say(f"    bot: {reply.body['text']}")
            for card in cards_of(reply):
                lines = [ln for ln in card_text(card).splitlines() if ln.strip()][:8]
                self.say("    bot (Adaptive Card): " + " | ".join(lines))

    # -- the gate answered from a card -----------------------------------------------------

    def leave(self, detail: dict[str, Any]) -> bool:
        """For the REST approver: leave the first gate to Teams (unless Teams failed)."""
        task_id = _hitl_task_id(detail)
        if self.gate_task is None:
            self.gate_task = task_id
        return task_id == self.gate_task and self.failed is None

    def approve_first_card_in_background(self) -> None:
        self._thread = threading.Thread(target=self._approve_first_card, daemon=True,
                                        name="demo-teams-approval")
        self._thread.start()

    def _approve_first_card(self) -> None:
        from migrationbox.teams.dev_tenant import card_text, card_verbs, cards_of

        try:
            posted = self.tenant.wait_for(
                "approval card",
                lambda r: any("approve" in card_verbs(c) and self.estate in str(c)
                              for c in cards_of(r)),
                timeout=CARD_TIMEOUT_S)
            card = next(c for c in cards_of(posted) if "approve" in card_verbs(c))
            title = (card_text(card).splitlines() or ["approval"])[0]
            self.say(f"  Teams: the bot posted an approval card: {title}")
            decided = self.user.click("approve", card_verbs(card)["approve"],
                                      reply_to=posted.answer_id)
            text = card_text(decided) if isinstance(decided, dict) else str(decided)
            verdict = [ln for ln in text.splitlines() if "pproval granted" in ln]
            if not verdict:
                raise RuntimeError(f"the bot did not grant the approval: {text[:300]}")
            self.say(f"  Teams: {APPROVER_NAME} clicked Approve; the card now says: "
                     f"{verdict[0]}")
            self.approved.set()
        except Exception as exc:  # shown, and the REST approver takes the gate over
            self.failed = f"{type(exc).__name__}: {exc}"
            self.say(f"  Teams step FAILED ({self.failed}); the REST approver answers the "
                     "gate instead")

    def finish(self) -> bool:
        """Stop the tenant; True when the card approval happened."""
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self.tenant is not None:
            self.tenant.stop()
        return self.approved.is_set()
