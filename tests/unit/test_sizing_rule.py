"""The provisional performance-based sizing rule."""

from __future__ import annotations

import pytest

from migrationbox.inventory.models import ServerRecord
from migrationbox.sizing.catalog import (
    NoInstanceFits,
    UnsupportedArchitecture,
    cheapest_fitting,
    load_catalog,
)
from migrationbox.sizing.rule import required_resources, size_server, storage_gb


def server(cores: int = 8, ram: float = 32, arch: str | None = None, disk: float = 500,
           data: float | None = 120, **baseline: float) -> ServerRecord:
    perf = {"cpu_avg_utilization_pct": 20.0, "memory_avg_utilization_pct": 40.0, **baseline}
    return ServerRecord(
        server_id="srv-1",
        hostname="srv-1.corp.example",
        ip_addresses=["10.0.0.1"],
        os={"type": "Linux", "architecture": arch},
        hardware={"cpu_cores": cores, "ram_gb": ram, "disk_total_gb": disk},
        applications=[{"name": "postgresql", "data_size_gb": data}],
        performance_baseline=perf,
    )


def test_p95_wins_over_peak_and_average():
    need = required_resources(server(cpu_p95_utilization_pct=50, cpu_peak_utilization_pct=90,
                                     memory_peak_utilization_pct=80))
    assert need.cpu_basis == "p95" and need.vcpu == pytest.approx(8 * 0.5 * 1.3)
    assert need.memory_basis == "peak" and need.memory_gib == pytest.approx(32 * 0.8 * 1.3)


def test_average_is_scaled_to_a_peak_and_capped_at_100_percent():
    need = required_resources(server())
    assert need.cpu_basis == "avg*1.5"
    assert need.vcpu == pytest.approx(8 * 0.30 * 1.3)
    assert need.memory_gib == pytest.approx(32 * 0.60 * 1.3)
    busy = required_resources(server(cpu_avg_utilization_pct=90))
    assert busy.vcpu == pytest.approx(8 * 1.0 * 1.3)


def test_minimum_one_vcpu_and_one_gib():
    need = required_resources(server(cores=1, ram=1, cpu_avg_utilization_pct=1,
                                     memory_avg_utilization_pct=1))
    assert (need.vcpu, need.memory_gib) == (1.0, 1.0)


def test_size_server_picks_the_cheapest_fitting_type_and_prices_it():
    s = server(cpu_p95_utilization_pct=70, memory_p95_utilization_pct=70)
    sizing = size_server(s)
    need = required_resources(s)
    best = cheapest_fitting(need.vcpu, need.memory_gib)
    assert sizing.instance_type == best.name
    assert sizing.vcpu >= need.vcpu and sizing.memory_gib >= need.memory_gib
    assert sizing.method == "rule:cpu=p95*1.3,mem=p95*1.3"
    assert sizing.monthly_usd == pytest.approx(round(best.hourly_usd * 730, 2))
    assert sizing.storage_gb == 500  # the source disk
    assert sizing.storage_monthly_usd == pytest.approx(40.0)  # 500 GB of gp3 at 0.08
    assert "generated 2026-07-20" in sizing.price_source and "gp3" in sizing.price_source
    assert (sizing.cloud, sizing.region) == ("aws", "us-east-1")
    # no cheaper candidate fits
    for t in load_catalog().candidates():
        if t.hourly_usd < best.hourly_usd:
            assert t.vcpu < need.vcpu or t.memory_gib < need.memory_gib


def test_comfort_factor_changes_the_requirement():
    s = server(cpu_p95_utilization_pct=100, memory_p95_utilization_pct=100)
    assert size_server(s, comfort_factor=1.0).vcpu >= 8
    assert size_server(s, comfort_factor=2.0).vcpu >= 16
    assert size_server(s, comfort_factor=2.0).method == "rule:cpu=p95*2,mem=p95*2"


def test_storage_never_below_data_or_root_volume():
    assert storage_gb(server(disk=0, data=100)) == 130  # data × comfort when disk unknown
    assert storage_gb(server(disk=50, data=80)) == 80
    assert storage_gb(server(disk=0, data=0)) == 8


def test_impossible_size_raises_naming_the_server():
    huge = server(cores=4096, ram=60000, cpu_p95_utilization_pct=100,
                  memory_p95_utilization_pct=100)
    with pytest.raises(NoInstanceFits, match=r"^server srv-1: no instance type fits 5324\.8 vCPU"):
        size_server(huge)


def test_architecture_is_respected():
    assert load_catalog().get(size_server(server(arch="aarch64")).instance_type).arch == "arm64"
    assert load_catalog().get(size_server(server(arch="amd64")).instance_type).arch == "x86_64"
    with pytest.raises(UnsupportedArchitecture, match=r"server srv-1: os\.architecture: .*sparc"):
        size_server(server(arch="sparc64"))
