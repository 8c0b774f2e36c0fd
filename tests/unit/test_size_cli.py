"""``migrationbox size``: three options x three clouds per server, JSON shape, bad input."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from migrationbox.cli import size as size_cli
from migrationbox.sizing.options import SizingReport

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "include" / "estates" / "sample"


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """No MLflow registry: risk comes from the measured table shipped with the package."""
    monkeypatch.setenv("MIGRATIONBOX_HOME", str(tmp_path / "mb"))
    monkeypatch.setenv("MIGRATIONBOX_PRICING_DIR", str(tmp_path / "pricing"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


def run(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="migrationbox")
    size_cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(argv))
    return args.handler(args)


@pytest.fixture(scope="module")
def sample_json(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The sample estate sized once as JSON (module scope keeps the suite fast)."""
    import contextlib
    import io
    import os

    previous = os.environ.get("MIGRATIONBOX_HOME")
    os.environ["MIGRATIONBOX_HOME"] = str(tmp_path_factory.mktemp("mb"))
    buf = io.StringIO()
    try:
        with contextlib.redirect_stdout(buf):
            assert run("size", str(SAMPLE), "--format", "json", "--no-model") == 0
    finally:
        if previous is None:
            os.environ.pop("MIGRATIONBOX_HOME", None)
        else:
            os.environ["MIGRATIONBOX_HOME"] = previous
    return json.loads(buf.getvalue())


def test_text_prints_three_options_per_server_for_three_clouds(capsys) -> None:
    assert run("size", str(SAMPLE), "--cloud", "all", "--no-model") == 0
    out = capsys.readouterr().out
    assert out.count("Server: ") == 58
    for header in ("RECOMMENDATION: AWS (us-east-1)", "RECOMMENDATION: Azure (eastus)",
                   "RECOMMENDATION: GCP (us-central1)"):
        assert out.count(header) == 58
    for option in ("Option 1: Conservative (", "Option 2: Balanced (", "Option 3: Aggressive ("):
        assert out.count(option) == 58 * 3
    assert out.count("⭐ RECOMMENDED") == 58 * 3
    assert "Monthly Cost: $" in out and "3-year commitment, ASSUMED discount" in out
    assert "3-year commitment, from price data" in out  # GCP
    assert "Savings: " in out and "vs on-prem" in out
    assert "prices as of 2026-07-20" in out and "prices as of 2026-06-18" in out
    assert "ASSUMPTION aws commitments" in out and "ASSUMPTION licences" in out
    assert "RISK measured on Bitbrains" in out
    assert "58 server(s) sized for AWS, Azure, GCP; 0 not sized" in out


def test_json_carries_requirement_instance_and_costs_per_option_and_cloud(sample_json) -> None:
    report = SizingReport.model_validate(sample_json)
    assert len(report.servers) == 58 and not report.failed
    for server in report.servers:
        assert [o.option for o in server.options] == ["conservative", "balanced", "aggressive"]
        for option in server.options:
            assert set(option.clouds) == {"aws", "azure", "gcp"}
            for cloud, choice in option.clouds.items():
                assert choice.error is None
                assert choice.required_vcpu >= 0 and choice.required_memory_gib > 0
                assert choice.vcpu >= choice.required_vcpu
                assert choice.memory_gib >= choice.required_memory_gib
                assert choice.instance_type and choice.costs is not None
                assert choice.costs.monthly_3y_commitment <= choice.costs.monthly_on_demand
                assert choice.costs.commitment_basis == (
                    "data" if cloud == "gcp" else "assumption")
            assert option.risk.underprovisioning_rate is not None


def test_stateful_server_gets_unsafe_balanced_with_a_safe_variant(sample_json) -> None:
    pg = next(s for s in sample_json["servers"] if s["server_id"] == "srv-007")
    assert pg["current"]["scalable"] is False
    balanced = pg["options"][1]
    assert balanced["recommended"] and balanced["unsafe"]
    assert balanced["risk"]["basis"].startswith("single instance")
    assert balanced["risk"]["underprovisioning_rate"] > 0.5  # measured, not asserted
    safe = balanced["safe_variant"]
    assert safe["risk"]["underprovisioning_rate"] <= 0.10
    assert safe["required_vcpu"] >= balanced["required_vcpu"]
    assert safe["clouds"]["aws"]["vcpu"] >= balanced["clouds"]["aws"]["vcpu"]
    assert "RHEL" in pg["current"]["licences"]
    assert pg["options"][0]["clouds"]["aws"]["costs"]["licences"] > 0
    assert pg["forecast"]["cpu_pct"]["method"] == "baseline-fallback"


def test_stateless_server_is_auto_scaled_within_bounds(sample_json) -> None:
    web = next(s for s in sample_json["servers"] if s["server_id"] == "srv-039")
    balanced = web["options"][1]
    assert web["current"]["scalable"] is True
    scaling = balanced["clouds"]["aws"]["autoscaling"]
    assert scaling["min_instances"] == 1 and 2 <= scaling["max_instances"] <= 10
    assert balanced["risk"]["basis"].startswith("auto-scaled up to")
    assert balanced["risk"]["scale_outs_per_day"] > 0
    costs = balanced["clouds"]["aws"]["costs"]
    assert costs["compute_blended"] > costs["compute_on_demand"]
    lb = next(s for s in sample_json["servers"] if s["server_id"] == "srv-051")
    assert lb["options"][0]["clouds"]["aws"]["costs"]["egress"] > 0  # internet-facing
    assert web["options"][0]["clouds"]["aws"]["costs"]["egress"] == 0


def _estate_with_giant(tmp_path: Path) -> Path:
    folder = tmp_path / "estate"
    folder.mkdir()
    shutil.copy(SAMPLE / "srv-001.json", folder / "srv-001.json")
    giant = json.loads((SAMPLE / "srv-007.json").read_text())
    giant.update(server_id="srv-big", hostname="big.dc1.example.internal",
                 ip_addresses=["10.20.9.9"], network_dependencies=[])
    giant["hardware"].update(cpu_cores=4096, ram_gb=65536)
    giant["performance_baseline"].update(cpu_peak_utilization_pct=100,
                                         cpu_avg_utilization_pct=90)
    (folder / "srv-big.json").write_text(json.dumps(giant))
    return folder


def test_a_server_too_big_for_any_instance_is_named_and_others_are_sized(tmp_path,
                                                                          capsys) -> None:
    assert run("size", str(_estate_with_giant(tmp_path)), "--no-model") == 1
    out = capsys.readouterr().out
    assert "Server: dns-01.dc1.example.internal (srv-001)" in out
    assert "NOT AVAILABLE: no AWS us-east-1 x86_64 machine type fits" in out
    assert "largest sold:" in out
    assert "WARNING: aws: no AWS us-east-1" in out


def test_a_region_without_prices_is_reported_and_other_clouds_still_sized(capsys) -> None:
    assert run("size", str(SAMPLE / "srv-001.json"), "--region", "aws=mars-north-1",
               "--format", "json", "--no-model") == 1
    data = json.loads(capsys.readouterr().out)
    option = data["servers"][0]["options"][0]
    assert "no prices for region 'mars-north-1'" in option["clouds"]["aws"]["error"]
    assert option["clouds"]["gcp"]["instance_type"]
    assert any(n.startswith("ERROR aws") for n in data["notes"])


def test_other_regions_are_priced_with_their_own_dates(capsys) -> None:
    assert run("size", str(SAMPLE / "srv-001.json"), "--cloud", "aws", "--region",
               "aws=eu-west-1", "--no-model") == 0
    out = capsys.readouterr().out
    assert "RECOMMENDATION: AWS (eu-west-1)" in out
    assert "prices as of 2025-03-02" in out
    assert "gp3 priced at the us-east-1 rate" in out


def _history(path: Path, duplicate: bool = False) -> Path:
    rng = np.random.default_rng(4)
    t0 = 1_751_328_000
    lines = ["timestamp,cpu_pct,mem_pct,net_mbps"]
    for i in range(14 * 96):
        t = t0 + i * 900
        cpu = 35 + 20 * np.sin(2 * np.pi * ((t % 86400) / 86400)) + rng.normal(0, 3)
        lines.append(f"{t},{min(max(cpu, 0), 100):.2f},{55 + rng.normal(0, 2):.2f},"
                     f"{40 + rng.normal(0, 5):.1f}")
        if duplicate and i == 50:
            lines.append(lines[-1])
    path.write_text("\n".join(lines) + "\n")
    return path


def test_size_from_a_history_file_forecasts_with_intervals(tmp_path, capsys) -> None:
    history = _history(tmp_path / "app-7.csv")
    assert run("size", "--history", str(history), "--vcpu", "8", "--memory-gib", "32",
               "--cloud", "gcp", "--format", "json", "--no-model") == 0
    data = json.loads(capsys.readouterr().out)
    server = data["servers"][0]
    assert server["server_id"] == "app-7"
    assert server["demand"]["source"].startswith("history app-7.csv")
    assert server["demand"]["cpu_pct"]["p99_5"] is not None
    fc = server["forecast"]["cpu_pct"]
    assert fc["method"].startswith("prophet:")
    assert [p["horizon_days"] for p in fc["points"]] == [30, 60, 90]
    assert all(p["lower"] <= p["mean"] <= p["upper"] for p in fc["points"])
    assert set(server["forecast"]) == {"cpu_pct", "mem_pct", "net_mbps"}


def test_bad_history_input_gives_clear_messages(tmp_path, capsys) -> None:
    bad = _history(tmp_path / "srv-001.csv", duplicate=True)
    assert run("size", "--history", str(bad), "--vcpu", "4", "--memory-gib", "8",
               "--no-model") == 2
    assert "line 53: duplicate timestamp" in capsys.readouterr().err
    # the same history for an estate server: the server is still sized from discovery
    assert run("size", str(SAMPLE / "srv-001.json"), "--history", str(bad), "--no-model") == 1
    out = capsys.readouterr().out
    assert "WARNING: history" in out and "sized from its discovery baseline instead" in out
    assert out.count("Option 1: Conservative") == 3
    assert run("size", "--history", str(_history(tmp_path / "x.csv")), "--no-model") == 2
    assert "give --vcpu and --memory-gib" in capsys.readouterr().err
    assert run("size", str(SAMPLE), "--region", "aws-eu-west-1") == 2
    assert "expected CLOUD=REGION" in capsys.readouterr().err
    assert run("size") == 2


def test_prices_show_explains_candidates(capsys) -> None:
    assert run("prices", "show", "--cloud", "azure", "--region", "westeurope") == 0
    out = capsys.readouterr().out
    assert "prices as of 2026-06-18" in out and "not a candidate:" in out
    assert run("prices", "show", "--cloud", "aws", "--type", "m5.large") == 0
    assert json.loads(capsys.readouterr().out)["vcpu"] == 2


def test_planning_gets_the_balanced_option_or_its_safe_variant() -> None:
    from migrationbox.inventory.validation import validate_inventory
    from migrationbox.sizing.options import SizingEngine, planning_sizing, size_estate

    servers = [s for s in validate_inventory(SAMPLE).valid
               if s.server_id in ("srv-007", "srv-039")]
    result = size_estate(servers, SizingEngine(clouds=["aws", "gcp"]))
    pg, web = sorted(result.servers, key=lambda s: s.profile.server_id)
    plan_pg = planning_sizing(pg, "aws")
    safe = pg.option("balanced").safe_variant
    assert plan_pg.method == f"options:balanced+safe:{safe.method}"
    assert plan_pg.instance_type == safe.clouds["aws"].machine.name
    assert "prices as of 2026-07-20" in plan_pg.price_source
    plan_web = planning_sizing(web, "gcp")
    assert plan_web.method == "options:balanced" and plan_web.region == "us-central1"
    assert plan_web.instance_type == web.option("balanced").clouds["gcp"].machine.name
    with pytest.raises(ValueError, match="srv-039: cloud 'azure' was not sized"):
        planning_sizing(web, "azure")


def test_an_unsupported_architecture_is_named_and_the_rest_is_sized(tmp_path, capsys) -> None:
    folder = tmp_path / "estate"
    folder.mkdir()
    shutil.copy(SAMPLE / "srv-001.json", folder / "srv-001.json")
    sparc = json.loads((SAMPLE / "srv-002.json").read_text())
    sparc["os"]["architecture"] = "sparc64"
    sparc["network_dependencies"] = []
    (folder / "srv-002.json").write_text(json.dumps(sparc))
    assert run("size", str(folder), "--cloud", "aws", "--no-model") == 1
    out = capsys.readouterr().out
    assert "Server srv-002: NOT SIZED: server srv-002: os.architecture 'sparc64'" in out
    assert "Server: dns-01.dc1.example.internal (srv-001)" in out
    assert "1 server(s) sized for AWS; 1 not sized" in out
