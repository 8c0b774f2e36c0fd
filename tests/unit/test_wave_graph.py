"""The wave graph (pure) and its one renderer agree: same tasks, groups, rules, edges."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from migrationbox.orchestration import graph as g
from migrationbox.orchestration.spec import PlanSpec

REPO = Path(__file__).resolve().parents[2]
PHASES_DIR = REPO / "include" / "migrationbox" / "phases"


def _spec(cost: float = 1000.0, env: str = "production", waves: int = 2) -> PlanSpec:
    return PlanSpec.model_validate({
        "schema_version": 1,
        "estate": "lab",
        "version": 3,
        "created_at": "2026-11-25T00:00:00+00:00",
        "waves": [
            {
                "number": n, "name": f"Wave {n}", "server_count": 3, "environment": env,
                "needs_approval": True, "approval_reasons": [], "predicted_monthly_usd": cost,
                "depends_on_waves": list(range(1, n)), "estimated_hours": 4.0,
            }
            for n in range(1, waves + 1)
        ],
    })


def test_graph_module_builds_without_importing_airflow():
    code = (
        "import sys\n"
        "from migrationbox.orchestration.graph import build_wave_graph\n"
        "from migrationbox.orchestration.spec import PlanSpec\n"
        "assert not [m for m in sys.modules if m == 'airflow' or m.startswith('airflow.')]\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300, cwd=REPO)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def test_graph_shape_and_order():
    spec = _spec()
    graph = g.build_wave_graph(spec, spec.waves[0])
    assert [grp.name for grp in graph.groups] == [*g.PHASE_GROUPS, g.ROLLBACK]
    assert graph.group_edges == tuple(zip(g.PHASE_GROUPS, g.PHASE_GROUPS[1:], strict=False))
    order = graph.topological_order()
    pos = {t: i for i, t in enumerate(order)}
    for up, down in graph.task_edges():
        assert pos[up] < pos[down], (up, down)
    for before, after in zip(g.PHASE_GROUPS, g.PHASE_GROUPS[1:], strict=False):
        assert max(pos[n.task_id] for n in graph.group_nodes(before)) < min(
            pos[n.task_id] for n in graph.group_nodes(after))
    node = graph.by_id
    assert node[g.ROLLBACK_CHOOSE_TASK_ID].kind is g.NodeKind.BRANCH
    assert node[g.ROLLBACK_CHOOSE_TASK_ID].trigger_rule is g.TriggerRule.ONE_FAILED
    assert node[g.TEARDOWN_TASK_ID].trigger_rule is g.TriggerRule.ONE_FAILED
    assert node[g.KEEP_SOURCE_TASK_ID].trigger_rule is g.TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS
    assert node[g.REPLICATION_ROUNDS_TASK_ID].kind is g.NodeKind.ROUNDS
    assert node[g.PROVISION_TASK_ID].pool == g.PROVISION_POOL
    assert g.BUDGET_APPROVAL_TASK_ID not in node and not graph.budget_gate
    # the branch's two outcomes are exactly the shared constants
    assert {d for u, d in graph.edges if u == g.ROLLBACK_CHOOSE_TASK_ID} == {
        g.ROLLBACK_APPROVE_TASK_ID, g.ROLLBACK_RESTORE_TASK_ID}


def test_budget_gate_sits_between_preflight_and_provision():
    spec = _spec(cost=50_000)
    graph = g.build_wave_graph(spec, spec.waves[0], g.BuildSettings(budget_threshold_usd=20_000))
    assert graph.budget_gate
    edges = graph.task_edges()
    assert (g.PREFLIGHT_CHECKS_TASK_ID, g.BUDGET_APPROVAL_TASK_ID) in edges
    assert (g.BUDGET_APPROVAL_TASK_ID, g.PROVISION_TASK_ID) in edges
    assert (g.PREFLIGHT_CHECKS_TASK_ID, g.PROVISION_TASK_ID) not in edges
    unbudgeted = g.build_wave_graph(spec, spec.waves[0], g.BuildSettings(budget_threshold_usd=1e6))
    assert not unbudgeted.budget_gate


def test_every_node_target_exists_where_the_renderer_looks_for_it():
    from migrationbox.orchestration import gates, tasks

    spec = _spec(cost=50_000)
    graph = g.build_wave_graph(spec, spec.waves[0])
    for node in graph.nodes:
        match node.kind:
            case g.NodeKind.PHASE:
                assert node.target in tasks.PHASES, node
            case g.NodeKind.SENSOR:
                assert callable(getattr(gates, node.target)), node
            case g.NodeKind.BRANCH | g.NodeKind.STEP:
                assert callable(getattr(tasks, node.target)), node


@pytest.mark.parametrize("cost", [1000.0, 50_000.0])
def test_rendered_dag_agrees_with_the_graph_edge_for_edge(cost):
    from migrationbox.orchestration.wave_dag import BuildSettings, render_wave_dag

    spec = _spec(cost=cost)
    settings = BuildSettings()
    graph = g.build_wave_graph(spec, spec.waves[1], settings)
    dag = render_wave_dag(graph, spec, spec.waves[1], settings)

    assert set(dag.task_dict) == {n.task_id for n in graph.nodes}
    dag_edges = {(t.task_id, d) for t in dag.tasks for d in t.downstream_task_ids}
    assert dag_edges == graph.task_edges()
    assert list(dag.task_group.children) == [grp.name for grp in graph.groups]
    for grp in graph.groups:  # group-level edges as Airflow draws them
        tg = dag.task_group.children[grp.name]
        assert set(tg.downstream_group_ids) == {b for a, b in graph.group_edges if a == grp.name}
    kinds = {
        g.NodeKind.PHASE: "PythonOperator",
        g.NodeKind.SENSOR: "PythonSensor",
        g.NodeKind.APPROVAL: "MigrationApprovalOperator",
        g.NodeKind.BRANCH: "BranchPythonOperator",
        g.NodeKind.ROUNDS: "ReplicationRoundsOperator",
        g.NodeKind.STEP: "PythonOperator",
    }
    for node in graph.nodes:
        task = dag.get_task(node.task_id)
        assert type(task).__name__ == kinds[node.kind], node.task_id
        assert task.trigger_rule == node.trigger_rule.value, node.task_id
        assert task.pool == (node.pool or "default_pool"), node.task_id
        if node.retries is not None:
            assert task.retries == node.retries, node.task_id
        if node.kind is g.NodeKind.PHASE:
            assert task.op_kwargs["phase_name"] == node.target
        if node.kind is g.NodeKind.SENSOR:
            assert task.op_kwargs["check"] == node.target and task.mode == "reschedule"
    # Airflow's own topological sort respects the graph's order of groups
    order = [t.task_id for t in dag.topological_sort()]
    for up, down in graph.task_edges():
        assert order.index(up) < order.index(down)


def test_rollback_branch_returns_the_shared_task_ids(monkeypatch):
    """The callable and the builder share the constants: each outcome is a real task."""
    from migrationbox.orchestration import tasks
    from migrationbox.orchestration.wave_dag import build_wave_dag
    from migrationbox.phases import cutover

    spec = _spec()
    dag = build_wave_dag(spec, spec.waves[0])
    branches = dag.get_task(g.ROLLBACK_CHOOSE_TASK_ID).downstream_task_ids

    class Ctx:
        run_id = "manual__t"

    monkeypatch.setattr(tasks, "build_context", lambda *a, **k: Ctx())
    monkeypatch.setattr(tasks, "_event", lambda *a, **k: None)
    for needs, expected in ((True, g.ROLLBACK_APPROVE_TASK_ID),
                            (False, g.ROLLBACK_RESTORE_TASK_ID)):
        monkeypatch.setattr(cutover, "rollback_requires_approval",
                            lambda ctx, needs=needs: (needs, "test"))
        chosen = tasks.choose_rollback_path("lab", 1, 3)
        assert chosen == expected and chosen in branches


def _string_constants(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant)
            and isinstance(n.value, str)}


def test_only_the_graph_spells_task_ids_in_the_orchestration_code():
    """Callables use the graph's constants (the rollback branch returns two of them)."""
    spec = _spec(cost=50_000)
    ids = set(g.build_wave_graph(spec, spec.waves[0]).by_id)
    folder = REPO / "include" / "migrationbox" / "orchestration"
    for path in sorted(folder.glob("*.py")):
        if path.name != "graph.py":
            assert not _string_constants(path) & ids, path.name


def test_phase_code_names_no_task_id():
    spec = _spec(cost=50_000)
    graph = g.build_wave_graph(spec, spec.waves[0])
    # sensor names are the gates' check names by design; every other task name is the DAG's
    task_only = {n.task_id for n in graph.nodes} | {
        n.name for n in graph.nodes if n.kind is not g.NodeKind.SENSOR and "_" in n.name}
    for path in sorted(PHASES_DIR.rglob("*.py")):
        named = _string_constants(path) & task_only
        assert not named, f"{path.relative_to(REPO)} names task ids {sorted(named)}"
        text = path.read_text()
        assert not [t for t in graph.by_id if t in text], path


def test_dag_shaping_settings_come_from_the_site_settings(monkeypatch):
    spec = _spec(cost=5_000)
    monkeypatch.delenv("MIGRATIONBOX_BUDGET_THRESHOLD_USD", raising=False)
    monkeypatch.setenv("AIRFLOW__MIGRATIONBOX__BUDGET_THRESHOLD_USD", "1000")
    monkeypatch.setenv("AIRFLOW__MIGRATIONBOX__APPROVERS", "alice, bob")
    settings = g.BuildSettings.from_settings()
    assert settings.approvers == ("alice", "bob")
    assert g.build_wave_graph(spec, spec.waves[0], settings).budget_gate
    monkeypatch.setenv("MIGRATIONBOX_BUDGET_THRESHOLD_USD", "9000")  # the override wins
    assert not g.build_wave_graph(spec, spec.waves[0], g.BuildSettings.from_settings()).budget_gate
