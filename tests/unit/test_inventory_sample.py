"""The sample estate: valid, plan-shaped, with cycles and non-production servers."""

from __future__ import annotations

import importlib.util
import sys
from collections import Counter
from datetime import timedelta
from pathlib import Path

import networkx as nx
import pytest

from migrationbox.inventory.resolve import dependency_edges
from migrationbox.inventory.validation import load_estate, validate_inventory

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "include" / "estates" / "sample"
SCRIPT = ROOT / "scripts" / "generate_sample_estate.py"


@pytest.fixture(scope="module")
def estate():
    return load_estate(SAMPLE, "sample")


@pytest.fixture(scope="module")
def graph(estate) -> nx.DiGraph:
    g = nx.DiGraph()
    g.add_nodes_from(s.server_id for s in estate.servers)
    g.add_edges_from((a, b) for a, b, _ in dependency_edges(estate.servers))
    return g


def _generator():
    spec = importlib.util.spec_from_file_location("generate_sample_estate", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_sample_validates_without_quarantine_or_warnings() -> None:
    report = validate_inventory(SAMPLE)
    assert report.quarantined == [] and report.warnings == []
    assert len(report.valid) >= 50
    assert all(Path(f).name.startswith("srv-") for f in report.files)


def test_sample_has_the_plans_roles(estate) -> None:
    roles = Counter(s.role for s in estate.servers if s.is_production)
    assert roles == {"dns": 2, "ldap": 2, "monitoring": 2, "postgresql-primary": 1,
                     "postgresql-replica": 1, "redis": 3, "mongodb": 4, "web": 12,
                     "api": 15, "worker": 8, "load-balancer": 2, "vpn": 2}
    assert all(s.role for s in estate.servers)
    envs = Counter(s.environment.value for s in estate.servers)
    assert envs["production"] >= 50 and envs["staging"] >= 2 and envs["development"] >= 1


def test_sample_records_are_consistent(estate) -> None:
    for s in estate.servers:
        b = s.performance_baseline
        assert b.cpu_avg_utilization_pct <= b.cpu_p95_utilization_pct <= b.cpu_peak_utilization_pct
        assert (b.memory_avg_utilization_pct <= b.memory_p95_utilization_pct
                <= b.memory_peak_utilization_pct)
        assert s.storage and sum(f.size_gb for f in s.storage.filesystems) == \
            s.hardware.disk_total_gb
        for fs in s.storage.filesystems:
            assert fs.used_gb is not None and fs.used_gb <= fs.size_gb
        assert s.security and set(s.listening_ports) <= set(s.security.open_ports)
        assert s.backup and s.backup.available
        assert all(ip.startswith(("10.20.", "10.21.", "10.22.", "203.0.113."))
                   for ip in s.ip_addresses)
        assert s.discovered_at is not None
        for cert in s.security.certificates:
            assert cert.expires_at and cert.expires_at > s.discovered_at
    data_stores = [s for s in estate.servers if s.role in ("postgresql-primary", "mongodb")]
    assert all(any(a.data_size_gb for a in s.applications) for s in data_stores)
    assert any(s.data_residency for s in estate.servers)
    soon = [s.server_id for s in estate.servers for c in s.security.certificates
            if c.expires_at - s.discovered_at < timedelta(days=30)]
    assert len(soon) == 1


def test_sample_dependency_cycles(estate, graph: nx.DiGraph) -> None:
    host = {s.server_id: s.hostname.split(".")[0] for s in estate.servers}
    cycles = sorted(sorted(host[m] for m in c)
                    for c in nx.strongly_connected_components(graph) if len(c) > 1)
    assert ["pg-01", "pg-02"] in cycles
    assert ["redis-01", "redis-02", "redis-03"] in cycles
    assert len(cycles) == 6


def test_sample_waves_follow_the_plans_tiers(estate, graph: nx.DiGraph) -> None:
    """Topological generations (dependencies first) give infrastructure, data, apps, edge."""
    condensed = nx.condensation(graph)
    host = {s.server_id: s.hostname.split(".")[0] for s in estate.servers}
    generations = [sorted(host[m] for n in gen for m in condensed.nodes[n]["members"])
                   for gen in nx.topological_generations(condensed.reverse())]
    assert generations[0] == ["dns-01", "dns-02", "ldap-01", "ldap-02", "mon-01", "mon-02"]
    assert {"pg-01", "mongo-01", "redis-01"} <= set(generations[1])
    assert set(generations[-1]) == {"lb-01", "lb-02", "vpn-01", "vpn-02"}


def test_generator_is_deterministic_and_files_are_current(tmp_path: Path) -> None:
    gen = _generator()
    assert gen.build_sample_estate(7) == gen.build_sample_estate(7)
    assert gen.build_sample_estate(7) != gen.build_sample_estate(8)
    assert gen.main(["--check"]) == 0, "re-run scripts/generate_sample_estate.py"
    # writing is idempotent and removes stale server files
    out = tmp_path / "sample"
    out.mkdir()
    (out / "srv-999.json").write_text("{}")
    assert gen.main(["--output", str(out)]) == 0
    assert not (out / "srv-999.json").exists()
    assert gen.main(["--output", str(out), "--check"]) == 0
    (out / "srv-001.json").write_text("{}")
    assert gen.main(["--output", str(out), "--check"]) == 1
