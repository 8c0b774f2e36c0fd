"""Incident reports (the plan's template) and notifiers against real loopback servers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from email import message_from_bytes, policy
from pathlib import Path

import pytest

from migrationbox.healer.incident import (
    Incident,
    IncidentMetrics,
    Prevention,
    RemediationSummary,
    VerificationRecord,
    format_incident_id,
    human_duration,
    render_markdown,
)
from migrationbox.healer.notify import (
    EmailNotifier,
    NotificationError,
    TeamsWebhookNotifier,
    adaptive_card,
    teams_message,
)

ROOT = Path(__file__).resolve().parents[2]
CARD_SCHEMA = ROOT / "include" / "migrationbox" / "schemas" / "adaptive-card-1.5.schema.json"
DETECTED = datetime(2026, 5, 15, 14, 23, 45, tzinfo=UTC)


def plan_incident() -> Incident:
    """The plan's example incident (component 6)."""
    incident = Incident(
        incident_id=format_incident_id(date(2026, 5, 15), 1),
        title="High CPU Utilization - web-server-03",
        resource="web-server-03", severity="P2", status="resolved",
        summary="High CPU utilization detected on web-server-03 (89% sustained for 3 "
                "minutes). The healer scaled out by 2 instances.",
        onset_at=DETECTED - timedelta(seconds=30), detected_at=DETECTED,
        decided_at=DETECTED + timedelta(seconds=60),
        resolved_at=DETECTED + timedelta(minutes=4, seconds=27),
        root_cause="Traffic spike: QPS increased 250%.", root_cause_confidence=0.95,
        remediation=RemediationSummary(
            action="horizontal_scale", description="Horizontal scaling +2 instances",
            decision="auto-heal (confidence 0.95)", success=True,
            cost_impact="+$120/month"),
        prevention=Prevention(recommendation="Pre-scale before campaigns",
                              action_item="Integrate marketing calendar with auto-scaling",
                              due_date=date(2026, 5, 22)),
        lessons=["Autonomous healer worked as designed"],
        follow_ups=["Create runbook for campaign prep"],
    )
    incident.add_event(DETECTED + timedelta(seconds=60),
                       "Decision: Horizontal scale +2 instances (confidence: 0.95)")
    incident.add_event(DETECTED, "Anomaly detected: CPU 89% (z-score 5.9)")
    return incident


def test_markdown_follows_the_plan_template() -> None:
    text = render_markdown(plan_incident())
    lines = text.splitlines()
    assert lines[0] == "# Incident Report: High CPU Utilization - web-server-03"
    for expected in (
        "**Incident ID:** INC-2026-05-15-001",
        "**Severity:** P2 (Service Degraded)",
        "**Detected:** 2026-05-15 14:23:45 UTC",
        "**Resolved:** 2026-05-15 14:28:12 UTC",
        "**Duration:** 4 minutes 27 seconds",
        "**MTTR:** 4.45 minutes (Target: <5 minutes) ✅",
        "**Action:** Horizontal scaling +2 instances",
        "**Success:** Yes ✅",
        "**Due Date:** 2026-05-22",
        "- **Detection Time:** 30 seconds",
        "- **Decision Time:** 1 minute",
        "- **Execution Time:** 3 minutes 27 seconds",
        "- **Total MTTR:** 4 minutes 27 seconds ✅ (Target: <5 minutes)",
        "- [ ] Create runbook for campaign prep",
    ):
        assert expected in lines, expected
    sections = [line for line in lines if line.startswith("## ")]
    assert sections == ["## Summary", "## Timeline", "## Root Cause", "## Remediation",
                        "## Prevention", "## Metrics", "## Lessons Learned",
                        "## Follow-Up Actions"]
    timeline = lines[lines.index("## Timeline") + 1: lines.index("## Timeline") + 3]
    assert timeline[0].startswith("- **14:23:45** - Anomaly detected")  # sorted by time


def test_unresolved_failed_incident_says_so() -> None:
    incident = Incident(
        incident_id="INC-2026-05-15-002", title="Disk full - db-01", resource="db-01",
        severity="P1", status="failed", summary="Cleanup ran; the volume expansion call "
        "failed half-way and was rolled back.", detected_at=DETECTED,
        decided_at=DETECTED + timedelta(seconds=20),
        remediation=RemediationSummary(
            action="disk_cleanup_expand", description="Delete old logs + expand disk",
            decision="auto-heal (confidence 0.92)", success=False, rolled_back=True,
            rollback_reason="ModifyVolume failed: VolumeModificationRateExceeded"))
    text = render_markdown(incident)
    assert "**Resolved:** not resolved" in text
    assert "**MTTR:** not resolved (Target: <5 minutes)" in text
    assert "**Success:** No ❌" in text
    assert "**Rolled back:** Yes (ModifyVolume failed: VolumeModificationRateExceeded)" in text
    assert "- **Detection Time:** not measured" in text
    assert IncidentMetrics.of(incident).within_target is None


def test_the_verification_window_is_kept_and_shown() -> None:
    from migrationbox.healer.verification import Point, VerifyWindow, judge

    window = VerifyWindow(min_points=5, min_seconds=4, settle_seconds=3, zero_is_reset=True)
    effective = DETECTED + timedelta(minutes=2)
    points = [Point(effective + timedelta(seconds=s), v)
              for s, v in ((-1, 97.0), (1, 0.0), (2, 32.4), (3, 32.1), (4, 32.6), (5, 31.9),
                           (6, 32.3))]
    verdict = judge(points, effective_at=effective, window=window,
                    still_bad=lambda v: v > 90, condition="cpu_utilization_pct > 90")
    assert verdict.recovered
    incident = plan_incident()
    assert incident.remediation is not None
    incident.remediation.verification = VerificationRecord.of(verdict, window)
    incident.add_event(effective + timedelta(seconds=6), "verified: " + verdict.summary())
    again = Incident.model_validate_json(incident.model_dump_json())  # what the store keeps
    record = again.remediation.verification  # type: ignore[union-attr]
    assert record is not None and record.verified
    assert record.values == [32.4, 32.1, 32.6, 31.9, 32.3]  # not the 97 before, not the 0
    assert record.points_after_action == 6 and record.ignored == [
        f"reset reading 0 at {(effective + timedelta(seconds=1)):%H:%M:%S}"]
    stats = record.stats()
    assert stats is not None and stats["n"] == 5 and stats["min"] == 31.9
    assert stats["max"] == 32.6 and stats["span_s"] == 4.0
    assert stats["mean"] == pytest.approx(32.26)
    assert ">= 5 point(s) over >= 4 s" in record.window
    text = render_markdown(again)
    assert "n=5 over 4.0 s, min 31.9 / mean 32.26 / max 32.6" in text
    assert "14:25:47 32.4" in text  # the window's values, with their times
    # the remediation section and the Teams card carry the verdict, not only the timeline
    section = text.split("## Remediation", 1)[1]
    assert record.summary and f"**Verification:** {record.summary}" in section
    card = adaptive_card(again, report_url="https://airflow.example/incidents/1")
    facts = {f["title"]: f["value"] for f in card["body"][1]["facts"]}
    assert facts["Verification"] == record.summary


def test_durations_and_ids() -> None:
    assert human_duration(timedelta(hours=1, seconds=1)) == "1 hour 1 second"
    assert human_duration(timedelta(0)) == "0 seconds"
    assert format_incident_id(date(2026, 1, 2), 12) == "INC-2026-01-02-012"
    with pytest.raises(ValueError):
        format_incident_id(date(2026, 1, 2), 0)
    slow = plan_incident().model_copy(update={"resolved_at": DETECTED + timedelta(minutes=7)})
    assert IncidentMetrics.of(slow).within_target is False
    assert "❌" in render_markdown(slow)


def test_adaptive_card_validates_against_the_1_5_schema() -> None:
    import jsonschema
    schema = json.loads(CARD_SCHEMA.read_text(encoding="utf-8"))
    card = adaptive_card(plan_incident(), report_url="https://airflow.example/incidents/1")
    jsonschema.validate(card, schema)
    assert card["version"] == "1.5"
    facts = {f["title"]: f["value"] for f in card["body"][1]["facts"]}
    assert facts["MTTR"] == "4.45 minutes (Target: <5 minutes) ✅"
    broken = dict(card, body=[{"type": "TextBlock"}])  # TextBlock needs text
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)


# --------------------------------------------------------------------------- servers

WEBHOOK_SERVER = r"""
import json, sys
from http.server import BaseHTTPRequestHandler, HTTPServer
out, statuses = sys.argv[1], [int(s) for s in sys.argv[2].split(",") if s]
class H(BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        with open(out, "a") as f:
            f.write(json.dumps({"path": self.path, "type": self.headers["Content-Type"],
                                "body": json.loads(body)}) + "\n")
        status = statuses.pop(0) if statuses else 200
        self.send_response(status); self.send_header("Content-Length", "2"); self.end_headers()
        self.wfile.write(b"ok" if status < 400 else b"no")
server = HTTPServer(("127.0.0.1", 0), H)
print(server.server_address[1], flush=True)
server.serve_forever()
"""

SMTP_SERVER = r"""
import asyncio, socket, sys
from aiosmtpd.smtp import SMTP
out = sys.argv[1]
class Handler:
    async def handle_DATA(self, server, session, envelope):
        with open(out, "ab") as f:
            f.write(envelope.content + b"\n--END--\n")
        return "250 OK"
async def main():
    sock = socket.socket(); sock.bind(("127.0.0.1", 0)); sock.listen()
    print(sock.getsockname()[1], flush=True)
    server = await asyncio.get_running_loop().create_server(lambda: SMTP(Handler()), sock=sock)
    await server.serve_forever()
asyncio.run(main())
"""


def start(code: str, *args: str) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    line = proc.stdout.readline()
    if not line.strip().isdigit():
        os.killpg(proc.pid, signal.SIGTERM)
        raise RuntimeError(f"test server did not start: {line!r} {proc.stderr.read()}")
    return proc, int(line)


def stop(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=10)
    proc.stdout.close()
    proc.stderr.close()


@pytest.fixture
def webhook(tmp_path: Path, request) -> Iterator[tuple[str, Path]]:
    statuses = getattr(request, "param", "")
    out = tmp_path / "posts.jsonl"
    proc, port = start(WEBHOOK_SERVER, str(out), statuses)
    try:
        yield f"http://127.0.0.1:{port}/webhookb2/secret-signature", out
    finally:
        stop(proc)


def posts(out: Path) -> list[dict]:
    return [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []


def test_teams_webhook_posts_the_card(webhook) -> None:
    url, out = webhook
    TeamsWebhookNotifier(url, report_url_template="https://mb.example/incidents/{id}"
                         ).notify(plan_incident())
    (post,) = posts(out)
    assert post["path"] == "/webhookb2/secret-signature"
    assert post["type"] == "application/json"
    card = adaptive_card(plan_incident(), "https://mb.example/incidents/INC-2026-05-15-001")
    assert post["body"] == teams_message(card)
    assert post["body"]["attachments"][0]["contentType"] == (
        "application/vnd.microsoft.card.adaptive")


@pytest.mark.parametrize("webhook", ["503,429"], indirect=True)
def test_teams_webhook_retries_busy_answers(webhook) -> None:
    url, out = webhook
    TeamsWebhookNotifier(url, backoff_seconds=0.01).notify(plan_incident())
    assert len(posts(out)) == 3


@pytest.mark.parametrize("webhook", ["400"], indirect=True)
def test_teams_webhook_client_error_is_not_retried_and_hides_the_url(webhook) -> None:
    url, out = webhook
    with pytest.raises(NotificationError) as err:
        TeamsWebhookNotifier(url, backoff_seconds=0.01).notify(plan_incident())
    assert "answered 400" in str(err.value) and "after 1 attempt" in str(err.value)
    assert "secret-signature" not in str(err.value)
    assert len(posts(out)) == 1


def test_teams_webhook_unreachable_is_a_clear_error() -> None:
    with pytest.raises(NotificationError, match="ConnectError"):
        TeamsWebhookNotifier("http://127.0.0.1:9/hook", attempts=2, timeout=1,
                             backoff_seconds=0.01).notify(plan_incident())


def test_email_sends_the_report_over_smtp(tmp_path: Path) -> None:
    pytest.importorskip("aiosmtpd", reason="aiosmtpd (test SMTP server) is not installed")
    out = tmp_path / "mail.eml"
    proc, port = start(SMTP_SERVER, str(out))
    try:
        EmailNotifier("127.0.0.1", port, "healer@mb.example",
                      ["oncall@mb.example", "sre@mb.example"]).notify(plan_incident())
        deadline = time.monotonic() + 5
        while not out.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop(proc)
    raw = out.read_bytes().split(b"\n--END--\n")[0]
    msg = message_from_bytes(raw, policy=policy.default)
    assert msg["Subject"].strip() == ("[P2] INC-2026-05-15-001: High CPU Utilization - "
                                      "web-server-03 (resolved)")
    assert msg["To"] == "oncall@mb.example, sre@mb.example"
    body = msg.get_body(("plain",)).get_content()
    assert "**MTTR:** 4.45 minutes (Target: <5 minutes) ✅" in body
    (attachment,) = list(msg.iter_attachments())
    assert attachment.get_filename() == "INC-2026-05-15-001.md"


def test_email_failure_is_a_notification_error() -> None:
    with pytest.raises(NotificationError, match=r"127\.0\.0\.1:9"):
        EmailNotifier("127.0.0.1", 9, "a@b", ["c@d"], timeout=1).notify(plan_incident())
    with pytest.raises(NotificationError, match="no recipients"):
        EmailNotifier("127.0.0.1", 9, "a@b", []).notify(plan_incident())
