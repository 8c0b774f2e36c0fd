"""Access control of the production profile, without starting anything: the roles a user
request maps to, the per-estate DAG rights, the admin's password file, the environment
of each profile, the users CLI's refusals, and which MigrationBox API routes need the
acting permission. The running checks are tests/integration/test_production_auth.py.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi import HTTPException
from fastapi.testclient import TestClient
from pydantic import ValidationError

from migrationbox.platform import auth
from migrationbox.platform.production import ProductionConfig
from migrationbox.platform.supervisor import Platform

pytestmark = pytest.mark.usefixtures("no_profile_settings")  # tests/conftest.py


# -- roles -------------------------------------------------------------------------------


def test_each_role_maps_to_its_fab_roles() -> None:
    assert auth.UserRequest(username="v", role="viewer").fab_roles() == ["Viewer"]
    assert auth.UserRequest(username="o", role="operator").fab_roles() == ["MigrationOperator"]
    assert auth.UserRequest(username="a", role="admin").fab_roles() == ["Admin"]
    approver = auth.UserRequest(username="p", role="approver", estates=["beta", "alpha",
                                                                        "alpha"])
    assert approver.estates == ["alpha", "beta"]
    assert approver.fab_roles() == ["MigrationApprover", "MigrationApprover:alpha",
                                    "MigrationApprover:beta"]
    healer = auth.UserRequest(username="h", role="approver", heal_approvals=True)
    assert healer.fab_roles() == ["MigrationApprover", auth.HEAL_ROLE]


@pytest.mark.parametrize(("fields", "message"), [
    ({"role": "approver"}, "at least one --estate"),
    ({"role": "viewer", "estates": ["alpha"]}, "only scope approvers"),
    ({"role": "operator", "heal_approvals": True}, "only scope approvers"),
    ({"role": "approver", "estates": [""]}, "not an estate name"),
    ({"role": "root"}, "viewer"),
    ({"role": "viewer", "username": "-x"}, "user name"),
    ({"role": "viewer", "username": "a b"}, "user name"),
])
def test_user_requests_that_make_no_sense_are_refused(fields: dict, message: str) -> None:
    with pytest.raises(ValidationError) as refused:
        auth.UserRequest(**{"username": "someone", **fields})
    assert message in str(refused.value)


def test_operator_and_approver_rights_do_not_overlap_where_it_matters() -> None:
    operator = set(auth.OPERATOR_EXTRA)
    approver = set(auth.APPROVER_EXTRA)
    # operators trigger and pause, never answer a gate
    assert ("can_create", "DAG Runs") in operator and ("can_edit", "DAGs") in operator
    assert not any(resource == "HITL Detail" and action == "can_edit"
                   for action, resource in operator)
    # approvers answer gates, never trigger, and get no global DAG edit
    assert ("can_edit", "HITL Detail") in approver
    assert not any(resource in ("DAG Runs", "DAGs") for _, resource in approver)


def test_an_estate_role_covers_its_wave_dags_and_no_other_estates() -> None:
    existing = ["migrate__alpha__wave_07", "migrate__alpha__wave_123",
                "migrate__alpha__wave_x__wave_01", "migrate__beta__wave_01", "other"]
    ids = auth.wave_dag_ids("alpha", existing)
    assert "migrate__alpha__wave_01" in ids and "migrate__alpha__wave_99" in ids
    assert "migrate__alpha__wave_123" in ids  # an existing wave beyond the pre-granted ones
    assert "migrate__alpha__wave_x__wave_01" not in ids  # estate "alpha__wave_x"
    assert not any("beta" in d for d in ids)
    assert len(ids) == auth.PREGRANTED_WAVES + 1
    perms = auth.dag_permissions(["migrate__alpha__wave_01"])
    assert perms == [("can_edit", "DAG:migrate__alpha__wave_01")]
    assert auth.estates_of(existing) == {"alpha", "alpha__wave_x", "beta"}


def test_estate_roles_fit_fab_role_names_and_stay_distinct() -> None:
    assert auth.estate_role("alpha") == "MigrationApprover:alpha"
    long_a, long_b = "e" * 80 + "a", "e" * 80 + "b"
    assert len(auth.estate_role(long_a)) <= auth.ROLE_NAME_MAX
    assert auth.estate_role(long_a) != auth.estate_role(long_b)


@pytest.mark.parametrize(("given", "expected"), [
    ("correct-horse-1\n", "correct-horse-1"),
    ("correct-horse-1\r\n", "correct-horse-1"),
    ("  spaces kept  ", "  spaces kept  "),
])
def test_passwords_lose_only_the_final_line_break(given: str, expected: str) -> None:
    assert auth.validate_password(given) == expected


@pytest.mark.parametrize(("given", "message"), [
    ("", "empty"), ("\n", "empty"), ("short\n", "at least 12"),
    ("first-line-long\nsecond-line\n", "line break"),
])
def test_bad_passwords_are_refused_saying_why(given: str, message: str) -> None:
    with pytest.raises(auth.AuthError, match=message):
        auth.validate_password(given)


# -- the platform admin's password -------------------------------------------------------


def test_the_admin_password_is_random_private_and_stable(tmp_path: Path) -> None:
    first = auth.ensure_admin_password(tmp_path, "admin")
    path = auth.admin_password_file(tmp_path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(first) >= 40 and first != "admin"
    assert auth.ensure_admin_password(tmp_path, "admin") == first
    assert auth.read_admin_password(tmp_path, "admin") == first
    other = auth.ensure_admin_password(tmp_path / "second", "admin")
    assert other != first  # generated, not a constant
    chosen = auth.ensure_admin_password(tmp_path, "admin", "chosen-by-caller-1")
    assert chosen == "chosen-by-caller-1"
    assert json.loads(path.read_text()) == {"admin": "chosen-by-caller-1"}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with pytest.raises(auth.AuthError, match="no password for user 'nobody'"):
        auth.read_admin_password(tmp_path, "nobody")
    with pytest.raises(auth.AuthError, match="start the production profile"):
        auth.read_admin_password(tmp_path / "none", "admin")


# -- profiles ----------------------------------------------------------------------------


def _production(tmp_path: Path) -> Platform:
    cfg = ProductionConfig(pg_admin_url="postgresql+psycopg2://postgres@127.0.0.1:5432/postgres",
                           airflow_db="a", store_db="s", broker_url="redis://127.0.0.1:6379/3")
    return Platform(tmp_path / "rt", profile="production", production=cfg,
                    api_port=18080, emulator_port=14566)


def test_the_production_profile_runs_fab_and_the_embedded_default_keeps_simple(
    tmp_path: Path,
) -> None:
    production = _production(tmp_path)
    assert production.env()["AIRFLOW__CORE__AUTH_MANAGER"] == auth.FAB_AUTH_MANAGER
    env = production._airflow_env(18080, {}, production.production_config())
    assert env["AIRFLOW__CORE__AUTH_MANAGER"] == auth.FAB_AUTH_MANAGER
    embedded = Platform(tmp_path / "emb", profile="embedded", api_port=18081,
                        emulator_port=14567)
    from migrationbox.platform.airflow_runtime import ADMIN_PASSWORD, SIMPLE_AUTH_MANAGER

    assert embedded.env()["AIRFLOW__CORE__AUTH_MANAGER"] == SIMPLE_AUTH_MANAGER
    assert embedded._airflow_env(18081, {}, None)["AIRFLOW__CORE__AUTH_MANAGER"] == \
        SIMPLE_AUTH_MANAGER
    # the embedded login is still admin/admin and printed; the production one is not
    assert embedded.admin_password() == ADMIN_PASSWORD
    assert embedded.login_hint() == "login admin / admin"
    hint = production.login_hint()
    assert str(auth.admin_password_file(production.airflow_home)) in hint
    auth.ensure_admin_password(production.airflow_home, "admin")
    secret = auth.read_admin_password(production.airflow_home, "admin")
    assert secret not in production.login_hint()
    assert production.admin_password() == secret


def test_the_migration_stamp_tells_auth_managers_apart(tmp_path: Path) -> None:
    """A database migrated under SimpleAuthManager lacks FAB's tables: switching must
    migrate again. Checked through the stamp ensure_migrated writes and compares."""
    from migrationbox.platform import airflow_runtime as afr

    home = tmp_path / "home"
    home.mkdir()
    url = f"sqlite:///{tmp_path / 'x.db'}"
    (home / afr.MIGRATED_STAMP).write_text(f"{afr.airflow_version()} {url}\n")
    simple = {"AIRFLOW_HOME": str(home), "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": url,
              "AIRFLOW__CORE__AUTH_MANAGER": afr.SIMPLE_AUTH_MANAGER}
    assert afr.ensure_migrated(simple, tmp_path / "m.log") is False  # unchanged stamp
    (home / afr.MIGRATED_STAMP).write_text(
        f"{afr.airflow_version()} {url} auth={auth.FAB_AUTH_MANAGER}\n")
    fab = {**simple, "AIRFLOW__CORE__AUTH_MANAGER": auth.FAB_AUTH_MANAGER}
    assert afr.ensure_migrated(fab, tmp_path / "m.log") is False


def test_fab_requests_are_refused_on_the_simple_auth_manager() -> None:
    from migrationbox.platform.airflow_runtime import SIMPLE_AUTH_MANAGER

    with pytest.raises(auth.AuthError, match="SimpleAuthManager"):
        auth.run_fab({"AIRFLOW__CORE__AUTH_MANAGER": SIMPLE_AUTH_MANAGER},
                     {"op": "list_users"})


# -- the users CLI -----------------------------------------------------------------------


def _cli(*args: str, stdin: str = "", env: dict[str, str] | None = None
         ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "migrationbox.cli", "users", *args],
                          input=stdin, capture_output=True, text=True, timeout=120,
                          check=False, env={**os.environ, **(env or {})})


def test_users_create_refuses_before_touching_anything(tmp_path: Path) -> None:
    runtime = ["--runtime-dir", str(tmp_path)]
    unscoped = _cli(*runtime, "create", "pat", "--role", "approver", stdin="x" * 20)
    assert unscoped.returncode == 2 and "give at least one --estate" in unscoped.stderr
    scoped = _cli(*runtime, "create", "pat", "--role", "viewer", "--estate", "a",
                  stdin="x" * 20)
    assert scoped.returncode == 2 and "only scope approvers" in scoped.stderr
    short = _cli(*runtime, "create", "pat", "--role", "viewer", stdin="short\n")
    assert short.returncode == 1 and "at least 12" in short.stderr
    missing = _cli(*runtime, "create", "pat", "--role", "viewer",
                   "--password-file", str(tmp_path / "nope"))
    assert missing.returncode == 1 and "cannot read --password-file" in missing.stderr
    # a good request on the embedded default: users belong to the production profile
    embedded = _cli(*runtime, "create", "pat", "--role", "viewer", stdin="long-enough-pw\n",
                    env={"MIGRATIONBOX_PLATFORM_PROFILE": "embedded"})
    assert embedded.returncode == 1 and "SimpleAuthManager" in embedded.stderr
    # the password never appears in what the command prints
    assert "long-enough-pw" not in embedded.stdout + embedded.stderr


# -- the MigrationBox API's two permission levels ----------------------------------------


def test_only_acting_routes_need_the_operate_permission() -> None:
    from migrationbox.api.app import build_app

    calls: list[str] = []

    def allow() -> None:
        calls.append("read")

    def deny() -> None:
        raise HTTPException(403, "Forbidden")

    app = build_app(auth=allow, operate=deny)
    acting = set()
    for route in app.routes:
        deps = getattr(route, "dependant", None)
        if deps is None:
            continue
        if any(d.call is deny for d in deps.dependencies):
            acting.add((next(iter(route.methods)), route.path))  # type: ignore[attr-defined]
    assert acting == {("GET", "/estates/{estate}/endpoints/check"),
                      ("POST", "/estates/{estate}/endpoints")}
    client = TestClient(app, raise_server_exceptions=False)
    assert client.post("/estates/a/endpoints", json={"endpoints": []}).status_code == 403
    assert client.get("/estates/a/endpoints/check").status_code == 403
    assert client.get("/health").status_code == 200
    assert calls  # the read dependency ran for the acting routes too
