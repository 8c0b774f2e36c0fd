"""The bot's twenty commands, acting on the real platform.

One function per command: it takes the parsed :class:`~migrationbox.teams.models.Intent`
and an :class:`ActionContext` (the store, an Airflow REST client, the conversation, the
user) and returns a :class:`~migrationbox.teams.contracts.Reply`. A migration id is an
estate in the MigrationBox store with its latest plan; its waves are the Airflow DAGs
``migrate__<estate>__wave_NN`` (``orchestration.spec.dag_id_for``).

What each command does on the platform:

* ``status``: the store (plan, waves, events) and Airflow (the wave's run and its task
  instances) for one migration; every migration with a queued or running wave without an
  id.
* ``start``: triggers the estate's next wave by REST with a run conf (a run id derived
  from the confirmation, so a double "yes" cannot start two runs); only on a cloud with
  an execution adapter (``cloud.ADAPTERS``) and in the plan's region, otherwise it says
  what can be done instead.
* ``pause`` / ``resume``: pause / unpause every wave DAG of the estate.
* ``cancel``: marks the running wave run failed (``PATCH dagRuns/{run}`` state=failed).
* ``rollback``: the wave DAG's own rollback group runs when the cutover or the data
  validation fails (trigger rule ``one_failed``); so a rollback is asked for by marking
  that task failed and clearing the rollback group, which then takes the project's path:
  automatic back to the source before 100 %, through the ``rollback`` approval gate after.
* ``approve`` / ``reject`` / ``request-approval``: the approval workflow
  (``teams.approvals``), which answers the HITL gate by REST and records it.
* ``report``, ``metrics``, ``costs``: cards built from the store (and the healer's
  incidents).
* ``search``, ``runbook``, ``lessons-learned``: from what exists today (incidents and their
  root cause, migration events, the healer's decision matrix); knowledge search comes with
  the next issue and replaces these answers.
* ``alert-config``, ``mute``, ``unmute``: the conversation's state (``teams.state``).

An action that cannot be done raises :class:`Refusal` with the answer to give (what to do
instead); the dispatcher logs it as ``refused``. Platform errors (Airflow, the store) are
left to the dispatcher, which answers them in one line and logs the details.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import inspect as sa_inspect
from sqlalchemy import select

from migrationbox.errors import MigrationBoxError
from migrationbox.orchestration.graph import PHASE_GROUPS
from migrationbox.orchestration.spec import dag_id_for
from migrationbox.planning.models import PlanDocument
from migrationbox.platform.rest import AirflowApiError, AirflowClient
from migrationbox.store import repository
from migrationbox.store.db import engine, session_scope
from migrationbox.store.models import (
    ApprovalRow,
    EstateRow,
    MigrationEventRow,
    PhaseRunRow,
    PlanRow,
    WaveRow,
)
from migrationbox.store.records import WaveRecord
from migrationbox.teams import cards, state
from migrationbox.teams.contracts import Inbound, Reply, Sender
from migrationbox.teams.models import Command, Environment, Intent

#: Run states of a wave run still in progress.
ACTIVE_RUN_STATES = frozenset({"queued", "running"})
#: Wave statuses after which a wave is not started again by ``start``.
DONE_WAVE_STATUSES = frozenset({"completed", "skipped"})
#: How long ``mute`` lasts when the text names no duration.
DEFAULT_MUTE = timedelta(hours=1)
MAX_MUTE = timedelta(days=30)
#: Notification kinds a conversation can choose (the notifier's kinds).
ALERT_KINDS = ("wave_started", "phase_failed", "rollback", "wave_done", "incident_opened",
               "incident_healed", "approval_waiting")
NEXT_ISSUE_NOTE = ("Knowledge search (runbooks, documents, past migrations) comes with the "
                   "next release; this answer is built from what MigrationBox records today.")
CANCELLABLE_NOTE_MAX = 1000


class Refusal(MigrationBoxError):
    """The command cannot be done as asked; ``message`` says why and what to do instead."""

    def __init__(self, message: str, card: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.card = card


@dataclass
class ActionContext:
    """What an action may use. ``request_id`` is unique per command (the confirmation id
    for a confirmed command): it names the DAG run ``start`` triggers."""

    store_url: str
    client_factory: Callable[[], AirflowClient]
    inbound: Inbound
    conversation: state.ConversationState | None = None
    sender: Sender | None = None
    request_id: str = ""
    now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    _client: AirflowClient | None = field(default=None, repr=False)

    def client(self) -> AirflowClient:
        if self._client is None:
            self._client = self.client_factory()
        return self._client

    def close(self) -> None:
        """Close the Airflow client this command opened (the factory makes one each)."""
        client, self._client = self._client, None
        if client is not None:
            client.close()

    @property
    def user_label(self) -> str:
        return self.inbound.user_name or self.inbound.user_aad_id or self.inbound.user_id


# ---------------------------------------------------------------------------- helpers


@dataclass(frozen=True)
class Migration:
    """An estate and its latest plan, with the waves' stored statuses."""

    estate: str
    plan: PlanDocument
    waves: list[WaveRecord]

    @property
    def cloud(self) -> str:
        return self.plan.settings.cloud

    @property
    def region(self) -> str:
        return self.plan.settings.region

    def dag_ids(self) -> list[str]:
        return [dag_id_for(self.estate, w.number) for w in self.plan.waves]


def known_migrations(store_url: str) -> list[str]:
    """Estates that have a plan: what a migration id may name."""
    with session_scope(store_url, read_only=True) as session:
        return [e.name for e in repository.list_estates(session) if e.plan_count]


def load_migration(store_url: str, estate: str) -> Migration:
    with session_scope(store_url, read_only=True) as session:
        plan = repository.get_plan(session, estate)
        waves = repository.waves(session, estate)
    if plan is None:
        known = known_migrations(store_url)
        raise Refusal(f"No migration named '{estate}'. "
                      + (f"Known migrations: {', '.join(known)}." if known
                         else "No estate has been planned yet (`migrationbox plan`)."))
    return Migration(estate, plan, waves)


def _estate_of(intent: Intent, ctx: ActionContext, *, required: bool = True) -> str | None:
    estate = intent.slots.migration_id or (ctx.conversation.estate if ctx.conversation
                                           else None)
    if estate is None and required:
        raise Refusal("Which migration? Name it, e.g. `status <migration id>`.")
    return estate


@dataclass(frozen=True)
class WaveRun:
    wave: int
    dag_id: str
    run: dict[str, Any]

    @property
    def run_id(self) -> str:
        return str(self.run.get("dag_run_id") or "")

    @property
    def state(self) -> str:
        return str(self.run.get("state") or "")


def _run_time(run: dict[str, Any]) -> str:
    return str(run.get("start_date") or run.get("queued_at") or run.get("run_after") or "")


def wave_runs(client: AirflowClient, migration: Migration) -> list[WaveRun]:
    """Every run of every wave DAG of the migration that Airflow knows (a DAG not parsed
    yet has none), oldest first."""
    runs: list[WaveRun] = []
    for wave in migration.plan.waves:
        dag_id = dag_id_for(migration.estate, wave.number)
        try:
            found = client.dag_runs(dag_id)
        except AirflowApiError as exc:
            if exc.status == 404:
                continue
            raise
        runs.extend(WaveRun(wave.number, dag_id, r) for r in found)
    return sorted(runs, key=lambda r: _run_time(r.run))


def active_run(client: AirflowClient, migration: Migration) -> WaveRun | None:
    active = [r for r in wave_runs(client, migration) if r.state in ACTIVE_RUN_STATES]
    return active[-1] if active else None


def mark_run_failed(client: AirflowClient, dag_id: str, run_id: str, note: str) -> dict[str, Any]:
    """Mark the run failed (``AirflowClient.mark_run``: ``PATCH dagRuns/{run}``); running
    tasks are stopped, nothing else is scheduled. Called through the class so that any
    client with ``AirflowClient.request`` (the command tests' recording one) sends the
    same request."""
    return AirflowClient.mark_run(client, dag_id, run_id, "failed",
                                  note=note[:CANCELLABLE_NOTE_MAX])


def set_task_state(client: AirflowClient, dag_id: str, run_id: str, task_id: str,
                   new_state: str, note: str) -> Any:
    """Set one task instance's state (``AirflowClient.set_task_state``: ``PATCH
    taskInstances/{task_id}``, new_state success|failed|skipped), called through the
    class like ``mark_run_failed``."""
    return AirflowClient.set_task_state(client, dag_id, run_id, task_id, new_state,
                                        note=note[:CANCELLABLE_NOTE_MAX])


def _record_event(store_url: str, estate: str, message: str, *, wave: int | None = None,
                  run_id: str | None = None, data: dict[str, Any] | None = None) -> None:
    """What the bot did, in the estate's event log (reports and the UI read it)."""
    with session_scope(store_url) as session:
        repository.add_event(session, estate=estate, kind="teams_command", message=message,
                             wave=wave, run_id=run_id, data=data or {})


def _validated(card: dict[str, Any]) -> dict[str, Any]:
    cards.validate_card(card)
    return card


def _parse_time(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


# ---------------------------------------------------------------------------- status


def _phase_progress(tis: list[dict[str, Any]]) -> tuple[int, str, float]:
    """(phase index 1..7, phase name, percent of the wave's tasks done) from the run's
    task instances; the rollback group counts only when it ran."""
    done_states = {"success", "skipped"}
    groups: dict[str, list[str]] = {}
    for ti in tis:
        group = str(ti.get("task_id", "")).split(".", 1)[0]
        groups.setdefault(group, []).append(str(ti.get("state") or "none"))
    ordered = [g for g in PHASE_GROUPS if g in groups]
    main = [s for g, states in groups.items() if g != "rollback" for s in states]
    percent = 100.0 * sum(s in done_states for s in main) / len(main) if main else 0.0
    for index, group in enumerate(PHASE_GROUPS, start=1):
        states = groups.get(group)
        if states and not all(s in done_states for s in states):
            return index, group, percent
    if not ordered:
        return 0, "not started", 0.0
    return len(PHASE_GROUPS), PHASE_GROUPS[-1], percent


def _recent_events(store_url: str, estate: str, limit: int = 5) -> list[cards.ActivityItem]:
    with session_scope(store_url, read_only=True) as session:
        rows = session.scalars(
            select(MigrationEventRow)
            .join(EstateRow, EstateRow.id == MigrationEventRow.estate_id)
            .where(EstateRow.name == estate)
            .order_by(MigrationEventRow.id.desc()).limit(limit)).all()
        return [cards.ActivityItem(at=r.at, text=r.message[:200]) for r in reversed(rows)]


def _environment(migration: Migration, wave_number: int | None) -> tuple[str, int | None]:
    if wave_number is None:
        return (f"{len(migration.plan.waves)} waves",
                len(migration.plan.servers))
    wave = migration.plan.wave(wave_number)
    return (f"{wave.environment}, wave {wave.number}/{len(migration.plan.waves)}",
            len(wave.server_ids))


def status_view(ctx: ActionContext, migration: Migration) -> cards.StatusView:
    """One migration as the status card shows it: the active (else latest) wave run."""
    client = ctx.client()
    runs = wave_runs(client, migration)
    active = [r for r in runs if r.state in ACTIVE_RUN_STATES]
    current = active[-1] if active else (runs[-1] if runs else None)
    statuses = {w.number: w.status for w in migration.waves}
    completed = sum(1 for s in statuses.values() if s == "completed")
    activity = _recent_events(ctx.store_url, migration.estate)
    if current is None:
        env, servers = _environment(migration, None)
        return cards.StatusView(
            migration_id=migration.estate, environment=env, server_count=servers,
            cloud=migration.cloud, region=migration.region, phase_index=0,
            phase_total=len(PHASE_GROUPS), phase_name="not started",
            percent=0.0, state=f"planned ({completed}/{len(statuses)} waves completed)",
            activity=activity)
    tis = client.task_instances(current.dag_id, current.run_id)
    index, name, percent = _phase_progress(tis)
    wave = migration.plan.wave(current.wave)
    started = _parse_time(current.run.get("start_date"))
    now = ctx.now()
    elapsed = round((now - started).total_seconds() / 3600, 2) if started else None
    eta = (started + timedelta(hours=wave.estimated_hours)
           if started and current.state in ACTIVE_RUN_STATES else None)
    env, servers = _environment(migration, current.wave)
    waiting = [t["task_id"] for t in tis if t.get("state") == "awaiting_input"]
    state_text = f"wave {current.wave} {current.state}"
    if waiting:
        state_text += f", waiting for approval at {', '.join(waiting)}"
    return cards.StatusView(
        migration_id=migration.estate, environment=env, server_count=servers,
        cloud=migration.cloud, region=migration.region, phase_index=index,
        phase_total=len(PHASE_GROUPS), phase_name=name,
        percent=100.0 if current.state == "success" else percent, state=state_text,
        elapsed_hours=max(0.0, elapsed) if elapsed is not None else None,
        estimated_hours=wave.estimated_hours, estimated_completion=eta, activity=activity)


def _matches_filters(intent: Intent, migration: Migration) -> bool:
    slots = intent.slots
    if slots.cloud is not None and slots.cloud.value != migration.cloud:
        return False
    if slots.environment is not None:
        return any(_env_matches(slots.environment, w.environment)
                   for w in migration.plan.waves)
    return True


def status(intent: Intent, ctx: ActionContext) -> Reply:
    """One migration's card (the named one, or the conversation's when it belongs to
    one and no filter is given), else the list of migrations with a wave under way."""
    slots = intent.slots
    estate = slots.migration_id
    if estate is None and ctx.conversation is not None and ctx.conversation.estate \
            and slots.cloud is None and slots.environment is None:
        estate = ctx.conversation.estate
    if estate:
        migration = load_migration(ctx.store_url, estate)
        return Reply(card=_validated(cards.status_card(status_view(ctx, migration))))
    views = []
    for estate in known_migrations(ctx.store_url):
        migration = load_migration(ctx.store_url, estate)
        if not _matches_filters(intent, migration):
            continue
        if active_run(ctx.client(), migration) is None:
            continue
        views.append(status_view(ctx, migration))
    return Reply(card=_validated(cards.status_list_card(views)))


# ---------------------------------------------------------------------------- start


def _env_matches(asked: Environment, wave_env: str) -> bool:
    if wave_env == "mixed":
        return True
    if asked == Environment.PRODUCTION:
        return wave_env == "production"
    return wave_env != "production"


@dataclass(frozen=True)
class StartPlan:
    migration: Migration
    wave: int
    dag_id: str


def plan_start(intent: Intent, ctx: ActionContext) -> StartPlan:
    """What ``start`` would do, or a :class:`Refusal` saying what can be done instead.
    Run before asking for confirmation, so nobody confirms a command that cannot run."""
    from migrationbox.cloud import ADAPTERS

    slots = intent.slots
    cloud, region, env = slots.cloud, slots.region, slots.environment
    assert cloud is not None and region is not None and env is not None  # required slots
    if cloud.value not in ADAPTERS:
        raise Refusal(
            f"MigrationBox cannot run a migration on {cloud.value.upper()} yet: only "
            f"{', '.join(c.upper() for c in ADAPTERS)} has an execution adapter. What you "
            f"can do now: compare sizing and costs on {cloud.value.upper()} with "
            f"`migrationbox size <inventory> --cloud {cloud.value} --region "
            f"{cloud.value}={region}`, or start on AWS (`start {env.value} aws <region>`).")
    candidates = []
    bound = ctx.conversation.estate if ctx.conversation else None
    names = [bound] if bound else known_migrations(ctx.store_url)
    for name in names:
        migration = load_migration(ctx.store_url, name)
        if migration.cloud == cloud.value:
            candidates.append(migration)
    if not candidates:
        raise Refusal(f"No planned migration targets {cloud.value.upper()}"
                      + (f" in this conversation's migration '{bound}'" if bound else "")
                      + ". Plan one first: `migrationbox plan <inventory> --region "
                      f"{region}`.")
    in_region = [m for m in candidates if m.region == region]
    if not in_region:
        plans = ", ".join(f"{m.estate} ({m.cloud} {m.region})" for m in candidates)
        raise Refusal(f"No planned migration targets {cloud.value.upper()} {region}: "
                      f"{plans}. Start in the planned region, or re-plan for {region} with "
                      f"`migrationbox plan <inventory> --estate <id> --region {region}`.")
    if len(in_region) > 1:
        raise Refusal(f"Several migrations target {cloud.value.upper()} {region}: "
                      f"{', '.join(m.estate for m in in_region)}. Say the command in the "
                      "channel of the migration you mean.")
    migration = in_region[0]
    client = ctx.client()
    running = active_run(client, migration)
    if running is not None:
        raise Refusal(f"Wave {running.wave} of {migration.estate} is already "
                      f"{running.state} (run {running.run_id}); one wave runs at a time. "
                      f"See `status {migration.estate}`.")
    statuses = {w.number: w.status for w in migration.waves}
    pending = [w for w in migration.plan.waves
               if statuses.get(w.number, "pending") not in DONE_WAVE_STATUSES]
    if not pending:
        raise Refusal(f"Every wave of {migration.estate} is completed; nothing to start.")
    matching = [w for w in pending if _env_matches(env, w.environment)]
    if not matching:
        nxt = pending[0]
        say = "production" if nxt.environment == "production" else "staging"
        raise Refusal(f"The next wave of {migration.estate} is wave {nxt.number} "
                      f"({nxt.environment}, {len(nxt.server_ids)} servers), not "
                      f"{env.value}. Say `start {say} {cloud.value} {region}` to start it.")
    wave = matching[0]
    dag_id = dag_id_for(migration.estate, wave.number)
    if client.get_dag(dag_id) is None:
        raise Refusal(f"Airflow has not loaded {dag_id} yet (its plan spec is parsed "
                      "shortly after `migrationbox plan`); try again in a minute.")
    return StartPlan(migration, wave.number, dag_id)


def start(intent: Intent, ctx: ActionContext) -> Reply:
    plan = plan_start(intent, ctx)
    client = ctx.client()
    dag = client.get_dag(plan.dag_id) or {}
    if dag.get("is_paused"):
        client.unpause(plan.dag_id)
    conf: dict[str, Any] = {}
    run_id = f"teams__{ctx.request_id}" if ctx.request_id else None
    run = client.trigger(plan.dag_id, conf=conf, run_id=run_id,
                         note=f"started from Microsoft Teams by {ctx.user_label}")
    started_id = str(run.get("dag_run_id"))
    wave = plan.migration.plan.wave(plan.wave)
    _record_event(ctx.store_url, plan.migration.estate,
                  f"wave {plan.wave} started from Teams by {ctx.user_label}",
                  wave=plan.wave, run_id=started_id, data={"conf": conf})
    waits = (f" It waits for wave(s) {', '.join(map(str, wave.depends_on_waves))} to "
             "complete first." if wave.depends_on_waves else "")
    return Reply(text=(f"Started wave {plan.wave} of {plan.migration.estate} "
                       f"({wave.name}, {len(wave.server_ids)} servers, "
                       f"{plan.migration.cloud.upper()} {plan.migration.region}): DAG "
                       f"{plan.dag_id}, run {started_id}.{waits} Its approval gates will "
                       f"ask here. Follow it with `status {plan.migration.estate}`."))


# ---------------------------------------------------------------------------- pause/resume


def _set_paused(intent: Intent, ctx: ActionContext, paused: bool) -> Reply:
    estate = _estate_of(intent, ctx)
    assert estate is not None
    migration = load_migration(ctx.store_url, estate)
    client = ctx.client()
    changed = []
    for dag_id in migration.dag_ids():
        if client.get_dag(dag_id) is None:
            continue
        (client.pause if paused else client.unpause)(dag_id)
        changed.append(dag_id)
    if not changed:
        raise Refusal(f"Airflow has not loaded any wave DAG of {estate} yet; nothing to "
                      f"{'pause' if paused else 'resume'}.")
    verb = "paused" if paused else "resumed"
    _record_event(ctx.store_url, estate, f"wave DAGs {verb} from Teams by {ctx.user_label}",
                  data={"dag_ids": changed})
    if paused:
        return Reply(text=(f"Paused {estate} ({len(changed)} wave DAGs). No new task "
                           "starts; a task already running (a replication round, a cutover "
                           "step) finishes, and a gate keeps waiting. `resume "
                           f"{estate}` carries on where it stopped."))
    return Reply(text=f"Resumed {estate} ({len(changed)} wave DAGs): waiting tasks are "
                      "scheduled again.")


def pause(intent: Intent, ctx: ActionContext) -> Reply:
    return _set_paused(intent, ctx, True)


def resume(intent: Intent, ctx: ActionContext) -> Reply:
    return _set_paused(intent, ctx, False)


# ---------------------------------------------------------------------------- cancel/rollback


def _running(ctx: ActionContext, estate: str) -> tuple[Migration, WaveRun]:
    migration = load_migration(ctx.store_url, estate)
    run = active_run(ctx.client(), migration)
    if run is None:
        raise Refusal(f"No wave of {estate} is running; nothing to stop. "
                      f"`status {estate}` shows where it is.")
    return migration, run


def precheck_cancel(intent: Intent, ctx: ActionContext) -> None:
    estate = _estate_of(intent, ctx)
    assert estate is not None
    _running(ctx, estate)


def cancel(intent: Intent, ctx: ActionContext) -> Reply:
    estate = _estate_of(intent, ctx)
    assert estate is not None
    _migration, run = _running(ctx, estate)
    mark_run_failed(ctx.client(), run.dag_id, run.run_id,
                    f"cancelled from Microsoft Teams by {ctx.user_label}")
    _record_event(ctx.store_url, estate, f"wave {run.wave} run cancelled from Teams by "
                  f"{ctx.user_label}", wave=run.wave, run_id=run.run_id)
    return Reply(text=(f"Cancelled wave {run.wave} of {estate}: run {run.run_id} is marked "
                       "failed, its running tasks are stopped and nothing else starts. "
                       "Traffic weights and resources the wave created stay as they are "
                       f"(`status {estate}`); `rollback {estate}` is the way back to the "
                       "source if the cutover had begun."))


#: Task ids of the wave DAG the rollback hangs off (``orchestration.graph``).
_CUTOVER_TASK = "cutover.canary_shift"
_VERIFY_TASK = "validate.verify_data"
_ROLLBACK_CHOOSE = "rollback.choose_path"


@dataclass(frozen=True)
class RollbackPlan:
    migration: Migration
    run: WaveRun
    fail_task: str
    cutover_state: str


def plan_rollback(intent: Intent, ctx: ActionContext) -> RollbackPlan:
    """The run whose cutover to take back, and the task to fail so the wave's rollback
    group runs; a :class:`Refusal` when traffic never moved."""
    estate = _estate_of(intent, ctx)
    assert estate is not None
    migration = load_migration(ctx.store_url, estate)
    client = ctx.client()
    runs = wave_runs(client, migration)
    if not runs:
        raise Refusal(f"No wave of {estate} has run yet: nothing to roll back.")
    active = [r for r in runs if r.state in ACTIVE_RUN_STATES]
    run = active[-1] if active else runs[-1]
    states = {t["task_id"]: str(t.get("state") or "none")
              for t in client.task_instances(run.dag_id, run.run_id)}
    cutover = states.get(_CUTOVER_TASK, "none")
    if states.get(_ROLLBACK_CHOOSE) in ("running", "success", "queued"):
        raise Refusal(f"Wave {run.wave} of {estate} is already rolling back or rolled back "
                      f"(run {run.run_id}); `status {estate}` shows it.")
    if cutover in ("none", "scheduled", "queued", "upstream_failed", "skipped", "removed"):
        raise Refusal(f"Traffic of wave {run.wave} of {estate} never moved to the target "
                      f"(run {run.run_id}: cutover not started), so the source is still "
                      f"authoritative and there is nothing to roll back. To stop the run "
                      f"use `cancel {estate}`.")
    if cutover == "failed":
        raise Refusal(f"The cutover of wave {run.wave} of {estate} failed and its rollback "
                      f"group has run (run {run.run_id}); `status {estate}` shows it.")
    fail_task = _CUTOVER_TASK if cutover != "success" else _VERIFY_TASK
    return RollbackPlan(migration, run, fail_task, cutover)


def rollback(intent: Intent, ctx: ActionContext) -> Reply:
    plan = plan_rollback(intent, ctx)
    client = ctx.client()
    note = f"rollback asked from Microsoft Teams by {ctx.user_label}"
    set_task_state(client, plan.run.dag_id, plan.run.run_id, plan.fail_task, "failed", note)
    # the rollback group was skipped if the run had already passed it: run it again
    client.clear_task(plan.run.dag_id, plan.run.run_id, [_ROLLBACK_CHOOSE],
                      include_downstream=True)
    estate = plan.migration.estate
    _record_event(ctx.store_url, estate, f"wave {plan.run.wave} rollback asked from Teams "
                  f"by {ctx.user_label}", wave=plan.run.wave, run_id=plan.run.run_id,
                  data={"failed_task": plan.fail_task})
    after = ("traffic is already fully on the target, so the rollback waits at its "
             "approval gate ('rollback') before moving it back"
             if plan.cutover_state == "success" else
             "traffic goes back to 100% source automatically")
    return Reply(text=(f"Rolling back wave {plan.run.wave} of {estate} (run "
                       f"{plan.run.run_id}): {plan.fail_task} marked failed, so the wave's "
                       f"rollback runs; {after}. The source stays authoritative."))


# ---------------------------------------------------------------------------- approvals


def _approvals_module() -> Any:
    try:
        return importlib.import_module("migrationbox.teams.approvals")
    except ModuleNotFoundError as exc:
        if exc.name != "migrationbox.teams.approvals":
            raise
        raise Refusal("Answering approval gates from Teams is not installed on this "
                      "MigrationBox; answer the gate in the Airflow UI.") from None


def _gate_reply(answer: Any) -> Reply:
    reply = Reply(text=str(answer.message) or None,
                  card=_validated(answer.card) if answer.card else None)
    if not answer.ok:
        raise Refusal(str(answer.message), card=reply.card)
    return reply


def answer_gate(ctx: ActionContext, *, estate: str, gate: str, decision: str,
                reason: str | None, when: datetime | None = None) -> Reply:
    module = _approvals_module()
    load_migration(ctx.store_url, estate)
    answer = module.answer_gate(store_url=ctx.store_url, client=ctx.client(), estate=estate,
                                gate=gate, decision=decision, user=ctx.inbound,
                                reason=reason, when=when, sender=ctx.sender)
    return _gate_reply(answer)


def approve(intent: Intent, ctx: ActionContext) -> Reply:
    estate = _estate_of(intent, ctx)
    assert estate is not None and intent.slots.gate is not None
    return answer_gate(ctx, estate=estate, gate=intent.slots.gate, decision="approve",
                       reason=None)


def reject(intent: Intent, ctx: ActionContext) -> Reply:
    estate = _estate_of(intent, ctx)
    assert estate is not None and intent.slots.gate is not None
    return answer_gate(ctx, estate=estate, gate=intent.slots.gate, decision="reject",
                       reason=intent.slots.reason)


def request_approval_for(ctx: ActionContext, estate: str, gate: str) -> Reply:
    module = _approvals_module()
    load_migration(ctx.store_url, estate)
    answer = module.request_approval(store_url=ctx.store_url, client=ctx.client(),
                                     estate=estate, gate=gate, requested_by=ctx.inbound,
                                     sender=ctx.sender)
    return _gate_reply(answer)


def request_approval(intent: Intent, ctx: ActionContext) -> Reply:
    estate = _estate_of(intent, ctx)
    assert estate is not None and intent.slots.gate is not None
    return request_approval_for(ctx, estate, intent.slots.gate)


# ---------------------------------------------------------------------------- report


def _scope(intent: Intent, ctx: ActionContext) -> list[Migration]:
    """The migrations a report/metrics/costs command covers: the named one, else the
    conversation's, else every planned one (filtered by cloud/environment)."""
    estate = _estate_of(intent, ctx, required=False)
    names = [estate] if estate else known_migrations(ctx.store_url)
    found = [load_migration(ctx.store_url, n) for n in names]
    found = [m for m in found if _matches_filters(intent, m)]
    if not found:
        raise Refusal("No planned migration matches; `migrationbox plan` plans one.")
    return found


def _incident_rows(store_url: str, estates: list[str]) -> list[Any]:
    """The healer's incidents of these estates (none when the healer never ran here)."""
    eng = engine(store_url)
    if not sa_inspect(eng).has_table("healer_incidents"):
        return []
    from migrationbox.healer.store import IncidentStore

    rows = []
    for estate in estates:
        rows.extend(IncidentStore(eng).list(estate=estate, limit=500))
    return rows


def _text(text: str, **kw: Any) -> dict[str, Any]:
    return {"type": "TextBlock", "text": text, "wrap": True, **kw}


def _facts(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    return {"type": "FactSet", "facts": [{"title": t, "value": v} for t, v in pairs]}


def _simple_card(title: str, body: list[dict[str, Any]]) -> dict[str, Any]:
    return {"type": "AdaptiveCard", "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
            "version": cards.ADAPTIVE_CARD_VERSION,
            "body": [_text(title, weight="Bolder", size="Medium"), *body]}


def report(intent: Intent, ctx: ActionContext) -> Reply:
    """The period's figures from the store: a wave counts as completed (or rolled back)
    in the period when its status last changed in it; phases by their start, approvals
    by their answer, incidents by their detection."""
    period = intent.slots.period
    assert period is not None
    days = 7 if period.value == "weekly" else 30
    now = ctx.now()
    since = now - timedelta(days=days)
    migrations = _scope(intent, ctx)
    names = [m.estate for m in migrations]
    with session_scope(ctx.store_url, read_only=True) as session:
        estate_ids = dict(session.execute(select(EstateRow.name, EstateRow.id)
                                          .where(EstateRow.name.in_(names))).all())
        ids = list(estate_ids.values())
        done = session.execute(
            select(EstateRow.name, WaveRow.number, WaveRow.server_count)
            .join(PlanRow, PlanRow.id == WaveRow.plan_id)
            .join(EstateRow, EstateRow.id == PlanRow.estate_id)
            .where(PlanRow.estate_id.in_(ids), WaveRow.status == "completed",
                   WaveRow.updated_at >= since)).all()
        rolled = len(session.execute(
            select(WaveRow.id).join(PlanRow, PlanRow.id == WaveRow.plan_id)
            .where(PlanRow.estate_id.in_(ids), WaveRow.status == "rolled_back",
                   WaveRow.updated_at >= since)).all())
        failed_phases = session.execute(
            select(PhaseRunRow.phase, PhaseRunRow.summary)
            .where(PhaseRunRow.estate_id.in_(ids), PhaseRunRow.status == "failed",
                   PhaseRunRow.started_at >= since)).all()
        approvals = session.execute(
            select(ApprovalRow.decision).where(ApprovalRow.estate_id.in_(ids),
                                               ApprovalRow.responded_at >= since)).all()
    incidents = [i for i in _incident_rows(ctx.store_url, names) if i.detected_at >= since]
    decisions: dict[str, int] = {}
    for (decision,) in approvals:
        decisions[decision] = decisions.get(decision, 0) + 1
    healed = sum(1 for i in incidents if i.status == "resolved")
    facts = [
        ("Period", f"{since:%Y-%m-%d} to {now:%Y-%m-%d} ({period.value})"),
        ("Migrations", ", ".join(names)),
        ("Waves completed", str(len(done))),
        ("Servers migrated", str(sum(n for _, _, n in done))),
        ("Waves rolled back", str(rolled)),
        ("Phases failed", str(len(failed_phases))),
        ("Incidents", f"{len(incidents)} ({healed} healed)"),
        ("Approvals", ", ".join(f"{n} {d}" for d, n in sorted(decisions.items())) or "0"),
    ]
    body: list[dict[str, Any]] = [_facts(facts)]
    if done:
        body.append(_text("Completed: " + ", ".join(f"{e} wave {w}" for e, w, _ in done)))
    for inc in incidents[:5]:
        body.append(_text(f"{inc.incident_id} {inc.severity} {inc.status}: {inc.title}",
                          spacing="None"))
    title = f"{'Weekly' if days == 7 else 'Monthly'} report"
    return Reply(card=_validated(_simple_card(title, body)))


# ---------------------------------------------------------------------------- metrics/costs


def metrics(intent: Intent, ctx: ActionContext) -> Reply:
    migrations = _scope(intent, ctx)
    names = [m.estate for m in migrations]
    total = sum(len(m.plan.servers) for m in migrations)
    migrated = sum(w.server_count for m in migrations for w in m.waves
                   if w.status == "completed")
    with session_scope(ctx.store_url, read_only=True) as session:
        runs = [r for m in migrations for w in m.plan.waves
                for r in repository.phase_runs(session, m.estate, w.number)]
    finished = [r for r in runs if r.finished_at is not None]
    ok = sum(1 for r in finished if r.status == "success")
    values: list[cards.Metric] = [
        cards.Metric(name="Waves completed", value=float(sum(
            1 for m in migrations for w in m.waves if w.status == "completed")),
            target=float(sum(len(m.waves) for m in migrations))),
    ]
    if finished:
        values.append(cards.Metric(name="Phase success rate", value=round(
            100.0 * ok / len(finished), 1), unit="%", target=95.0))
        durations = [r.duration_s for r in finished if r.duration_s is not None]
        values.append(cards.Metric(name="Mean phase duration", value=round(
            sum(durations) / len(durations) / 60, 2), unit="min", higher_is_better=False))
    incidents = _incident_rows(ctx.store_url, names)
    values.append(cards.Metric(name="Open incidents", value=float(sum(
        1 for i in incidents if i.status in ("open", "awaiting_approval"))), target=0.0,
        higher_is_better=False))
    view = cards.MetricsView(migration_id=", ".join(names), servers_total=total,
                             servers_migrated=min(migrated, total), metrics=values,
                             measured_at=ctx.now())
    return Reply(card=_validated(cards.metrics_card(view)))


def _actual_cost(store_url: str, estate: str, wave: int) -> float | None:
    """The monthly cost the validate phase measured from the running instances."""
    with session_scope(store_url, read_only=True) as session:
        runs = repository.phase_runs(session, estate, wave)
    for run in reversed(runs):
        if run.phase != "validate" or run.status != "success":
            continue
        details = run.details.get("details")
        details = details if isinstance(details, dict) else run.details
        cost = details.get("cost") if isinstance(details, dict) else None
        if isinstance(cost, dict) and isinstance(cost.get("actual_monthly_usd"), int | float):
            return float(cost["actual_monthly_usd"])
    return None


def costs(intent: Intent, ctx: ActionContext) -> Reply:
    migrations = _scope(intent, ctx)
    lines = []
    for m in migrations:
        for wave in m.plan.waves:
            lines.append(cards.CostLine(
                item=f"{m.estate} wave {wave.number}" if len(migrations) > 1
                else f"wave {wave.number} ({wave.name})",
                predicted=round(wave.predicted_monthly_usd, 2),
                actual=_actual_cost(ctx.store_url, m.estate, wave.number)))
    scope = migrations[0].estate if len(migrations) == 1 else "all migrations"
    card = cards.costs_card(cards.CostsView(scope=scope, lines=lines))
    if all(line.actual is None for line in lines):
        card["body"].append(_text(
            "No actuals yet: the actual cost is measured by a wave's validate phase from "
            "the instances running in the cloud, and no wave has got that far.",
            isSubtle=True))
    return Reply(card=_validated(card))


# ---------------------------------------------------------------------------- knowledge


def _words(query: str) -> list[str]:
    return [w for w in re.findall(r"\w+", query.casefold()) if len(w) > 2]


def _matches(text: str, words: list[str]) -> bool:
    folded = text.casefold()
    return bool(words) and all(w in folded for w in words)


def _all_incidents(ctx: ActionContext, estates: list[str]) -> list[tuple[Any, Any]]:
    """(row, Incident) pairs of the healer's incidents of these estates."""
    rows = _incident_rows(ctx.store_url, estates)
    if not rows:
        return []
    from migrationbox.healer.store import IncidentStore

    store = IncidentStore(engine(ctx.store_url))
    out = []
    for row in rows:
        found = store.get(row.incident_id)
        if found is not None:
            out.append((row, found[0]))
    return out


def search(intent: Intent, ctx: ActionContext) -> Reply:
    query = intent.slots.query or ""
    words = _words(query)
    if not words:
        raise Refusal("Search for what? Give a word of three letters or more.")
    estates = known_migrations(ctx.store_url)
    hits: list[str] = []
    for row, incident in _all_incidents(ctx, estates):
        text = " ".join([incident.title, incident.summary, incident.root_cause,
                         *incident.lessons])
        if _matches(text, words):
            hits.append(f"Incident {row.incident_id} ({row.estate}, {row.status}): "
                        f"{incident.title} - root cause: {incident.root_cause}")
    with session_scope(ctx.store_url, read_only=True) as session:
        for estate in estates:
            for event in repository.events(session, estate):
                if _matches(event.message, words):
                    hits.append(f"{estate} {event.at:%Y-%m-%d %H:%M} "
                                f"(wave {event.wave}): {event.message[:200]}")
    if not hits:
        return Reply(text=f"Nothing found for '{query}' in incidents and migration "
                          f"events. {NEXT_ISSUE_NOTE}")
    body = [_text(h, spacing="None") for h in hits[-10:]]
    body.append(_text(f"{len(hits)} match(es); the last {min(10, len(hits))} shown. "
                      + NEXT_ISSUE_NOTE, isSubtle=True))
    return Reply(card=_validated(_simple_card(f"Search: {query}", body)))


def runbook(intent: Intent, ctx: ActionContext) -> Reply:
    """The healer's decision matrix is the runbook MigrationBox has: per problem, the
    action it takes, its risk and whether a person approves it."""
    from migrationbox.healer.decision import load_matrix

    matrix = load_matrix()
    words = _words(intent.slots.query or "")
    rows = [r for r in matrix.rows
            if not words or any(w in f"{r.id} {r.root_cause} {r.action} "
                                f"{r.action_description}".casefold() for w in words)]
    if not rows:
        topics = ", ".join(r.id for r in matrix.rows)
        return Reply(text=f"No runbook entry for '{intent.slots.query}'. Entries: {topics}. "
                          + NEXT_ISSUE_NOTE)
    body = []
    for r in rows[:10]:
        body.append(_text(f"{r.id}: {r.root_cause}", weight="Bolder"))
        body.append(_facts([("Action", r.action_description),
                            ("Risk", str(r.risk)),
                            ("Approval", "needed" if r.needs_approval else "automatic")]))
    body.append(_text(NEXT_ISSUE_NOTE, isSubtle=True))
    title = "Runbook" + (f": {intent.slots.query}" if intent.slots.query else "")
    return Reply(card=_validated(_simple_card(title, body)))


def lessons_learned(intent: Intent, ctx: ActionContext) -> Reply:
    estate = _estate_of(intent, ctx, required=False)
    estates = [estate] if estate else known_migrations(ctx.store_url)
    if estate:
        load_migration(ctx.store_url, estate)
    body: list[dict[str, Any]] = []
    for row, incident in _all_incidents(ctx, estates):
        items = list(incident.lessons)
        if incident.prevention:
            items.append(f"prevention: {incident.prevention.recommendation}")
        if not items:
            continue
        body.append(_text(f"{row.incident_id} ({row.estate}): {incident.title}",
                          weight="Bolder"))
        body.append(_text(f"Root cause: {incident.root_cause}", spacing="None"))
        body.extend(_text(f"- {i}", spacing="None") for i in items[:5])
    with session_scope(ctx.store_url, read_only=True) as session:
        failed = session.execute(
            select(EstateRow.name, PhaseRunRow.wave, PhaseRunRow.phase, PhaseRunRow.summary)
            .join(EstateRow, EstateRow.id == PhaseRunRow.estate_id)
            .where(EstateRow.name.in_(estates), PhaseRunRow.status == "failed")
            .order_by(PhaseRunRow.id.desc()).limit(5)).all()
    for name, wave, phase, summary in failed:
        body.append(_text(f"{name} wave {wave} {phase} failed: {(summary or '')[:200]}"))
    if not body:
        return Reply(text="No lessons recorded yet: no incident with lessons and no failed "
                          f"phase{' in ' + estate if estate else ''}. {NEXT_ISSUE_NOTE}")
    body.append(_text(NEXT_ISSUE_NOTE, isSubtle=True))
    title = "Lessons learned" + (f": {estate}" if estate else "")
    return Reply(card=_validated(_simple_card(title, body)))


# ---------------------------------------------------------------------------- alerts


def _conversation_id(ctx: ActionContext) -> str:
    return ctx.inbound.conversation.conversation_id


_KIND_WORDS = {kind: kind for kind in ALERT_KINDS} | {
    "started": "wave_started", "failed": "phase_failed", "failures": "phase_failed",
    "rollbacks": "rollback", "done": "wave_done", "completed": "wave_done",
    "incident": "incident_opened", "incidents": "incident_opened", "healed":
    "incident_healed", "approval": "approval_waiting", "approvals": "approval_waiting",
}


#: Severity words of ``alert-config``: the notifier's levels, and an incident's P1-P4 as
#: the notifier ranks them (P1/P2 critical, P3 warning, P4 info).
_SEVERITY_WORDS = {"info": "info", "warning": "warning", "critical": "critical",
                   "p1": "critical", "p2": "critical", "p3": "warning", "p4": "info"}


def alert_config(intent: Intent, ctx: ActionContext) -> Reply:
    """``alert-config [id] ["kinds ... severity"]``: without kinds or a severity, shows
    what this conversation gets; with them, sets it in the notifier's stored shape
    (``teams.notifier.AlertConfig``: ``{"kinds": [...], "min_severity": ...}``)."""
    from migrationbox.teams.notifier import AlertConfig

    # the grammar's slots (kinds and severity, quoted or not, in any language); the
    # words of the text only for an intent stored before the grammar had these slots
    words = re.findall(r"[\w-]+", intent.text.casefold())
    kinds = sorted(intent.slots.kinds if intent.slots.kinds is not None
                   else {_KIND_WORDS[w] for w in words if w in _KIND_WORDS})
    said = (intent.slots.severity if intent.slots.severity is not None
            else next((w for w in words if w in _SEVERITY_WORDS), None))
    severity = _SEVERITY_WORDS[said.casefold()] if said is not None else None
    estate = intent.slots.migration_id
    if estate:
        load_migration(ctx.store_url, estate)
    with session_scope(ctx.store_url) as session:
        current = state.conversation(session, _conversation_id(ctx))
        if current is None:
            state.remember_conversation(session, ctx.inbound.conversation)
            current = state.conversation(session, _conversation_id(ctx))
        assert current is not None
        try:
            config = AlertConfig.from_stored(current.alert_config)
        except ValueError:  # a config this version cannot read: start from "everything"
            config = AlertConfig()
        note = ""
        if estate and current.estate is None:
            state.bind_estate(session, _conversation_id(ctx), estate)
            note = f" This conversation now hears about {estate} only."
        elif estate and current.estate != estate:
            note = (f" This conversation belongs to {current.estate}; its alerts stay "
                    f"about {current.estate}.")
        if kinds or severity:
            config = AlertConfig(kinds=tuple(kinds) if kinds else config.kinds,
                                 min_severity=severity or config.min_severity)
            state.set_alert_config(session, _conversation_id(ctx), config.to_stored())
    if kinds or severity:
        return Reply(text=f"Alerts for this conversation set: {config.describe()}.{note}")
    return Reply(text=(f"Alerts for this conversation: {config.describe()}.{note} To "
                       f'change: `alert-config "<kinds> <severity>"` with kinds from '
                       f"{', '.join(ALERT_KINDS)} and a severity info, warning or "
                       "critical (or an incident's P1-P4)."))


_DURATION = re.compile(
    r"(\d{1,4})\s*(m|min|mins|minute|minutes|minuten|minuto|minutos|perc|percre|"
    r"h|hr|hrs|hour|hours|stunde|stunden|hora|horas|ora|orara|óra|órára|"
    r"d|day|days|tag|tage|tagen|dia|dias|día|días|nap|napra)\b", re.IGNORECASE)


def mute_duration(text: str) -> timedelta:
    """The duration a ``mute`` text names (``30m``, ``2 hours``, ``2 Stunden``, ``1 nap``),
    default one hour, at most 30 days."""
    match = _DURATION.search(text)
    if not match:
        return DEFAULT_MUTE
    amount, unit = int(match.group(1)), match.group(2).casefold()
    if unit[0] in "mp":
        value = timedelta(minutes=amount)
    elif unit[0] in "dtn":
        value = timedelta(days=amount)
    else:
        value = timedelta(hours=amount)
    return _clamped_mute(value)


def _clamped_mute(value: timedelta) -> timedelta:
    if value <= timedelta(0):
        return DEFAULT_MUTE
    return min(value, MAX_MUTE)


def mute(intent: Intent, ctx: ActionContext) -> Reply:
    """Mute for the grammar's ``duration`` slot (seconds; "30m", "2 Stunden"), else the
    default hour; only the ``kinds`` named, when the text names some."""
    if intent.slots.duration is not None:
        duration = _clamped_mute(timedelta(seconds=intent.slots.duration))
    else:  # an intent stored before the grammar had the slot
        duration = mute_duration(intent.text)
    until = ctx.now() + duration
    kinds = list(intent.slots.kinds or ())
    estate = intent.slots.migration_id
    if estate:
        load_migration(ctx.store_url, estate)
    with session_scope(ctx.store_url) as session:
        if state.conversation(session, _conversation_id(ctx)) is None:
            state.remember_conversation(session, ctx.inbound.conversation)
        state.set_mute(session, _conversation_id(ctx), until, kinds)
    scope = (f" (every migration this conversation hears about, not only {estate})"
             if estate else "")
    what = f"{', '.join(kinds)} notifications" if kinds else "Notifications"
    return Reply(text=f"{what} muted in this conversation until "
                      f"{until:%Y-%m-%d %H:%M} UTC{scope}. `unmute` ends it sooner.")


def unmute(intent: Intent, ctx: ActionContext) -> Reply:
    with session_scope(ctx.store_url) as session:
        if state.conversation(session, _conversation_id(ctx)) is None:
            state.remember_conversation(session, ctx.inbound.conversation)
        state.set_mute(session, _conversation_id(ctx), None)
    return Reply(text="Notifications are on again in this conversation.")


# ---------------------------------------------------------------------------- registry

Action = Callable[[Intent, ActionContext], Reply]

ACTIONS: dict[Command, Action] = {
    Command.STATUS: status,
    Command.START: start,
    Command.PAUSE: pause,
    Command.RESUME: resume,
    Command.ROLLBACK: rollback,
    Command.CANCEL: cancel,
    Command.APPROVE: approve,
    Command.REJECT: reject,
    Command.REQUEST_APPROVAL: request_approval,
    Command.REPORT: report,
    Command.METRICS: metrics,
    Command.COSTS: costs,
    Command.SEARCH: search,
    Command.RUNBOOK: runbook,
    Command.LESSONS_LEARNED: lessons_learned,
    Command.ALERT_CONFIG: alert_config,
    Command.MUTE: mute,
    Command.UNMUTE: unmute,
}


def _precheck_start(intent: Intent, ctx: ActionContext) -> None:
    plan_start(intent, ctx)


def _precheck_rollback(intent: Intent, ctx: ActionContext) -> None:
    plan_rollback(intent, ctx)


#: Checks run before a destructive command asks for confirmation: a command that cannot
#: run is answered at once (with what to do instead), not after a "yes".
PRECHECKS: dict[Command, Callable[[Intent, ActionContext], None]] = {
    Command.START: _precheck_start,
    Command.ROLLBACK: _precheck_rollback,
    Command.CANCEL: precheck_cancel,
}


def run(intent: Intent, ctx: ActionContext) -> Reply:
    return ACTIONS[intent.command](intent, ctx)
