"""Provision and its rollback against a real moto server process.

One module-scoped account: wave 1 and wave 2 are provisioned, provisioned again (nothing
new may appear), then wave 2 is torn down (wave 1 must survive), then wave 1 (the
landing zone goes with it). Every assertion reads the emulator through boto3.
"""

from __future__ import annotations

import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from migrationbox.cloud.aws import AwsAdapter
from migrationbox.cloud.aws_session import aws_client
from migrationbox.cloud.base import TAG_ESTATE, TAG_SERVER, TAG_WAVE
from migrationbox.orchestration.runconf import parse_run_conf
from migrationbox.phases import provision, teardown
from migrationbox.phases.context import Collaborators, PhaseContext, PhaseFailed

pytestmark = pytest.mark.integration

ESTATE = "shop"
CONF = {"network": {"source_networks": ["192.168.0.0/16"]}, "cloud": {"poll_seconds": 0.2}}


@pytest.fixture(scope="module")
def account(aws_emulator, tmp_path_factory):
    """An emptied emulator and an artifacts folder shared by the module's tests."""
    aws_emulator.reset()
    return {"artifacts": tmp_path_factory.mktemp("artifacts"), "ledger": []}


def _ctx(plan, account, wave: int, run_id: str, dry_run: bool = False) -> PhaseContext:
    def on_resource(kind, rid, name, tags):
        account["ledger"].append((kind, rid, name, dict(tags)))

    return PhaseContext(plan=plan, wave_number=wave, run_id=run_id, dry_run=dry_run,
                        artifacts_dir=account["artifacts"],
                        options=parse_run_conf(CONF).phase_options(),
                        collaborators=Collaborators(on_resource=on_resource))


def _inventory() -> Counter:
    """Counts of every MigrationBox-tagged resource, straight from the emulator."""
    return Counter(r.type for r in AwsAdapter().resources_by_tag(ESTATE))


def _live_instances() -> list[dict]:
    pages = aws_client("ec2").describe_instances(Filters=[
        {"Name": "instance-state-name", "Values": ["pending", "running"]}])["Reservations"]
    return [i for r in pages for i in r["Instances"]]


def _tags(item: dict) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in item.get("Tags", [])}


def test_dry_run_renders_terraform_and_creates_nothing(account, small_plan):
    result = provision.run(_ctx(small_plan(), account, 2, "dry", dry_run=True))
    assert result.ok and result.details["dry_run"] is True
    assert _inventory() == Counter()
    assert _live_instances() == []
    tf = Path(result.details["terraform"]).read_text()
    assert 'resource "aws_instance" "api-01"' in tf


def test_unsized_server_fails_before_anything_is_created(account, small_plan):
    with pytest.raises(PhaseFailed, match=r"servers without sizing.*pg-01"):
        provision.run(_ctx(small_plan(unsized=("pg-01",)), account, 1, "unsized"))
    assert _inventory() == Counter()


def test_provision_builds_network_groups_instances_lb_and_dns(account, small_plan):
    plan = small_plan()
    first = provision.run(_ctx(plan, account, 1, "run-1"))
    second = provision.run(_ctx(plan, account, 2, "run-1"))
    assert first.ok and second.ok
    ec2 = aws_client("ec2")

    vpcs = ec2.describe_vpcs(Filters=[{"Name": f"tag:{TAG_ESTATE}", "Values": [ESTATE]}])["Vpcs"]
    assert [v["CidrBlock"] for v in vpcs] == ["10.100.0.0/16"]
    vpc_id = vpcs[0]["VpcId"]
    subnets = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])["Subnets"]
    tiers = Counter(_tags(s)["migrationbox:tier"] for s in subnets)
    assert tiers == {"public": 2, "private": 2, "data": 2}
    assert len({s["AvailabilityZone"] for s in subnets}) == 2

    instances = {_tags(i)[TAG_SERVER]: i for i in _live_instances()}
    assert {k: v["InstanceType"] for k, v in instances.items()} == {
        "dns-01": "t3.small", "pg-01": "r5.large", "api-01": "m5.large",
        "web-01": "t3.medium", "web-02": "m6g.large", "worker-01": "t3.small",
    }
    assert all(i["State"]["Name"] == "running" for i in instances.values())
    assert _tags(instances["pg-01"])[TAG_WAVE] == "shop/wave-01"
    assert _tags(instances["web-01"])[TAG_WAVE] == "shop/wave-02"
    # the database lands in the data tier
    data_subnets = {s["SubnetId"] for s in subnets if _tags(s)["migrationbox:tier"] == "data"}
    assert instances["pg-01"]["SubnetId"] in data_subnets

    groups = {g["GroupName"]: g for g in ec2.describe_security_groups(
        Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])["SecurityGroups"]}
    by_id = {g["GroupId"]: name for name, g in groups.items()}

    def sources(name: str, port: int) -> set[str]:
        out = set()
        for perm in groups[name]["IpPermissions"]:
            if perm.get("FromPort") == port:
                out |= {r["CidrIp"] for r in perm.get("IpRanges", [])}
                out |= {by_id[p["GroupId"]] for p in perm.get("UserIdGroupPairs", [])}
        return out

    private = {s["CidrBlock"] for s in subnets if _tags(s)["migrationbox:tier"] == "private"}
    # api-01 (wave 2) serves web-01/web-02/worker-01 of its own wave by group, and its ALB
    assert sources("mb-shop-api-01", 8080) == {
        "mb-shop-web-01", "mb-shop-web-02", "mb-shop-worker-01", "mb-shop-w02-api-alb"}
    # pg-01 (wave 1) serves wave-2 clients that will live in the private tier, and the
    # on-prem network while they are still there
    assert sources("mb-shop-pg-01", 5432) == private | {"192.168.0.0/16"}
    # dns-01 serves pg-01 of its own wave by group
    assert "mb-shop-pg-01" in sources("mb-shop-dns-01", 53)
    assert groups["mb-shop-worker-01"]["IpPermissions"] == []

    elb = aws_client("elbv2")
    lbs = {lb["LoadBalancerName"]: lb for lb in elb.describe_load_balancers()["LoadBalancers"]}
    assert set(lbs) == {"mb-shop-w02-web", "mb-shop-w02-api"}
    assert lbs["mb-shop-w02-web"]["Scheme"] == "internet-facing"
    assert lbs["mb-shop-w02-api"]["Scheme"] == "internal"
    tgs = {tg["TargetGroupName"]: tg for tg in elb.describe_target_groups()["TargetGroups"]}
    assert set(tgs) == {"mb-shop-w02-web-80", "mb-shop-w02-web-443", "mb-shop-w02-api-8080"}
    adapter = AwsAdapter()
    web80 = adapter.target_health(tgs["mb-shop-w02-web-80"]["TargetGroupArn"])
    assert set(web80) == {instances["web-01"]["InstanceId"], instances["web-02"]["InstanceId"]}
    web443 = adapter.target_health(tgs["mb-shop-w02-web-443"]["TargetGroupArn"])
    assert set(web443) == {instances["web-01"]["InstanceId"]}

    zone_id = second.details["zone_id"]
    records = {r["name"]: r for r in adapter.get_records(zone_id) if r["type"] == "A"}
    assert records["pg01.shop.migrationbox.internal."]["values"] == [
        instances["pg-01"]["PrivateIpAddress"]]
    assert len(records) == 6
    zone = aws_client("route53").get_hosted_zone(Id=zone_id)
    assert zone["HostedZone"]["Config"]["PrivateZone"] is True
    assert zone["VPCs"][0]["VPCId"] == vpc_id

    # the ledger callback heard about what was made
    kinds = Counter(k for k, *_ in account["ledger"])
    assert kinds["instance"] == 6 and kinds["load_balancer"] == 2 and kinds["vpc"] == 2
    state = provision.read_state(_ctx(plan, account, 2, "x"))
    assert state is not None and state["instances"]["web-02"]["instance_type"] == "m6g.large"


def test_second_run_creates_nothing_new(account, small_plan):
    plan = small_plan()
    before = _inventory()
    ids_before = sorted(i["InstanceId"] for i in _live_instances())
    assert before["instance"] == 6 and before["security_group"] == 8
    assert before["vpc"] == 1 and before["subnet"] == 6 and before["hosted_zone"] == 1
    assert before["load_balancer"] == 2 and before["target_group"] == 3
    for wave in (1, 2):
        assert provision.run(_ctx(plan, account, wave, "run-2")).ok
    assert _inventory() == before
    assert sorted(i["InstanceId"] for i in _live_instances()) == ids_before
    zones = aws_client("route53").list_hosted_zones()["HostedZones"]
    assert len(zones) == 1


def test_terraform_renders_the_instances(account, small_plan):
    path = account["artifacts"] / "shop" / "wave_02" / "run-1" / "terraform" / "main.tf"
    text = path.read_text()
    for server, itype in (("api-01", "m5.large"), ("web-01", "t3.medium"),
                          ("web-02", "m6g.large"), ("worker-01", "t3.small")):
        block = text.split(f'resource "aws_instance" "{server}" {{', 1)[1].split("\n}\n", 1)[0]
        assert f'instance_type          = "{itype}"' in block
    assert "al2023_arm64" in text.split('resource "aws_instance" "web-02"', 1)[1][:200]
    assert 'resource "aws_lb" "alb_web"' in text
    assert 'resource "aws_route53_zone" "private"' in text
    assert "referenced_security_group_id = aws_security_group.server_web-01.id" in text
    terraform = shutil.which("terraform")
    if terraform:  # terraform fmt parses HCL: a syntax error fails here
        check = subprocess.run([terraform, "fmt", "-check", "-no-color", str(path)],
                               capture_output=True, text=True, check=False)
        assert check.returncode == 0, check.stdout + check.stderr


def test_teardown_of_wave_2_leaves_wave_1_intact(account, small_plan):
    plan = small_plan()
    wave1_before = sorted((r.type, r.id) for r in AwsAdapter().resources_by_tag(ESTATE, 1))
    zone_id = provision.read_state(_ctx(plan, account, 1, "x"))["zone_id"]

    result = teardown.rollback(_ctx(plan, account, 2, "rollback-2"))
    assert result.ok
    assert "landing zone kept" in result.summary
    adapter = AwsAdapter()
    assert adapter.resources_by_tag(ESTATE, 2) == []
    assert sorted((r.type, r.id) for r in adapter.resources_by_tag(ESTATE, 1)) == wave1_before
    live = {_tags(i)[TAG_SERVER] for i in _live_instances()}
    assert live == {"dns-01", "pg-01"}
    assert aws_client("elbv2").describe_load_balancers()["LoadBalancers"] == []
    names = {r["name"] for r in adapter.get_records(zone_id) if r["type"] == "A"}
    assert names == {"dns01.shop.migrationbox.internal.", "pg01.shop.migrationbox.internal."}
    assert _inventory()["vpc"] == 1
    # a second rollback finds nothing more to delete
    again = teardown.rollback(_ctx(plan, account, 2, "rollback-2b"))
    assert again.details["deleted"] == []


def test_teardown_of_last_wave_removes_the_landing_zone(account, small_plan):
    result = teardown.rollback(_ctx(small_plan(), account, 1, "rollback-1"))
    assert result.ok and result.details["landing_zone_deleted"]
    assert _inventory() == Counter()
    # the account's own default VPC is untouched
    assert len(aws_client("ec2").describe_vpcs()["Vpcs"]) == 1
