"""Every chaos scenario through the real Airflow heal DAG, triggered and followed by REST.

A platform (emulator + Airflow) for the module; the chaos estate's wave is completed and
its lab publishes metrics to the platform's emulator. One run of ``migrationbox_heal``
(schedule off via ``MIGRATIONBOX_HEAL_SCHEDULE=none`` so only this run senses) senses every
2 s while the test injects each fault in turn: the run's ``sense_and_heal`` task must
detect it, root-cause it, remediate and verify it, and store the incident. A routine
traffic burst must not be auto-healed; each incident is posted to a (loopback) Teams
webhook through the connection ``migrationbox_healer_teams``. Last, a lock chain on the
migrated PostgreSQL database: the risky fix ends the window, the heal DAG requests
``migrationbox_heal_approval``, a person approves it by REST, and the blocker is killed.

The matrix's "for N s" durations are scaled by 0.02 (``sustain_scale``) as in
``test_chaos_healer.py``, which runs the same faults through ``Healer.run_pass`` alone.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.airflow]

DAG_ID = "migrationbox_heal"
APPROVAL_DAG_ID = "migrationbox_heal_approval"


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    from migrationbox.platform.testing import running_platform

    os.environ.pop("MLFLOW_TRACKING_URI", None)  # the platform's own MLflow store
    with running_platform(tmp_path_factory.mktemp("heal-platform"),
                          MIGRATIONBOX_HEAL_SCHEDULE="none") as plat:
        yield plat


@pytest.fixture()
def teams_webhook():
    """A loopback stand-in for a Teams channel's incoming webhook: records each POST."""
    posts: list[dict] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            posts.append({"path": self.path, "body": json.loads(body or b"{}")})
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"1")

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/webhookb2/chaos", posts
    finally:
        server.shutdown()
        server.server_close()


def _states(client, dag_id: str, run_id: str) -> dict[str, str]:
    return {t["task_id"]: t["state"] for t in client.task_instances(dag_id, run_id)}


def _incidents_since(store, estate: str, since: datetime, server: str, anomaly: str):
    return [r for r in store.list(estate) if r.anomaly_type == anomaly
            and r.resource == server and r.detected_at >= since]


def _wait_for(what, predicate, timeout: float, poll: float = 1.0):
    from migrationbox.platform.testing import wait_until

    return wait_until(what, predicate, timeout, poll)


def test_every_chaos_scenario_is_healed_by_the_heal_dag(platform, teams_webhook):
    from pathlib import Path

    from migrationbox.healer.chaoslab import SCENARIOS, ChaosEstate
    from migrationbox.healer.store import IncidentStore
    from migrationbox.orchestration.follow import Approver, follow_run
    from migrationbox.store.db import engine

    env = platform.env()
    chaos = ChaosEstate(f"hd{uuid.uuid4().hex[:6]}", Path(platform.runtime_dir) / "chaos",
                        env["MIGRATIONBOX_EMULATOR_URL"])
    client = platform.client()
    store = IncidentStore(engine())
    try:
        chaos.up()
        client.wait_for_dag(DAG_ID, timeout=240)
        client.wait_for_dag(APPROVAL_DAG_ID, timeout=240)
        client.unpause(DAG_ID)
        # Teams notifications: the connection a user would add in the UI
        hook_url, posts = teams_webhook
        client.bulk_upsert("connections", [{"connection_id": "migrationbox_healer_teams",
                                             "conn_type": "http", "host": hook_url}])
        chaos.baseline(30.0)
        risky = chaos.supports("blocking_lock")
        run = client.trigger(DAG_ID, conf={
            "estates": [chaos.estate], "window_s": 600 if risky else 240, "interval_s": 2,
            "sustain_scale": 0.02, "verify_timeout_s": 30})
        run_id = run["dag_run_id"]
        _wait_for("sense_and_heal to run",
                  lambda: _states(client, DAG_ID, run_id).get("sense_and_heal") == "running",
                  timeout=300, poll=2)
        time.sleep(4)  # a first pass or two of quiet readings

        for scenario, spec in SCENARIOS.items():
            since = datetime.now(UTC)
            chaos.inject(scenario)
            try:
                found = _wait_for(
                    f"{scenario} to be healed through the DAG",
                    lambda spec=spec, since=since: [
                        r for r in _incidents_since(store, chaos.estate, since,
                                                    spec["server"], spec["row"])
                        if r.status in ("resolved", "failed")], timeout=120)
                incident, report = store.get(found[0].incident_id)
                assert incident.status.value == "resolved", report
                assert "verified:" in report, report
                assert incident.mttr is not None
            finally:
                chaos.clear(spec["server"])
                chaos.release_locks()
            time.sleep(3)  # let the metrics settle before the next fault

        # a routine burst (the forecaster saw one in the baseline) is not auto-healed
        since = datetime.now(UTC)
        chaos.burst("web-02", seconds=3.0, rate=45.0)
        time.sleep(8)
        web2 = [r for r in store.list(chaos.estate) if r.resource == "web-02"
                and r.detected_at >= since and r.status == "resolved"]
        assert not web2, web2
        assert _states(client, DAG_ID, run_id)["sense_and_heal"] == "running"

        if risky:
            since = datetime.now(UTC)
            chaos.inject("blocking_lock")
            asked = _wait_for("the lock chain to wait for approval", lambda: [
                r for r in _incidents_since(store, chaos.estate, since, "db-01",
                                            "database_deadlock")
                if r.status == "awaiting_approval"], timeout=120)[0]
        outcome = follow_run(client, DAG_ID, run_id, timeout=700, say=lambda _t: None)
        assert outcome.state == "success", outcome.task_states
        # every incident of the run went to the Teams channel as an Adaptive Card
        cards = [p for p in posts if p["path"] == "/webhookb2/chaos"]
        posted = json.dumps([p["body"] for p in cards])
        cpu = next(r for r in store.list(chaos.estate) if r.anomaly_type == "high_cpu")
        assert cpu.incident_id in posted, f"{len(cards)} card(s) posted"
        assert all(p["body"]["attachments"][0]["contentType"] ==
                   "application/vnd.microsoft.card.adaptive" for p in cards)
        if not risky:
            pytest.skip("lab databases are SQLite here: the approval path needs PostgreSQL")
        approval_run = f"approval__{asked.incident_id}"
        decided = follow_run(client, APPROVAL_DAG_ID, approval_run,
                             approver=Approver(name="admin"), timeout=300,
                             say=lambda _t: None)
        assert decided.state == "success", decided.task_states
        assert decided.approvals and decided.approvals[0]["choice"] == "Approve"
        incident, report = store.get(asked.incident_id)
        assert incident.status.value == "resolved", report
        assert "approved by admin" in report and "terminated blocking session" in report
    finally:
        chaos.down()
