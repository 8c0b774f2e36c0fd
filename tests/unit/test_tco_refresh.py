"""Refresh parsers for the clouds' public price formats, on small samples in those shapes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from migrationbox.sizing.clouds import PricingAssumptions, clear_cache, load_catalog
from migrationbox.sizing.refresh import (
    RefreshError,
    parse_aws_bulk,
    parse_azure_retail,
    parse_gcp_skus,
    refresh,
)
from migrationbox.sizing.tco import commitment_prices

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "pricing"
AWS = FIXTURES / "aws_ec2_bulk_us-east-1.json"
AZURE = FIXTURES / "azure_retail_westeurope.json"
GCP = FIXTURES / "gcp_compute_skus_europe-west1.json"


@pytest.fixture()
def pricing_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("MIGRATIONBOX_PRICING_DIR", str(tmp_path / "pricing"))
    clear_cache()
    yield tmp_path / "pricing"
    clear_cache()


def test_aws_bulk_keeps_shared_linux_on_demand_and_standard_no_upfront_ris() -> None:
    rows, date = parse_aws_bulk(json.loads(AWS.read_text()), "us-east-1")
    by = {r.name: r for r in rows}
    assert date == "2026-07-01"
    assert set(by) == {"m5.large", "c6g.large", "x2iedn.32xlarge"}  # Windows/dedicated/SQL out
    m5 = by["m5.large"]
    assert (m5.ondemand_usd_hr, m5.commit_1y_usd_hr, m5.commit_3y_usd_hr) == (0.096, 0.06, 0.041)
    assert (m5.vcpu, m5.memory_gib) == (2, 8.0)
    assert by["c6g.large"].arch == "arm64"
    assert by["x2iedn.32xlarge"].memory_gib == 4096.0


def test_azure_retail_takes_latest_linux_price_and_reservations_per_hour() -> None:
    rows, date = parse_azure_retail(json.loads(AZURE.read_text()), "westeurope")
    by = {r.name: r for r in rows}
    assert set(by) == {"Standard_D2s_v5", "Standard_E4s_v5"}
    d2 = by["Standard_D2s_v5"]
    assert d2.ondemand_usd_hr == 0.111  # the 2025 price, not the 2023 one; not Windows/Spot
    assert d2.commit_1y_usd_hr == pytest.approx(578.0 / 8760)
    assert d2.commit_3y_usd_hr == pytest.approx(1125.0 / (3 * 8760))
    assert date == "2025-04-01"


def test_gcp_skus_price_machines_from_core_and_ram_rates() -> None:
    specs = {"n2-standard-2": ("n2", 2, 8), "e2-standard-4": ("e2", 4, 16),
             "c3-standard-4": ("c3", 4, 16)}
    rows, date = parse_gcp_skus([json.loads(GCP.read_text())], "europe-west1", specs)
    by = {r.name: r for r in rows}
    assert date == "2026-07-29"
    assert set(by) == {"n2-standard-2", "e2-standard-4"}  # no C3 SKUs in the sample
    n2 = by["n2-standard-2"]
    assert n2.ondemand_usd_hr == pytest.approx(2 * 0.034773 + 8 * 0.004661)  # not "Custom"
    assert n2.commit_1y_usd_hr == pytest.approx(2 * 0.021907 + 8 * 0.002936)
    assert n2.commit_3y_usd_hr == pytest.approx(2 * 0.015648 + 8 * 0.002097)
    assert by["e2-standard-4"].commit_1y_usd_hr is None


def test_refresh_writes_dated_prices_that_the_catalog_then_uses(pricing_dir) -> None:
    path, count, source = refresh("aws", "us-east-1", str(AWS))
    assert path.exists() and count == 3 and source.as_of == "2026-07-01"
    cat = load_catalog("aws", "us-east-1")
    assert cat.price_source.as_of == "2026-07-01" and "bulk" in cat.price_source.text
    m5 = cat.get("m5.large")
    assert m5.hourly_usd == 0.096
    _, three, basis = commitment_prices("aws", m5, PricingAssumptions())
    assert basis == "data" and three == pytest.approx(0.041 * 730)
    refresh("azure", "westeurope", str(AZURE), as_of="2026-11-01")
    az = load_catalog("azure", "westeurope")
    assert az.price_source.as_of == "2026-11-01"
    assert az.get("Standard_D2s_v5").vcpu == 2  # spec from the shipped table
    refresh("gcp", "europe-west1", str(GCP))
    g = load_catalog("gcp", "europe-west1")
    assert g.get("n2-standard-2").commit_3y_monthly_usd == pytest.approx(
        (2 * 0.015648 + 8 * 0.002097) * 730)


def test_refresh_errors_name_the_source(pricing_dir, tmp_path) -> None:
    with pytest.raises(RefreshError, match="no aws machine prices for region 'eu-west-1'"):
        refresh("aws", "eu-west-1", str(AWS))
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(RefreshError, match=r"broken\.json is not JSON"):
        refresh("azure", "westeurope", str(broken))
    with pytest.raises(RefreshError, match="'Items' list expected"):
        refresh("azure", "westeurope", str(GCP))
    with pytest.raises(RefreshError, match="cannot read"):
        refresh("gcp", "europe-west1", str(tmp_path / "missing.json"))
