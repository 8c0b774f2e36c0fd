"""The wave DAG as a pure graph: plan spec + wave → nodes and edges, no Airflow import.

The middle step of the cosmos-style pipeline: typed plan spec (``spec.py``) → this
graph → one renderer to Airflow objects (``wave_dag.py``). Everything that decides the
*shape* of a wave DAG (which tasks, in which group, what each one runs, trigger rules,
pools, retries, the budget gate) is decided here, where a test can read it without
Airflow; the renderer only translates.

Task ids are module constants shared by the builder and the task callables (the
rollback branch returns one of them); phase code never names a task id.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from itertools import pairwise

from migrationbox.orchestration.spec import PlanSpec, WaveSpec
from migrationbox.settings import ANY_APPROVER

# -- task groups, in run order ---------------------------------------------------------
PREFLIGHT = "preflight"
RISK = "risk"
BUDGET = "budget"
PROVISION = "provision"
REPLICATE = "replicate"
CONFIGURE = "configure"
SMOKE_TEST = "smoke_test"
CUTOVER = "cutover"
VALIDATE = "validate"
ROLLBACK = "rollback"

PHASE_GROUPS = (PREFLIGHT, PROVISION, REPLICATE, CONFIGURE, SMOKE_TEST, CUTOVER, VALIDATE)

# -- task ids (group.task) -------------------------------------------------------------
WAIT_FOR_PREVIOUS_WAVE_TASK_ID = "preflight.wait_for_previous_wave"
PREFLIGHT_CHECKS_TASK_ID = "preflight.checks"
RISK_APPROVAL_TASK_ID = "risk.approve_plan_risks"
BUDGET_APPROVAL_TASK_ID = "budget.approve_budget"
PROVISION_TASK_ID = "provision.infrastructure"
INSTANCES_RUNNING_TASK_ID = "provision.instances_running"
REPLICATION_ROUNDS_TASK_ID = "replicate.sync_rounds"
REPLICATION_CONVERGED_TASK_ID = "replicate.replication_converged"
CONFIGURE_TASK_ID = "configure.rewrite_config"
SMOKE_TESTS_TASK_ID = "smoke_test.smoke_tests_green"
CUTOVER_APPROVAL_TASK_ID = "cutover.approve_cutover"
LIVE_CUTOVER_APPROVAL_TASK_ID = "cutover.approve_live_cutover"
CUTOVER_SHIFT_TASK_ID = "cutover.canary_shift"
VERIFY_DATA_TASK_ID = "validate.verify_data"
DECOMMISSION_APPROVAL_TASK_ID = "validate.approve_decommission"
DECOMMISSION_TASK_ID = "validate.decommission_sources"
ROLLBACK_CHOOSE_TASK_ID = "rollback.choose_path"
ROLLBACK_RESTORE_TASK_ID = "rollback.restore_dns"
ROLLBACK_APPROVE_TASK_ID = "rollback.approve_rollback"
ROLLBACK_RESTORE_APPROVED_TASK_ID = "rollback.restore_dns_after_approval"
KEEP_SOURCE_TASK_ID = "rollback.keep_source_authoritative"
TEARDOWN_TASK_ID = "rollback.teardown_wave"

# -- pools ------------------------------------------------------------------------------
PROVISION_POOL = "migrationbox_provision"
REPLICATION_POOL = "migrationbox_replication"
#: Tasks that mostly call the cloud's APIs (describe/list calls, Route 53 changes, the
#: teardown's deletes): bounded across every wave and estate so that many waves at once
#: stay under the account's API rate limits (botocore's adaptive retries absorb the
#: rest: ``cloud.aws_session``). Provision has its own pool.
CLOUD_API_POOL = "migrationbox_cloud_api"

# -- queues -----------------------------------------------------------------------------
#: The Celery queue of the tasks that read source disks or write target disks: the
#: replication rounds and their sensor (target manifests), configure (target config
#: files), the data verification and decommission (source and target disks), and a live
#: cutover (freezes sources, copies the last blocks). Under the CeleryExecutor only the
#: replication workers serve it (their own concurrency, on the hosts where the disks
#: are mounted: ``platform.production``); the LocalExecutor ignores queues.
REPLICATION_QUEUE = "replication"

DEFAULT_BUDGET_THRESHOLD_USD = 20_000.0


class NodeKind(StrEnum):
    """What a node runs; the renderer maps each kind to one operator class."""

    PHASE = "phase"  # tasks.run_phase(phase_name=target)
    SENSOR = "sensor"  # tasks.gate(check=target), rescheduling
    APPROVAL = "approval"  # a human gate (target = gate name)
    BRANCH = "branch"  # a tasks.<target> callable that returns the task id to follow
    ROUNDS = "deferrable_rounds"  # replication rounds, waits deferred to the triggerer
    STEP = "step"  # a plain tasks.<target> callable


class TriggerRule(StrEnum):
    """The Airflow trigger rules the wave DAG uses (same strings as Airflow's)."""

    ALL_SUCCESS = "all_success"
    ONE_FAILED = "one_failed"
    NONE_FAILED_MIN_ONE_SUCCESS = "none_failed_min_one_success"


@dataclass(frozen=True)
class BuildSettings:
    """Knobs that shape the DAGs; read once per parse from the site's settings."""

    owner: str = "migration-engineering"
    retries: int = 2
    retry_delay: timedelta = timedelta(seconds=20)
    budget_threshold_usd: float = DEFAULT_BUDGET_THRESHOLD_USD
    sensor_poke_seconds: float = 10.0
    sensor_timeout: timedelta = timedelta(hours=6)
    smoke_timeout: timedelta = timedelta(minutes=15)
    approval_timeout: timedelta | None = None
    approvers: tuple[str, ...] = ("admin",)

    @classmethod
    def from_settings(cls) -> BuildSettings:
        """The site's settings (``migrationbox.settings``: environment, then the
        ``[migrationbox]`` section); never Airflow Variables, since this runs at parse time."""
        from migrationbox import settings

        return cls(
            budget_threshold_usd=settings.get("budget_threshold_usd", variables=False),
            sensor_poke_seconds=settings.get("sensor_poke_seconds", variables=False),
            retries=settings.get("task_retries", variables=False),
            approvers=tuple(settings.get("approvers", variables=False)) or ("admin",),
        )

    def assigned_users(self) -> list[dict[str, str]]:
        """The approval gates' ``assigned_users``. None for ``*``: then any user the auth
        manager lets answer the DAG's gates may (FAB's per-estate roles; FAB user ids are
        numbers, not the names a site would list). Else the listed ids, which Airflow
        compares with the user's id (the name under the SimpleAuthManager)."""
        if ANY_APPROVER in self.approvers:
            return []
        return [{"id": a, "name": a} for a in self.approvers]


@dataclass(frozen=True)
class Group:
    name: str
    tooltip: str


@dataclass(frozen=True)
class Node:
    """One task. ``target`` is the phase, check, gate or callable name, by ``kind``."""

    task_id: str
    kind: NodeKind
    target: str
    trigger_rule: TriggerRule = TriggerRule.ALL_SUCCESS
    pool: str | None = None
    queue: str | None = None  # None: Airflow's [operators] default_queue
    retries: int | None = None  # None: the DAG's default retries
    timeout: timedelta | None = None  # sensors: None = the settings' sensor timeout
    subject: str = ""  # approvals: what the approver is asked
    body: str = ""

    @property
    def group(self) -> str:
        return self.task_id.split(".", 1)[0]

    @property
    def name(self) -> str:
        return self.task_id.split(".", 1)[1]


@dataclass(frozen=True)
class WaveGraph:
    """Nodes, task-to-task edges and group-to-group edges of one wave DAG.

    Group edges mean what ``group_a >> group_b`` means in Airflow: every leaf of ``a``
    (a task with nothing downstream inside ``a``) before every root of ``b``.
    """

    estate: str
    wave: int
    plan_version: int
    groups: tuple[Group, ...]
    nodes: tuple[Node, ...]
    edges: tuple[tuple[str, str], ...]
    group_edges: tuple[tuple[str, str], ...]
    budget_gate: bool = False
    risk_gate: bool = False
    live_gate: bool = False
    by_id: dict[str, Node] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_id", {n.task_id: n for n in self.nodes})
        names = {g.name for g in self.groups}
        for node in self.nodes:
            if node.group not in names:
                raise ValueError(f"node {node.task_id}: no group {node.group!r}")
        for up, down in self.edges:
            if up not in self.by_id or down not in self.by_id:
                raise ValueError(f"edge {up} >> {down} names a task that is not in the graph")

    def group_nodes(self, group: str) -> list[Node]:
        return [n for n in self.nodes if n.group == group]

    def _inner(self, group: str) -> list[tuple[str, str]]:
        return [(u, d) for u, d in self.edges if u.startswith(group + ".")
                and d.startswith(group + ".")]

    def roots(self, group: str) -> list[str]:
        inner_down = {d for _, d in self._inner(group)}
        return [n.task_id for n in self.group_nodes(group) if n.task_id not in inner_down]

    def leaves(self, group: str) -> list[str]:
        inner_up = {u for u, _ in self._inner(group)}
        return [n.task_id for n in self.group_nodes(group) if n.task_id not in inner_up]

    def task_edges(self) -> set[tuple[str, str]]:
        """Every task-level dependency, group edges expanded (what Airflow will hold)."""
        out = set(self.edges)
        for a, b in self.group_edges:
            out.update((leaf, root) for leaf in self.leaves(a) for root in self.roots(b))
        return out

    def topological_order(self) -> list[str]:
        """Task ids in an order that respects every dependency (raises on a cycle)."""
        edges = self.task_edges()
        indegree = {n.task_id: 0 for n in self.nodes}
        for _, d in edges:
            indegree[d] += 1
        ready = [t for t, n in indegree.items() if n == 0]
        order: list[str] = []
        while ready:
            t = ready.pop(0)
            order.append(t)
            for u, d in sorted(edges):
                if u == t:
                    indegree[d] -= 1
                    if indegree[d] == 0:
                        ready.append(d)
        if len(order) != len(self.nodes):
            raise ValueError(f"wave graph {self.estate}/{self.wave} has a cycle")
        return order


def needs_budget_gate(wave: WaveSpec, settings: BuildSettings) -> bool:
    return wave.predicted_monthly_usd > settings.budget_threshold_usd


def needs_risk_gate(wave: WaveSpec) -> bool:
    """The planner's approval reasons gate the wave they name; no reasons, no gate."""
    return bool(wave.approval_reasons)


def needs_live_gate(wave: WaveSpec) -> bool:
    """A live cutover freezes running sources: a person accepts that risk first."""
    return bool(wave.live_servers)


def _gate(task_id: str, kind: NodeKind, target: str, **kw) -> Node:
    """A sensor or an approval: waiting is its job, so it never retries."""
    return Node(task_id, kind, target, retries=0, **kw)


def build_wave_graph(
    spec: PlanSpec, wave: WaveSpec, settings: BuildSettings | None = None
) -> WaveGraph:
    """The graph of one wave: seven phase groups, the optional risk and budget gates
    (before provision), the live-cutover gate (before the canary), rollback.

    Before 100 % on the target, going back is automatic; after it, the target may
    already hold new writes, so a person decides (the plan's rule). A failed
    provisioning deletes exactly what this wave created (by its tags).
    """
    settings = settings or BuildSettings()
    budget_gate = needs_budget_gate(wave, settings)
    risk_gate, live_gate = needs_risk_gate(wave), needs_live_gate(wave)
    e, n = spec.estate, wave.number
    groups = [
        Group(PREFLIGHT, "credentials, quotas, CIDRs, backups, residency"),
        Group(PROVISION, "network, security groups, instances, LB, DNS"),
        Group(REPLICATE, "block-level incremental sync with SHA-256"),
        Group(CONFIGURE, "connection strings, secrets"),
        Group(SMOKE_TEST, "health, SELECT 1, DNS, LB targets"),
        Group(CUTOVER, "weighted DNS 5→25→50→100% with health checks"),
        Group(VALIDATE, "checksums, row counts, cost, decommission"),
        Group(ROLLBACK, "runs only when cutover or validation fails"),
    ]
    nodes = [
        _gate(WAIT_FOR_PREVIOUS_WAVE_TASK_ID, NodeKind.SENSOR, "previous_wave_completed"),
        Node(PREFLIGHT_CHECKS_TASK_ID, NodeKind.PHASE, "preflight", pool=CLOUD_API_POOL),
        Node(PROVISION_TASK_ID, NodeKind.PHASE, "provision", pool=PROVISION_POOL),
        _gate(INSTANCES_RUNNING_TASK_ID, NodeKind.SENSOR, "instances_running",
              pool=CLOUD_API_POOL),
        Node(REPLICATION_ROUNDS_TASK_ID, NodeKind.ROUNDS, "replicate", pool=REPLICATION_POOL,
             queue=REPLICATION_QUEUE),
        _gate(REPLICATION_CONVERGED_TASK_ID, NodeKind.SENSOR, "replication_converged",
              queue=REPLICATION_QUEUE),
        Node(CONFIGURE_TASK_ID, NodeKind.PHASE, "configure", queue=REPLICATION_QUEUE),
        _gate(SMOKE_TESTS_TASK_ID, NodeKind.SENSOR, "smoke_tests_green",
             timeout=settings.smoke_timeout, pool=CLOUD_API_POOL),
        _gate(CUTOVER_APPROVAL_TASK_ID, NodeKind.APPROVAL, "cutover",
             subject=f"Cut over {e} wave {n} ({wave.name})?",
             body=(f"{wave.server_count} servers replicated, configured and smoke-tested. "
                   "Approve to move traffic to the cloud in weighted steps with automatic "
                   "rollback on failed health checks.")),
        Node(CUTOVER_SHIFT_TASK_ID, NodeKind.PHASE, "cutover", retries=0,
             pool=CLOUD_API_POOL, queue=REPLICATION_QUEUE if live_gate else None),
        Node(VERIFY_DATA_TASK_ID, NodeKind.PHASE, "validate", retries=0,
             queue=REPLICATION_QUEUE),
        _gate(DECOMMISSION_APPROVAL_TASK_ID, NodeKind.APPROVAL, "decommission",
             subject=f"Decommission the sources of {e} wave {n}?",
             body=("Data verified on the target. Approve to mark the source servers "
                   "decommissioned.")),
        Node(DECOMMISSION_TASK_ID, NodeKind.PHASE, "decommission", queue=REPLICATION_QUEUE),
        Node(ROLLBACK_CHOOSE_TASK_ID, NodeKind.BRANCH, "choose_rollback_path",
             trigger_rule=TriggerRule.ONE_FAILED, retries=0),
        Node(ROLLBACK_RESTORE_TASK_ID, NodeKind.PHASE, "cutover_rollback", pool=CLOUD_API_POOL),
        _gate(ROLLBACK_APPROVE_TASK_ID, NodeKind.APPROVAL, "rollback",
             subject=f"Roll {e} wave {n} back to the source?",
             body=("All traffic is already on the target and validation failed. "
                   "Approve to move 100% of traffic back to the source.")),
        Node(ROLLBACK_RESTORE_APPROVED_TASK_ID, NodeKind.PHASE, "cutover_rollback_approved",
             pool=CLOUD_API_POOL),
        Node(KEEP_SOURCE_TASK_ID, NodeKind.STEP, "keep_source_authoritative",
             trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS),
        Node(TEARDOWN_TASK_ID, NodeKind.PHASE, "teardown", trigger_rule=TriggerRule.ONE_FAILED,
             pool=CLOUD_API_POOL),
    ]
    edges = [
        (WAIT_FOR_PREVIOUS_WAVE_TASK_ID, PREFLIGHT_CHECKS_TASK_ID),
        (PROVISION_TASK_ID, INSTANCES_RUNNING_TASK_ID),
        (REPLICATION_ROUNDS_TASK_ID, REPLICATION_CONVERGED_TASK_ID),
        *([(CUTOVER_APPROVAL_TASK_ID, LIVE_CUTOVER_APPROVAL_TASK_ID),
           (LIVE_CUTOVER_APPROVAL_TASK_ID, CUTOVER_SHIFT_TASK_ID)] if live_gate
          else [(CUTOVER_APPROVAL_TASK_ID, CUTOVER_SHIFT_TASK_ID)]),
        (VERIFY_DATA_TASK_ID, DECOMMISSION_APPROVAL_TASK_ID),
        (DECOMMISSION_APPROVAL_TASK_ID, DECOMMISSION_TASK_ID),
        (ROLLBACK_CHOOSE_TASK_ID, ROLLBACK_RESTORE_TASK_ID),
        (ROLLBACK_CHOOSE_TASK_ID, ROLLBACK_APPROVE_TASK_ID),
        (ROLLBACK_APPROVE_TASK_ID, ROLLBACK_RESTORE_APPROVED_TASK_ID),
        (ROLLBACK_RESTORE_TASK_ID, KEEP_SOURCE_TASK_ID),
        (ROLLBACK_RESTORE_APPROVED_TASK_ID, KEEP_SOURCE_TASK_ID),
        # the rollback branch runs when cutover or validation fails
        (CUTOVER_SHIFT_TASK_ID, ROLLBACK_CHOOSE_TASK_ID),
        (VERIFY_DATA_TASK_ID, ROLLBACK_CHOOSE_TASK_ID),
        # teardown runs when provisioning fails
        (PROVISION_TASK_ID, TEARDOWN_TASK_ID),
        (INSTANCES_RUNNING_TASK_ID, TEARDOWN_TASK_ID),
    ]
    chain = list(PHASE_GROUPS)
    if live_gate:
        live = ", ".join(wave.live_servers)
        nodes.append(_gate(
            LIVE_CUTOVER_APPROVAL_TASK_ID, NodeKind.APPROVAL, "live_cutover",
            subject=f"Live cutover of {e} wave {n}: freeze {len(wave.live_servers)} "
                    "running sources?",
            body=(f"Live servers: {live}. Approve to freeze them, copy the last changed "
                  "blocks (changed-block tracking) and switch to the target; the freeze "
                  "until the target serves is measured and recorded per server."),
        ))
    if budget_gate:
        groups.append(Group(BUDGET, "predicted cost above the budget threshold"))
        nodes.append(_gate(
            BUDGET_APPROVAL_TASK_ID, NodeKind.APPROVAL, "budget",
            subject=f"Budget: {e} wave {n} predicts ${wave.predicted_monthly_usd:,.0f}/month",
            body=(f"Above the threshold of ${settings.budget_threshold_usd:,.0f}/month. "
                  "Approve to provision."),
        ))
        chain.insert(1, BUDGET)
    if risk_gate:
        groups.append(Group(RISK, "the planner's approval reasons for this wave"))
        nodes.append(_gate(
            RISK_APPROVAL_TASK_ID, NodeKind.APPROVAL, "plan_risks",
            subject=f"Risks: {e} wave {n} ({wave.name}) needs an approval",
            body=("The plan asks for an approval before provisioning because: "
                  + "; ".join(wave.approval_reasons) + ". Approve to provision."),
        ))
        chain.insert(1, RISK)
    return WaveGraph(
        estate=e,
        wave=n,
        plan_version=spec.version,
        groups=tuple(groups),
        nodes=tuple(nodes),
        edges=tuple(edges),
        group_edges=tuple(pairwise(chain)),
        budget_gate=budget_gate,
        risk_gate=risk_gate,
        live_gate=live_gate,
    )
