"""The pure parts behind provision and pre-flight: design, names, HCL escaping, residency."""

from __future__ import annotations

import ipaddress

import pytest

from migrationbox.iac.design import (
    MAX_RULES_PER_GROUP,
    DesignError,
    architecture,
    aws_name,
    design_wave,
    lb_role,
    subnet_layout,
    summarise_networks,
    tier_for_role,
)
from migrationbox.iac.render import RenderError, render, tf_id, tf_str
from migrationbox.phases.preflight import residency_allows

pytestmark = pytest.mark.integration  # lives beside the emulator tests it underpins

AZS = ["us-east-1b", "us-east-1a", "us-east-1c"]


def test_subnet_layout_is_disjoint_inside_the_vpc():
    specs = subnet_layout("shop", "10.100.0.0/16", ["us-east-1a", "us-east-1b"])
    assert [(s.tier, s.az) for s in specs][:2] == [("public", "us-east-1a"),
                                                   ("public", "us-east-1b")]
    nets = [ipaddress.ip_network(s.cidr) for s in specs]
    vpc = ipaddress.ip_network("10.100.0.0/16")
    assert all(n.subnet_of(vpc) for n in nets)
    assert not any(a.overlaps(b) for i, a in enumerate(nets) for b in nets[i + 1:])
    with pytest.raises(DesignError, match="/24 or larger"):
        subnet_layout("shop", "10.0.0.0/28", ["a", "b"])
    with pytest.raises(DesignError, match="not a network"):
        subnet_layout("shop", "10.0.0.1/16", ["a", "b"])


def test_roles_tiers_and_architecture():
    assert tier_for_role("postgresql-primary") == "data"
    assert tier_for_role("redis") == "data"
    assert tier_for_role("vpn") == "public"
    assert tier_for_role("worker") == "private" and tier_for_role(None) == "private"
    assert lb_role("web") == "web" and lb_role("api") == "api" and lb_role("web-frontend") == "web"
    assert lb_role("webhook-relay") is None
    assert architecture("m7g.large") == "arm64" and architecture("t4g.nano") == "arm64"
    assert architecture("c6gn.xlarge") == "arm64" and architecture("m5.large") == "x86_64"


def test_aws_names_are_bounded_and_distinct():
    long_a = aws_name("mb-a-very-long-estate-name-for-testing-w01-web", 32)
    long_b = aws_name("mb-a-very-long-estate-name-for-testing-w01-api", 32)
    assert len(long_a) <= 32 and len(long_b) <= 32 and long_a != long_b
    assert aws_name("mb-my_estate-w01", 32) == "mb-my-estate-w01"


def test_design_uses_two_azs_and_groups_of_same_wave_clients(small_plan):
    design = design_wave(small_plan(), 2, AZS, source_networks=["192.168.1.7/24"])
    assert design.azs == ("us-east-1a", "us-east-1b")
    assert design.source_networks == ("192.168.1.0/24",)
    api = next(g for g in design.security_groups if g.server_id == "api-01")
    assert {r.source for r in api.rules} == {"server:web-01", "server:web-02",
                                             "server:worker-01", "alb:api"}
    web_alb = next(g for g in design.security_groups if g.key == "alb:web")
    assert {(r.port, r.cidr) for r in web_alb.rules} == {(80, "0.0.0.0/0"), (443, "0.0.0.0/0")}


def test_design_coarsens_rules_instead_of_overflowing_a_group(small_plan):
    plan = small_plan()
    hub = plan.server("api-01").model_copy(update={"ports": list(range(8000, 8020))})
    servers = [hub if s.server_id == "api-01" else s for s in plan.servers]
    design = design_wave(plan.model_copy(update={"servers": servers}), 2, AZS,
                         source_networks=[f"172.16.{i}.0/24" for i in range(3)])
    api = next(g for g in design.security_groups if g.server_id == "api-01")
    assert len(api.rules) <= MAX_RULES_PER_GROUP
    assert all(r.source is None or r.source.startswith("alb:") for r in api.rules)


def test_many_source_networks_are_summarised_before_a_group_overflows(small_plan):
    """Seven source networks × seven ports overflow a group even at VPC level: the
    on-premise ranges are summarised into their private block, and the rule says so.
    (pg-01 of wave 1 has clients in wave 2, which stay on premise meanwhile.)"""
    plan = small_plan()
    hub = plan.server("pg-01").model_copy(update={"ports": list(range(5432, 5439))})
    servers = [hub if s.server_id == "pg-01" else s for s in plan.servers]
    sources = ["10.20.1.0/24", "10.20.2.0/23", "10.20.4.0/23", "10.21.2.0/23",
               "10.21.4.0/24", "10.22.3.0/24", "203.0.113.0/24"]
    design = design_wave(plan.model_copy(update={"servers": servers}), 1, AZS,
                         source_networks=sources)
    pg = next(g for g in design.security_groups if g.server_id == "pg-01")
    assert len(pg.rules) <= MAX_RULES_PER_GROUP
    admitted = {r.cidr for r in pg.rules if r.description.startswith("source network")}
    assert admitted == {"10.20.0.0/14", "203.0.113.0/24"}
    assert all("summarised" in r.description for r in pg.rules
               if r.description.startswith("source network"))
    # the exact networks are kept whenever they fit
    small = design_wave(plan, 1, AZS, source_networks=sources[:2])
    pg_small = next(g for g in small.security_groups if g.server_id == "pg-01")
    assert {r.cidr for r in pg_small.rules
            if r.description.startswith("source network")} == set(sources[:2])


def test_summarise_networks_keeps_public_ranges_and_covers_private_ones():
    assert summarise_networks(["10.0.1.0/24", "10.0.2.0/24"]) == ("10.0.0.0/22",)
    assert summarise_networks(["192.168.1.0/24", "172.16.5.0/24", "198.51.100.0/24"]) == (
        "172.16.5.0/24", "192.168.1.0/24", "198.51.100.0/24")
    assert summarise_networks([]) == ()


def test_render_escapes_and_refuses_unknown_variables():
    assert tf_str('a"b${x}') == '"a\\"b$${x}"'
    assert tf_id("server:web-01") == "server_web-01" and tf_id("1abc") == "r_1abc"
    with pytest.raises(RenderError, match="undefined"):
        render("aws", {"estate": "x"})
    with pytest.raises(RenderError, match="no Terraform templates"):
        render("nocloud", {})


def test_residency_table():
    assert residency_allows("EU", "aws", "eu-central-1")
    assert not residency_allows("EU", "aws", "us-east-1")
    assert not residency_allows("EU", "aws", "eu-west-2")  # London is UK, not EU
    assert residency_allows("EU", "aws", "eu-west-2", {"EU": ["UK"]})
    assert residency_allows("DE", "aws", "eu-central-1")
    assert not residency_allows("DE", "aws", "eu-west-1")
    assert residency_allows("any", "aws", "ap-south-1")
