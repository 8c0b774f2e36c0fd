"""Setting a run's and a task instance's state through the REST client, against a
loopback HTTP server that records what arrives: method, path (run ids carry ``:`` and
``+``, so each segment is quoted) and the JSON body in the shapes Airflow 3.3 accepts
(``DAGRunPatchBody``: state, note; ``PatchTaskInstanceBody``: new_state, note). The Teams
bot's cancel and rollback helpers must send the same requests."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from migrationbox.platform.rest import AirflowApiError, AirflowClient
from migrationbox.teams import actions

DAG = "migrate__acme-1__wave_01"
RUN = "manual__2026-12-07T10:00:00+00:00"
RUN_PATH = f"/api/v2/dags/{DAG}/dagRuns/manual__2026-12-07T10%3A00%3A00%2B00%3A00"


class Recorder(ThreadingHTTPServer):
    """Answers /auth/token with a token and every PATCH with the state it was given."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests: list[dict[str, Any]] = []
        self.status = 200

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def patches(self) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["method"] == "PATCH"]


class _Handler(BaseHTTPRequestHandler):
    server: Recorder

    def log_message(self, *args: object) -> None:
        pass

    def _answer(self, status: int, payload: object) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(length)) if length else None

    def do_POST(self) -> None:
        body = self._body()
        self.server.requests.append({"method": "POST", "path": self.path, "json": body})
        self._answer(201, {"access_token": "tok"})

    def do_PATCH(self) -> None:
        body = self._body()
        self.server.requests.append({"method": "PATCH", "path": self.path, "json": body,
                                     "auth": self.headers.get("Authorization")})
        if self.server.status != 200:
            self._answer(self.server.status, {"detail": "not possible"})
        elif "/taskInstances/" in self.path:
            self._answer(200, {"task_instances": [{"state": body["new_state"]}],
                               "total_entries": 1})
        else:
            self._answer(200, {"dag_run_id": RUN, "state": body.get("state"),
                               "note": body.get("note")})


@pytest.fixture()
def server() -> Iterator[Recorder]:
    srv = Recorder()
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(timeout=5)


@pytest.fixture()
def client(server: Recorder) -> Iterator[AirflowClient]:
    with AirflowClient(server.url, "admin", "pw") as c:
        yield c


def test_mark_run_patches_the_run_with_state_and_note(server: Recorder,
                                                      client: AirflowClient) -> None:
    run = client.mark_run(DAG, RUN, "failed", note="cancelled from Teams by Ann")
    assert run["state"] == "failed"
    (patch,) = server.patches()
    assert patch["path"] == RUN_PATH
    assert patch["json"] == {"state": "failed", "note": "cancelled from Teams by Ann"}
    assert patch["auth"] == "Bearer tok"


def test_mark_run_without_a_note_sends_none(server: Recorder, client: AirflowClient) -> None:
    client.mark_run(DAG, RUN, "success")
    assert server.patches()[0]["json"] == {"state": "success"}


def test_set_task_state_patches_the_task_instance(server: Recorder,
                                                  client: AirflowClient) -> None:
    answer = client.set_task_state(DAG, RUN, "cutover.canary_shift", "failed",
                                   note="rollback from Teams")
    assert answer["task_instances"][0]["state"] == "failed"
    (patch,) = server.patches()
    assert patch["path"] == f"{RUN_PATH}/taskInstances/cutover.canary_shift"
    assert patch["json"] == {"new_state": "failed", "note": "rollback from Teams"}


@pytest.mark.parametrize(("call", "args"), [
    ("mark_run", (DAG, RUN, "running")),
    ("mark_run", (DAG, RUN, "failed", "x" * 1001)),
    ("set_task_state", (DAG, RUN, "t", "up_for_retry")),
    ("set_task_state", (DAG, RUN, "t", "failed", "x" * 1001)),
])
def test_what_airflow_would_refuse_is_refused_before_any_request(
        server: Recorder, client: AirflowClient, call: str, args: tuple) -> None:
    with pytest.raises(ValueError, match=call):
        getattr(client, call)(*args)
    assert server.requests == []


def test_an_error_answer_is_raised_with_its_status(server: Recorder,
                                                   client: AirflowClient) -> None:
    server.status = 409
    with pytest.raises(AirflowApiError) as err:
        client.mark_run(DAG, RUN, "failed")
    assert err.value.status == 409 and err.value.method == "PATCH"


def test_the_teams_helpers_send_the_same_requests(server: Recorder,
                                                  client: AirflowClient) -> None:
    long_note = "n" * 1500  # the helpers cut a note to what Airflow takes
    assert actions.mark_run_failed(client, DAG, RUN, long_note)["state"] == "failed"
    actions.set_task_state(client, DAG, RUN, "validate.verify_data", "failed", "why")
    first, second = server.patches()
    assert (first["path"], first["json"]) == (RUN_PATH, {"state": "failed",
                                                         "note": "n" * 1000})
    assert (second["path"], second["json"]) == (
        f"{RUN_PATH}/taskInstances/validate.verify_data",
        {"new_state": "failed", "note": "why"})
