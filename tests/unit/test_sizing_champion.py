"""`size` and `plan` use the registered champion and name its version; rules only without.

One quick training run (12 VMs of the shipped Bitbrains trace) into a temporary MLflow
store registers and promotes a real champion; the commands then load it from there.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
from pathlib import Path

import pytest

from migrationbox.sizing import registry

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "include" / "estates" / "sample"

pytestmark = pytest.mark.timeout(900)


def _cli(module: object, *argv: str) -> tuple[int, str]:
    parser = argparse.ArgumentParser(prog="migrationbox")
    module.register(parser.add_subparsers(dest="command", required=True))  # type: ignore[attr-defined]
    args = parser.parse_args(list(argv))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = args.handler(args)
    return code, out.getvalue()


@pytest.fixture(scope="module")
def champion_home(tmp_path_factory: pytest.TempPathFactory):
    """A MigrationBox runtime whose MLflow registry holds a promoted sizing champion."""
    import sys

    home = tmp_path_factory.mktemp("mb-champion")
    saved = {k: os.environ.get(k) for k in ("MIGRATIONBOX_HOME", "MLFLOW_TRACKING_URI")}
    os.environ["MIGRATIONBOX_HOME"] = str(home)
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    sys.path.insert(0, str(REPO))
    try:
        from ml.sizing import pipeline

        conf = {"quick": True, "max_vms": 12}
        trained = pipeline.train_sizing(conf)
        assert pipeline.promote_sizing(trained, conf)["promoted"] is True
        yield trained
    finally:
        sys.path.remove(str(REPO))
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture()
def with_champion(champion_home, monkeypatch):
    monkeypatch.setenv("MIGRATIONBOX_HOME", os.environ["MIGRATIONBOX_HOME"])
    return champion_home


def test_size_names_the_champion_version_for_every_server(with_champion) -> None:
    from migrationbox.cli import size as size_cli

    version = with_champion["version"]
    code, out = _cli(size_cli, "size", str(SAMPLE), "--cloud", "aws", "--format", "json")
    assert code == 0
    report = json.loads(out)
    label = f"migrationbox-sizing v{version} (champion)"
    assert report["servers"]
    for server in report["servers"]:
        assert server["sized_by"].startswith(f"model {label}, stated risk ")
        pred = server["model_prediction"]
        assert pred["cpu_capacity"] >= 0 and 0 < pred["target_risk"] < 1
    model_note = next(n for n in report["notes"] if n.startswith("MODEL "))
    assert label in model_note and "measured" in model_note

    code, text = _cli(size_cli, "size", str(SAMPLE), "--cloud", "aws")
    assert code == 0
    assert text.count(f"Sized by: model {label}") == len(report["servers"])


def test_plan_provisions_the_model_capacity_and_records_its_version(with_champion) -> None:
    """When the model is the cheapest method within the risk bar, the plan provisions its
    capacity and the plan's sizing records the model version that produced it."""
    from migrationbox.inventory.validation import validate_inventory
    from migrationbox.sizing.options import (
        RiskTable,
        SizingEngine,
        planning_sizing,
        size_estate,
    )

    table = registry.champion_risk_table()
    assert table is not None
    # only the model competes with the unsafe Balanced option here (rules left out), and
    # the bar admits every risk the model was measured at
    methods = {k: v for k, v in table["methods"].items()
               if k.startswith("ml_") or k in ("balanced", "aggressive")}
    ml_rates = [v["underprov_rate"] for k, v in methods.items() if k.startswith("ml_")]
    bar = min(0.99, max(ml_rates) + 0.001)
    risk = RiskTable.from_dict({**table, "methods": methods})
    engine = SizingEngine.with_champion(clouds=["aws"], risk=risk, max_risk=bar)
    servers = validate_inventory(SAMPLE).valid
    result = size_estate(servers, engine)
    version = with_champion["version"]
    by_model = 0
    for s in result.servers:
        sizing = planning_sizing(s, "aws", "balanced")
        balanced = s.option("balanced")
        if balanced.unsafe:
            assert balanced.safe_variant is not None and balanced.safe_variant.method == "ml"
            assert f"+safe:ml (model migrationbox-sizing v{version} (champion), stated risk" \
                in sizing.method
            assert sizing.required_vcpu == pytest.approx(
                balanced.safe_variant.required_vcpu, abs=1e-3)
            by_model += 1
    assert by_model > 0


def test_plan_says_which_model_sized_the_estate(with_champion) -> None:
    from migrationbox.cli import plan as plan_cli

    code, out = _cli(plan_cli, "plan", str(SAMPLE), "--no-store")
    assert code == 0
    assert f"Sizing model: migrationbox-sizing v{with_champion['version']} (champion)" in out
    counted = sum(int(line.split(": ", 1)[1].split(" server")[0])
                  for line in out.splitlines() if line.startswith("Sized by "))
    code, js = _cli(plan_cli, "plan", str(SAMPLE), "--no-store", "--format", "json")
    assert counted == len(json.loads(js)["servers"])


def test_the_demo_shows_the_champion_with_its_held_out_figures(with_champion) -> None:
    from migrationbox.orchestration.demo import champion_lines

    card = registry.champion_card()
    assert card is not None and card["version"] == with_champion["version"]
    lines = champion_lines(card)
    assert lines[0].startswith(f"champion migrationbox-sizing v{card['version']} (MLflow run ")
    assert any("short" in line and "of box" in line for line in lines)  # the header
    assert any("Azure Migrate rule (p95 x 1.3)" in line and "%" in line for line in lines)
    header = next(line for line in lines if "of box" in line).split()
    assert header == ["option", "short", "of", "box", "vCPU", "bought", "GiB", "USD/mo"]
    ml = next(line for line in lines if line.strip().startswith("ML, stated risk"))
    assert ml.count("%") >= 3 and "$" in ml  # the stated risk, short, short of box, cost


def test_without_a_champion_size_and_plan_say_rules_only_and_how_to_train(tmp_path,
                                                                         monkeypatch) -> None:
    from migrationbox.cli import plan as plan_cli
    from migrationbox.cli import size as size_cli

    monkeypatch.setenv("MIGRATIONBOX_HOME", str(tmp_path / "empty"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    code, out = _cli(size_cli, "size", str(SAMPLE), "--cloud", "aws", "--format", "json")
    assert code == 0
    report = json.loads(out)
    for server in report["servers"]:
        assert server["sized_by"].startswith("rules only: no champion model registered")
        assert "python -m ml.sizing.train" in server["sized_by"]
        assert server["model_prediction"] is None
    code, out = _cli(plan_cli, "plan", str(SAMPLE), "--no-store")
    assert code == 0
    assert "Sizing model: rules only: no champion model registered" in out
    assert "migrationbox_retrain_sizing" in out
    assert "+safe:ml" not in out


class _RetrainApi:
    """Airflow's REST API as the demo's training step uses it, for one run that ends in
    ``final``. (The real platform is exercised by `make demo`; the DAG itself runs for
    real in tests/integration/test_retrain_dag.py.)"""

    def __init__(self, final: str) -> None:
        self.final = final
        self.calls: list[tuple] = []

    def wait_for_dag(self, dag_id: str, timeout: float) -> dict:
        self.calls.append(("wait_for_dag", dag_id))
        return {"dag_id": dag_id}

    def unpause(self, dag_id: str) -> dict:
        self.calls.append(("unpause", dag_id))
        return {}

    def trigger(self, dag_id: str, conf: dict) -> dict:
        self.calls.append(("trigger", dag_id, conf))
        return {"dag_run_id": "manual__demo"}

    def dag_run(self, dag_id: str, run_id: str) -> dict:
        return {"state": self.final}

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        return [{"task_id": "train_sizing_model", "state": self.final}]


def test_the_demo_trains_through_the_dag_and_shows_the_champion(with_champion) -> None:
    from migrationbox.orchestration.demo import (
        DEMO_TRAINING_CONF,
        RETRAIN_DAG,
        train_sizing_champion,
    )

    said: list[str] = []
    api = _RetrainApi("success")
    card = train_sizing_champion(api, said.append, timeout=30)
    assert ("trigger", RETRAIN_DAG, DEMO_TRAINING_CONF) in api.calls
    assert DEMO_TRAINING_CONF.get("sizing_only") is True  # no Prophet: the quick path
    assert card is not None and card["version"] == with_champion["version"]
    assert any(f"champion migrationbox-sizing v{card['version']}" in line for line in said)

    said.clear()
    assert train_sizing_champion(_RetrainApi("failed"), said.append, timeout=30) is None
    assert said[-1] == "  training run failed: planning with rules only"
