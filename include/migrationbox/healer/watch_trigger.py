"""The estate watch as an Airflow event trigger: the Asset-watcher sensing mechanism.

``EstateWatchTrigger`` runs in the triggerer (one asyncio task, no worker slot, no DAG
run): every ``interval_s`` it runs :class:`migrationbox.healer.watch.EstateWatch` in a
thread and, when the check finds a reason to wake the healer, yields an event. The heal
DAG, scheduled on the asset this trigger watches (``MIGRATIONBOX_HEAL_MECHANISM=asset``),
then gets a run that senses every ``interval_s`` until the estate is quiet again
(``stop_when_quiet``). While the signals last the trigger fires again at most every
``refire_s``, so a long incident does not turn into an asset event every few seconds
(Airflow also folds events queued while a run is active into one next run).

Which estates: the trigger's ``estates`` when given, else the ``estates`` of the heal
conf Variable (``migrationbox_heal_conf``, read through the Task SDK at each check, so
the watcher and the healer follow the same list), else every estate with a completed wave.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from airflow.triggers.base import BaseEventTrigger, TriggerEvent

CLASSPATH = "migrationbox.healer.watch_trigger.EstateWatchTrigger"
SIGNALS_ASSET = "migrationbox_heal_signals"
SIGNALS_URI = "migrationbox://healer/signals"
#: signals carried in one event (the asset event's ``extra``); the healer re-senses anyway
MAX_SIGNALS = 20

log = logging.getLogger(__name__)


def watch_settings() -> dict[str, float]:
    """Cadence from the settings (the DAG file builds the trigger at parse time, so
    Airflow Variables are not consulted)."""
    from migrationbox import settings

    return {"interval_s": float(settings.get("heal_watch_interval_s", variables=False)),
            "refire_s": float(settings.get("heal_watch_refire_s", variables=False))}


def resolve_estates(estates: list[str] | None) -> list[str]:
    if estates is not None:
        return list(estates)
    from migrationbox.healer.jobs import CONF_VARIABLE, watched_estates

    try:
        from airflow.sdk import Variable

        conf = Variable.get(CONF_VARIABLE, default=None, deserialize_json=True)
    except Exception:  # outside Airflow, or the API unreachable: fall back to the store
        conf = None
    if isinstance(conf, dict) and isinstance(conf.get("estates"), list):
        return [str(e) for e in conf["estates"]]
    return watched_estates()


class EstateWatchTrigger(BaseEventTrigger):
    """Yields an event whenever the watched estates need the healer (see module doc)."""

    def __init__(self, interval_s: float = 10.0, refire_s: float = 60.0,
                 estates: list[str] | None = None) -> None:
        super().__init__()
        if interval_s <= 0 or refire_s < 0:
            raise ValueError(f"EstateWatchTrigger: interval_s must be > 0 and refire_s >= 0 "
                             f"(got {interval_s}, {refire_s})")
        self.interval_s = float(interval_s)
        self.refire_s = float(refire_s)
        self.estates = list(estates) if estates is not None else None

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return CLASSPATH, {"interval_s": self.interval_s, "refire_s": self.refire_s,
                           "estates": self.estates}

    def _check(self, watch: Any) -> tuple[list[str], Any]:
        estates = resolve_estates(self.estates)
        return estates, watch.check(estates)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from migrationbox.healer.watch import EstateWatch

        watch = await asyncio.to_thread(EstateWatch)
        checks = fired = 0
        last_fire = float("-inf")
        was_firing = False
        problems_seen: set[str] = set()
        while True:
            started = time.monotonic()
            try:
                estates, result = await asyncio.to_thread(self._check, watch)
            except Exception as exc:  # never die: a dead watcher means a blind healer
                log.warning("estate watch: check failed: %s: %s", type(exc).__name__, exc)
                estates, result = [], None
            checks += 1
            took = time.monotonic() - started
            signals = result.signals if result is not None else []
            if result is not None:
                new = set(result.problems) - problems_seen
                for problem in sorted(new):
                    log.warning("estate watch: %s", problem)
                problems_seen = set(result.problems)
            firing = bool(signals)
            if firing and (not was_firing or time.monotonic() - last_fire >= self.refire_s):
                fired += 1
                last_fire = time.monotonic()
                log.info("estate watch: waking the healer (%d signal(s), first: %s)",
                         len(signals), signals[0].detail)
                yield TriggerEvent({
                    "fired_at": datetime.now(UTC).isoformat(),
                    "estates": estates,
                    "signals": [s.to_dict() for s in signals[:MAX_SIGNALS]],
                    "signal_count": len(signals),
                    "check_s": round(took, 3), "checks": checks, "events": fired,
                })
            elif firing != was_firing or checks % 360 == 1:
                log.info("estate watch: check %d, %d target(s), %d signal(s), %.2f s",
                         checks, result.targets if result else 0, len(signals), took)
            was_firing = firing
            await asyncio.sleep(max(0.0, self.interval_s - (time.monotonic() - started)))
