"""The healer's remediations on the cloud side, through the adapter, on the real moto server.

A migrated server (its instance tagged with estate and server) gets each action with no
lab control endpoint, so only the cloud side runs; a failed verification must undo what
the action changed (terminate what it launched, size back).
"""

from __future__ import annotations

import uuid

import pytest

from migrationbox.cloud.aws import AwsAdapter
from migrationbox.cloud.base import IngressRule, SubnetSpec, resource_tags
from migrationbox.healer.remediation import RemediationContext, execute, remediation_for

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def world(aws_emulator):
    adapter = AwsAdapter(region="us-east-1", poll_seconds=0.2, timeout_seconds=60)
    estate = f"heal{uuid.uuid4().hex[:6]}"
    tags = resource_tags(estate, 1, "net")
    vpc = adapter.ensure_vpc("10.41.0.0/16", tags)
    az = adapter.availability_zones()[0]
    subnet = adapter.ensure_subnets(vpc, [SubnetSpec("private", az, "10.41.1.0/24", "heal-p")],
                                    tags)["heal-p"]
    sg = adapter.ensure_security_group("heal-app", vpc, [IngressRule(80, cidr="10.0.0.0/8")],
                                       tags)
    [iid] = adapter.ensure_instances("web-01", "t3.small", subnet, [sg],
                                     resource_tags(estate, 1, "web-01", server="web-01"),
                                     root_volume_gb=10)
    zone = f"{estate}.internal"
    zone_id = adapter.ensure_hosted_zone(zone, resource_tags(estate, 1, zone))
    adapter.upsert_record(zone_id, f"web-01.{zone}", "10.41.1.10")
    yield {"adapter": adapter, "estate": estate, "instance": iid, "zone": zone}
    adapter.teardown(estate, 1)


def _ctx(world, action: str, recovered: bool, **kw) -> RemediationContext:
    return RemediationContext(
        estate=world["estate"], server_id="web-01", action=action, params=kw.pop("params", {}),
        remediation_id=f"r-{uuid.uuid4().hex[:12]}", cloud=world["adapter"],
        check=lambda: (recovered, "cpu 30" if recovered else "cpu still 97"),
        verify_timeout_s=0.2, verify_interval_s=0.1, **kw)


def _live(world) -> list[str]:
    return [i.instance_id for i in world["adapter"].find_instances(
        {"migrationbox:estate": world["estate"], "migrationbox:server": "web-01"},
        ["pending", "running"])]


def test_horizontal_scale_launches_like_the_server_and_rollback_terminates(world):
    out = execute(remediation_for("horizontal_scale"),
                  _ctx(world, "horizontal_scale", False, params={"add_instances": 2}))
    assert not out.success and out.rolled_back
    added = out.undo["instance_ids"]
    assert len(added) == 2 and world["instance"] not in added
    assert any("launched 2 x t3.small" in text for _, text in out.steps)
    states = world["adapter"].instances_state(added)
    assert set(states.values()) <= {"shutting-down", "terminated"}
    assert _live(world) == [world["instance"]]


def test_vertical_scale_resizes_and_a_failed_check_sizes_back(world):
    adapter, iid = world["adapter"], world["instance"]
    out = execute(remediation_for("vertical_scale_restart"),
                  _ctx(world, "vertical_scale_restart", True))
    assert out.success and out.undo["types"] == {iid: "t3.small"}
    assert adapter.describe_instances([iid])[iid].instance_type == "t3.medium"
    adapter.wait_running([iid])
    out = execute(remediation_for("vertical_scale_restart"),
                  _ctx(world, "vertical_scale_restart", False))
    assert not out.success and out.rolled_back
    assert adapter.describe_instances([iid])[iid].instance_type == "t3.medium"
    adapter.wait_running([iid])


def test_rolling_restart_and_disk_expand_act_on_the_instance(world):
    out = execute(remediation_for("rolling_restart"), _ctx(world, "rolling_restart", True))
    assert out.success and any(f"rebooted {world['instance']}" in t for _, t in out.steps)
    out = execute(remediation_for("disk_cleanup_expand"),
                  _ctx(world, "disk_cleanup_expand", True))
    assert out.success
    assert any("-> 20 GiB" in t for _, t in out.steps), out.steps


def test_certificate_renewal_is_undone_when_it_does_not_help(world):
    ctx = _ctx(world, "renew_certificate_reload", False,
               dns_name=f"web-01.{world['zone']}.")
    out = execute(remediation_for("renew_certificate_reload"), ctx)
    assert not out.success and out.rolled_back
    assert any("deleted certificate" in t for _, t in out.steps), out.steps


def test_flush_dns_republishes_the_record_or_says_it_is_missing(world):
    ok = execute(remediation_for("flush_dns_cache_verify"),
                 _ctx(world, "flush_dns_cache_verify", True,
                      dns_name=f"web-01.{world['zone']}"))
    assert ok.success and any("republished 1 record set" in t for _, t in ok.steps)
    missing = execute(remediation_for("flush_dns_cache_verify"),
                      _ctx(world, "flush_dns_cache_verify", True,
                           dns_name=f"nothing.{world['zone']}"))
    assert not missing.success and "no record" in (missing.error or "")


def test_without_a_cloud_only_the_lab_side_runs_and_says_so(world):
    ctx = _ctx(world, "rolling_restart", True)
    ctx.cloud = None
    out = execute(remediation_for("rolling_restart"), ctx)
    assert any("no cloud connection configured" in t for _, t in out.steps)
