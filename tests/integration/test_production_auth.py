"""Who may do what on a running production profile (FAB auth manager), over real HTTP.

One production platform for the module (PostgreSQL databases created under unique names
and dropped at the end, an empty Redis database emptied again at the end, like
``test_production_profile.py``), with the project's plugin (the MigrationBox API) and a
DAG folder holding two approval gates named like wave DAGs of two estates
(``migrate__authalpha__wave_01``, ``migrate__authbeta__wave_01``): each is one
``MigrationApprovalOperator`` - the wave DAGs' own gate class, recording the answer in
the store - so a gate is pending within seconds of a trigger, without a lab or
provisioning. FAB scopes by DAG id, so the check an answer meets is the one a real wave
DAG's gate meets.

Users are made with ``migrationbox users create`` (password on stdin or in a file), one
of each role; every check is an HTTP call with that user's own token from FAB's
``POST /auth/token``. Skips, saying why, without PostgreSQL or Redis on loopback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest

from migrationbox.platform import auth
from migrationbox.platform.rest import AirflowApiError, AirflowClient
from migrationbox.platform.supervisor import Platform

pytestmark = [pytest.mark.integration, pytest.mark.airflow, pytest.mark.timeout(900)]

ALPHA, BETA = "authalpha", "authbeta"
GATE = "approve_cutover"
PROJECT = Path(__file__).resolve().parents[2]
PASSWORDS = {
    "vera": "viewer-pass-0001",
    "otto": "operator-pass-0002",
    "alma": "approver-alpha-0003",
    "bert": "approver-beta-0004",
    "adam": "admin-pass-0005",
}
TIMINGS: dict[str, float] = {}

GATES_DAG = '''
"""Two approval gates named like wave DAGs of two estates (test_production_auth)."""
from datetime import datetime

from airflow.sdk import DAG

from migrationbox.orchestration.approvals import MigrationApprovalOperator

for _estate in ("authalpha", "authbeta"):
    with DAG(dag_id=f"migrate__{_estate}__wave_01", schedule=None,
             start_date=datetime(2026, 1, 1), catchup=False,
             is_paused_upon_creation=False) as _dag:
        MigrationApprovalOperator(
            task_id="approve_cutover", gate="approve_cutover", estate=_estate, wave=1,
            plan_version=1, non_production=False,
            subject=f"Cut over wave 1 of {_estate}?")
    globals()[_dag.dag_id] = _dag
'''


def dag_of(estate: str) -> str:
    return f"migrate__{estate}__wave_01"


def _unavailable() -> str | None:
    from migrationbox.platform.testing import production_unavailable

    return production_unavailable()


def _store_estates(store_url: str, folder: Path) -> None:
    """Both estates in the store (the gate records its answer against the estate)."""
    from migrationbox.inventory.validation import load_estate
    from migrationbox.store import repository
    from migrationbox.store.db import dispose, session_scope

    for number, estate in enumerate((ALPHA, BETA)):
        path = folder / estate
        path.mkdir(parents=True)
        record = {
            "server_id": f"{estate}-web", "hostname": f"{estate}-web.corp.local",
            "ip_addresses": [f"10.60.{number}.11"],
            "os": {"type": "Linux", "distribution": "Ubuntu", "version": "22.04"},
            "hardware": {"cpu_cores": 2, "ram_gb": 4, "disk_total_gb": 20},
            "applications": [{"name": "web", "ports": [443], "data_size_gb": 1.0}],
            "network_dependencies": [],
            "performance_baseline": {"cpu_avg_utilization_pct": 10,
                                     "memory_avg_utilization_pct": 20},
            "environment": "production", "role": "web",
        }
        (path / "web.json").write_text(json.dumps(record))
        try:
            with session_scope(store_url) as session:
                repository.save_estate(session, load_estate(path, estate))
        finally:
            dispose(store_url)


def users_cli(runtime: Path, *args: str, stdin: str | None = None
              ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "migrationbox.cli", "users", "--runtime-dir", str(runtime),
         *args],
        input=stdin, capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    reason = _unavailable()
    if reason:
        pytest.skip(f"the production profile needs PostgreSQL and Redis on loopback: {reason}")
    from migrationbox.platform.testing import NoFreeRedisDatabase, throwaway_production_config

    runtime = tmp_path_factory.mktemp("production-auth")
    dags = runtime / "gate-dags"
    dags.mkdir()
    (dags / "auth_gates.py").write_text(GATES_DAG)
    with ExitStack() as stack:
        try:
            cfg = stack.enter_context(throwaway_production_config(
                "mbx_auth", schedulers=1, celery_workers=1, worker_concurrency=2,
                replication_workers=1))
        except NoFreeRedisDatabase as exc:
            pytest.skip(str(exc))
        instance = Platform(runtime, api_port=0, emulator_port=0, dags_folder=dags,
                            plugins_folder=PROJECT / "plugins", profile="production",
                            production=cfg, startup_timeout=400)
        stack.callback(instance.down)
        started = time.monotonic()
        instance.up()
        TIMINGS["up"] = time.monotonic() - started
        _store_estates(cfg.store_url, runtime / "estates")
        started = time.monotonic()
        for name, role, extra in (("vera", "viewer", ()), ("otto", "operator", ()),
                                  ("alma", "approver", ("--estate", ALPHA)),
                                  ("adam", "admin", ())):
            done = users_cli(runtime, "create", name, "--role", role, *extra,
                             stdin=PASSWORDS[name] + "\n")
            assert done.returncode == 0, done.stderr
        # bert's password comes from a file
        secret = runtime / "bert.pw"
        secret.write_text(PASSWORDS["bert"] + "\n")
        secret.chmod(0o600)
        done = users_cli(runtime, "create", "bert", "--role", "approver", "--estate", BETA,
                         "--password-file", str(secret))
        assert done.returncode == 0, done.stderr
        TIMINGS["5 users"] = time.monotonic() - started
        yield instance
    print("\nproduction auth timings (s): "
          + ", ".join(f"{k} {v:.1f}" for k, v in TIMINGS.items()))


@pytest.fixture(scope="module")
def gates(platform: Platform) -> dict[str, str]:
    """One pending gate per estate, triggered by the operator: estate -> run id."""
    runs = {}
    with as_user(platform, "otto") as otto:
        for estate in (ALPHA, BETA):
            otto.wait_for_dag(dag_of(estate), timeout=240)
            runs[estate] = otto.trigger(dag_of(estate))["dag_run_id"]
        deadline = time.monotonic() + 240
        for estate, run_id in runs.items():
            while not otto.hitl_details(dag_of(estate), run_id, pending_only=True):
                assert time.monotonic() < deadline, f"no pending gate in {estate}'s run"
                time.sleep(2)
    return runs


def as_user(platform: Platform, name: str) -> AirflowClient:
    state = platform.read_state()
    assert state is not None
    # a generous read timeout: a loaded 2-core machine runs the whole profile
    return AirflowClient(state.api_url, name, PASSWORDS[name], timeout=120)


def status_of(client: AirflowClient, method: str, path: str, body: Any = None) -> int:
    try:
        client.request(method, path, json=body, ok=range(200, 300))
    except AirflowApiError as exc:
        return exc.status
    return 200


def answer(client: AirflowClient, estate: str, run_id: str, choice: str = "Approve") -> int:
    try:
        client.respond_hitl(dag_of(estate), run_id, GATE, chosen_options=[choice])
    except AirflowApiError as exc:
        return exc.status
    return 200


def hitl_path(estate: str, run_id: str) -> str:
    from urllib.parse import quote

    return (f"/api/v2/dags/{dag_of(estate)}/dagRuns/{quote(run_id, safe='')}/taskInstances/"
            f"{GATE}/-1/hitlDetails")


CONN_ID = "auth_test_conn"
CONNECTION = {"connection_id": CONN_ID, "conn_type": "http", "host": "127.0.0.1"}


def test_fab_serves_token_logins_and_the_platform_admin_has_no_default_password(
    platform: Platform,
) -> None:
    state = platform.read_state()
    assert state is not None
    assert platform.env()["AIRFLOW__CORE__AUTH_MANAGER"] == auth.FAB_AUTH_MANAGER
    secret = auth.admin_password_file(platform.airflow_home)
    assert secret.stat().st_mode & 0o777 == 0o600
    password = json.loads(secret.read_text())[state.username]
    assert len(password) >= 40 and password != "admin"
    # no SimpleAuthManager passwords file in this profile
    assert not (platform.airflow_home / "simple_auth_manager_passwords.json").exists()
    with httpx.Client(base_url=state.api_url, trust_env=False, timeout=30) as http:
        good = http.post("/auth/token", json={"username": state.username, "password": password})
        assert good.status_code == 201, good.text
        assert good.json()["access_token"]
        for wrong in ("admin", password + "x"):
            bad = http.post("/auth/token", json={"username": state.username, "password": wrong})
            assert bad.status_code == 401, bad.text
        assert http.get("/api/v2/dags").status_code == 401  # no token, no answer
        assert http.get("/migrationbox/estates").status_code in (401, 403)
    with platform.client() as client:  # Platform.client() logs in through FAB
        assert client.wait_for_dag(dag_of(ALPHA), timeout=240)["dag_id"] == dag_of(ALPHA)
        assert client.get_connection("migrationbox_store")["conn_type"] == "postgres"


def test_users_were_made_with_the_roles_asked_for(platform: Platform) -> None:
    listed = users_cli(platform.runtime_dir, "list", "--json")
    assert listed.returncode == 0, listed.stderr
    roles = {u["username"]: u["roles"] for u in json.loads(listed.stdout)}
    assert roles["vera"] == [auth.VIEWER_ROLE]
    assert roles["otto"] == [auth.OPERATOR_ROLE]
    assert roles["alma"] == sorted([auth.APPROVER_ROLE, auth.estate_role(ALPHA)])
    assert roles["bert"] == sorted([auth.APPROVER_ROLE, auth.estate_role(BETA)])
    assert roles["adam"] == [auth.ADMIN_ROLE]
    assert roles[platform.username] == [auth.ADMIN_ROLE]
    # nobody logs in with a wrong password, each with their own
    for name in PASSWORDS:
        with as_user(platform, name) as client:
            client.login()


def test_viewer_reads_but_may_not_trigger_pause_answer_or_manage_connections(
    platform: Platform, gates: dict[str, str]
) -> None:
    with as_user(platform, "vera") as vera:
        assert any(d["dag_id"] == dag_of(ALPHA) for d in vera.list_dags("migrate__"))
        assert vera.dag_run(dag_of(ALPHA), gates[ALPHA])["state"] == "running"
        assert vera.hitl_details(dag_of(ALPHA), gates[ALPHA], pending_only=True)
        tis = vera.task_instances(dag_of(ALPHA), gates[ALPHA])
        assert {t["task_id"] for t in tis} == {GATE}
        assert status_of(vera, "GET", "/migrationbox/estates") == 200
        assert {e["name"] for e in vera.request("GET", "/migrationbox/estates")} >= {
            ALPHA, BETA}
        assert status_of(vera, "GET", f"/migrationbox/estates/{ALPHA}/events") == 200
        assert status_of(vera, "POST", f"/api/v2/dags/{dag_of(ALPHA)}/dagRuns",
                         {"logical_date": None}) == 403
        assert status_of(vera, "PATCH", f"/api/v2/dags/{dag_of(ALPHA)}",
                         {"is_paused": True}) == 403
        assert answer(vera, ALPHA, gates[ALPHA]) == 403
        assert status_of(vera, "POST", "/api/v2/connections", CONNECTION) == 403
        assert status_of(vera, "POST", f"/migrationbox/estates/{ALPHA}/endpoints",
                         {"endpoints": []}) == 403


def test_operator_triggers_and_pauses_but_may_not_answer_a_gate(
    platform: Platform, gates: dict[str, str]
) -> None:
    with as_user(platform, "otto") as otto:
        # the gates fixture's runs were triggered by otto
        assert otto.dag_run(dag_of(BETA), gates[BETA])["state"] == "running"
        assert otto.pause(dag_of(BETA))["is_paused"] is True
        assert otto.unpause(dag_of(BETA))["is_paused"] is False
        assert answer(otto, ALPHA, gates[ALPHA]) == 403
        assert answer(otto, BETA, gates[BETA]) == 403
        assert status_of(otto, "POST", "/api/v2/connections", CONNECTION) == 403
        # the MigrationBox API lets an operator register endpoints (here: an empty body,
        # refused for its content, not for the user)
        code = status_of(otto, "POST", f"/migrationbox/estates/{ALPHA}/endpoints",
                         {"endpoints": []})
        assert code not in (401, 403), code


def test_approver_answers_only_the_gates_of_its_estate(
    platform: Platform, gates: dict[str, str]
) -> None:
    with as_user(platform, "alma") as alma:
        assert answer(alma, BETA, gates[BETA]) == 403  # not her estate
        assert status_of(alma, "POST", f"/api/v2/dags/{dag_of(ALPHA)}/dagRuns",
                         {"logical_date": None}) == 403  # approvers do not trigger
        assert status_of(alma, "POST", "/api/v2/connections", CONNECTION) == 403
        assert status_of(alma, "POST", f"/migrationbox/estates/{ALPHA}/endpoints",
                         {"endpoints": []}) == 403
        assert status_of(alma, "GET", "/migrationbox/estates") == 200
        assert answer(alma, ALPHA, gates[ALPHA]) == 200
        final = alma.wait_for_run(dag_of(ALPHA), gates[ALPHA], timeout=240)
    assert final["state"] == "success"
    # ... and the store says who approved
    with platform.client() as admin:
        runs = admin.request("GET", f"/migrationbox/estates/{ALPHA}/waves/1/runs",
                             params={"dag_run_id": gates[ALPHA]})
    assert [(a["gate"], a["decision"], a["approved_by"]) for a in runs["approvals"]] == [
        (GATE, "approved", "alma")]
    with as_user(platform, "bert") as bert:
        assert answer(bert, BETA, gates[BETA], "Reject") == 200
        assert bert.wait_for_run(dag_of(BETA), gates[BETA], timeout=240)["state"] == "success"


def test_admin_manages_connections(platform: Platform) -> None:
    with as_user(platform, "adam") as adam:
        assert status_of(adam, "POST", "/api/v2/connections", CONNECTION) == 200
        assert adam.get_connection(CONN_ID)["host"] == "127.0.0.1"
        assert status_of(adam, "DELETE", f"/api/v2/connections/{CONN_ID}") == 200
    for name in ("vera", "otto", "alma"):
        with as_user(platform, name) as other:
            assert status_of(other, "GET", f"/api/v2/connections/{CONN_ID}"
                             ) == 403, name


def test_users_cli_refuses_clearly(platform: Platform) -> None:
    runtime = platform.runtime_dir
    again = users_cli(runtime, "create", "vera", "--role", "viewer", stdin="another-pass-01\n")
    assert again.returncode == 1
    assert "exists already" in again.stderr and "--update" in again.stderr
    short = users_cli(runtime, "create", "zoe", "--role", "viewer", stdin="short\n")
    assert short.returncode == 1 and "at least" in short.stderr
    unscoped = users_cli(runtime, "create", "zoe", "--role", "approver", stdin="x" * 20)
    assert unscoped.returncode == 2 and "--estate" in unscoped.stderr
    # --update resets the password: the old one stops working
    reset = users_cli(runtime, "create", "vera", "--role", "viewer", "--update",
                      stdin="vera-new-pass-0009\n")
    assert reset.returncode == 0, reset.stderr
    with pytest.raises(AirflowApiError) as refused, as_user(platform, "vera") as vera:
        vera.login()
    assert refused.value.status == 401
    with AirflowClient(platform.read_state().api_url, "vera",  # type: ignore[union-attr]
                       "vera-new-pass-0009", timeout=120) as vera:
        vera.login()


def test_sync_roles_makes_an_estate_role_for_an_identity_providers_mapping(
    platform: Platform,
) -> None:
    synced = users_cli(platform.runtime_dir, "sync-roles", "--estate", "gamma")
    assert synced.returncode == 0, synced.stderr
    counts = dict(line.rsplit(None, 2)[:2] for line in synced.stdout.splitlines())
    assert counts[auth.estate_role("gamma")] == str(auth.PREGRANTED_WAVES)
    # the estates of the gates' DAGs keep their roles, with the DAG that exists
    assert counts[auth.estate_role(ALPHA)] == str(auth.PREGRANTED_WAVES)
    assert auth.OPERATOR_ROLE in counts and auth.APPROVER_ROLE in counts


def test_the_cluster_script_creates_the_first_admin_from_a_secret_file(
    platform: Platform, tmp_path: Path,
) -> None:
    """deploy/bin/migrationbox-create-admin.sh, what the compose init service (and a Helm
    operator, through kubectl exec) runs, with only a component's environment."""
    from migrationbox.platform.airflow_runtime import venv_bin

    state = platform.read_state()
    assert state is not None
    secret = tmp_path / "admin-password"
    secret.write_text("first-admin-pass-0042\n")
    secret.chmod(0o600)
    env = {**os.environ, **platform.env(), "MIGRATIONBOX_ADMIN_PASSWORD_FILE": str(secret),
           "PATH": f"{venv_bin()}{os.pathsep}{os.environ.get('PATH', '')}"}
    script = PROJECT / "deploy" / "bin" / "migrationbox-create-admin.sh"
    for _ in range(2):  # the init service runs it on every start: the second run updates
        made = subprocess.run(["bash", str(script), "ada"], env=env, capture_output=True,
                              text=True, timeout=300, check=False, cwd=state.airflow_home)
        assert made.returncode == 0, made.stderr[-2000:]
    assert '"action": "updated"' in made.stdout and "Admin" in made.stdout, made.stdout
    with AirflowClient(state.api_url, "ada", "first-admin-pass-0042", timeout=120) as ada:
        assert status_of(ada, "POST", "/api/v2/connections", {**CONNECTION,
                         "connection_id": "ada_made_this"}) == 200
        assert status_of(ada, "DELETE", "/api/v2/connections/ada_made_this") == 200
    # without FAB configured the script refuses rather than writing users nowhere
    refused = subprocess.run(["bash", str(script), "ada"],
                             env={**env, "AIRFLOW__CORE__AUTH_MANAGER": "x.SimpleAuthManager"},
                             capture_output=True, text=True, timeout=60, check=False)
    assert refused.returncode == 2 and "FAB" in refused.stderr
