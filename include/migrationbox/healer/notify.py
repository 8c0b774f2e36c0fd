"""Telling people about incidents: a Notifier interface, Teams and email implementations.

* :class:`TeamsWebhookNotifier` posts an Adaptive Card (schema 1.5, the highest Teams
  renders) to a Teams channel webhook (an Incoming Webhook or a Workflows "post to a
  channel when a webhook request is received" URL), wrapped in the ``message`` envelope
  both accept. It retries 429 and 5xx answers a few times. The webhook URL carries its
  own secret signature, so it never appears in errors or logs.
* :class:`EmailNotifier` sends the Markdown report over SMTP (plain text body, the report
  attached as ``<incident id>.md``), optionally with STARTTLS or implicit TLS and login.

Credentials belong in Airflow connections; these classes take plain values so that the
DAG resolves the connection and tests can point them at local servers.
"""

from __future__ import annotations

import smtplib
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any, Protocol

from migrationbox.errors import ExternalServiceError
from migrationbox.healer.incident import (
    SEVERITY_LABELS,
    Incident,
    IncidentMetrics,
    IncidentStatus,
    render_markdown,
)

ADAPTIVE_CARD_VERSION = "1.5"
CARD_CONTENT_TYPE = "application/vnd.microsoft.card.adaptive"


class NotificationError(ExternalServiceError):
    """A notifier could not deliver; the message says which channel and why."""


class Notifier(Protocol):
    def notify(self, incident: Incident, report_markdown: str | None = None) -> None: ...


_STATUS_COLOR = {
    IncidentStatus.resolved: "Good",
    IncidentStatus.failed: "Attention",
    IncidentStatus.awaiting_approval: "Warning",
    IncidentStatus.alerted: "Warning",
    IncidentStatus.open: "Attention",
}


def adaptive_card(incident: Incident, report_url: str | None = None) -> dict[str, Any]:
    """The incident as an Adaptive Card 1.5 (title, facts, summary, link to the report)."""
    metrics = IncidentMetrics.of(incident).as_text()
    facts = [
        {"title": "Incident", "value": incident.incident_id},
        {"title": "Severity", "value": f"{incident.severity} "
                                       f"({SEVERITY_LABELS.get(incident.severity, '')})"},
        {"title": "Resource", "value": incident.resource},
        {"title": "Status", "value": incident.status.value},
        {"title": "Detected", "value": incident.detected_at.strftime("%Y-%m-%d %H:%M:%S UTC")},
        {"title": "MTTR", "value": metrics["mttr_line"]},
    ]
    if incident.remediation is not None:
        facts.append({"title": "Remediation", "value": incident.remediation.description})
        if incident.remediation.verification and incident.remediation.verification.summary:
            facts.append({"title": "Verification",
                          "value": incident.remediation.verification.summary})
    body: list[dict[str, Any]] = [
        {"type": "TextBlock", "text": f"{incident.incident_id}: {incident.title}",
         "weight": "Bolder", "size": "Medium", "wrap": True,
         "color": _STATUS_COLOR.get(incident.status, "Default")},
        {"type": "FactSet", "facts": facts},
        {"type": "TextBlock", "text": incident.summary or "(no summary)", "wrap": True},
    ]
    if incident.root_cause:
        body.append({"type": "TextBlock", "text": f"Root cause: {incident.root_cause}",
                     "wrap": True, "isSubtle": True})
    card: dict[str, Any] = {
        "type": "AdaptiveCard",
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "version": ADAPTIVE_CARD_VERSION,
        "body": body,
    }
    if report_url:
        card["actions"] = [{"type": "Action.OpenUrl", "title": "Open incident report",
                            "url": report_url}]
    return card


def teams_message(card: dict[str, Any]) -> dict[str, Any]:
    """The ``message`` envelope Teams webhooks expect around an Adaptive Card."""
    return {"type": "message",
            "attachments": [{"contentType": CARD_CONTENT_TYPE, "contentUrl": None,
                             "content": card}]}


@dataclass
class TeamsWebhookNotifier:
    url: str = field(repr=False)
    report_url_template: str | None = None  # e.g. "https://airflow/.../incidents/{id}"
    timeout: float = 10.0
    attempts: int = 3
    backoff_seconds: float = 0.5

    def notify(self, incident: Incident, report_markdown: str | None = None) -> None:
        import httpx

        report_url = (self.report_url_template.format(id=incident.incident_id)
                      if self.report_url_template else None)
        payload = teams_message(adaptive_card(incident, report_url))
        last = ""
        for attempt in range(1, self.attempts + 1):
            try:
                response = httpx.post(self.url, json=payload, timeout=self.timeout)
            except httpx.HTTPError as exc:
                last = f"{type(exc).__name__}"
            else:
                if response.is_success:
                    return
                last = f"answered {response.status_code}: {response.text[:200]}"
                if response.status_code != 429 and response.status_code < 500:
                    break  # a client error does not get better by retrying
            if attempt < self.attempts:
                time.sleep(self.backoff_seconds * attempt)
        raise NotificationError(f"Teams webhook for {incident.incident_id}: {last} "
                                f"(after {attempt} attempt(s))")


@dataclass
class EmailNotifier:
    host: str
    port: int
    sender: str
    recipients: Sequence[str]
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    starttls: bool = False
    use_ssl: bool = False
    timeout: float = 10.0

    def message(self, incident: Incident, report_markdown: str | None = None) -> EmailMessage:
        report = report_markdown or render_markdown(incident)
        msg = EmailMessage()
        msg["Subject"] = (f"[{incident.severity}] {incident.incident_id}: {incident.title} "
                          f"({incident.status.value})")
        msg["From"] = self.sender
        msg["To"] = ", ".join(self.recipients)
        msg.set_content(report)
        msg.add_attachment(report.encode("utf-8"), maintype="text", subtype="markdown",
                           filename=f"{incident.incident_id}.md")
        return msg

    def notify(self, incident: Incident, report_markdown: str | None = None) -> None:
        if not self.recipients:
            raise NotificationError(f"email for {incident.incident_id}: no recipients")
        msg = self.message(incident, report_markdown)
        try:
            if self.use_ssl:
                client: smtplib.SMTP = smtplib.SMTP_SSL(
                    self.host, self.port, timeout=self.timeout,
                    context=ssl.create_default_context())
            else:
                client = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
            with client:
                if self.starttls and not self.use_ssl:
                    client.starttls(context=ssl.create_default_context())
                if self.username:
                    client.login(self.username, self.password or "")
                refused = client.send_message(msg)
        except (OSError, smtplib.SMTPException) as exc:
            raise NotificationError(f"email for {incident.incident_id} via "
                                    f"{self.host}:{self.port}: {exc}") from exc
        if refused:
            raise NotificationError(f"email for {incident.incident_id}: refused for "
                                    + ", ".join(sorted(refused)))
