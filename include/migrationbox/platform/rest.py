"""A small client of Airflow 3.3's public REST API (``/api/v2``), the way people use it.

The demo, the CLI and the tests drive Airflow only through this client: trigger a wave,
answer its approval gates, follow its task instances, clear a rejected gate. Paths and
bodies were checked against ``airflow/api_fastapi/core_api/routes/public`` and the
SimpleAuthManager login route of apache-airflow 3.3.2:

* token: ``POST /auth/token`` with JSON ``{"username", "password"}`` -> 201
  ``{"access_token"}``; sent as ``Authorization: Bearer``;
* ``GET /api/v2/monitor/health`` (no auth);
* ``GET|PATCH /api/v2/dags/{dag_id}``, ``GET /api/v2/dags?dag_id_prefix_pattern=``;
* ``POST /api/v2/dags/{dag_id}/dagRuns`` (``logical_date`` is required, may be null);
* ``GET /api/v2/dags/{dag_id}/dagRuns/{run_id}[/taskInstances|/hitlDetails]``;
* ``PATCH /api/v2/dags/{dag_id}/dagRuns/{run_id}`` (``DAGRunPatchBody``: ``state``
  queued|success|failed, ``note``);
* ``PATCH /api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}``
  (``PatchTaskInstanceBody``: ``new_state``, ``note``);
* ``PATCH /api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/{map_index}/hitlDetails``;
* ``POST /api/v2/dags/{dag_id}/clearTaskInstances`` (``dry_run`` defaults to true
  server-side, so it is always sent);
* ``GET /api/v2/importErrors``; bulk ``PATCH /api/v2/{connections,pools,variables}``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import quote

import httpx

from migrationbox.errors import ExternalServiceError

TERMINAL_RUN_STATES = frozenset({"success", "failed"})
PAGE_LIMIT = 100  # the API's default [api] maximum_page_limit
#: States ``DAGRunPatchBody`` and ``PatchTaskInstanceBody`` accept (Airflow 3.3:
#: ``DAGRunPatchStates``; ``new_state`` is restricted to success, failed, skipped).
DAG_RUN_PATCH_STATES = frozenset({"queued", "success", "failed"})
TASK_PATCH_STATES = frozenset({"success", "failed", "skipped"})
NOTE_MAX_CHARS = 1000  # both bodies' ``note`` max_length


class AirflowApiError(ExternalServiceError):
    """An Airflow API call failed; carries the method, path, status and server detail."""

    def __init__(self, method: str, path: str, status: int, detail: object) -> None:
        self.method = method
        self.path = path
        self.status = status
        self.detail = detail
        super().__init__(f"{method} {path} -> HTTP {status}: {detail}")


def _q(value: str) -> str:
    """Quote one path segment (run ids contain ``:`` and ``+``)."""
    return quote(value, safe="")


RETRYABLE_STATUS = frozenset({500, 502, 503, 504})
MAX_RETRIES = 4


class AirflowClient:
    """Bearer-token client of one Airflow API server.

    The token is fetched on first use and fetched again once when the server answers
    401 (tokens expire after ``[api_auth] jwt_expiration_time``).
    """

    def __init__(
        self,
        base_url: str,
        username: str | None = None,
        password: str | None = None,
        *,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.username = username
        self.password = password
        # trust_env=False: the platform is on loopback; a proxy from the environment
        # must never see these requests or the token.
        self._http = httpx.Client(
            base_url=self.base_url, timeout=timeout, trust_env=False, transport=transport
        )
        self._token: str | None = None

    # -- plumbing ---------------------------------------------------------------------

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> AirflowClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def login(self) -> str:
        """Fetch a JWT from the simple auth manager's ``POST /auth/token``."""
        if self.username is None or self.password is None:
            raise AirflowApiError("POST", "/auth/token", 0, "no username/password given")
        response = self._http.post(
            "/auth/token", json={"username": self.username, "password": self.password}
        )
        if response.status_code not in (200, 201):
            raise AirflowApiError("POST", "/auth/token", response.status_code, _detail(response))
        self._token = str(response.json()["access_token"])
        return self._token

    def request(
        self,
        method: str,
        path: str,
        *,
        json: object = None,
        params: Mapping[str, Any] | None = None,
        ok: Iterable[int] = (200, 201, 204),
    ) -> Any:
        """One authenticated call; returns the decoded JSON (or None for empty bodies)."""
        if self._token is None:
            self.login()
        response = self._send(method, path, json, params)
        if response.status_code == 401:
            self.login()
            response = self._send(method, path, json, params)
        # The embedded default keeps Airflow's metadata in SQLite, where a write can lose
        # the lock to the scheduler on a busy machine ("Database error", HTTP 500). Retry
        # requests that are safe to repeat; never a POST (it could trigger a run twice).
        attempt = 0
        while (response.status_code in RETRYABLE_STATUS and method.upper() != "POST"
               and attempt < MAX_RETRIES):
            attempt += 1
            time.sleep(0.5 * 2**attempt)
            response = self._send(method, path, json, params)
        if response.status_code not in set(ok):
            raise AirflowApiError(method, path, response.status_code, _detail(response))
        if not response.content:
            return None
        return response.json()

    def _send(
        self, method: str, path: str, body: object, params: Mapping[str, Any] | None
    ) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self._token}"}
        return self._http.request(method, path, json=body, params=params, headers=headers)

    def _paged(self, path: str, key: str, params: Mapping[str, Any] | None = None) -> list[Any]:
        items: list[Any] = []
        offset = 0
        while True:
            page = self.request(
                "GET", path, params={**(params or {}), "limit": PAGE_LIMIT, "offset": offset}
            )
            batch = page.get(key, [])
            items.extend(batch)
            offset += len(batch)
            if not batch or offset >= int(page.get("total_entries", offset)):
                return items

    # -- health and DAGs --------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """``/api/v2/monitor/health`` (needs no token)."""
        response = self._http.get("/api/v2/monitor/health")
        if response.status_code != 200:
            raise AirflowApiError(
                "GET", "/api/v2/monitor/health", response.status_code, _detail(response)
            )
        return dict(response.json())

    def get_dag(self, dag_id: str) -> dict[str, Any] | None:
        """The DAG as the API shows it, or None while it is not parsed yet."""
        try:
            return dict(self.request("GET", f"/api/v2/dags/{_q(dag_id)}"))
        except AirflowApiError as exc:
            if exc.status == 404:
                return None
            raise

    def list_dags(self, prefix: str | None = None) -> list[dict[str, Any]]:
        params = {"dag_id_prefix_pattern": prefix} if prefix else {}
        return self._paged("/api/v2/dags", "dags", params)

    def import_errors(self) -> list[dict[str, Any]]:
        return self._paged("/api/v2/importErrors", "import_errors")

    def wait_for_dag(
        self, dag_id: str, timeout: float = 120.0, poll: float = 2.0
    ) -> dict[str, Any]:
        """Wait until the dag-processor has parsed ``dag_id``.

        On timeout the error lists the current import errors, since a broken DAG file is
        the usual reason a DAG never shows up.
        """
        deadline = time.monotonic() + timeout
        while True:
            dag = self.get_dag(dag_id)
            if dag is not None:
                return dag
            if time.monotonic() >= deadline:
                detail = "; ".join(
                    f"{e.get('filename')}: {_last_line(e.get('stack_trace'))}"
                    for e in self.import_errors()
                )
                raise TimeoutError(
                    f"DAG {dag_id!r} was not parsed within {timeout:.0f}s"
                    + (f"; import errors: {detail}" if detail else "; no import errors reported")
                )
            time.sleep(poll)

    def unpause(self, dag_id: str) -> dict[str, Any]:
        return dict(self.request("PATCH", f"/api/v2/dags/{_q(dag_id)}", json={"is_paused": False}))

    def pause(self, dag_id: str) -> dict[str, Any]:
        return dict(self.request("PATCH", f"/api/v2/dags/{_q(dag_id)}", json={"is_paused": True}))

    # -- runs -------------------------------------------------------------------------

    def trigger(
        self,
        dag_id: str,
        conf: Mapping[str, Any] | None = None,
        run_id: str | None = None,
        note: str | None = None,
    ) -> dict[str, Any]:
        """Start a run with no logical date. With ``run_id``, triggering twice is a no-op
        that returns the existing run (the API answers 409 for a duplicate run id)."""
        body: dict[str, Any] = {"logical_date": None, "conf": dict(conf or {})}
        if run_id is not None:
            body["dag_run_id"] = run_id
        if note is not None:
            body["note"] = note
        attempt = 0
        while True:
            try:
                return dict(self.request("POST", f"/api/v2/dags/{_q(dag_id)}/dagRuns",
                                         json=body))
            except AirflowApiError as exc:
                if exc.status == 409 and run_id is not None:
                    return self.dag_run(dag_id, run_id)
                # with a run id a repeat cannot start a second run (409 above), so a
                # transient failure is retried like a GET: 50 waves triggered at once
                # on the embedded default's SQLite lost the lock ("Database error", 500)
                if (run_id is None or exc.status not in RETRYABLE_STATUS
                        or attempt >= MAX_RETRIES):
                    raise
                attempt += 1
                time.sleep(0.5 * 2**attempt)

    def dag_run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        return dict(self.request("GET", f"/api/v2/dags/{_q(dag_id)}/dagRuns/{_q(run_id)}"))

    def dag_runs(self, dag_id: str) -> list[dict[str, Any]]:
        return self._paged(f"/api/v2/dags/{_q(dag_id)}/dagRuns", "dag_runs")

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        return self._paged(
            f"/api/v2/dags/{_q(dag_id)}/dagRuns/{_q(run_id)}/taskInstances", "task_instances"
        )

    def mark_run(
        self, dag_id: str, run_id: str, state: str, note: str | None = None
    ) -> dict[str, Any]:
        """Set a run's state (``DAGRunPatchBody``): ``failed`` stops its running tasks
        and schedules nothing more, ``success`` ends it, ``queued`` runs it again. With
        ``note`` the run's note says why (Airflow keeps the last one)."""
        if state not in DAG_RUN_PATCH_STATES:
            raise ValueError(f"mark_run: state must be one of "
                             f"{', '.join(sorted(DAG_RUN_PATCH_STATES))}, not {state!r}")
        _check_note("mark_run", note)
        body: dict[str, Any] = {"state": state}
        if note is not None:
            body["note"] = note
        path = f"/api/v2/dags/{_q(dag_id)}/dagRuns/{_q(run_id)}"
        return dict(self.request("PATCH", path, json=body))

    def set_task_state(
        self, dag_id: str, run_id: str, task_id: str, new_state: str,
        note: str | None = None,
    ) -> dict[str, Any]:
        """Set one task instance's state (``PatchTaskInstanceBody``), e.g. ``failed`` so
        that tasks with trigger rule ``one_failed`` (a rollback group) run. Airflow
        answers with the task instances it changed."""
        if new_state not in TASK_PATCH_STATES:
            raise ValueError(f"set_task_state: new_state must be one of "
                             f"{', '.join(sorted(TASK_PATCH_STATES))}, not {new_state!r}")
        _check_note("set_task_state", note)
        body: dict[str, Any] = {"new_state": new_state}
        if note is not None:
            body["note"] = note
        path = (f"/api/v2/dags/{_q(dag_id)}/dagRuns/{_q(run_id)}/taskInstances/"
                f"{_q(task_id)}")
        return dict(self.request("PATCH", path, json=body))

    def wait_for_run(
        self,
        dag_id: str,
        run_id: str,
        timeout: float = 600.0,
        poll: float = 2.0,
        states: Iterable[str] = TERMINAL_RUN_STATES,
        on_poll: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """Poll the run until its state is one of ``states``; ``on_poll`` sees each read."""
        wanted = set(states)
        deadline = time.monotonic() + timeout
        while True:
            run = self.dag_run(dag_id, run_id)
            if on_poll is not None:
                on_poll(run)
            if run.get("state") in wanted:
                return run
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"run {dag_id}/{run_id} still {run.get('state')!r} after {timeout:.0f}s"
                )
            time.sleep(poll)

    # -- human in the loop ------------------------------------------------------------

    def hitl_details(
        self, dag_id: str, run_id: str, pending_only: bool = False
    ) -> list[dict[str, Any]]:
        """Approval gates of a run; ``pending_only`` keeps those not answered yet."""
        params = {"response_received": "false"} if pending_only else {}
        return self._paged(
            f"/api/v2/dags/{_q(dag_id)}/dagRuns/{_q(run_id)}/hitlDetails", "hitl_details", params
        )

    def respond_hitl(
        self,
        dag_id: str,
        run_id: str,
        task_id: str,
        map_index: int = -1,
        chosen_options: Sequence[str] = ("Approve",),
        params_input: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Answer a gate. 409 = already answered, 400 = invalid option, 403 = not assigned."""
        path = (
            f"/api/v2/dags/{_q(dag_id)}/dagRuns/{_q(run_id)}/taskInstances/"
            f"{_q(task_id)}/{map_index}/hitlDetails"
        )
        body = {"chosen_options": list(chosen_options), "params_input": dict(params_input or {})}
        return dict(self.request("PATCH", path, json=body))

    def clear_task(
        self,
        dag_id: str,
        run_id: str,
        task_ids: Sequence[str],
        dry_run: bool = False,
        only_failed: bool = False,
        include_downstream: bool = True,
    ) -> dict[str, Any]:
        """Clear tasks of one run so they run again (e.g. a rejected approval gate and the
        steps it skipped). ``only_failed`` is off because a rejected gate ends in success."""
        body = {
            "dag_run_id": run_id,
            "task_ids": list(task_ids),
            "dry_run": dry_run,
            "only_failed": only_failed,
            "include_downstream": include_downstream,
            "reset_dag_runs": True,
        }
        return dict(
            self.request("POST", f"/api/v2/dags/{_q(dag_id)}/clearTaskInstances", json=body)
        )

    # -- connections, pools, variables (bulk, idempotent) ------------------------------

    def bulk_upsert(self, kind: str, entities: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """Create-or-overwrite ``connections``, ``pools`` or ``variables`` in one call."""
        if kind not in ("connections", "pools", "variables"):
            raise ValueError(f"bulk_upsert: unknown kind {kind!r}")
        if not entities:
            return {}
        body = {
            "actions": [
                {
                    "action": "create",
                    "entities": [dict(e) for e in entities],
                    "action_on_existence": "overwrite",
                }
            ]
        }
        result = dict(self.request("PATCH", f"/api/v2/{kind}", json=body))
        errors = (result.get("create") or {}).get("errors") or []
        if errors:
            raise AirflowApiError("PATCH", f"/api/v2/{kind}", 200, errors)
        return result

    def get_variable(self, key: str) -> Any:
        return self.request("GET", f"/api/v2/variables/{_q(key)}")["value"]

    def get_pool(self, name: str) -> dict[str, Any]:
        return dict(self.request("GET", f"/api/v2/pools/{_q(name)}"))

    def get_connection(self, conn_id: str) -> dict[str, Any]:
        return dict(self.request("GET", f"/api/v2/connections/{_q(conn_id)}"))


def _check_note(call: str, note: str | None) -> None:
    """Airflow refuses a longer note with a 422; say so before the request is sent."""
    if note is not None and len(note) > NOTE_MAX_CHARS:
        raise ValueError(f"{call}: note is {len(note)} characters; Airflow takes at most "
                         f"{NOTE_MAX_CHARS}")


def _last_line(text: object) -> str:
    lines = str(text or "").strip().splitlines()
    return lines[-1] if lines else ""


def _detail(response: httpx.Response) -> object:
    try:
        payload = response.json()
    except ValueError:
        return response.text[:500]
    if isinstance(payload, dict) and "detail" in payload:
        return payload["detail"]
    return payload
