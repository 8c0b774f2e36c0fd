"""What the healer's DAGs run: each function is one task, and returns a small JSON summary
(kept small on purpose: it becomes an XCom).

* :func:`sense_window` — the heal DAG's long-running sensing task: sensing passes every
  ``interval_s`` for ``window_s`` over every estate with a completed wave, auto-heals
  included; returns the incidents that wait for a person.
* :func:`approval_requests` — one run of the approval DAG (``migrationbox_heal_approval``)
  per incident that waits for a person; the run id is derived from the incident, so a
  request is never made twice.
* :func:`apply_approval` — the approval DAG's last task: runs the approved remediation,
  or records the refusal (a person said no, or nobody answered in time).
* :func:`retrain_forecasters` / :func:`retrain_success_model` — the weekly retraining.

Why a long-running task inside a continuous DAG (``schedule="@continuous"``,
``max_active_runs=1``) rather than a DAG every minute: the scheduler's and metadata
database's work is per DAG run and per task instance, while the healer's cadence is per
pass. A run per minute costs 3 task instances a minute and senses once a minute; one run
per ``window_s`` (5 min) costs 3 task instances per 5 minutes and senses every
``interval_s`` (10 s): 30x the cadence for a fifth of the scheduling. See
``docs/healer.md`` (runtime) and ``benchmarks/bench_healer.py`` for the figures.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class HealConf(BaseModel):
    """The heal DAG's run conf (all optional)."""

    model_config = ConfigDict(extra="forbid")

    estates: list[str] | None = None  # None: every estate with a completed wave
    window_s: float = Field(default=300.0, ge=0, le=3600)
    interval_s: float = Field(default=10.0, ge=0.5, le=600)
    max_passes: int | None = Field(default=None, ge=1)
    sustain_scale: float = Field(default=1.0, gt=0, le=1)
    verify_timeout_s: float = Field(default=60.0, gt=0, le=1800)
    stop_when_idle: bool = False  # end the window at the first pass with no situation
    #: end the window at the first pass in which every estate is quiet (no situation, no
    #: condition building up, every probe healthy): how a run the estate watch woke
    #: (``MIGRATIONBOX_HEAL_MECHANISM=asset``) hands back to the watcher
    stop_when_quiet: bool = False
    #: with ``stop_when_quiet``: a quiet pass hands back only if the estate watch's own
    #: check (the one that wakes runs) agrees. A condition that held when the watch fired
    #: may read as quiet in one pass (a burn's CPU dipping to 89 % on the newest point,
    #: a monitoring read that failed); handing back then left the fault to the next wake,
    #: a minute or more later on a busy platform. The window still bounds the run.
    confirm_quiet_with_watch: bool = True
    #: read the forecaster index and import Prophet in a background thread at the start
    warm_forecasters: bool = True
    #: end the window as soon as an incident waits for a person, so that the request for
    #: approval goes out now rather than at the end of the window
    stop_on_approval: bool = True
    #: an alerted incident of the same server and anomaly type this recent absorbs a new
    #: one (seconds; 15 min by default): people were told already
    dedupe_window_s: float = Field(default=900.0, ge=0, le=86400)
    #: health-probe history kept (hours); one row per watched server per pass
    probe_retention_h: float = Field(default=24.0, gt=0, le=24 * 90)


#: how the heal DAG is scheduled (``MIGRATIONBOX_HEAL_MECHANISM``), measured in
#: ``benchmarks/bench_sensing_cost.py``: ``asset`` (default: the estate watch in the
#: triggerer wakes the DAG only when something is off), ``window`` (continuous runs of one
#: long sensing task), ``deferrable`` (a deferrable wait, then one pass per run)
MECHANISMS = ("asset", "window", "deferrable")


def heal_mechanism() -> str:
    from migrationbox import settings

    value = str(settings.get("heal_mechanism", variables=False))
    assert value in MECHANISMS, value  # the setting's parser allows these only
    return value


#: Airflow Variable with the heal DAG's default conf (JSON): operators tune the healer
#: (window, interval, which estates) without a deploy; a run's own conf wins over it
CONF_VARIABLE = "migrationbox_heal_conf"
APPROVAL_DAG_ID = "migrationbox_heal_approval"


def effective_conf(defaults: dict[str, Any] | None, run_conf: dict[str, Any] | None
                   ) -> dict[str, Any]:
    """The Variable's defaults overlaid by the run's conf, validated (a bad key or value
    fails the task with pydantic's message naming the field)."""
    merged = {**(defaults or {}), **(run_conf or {})}
    return HealConf.model_validate(merged).model_dump(exclude_unset=True)


@dataclass
class WindowSummary:
    passes: int
    situations: int
    auto_healed: int
    pending_approvals: list[str]
    incidents: list[str]
    pass_seconds_mean: float
    notes: list[str]

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def watched_estates() -> list[str]:
    from migrationbox.store import repository
    from migrationbox.store.db import session_scope

    out: list[str] = []
    with session_scope(read_only=True) as s:
        for e in repository.list_estates(s):
            name = e.name
            if "completed" in repository.wave_statuses(s, name).values():
                out.append(name)
    return sorted(out)


def _healer(conf: HealConf) -> Any:
    from migrationbox.healer.runtime import Healer, HealerSettings, notifiers_from_airflow
    from migrationbox.healer.sensing import SensingConfig

    settings = HealerSettings(sensing=SensingConfig(sustain_scale=conf.sustain_scale),
                              verify_timeout_s=conf.verify_timeout_s,
                              dedupe_window=timedelta(seconds=conf.dedupe_window_s))
    return Healer(settings=settings,
                  notifiers=notifiers_from_airflow(settings.notify_conn_id, in_task=True))


def still_signalled(healer: Any, estates: list[str], watch: Any = None) -> list[Any]:
    """The estate watch's signals now, on the healer's own metric source (its points are
    already held: the check reads a few seconds of tail). Only signals the pass would act
    on or watch count: health, probe facts and matrix conditions; the watch's z-score-only
    ``anomaly`` signals are the cheap look at what the pass already judged with both
    models (and found low-confidence), so they do not keep a run awake."""
    from migrationbox.healer.watch import EstateWatch

    watch = watch or EstateWatch(source=healer.source)
    result = watch.check(estates)
    return [s for s in result.signals if s.kind != "anomaly"]


def sense_window(raw_conf: dict[str, Any] | None = None, say: Any = print) -> dict[str, Any]:
    conf = HealConf.model_validate(raw_conf or {})
    if conf.warm_forecasters:
        from migrationbox.healer.tracking import warm

        warm()  # the forecaster index and Prophet's import, off the first pass's path
    healer = _healer(conf)
    watch: Any = None
    estates = conf.estates if conf.estates is not None else watched_estates()
    deadline = time.monotonic() + conf.window_s
    passes, durations = 0, []
    situations = healed = 0
    pending: list[str] = []
    incidents: list[str] = []
    notes: list[str] = []
    while True:
        started = time.monotonic()
        busy = False
        quiet = True
        for estate in estates:
            try:
                report = healer.run_pass(estate)
            except Exception as exc:  # one broken estate must not stop the others
                notes.append(f"{estate}: pass failed: {type(exc).__name__}: {exc}")
                say(notes[-1])
                continue
            for s in report.situations:
                busy = True
                situations += 1
                healed += s.outcome == "auto_heal" and bool(s.remediation_success)
                if s.incident_id and s.incident_id not in incidents:
                    incidents.append(s.incident_id)
                say(f"{estate}/{s.server_id}: {s.anomaly_type} -> {s.outcome} "
                    f"({s.incident_id})")
            pending.extend(i for i in report.pending_approvals() if i not in pending)
            quiet = quiet and report.quiet
            for w in report.watching:
                say(f"{estate}/{w}: watching")
            slow = float(report.timings_s.get("total", 0.0)) > conf.interval_s
            if slow or report.situations or passes % 30 == 0:
                # the real cadence, visible in the task log (every 30th pass, and when a
                # pass is slower than the interval or found something)
                say(f"{estate}: pass {passes + 1}: {report.targets} targets, "
                    f"{len(report.situations)} situation(s); "
                    + ", ".join(f"{k} {v:.2f}s" for k, v in report.timings_s.items())
                    + (" (slower than interval_s)" if slow else ""))
        passes += 1
        durations.append(time.monotonic() - started)
        if conf.max_passes is not None and passes >= conf.max_passes:
            break
        if conf.stop_when_idle and incidents and not busy:
            break
        if conf.stop_when_quiet and quiet:
            held: list[Any] = []
            if conf.confirm_quiet_with_watch:
                try:
                    if watch is None:
                        from migrationbox.healer.watch import EstateWatch

                        watch = EstateWatch(source=healer.source)
                    held = still_signalled(healer, estates, watch)
                except Exception as exc:  # cannot confirm: trust the pass
                    notes.append(f"watch check failed: {type(exc).__name__}: {exc}")
            if not held:
                say(f"pass {passes}: every watched estate is quiet: back to the watcher")
                break
            say(f"pass {passes}: quiet, but the watch still sees {len(held)} signal(s) "
                f"(first: {held[0].server_id}: {held[0].detail}): sensing on")
        if conf.stop_on_approval and pending:
            say(f"{len(pending)} incident(s) wait for a person: ending the window to ask")
            break
        if time.monotonic() + conf.interval_s > deadline:
            break
        time.sleep(max(0.0, conf.interval_s - (time.monotonic() - started)))
    try:
        pruned = healer.probes.prune(datetime.now(UTC) - timedelta(hours=conf.probe_retention_h))
        if pruned:
            say(f"pruned {pruned} health probe(s) older than {conf.probe_retention_h:g} h")
    except Exception as exc:  # housekeeping must not fail the sensing run
        notes.append(f"probe retention failed: {type(exc).__name__}: {exc}")
    return WindowSummary(passes, situations, healed, pending, incidents,
                         round(sum(durations) / max(1, len(durations)), 3),
                         notes[-20:]).to_dict()


def woken_by(triggering_asset_events: Any, say: Any = print) -> list[dict[str, Any]]:
    """What the estate watch saw when it woke this run, and how long the wake took (from
    the check that fired to this task), from the run's triggering asset events."""
    out: list[dict[str, Any]] = []
    now = datetime.now(UTC)
    for events in dict(triggering_asset_events).values():
        for event in events:
            payload = ((getattr(event, "extra", None) or {}).get("payload") or {})
            fired = payload.get("fired_at")
            latency = (now - datetime.fromisoformat(fired)).total_seconds() if fired else None
            signals = payload.get("signals") or []
            out.append({"fired_at": fired, "wake_latency_s": None if latency is None
                        else round(latency, 1), "signal_count": payload.get("signal_count",
                                                                           len(signals)),
                        "signals": signals[:5]})
            when = f" {latency:.1f} s after it fired" if latency is not None else ""
            say(f"woken by the estate watch{when}: " + ("; ".join(
                f"{s.get('server_id')}: {s.get('detail')}" for s in signals[:5])
                or "no signal recorded"))
    return out


def approval_requests(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """Keyword arguments of one approval-DAG trigger per incident waiting for a person."""
    return [{"trigger_run_id": f"approval__{incident_id}",
             "conf": {"incident_id": incident_id}}
            for incident_id in summary.get("pending_approvals") or []]


def describe_incident(incident_id: str) -> dict[str, Any]:
    """What the person deciding needs to see: the incident's title, root cause, proposed
    action and its risk (shown in the approval task's body)."""
    from migrationbox.healer.decision import load_matrix
    from migrationbox.healer.store import IncidentStore
    from migrationbox.store.db import engine

    store = IncidentStore(engine())
    found = store.get(incident_id)
    if found is None:
        raise KeyError(f"no incident {incident_id!r} in the healer's store")
    incident, _ = found
    row = load_matrix().row(store.anomaly_type(incident_id) or "")
    remediation = incident.remediation
    return {"incident_id": incident_id, "title": incident.title,
            "status": incident.status.value, "resource": incident.resource,
            "summary": incident.summary, "root_cause": incident.root_cause,
            "root_cause_confidence": incident.root_cause_confidence,
            "action": remediation.action if remediation else (row.action if row else ""),
            "action_description": row.action_description if row else "",
            "risk": row.risk if row else "unknown",
            "show": f"migrationbox heal incidents show {incident_id}"}


def apply_approval(incident_id: str, approval: dict[str, Any] | None,
                   raw_conf: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run the remediation when the answer is "Approve"; otherwise record why not.

    ``approval`` is the HITL task's XCom (``chosen_options``, ``responded_by_user``); a
    timeout answers with the task's default ("Reject") and no user."""
    chosen = (approval or {}).get("chosen_options") or []
    user = (approval or {}).get("responded_by_user") or {}
    who = str(user.get("name") or user.get("id") or "nobody (timed out)")
    healer = _healer(HealConf.model_validate(raw_conf or {}))
    if "Approve" in chosen:
        inc = healer.execute_approved(incident_id, who)
        return {"incident_id": incident_id, "executed": True, "approved_by": who,
                "status": inc.status.value}
    why = "rejected" if user else "no answer before the approval timed out"
    inc = healer.reject(incident_id, who, why)
    return {"incident_id": incident_id, "executed": False, "why": why,
            "status": inc.status.value}


#: the Airflow pool every retraining task runs in (``airflow_settings.yaml``: one slot),
#: so that training never holds more than one executor slot, whatever is due
TRAINING_POOL = "migrationbox_training"
#: a *scheduled* retraining run starting this long after its slot is catch-up work
BACKLOG_LAG = timedelta(hours=1)


def is_backlog_run(run_type: str, slot: datetime | None, now: datetime) -> bool:
    """A scheduled run starting long after its slot (the platform was down when it was
    due, or has just started) is catch-up work, not this week's: the retraining DAGs skip
    it rather than take the CPU while the healer needs it. Manual runs always go ahead."""
    return str(run_type).lower().endswith("scheduled") and slot is not None \
        and now - slot > BACKLOG_LAG


def run_this_slot(context: Any, now: datetime | None = None) -> bool:
    """The retraining DAGs' short-circuit: ``False`` (skip, saying why) for a backlog run
    of the task's DAG run (:func:`is_backlog_run`), else ``True``."""
    run = context["dag_run"]
    slot = getattr(run, "run_after", None) or context.get("data_interval_end")
    if is_backlog_run(str(run.run_type), slot, now or datetime.now(UTC)):
        print(f"skipped: scheduled slot {slot} is more than {BACKLOG_LAG} ago (a catch-up "
              "run after downtime or at platform start-up); the next weekly slot retrains")
        return False
    return True


#: how much a retraining task lowers its own CPU priority (``os.nice``)
TRAINING_NICENESS = 10


def lower_cpu_priority(niceness: int = TRAINING_NICENESS) -> int:
    """Make this (retraining) process yield the CPU to everything else, sensing included:
    the pool bounds how many training tasks run, not how much CPU one takes, and on the
    2-core lab machine one Prophet or LightGBM fit at normal priority doubled the time a
    woken heal task needed to start. Idempotent; returns the process's niceness."""
    import os

    current = os.nice(0)
    if current < niceness:
        current = os.nice(niceness - current)
    return current


def retrain_forecasters(estates: list[str] | None = None,
                        lookback: timedelta = timedelta(days=14)) -> dict[str, Any]:
    """Fit and log (MLflow) model 2 per continuous metric of every watched server."""
    lower_cpu_priority()
    from migrationbox.healer.sensing import SensingConfig, load_targets, train_forecasters

    cfg = SensingConfig(lookback=lookback, period_s=60 if lookback > timedelta(hours=3) else 1)
    runs: dict[str, str] = {}
    for estate in estates if estates is not None else watched_estates():
        runs.update(train_forecasters(load_targets(estate), config=cfg))
    return {"forecasters": len(runs), "metric_keys": sorted(runs)[:50]}


def retrain_success_model(min_records: int = 40) -> dict[str, Any]:
    """Train the remediation success classifier on the stored outcomes (MLflow-tracked);
    it becomes the decision engine's confidence source only if it beats the matrix."""
    lower_cpu_priority()
    from migrationbox.healer.decision import load_matrix
    from migrationbox.healer.learning import SqlRemediationLog, train_success_model
    from migrationbox.store.db import engine

    records = SqlRemediationLog(engine()).records()
    report = train_success_model(records, load_matrix(), min_records=min_records)
    out = {k: v for k, v in report.__dict__.items() if isinstance(v, (str, int, float, bool))
           or v is None}
    out["metrics"] = {k: float(v) for k, v in report.metrics.items()}
    out["records"] = len(records)
    return out
