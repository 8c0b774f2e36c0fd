"""The REST client's trigger under a transient server error.

The embedded default keeps Airflow's metadata in SQLite; 50 wave runs triggered at once
(benchmarks/bench_executors.py) made the API server answer "Database error" (500). A
trigger with a run id may be repeated: a run the failed call did create answers 409 and
is returned as is, so no run starts twice. Without a run id a repeat could start a second
run, so the error is raised. The server side is an ``httpx.MockTransport`` answering in
Airflow's published shapes; what is under test is the client's retry policy.
"""

from __future__ import annotations

import json

import httpx
import pytest

from migrationbox.platform import rest
from migrationbox.platform.rest import AirflowApiError, AirflowClient


class FlakyAirflow:
    """POST dagRuns fails ``failures`` times with 500 (the first one after creating the
    run, as a commit that raced the lock can); then duplicates answer 409."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.runs: dict[str, dict] = {}
        self.posts = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/auth/token":
            return httpx.Response(201, json={"access_token": "t"})
        if request.method == "POST":
            self.posts += 1
            body = json.loads(request.content)
            run_id = body.get("dag_run_id") or f"manual__{self.posts}"
            if run_id in self.runs:
                return httpx.Response(409, json={"detail": "already exists"})
            self.runs[run_id] = {"dag_run_id": run_id, "state": "queued"}
            if self.failures:
                self.failures -= 1
                return httpx.Response(500, json={"reason": "Database error"})
            return httpx.Response(200, json=self.runs[run_id])
        run_id = request.url.path.rsplit("/", 1)[-1]
        return httpx.Response(200, json=self.runs[run_id])


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rest.time, "sleep", lambda s: None)


def _client(server: FlakyAirflow) -> AirflowClient:
    return AirflowClient("http://127.0.0.1:1", "admin", "pw",
                         transport=httpx.MockTransport(server))


def test_a_trigger_with_a_run_id_is_retried_and_starts_one_run() -> None:
    server = FlakyAirflow(failures=2)
    run = _client(server).trigger("d", conf={"dry_run": True}, run_id="r1")
    assert run["dag_run_id"] == "r1"
    assert list(server.runs) == ["r1"] and server.posts == 2  # 500, then 409


def test_a_trigger_without_a_run_id_is_not_repeated() -> None:
    server = FlakyAirflow(failures=1)
    with pytest.raises(AirflowApiError) as err:
        _client(server).trigger("d")
    assert err.value.status == 500 and server.posts == 1


def test_a_persistent_error_is_raised_after_the_retries() -> None:
    server = FlakyAirflow(failures=0)

    def always_500(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/auth/token":
            return httpx.Response(201, json={"access_token": "t"})
        server.posts += 1
        return httpx.Response(503, json={"detail": "unavailable"})

    client = AirflowClient("http://127.0.0.1:1", "admin", "pw",
                           transport=httpx.MockTransport(always_500))
    with pytest.raises(AirflowApiError) as err:
        client.trigger("d", run_id="r1")
    assert err.value.status == 503 and server.posts == rest.MAX_RETRIES + 1
