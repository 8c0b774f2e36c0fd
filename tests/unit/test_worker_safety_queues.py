"""The wave DAG's queues (issue 12 item 2): tasks that read source disks or write target
disks go to the ``replication`` queue, which only the production profile's replication
workers serve; everything else stays on the default queue."""

from __future__ import annotations

import pytest

from migrationbox.orchestration import graph as g
from migrationbox.orchestration.spec import PlanSpec

DISK_TASKS = {g.REPLICATION_ROUNDS_TASK_ID, g.REPLICATION_CONVERGED_TASK_ID,
              g.CONFIGURE_TASK_ID, g.VERIFY_DATA_TASK_ID, g.DECOMMISSION_TASK_ID}


def _spec(live: list[str] | None = None) -> PlanSpec:
    return PlanSpec.model_validate({
        "schema_version": 1, "estate": "lab", "version": 3,
        "created_at": "2026-11-25T00:00:00+00:00",
        "waves": [{
            "number": 1, "name": "Wave 1", "server_count": 3, "environment": "production",
            "needs_approval": False, "approval_reasons": [], "predicted_monthly_usd": 10.0,
            "depends_on_waves": [], "estimated_hours": 4.0, "live_servers": live or [],
        }],
    })


@pytest.mark.parametrize("live", [[], ["db-01"]])
def test_disk_tasks_and_only_they_go_to_the_replication_queue(live: list[str]):
    spec = _spec(live)
    graph = g.build_wave_graph(spec, spec.waves[0])
    queued = {n.task_id for n in graph.nodes if n.queue == g.REPLICATION_QUEUE}
    # a live cutover freezes the sources and copies their last blocks: a disk task too
    expected = DISK_TASKS | ({g.CUTOVER_SHIFT_TASK_ID} if live else set())
    assert queued == expected
    assert all(n.queue in (None, g.REPLICATION_QUEUE) for n in graph.nodes)
    assert graph.by_id[g.REPLICATION_ROUNDS_TASK_ID].pool == g.REPLICATION_POOL


def test_the_renderer_sets_the_queue_on_the_airflow_tasks():
    from migrationbox.orchestration.wave_dag import build_wave_dag

    spec = _spec(["db-01"])
    dag = build_wave_dag(spec, spec.waves[0])
    queues = {t.task_id: t.queue for t in dag.tasks}
    for task_id in DISK_TASKS | {g.CUTOVER_SHIFT_TASK_ID}:
        assert queues[task_id] == "replication", task_id
    # the rest: Airflow's default queue ([operators] default_queue, "default")
    assert queues[g.PROVISION_TASK_ID] == queues[g.SMOKE_TESTS_TASK_ID] != "replication"
    assert type(dag.get_task(g.REPLICATION_ROUNDS_TASK_ID)).__name__ == \
        "ReplicationRoundsOperator"
