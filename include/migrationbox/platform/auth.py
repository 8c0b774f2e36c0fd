"""Who may do what on the production profile: Airflow's FAB auth manager with roles that fit
a migration team.

The embedded default keeps Airflow's SimpleAuthManager (one ``admin`` user, see
:mod:`migrationbox.platform.airflow_runtime`). The production profile runs the FAB auth
manager (``apache-airflow-providers-fab``): users, roles and permissions live in the
metadata database (``ab_*`` tables, created by ``airflow db migrate``), and every check
goes through the auth manager's ``is_authorized_*`` API - Airflow's own routes and the
MigrationBox API (``plugins/migrationbox_plugin.py``) alike - so there is no second
permission table to keep in step.

Roles (the FAB roles behind them in brackets):

* ``viewer`` [``Viewer``]: reads DAGs, runs, task logs, approval requests, the
  MigrationBox API's read routes;
* ``operator`` [``MigrationOperator``]: a viewer who also triggers, pauses and clears
  runs (DAG edit, DAG Runs create/edit, Task Instances create/edit) and registers or
  checks endpoints; never answers an approval gate (no ``HITL Detail`` edit);
* ``approver`` [``MigrationApprover`` + ``MigrationApprover:<estate>`` per estate]: a
  viewer who answers approval gates (``HITL Detail`` edit) of the wave DAGs of *its*
  estates only. Airflow checks an answer as ``is_authorized_dag(PUT, HITL_DETAIL,
  dag_id)``, which FAB grants when the user may edit ``HITL Detail`` *and* may edit that
  DAG - globally or through the per-DAG resource ``DAG:<dag_id>``. The estate role holds
  ``can_edit`` on ``DAG:migrate__<estate>__wave_NN``; the side effect FAB gives with it
  is that the approver may also pause those DAGs (never trigger them: no DAG Runs create);
* ``admin`` [``Admin``]: everything, connections and users included.

The platform's own user (``Platform.client()``) is an ``Admin`` whose password is
generated at the first start and kept only in ``<AIRFLOW_HOME>/fab_admin_password.json``
(mode 0600). Other users are created with ``migrationbox users create``, which reads the
password from standard input or a file, never from the command line.

FAB's security manager needs a Flask app bound to the metadata database and Airflow's
configuration as the platform's components see it, so every write runs in a child
process (``python -m migrationbox.platform.auth``) started with the platform's
environment; the request, password included, goes in on standard input.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from migrationbox.errors import MigrationBoxError

FAB_AUTH_MANAGER = "airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager"
ADMIN_PASSWORD_FILE = "fab_admin_password.json"
#: shortest password ``users create`` accepts (generated ones are 43 characters)
MIN_PASSWORD_LENGTH = 12

RoleName = Literal["viewer", "operator", "approver", "admin"]
ROLES: tuple[str, ...] = ("viewer", "operator", "approver", "admin")

VIEWER_ROLE = "Viewer"
ADMIN_ROLE = "Admin"
OPERATOR_ROLE = "MigrationOperator"
APPROVER_ROLE = "MigrationApprover"
ESTATE_ROLE_PREFIX = "MigrationApprover:"
#: the healer's approval DAG (dags/heal_approval.py), granted by ``--heal-approvals``
HEAL_APPROVAL_DAG = "migrationbox_heal_approval"
HEAL_ROLE = "MigrationApprover:healer"
#: wave DAGs granted ahead of planning: ``wave_00`` .. ``wave_99`` (dag_id_for formats the
#: number with two digits); DAGs of higher waves that exist are added from the DAG table
PREGRANTED_WAVES = 100
#: ``ab_role.name`` is VARCHAR(64)
ROLE_NAME_MAX = 64

# FAB action and resource names (airflow.providers.fab.www.security.permissions); plain
# strings here so this module imports without Flask for the CLI's argument checks.
CAN_READ, CAN_EDIT, CAN_CREATE, CAN_DELETE, CAN_MENU = (
    "can_read", "can_edit", "can_create", "can_delete", "menu_access")
DAGS, DAG_RUNS, TASK_INSTANCES, HITL = "DAGs", "DAG Runs", "Task Instances", "HITL Detail"
DAG_PREFIX = "DAG:"

Permission = tuple[str, str]

#: added to FAB's viewer permissions for the operator role
OPERATOR_EXTRA: tuple[Permission, ...] = (
    (CAN_EDIT, DAGS),            # pause / unpause (PATCH /dags/{id})
    (CAN_CREATE, DAG_RUNS),      # trigger
    (CAN_EDIT, DAG_RUNS),        # mark a run, add a note
    (CAN_CREATE, TASK_INSTANCES),
    (CAN_EDIT, TASK_INSTANCES),  # clear a rejected gate so the wave can be asked again
)
#: added to FAB's viewer permissions for every approver; the per-estate role adds the DAGs
APPROVER_EXTRA: tuple[Permission, ...] = (
    (CAN_EDIT, HITL),
    (CAN_MENU, HITL),            # the UI's "Required actions" page
)

_USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")


class AuthError(MigrationBoxError, RuntimeError):
    """A user or role could not be created, or the auth manager is not the FAB one."""


def auth_env() -> dict[str, str]:
    """The Airflow settings the production profile adds for its auth manager."""
    return {"AIRFLOW__CORE__AUTH_MANAGER": FAB_AUTH_MANAGER}


# -- the platform's own admin password ---------------------------------------------------


def admin_password_file(home: Path) -> Path:
    return Path(home) / ADMIN_PASSWORD_FILE


def _read_passwords(path: Path) -> dict[str, str]:
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return {}
    if not text:
        return {}
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise AuthError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise AuthError(f"{path}: expected a JSON object of user -> password")
    return {str(k): str(v) for k, v in data.items()}


def ensure_admin_password(home: Path, username: str, wanted: str | None = None) -> str:
    """The platform admin's password: ``wanted`` if given (a caller's explicit choice),
    else the one already kept, else a new random one; written mode 0600 (atomically)
    before any process can use it."""
    path = admin_password_file(home)
    current = _read_passwords(path)
    if current.get(username) and (wanted is None or wanted == current[username]):
        os.chmod(path, 0o600)
        return current[username]
    password = wanted or secrets.token_urlsafe(32)
    current[username] = password
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(json.dumps(current) + "\n")
    tmp.replace(path)
    return password


def read_admin_password(home: Path, username: str) -> str:
    path = admin_password_file(home)
    passwords = _read_passwords(path)
    if not passwords and not path.exists():
        raise AuthError(f"{path} does not exist: start the production profile first")
    if username not in passwords:
        raise AuthError(f"{path} has no password for user {username!r}")
    return passwords[username]


# -- roles -------------------------------------------------------------------------------


def estate_role(estate: str) -> str:
    """The FAB role of one estate's approvers; long estate names are shortened with a
    hash so the name fits ``ab_role.name`` and stays unique."""
    name = f"{ESTATE_ROLE_PREFIX}{estate}"
    if len(name) <= ROLE_NAME_MAX:
        return name
    digest = hashlib.sha256(estate.encode()).hexdigest()[:12]
    keep = ROLE_NAME_MAX - len(ESTATE_ROLE_PREFIX) - len(digest) - 1
    return f"{ESTATE_ROLE_PREFIX}{estate[:keep]}~{digest}"


def wave_dag_ids(estate: str, existing: Iterable[str] = ()) -> list[str]:
    """The wave DAG ids of ``estate`` an approver is granted: ``wave_00``..``wave_99``
    (so a plan made after the user still works) plus any existing one beyond them."""
    from migrationbox.orchestration.spec import dag_id_for

    ids = {dag_id_for(estate, n) for n in range(PREGRANTED_WAVES)}
    pattern = re.compile(rf"^migrate__{re.escape(estate)}__wave_\d+$")
    ids.update(d for d in existing if pattern.match(d))
    return sorted(ids)


def dag_permissions(dag_ids: Iterable[str]) -> list[Permission]:
    return [(CAN_EDIT, f"{DAG_PREFIX}{d}") for d in dag_ids]


def estates_of(dag_ids: Iterable[str]) -> set[str]:
    """Estates that have wave DAGs among ``dag_ids``."""
    pattern = re.compile(r"^migrate__(.+)__wave_\d+$")
    return {m.group(1) for d in dag_ids if (m := pattern.match(d))}


class UserRequest(BaseModel):
    """A user to create (or, with ``update``, to reset: password, roles, names)."""

    username: str
    role: RoleName
    estates: list[str] = Field(default_factory=list)
    heal_approvals: bool = False
    first_name: str = ""
    last_name: str = ""
    email: str = ""
    update: bool = False

    @field_validator("username")
    @classmethod
    def _username(cls, value: str) -> str:
        if not _USERNAME.match(value):
            raise ValueError("a user name is 1-64 letters, digits, '.', '_', '@' or '-', "
                             "starting with a letter or digit")
        return value

    @field_validator("estates")
    @classmethod
    def _estates(cls, value: list[str]) -> list[str]:
        for estate in value:
            if not estate or "\x00" in estate or len(estate) > 200:
                raise ValueError(f"not an estate name: {estate!r}")
        return sorted(set(value))

    @model_validator(mode="after")
    def _scope(self) -> UserRequest:
        if self.role == "approver" and not (self.estates or self.heal_approvals):
            raise ValueError("an approver answers the gates of named estates: give at least "
                             "one --estate (or --heal-approvals)")
        if self.role != "approver" and (self.estates or self.heal_approvals):
            raise ValueError(f"--estate and --heal-approvals only scope approvers; a "
                             f"{self.role} is not limited to estates")
        return self

    def fab_roles(self) -> list[str]:
        """The FAB roles this user gets."""
        if self.role == "viewer":
            return [VIEWER_ROLE]
        if self.role == "operator":
            return [OPERATOR_ROLE]
        if self.role == "admin":
            return [ADMIN_ROLE]
        roles = [APPROVER_ROLE, *(estate_role(e) for e in self.estates)]
        if self.heal_approvals:
            roles.append(HEAL_ROLE)
        return roles


def validate_password(password: str) -> str:
    """The password as given (one trailing newline removed), or an error saying why not."""
    if password.endswith("\n"):
        password = password[:-1]
        if password.endswith("\r"):
            password = password[:-1]
    if not password:
        raise AuthError("the password is empty")
    if "\n" in password:
        raise AuthError("the password holds a line break: give one line")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AuthError(f"the password has {len(password)} characters; at least "
                        f"{MIN_PASSWORD_LENGTH}")
    return password


# -- the child process that talks to FAB -------------------------------------------------


def run_fab(env: Mapping[str, str], request: Mapping[str, Any], timeout: float = 300.0
            ) -> dict[str, Any]:
    """Run one request in ``python -m migrationbox.platform.auth`` with ``env`` (the
    platform's Airflow environment); the request goes in on stdin, never argv."""
    if env.get("AIRFLOW__CORE__AUTH_MANAGER") != FAB_AUTH_MANAGER:
        raise AuthError("users and roles belong to the production profile's FAB auth manager; "
                        "this platform runs Airflow's SimpleAuthManager (the embedded "
                        "default, whose only user is the platform's admin)")
    try:
        result = subprocess.run(
            [sys.executable, "-m", "migrationbox.platform.auth"],
            input=json.dumps(dict(request)), env=dict(env), capture_output=True, text=True,
            timeout=timeout, check=False, cwd=env.get("AIRFLOW_HOME"),
        )
    except subprocess.TimeoutExpired as exc:
        raise AuthError(f"the FAB user manager did not answer within {timeout:.0f}s") from exc
    lines = [ln for ln in result.stdout.splitlines() if ln.startswith("{")]
    answer: dict[str, Any] = {}
    if lines:
        try:
            answer = json.loads(lines[-1])
        except json.JSONDecodeError:
            answer = {}
    if result.returncode != 0 or "error" in answer or not answer:
        reason = answer.get("error") or _last_lines(result.stderr) or "no answer"
        raise AuthError(str(reason))
    return answer


def _last_lines(text: str, count: int = 8) -> str:
    return "\n".join(text.strip().splitlines()[-count:])


def _migration_dag_ids(session: Any) -> list[str]:
    """The ``migrate__…`` DAG ids Airflow knows now."""
    from sqlalchemy import text

    return [str(r[0]) for r in session.execute(
        text("SELECT dag_id FROM dag WHERE dag_id LIKE 'migrate\\_\\_%' ESCAPE '\\'"))]


def _scope_grants(estates: Iterable[str], heal_approvals: bool, dag_ids: list[str]
                  ) -> dict[str, list[Permission]]:
    """The per-estate (and healer) roles' DAG permissions."""
    wanted = {estate_role(e): dag_permissions(wave_dag_ids(e, dag_ids)) for e in estates}
    if heal_approvals:
        wanted[HEAL_ROLE] = dag_permissions([HEAL_APPROVAL_DAG])
    return wanted


def _sync_roles(sm: Any, session: Any, estates: Iterable[str] = (),
                heal_approvals: bool = False) -> dict[str, int]:
    """FAB's built-in roles, the MigrationBox roles, the roles of ``estates`` (made if
    missing), and the DAG permissions of every estate role that exists (refreshed with
    the wave DAGs now in the DAG table)."""
    if sm.find_role(ADMIN_ROLE) is None or sm.find_role(VIEWER_ROLE) is None:
        sm.sync_roles()
    viewer = list(sm.VIEWER_PERMISSIONS)
    wanted: dict[str, list[Permission]] = {
        OPERATOR_ROLE: viewer + list(OPERATOR_EXTRA),
        APPROVER_ROLE: viewer + list(APPROVER_EXTRA),
    }
    dag_ids = _migration_dag_ids(session)
    known = {e for e in estates_of(dag_ids) if sm.find_role(estate_role(e)) is not None}
    heal = heal_approvals or sm.find_role(HEAL_ROLE) is not None
    wanted.update(_scope_grants(sorted(known | set(estates)), heal, dag_ids))
    _grant(sm, wanted)
    return {name: len(perms) for name, perms in wanted.items()}


def _grant(sm: Any, wanted: Mapping[str, list[Permission]]) -> None:
    """Create each role if missing and give it every listed permission (idempotent;
    permissions granted by hand are left alone)."""
    for role_name, perms in wanted.items():
        role = sm.find_role(role_name) or sm.add_role(role_name)
        have = {(p.action.name, p.resource.name) for p in role.permissions
                if p.action is not None and p.resource is not None}
        for action, resource in perms:
            if (action, resource) in have:
                continue
            perm = sm.get_permission(action, resource) or sm.create_permission(action, resource)
            sm.add_permission_to_role(role, perm)


def _upsert_user(sm: Any, session: Any, payload: Mapping[str, Any]) -> dict[str, Any]:
    request = UserRequest.model_validate(payload["user"])
    password = validate_password(str(payload["password"]))
    user = sm.find_user(username=request.username)
    if user is not None and not request.update:
        raise AuthError(f"user {request.username!r} exists already; add --update to reset "
                        "its password and roles")
    _sync_roles(sm, session, request.estates, request.heal_approvals)
    roles = []
    for name in request.fab_roles():
        role = sm.find_role(name)
        if role is None:
            raise AuthError(f"FAB role {name!r} is missing after the role sync")
        roles.append(role)
    email = request.email or f"{request.username}@migrationbox.invalid"
    first = request.first_name or request.username
    last = request.last_name or request.role
    if user is None:
        other = sm.find_user(email=email)
        if other is not None:
            raise AuthError(f"the e-mail address {email!r} belongs to user {other.username!r}")
        user = sm.add_user(username=request.username, first_name=first, last_name=last,
                           email=email, role=roles, password=password)
        if not user:
            raise AuthError(f"FAB refused to create user {request.username!r}")
        action = "created"
    else:
        user.roles = roles
        user.first_name, user.last_name, user.email = first, last, email
        user.active = True
        sm.update_user(user)
        sm.reset_password(user.id, password)
        action = "updated"
    return {"user": request.username, "action": action, "roles": [r.name for r in roles]}


def _list_users(sm: Any) -> dict[str, Any]:
    return {"users": [
        {"username": u.username, "active": bool(u.active),
         "roles": sorted(r.name for r in u.roles)}
        for u in sorted(sm.get_all_users(), key=lambda u: u.username)
    ]}


def _handle(payload: Mapping[str, Any]) -> dict[str, Any]:
    from airflow.providers.fab.auth_manager.cli_commands.utils import get_application_builder

    op = payload.get("op")
    with get_application_builder() as appbuilder:
        sm = appbuilder.sm
        session = sm.session
        if op == "upsert_user":
            return _upsert_user(sm, session, payload)
        if op == "sync_roles":
            # estates named here get their approver role even with no user yet (for an
            # identity provider's group mapping, AUTH_ROLES_MAPPING)
            estates = UserRequest._estates([str(e) for e in payload.get("estates") or []])
            return {"roles": _sync_roles(sm, session, estates,
                                         bool(payload.get("heal_approvals")))}
        if op == "list_users":
            return _list_users(sm)
        raise AuthError(f"unknown request {op!r}")


def main() -> int:
    """Child-process entry: one JSON request on stdin, one JSON answer line on stdout."""
    import logging

    logging.disable(logging.WARNING)  # FAB logs every permission it creates
    try:
        payload = json.loads(sys.stdin.read())
        answer = _handle(payload)
    except (AuthError, ValidationError, ValueError, KeyError) as exc:
        print(json.dumps({"error": str(exc)}))
        return 2
    print(json.dumps(answer))
    return 0


if __name__ == "__main__":
    # run the imported module's main, not this copy's: pydantic and ``except AuthError``
    # must see the classes of ``migrationbox.platform.auth``, not of ``__main__``
    from migrationbox.platform.auth import main as _main

    sys.exit(_main())
