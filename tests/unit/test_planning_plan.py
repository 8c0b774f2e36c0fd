"""Planning: dependency graph, criticality, move groups, waves, plan document, export.

Estates are built in code (``srv``/``estate`` below) so each test shows the shape it
relies on.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime

import pytest

from migrationbox.inventory.models import Estate, ServerRecord
from migrationbox.planning.builder import build_plan
from migrationbox.planning.export import (
    PlanIntegrityError,
    plan_from_json,
    plan_to_json,
    wave_spec,
    write_wave_spec,
)
from migrationbox.planning.graph import build_dependency_graph, group_levels
from migrationbox.planning.models import PlanDocument, PlanSettings
from migrationbox.planning.render import render_sequence
from migrationbox.planning.waves import PHASE_HOURS, schedule_groups, tier_of_role

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def srv(sid: str, deps: tuple[str, ...] | list[str] = (), *, env: str = "production",
        role: str | None = None, data: float = 10.0, app_deps: tuple[str, ...] = (),
        octet: int | None = None) -> ServerRecord:
    """A valid discovery record; ``deps`` become network dependencies on port 8080."""
    octet = octet if octet is not None else sum(map(ord, sid)) % 250 + 1
    third = len(sid) % 250
    return ServerRecord(
        server_id=sid,
        hostname=f"{sid}.corp.example",
        ip_addresses=[f"10.9.{third}.{octet}"],
        os={"type": "Linux", "distribution": "Ubuntu", "version": "22.04"},
        hardware={"cpu_cores": 4, "ram_gb": 16, "disk_total_gb": 100},
        applications=[{"name": role or "app", "ports": [8080], "data_size_gb": data,
                       "dependencies": list(app_deps)}],
        network_dependencies=[{"destination": f"{d}:8080"} for d in deps],
        performance_baseline={"cpu_avg_utilization_pct": 30, "memory_avg_utilization_pct": 50},
        environment=env,
        role=role,
    )


def estate(*servers: ServerRecord, name: str = "test") -> Estate:
    return Estate(name=name, servers=list(servers))


def wave_of(plan: PlanDocument) -> dict[str, int]:
    return {s: w.number for w in plan.waves for s in w.server_ids}


def layered_estate(n_apps: int = 60, seed: int = 3) -> Estate:
    """Infra, data, app and edge tiers in both environments, with one cycle each."""
    rnd = random.Random(seed)
    servers: list[ServerRecord] = []
    for env, prefix in (("production", "p"), ("staging", "s")):
        dns = [f"{prefix}-dns-{i}" for i in range(2)]
        dbs = [f"{prefix}-db-{i}" for i in range(6)]
        apps = [f"{prefix}-app-{i:02d}" for i in range(n_apps)]
        servers += [srv(d, env=env, role="dns") for d in dns]
        # db-0 <-> db-1 replicate both ways: a cycle
        for i, d in enumerate(dbs):
            deps = [rnd.choice(dns)] + ([dbs[1 - i]] if i < 2 else [])
            servers.append(srv(d, deps, env=env, role="postgresql", data=200))
        for i, a in enumerate(apps):
            deps = [rnd.choice(dns), rnd.choice(dbs)]
            if i > 0:
                deps.append(apps[rnd.randrange(i)])  # calls an older service
            servers.append(srv(a, deps, env=env, role="api"))
        # two apps call each other: a cycle in the app tier
        servers.append(srv(f"{prefix}-svc-a", [f"{prefix}-svc-b", dns[0]], env=env, role="api"))
        servers.append(srv(f"{prefix}-svc-b", [f"{prefix}-svc-a"], env=env, role="api"))
        servers.append(srv(f"{prefix}-lb", apps[-3:], env=env, role="haproxy"))
    return estate(*servers, name="layered")


def assert_dependencies_first(plan: PlanDocument) -> None:
    waves = wave_of(plan)
    groups = {s.server_id: s.move_group for s in plan.servers}
    for s in plan.servers:
        for d in s.depends_on:
            if groups[d] == groups[s.server_id]:
                assert waves[d] == waves[s.server_id]
            else:
                assert waves[d] < waves[s.server_id], (s.server_id, d)


# ------------------------------------------------------------------------ graph


def test_edges_point_from_dependent_to_dependency_by_any_name():
    dns = srv("dns-01", role="dns", octet=53)
    servers = [
        dns,
        srv("ldap-01", ["dns-01.corp.example"], role="ldap"),      # full hostname
        srv("web-01", ["10.9.6.53"], role="web"),                  # IP of dns-01
        srv("api-01", ["dns-01"], role="api", app_deps=("ldap-01:389", "openssl")),
    ]
    dg = build_dependency_graph(servers)
    assert sorted(dg.graph.edges) == [
        ("api-01", "dns-01"), ("api-01", "ldap-01"), ("ldap-01", "dns-01"), ("web-01", "dns-01"),
    ]
    assert dg.depends_on("api-01") == ["dns-01", "ldap-01"]


def test_pagerank_ranks_the_shared_dependency_highest():
    servers = [srv("dns", role="dns"), srv("db", ["dns"], role="postgresql")]
    servers += [srv(f"web-{i}", ["dns", "db"], role="web") for i in range(5)]
    servers.append(srv("lb", [f"web-{i}" for i in range(5)] + ["dns"], role="haproxy"))
    crit = build_dependency_graph(servers).criticality
    assert crit["dns"] == 1.0
    assert max(crit, key=crit.get) == "dns"
    assert crit["db"] > crit["web-0"] > crit["lb"]
    assert crit["lb"] == 0.0  # nothing depends on the load balancer
    assert all(0.0 <= v <= 1.0 for v in crit.values())


def test_estate_without_dependencies_has_no_critical_server():
    dg = build_dependency_graph([srv("a"), srv("b")])
    assert dg.criticality == {"a": 0.0, "b": 0.0}


def test_cycle_becomes_one_move_group_and_one_condensed_node():
    servers = [srv("a", ["b"]), srv("b", ["c"]), srv("c", ["a", "d"]), srv("d")]
    dg = build_dependency_graph(servers)
    assert [(g.group_id, g.server_ids, g.is_cycle) for g in dg.move_groups] == [
        ("mg-a", ["a", "b", "c"], True), ("mg-d", ["d"], False),
    ]
    assert sorted(dg.condensed.edges) == [("mg-a", "mg-d")]
    assert dg.condensed.nodes["mg-a"]["members"] == {"a", "b", "c"}
    assert group_levels(dg.condensed) == {"mg-d": 0, "mg-a": 1}


def test_duplicate_server_ids_are_refused_by_name():
    with pytest.raises(ValueError, match=r"servers\[1\]\.server_id: 'a' appears more than once"):
        build_dependency_graph([srv("a"), srv("a")])


# ------------------------------------------------------------------------ waves


def test_dependencies_always_land_in_earlier_waves_for_both_schedulers():
    est = layered_estate()
    for cap in (1, 7, 40, 500):
        plan = build_plan(est, PlanSettings(max_servers_per_wave=cap), now=NOW)
        assert_dependencies_first(plan)
        dg = build_dependency_graph(est.servers)
        for strategy in ("list", "generations"):
            waves = schedule_groups(dg, PlanSettings(max_servers_per_wave=cap), strategy)
            index = {g: n for n, gs in enumerate(waves) for g in gs}
            assert sorted(index) == sorted(g.group_id for g in dg.move_groups)
            for g, dep in dg.condensed.edges:
                assert index[dep] < index[g], (strategy, cap, g, dep)


def test_cycles_are_never_split_across_waves():
    est = layered_estate()
    plan = build_plan(est, PlanSettings(max_servers_per_wave=1), now=NOW)
    waves = wave_of(plan)
    cycles = [g for g in plan.move_groups if g.is_cycle]
    assert len(cycles) == 4  # db pair and svc pair, in both environments
    for g in cycles:
        assert len({waves[s] for s in g.server_ids}) == 1


def test_cap_is_respected_and_an_oversized_group_gets_a_wave_of_its_own():
    ring = [srv(f"r{i}", [f"r{(i + 1) % 5}"]) for i in range(5)]  # a 5-server cycle
    others = [srv(f"x{i}") for i in range(7)]
    plan = build_plan(estate(*ring, *others), PlanSettings(max_servers_per_wave=3), now=NOW)
    ring_waves = [w for w in plan.waves if "r0" in w.server_ids]
    assert len(ring_waves) == 1
    assert sorted(ring_waves[0].server_ids) == [f"r{i}" for i in range(5)]
    for w in plan.waves:
        if w is not ring_waves[0]:
            assert len(w.server_ids) <= 3
    assert any("mg-r0 holds 5 servers" in warning and "never split" in warning
               for warning in plan.warnings)


def test_non_production_moves_first_where_dependencies_allow():
    servers = [
        srv("dns", role="dns"), srv("dev-dns", env="development", role="dns"),
        srv("app", ["dns"], role="api"), srv("dev-app", ["dev-dns"], env="development", role="api"),
        # staging uses the production LDAP: it cannot go before it
        srv("ldap", role="ldap"), srv("stg-app", ["ldap"], env="staging", role="api"),
    ]
    plan = build_plan(estate(*servers), now=NOW)
    waves = wave_of(plan)
    assert waves["dev-dns"] < waves["dns"]
    assert waves["dev-app"] < waves["app"]
    assert waves["ldap"] < waves["stg-app"]  # dependencies win over environment
    assert plan.waves[0].environment == "non-production"

    together = build_plan(estate(*servers), PlanSettings(non_production_first=False), now=NOW)
    assert wave_of(together)["dev-dns"] == wave_of(together)["dns"] == 1


def test_within_each_level_non_production_groups_precede_production_ones():
    est = layered_estate()
    dg = build_dependency_graph(est.servers)
    levels = group_levels(dg.condensed)
    prod = {g.group_id: any(s.startswith("p-") for s in g.server_ids) for g in dg.move_groups}
    for cap in (5, 40):
        waves = schedule_groups(dg, PlanSettings(max_servers_per_wave=cap))
        index = {g: n for n, gs in enumerate(waves) for g in gs}
        for level in set(levels.values()):
            np_waves = [index[g] for g in levels if levels[g] == level and not prod[g]]
            p_waves = [index[g] for g in levels if levels[g] == level and prod[g]]
            if np_waves and p_waves:
                assert max(np_waves) < min(p_waves), (cap, level)


def test_list_scheduling_needs_fewer_waves_than_generations():
    est = layered_estate()
    dg = build_dependency_graph(est.servers)
    for cap in (10, 40, 1000):
        settings = PlanSettings(max_servers_per_wave=cap)
        listed = schedule_groups(dg, settings, "list")
        generations = schedule_groups(dg, settings, "generations")
        assert len(listed) <= len(generations)
    unlimited = PlanSettings(max_servers_per_wave=1000)
    assert len(schedule_groups(dg, unlimited, "list")) < len(
        schedule_groups(dg, unlimited, "generations"))


def test_wave_fields_duration_approval_and_name():
    servers = [
        srv("dns", role="dns", data=0),
        srv("pg-1", ["dns", "pg-2"], role="postgresql", data=450),
        srv("pg-2", ["pg-1"], role="postgresql", data=450),
        srv("dev-pg", env="development", role="postgresql", data=450),
    ]
    # criticality can never exceed 1.0: only the data-store rule can ask for approval
    settings = PlanSettings(replication_mbps=1000, approval_criticality=1.0)
    plan = build_plan(estate(*servers), settings, now=NOW)
    w = {s: plan.wave(n) for s, n in wave_of(plan).items()}

    assert w["dev-pg"].environment == "non-production"
    assert not w["dev-pg"].needs_approval  # non-production data store: no gate
    assert w["dev-pg"].name == "Data tier (non-production)"

    data_wave = w["pg-1"]
    assert data_wave.name == "Data tier (production)"
    assert data_wave.move_groups == ["mg-pg-1"]
    assert data_wave.depends_on_waves == [w["dns"].number]
    assert data_wave.needs_approval
    assert data_wave.approval_reasons == ["production data stores: pg-1, pg-2"]
    # 450 GB at 1000 Mbit/s = 1 h; the replica pair goes member by member
    per_server = PHASE_HOURS.per_server + 1.0
    assert data_wave.estimated_hours == pytest.approx(PHASE_HOURS.per_wave + 2 * per_server)
    assert data_wave.criticality == max(plan.server("pg-1").criticality,
                                        plan.server("pg-2").criticality)
    assert data_wave.predicted_monthly_usd == pytest.approx(sum(
        plan.server(s).sizing.monthly_usd + plan.server(s).sizing.storage_monthly_usd
        for s in ("pg-1", "pg-2")), abs=0.011)
    assert not w["dns"].needs_approval


def test_critical_production_servers_need_approval():
    servers = [srv("dns", role="dns"), srv("dev-dns", env="development", role="dns")]
    servers += [srv(f"web-{i}", ["dns"], role="web") for i in range(4)]
    servers += [srv(f"dev-web-{i}", ["dev-dns"], env="development", role="web")
                for i in range(4)]
    plan = build_plan(estate(*servers), PlanSettings(approval_criticality=0.5), now=NOW)
    w = {s: plan.wave(n) for s, n in wave_of(plan).items()}
    assert w["dns"].approval_reasons == [
        "production servers with criticality above 0.5: dns (1.00)"]
    assert not w["dev-dns"].needs_approval  # equally critical, but not production
    assert not w["web-0"].needs_approval  # nothing depends on the web servers


def test_role_tiers():
    assert tier_of_role("postgresql-primary") == "data"
    assert tier_of_role("Active Directory") == "infrastructure"
    assert tier_of_role("load-balancer") == "edge"
    assert tier_of_role("background worker") == "application"
    assert tier_of_role(None) == "other"


# ---------------------------------------------------------------- plan document


def test_plan_document_servers_and_warnings():
    servers = [srv("dns", role="dns"), srv("web", ["dns", "partner-api.example.com"],
                                            role="web")]
    plan = build_plan(estate(*servers), version=3, now=NOW)
    assert plan.version == 3 and plan.created_at == NOW and plan.estate == "test"
    web = plan.server("web")
    assert web.depends_on == ["dns"]
    assert web.move_group == "mg-web"
    assert web.ports == [8080]
    assert web.data_size_gb == 10.0
    assert web.sizing is not None and web.sizing.instance_type
    assert [s.server_id for s in plan.servers] == ["dns", "web"]
    assert plan.warnings == [
        "server web: dependencies not migrated with this estate (check they stay reachable "
        "from the target): partner-api.example.com:8080 (outside the estate)"
    ]


def test_unsupported_region_plans_without_sizing_and_says_so():
    plan = build_plan(estate(srv("a")), PlanSettings(region="mars-north-1"), now=NOW)
    assert plan.server("a").sizing is None
    assert any("not sized" in w and "mars-north-1" in w for w in plan.warnings)
    assert plan.waves[0].predicted_monthly_usd == 0


def test_plan_provisions_the_balanced_option_or_its_safe_variant_and_says_why():
    plan = build_plan(estate(srv("a")), PlanSettings(), now=NOW)
    sizing = plan.server("a").sizing
    assert sizing is not None and sizing.method.startswith("options:balanced")
    assert any(n.startswith("PRICES aws us-east-1") for n in plan.notes)
    assert any(n.startswith("MODEL ") for n in plan.notes)
    conservative = build_plan(estate(srv("a")), PlanSettings(sizing_option="conservative"),
                              now=NOW).server("a").sizing
    assert conservative.method.startswith("options:conservative")
    assert conservative.required_vcpu >= sizing.required_vcpu


def test_same_estate_gives_the_same_plan_whatever_the_record_order():
    est = layered_estate()
    shuffled = list(est.servers)
    random.Random(11).shuffle(shuffled)
    a = build_plan(est, now=NOW)
    b = build_plan(Estate(name=est.name, servers=shuffled), now=NOW)
    assert plan_to_json(a) == plan_to_json(b)


def test_json_round_trip():
    plan = build_plan(layered_estate(), PlanSettings(max_servers_per_wave=15), now=NOW)
    text = plan_to_json(plan)
    again = plan_from_json(text)
    assert again == plan
    assert plan_to_json(again) == text


def test_plan_naming_a_missing_server_is_refused_by_name():
    plan = build_plan(estate(srv("a"), srv("b", ["a"])), now=NOW)
    data = json.loads(plan_to_json(plan))
    data["waves"][0]["server_ids"].append("ghost")
    with pytest.raises(PlanIntegrityError, match=r"waves\[1\]\.server_ids names missing "
                                                 r"server 'ghost'"):
        plan_from_json(json.dumps(data))
    with pytest.raises(ValueError, match="not a valid plan document"):
        plan_from_json('{"estate": "x"}')


def test_render_shows_every_wave_and_the_totals():
    plan = build_plan(layered_estate(n_apps=10), now=NOW)
    text = render_sequence(plan)
    assert text.startswith(f"Migration Sequence for {len(plan.servers)}-server environment")
    for w in plan.waves:
        assert f"Wave {w.number} (Day " in text
        assert f"{w.name} (" in text
    assert "Wave 1 (Day 1): " in text and "(no dependencies)" in text
    assert "  - postgresql (" in text
    assert "sequential migration" in text  # the db replica pair
    assert "parallel migration" in text
    total = sum(w.estimated_hours for w in plan.waves)
    assert f"Total migration time: {total:g} hours" in text
    assert f"Servers: {len(plan.servers)} in {len(plan.waves)} waves" in text
    approvals = sum(w.needs_approval for w in plan.waves)
    assert f"Waves needing approval: {approvals} of {len(plan.waves)}" in text
    assert "Predicted monthly cost: $" in text and "prices as of 2026-07-20" in text


def test_wave_spec_is_compact_and_written_atomically(tmp_path):
    plan = build_plan(layered_estate(n_apps=10), now=NOW)
    spec = wave_spec(plan)
    assert spec["estate"] == "layered" and spec["version"] == 1
    assert spec["created_at"] == NOW.isoformat()
    assert [w["number"] for w in spec["waves"]] == [w.number for w in plan.waves]
    assert set(spec["waves"][0]) == {
        "number", "name", "server_count", "environment", "needs_approval",
        "approval_reasons", "live_servers", "predicted_monthly_usd", "depends_on_waves",
        "estimated_hours",
    }
    assert "server_ids" not in json.dumps(spec)

    path = write_wave_spec(plan, tmp_path / "plans")
    assert path == tmp_path / "plans" / "layered.json"
    assert json.loads(path.read_text()) == json.loads(json.dumps(spec))
    # no temp file left: the spec, and its estate's loader in the plans DAG bundle
    assert sorted(p.name for p in path.parent.iterdir()) == ["dags", "layered.json"]
    assert sorted(p.name for p in (path.parent / "dags").iterdir()) == ["migrate__layered.py"]
    stamp = path.stat().st_mtime_ns
    write_wave_spec(plan, tmp_path / "plans")  # unchanged: not rewritten
    assert path.stat().st_mtime_ns == stamp

    # the wave-DAG file's reader accepts it
    from migrationbox.orchestration.spec import read_spec

    read = read_spec(path)
    assert [w.number for w in read.waves] == [w.number for w in plan.waves]


def test_empty_plan_has_no_wave_spec(tmp_path):
    plan = build_plan(Estate(name="empty", servers=[]), now=NOW)
    assert plan.waves == [] and plan.servers == []
    with pytest.raises(ValueError, match="no waves"):
        write_wave_spec(plan, tmp_path)
