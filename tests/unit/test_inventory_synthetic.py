"""Synthetic estates for the benchmark: valid, realistic shape, deterministic."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import networkx as nx
import pytest

from migrationbox.inventory.resolve import dependency_edges
from migrationbox.inventory.synthetic import ROLES, generate_estate, write_estate
from migrationbox.inventory.validation import validate_inventory, validate_records

TIER_ORDER = {"infrastructure": 0, "data": 1, "application": 2, "web": 3, "edge": 4}


@pytest.fixture(scope="module")
def estate() -> list[dict]:
    return generate_estate(3000, seed=11)


def test_synthetic_estate_validates(estate: list[dict]) -> None:
    report = validate_records(estate)
    assert report.quarantined == [], report.issue_lines()[:5]
    assert len(report.valid) == 3000 and report.warnings == []


def test_deterministic_for_a_seed() -> None:
    assert generate_estate(300, seed=3) == generate_estate(300, seed=3)
    assert generate_estate(300, seed=3) != generate_estate(300, seed=4)


def test_density_tiers_cycles_and_environments(estate: list[dict]) -> None:
    report = validate_records(estate)
    per_server = sum(len(r["network_dependencies"]) for r in estate) / len(estate)
    assert 3.0 <= per_server <= 6.0
    tier = {r["server_id"]: ROLES[r["role"]].tier for r in estate}
    edges = dependency_edges(report.valid)
    assert len(edges) == sum(len(r["network_dependencies"]) for r in estate)  # all resolve
    downward = sum(TIER_ORDER[tier[b]] < TIER_ORDER[tier[a]] for a, b, _ in edges)
    assert downward / len(edges) > 0.8  # mostly toward lower tiers
    g = nx.DiGraph((a, b) for a, b, _ in edges)
    sccs = [c for c in nx.strongly_connected_components(g) if len(c) > 1]
    assert len(sccs) >= 10  # replication clusters and a few API pairs
    assert max(len(c) for c in sccs) <= 3  # never one giant component
    envs = Counter(r["environment"] for r in estate)
    assert envs["production"] > len(estate) / 2 and len(envs) == 3
    # infrastructure is a hub: every non-infrastructure server depends on it
    infra = {sid for sid, t in tier.items() if t == "infrastructure"}
    assert all(any(b in infra for b in g.successors(a)) for a in g.nodes if a not in infra)


def test_small_estates_still_validate() -> None:
    for n in (1, 7, 60):
        records = generate_estate(n, seed=n)
        assert len(records) == n
        assert validate_records(records).ok


def test_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError):
        generate_estate(0)
    with pytest.raises(ValueError):
        generate_estate(10, dependency_density=0)


def test_write_estate_folder_jsonl_and_parts(tmp_path: Path) -> None:
    records = generate_estate(120, seed=5)
    jsonl = write_estate(records, tmp_path / "e.jsonl")
    assert len(jsonl) == 1 and validate_inventory(jsonl[0]).ok
    folder = tmp_path / "folder"
    assert len(write_estate(records, folder)) == 120
    assert len(validate_inventory(folder).valid) == 120
    # rewriting with fewer records replaces the earlier files
    parts = write_estate(records[:50], folder, per_file=20)
    assert [p.name for p in parts] == ["part-00001.json", "part-00002.json", "part-00003.json"]
    assert sorted(p.name for p in folder.glob("[!.]*.json")) == [p.name for p in parts]
    # refuses to mix into someone else's folder
    other = tmp_path / "other"
    other.mkdir()
    (other / "theirs.json").write_text("{}")
    with pytest.raises(FileExistsError):
        write_estate(records, other)
