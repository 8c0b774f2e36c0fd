"""Training, evaluation and promotion of the sizing and forecasting models.

The retraining DAG (``dags/retrain_sizing.py``) calls these functions one per task;
``python -m ml.sizing.train`` runs them in order from a shell. Every function takes a
:class:`TrainConfig` (or its dict form, as passed through DAG params) and returns a
small JSON-able dict (it travels through XCom).

1. ``check_data``: load and clean the trace, run the great-expectations gate; a
   failure raises and stops everything downstream (no training, no promotion).
2. ``train_sizing``: episodes split by VM (fit, calibration, test) and by time, the
   LightGBM quantile model with its conformal risk calibration
   (``quantile_model``), evaluation against the rule baselines on held-out VMs, everything
   logged to MLflow, the model registered as a new version (the challenger).
3. ``train_forecaster``: the Prophet configurations compared on training VMs, the
   best evaluated on held-out VMs, logged and registered.
4. ``promote_*``: the champion is re-evaluated on the *same* held-out VMs as the
   challenger; the alias moves only if the challenger is better, and the registry
   records why either way.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from dataclasses import asdict, dataclass, field, fields
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from migrationbox.sizing import backtest as bt
from migrationbox.sizing import registry

# The challenger must beat the champion's mean WAPE (CPU and memory p95) and may not
# under-provision more than this much more often.
UNDERPROV_TOLERANCE = 0.02
COVERAGE_TOLERANCE = 0.05


@dataclass(frozen=True)
class TrainConfig:
    quick: bool = False
    max_vms: int | None = None
    use_prophet_features: bool = False  # the quantile model does not use them (no gain)
    forecast_train_vms: int = 10
    forecast_test_vms: int = 8
    seed: int = 20130701
    strict_time_split: bool = True
    min_rows: int = 1000
    tags: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_conf(cls, conf: dict[str, Any] | TrainConfig | None) -> TrainConfig:
        """From DAG params / CLI flags; ``quick`` sets small defaults for tests."""
        if isinstance(conf, TrainConfig):
            return conf
        conf = dict(conf or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(conf) - known)
        if unknown:
            raise ValueError(f"unknown training options: {', '.join(unknown)}")
        if conf.get("quick"):
            conf.setdefault("max_vms", 24)
            conf.setdefault("use_prophet_features", False)
            conf.setdefault("forecast_train_vms", 4)
            conf.setdefault("forecast_test_vms", 3)
        return cls(**conf)

    def as_params(self) -> dict[str, Any]:
        return {k: (json.dumps(v) if isinstance(v, dict) else v)
                for k, v in asdict(self).items()}


@dataclass
class Prepared:
    frame: Any  # cleaned pandas DataFrame
    cleaning: bt.CleaningReport
    path: Path
    digest: str


def prepare(config: TrainConfig) -> Prepared:
    path = bt.trace_path()
    raw = bt.load_trace(path)
    if config.max_vms is not None:
        vms = sorted(raw["vm_id"].unique().tolist())
        rng = np.random.default_rng(config.seed + 1)
        keep = sorted(int(v) for v in rng.choice(vms, size=min(config.max_vms, len(vms)),
                                                  replace=False))
        raw = raw[raw["vm_id"].isin(keep)].reset_index(drop=True)
    frame, cleaning = bt.clean_trace(raw)
    return Prepared(frame, cleaning, path, bt.file_digest(path))


# --------------------------------------------------------------------------- 1. data gate


def check_data(conf: dict[str, Any] | TrainConfig | None = None) -> dict[str, Any]:
    """The quality gate; raises ``QualityGateFailed`` (with reasons) when data is bad."""
    from migrationbox.sizing.quality import check_training_data

    config = TrainConfig.from_conf(conf)
    prepared = prepare(config)
    report = check_training_data(prepared.frame, min_rows=config.min_rows)
    _log_data_check(config, prepared, report)
    if not report.success:
        from migrationbox.sizing.quality import QualityGateFailed

        raise QualityGateFailed(report)
    return {"rows": len(prepared.frame), "vms": int(prepared.frame["vm_id"].nunique()),
            "digest": prepared.digest, "cleaning": prepared.cleaning.summary(),
            "expectations": report.checked}


def _log_data_check(config: TrainConfig, prepared: Prepared, report: Any) -> None:
    import mlflow

    registry.experiment_id()
    with mlflow.start_run(experiment_id=registry.experiment_id(), run_name="data-check"):
        mlflow.set_tags({"stage": "data-check", **config.tags})
        mlflow.log_params({"trace": str(prepared.path), "trace_sha256": prepared.digest,
                           **config.as_params()})
        mlflow.log_metrics({"rows": len(prepared.frame), "quality_success": float(report.success),
                            "quality_failures": len(report.failures)})
        mlflow.log_dict(report.as_dict(), "data/quality.json")
        mlflow.log_dict(asdict(prepared.cleaning), "data/cleaning.json")


# --------------------------------------------------------------------------- 2. sizing


def _forecast_fn(config: TrainConfig) -> bt.ForecastFn | None:
    if not config.use_prophet_features:
        return None
    from migrationbox.sizing.forecast import forecast_features

    return forecast_features


def _episodes(config: TrainConfig, prepared: Prepared) -> tuple[bt.Episodes, bt.Episodes,
                                                                 dict[str, Any]]:
    split = bt.SplitSpec(seed=config.seed, strict_time_split=config.strict_time_split)
    return bt.train_test_episodes(prepared.frame, split, forecast=_forecast_fn(config))


def matched_risk(calibration: bt.Episodes) -> float:
    """The Azure Migrate rule's share short on the training (= calibration) VMs: the risk
    the model is asked for when it is compared with that rule (chosen without the test
    VMs)."""
    rate = bt.score_rules(calibration, with_cost=False, rules=["azure_migrate"])[
        "azure_migrate"].underprov_rate
    return float(min(max(rate, 0.01), 0.5))


def rule_machine_risk(train: bt.Episodes, rule: str = "azure_migrate") -> float:
    """The rule's share short *of the machine it buys* on the training VMs: the risk the
    model's machine choice is tuned to (chosen without the test VMs)."""
    s = bt.score_rules(train, rules=[rule])[rule]
    return float(min(max(s.machine_short_rate, 0.01), 0.5))


def reference_menu() -> Any:
    """The machine shapes the backtest prices against (AWS us-east-1 on demand)."""
    from migrationbox.sizing.quantile_model import MachineMenu

    return MachineMenu.from_catalog(bt._reference_catalog())


def machine_choice_score(model: Any, test: bt.Episodes, menu: Any, risk: float, key: str,
                         label: str, mode: str = "discovery") -> bt.MethodScore:
    """The model's machine choice at ``risk`` scored on held-out episodes."""
    frame = bt.discovery_only(test.frame) if mode == "discovery" else test.frame
    pick = model.choose_machines(frame, menu, risk)
    median = model.predict(frame, model.config.target_risk)
    return bt.score(key, label, test, pick["cpu_capacity"].to_numpy(),
                    pick["mem_capacity"].to_numpy(), median["cpu_p95"].to_numpy(),
                    median["mem_p95"].to_numpy())


def evaluate_model(model: Any, test: bt.Episodes, risks: tuple[float, ...] | None = None,
                   modes: tuple[str, ...] = ("discovery", "history"), with_cost: bool = True
                   ) -> list[bt.MethodScore]:
    """The model's scores on held-out episodes, per input mode and stated risk.

    Method keys: ``ml_<mode>`` at the model's default target risk and
    ``ml_<mode>@<risk>`` for each other risk asked for.
    """
    from migrationbox.sizing.quantile_model import RISK_GRID, ml_key

    target = model.config.target_risk
    risks = tuple(RISK_GRID) if risks is None else risks
    out = []
    for mode in modes:
        frame = bt.discovery_only(test.frame) if mode == "discovery" else test.frame
        for risk in (target, *[r for r in risks if r != target]):
            pred = model.predict(frame, risk)
            key = ml_key(mode, risk, target)
            label = f"ML quantile + conformal ({mode}, stated risk {risk:.1%})"
            out.append(bt.score(key, label, test, pred["cpu_capacity"].to_numpy(),
                                pred["mem_capacity"].to_numpy(), pred["cpu_p95"].to_numpy(),
                                pred["mem_p95"].to_numpy(), with_cost))
    return out


def _pip_requirements() -> list[str]:
    names = ("lightgbm", "scikit-learn", "pandas", "numpy", "mlflow")
    return [f"{n}=={metadata.version(n)}" for n in names]


def _plots(test: bt.Episodes, pred: Any, scores: list[bt.MethodScore], folder: Path
           ) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.5))
    for ax, res in zip(axes, ("cpu", "mem"), strict=True):
        actual = test.frame[f"fut_{res}_p95"].to_numpy()
        ax.scatter(test.frame[f"{res}_p95"], actual, s=12, label="window p95 (persistence)")
        ax.scatter(pred[f"{res}_p95"], actual, s=12, label="model median")
        top = float(np.nanmax([actual.max(), 1.0]))
        ax.plot([0, top], [0, top], color="grey", lw=1)
        ax.set_xlabel("predicted future p95 (% of capacity)")
        ax.set_ylabel("actual future p95")
        ax.set_title(f"{res.upper()}: held-out VMs")
        ax.legend(fontsize=8)
    fig.tight_layout()
    paths.append(folder / "pred_vs_actual.png")
    fig.savefig(paths[-1], dpi=90)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(9, 4))
    ax.scatter([s.mean_capacity_vcpu for s in scores], [s.underprov_rate for s in scores])
    for s in scores:
        ax.annotate(s.method, (s.mean_capacity_vcpu, s.underprov_rate), fontsize=7)
    ax.set_xlabel("mean capacity (vCPU)")
    ax.set_ylabel("share short at p95 (held-out episodes)")
    fig.tight_layout()
    paths.append(folder / "underprovisioning.png")
    fig.savefig(paths[-1], dpi=90)
    plt.close(fig)
    return paths


def train_sizing(conf: dict[str, Any] | TrainConfig | None = None) -> dict[str, Any]:
    """Train the challenger, calibrate its risk, evaluate it against the rules, register it."""
    import mlflow
    from mlflow.models import infer_signature

    from migrationbox.sizing.quantile_model import CalibratedSizer, pyfunc_model, training_rows

    config = TrainConfig.from_conf(conf)
    prepared = prepare(config)
    t0 = time.perf_counter()
    train, test, split = _episodes(config, prepared)
    episodes_s = time.perf_counter() - t0
    if train.frame["vm_id"].nunique() < 2 or len(test) == 0:
        raise RuntimeError(f"no episodes to fit, calibrate or test on: {split}")
    X, Y, groups = training_rows(train.frame)
    t1 = time.perf_counter()
    model = CalibratedSizer().fit(X, Y, groups)
    fit_s = time.perf_counter() - t1
    split["calibration"] = (f"cross-conformal: {model.config.folds} folds grouped by VM over "
                            f"the {len(split['train_vms'])} training VMs")
    matched = matched_risk(train)
    split["matched_risk"] = round(matched, 4)
    rule_scores = list(bt.score_rules(test).values())
    ml_scores = evaluate_model(model, test)
    matched_scores = []
    for mode in ("discovery", "history"):
        frame = bt.discovery_only(test.frame) if mode == "discovery" else test.frame
        p = model.predict(frame, matched)
        matched_scores.append(bt.score(
            f"ml_{mode}_matched",
            f"ML at the p95 x 1.3 rule's training-VM risk ({mode}, {matched:.0%})", test,
            p["cpu_capacity"].to_numpy(), p["mem_capacity"].to_numpy(),
            p["cpu_p95"].to_numpy(), p["mem_p95"].to_numpy()))
    menu = reference_menu()
    machine_risk = rule_machine_risk(train)
    split["machine_matched_risk"] = round(machine_risk, 4)
    tuned = {"matched": model.tune_penalty(X, Y, menu, machine_risk),
             "stated": model.tune_penalty(X, Y, menu, model.config.target_risk)}
    split["machine_choice"] = tuned
    machine_scores = [
        machine_choice_score(
            model, test, menu, machine_risk, "ml_discovery_machines_matched",
            f"ML machine choice at the p95 x 1.3 rule's training-VM machine risk (discovery, "
            f"{machine_risk:.1%})"),
        machine_choice_score(
            model, test, menu, model.config.target_risk, "ml_discovery_machines",
            f"ML machine choice, stated risk {model.config.target_risk:.0%} (discovery)")]
    matched_scores += machine_scores
    scores = rule_scores + ml_scores + matched_scores
    table = bt.accuracy_table(scores)
    all_episodes = bt.build_episodes(prepared.frame)
    risk = bt.option_risk(all_episodes, extra=ml_scores + matched_scores,
                          source="rules on all VMs; ML rows on held-out VMs")
    risk["ml_target_risk"] = model.config.target_risk
    pred = model.predict(test.frame)

    experiment = registry.experiment_id()
    with mlflow.start_run(experiment_id=experiment, run_name="sizing-quantile") as run:
        mlflow.set_tags({"stage": "train-sizing", "model": registry.SIZING_MODEL, **config.tags})
        mlflow.log_params({**config.as_params(), "trace_sha256": prepared.digest,
                           "train_vms": json.dumps(split["train_vms"]),
                           "test_vms": json.dumps(split["test_vms"]),
                           "calibration": split["calibration"],
                           "train_episodes": len(train),
                           "test_episodes": len(test), "cut_day": split["cut_day"],
                           "window_days": split["window_days"],
                           "horizon_days": split["horizon_days"],
                           "matched_risk": round(matched, 4),
                           "machine_matched_risk": round(machine_risk, 4),
                           **{f"model_{k}": v for k, v in asdict(model.config).items()}})
        mlflow.log_input(mlflow.data.from_pandas(train.frame, source=str(prepared.path),
                                                 name="bitbrains-train-episodes"),
                         context="training")
        mlflow.log_input(mlflow.data.from_pandas(test.frame, source=str(prepared.path),
                                                 name="bitbrains-heldout-episodes"),
                         context="evaluation")
        metrics = {"episodes_seconds": episodes_s, "fit_seconds": fit_s}
        for s in scores:
            for key in ("underprov_rate", "mean_capacity_vcpu", "mean_capacity_gib",
                        "monthly_usd", "overprov_usd_month", "wape_cpu", "wape_mem",
                        "machine_short_rate", "bought_vcpu", "bought_gib"):
                value = getattr(s, key)
                if value is not None and not math.isnan(value):
                    metrics[f"{s.method.replace('@', '_at_')}.{key}"] = value
        head = ml_scores[0]
        metrics["score_wape"] = (head.wape_cpu + head.wape_mem) / 2
        metrics["score_underprov"] = head.underprov_rate
        metrics["score_monthly_usd"] = head.monthly_usd
        mlflow.log_metrics(metrics)
        mlflow.log_text(table, "evaluation/accuracy_table.md")
        mlflow.log_dict({"scores": [s.as_dict() for s in scores], "split": split},
                        "evaluation/accuracy.json")
        mlflow.log_dict(risk, registry.RISK_ARTIFACT)
        mlflow.log_dict(asdict(prepared.cleaning), "data/cleaning.json")
        mlflow.log_dict(model.describe(), "model_card.json")
        with tempfile.TemporaryDirectory() as tmp:
            for path in _plots(test, pred, scores, Path(tmp)):
                mlflow.log_artifact(str(path), "evaluation")
        example = X.head(5).astype("float64")
        info = mlflow.pyfunc.log_model(
            name="model", python_model=pyfunc_model(model),
            signature=infer_signature(example, model.predict(example), params={"risk": 0.1}),
            input_example=example, pip_requirements=_pip_requirements(),
            registered_model_name=registry.SIZING_MODEL)
        run_id = run.info.run_id
    return {"run_id": run_id, "version": str(info.registered_model_version),
            "test_vms": split["test_vms"], "split": split, "metrics": _round(metrics),
            "table": table, "config": asdict(config)}


def _round(metrics: dict[str, float]) -> dict[str, float]:
    return {k: round(float(v), 6) for k, v in metrics.items()}


# --------------------------------------------------------------------------- 3. forecaster


def _series(prepared: Prepared, vm_ids: list[int]) -> list[tuple[np.ndarray, np.ndarray]]:
    out = []
    for vm in vm_ids:
        g = prepared.frame[prepared.frame["vm_id"] == vm]
        out.append((g["timestamp_s"].to_numpy(), g["cpu_pct"].to_numpy()))
    return out


def _forecast_split(config: TrainConfig, prepared: Prepared) -> tuple[list[int], list[int]]:
    train_vms, test_vms = bt.split_vms(prepared.frame["vm_id"].unique(), 0.3, config.seed)
    return train_vms[: config.forecast_train_vms], test_vms[: config.forecast_test_vms]


def train_forecaster(conf: dict[str, Any] | TrainConfig | None = None) -> dict[str, Any]:
    """Pick the Prophet configuration on training VMs, judge it on held-out VMs, register."""
    import mlflow
    import pandas as pd
    from mlflow.models import infer_signature

    from migrationbox.sizing import forecast as fc

    config = TrainConfig.from_conf(conf)
    prepared = prepare(config)
    train_vms, test_vms = _forecast_split(config, prepared)
    train_series = _series(prepared, train_vms)
    candidates = []
    t0 = time.perf_counter()
    for cand in fc.CANDIDATES:
        candidates.append((cand, fc.evaluate_config(train_series, cand)))
    best, best_train = min(candidates, key=lambda c: (c[1]["mae"], -c[1]["coverage"]))
    held_out = fc.evaluate_config(_series(prepared, test_vms), best)
    seconds = time.perf_counter() - t0
    experiment = registry.experiment_id()
    with mlflow.start_run(experiment_id=experiment, run_name="forecaster") as run:
        mlflow.set_tags({"stage": "train-forecaster", "model": registry.FORECAST_MODEL,
                         **config.tags})
        mlflow.log_params({**{f"chosen_{k}": v for k, v in best.as_dict().items()},
                           "train_vms": json.dumps(train_vms), "test_vms": json.dumps(test_vms),
                           "trace_sha256": prepared.digest, "history_days": 28,
                           "horizon_days": 30})
        mlflow.log_metrics({"heldout_mae": held_out["mae"],
                            "heldout_coverage": held_out["coverage"],
                            "train_mae": best_train["mae"], "select_seconds": seconds})
        mlflow.log_dict({c.name: m for c, m in candidates}, "evaluation/candidates.json")
        g = prepared.frame[prepared.frame["vm_id"] == test_vms[0]]
        example = fc.hourly(g["timestamp_s"].to_numpy(), g["cpu_pct"].to_numpy()).head(72)
        model = fc.pyfunc_model(best)
        out_example = pd.DataFrame({"ds": pd.to_datetime(["2013-07-04 00:00"]), "yhat": [1.0],
                                    "yhat_lower": [0.0], "yhat_upper": [2.0]})
        info = mlflow.pyfunc.log_model(
            name="model", python_model=model,
            signature=infer_signature(example, out_example, params={"horizon_days": 30}),
            pip_requirements=[f"prophet=={metadata.version('prophet')}",
                              f"pandas=={metadata.version('pandas')}"],
            registered_model_name=registry.FORECAST_MODEL)
        run_id = run.info.run_id
    return {"run_id": run_id, "version": str(info.registered_model_version),
            "config": best.as_dict(), "test_vms": test_vms,
            "metrics": _round({"heldout_mae": held_out["mae"],
                               "heldout_coverage": held_out["coverage"]})}


# --------------------------------------------------------------------------- 4. promotion


def promote_sizing(candidate: dict[str, Any],
                   conf: dict[str, Any] | TrainConfig | None = None) -> dict[str, Any]:
    """Compare the challenger with the champion on the same held-out VMs; maybe promote."""
    config = TrainConfig.from_conf(conf or candidate.get("config"))
    version = candidate["version"]
    champ = registry.champion(registry.SIZING_MODEL)
    if champ is not None and champ.version == version:
        return {"promoted": False, "reason": "the candidate already is the champion"}
    prepared = prepare(config)
    _, test, split = _episodes(config, prepared)
    challenger = registry.unwrap(registry.load_model(registry.SIZING_MODEL, version)).model
    chal_metrics = _promotion_metrics(challenger, test)
    if champ is None:
        reason = "no champion yet: the first model that passed the data gate becomes champion"
        registry.promote(registry.SIZING_MODEL, version, reason, chal_metrics)
        return {"promoted": True, "reason": reason, "challenger": chal_metrics}
    incumbent = registry.unwrap(registry.load_model(registry.SIZING_MODEL, champ.version))
    inc_metrics = _promotion_metrics(getattr(incumbent, "model", None), test)
    if inc_metrics is None:
        reason = (f"champion v{champ.version} is an older kind of model (no calibrated risk); "
                  f"replaced by v{version}")
        registry.promote(registry.SIZING_MODEL, version, reason, chal_metrics)
        return {"promoted": True, "reason": reason, "challenger": chal_metrics}
    cheaper = chal_metrics["monthly_usd"] < inc_metrics["monthly_usd"]
    safe = chal_metrics["underprov_rate"] <= inc_metrics["underprov_rate"] + UNDERPROV_TOLERANCE
    verdict = (f"on the same {len(test)} held-out episodes ({len(split['test_vms'])} VMs), at "
               f"the stated risk {challenger.config.target_risk:.0%}: challenger v{version} "
               f"${chal_metrics['monthly_usd']:.2f}/server-month, "
               f"{chal_metrics['underprov_rate']:.1%} short; champion v{champ.version} "
               f"${inc_metrics['monthly_usd']:.2f}, {inc_metrics['underprov_rate']:.1%} short")
    if cheaper and safe:
        registry.promote(registry.SIZING_MODEL, version, "promoted: " + verdict, chal_metrics)
        return {"promoted": True, "reason": verdict, "challenger": chal_metrics,
                "champion": inc_metrics}
    why = "not cheaper" if not cheaper else "short of capacity more often"
    registry.reject(registry.SIZING_MODEL, version, f"{why}: {verdict}")
    return {"promoted": False, "reason": f"{why}: {verdict}", "challenger": chal_metrics,
            "champion": inc_metrics}


def _promotion_metrics(model: Any, test: bt.Episodes) -> dict[str, float] | None:
    """Cost and risk at the model's stated risk, from discovery figures (what plans use)."""
    if model is None or not hasattr(model, "scores"):
        return None
    s = evaluate_model(model, test, risks=(), modes=("discovery",))[0]
    return {"monthly_usd": s.monthly_usd, "underprov_rate": s.underprov_rate,
            "wape": (s.wape_cpu + s.wape_mem) / 2}


def promote_forecaster(candidate: dict[str, Any],
                       conf: dict[str, Any] | TrainConfig | None = None) -> dict[str, Any]:
    from migrationbox.sizing import forecast as fc

    config = TrainConfig.from_conf(conf)
    version = candidate["version"]
    champ = registry.champion(registry.FORECAST_MODEL)
    if champ is not None and champ.version == version:
        return {"promoted": False, "reason": "the candidate already is the champion"}
    prepared = prepare(config)
    _, test_vms = _forecast_split(config, prepared)
    series = _series(prepared, test_vms)
    chal_cfg = registry.unwrap(registry.load_model(registry.FORECAST_MODEL, version)).config
    chal = fc.evaluate_config(series, chal_cfg)
    if champ is None:
        reason = "no champion yet"
        registry.promote(registry.FORECAST_MODEL, version, reason, chal)
        return {"promoted": True, "reason": reason, "challenger": chal}
    inc_cfg = registry.unwrap(registry.load_model(registry.FORECAST_MODEL, champ.version)).config
    inc = chal if inc_cfg == chal_cfg else fc.evaluate_config(series, inc_cfg)
    verdict = (f"on the same {len(test_vms)} held-out VMs: challenger v{version} "
               f"({chal_cfg.name}) MAE {chal['mae']:.3f}, coverage {chal['coverage']:.1%}; "
               f"champion v{champ.version} ({inc_cfg.name}) MAE {inc['mae']:.3f}, coverage "
               f"{inc['coverage']:.1%}")
    if chal["mae"] < inc["mae"] and chal["coverage"] >= inc["coverage"] - COVERAGE_TOLERANCE:
        registry.promote(registry.FORECAST_MODEL, version, "promoted: " + verdict, chal)
        return {"promoted": True, "reason": verdict}
    registry.reject(registry.FORECAST_MODEL, version, "not better: " + verdict)
    return {"promoted": False, "reason": "not better: " + verdict}


def write_shipped_baseline(run_id: str, path: Path | None = None) -> Path:
    """Copy a run's option-risk table into the package (the no-registry fallback)."""
    import mlflow.artifacts

    registry.configure()
    target = path or Path(bt.__file__).with_name(bt.BASELINE_FILE)
    with tempfile.TemporaryDirectory() as tmp:
        local = mlflow.artifacts.download_artifacts(run_id=run_id,
                                                    artifact_path=registry.RISK_ARTIFACT,
                                                    dst_path=tmp)
        table = json.loads(Path(local).read_text(encoding="utf-8"))
    table["source"] = f"{table.get('source', '')}; MLflow run {run_id}"
    target.write_text(json.dumps(table, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return target


def run_all(conf: dict[str, Any] | TrainConfig | None = None) -> dict[str, Any]:
    """Everything in order, as the DAG does it."""
    config = TrainConfig.from_conf(conf)
    data = check_data(config)
    sizing = train_sizing(config)
    forecaster = train_forecaster(config)
    return {"data": data, "sizing": sizing, "forecaster": forecaster,
            "promote_sizing": promote_sizing(sizing, config),
            "promote_forecaster": promote_forecaster(forecaster, config)}


COMPARED = ("rule", "ml_matched", "ml_machines")


def matched_comparison(conf: dict[str, Any] | TrainConfig | None = None,
                       seeds: tuple[int, ...] = (20130701, 1, 2, 3, 4),
                       n_boot: int = 2000) -> list[dict[str, Any]]:
    """The model vs the p95 x 1.3 rule on several disjoint VM splits, with bootstrap CIs.

    One held-out split of 15 VMs is a small sample; this repeats train, calibrate and
    test with other disjoint VM sets (same time split). Compared per split, from
    discovery figures: the rule; the model's capacity at the rule's training-VM risk
    (``ml_matched``); the model's machine choice tuned to the rule's training-VM risk of
    being short of the machine it buys (``ml_machines``). Each carries per-episode
    outcomes (``outcomes``) so that splits can be pooled, and 95 % CIs of the
    differences against the rule from resampling test VMs. Nothing is logged.

    Also a bound no method can beat (``oracle``): per episode, the cheapest machine that
    fits the *actual* future p95 (at or above the censored-demand floor, as the model's
    machines are). Where the rule's machine costs more than that, a method could have
    saved the difference without a new shortfall (``headroom_usd``); anywhere else a
    saving against the rule means under-buying a machine the rule's fits.
    """
    from migrationbox.sizing.quantile_model import (
        CalibratedSizer,
        censored_floor,
        training_rows,
    )

    config = TrainConfig.from_conf(conf)
    prepared = prepare(config)
    menu = reference_menu()
    out = []
    for seed in seeds:
        split = bt.SplitSpec(seed=seed, strict_time_split=config.strict_time_split)
        train, test, info = bt.train_test_episodes(prepared.frame, split)
        X, Y, groups = training_rows(train.frame)
        model = CalibratedSizer().fit(X, Y, groups)
        risk = matched_risk(train)
        machine_risk = rule_machine_risk(train)
        tuned = model.tune_penalty(X, Y, menu, machine_risk)
        frame = bt.discovery_only(test.frame)
        rule_cpu, rule_mem = bt.RULES["azure_migrate"].capacity(test.frame)
        p = model.predict(frame, risk)
        pick = model.choose_machines(frame, menu, machine_risk)
        caps = {"rule": (rule_cpu, rule_mem),
                "ml_matched": (p["cpu_capacity"].to_numpy(), p["mem_capacity"].to_numpy()),
                "ml_machines": (pick["cpu_capacity"].to_numpy(),
                                pick["mem_capacity"].to_numpy())}
        floor_cpu, floor_mem = censored_floor(frame)
        caps["oracle"] = (np.maximum(test.frame["fut_cpu_p95"].to_numpy(), floor_cpu),
                          np.maximum(test.frame["fut_mem_p95"].to_numpy(), floor_mem))
        outcomes = {k: bt.episode_outcomes(test.frame, *v) for k, v in caps.items()}
        row: dict[str, Any] = {
            "seed": seed, "test_vms": info["test_vms"], "episodes": len(test),
            "matched_risk": risk, "machine_matched_risk": machine_risk, "tuned": tuned,
            "summary": {k: summarise(o) for k, o in outcomes.items()},
            "headroom_usd": headroom(outcomes["rule"], outcomes["oracle"]),
            "ci": {k: differences(outcomes[k], outcomes["rule"], n_boot)
                   for k in COMPARED[1:]},
            "outcomes": {k: {f: o[f].tolist() for f in OUTCOME_FIELDS}
                         for k, o in outcomes.items()},
        }
        out.append(row)
    return out


def headroom(rule: dict[str, Any], oracle: dict[str, Any]) -> float:
    """Mean USD/month by which the rule's machine costs more than the cheapest machine
    fitting the actual future (``oracle``): the most any method can save against the
    rule without being short of machine on an episode where the rule is not."""
    diff = np.asarray(rule["usd"], dtype=float) - np.asarray(oracle["usd"], dtype=float)
    return float(np.nanmean(np.maximum(diff, 0.0)))


OUTCOME_FIELDS = ("vm_id", "short", "machine_short", "vcpu", "gib", "bought_vcpu",
                  "bought_gib", "usd")


def summarise(outcomes: dict[str, Any]) -> dict[str, float]:
    """Means of the per-episode outcomes (rates, capacities, USD/month)."""
    return {f: float(np.nanmean(np.asarray(outcomes[f], dtype=float)))
            for f in OUTCOME_FIELDS if f != "vm_id"}


def differences(a: dict[str, Any], b: dict[str, Any], n_boot: int = 2000,
                clusters: Any = None) -> dict[str, dict[str, float]]:
    """``a - b`` per outcome with 95 % CIs from resampling VMs (or ``clusters``)."""
    groups = np.asarray(a["vm_id"] if clusters is None else clusters)
    return {f: bt.bootstrap_difference(groups, np.asarray(a[f], dtype=float),
                                       np.asarray(b[f], dtype=float), n_boot=n_boot)
            for f in ("short", "machine_short", "vcpu", "gib", "bought_vcpu", "bought_gib",
                      "usd")}


def pooled(rows: list[dict[str, Any]], n_boot: int = 2000) -> dict[str, Any]:
    """All splits' test episodes together; CIs resample VMs (a VM tested in several
    splits is one cluster, so overlapping splits are not counted as independent)."""
    cat: dict[str, dict[str, np.ndarray]] = {}
    for k in (*COMPARED, "oracle"):
        if all(k in r["outcomes"] for r in rows):
            cat[k] = {f: np.concatenate([np.asarray(r["outcomes"][k][f], dtype=float)
                                         for r in rows]) for f in OUTCOME_FIELDS}
    out_headroom = headroom(cat["rule"], cat["oracle"]) if "oracle" in cat else float("nan")
    return {"episodes": len(cat["rule"]["short"]),
            "vms": len(np.unique(cat["rule"]["vm_id"])),
            "summary": {k: summarise(v) for k, v in cat.items()},
            "headroom_usd": out_headroom,
            "ci": {k: differences(cat[k], cat["rule"], n_boot) for k in COMPARED[1:]}}
