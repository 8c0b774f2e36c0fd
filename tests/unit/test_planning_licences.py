"""The plan says which servers need licence-bearing images, and what that may cost.

No licence prices are in the price data, so the per-server figure must be the stated
assumption (``sizing.clouds.assumptions``) applied to the planned machine, labelled as
an assumption, and absent where there is nothing to apply it to.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from migrationbox.inventory.models import Estate, ServerRecord
from migrationbox.planning.builder import build_plan
from migrationbox.planning.export import plan_from_json, plan_to_json
from migrationbox.sizing.clouds.assumptions import PricingAssumptions

NOW = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)


def srv(sid: str, os_: dict, apps: list[dict] | None = None, cores: int = 4) -> ServerRecord:
    return ServerRecord(
        server_id=sid, hostname=f"{sid}.corp.example",
        ip_addresses=[f"10.20.0.{sum(map(ord, sid)) % 250 + 1}"], os=os_,
        hardware={"cpu_cores": cores, "ram_gb": 16, "disk_total_gb": 100},
        applications=apps or [{"name": "app", "ports": [8080]}],
        performance_baseline={"cpu_avg_utilization_pct": 30,
                              "memory_avg_utilization_pct": 50},
        environment="production")


@pytest.fixture(scope="module")
def plan():
    servers = [
        srv("lin-01", {"type": "Linux", "distribution": "Ubuntu", "version": "22.04.4 LTS",
                       "architecture": "x86_64"}),
        srv("win-01", {"type": "Windows", "distribution": "Windows Server 2019 Datacenter",
                       "version": "10.0.17763", "architecture": "x86_64"}),
        srv("sql-01", {"type": "Windows", "distribution": "Windows Server 2022",
                       "version": "10.0.20348", "architecture": "x86_64"},
            apps=[{"name": "Microsoft SQL Server 2019 Enterprise", "ports": [1433],
                   "kind": "database"}]),
        srv("rhel-01", {"type": "Linux", "distribution": "Red Hat Enterprise Linux",
                        "version": "9.3", "architecture": "x86_64"}),
        srv("aix-01", {"type": "AIX", "version": "7.2", "architecture": "ppc64"}),
    ]
    return build_plan(Estate(name="lic", servers=servers), now=NOW)


def test_every_server_carries_its_source_os(plan) -> None:
    assert plan.server("lin-01").os.name == "Ubuntu"
    assert plan.server("lin-01").os.version == "22.04.4 LTS"
    assert plan.server("win-01").os.name == "Windows Server 2019 Datacenter"
    assert plan.server("aix-01").os.name == "AIX"  # no distribution: the type


def test_linux_without_licensed_software_is_not_flagged(plan) -> None:
    assert plan.server("lin-01").licence is None


def test_windows_is_flagged_with_an_assumed_cost_on_the_planned_vcpus(plan) -> None:
    s = plan.server("win-01")
    a = PricingAssumptions()
    assert s.licence is not None and s.licence.windows and s.licence.sql_server is None
    assert s.sizing is not None
    expected = round(s.sizing.vcpu * a.windows_usd_per_vcpu_hour * 730, 2)
    assert s.licence.assumed_monthly_usd == pytest.approx(expected)
    assert s.licence.basis.startswith("ASSUMPTION, not a quoted price")
    assert f"{s.sizing.vcpu} vCPU of {s.sizing.instance_type}" in s.licence.basis
    assert "Windows Server" in s.licence.note


def test_sql_server_enterprise_adds_its_rate_with_the_four_vcpu_minimum(plan) -> None:
    s = plan.server("sql-01")
    a = PricingAssumptions()
    assert s.licence is not None and s.licence.windows
    assert s.licence.sql_server == "enterprise"
    vcpu = s.sizing.vcpu
    expected = round((vcpu * a.windows_usd_per_vcpu_hour
                      + max(vcpu, a.sql_min_vcpu) * a.sql_enterprise_usd_per_vcpu_hour) * 730, 2)
    assert s.licence.assumed_monthly_usd == pytest.approx(expected)
    assert "SQL Server Enterprise" in s.licence.note
    assert f"at least {a.sql_min_vcpu} vCPU" in s.licence.basis


def test_rhel_is_flagged(plan) -> None:
    s = plan.server("rhel-01")
    assert s.licence is not None and s.licence.rhel and not s.licence.windows


def test_unsized_server_gets_no_invented_figure_and_the_plan_sums_the_rest(plan) -> None:
    assert plan.server("aix-01").sizing is None  # ppc64 cannot be sized
    assert plan.server("aix-01").licence is None
    [line] = [n for n in plan.notes if n.startswith("licences:")]
    flagged = [s for s in plan.servers if s.licence]
    total = sum(s.licence.assumed_monthly_usd for s in flagged)
    assert f"{len(flagged)} server(s)" in line and f"${total:,.2f}/month" in line
    assert "ASSUMPTION" in line


def test_licence_flags_survive_the_plan_json(plan) -> None:
    again = plan_from_json(plan_to_json(plan))
    assert again.server("sql-01").licence == plan.server("sql-01").licence
    assert again.server("lin-01").os == plan.server("lin-01").os
