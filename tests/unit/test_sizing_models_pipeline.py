"""Quality gate, MLflow tracking and champion/challenger promotion (real local MLflow store)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from migrationbox.sizing import backtest as bt
from migrationbox.sizing import registry
from migrationbox.sizing.quality import QualityGateFailed, check_training_data

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture()
def runtime(tmp_path, monkeypatch):
    monkeypatch.setenv("MIGRATIONBOX_HOME", str(tmp_path / "mb"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.syspath_prepend(str(REPO))
    return tmp_path


def _trace(n_vms: int = 6, days: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    frames = []
    for vm in range(1, n_vms + 1):
        t = 1_372_629_600 + np.arange(0, days * 86400, 300)
        cpu = rng.uniform(0, 60, t.size)
        frames.append(pd.DataFrame({
            "vm_id": vm, "month": "2013-7", "timestamp_s": t, "cpu_cores": 2,
            "cpu_capacity_mhz": 5200.0, "cpu_usage_mhz": cpu * 52, "cpu_usage_pct": cpu,
            "mem_capacity_kb": 4194304.0, "mem_usage_kb": rng.uniform(1e6, 3e6, t.size),
            "disk_read_kbps": 0.0, "disk_write_kbps": 0.0, "net_rx_kbps": 0.0,
            "net_tx_kbps": 0.0}))
    return pd.concat(frames, ignore_index=True)


def test_quality_gate_passes_clean_data_and_names_every_failure() -> None:
    clean, _ = bt.clean_trace(_trace())
    assert check_training_data(clean).success
    bad = clean.copy()
    bad.loc[5, "cpu_pct"] = np.nan
    bad.loc[9, "mem_pct"] = 150.0
    bad.loc[[20, 21]] = bad.loc[[21, 20]].to_numpy()  # two samples out of order
    report = check_training_data(bad)
    assert not report.success
    text = "\n".join(report.failures)
    assert "cpu_pct: column values to not be null failed for 1 rows" in text
    assert "mem_pct: column values to be between failed for 1 rows (e.g. 150.0)" in text
    assert "timestamps must strictly increase within each VM" in text


def test_failed_gate_stops_before_anything_is_trained(runtime, monkeypatch) -> None:
    from ml.sizing import pipeline

    raw = _trace()
    raw = pd.concat([raw.iloc[:100], raw.iloc[[150]], raw.iloc[100:150], raw.iloc[151:]])
    folder = runtime / "traces" / Path(bt.TRACE_FILE).parent
    folder.mkdir(parents=True)
    with gzip.open(runtime / "traces" / bt.TRACE_FILE, "wt") as handle:
        raw.to_csv(handle, index=False)
    monkeypatch.setenv("MIGRATIONBOX_TRACES_DIR", str(runtime / "traces"))
    with pytest.raises(QualityGateFailed, match="strictly increase within each VM"):
        pipeline.check_data({"min_rows": 100})
    assert registry.champion(registry.SIZING_MODEL) is None
    client = registry.configure()
    runs = client.search_runs([registry.experiment_id()])
    assert [r.data.tags.get("stage") for r in runs] == ["data-check"]
    assert runs[0].data.metrics["quality_success"] == 0.0


def test_challenger_is_promoted_only_when_better_on_the_same_heldout_vms(runtime) -> None:
    bt.trace_path()  # the trace ships with the project: its absence is a failure
    from ml.sizing import pipeline

    conf = {"quick": True, "max_vms": 12}
    first = pipeline.train_sizing(conf)
    client = registry.configure()
    run = client.get_run(first["run_id"])
    assert {"trace_sha256", "train_vms", "test_vms", "calibration", "matched_risk",
            "model_n_estimators", "model_target_risk"} <= set(run.data.params)
    assert not set(json.loads(run.data.params["train_vms"])) & set(first["test_vms"])
    assert {"ml_discovery.underprov_rate", "ml_discovery.monthly_usd",
            "ml_discovery_matched.mean_capacity_vcpu", "azure_migrate.underprov_rate",
            "azure_migrate.mean_capacity_gib", "score_monthly_usd"} <= set(run.data.metrics)
    assert len(run.inputs.dataset_inputs) == 2  # training and evaluation datasets, digested
    artifacts = {a.path for a in client.list_artifacts(first["run_id"], "evaluation")}
    assert {"evaluation/accuracy_table.md", "evaluation/option_risk.json",
            "evaluation/pred_vs_actual.png", "evaluation/underprovisioning.png"} <= artifacts
    version = client.get_model_version(registry.SIZING_MODEL, first["version"])
    assert version.run_id == first["run_id"]

    assert pipeline.promote_sizing(first, conf)["promoted"] is True
    assert registry.champion(registry.SIZING_MODEL).version == first["version"]
    assert pipeline.promote_sizing(first, conf)["reason"].startswith("the candidate already")

    # the same data and seed train the same model: not better, so the champion stays
    second = pipeline.train_sizing(conf)
    verdict = pipeline.promote_sizing(second, conf)
    assert verdict["promoted"] is False
    assert verdict["reason"].startswith("not cheaper: on the same")
    assert verdict["challenger"] == verdict["champion"]
    assert registry.champion(registry.SIZING_MODEL).version == first["version"]
    tags = client.get_model_version(registry.SIZING_MODEL, second["version"]).tags
    assert tags["rejected_reason"].startswith("not cheaper")
