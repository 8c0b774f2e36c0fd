"""The learning loop: remediation records, per-action confidence, a success classifier.

* Every remediation ends as a :class:`RemediationRecord` in the plan's shape (component
  5: ``remediation_id``, ``timestamp``, ``anomaly_type``, ``action``, ``success``,
  ``time_to_recovery_seconds``, ``side_effects``, ``cost_impact_monthly``,
  ``confidence_before``, ``confidence_after``) plus the classifier's features (resource,
  severity, root cause), kept in a :class:`RemediationLog` (memory or SQL table).
* :class:`ActionPosteriors` keeps a Beta posterior per action. The prior is the matrix
  confidence *c* worth ``prior_strength`` pseudo-outcomes (alpha = c·n, beta = (1-c)·n), so
  the matrix is where learning starts and a few outcomes move it a little: with n = 10, a
  0.95 action becomes 0.955 after one success and 0.864 after one failure. Side effects
  are recorded, not counted against the action: every action has its known consequences
  (the instances a scale-out adds, the restart a restart costs), and counting them as half
  a failure drove a scale-out that healed three times in a row below the auto-heal bar
  (0.95 -> 0.91 -> 0.875 -> 0.846), so the healer stopped healing what it healed well.
  Whether those consequences are acceptable is the matrix's call (risk, approval). The
  posterior mean is the action's confidence, which the decision engine can use (it is a
  ``ConfidenceSource``).
* :func:`train_success_model` fits an XGBoost classifier of success probability on
  (anomaly type, action, severity, root cause, hour, weekday), holding out the most
  recent outcomes (a time split: the model must predict the future). It is tracked in
  MLflow (params, held-out metrics of model and matrix, the model) and becomes the
  champion only when its Brier score on the held-out outcomes beats the static matrix's;
  :class:`LearnedConfidence` uses it only then and otherwise falls back.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import insert, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from migrationbox.healer import tables, tracking
from migrationbox.healer.decision import DecisionMatrix, MatrixRow, Situation

PLAN_FIELDS = ("remediation_id", "timestamp", "anomaly_type", "action", "success",
               "time_to_recovery_seconds", "side_effects", "cost_impact_monthly",
               "confidence_before", "confidence_after")
SEVERITIES = ("P1", "P2", "P3", "P4")
EXPERIMENT = "migrationbox-healer-remediation-success"


def new_remediation_id() -> str:
    return "rem-" + secrets.token_hex(4)


class RemediationRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")

    remediation_id: str = Field(default_factory=new_remediation_id, min_length=1)
    timestamp: datetime
    anomaly_type: str = Field(min_length=1)
    action: str = Field(min_length=1)
    success: bool
    time_to_recovery_seconds: float | None = Field(default=None, ge=0)
    side_effects: list[str] = Field(default_factory=list)
    cost_impact_monthly: float | None = None
    confidence_before: float = Field(ge=0, le=1)
    confidence_after: float = Field(ge=0, le=1)
    resource: str | None = None
    severity: str = "P3"
    root_cause: str = "self"
    notes: str | None = None

    @field_validator("timestamp")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("timestamp must carry a timezone (UTC)")
        return value.astimezone(UTC)

    @field_validator("severity")
    @classmethod
    def _severity(cls, value: str) -> str:
        if value not in SEVERITIES:
            raise ValueError(f"severity must be one of {', '.join(SEVERITIES)}, got {value!r}")
        return value

    def plan_dict(self) -> dict[str, Any]:
        """Exactly the plan's remediation-history shape (JSON-ready)."""
        data = self.model_dump(mode="json")
        return {key: data[key] for key in PLAN_FIELDS}


# --------------------------------------------------------------------------- storage


class RemediationLog(Protocol):
    def add(self, record: RemediationRecord) -> bool: ...

    def records(self, since: datetime | None = None) -> list[RemediationRecord]: ...


class InMemoryRemediationLog:
    def __init__(self) -> None:
        self._records: dict[str, RemediationRecord] = {}

    def add(self, record: RemediationRecord) -> bool:
        """Store once per ``remediation_id``; returns False when it was already there."""
        if record.remediation_id in self._records:
            return False
        self._records[record.remediation_id] = record
        return True

    def records(self, since: datetime | None = None) -> list[RemediationRecord]:
        out = [r for r in self._records.values() if since is None or r.timestamp >= since]
        return sorted(out, key=lambda r: (r.timestamp, r.remediation_id))


class SqlRemediationLog:
    """Records in the healer's ``healer_remediations`` table (idempotent by id)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        tables.ensure_tables(engine)

    def add(self, record: RemediationRecord) -> bool:
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(tables.remediations).values(**record.model_dump()))
        except IntegrityError:
            return False
        return True

    def records(self, since: datetime | None = None) -> list[RemediationRecord]:
        t = tables.remediations
        query = select(t).order_by(t.c.timestamp, t.c.remediation_id)
        if since is not None:
            query = query.where(t.c.timestamp >= since)
        with self.engine.connect() as conn:
            return [RemediationRecord.model_validate(dict(row._mapping))
                    for row in conn.execute(query)]


# --------------------------------------------------------------------------- Beta


@dataclass
class BetaPosterior:
    alpha: float
    beta: float

    @property
    def mean(self) -> float:
        return self.alpha / (self.alpha + self.beta)


@dataclass
class ActionPosteriors:
    """Per-action Beta posteriors seeded from the matrix; also a ``ConfidenceSource``."""

    matrix: DecisionMatrix
    prior_strength: float = 10.0
    posteriors: dict[str, BetaPosterior] = field(default_factory=dict)

    def posterior(self, action: str) -> BetaPosterior:
        if action not in self.posteriors:
            row = self.matrix.by_action(action)
            prior = row.confidence if row is not None else 0.5
            self.posteriors[action] = BetaPosterior(prior * self.prior_strength,
                                                    (1 - prior) * self.prior_strength)
        return self.posteriors[action]

    def update(self, action: str, success: bool, side_effects: Sequence[str] = ()
               ) -> tuple[float, float]:
        """Add one outcome; returns (confidence before, confidence after)."""
        del side_effects  # recorded with the outcome, not evidence of failure (see above)
        post = self.posterior(action)
        before = post.mean
        if success:
            post.alpha += 1
        else:
            post.beta += 1
        return before, post.mean

    @classmethod
    def from_records(cls, matrix: DecisionMatrix, records: Iterable[RemediationRecord],
                     prior_strength: float = 10.0) -> ActionPosteriors:
        posts = cls(matrix, prior_strength)
        for record in sorted(records, key=lambda r: r.timestamp):
            posts.update(record.action, record.success, record.side_effects)
        return posts

    def confidence(self, row: MatrixRow, situation: Situation) -> tuple[float, str]:
        post = self.posterior(row.action)
        return post.mean, f"beta({post.alpha:g}, {post.beta:g})"


def record_outcome(log: RemediationLog, posteriors: ActionPosteriors, *, anomaly_type: str,
                   action: str, success: bool, timestamp: datetime,
                   time_to_recovery_seconds: float | None = None,
                   side_effects: Sequence[str] = (), cost_impact_monthly: float | None = None,
                   resource: str | None = None, severity: str = "P3",
                   root_cause: str = "self", remediation_id: str | None = None,
                   notes: str | None = None) -> RemediationRecord:
    """Update the action's posterior and store the record (with before/after confidence).

    Idempotent per ``remediation_id``: a retried task that records the same remediation
    again neither stores it twice nor counts it twice in the posterior.
    """
    if remediation_id is not None:
        known = {r.remediation_id: r for r in log.records()}
        if remediation_id in known:
            return known[remediation_id]
    before, after = posteriors.update(action, success, side_effects)
    record = RemediationRecord(
        remediation_id=remediation_id or new_remediation_id(), timestamp=timestamp,
        anomaly_type=anomaly_type, action=action, success=success,
        time_to_recovery_seconds=time_to_recovery_seconds, side_effects=list(side_effects),
        cost_impact_monthly=cost_impact_monthly, confidence_before=round(before, 4),
        confidence_after=round(after, 4), resource=resource, severity=severity,
        root_cause=root_cause, notes=notes)
    log.add(record)
    return record


# --------------------------------------------------------------------------- classifier

CATEGORICAL = ("anomaly_type", "action", "root_cause")
NUMERIC = ("severity_rank", "hour_sin", "hour_cos", "weekday")


def features(anomaly_type: str, action: str, severity: str, root_cause: str,
             at: datetime) -> dict[str, Any]:
    """One feature row. Hour is encoded on the circle so 23:00 and 00:00 are neighbours."""
    at = at.astimezone(UTC)
    hour = at.hour + at.minute / 60
    return {
        "anomaly_type": anomaly_type, "action": action, "root_cause": root_cause,
        "severity_rank": float(SEVERITIES.index(severity) + 1) if severity in SEVERITIES
        else 3.0,
        "hour_sin": math.sin(2 * math.pi * hour / 24),
        "hour_cos": math.cos(2 * math.pi * hour / 24),
        "weekday": float(at.weekday()),
    }


def _frame(rows: Sequence[dict[str, Any]]) -> Any:
    import pandas as pd

    return pd.DataFrame(list(rows), columns=[*CATEGORICAL, *NUMERIC])


def _record_features(record: RemediationRecord) -> dict[str, Any]:
    return features(record.anomaly_type, record.action, record.severity, record.root_cause,
                    record.timestamp)


def build_pipeline(seed: int = 0) -> Any:
    """One-hot categorical features (unknown values ignored) → XGBoost."""
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder
    from xgboost import XGBClassifier

    encode = ColumnTransformer(
        [("cat", OneHotEncoder(handle_unknown="ignore"), list(CATEGORICAL))],
        remainder="passthrough")
    model = XGBClassifier(n_estimators=150, max_depth=3, learning_rate=0.1,
                          subsample=0.9, eval_metric="logloss", random_state=seed, n_jobs=1)
    return Pipeline([("encode", encode), ("model", model)])


@dataclass
class TrainingReport:
    trained: bool
    champion: str  # "model" or "matrix"
    reason: str
    n_train: int = 0
    n_holdout: int = 0
    metrics: dict[str, float] = field(default_factory=dict)
    run_id: str | None = None
    model: Any = None
    model_uri: str | None = None


def train_success_model(records: Sequence[RemediationRecord], matrix: DecisionMatrix, *,
                        holdout_fraction: float = 0.3, min_records: int = 40,
                        tracking_uri: str | None = None, experiment: str = EXPERIMENT,
                        seed: int = 0, log_model: bool = True) -> TrainingReport:
    """Train the success classifier and decide whether it beats the static matrix.

    Time split: the oldest ``1 - holdout_fraction`` of outcomes train it, the newest are
    held out. Champion = lower held-out Brier score (ties go to the matrix, which needs
    no model). Every attempt with enough data is one MLflow run.
    """
    import numpy as np
    from sklearn.metrics import accuracy_score, brier_score_loss, log_loss

    ordered = sorted(records, key=lambda r: (r.timestamp, r.remediation_id))
    if len(ordered) < min_records:
        return TrainingReport(False, "matrix", f"only {len(ordered)} outcomes, need "
                              f"{min_records}")
    cut = round(len(ordered) * (1 - holdout_fraction))
    train, hold = ordered[:cut], ordered[cut:]
    y_train = np.array([r.success for r in train], dtype=int)
    y_hold = np.array([r.success for r in hold], dtype=int)
    if len(set(y_train)) < 2:
        return TrainingReport(False, "matrix", "training outcomes are all "
                              f"{'successes' if y_train[0] else 'failures'}",
                              len(train), len(hold))
    pipeline = build_pipeline(seed)
    pipeline.fit(_frame([_record_features(r) for r in train]), y_train)
    p_model = pipeline.predict_proba(_frame([_record_features(r) for r in hold]))[:, 1]

    def static(record: RemediationRecord) -> float:
        row = matrix.by_action(record.action) or matrix.row(record.anomaly_type)
        return row.confidence if row is not None else 0.5

    p_matrix = np.array([static(r) for r in hold])
    eps = 1e-6
    metrics = {
        "holdout_brier_model": float(brier_score_loss(y_hold, p_model)),
        "holdout_brier_matrix": float(brier_score_loss(y_hold, p_matrix)),
        "holdout_logloss_model": float(log_loss(y_hold, np.clip(p_model, eps, 1 - eps),
                                                labels=[0, 1])),
        "holdout_logloss_matrix": float(log_loss(y_hold, np.clip(p_matrix, eps, 1 - eps),
                                                 labels=[0, 1])),
        "holdout_accuracy_model": float(accuracy_score(y_hold, p_model >= 0.5)),
        "holdout_accuracy_matrix": float(accuracy_score(y_hold, p_matrix >= 0.5)),
        "holdout_success_rate": float(y_hold.mean()),
    }
    better = metrics["holdout_brier_model"] < metrics["holdout_brier_matrix"]
    champion = "model" if better else "matrix"
    reason = (f"held-out Brier {metrics['holdout_brier_model']:.4f} (model) vs "
              f"{metrics['holdout_brier_matrix']:.4f} (matrix)")
    run_id, model_uri = _track(pipeline, metrics, champion, len(train), len(hold), seed,
                               tracking_uri or tracking.mlflow_tracking_uri(), experiment,
                               log_model)
    return TrainingReport(True, champion, reason, len(train), len(hold), metrics, run_id,
                          pipeline, model_uri)


#: the classes inside the pipeline that MLflow's skops serialisation must be told to trust
TRUSTED_TYPES = ["xgboost.core.Booster", "xgboost.sklearn.XGBClassifier"]


def _track(pipeline: Any, metrics: dict[str, float], champion: str, n_train: int,
           n_hold: int, seed: int, tracking_uri: str, experiment: str, log_model: bool
           ) -> tuple[str, str | None]:
    from importlib.metadata import version

    import mlflow

    tracking.use(mlflow, tracking_uri)
    experiment_id = tracking.experiment_id(mlflow, experiment, tracking_uri)
    with mlflow.start_run(experiment_id=experiment_id) as run:
        mlflow.log_params({"n_train": n_train, "n_holdout": n_hold, "seed": seed,
                           "features": ",".join((*CATEGORICAL, *NUMERIC)),
                           **{f"xgb_{k}": v for k, v in pipeline.named_steps["model"]
                              .get_params().items()
                              if k in ("n_estimators", "max_depth", "learning_rate")}})
        mlflow.log_metrics(metrics)
        mlflow.set_tag("champion", champion)
        model_uri = None
        if log_model:
            # explicit requirements: MLflow's own inference of them costs ~7 s per log
            info = mlflow.sklearn.log_model(
                pipeline, name="success_model", skops_trusted_types=TRUSTED_TYPES,
                pip_requirements=[f"{p}=={version(p)}" for p in ("scikit-learn", "xgboost")])
            model_uri = info.model_uri
            mlflow.set_tag("model_uri", model_uri)
        return run.info.run_id, model_uri


def load_success_model(model_uri: str, tracking_uri: str | None = None) -> Any:
    """Load the pipeline logged by :func:`train_success_model` (``report.model_uri``)."""
    import mlflow

    tracking.use(mlflow, tracking_uri or tracking.mlflow_tracking_uri())
    return mlflow.sklearn.load_model(model_uri)


@dataclass
class LearnedConfidence:
    """Use the classifier when it is the champion, else ``fallback`` (matrix or Beta)."""

    report: TrainingReport
    fallback: Any  # a ConfidenceSource

    def confidence(self, row: MatrixRow, situation: Situation) -> tuple[float, str]:
        if self.report.champion != "model" or self.report.model is None:
            return self.fallback.confidence(row, situation)
        at = situation.at or datetime.now(UTC)
        frame = _frame([features(situation.anomaly_type, row.action, situation.severity,
                                 situation.root_cause, at)])
        p = float(self.report.model.predict_proba(frame)[0, 1])
        return p, f"model run {self.report.run_id or '(untracked)'}"
