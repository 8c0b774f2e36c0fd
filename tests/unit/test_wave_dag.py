"""DAG integrity: the wave-DAG file imports cleanly and every DAG has the promised shape."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from migrationbox.orchestration.spec import SpecError, read_spec
from migrationbox.orchestration.wave_dag import PHASE_GROUPS, BuildSettings, build_all

REPO = Path(__file__).resolve().parents[2]


def _spec(estate="lab", waves=2, cost=1000.0, env="production"):
    return {
        "schema_version": 1,
        "estate": estate,
        "version": 3,
        "created_at": "2026-11-25T00:00:00+00:00",
        "waves": [
            {
                "number": n,
                "name": f"Wave {n}",
                "server_count": 3,
                "environment": env,
                "needs_approval": True,
                "approval_reasons": ["production database"],
                "predicted_monthly_usd": cost,
                "depends_on_waves": list(range(1, n)),
                "estimated_hours": 4.0,
            }
            for n in range(1, waves + 1)
        ],
    }


@pytest.fixture()
def plans(tmp_path, monkeypatch):
    folder = tmp_path / "plans"
    folder.mkdir()
    monkeypatch.setenv("MIGRATIONBOX_PLANS_DIR", str(folder))
    return folder


def _dagbag(dags_folder: Path):
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(dags_folder), safe_mode=False)


def test_dag_file_imports_and_builds_one_dag_per_wave(plans):
    (plans / "lab.json").write_text(json.dumps(_spec(waves=3)))
    bag = _dagbag(REPO / "dags")
    assert bag.import_errors == {}
    ids = sorted(d for d in bag.dag_ids if d.startswith("migrate__"))
    assert ids == ["migrate__lab__wave_01", "migrate__lab__wave_02", "migrate__lab__wave_03"]
    for dag_id in ids:
        dag = bag.dags[dag_id]
        assert dag.tags and "migrationbox" in dag.tags
        assert dag.doc_md and "wave" in dag.doc_md
        for t in dag.tasks:
            assert t.owner == "migration-engineering"
        assert any(t.retries > 0 for t in dag.tasks)


def test_seven_groups_in_order_with_gates_and_rollback(plans):
    dags = build_all(plans_dir=_write(plans, _spec()))
    dag = dags["migrate__lab__wave_01"]
    groups = [g for g in dag.task_group.children if g in PHASE_GROUPS]
    assert groups == list(PHASE_GROUPS)
    # each group's tasks come after every task of the previous group
    order = {t.task_id: i for i, t in enumerate(dag.topological_sort())}
    for before, after in itertools.pairwise(PHASE_GROUPS):
        last = max(order[t.task_id] for t in dag.tasks if t.task_id.startswith(before + "."))
        first = min(order[t.task_id] for t in dag.tasks if t.task_id.startswith(after + "."))
        assert last < first, (before, after)
    task = dag.get_task
    assert task("cutover.approve_cutover").downstream_task_ids == {"cutover.canary_shift"}
    assert task("validate.approve_decommission").downstream_task_ids == {
        "validate.decommission_sources"
    }
    for sensor_id in (
        "preflight.wait_for_previous_wave",
        "provision.instances_running",
        "replicate.replication_converged",
        "smoke_test.smoke_tests_green",
    ):
        assert task(sensor_id).mode == "reschedule"
    decide = task("rollback.choose_path")
    assert decide.trigger_rule == "one_failed"
    assert decide.upstream_task_ids == {"cutover.canary_shift", "validate.verify_data"}
    assert decide.downstream_task_ids == {"rollback.restore_dns", "rollback.approve_rollback"}
    assert task("rollback.approve_rollback").downstream_task_ids == {
        "rollback.restore_dns_after_approval"
    }
    keep = task("rollback.keep_source_authoritative")
    assert keep.trigger_rule == "none_failed_min_one_success"
    assert keep.upstream_task_ids == {"rollback.restore_dns",
                                      "rollback.restore_dns_after_approval"}
    assert type(task("replicate.sync_rounds")).__name__ == "ReplicationRoundsOperator"
    teardown = task("rollback.teardown_wave")
    assert teardown.trigger_rule == "one_failed"
    assert teardown.upstream_task_ids == {"provision.infrastructure",
                                          "provision.instances_running"}
    assert not teardown.downstream_task_ids
    assert "budget.approve_budget" not in dag.task_dict


def test_budget_gate_only_above_threshold(plans):
    dags = build_all(plans_dir=_write(plans, _spec(cost=50_000)))
    dag = dags["migrate__lab__wave_01"]
    gate = dag.get_task("budget.approve_budget")
    # the spec's waves carry approval reasons: their risk gate comes first
    assert gate.upstream_task_ids == {"risk.approve_plan_risks"}
    assert dag.get_task("risk.approve_plan_risks").upstream_task_ids == {"preflight.checks"}
    assert dag.get_task("provision.infrastructure").upstream_task_ids == {"budget.approve_budget"}
    assert BuildSettings().budget_threshold_usd < 50_000


def test_parsing_context_builds_only_the_requested_dag(plans):
    dags = build_all(plans_dir=_write(plans, _spec(waves=5)), only_dag_id="migrate__lab__wave_04")
    assert list(dags) == ["migrate__lab__wave_04"]


def test_broken_spec_fails_its_estate_only_and_strict_mode_makes_it_an_import_error(
    plans, monkeypatch
):
    bad = _spec()
    bad["waves"][1]["depends_on_waves"] = [7]
    (plans / "lab.json").write_text(json.dumps(bad))
    (plans / "shop.json").write_text(json.dumps(_spec(estate="shop")))
    with pytest.raises(SpecError, match=r"depends_on_waves"):
        read_spec(plans / "lab.json")
    bag = _dagbag(REPO / "dags")
    assert bag.import_errors == {}
    ids = sorted(d for d in bag.dag_ids if d.startswith("migrate__"))
    assert ids == ["migrate__lab__spec_error", "migrate__shop__wave_01", "migrate__shop__wave_02"]
    assert "depends_on_waves" in bag.dags["migrate__lab__spec_error"].doc_md

    monkeypatch.setenv("MIGRATIONBOX_STRICT_SPECS", "1")
    (plans / "lab.json").write_text("{not json")
    bag = _dagbag(REPO / "dags")
    assert len(bag.import_errors) == 1
    assert "not valid JSON" in next(iter(bag.import_errors.values()))


def _write(folder: Path, spec: dict) -> Path:
    (folder / f"{spec['estate']}.json").write_text(json.dumps(spec))
    return folder


def test_discover_and_plan_dag_runs_and_publishes_the_plan(tmp_path, monkeypatch):
    """dag.test() of the planning DAG on the sample estate: plan stored, spec written."""
    import subprocess
    import sys

    home = tmp_path / "airflow"
    env = {
        **__import__("os").environ,
        "AIRFLOW_HOME": str(home),
        "MIGRATIONBOX_HOME": str(tmp_path / "rt"),
        "MIGRATIONBOX_STORE_URL": f"sqlite:///{tmp_path / 'store.db'}",
        "MIGRATIONBOX_PLANS_DIR": str(tmp_path / "plans"),
    }
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env=env, check=True,
                   capture_output=True)
    env["AIRFLOW__CORE__DAGS_FOLDER"] = str(REPO / "dags")
    out = subprocess.run(
        [sys.executable, "-m", "airflow", "dags", "test", "migrationbox__discover_and_plan",
         "-c", json.dumps({"estate_path": "include/estates/sample"})],
        env=env, capture_output=True, text=True, cwd=tmp_path, timeout=300,
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    assert "state=success" in out.stdout + out.stderr or "success" in out.stdout[-500:]
    spec = json.loads((tmp_path / "plans" / "sample.json").read_text())
    assert spec["estate"] == "sample" and spec["version"] == 1 and len(spec["waves"]) >= 4
