"""One broken plan spec is an Airflow import error of its own estate, on a real platform.

The platform runs two DAG bundles: the project's ``dags/`` and ``<plans>/dags`` (one loader
file per estate, written by the plan export). A spec that a newer MigrationBox wrote is
planted for one estate next to a good estate: the API's import errors name that estate's
loader file, the estate and the spec's problem, while the good estate's wave DAGs are
listed; exporting the plan again clears the error and brings the estate's DAGs back.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.airflow, pytest.mark.timeout(900)]

GOOD, BROKEN = "itgood", "itbroken"


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    from migrationbox.platform.testing import running_platform

    with running_platform(tmp_path_factory.mktemp("import-errors-platform")) as plat:
        yield plat


def _until(what: str, predicate: Callable[[], object], timeout: float = 240.0):
    from migrationbox.platform.testing import wait_until

    return wait_until(what, predicate, timeout, poll=2.0)


def _error_of(client, loader_name: str) -> dict | None:
    return next((e for e in client.import_errors() if e.get("filename") == loader_name), None)


def test_a_broken_spec_is_an_import_error_of_its_estate_only(platform, small_plan):
    from migrationbox.config import plans_dir
    from migrationbox.orchestration.spec import loader_path
    from migrationbox.planning.export import write_wave_spec
    from migrationbox.platform.airflow_runtime import DAGS_BUNDLE, PLANS_BUNDLE

    plans = plans_dir()
    assert plans == platform.plans_dir  # where this process exports is what Airflow reads
    write_wave_spec(small_plan(estate=GOOD), plans)
    broken_spec = write_wave_spec(small_plan(estate=BROKEN), plans)
    assert loader_path(plans, BROKEN).is_file()
    newer = {**json.loads(broken_spec.read_text()), "schema_version": 99,
             "written_by": "99.0.0"}
    broken_spec.write_text(json.dumps(newer))

    client = platform.client()
    good = client.wait_for_dag(f"migrate__{GOOD}__wave_02", timeout=240)
    assert good["bundle_name"] == PLANS_BUNDLE
    assert good["relative_fileloc"] == f"migrate__{GOOD}.py"

    error = _until("the broken estate's import error",
                   lambda: _error_of(client, f"migrate__{BROKEN}.py"))
    assert error["bundle_name"] == PLANS_BUNDLE
    trace = error["stack_trace"]
    assert f"estate {BROKEN}: its wave DAGs are not loaded" in trace
    assert str(broken_spec) in trace
    assert "schema version 99 was written by MigrationBox 99.0.0" in trace
    # that estate only: no other file has an import error, the other estate is all there
    others = [e for e in client.import_errors() if e["filename"] != f"migrate__{BROKEN}.py"]
    assert others == [], others
    ids = {d["dag_id"] for d in client.list_dags(prefix="migrate__")}
    assert {f"migrate__{GOOD}__wave_01", f"migrate__{GOOD}__wave_02"} <= ids
    assert not [d for d in ids if d.startswith(f"migrate__{BROKEN}__")]
    # the dags/ bundle is parsed as before, with no wave DAG of its own
    planning = client.get_dag("migrationbox__discover_and_plan")
    assert planning is not None and planning["bundle_name"] == DAGS_BUNDLE

    # exporting the plan again repairs the spec: the error goes, the estate's DAGs come
    write_wave_spec(small_plan(estate=BROKEN), plans)
    client.wait_for_dag(f"migrate__{BROKEN}__wave_01", timeout=240)
    _until("the import error to clear",
           lambda: _error_of(client, f"migrate__{BROKEN}.py") is None)
    assert client.get_dag(f"migrate__{GOOD}__wave_01") is not None


def test_a_worker_runs_a_wave_task_from_its_estate_s_loader(platform, small_plan):
    """The task runner finds a wave DAG in the plans bundle and runs its task. The estate's
    plan is not in the store, so the first task fails at once with MigrationBox's own
    refusal: proof that the worker imported the loader and ran our code (a worker that
    could not find the DAG would fail the task with Airflow's message instead)."""
    from migrationbox.config import plans_dir
    from migrationbox.planning.export import write_wave_spec

    write_wave_spec(small_plan(estate="itrun"), plans_dir())
    client = platform.client()
    dag_id, task_id = "migrate__itrun__wave_01", "preflight.wait_for_previous_wave"
    client.wait_for_dag(dag_id, timeout=240)
    run_id = client.trigger(dag_id)["dag_run_id"]

    def first_task() -> dict | None:
        ti = next(t for t in client.task_instances(dag_id, run_id) if t["task_id"] == task_id)
        return ti if ti["state"] in ("success", "failed", "upstream_failed", "removed") else None

    ti = _until(f"{task_id} to finish", first_task, timeout=600)
    assert ti["state"] == "failed"
    log = client.request(
        "GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/1",
        params={"full_content": True})
    text = json.dumps(log)
    assert "refused before it started" in text and "itrun" in text, text[-2000:]
