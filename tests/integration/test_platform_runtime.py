"""The local platform for real: emulator + Airflow up, REST and HITL round trips, down.

One platform per test session (Airflow's start-up is the slow part on 2 cores), in a
temporary runtime folder on free loopback ports, with its own tiny DAG folder
(tests/fixtures/airflow_dags). The last test stops it and checks nothing is left.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from migrationbox.cloud import aws_session
from migrationbox.platform.rest import AirflowApiError, AirflowClient
from migrationbox.platform.supervisor import Platform, platform_env

pytestmark = [pytest.mark.integration, pytest.mark.airflow, pytest.mark.timeout(600)]

DAG_ID = "platform_hitl_probe"
FIXTURE_DAGS = Path(__file__).resolve().parent.parent / "fixtures" / "airflow_dags"


@pytest.fixture(scope="session")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    runtime = tmp_path_factory.mktemp("platform")
    plugins = runtime / "no-plugins"
    plugins.mkdir()
    instance = Platform(
        runtime,
        api_port=0,
        emulator_port=0,
        dags_folder=FIXTURE_DAGS,
        plugins_folder=plugins,
        startup_timeout=300,
    )
    instance.up()  # stops whatever it started if start-up fails
    yield instance
    instance.down()
    assert instance.leftovers() == []


@pytest.fixture(scope="session")
def client(platform: Platform) -> Iterator[AirflowClient]:
    with platform.client() as api:
        api.wait_for_dag(DAG_ID, timeout=120)
        yield api


def _wait_pending_gate(api: AirflowClient, run_id: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pending = api.hitl_details(DAG_ID, run_id, pending_only=True)
        if pending and pending[0]["task_instance"]["state"] == "awaiting_input":
            # Like a person, answer a moment after the gate appears: an answer that lands
            # before the parking worker has reported back races Airflow 3.3's executor
            # event handling (see orchestration/follow.py). The detail is read again
            # after the pause, so the caller sees the gate as it is when answered.
            time.sleep(4)
            again = api.hitl_details(DAG_ID, run_id, pending_only=True)
            if again:
                return again[0]
        run = api.dag_run(DAG_ID, run_id)
        assert run["state"] in ("queued", "running"), f"run ended before its gate: {run}"
        time.sleep(1)
    raise AssertionError(f"no pending approval in {DAG_ID}/{run_id} after {timeout}s")


def _states(api: AirflowClient, run_id: str) -> dict[str, str]:
    return {ti["task_id"]: ti["state"] for ti in api.task_instances(DAG_ID, run_id)}


def test_every_component_is_healthy(platform: Platform) -> None:
    status = platform.status()
    assert status.running, status.problem
    assert {c.name for c in status.components} == {
        "emulator",
        "airflow-api-server",
        "airflow-scheduler",
        "airflow-dag-processor",
        "airflow-triggerer",
        "teams-bot",
    }
    assert status.health is not None
    for key in ("metadatabase", "scheduler", "dag_processor", "triggerer"):
        assert status.health[key]["status"] == "healthy", status.health


def test_login_needs_the_right_password(platform: Platform) -> None:
    state = platform.read_state()
    assert state is not None
    with (
        AirflowClient(state.api_url, "admin", "not-the-password") as wrong,
        pytest.raises(AirflowApiError) as err,
    ):
        wrong.login()
    assert err.value.status == 401
    with AirflowClient(state.api_url, "admin", "admin") as right:
        assert right.login().count(".") == 2  # a JWT


def test_settings_file_was_applied(platform: Platform, client: AirflowClient) -> None:
    state = platform.read_state()
    assert state is not None
    assert client.get_variable("migrationbox_cutover_weights") == "[5, 25, 50, 100]"
    assert client.get_pool("migrationbox_provision")["slots"] == 2
    assert client.get_pool("migrationbox_replication")["slots"] == 2
    aws = client.get_connection("aws_default")
    assert json.loads(aws["extra"])["endpoint_url"] == state.emulator_url


def test_emulator_answers_through_the_aws_connection(
    platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = platform_env(platform.runtime_dir)
    assert env["AIRFLOW__CORE__DAGS_FOLDER"] == str(FIXTURE_DAGS)  # the running platform's
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", env["AIRFLOW_CONN_AWS_DEFAULT"])
    aws_session.clear_client_cache()
    try:
        identity = aws_session.aws_client("sts").get_caller_identity()
        s3 = aws_session.aws_client("s3")
        s3.create_bucket(Bucket="platform-probe")
        assert "platform-probe" in {b["Name"] for b in s3.list_buckets()["Buckets"]}
    finally:
        aws_session.clear_client_cache()
    assert identity["Account"]


def test_probe_dag_is_parsed_unpaused_without_import_errors(client: AirflowClient) -> None:
    dags = client.list_dags(prefix="platform_")
    assert [d["dag_id"] for d in dags] == [DAG_ID]
    assert dags[0]["is_paused"] is False
    assert client.import_errors() == []


def test_trigger_and_approve_by_rest(platform: Platform, client: AirflowClient) -> None:
    run_id = "probe__approve"
    run = client.trigger(DAG_ID, conf={"label": "approved-by-rest"}, run_id=run_id)
    assert run["dag_run_id"] == run_id and run["logical_date"] is None
    # Triggering the same run id again returns the same run instead of failing.
    assert client.trigger(DAG_ID, conf={"label": "other"}, run_id=run_id)["conf"] == {
        "label": "approved-by-rest"
    }

    gate = _wait_pending_gate(client, run_id)
    assert gate["task_instance"]["task_id"] == "approve"
    assert gate["task_instance"]["state"] == "awaiting_input"
    assert gate["options"] == ["Approve", "Reject"]
    assert gate["subject"] == "Approve the probe run"

    with pytest.raises(AirflowApiError) as err:
        client.respond_hitl(DAG_ID, run_id, "approve", chosen_options=["Maybe"])
    assert err.value.status == 400

    answer = client.respond_hitl(DAG_ID, run_id, "approve", chosen_options=["Approve"])
    assert answer["chosen_options"] == ["Approve"]
    assert answer["responded_by"]["id"] == "admin"

    final = client.wait_for_run(DAG_ID, run_id, timeout=180)
    assert final["state"] == "success"
    assert _states(client, run_id) == {
        "prepare": "success",
        "approve": "success",
        "record": "success",
    }
    written = platform.runtime_dir / "artifacts" / f"hitl_probe__{run_id}.json"
    payload = json.loads(written.read_text())
    assert payload["label"] == "approved-by-rest"
    assert payload["decision"]["chosen_options"] == ["Approve"]

    with pytest.raises(AirflowApiError) as again:
        client.respond_hitl(DAG_ID, run_id, "approve")
    assert again.value.status == 409


def test_rejected_gate_is_retried_by_clearing_it(platform: Platform, client: AirflowClient) -> None:
    run_id = "probe__reject_then_clear"
    client.trigger(DAG_ID, conf={"label": "second-try"}, run_id=run_id)
    _wait_pending_gate(client, run_id)
    client.respond_hitl(DAG_ID, run_id, "approve", chosen_options=["Reject"])
    assert client.wait_for_run(DAG_ID, run_id, timeout=180)["state"] == "success"
    assert _states(client, run_id)["record"] == "skipped"
    assert not (platform.runtime_dir / "artifacts" / f"hitl_probe__{run_id}.json").exists()

    preview = client.clear_task(DAG_ID, run_id, ["approve"], dry_run=True)
    assert {ti["task_id"] for ti in preview["task_instances"]} == {"approve", "record"}
    assert _states(client, run_id)["approve"] == "success"  # a dry run changes nothing

    client.clear_task(DAG_ID, run_id, ["approve"])
    gate = _wait_pending_gate(client, run_id)
    assert gate["task_instance"]["try_number"] == 2
    client.respond_hitl(DAG_ID, run_id, "approve", chosen_options=["Approve"])
    assert client.wait_for_run(DAG_ID, run_id, timeout=180)["state"] == "success"
    assert _states(client, run_id)["record"] == "success"


def test_down_stops_every_process(platform: Platform) -> None:
    state = platform.read_state()
    assert state is not None
    pids = [record.pid for record in state.processes.values()]
    report = platform.down()
    assert set(report.stopped) == set(state.processes)
    assert not any(psutil.pid_exists(pid) and _not_zombie(pid) for pid in pids)
    assert platform.leftovers() == []
    assert not list(platform.pids_dir.glob("*.pid"))
    assert platform.read_state() is None
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{state.api_url}/api/v2/monitor/health", timeout=2)
    assert platform.down().stopped == []  # idempotent


def _not_zombie(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
