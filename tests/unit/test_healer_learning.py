"""Learning loop: remediation records, Beta confidence, the MLflow-tracked classifier."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlalchemy import create_engine

from migrationbox.healer.decision import (
    DecisionEngine,
    Observation,
    Outcome,
    Situation,
    StaticConfidence,
    load_matrix,
)
from migrationbox.healer.guard import InMemoryGuard
from migrationbox.healer.learning import (
    PLAN_FIELDS,
    ActionPosteriors,
    InMemoryRemediationLog,
    LearnedConfidence,
    RemediationRecord,
    SqlRemediationLog,
    load_success_model,
    record_outcome,
    train_success_model,
)

T0 = datetime(2026, 5, 15, 14, 25, tzinfo=UTC)
MATRIX = load_matrix()


def test_record_has_the_plans_shape_and_posterior_moves() -> None:
    log = InMemoryRemediationLog()
    posts = ActionPosteriors(MATRIX, prior_strength=10)
    record = record_outcome(log, posts, anomaly_type="high_cpu", action="horizontal_scale",
                            success=True, timestamp=T0, time_to_recovery_seconds=180,
                            cost_impact_monthly=120, resource="web-tier-asg",
                            remediation_id="rem-a7f3e9c2")
    plan = record.plan_dict()
    assert tuple(plan) == PLAN_FIELDS
    assert plan == {
        "remediation_id": "rem-a7f3e9c2", "timestamp": "2026-05-15T14:25:00Z",
        "anomaly_type": "high_cpu", "action": "horizontal_scale", "success": True,
        "time_to_recovery_seconds": 180.0, "side_effects": [], "cost_impact_monthly": 120.0,
        "confidence_before": 0.95, "confidence_after": 0.9545,
    }
    failed = record_outcome(log, posts, anomaly_type="high_cpu", action="horizontal_scale",
                            success=False, timestamp=T0 + timedelta(hours=1))
    assert failed.confidence_before == 0.9545
    assert failed.confidence_after == pytest.approx(10.5 / 12, abs=1e-4)
    # the same remediation recorded again (a retried task) counts once
    again = record_outcome(log, posts, anomaly_type="high_cpu", action="horizontal_scale",
                           success=True, timestamp=T0, remediation_id="rem-a7f3e9c2")
    assert again == record and len(log.records()) == 2
    assert posts.posterior("horizontal_scale").mean == pytest.approx(10.5 / 12)


def test_side_effects_do_not_count_against_a_success_and_posteriors_rebuild() -> None:
    """A scale-out always adds instances: counted as half a failure, three successful
    heals in a row took it under the 0.85 auto-heal bar (heal-time benchmark)."""
    posts = ActionPosteriors(MATRIX)
    before, after = posts.update("rolling_restart", True, ["one restart per instance"])
    assert before == pytest.approx(0.90)
    assert after == pytest.approx(10 / 11)
    for _ in range(3):
        _, after = posts.update("horizontal_scale", True, ["+2 instance(s) running"])
    assert after == pytest.approx(12.5 / 13) and after > 0.95
    records = [RemediationRecord(timestamp=T0 + timedelta(minutes=i), anomaly_type="disk_full",
                                 action="disk_cleanup_expand", success=i % 4 != 0,
                                 confidence_before=0.9, confidence_after=0.9)
               for i in range(8)]
    rebuilt = ActionPosteriors.from_records(MATRIX, records)
    assert rebuilt.posterior("disk_cleanup_expand").mean == pytest.approx((9.2 + 6) / 18)


def test_beta_confidence_drives_the_engine_below_the_bar() -> None:
    posts = ActionPosteriors(MATRIX)
    for _ in range(3):
        posts.update("vertical_scale_restart", False)
    engine = DecisionEngine(guard=InMemoryGuard(), confidence_source=posts)
    decision = engine.decide(Situation(
        "high_memory", "app-01", "high", 0.8, Observation("memory_utilization_pct", 97, 200),
        at=T0))
    assert decision.outcome is Outcome.alert
    assert decision.confidence == pytest.approx(8.8 / 13, abs=1e-4)
    assert decision.confidence_source.startswith("beta(")


def test_record_validation_names_the_field() -> None:
    with pytest.raises(ValidationError, match="severity"):
        RemediationRecord(timestamp=T0, anomaly_type="x", action="y", success=True,
                          confidence_before=0.5, confidence_after=0.5, severity="P9")
    with pytest.raises(ValidationError, match="timezone"):
        RemediationRecord(timestamp=datetime(2026, 1, 1), anomaly_type="x", action="y",
                          success=True, confidence_before=0.5, confidence_after=0.5)


def test_sql_log_is_idempotent_and_round_trips(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'learn.db'}")
    log = SqlRemediationLog(engine)
    record = RemediationRecord(remediation_id="rem-1", timestamp=T0, anomaly_type="disk_full",
                               action="disk_cleanup_expand", success=True,
                               side_effects=["io burst"], confidence_before=0.92,
                               confidence_after=0.9236, severity="P2", root_cause="self")
    assert log.add(record) is True
    assert log.add(record) is False
    assert log.records() == [record]
    assert log.records(since=T0 + timedelta(seconds=1)) == []
    engine.dispose()


def synthetic_outcomes(n: int, seed: int = 0) -> list[RemediationRecord]:
    """Outcomes the static matrix cannot know: rolling restarts fail at night, memory
    remediations fail for P1 incidents, everything else mostly succeeds."""
    rng = random.Random(seed)
    rows = [r for r in MATRIX.rows if r.auto_heal_allowed]
    out = []
    at = datetime(2026, 1, 5, tzinfo=UTC)
    for _ in range(n):
        at += timedelta(minutes=rng.randint(30, 240))
        row = rng.choice(rows)
        severity = rng.choice(["P1", "P2", "P3"])
        p = 0.95
        if row.action == "rolling_restart" and not 7 <= at.hour < 19:
            p = 0.2
        if row.action == "vertical_scale_restart" and severity == "P1":
            p = 0.1
        out.append(RemediationRecord(timestamp=at, anomaly_type=row.id, action=row.action,
                                     success=rng.random() < p, severity=severity,
                                     confidence_before=row.confidence,
                                     confidence_after=row.confidence))
    return out


def test_classifier_beats_the_matrix_and_is_tracked_in_mlflow(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    report = train_success_model(synthetic_outcomes(400), MATRIX, tracking_uri=uri)
    assert report.trained and report.champion == "model", report.reason
    assert report.metrics["holdout_brier_model"] < report.metrics["holdout_brier_matrix"]
    assert (report.n_train, report.n_holdout) == (280, 120)

    import mlflow

    run = mlflow.get_run(report.run_id)
    assert run.data.tags["champion"] == "model"
    assert run.data.metrics["holdout_brier_model"] == pytest.approx(
        report.metrics["holdout_brier_model"])
    loaded = load_success_model(report.model_uri, tracking_uri=uri)

    learned = LearnedConfidence(report, fallback=StaticConfidence())
    row = MATRIX.row("health_check_failed")
    night = Situation("health_check_failed", "web-01", "high", 0.9, severity="P3",
                      at=datetime(2026, 6, 1, 2, 0, tzinfo=UTC))
    day = Situation("health_check_failed", "web-01", "high", 0.9, severity="P3",
                    at=datetime(2026, 6, 1, 12, 0, tzinfo=UTC))
    p_night, source = learned.confidence(row, night)
    p_day, _ = learned.confidence(row, day)
    assert source.startswith("model run ")
    assert p_night < 0.6 < 0.85 < p_day  # the matrix says 0.90 for both
    from migrationbox.healer.learning import _frame, features

    frame = _frame([features("health_check_failed", "rolling_restart", "P3", "self",
                             night.at)])
    assert loaded.predict_proba(frame)[0, 1] == pytest.approx(p_night)


def test_matrix_stays_champion_without_enough_or_informative_outcomes(tmp_path: Path) -> None:
    few = train_success_model(synthetic_outcomes(20), MATRIX,
                              tracking_uri=f"sqlite:///{tmp_path / 'm.db'}")
    assert not few.trained and few.champion == "matrix"
    assert "only 20 outcomes, need 40" in few.reason
    learned = LearnedConfidence(few, fallback=StaticConfidence())
    row = MATRIX.row("high_cpu")
    assert learned.confidence(row, Situation("high_cpu", "w", "high", 0.9)) == (0.95, "matrix")

    all_good = [r.model_copy(update={"success": True}) for r in synthetic_outcomes(60)]
    report = train_success_model(all_good, MATRIX, tracking_uri=f"sqlite:///{tmp_path / 'm.db'}")
    assert not report.trained and "all successes" in report.reason
