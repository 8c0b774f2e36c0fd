"""The planner's approval reasons and live servers gate the waves they name.

Pure graph first (no Airflow), then the rendered DAG built in memory (no database): the
risk gate sits between preflight and provision (before the budget gate when both are
there), the live-cutover gate between the cutover approval and the canary, and waves
without reasons or live servers keep the shape they had.
"""

from __future__ import annotations

from migrationbox.orchestration import graph as g
from migrationbox.orchestration.spec import PlanSpec


def _spec(reasons: list[str] | None = None, live: list[str] | None = None,
          cost: float = 1000.0) -> PlanSpec:
    return PlanSpec.model_validate({
        "schema_version": 1, "estate": "lab", "version": 3,
        "created_at": "2026-11-25T00:00:00+00:00",
        "waves": [{
            "number": 1, "name": "Wave 1", "server_count": 3, "environment": "production",
            "needs_approval": bool(reasons), "approval_reasons": reasons or [],
            "live_servers": live or [], "predicted_monthly_usd": cost,
            "depends_on_waves": [], "estimated_hours": 4.0,
        }],
    })


def _graph(spec: PlanSpec, **settings) -> g.WaveGraph:
    return g.build_wave_graph(spec, spec.waves[0], g.BuildSettings(**settings))


def test_no_reasons_and_no_live_servers_keep_the_plain_shape():
    graph = _graph(_spec())
    assert not graph.risk_gate and not graph.live_gate
    assert g.RISK_APPROVAL_TASK_ID not in graph.by_id
    assert g.LIVE_CUTOVER_APPROVAL_TASK_ID not in graph.by_id
    edges = graph.task_edges()
    assert (g.PREFLIGHT_CHECKS_TASK_ID, g.PROVISION_TASK_ID) in edges
    assert (g.CUTOVER_APPROVAL_TASK_ID, g.CUTOVER_SHIFT_TASK_ID) in edges
    assert graph.group_edges == tuple(zip(g.PHASE_GROUPS, g.PHASE_GROUPS[1:], strict=False))


def test_approval_reasons_gate_provisioning_and_the_gate_lists_them():
    reasons = ["production database", "criticality 0.31 above 0.05"]
    graph = _graph(_spec(reasons=reasons))
    assert graph.risk_gate
    node = graph.by_id[g.RISK_APPROVAL_TASK_ID]
    assert node.kind is g.NodeKind.APPROVAL and node.group == g.RISK
    assert node.retries == 0
    assert all(r in node.body for r in reasons)
    edges = graph.task_edges()
    assert (g.PREFLIGHT_CHECKS_TASK_ID, g.RISK_APPROVAL_TASK_ID) in edges
    assert (g.RISK_APPROVAL_TASK_ID, g.PROVISION_TASK_ID) in edges
    assert (g.PREFLIGHT_CHECKS_TASK_ID, g.PROVISION_TASK_ID) not in edges
    pos = {t: i for i, t in enumerate(graph.topological_order())}
    assert pos[g.RISK_APPROVAL_TASK_ID] < pos[g.PROVISION_TASK_ID]


def test_risk_gate_comes_before_the_budget_gate_when_both_apply():
    graph = _graph(_spec(reasons=["production"], cost=50_000), budget_threshold_usd=20_000)
    assert graph.risk_gate and graph.budget_gate
    assert graph.group_edges[:3] == ((g.PREFLIGHT, g.RISK), (g.RISK, g.BUDGET),
                                     (g.BUDGET, g.PROVISION))
    edges = graph.task_edges()
    assert (g.RISK_APPROVAL_TASK_ID, g.BUDGET_APPROVAL_TASK_ID) in edges
    assert (g.BUDGET_APPROVAL_TASK_ID, g.PROVISION_TASK_ID) in edges


def test_live_servers_get_a_risk_gate_before_the_canary():
    graph = _graph(_spec(live=["srv-web-01", "srv-db-02"]))
    assert graph.live_gate and not graph.risk_gate
    node = graph.by_id[g.LIVE_CUTOVER_APPROVAL_TASK_ID]
    assert node.kind is g.NodeKind.APPROVAL and node.group == g.CUTOVER
    assert "srv-web-01" in node.body and "srv-db-02" in node.body
    edges = set(graph.edges)
    assert (g.CUTOVER_APPROVAL_TASK_ID, g.LIVE_CUTOVER_APPROVAL_TASK_ID) in edges
    assert (g.LIVE_CUTOVER_APPROVAL_TASK_ID, g.CUTOVER_SHIFT_TASK_ID) in edges
    assert (g.CUTOVER_APPROVAL_TASK_ID, g.CUTOVER_SHIFT_TASK_ID) not in edges
    # the cutover group still starts at the cutover approval and ends at the canary
    assert graph.roots(g.CUTOVER) == [g.CUTOVER_APPROVAL_TASK_ID]
    assert graph.leaves(g.CUTOVER) == [g.CUTOVER_SHIFT_TASK_ID]
    graph.topological_order()  # no cycle


def test_rendered_dag_has_the_gates_as_approval_operators():
    from migrationbox.orchestration.wave_dag import build_wave_dag

    spec = _spec(reasons=["production database"], live=["srv-web-01"])
    dag = build_wave_dag(spec, spec.waves[0], g.BuildSettings())
    risk = dag.get_task(g.RISK_APPROVAL_TASK_ID)
    live = dag.get_task(g.LIVE_CUTOVER_APPROVAL_TASK_ID)
    for task in (risk, live):
        assert type(task).__name__ == "MigrationApprovalOperator"
    assert risk.gate == "plan_risks" and "production database" in risk.body
    assert live.gate == "live_cutover" and "srv-web-01" in live.body
    assert risk.upstream_task_ids == {g.PREFLIGHT_CHECKS_TASK_ID}
    assert dag.get_task(g.PROVISION_TASK_ID).upstream_task_ids == {g.RISK_APPROVAL_TASK_ID}
    assert live.upstream_task_ids == {g.CUTOVER_APPROVAL_TASK_ID}
    assert dag.get_task(g.CUTOVER_SHIFT_TASK_ID).upstream_task_ids == {
        g.LIVE_CUTOVER_APPROVAL_TASK_ID}
    assert "production database" in dag.doc_md and "srv-web-01" in dag.doc_md

    plain_spec = _spec()
    plain = build_wave_dag(plain_spec, plain_spec.waves[0], g.BuildSettings())
    assert g.RISK_APPROVAL_TASK_ID not in plain.task_dict
    assert g.LIVE_CUTOVER_APPROVAL_TASK_ID not in plain.task_dict
    assert plain.get_task(g.CUTOVER_SHIFT_TASK_ID).upstream_task_ids == {
        g.CUTOVER_APPROVAL_TASK_ID}


def test_the_planner_marks_tagged_servers_live_and_their_wave_gets_the_gate():
    from migrationbox.planning.builder import LIVE_TAG, build_plan
    from migrationbox.planning.export import plan_spec
    from migrationbox.store.testing import tiny_estate

    estate = tiny_estate("livetags")
    key, value = LIVE_TAG
    tagged = estate.model_copy(update={"servers": [
        s.model_copy(update={"tags": {**s.tags, key: value}}) if s.server_id == "web-01"
        else s for s in estate.servers]})
    plan = build_plan(tagged)
    assert {s.server_id for s in plan.servers if s.live} == {"web-01"}
    spec = plan_spec(plan)
    live_waves = [w for w in spec.waves if w.live_servers]
    assert [w.live_servers for w in live_waves] == [["web-01"]]
    for wave in spec.waves:
        graph = g.build_wave_graph(spec, wave)
        assert graph.live_gate == (wave in live_waves)
        assert (g.LIVE_CUTOVER_APPROVAL_TASK_ID in graph.by_id) == (wave in live_waves)
    # an untagged estate plans nothing live
    assert not any(s.live for s in build_plan(estate).servers)
