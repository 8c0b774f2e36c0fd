"""A condition that comes back right after it was healed is acted on again.

Why: the detectors confirm a matrix row by calling its level new, but the spell healed a
minute ago is still in the history they judge, so to them the same burn is no longer
new: measured on the heal-time benchmark, 5 of 8 back-to-back CPU burns were left to a
person ("model 2 did not confirm") although each was the fault healed just before. A
recurrence of a healed and verified incident (same server, same row, inside the judged
history) is taken as confirmed, said in the pass report and the incident; an earlier
incident that was only alerted, or is older than that history, confirms nothing.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import create_engine

from migrationbox.healer import sensing
from migrationbox.healer.incident import Incident, IncidentStatus
from migrationbox.healer.runtime import Healer, HealerSettings, PassReport

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
TARGET = sensing.Target(estate="shop", server_id="web-01", wave=1, service="web-01:target")


def _healer(tmp_path: Path) -> Healer:
    engine = create_engine(f"sqlite:///{tmp_path / 'store.db'}")
    from migrationbox.healer.store import ensure_tables

    ensure_tables(engine)
    cfg = sensing.SensingConfig(sustain_scale=0.02, use_forecasters=False)
    return Healer(engine, HealerSettings(sensing=cfg), notifiers=[])


def _cpu(now: datetime) -> pd.Series:
    """Quiet at 20 %, a 40 s burn that ended 50 s ago, and the same burn again for 12 s."""
    rng = np.random.default_rng(3)
    values = np.concatenate([20 + rng.normal(0, 1, 120), 99.9 + rng.normal(0, 0.05, 40),
                             20 + rng.normal(0, 1, 50), 99.9 + rng.normal(0, 0.05, 12)])
    index = pd.date_range(end=now, periods=len(values), freq="1s", tz="UTC")
    return pd.Series(values, index=index)


def _data(now: datetime) -> dict[tuple[str, str], pd.Series]:
    index = pd.date_range(end=now, periods=222, freq="1s", tz="UTC")
    data = {(TARGET.metric_id, m): pd.Series(30.0, index=index) for m in sensing.CONTINUOUS}
    data[(TARGET.metric_id, "cpu_utilization_pct")] = _cpu(now)
    return data


def _earlier(healer: Healer, status: IncidentStatus, detected: datetime) -> str:
    def build(incident_id: str) -> Incident:
        return Incident(incident_id=incident_id, title="High CPU on web-01", resource="web-01",
                        severity="P2", status=status, summary="cpu", detected_at=detected)

    return healer.incidents.create("shop", "high_cpu", build, seen_on="web-01").incident_id


def _cpu_situation(healer: Healer) -> tuple[str, PassReport]:
    report = PassReport(estate="shop", started_at=NOW.isoformat())
    found = [s for s in healer._situations(TARGET, _data(NOW), {}, NOW, report)
             if s[1] == "high_cpu"]
    assert len(found) == 1, found
    return found[0][4], report


def test_without_history_the_repeated_burn_is_low_confidence(tmp_path: Path):
    """The premise: the detectors alone do not confirm the second burn."""
    detection, report = _cpu_situation(_healer(tmp_path))
    assert detection == "low" and report.recurrences == {}


def test_a_recurrence_of_a_healed_incident_is_confirmed(tmp_path: Path):
    healer = _healer(tmp_path)
    earlier = _earlier(healer, IncidentStatus.resolved, NOW - timedelta(seconds=80))
    detection, report = _cpu_situation(healer)
    assert detection == "high"
    assert report.recurrences == {"web-01:high_cpu": earlier}


@pytest.mark.parametrize("status,age_s", [(IncidentStatus.alerted, 80),
                                          (IncidentStatus.failed, 80),
                                          (IncidentStatus.resolved, 3600)])
def test_an_alert_a_failed_heal_or_an_old_heal_confirms_nothing(tmp_path: Path,
                                                               status: IncidentStatus,
                                                               age_s: int):
    healer = _healer(tmp_path)
    _earlier(healer, status, NOW - timedelta(seconds=age_s))
    detection, report = _cpu_situation(healer)
    assert detection == "low" and report.recurrences == {}
