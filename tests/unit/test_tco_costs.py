"""TCO arithmetic: licences, commitments (data vs assumption), egress, on-prem, overrides."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from migrationbox.sizing.clouds import PricingAssumptions, load_assumptions, load_catalog
from migrationbox.sizing.clouds.storage import quote
from migrationbox.sizing.features import Licences, ServerProfile, UsageStats
from migrationbox.sizing.onprem import OnPremCostModel, estimate, load_onprem_model
from migrationbox.sizing.tco import (
    GB_PER_MBPS_MONTH,
    cloud_cost,
    commitment_prices,
    licence_hourly,
    savings,
)


def _profile(**kw) -> ServerProfile:
    base = ServerProfile(server_id="s1", hostname="s1", vcpu=8, memory_gib=32,
                         cpu=UsageStats(avg=30, p95=50, peak=60),
                         memory=UsageStats(avg=60, p95=70, peak=80), stats_source="test",
                         disk_gb=500, used_gb=200, network_mbps=100)
    return replace(base, **kw)


def test_licence_prices_follow_the_documented_assumptions() -> None:
    a = PricingAssumptions()
    assert licence_hourly(Licences(), 8, a) == 0
    assert licence_hourly(Licences(windows=True), 4, a) == pytest.approx(4 * 0.046)
    # SQL Server is billed for at least 4 vCPUs
    assert licence_hourly(Licences(sql_server="standard"), 2, a) == pytest.approx(4 * 0.1645)
    assert licence_hourly(Licences(sql_server="enterprise"), 8, a) == pytest.approx(8 * 0.399)
    assert licence_hourly(Licences(rhel=True), 4, a) == 0.06
    assert licence_hourly(Licences(rhel=True), 8, a) == 0.13


def test_commitments_use_data_when_present_and_say_assumption_otherwise() -> None:
    a = PricingAssumptions()
    n2 = load_catalog("gcp").get("n2-standard-4")
    one, three, basis = commitment_prices("gcp", n2, a)
    assert basis == "data" and one == n2.commit_1y_monthly_usd and three == n2.commit_3y_monthly_usd
    m5 = load_catalog("aws").get("m5.large")
    one, three, basis = commitment_prices("aws", m5, a)
    assert basis == "assumption"
    assert one == pytest.approx(m5.monthly_usd * (1 - 0.36))
    assert three == pytest.approx(m5.monthly_usd * (1 - 0.56))
    assert any(line.startswith("ASSUMPTION aws commitments") for line in a.notes())
    assert any(line.startswith("DATA gcp commitments") for line in a.notes())


def test_cloud_cost_components_and_egress_only_for_internet_facing_servers() -> None:
    a = PricingAssumptions()
    m = load_catalog("aws").get("m5.2xlarge")
    disk = quote("aws", "us-east-1", "SSD", 500)
    internal = cloud_cost(_profile(licences=Licences(rhel=True)), "aws", m, disk, 500, a)
    assert internal.egress == 0 and internal.egress_gb == 0
    assert internal.storage == pytest.approx(500 * 0.08)
    assert internal.licences == pytest.approx(0.13 * 730)
    assert internal.monthly_on_demand == pytest.approx(
        m.monthly_usd + 500 * 0.08 + 0.13 * 730)
    edge = cloud_cost(_profile(internet_facing=True), "aws", m, disk, 500, a)
    assert edge.egress_gb == pytest.approx(100 * 0.25 * GB_PER_MBPS_MONTH)
    assert edge.egress == pytest.approx(edge.egress_gb * 0.09)
    assert edge.tco_3y_committed == pytest.approx(edge.monthly_3y * 36)


def test_auto_scaled_share_is_paid_on_demand_on_top_of_the_commitment() -> None:
    a = PricingAssumptions()
    m = load_catalog("aws").get("c6a.large")
    disk = quote("aws", "us-east-1", "SSD", 50)
    base = cloud_cost(_profile(), "aws", m, disk, 50, a)
    scaled = cloud_cost(_profile(), "aws", m, disk, 50, a, scale_share=0.25)
    assert scaled.compute_blended == pytest.approx(m.monthly_usd * 1.25)
    assert scaled.monthly_3y - base.monthly_3y == pytest.approx(m.monthly_usd * 0.25)


def test_onprem_cost_model_components() -> None:
    m = OnPremCostModel()
    vm = estimate(_profile(), m)
    host_month = m.host_price_usd / m.amortisation_months + \
        m.host_price_usd * m.hardware_support_pct_per_year / 12
    share = 0.5 * 8 / (64 * 2) + 0.5 * 32 / 1024
    assert vm.hardware == pytest.approx(share * host_month)
    assert vm.storage == pytest.approx(0.5 * 1000 / 60 + 0.5 * 20)
    assert vm.operations == pytest.approx(130_000 / 12 / 75)
    assert vm.licences == pytest.approx(8 / 128 * 64 * 135 / 12)  # hypervisor share
    physical = estimate(_profile(physical=True), m)
    assert physical.hardware > vm.hardware  # no over-subscription
    assert physical.licences == 0  # no hypervisor
    windows_sql = estimate(_profile(licences=Licences(windows=True, sql_server="standard")), m)
    assert windows_sql.licences == pytest.approx(vm.licences + 8 * 5 + 8 * 75)
    edge = estimate(_profile(internet_facing=True), m)
    assert edge.network == pytest.approx(15 + 100 * 0.25 * 1.0)
    assert savings(vm, vm.monthly / 2) == pytest.approx(0.5)


def test_overrides_from_json_files(tmp_path) -> None:
    onprem = tmp_path / "onprem.json"
    onprem.write_text(json.dumps({"usd_per_kwh": 0.30, "servers_per_admin": 30}))
    m = load_onprem_model(onprem)
    assert m.usd_per_kwh == 0.30 and m.servers_per_admin == 30 and m.pue == 1.58
    assert estimate(_profile(), m).operations == pytest.approx(130_000 / 12 / 30)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"pue": 0.5, "colour": "red"}))
    with pytest.raises(ValueError, match=r"bad.json: .*pue.*colour|bad.json: .*colour.*pue"):
        load_onprem_model(bad)
    assumptions = tmp_path / "a.json"
    assumptions.write_text(json.dumps({"commitments": {"aws": {"three_year_discount": 0.6}},
                                       "egress_usd_per_gb": {"gcp": 0.085}}))
    a = load_assumptions(assumptions)
    assert a.commitments["aws"].three_year_discount == 0.6
    assert a.commitments["aws"].one_year_discount == 0.36
    assert a.egress_usd_per_gb == {"aws": 0.09, "azure": 0.087, "gcp": 0.085}
    wrong = tmp_path / "w.json"
    wrong.write_text(json.dumps({"commitments": {"azure": {"one_year_discount": 1.5}}}))
    with pytest.raises(ValueError, match=r"commitments\.azure\.one_year_discount"):
        load_assumptions(wrong)
