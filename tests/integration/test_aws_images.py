"""Target images that fit the source: a planned estate of several OSes against the AMIs of
the real moto server (its own catalogue plus the project's seed of current images).

Each planned server's discovered OS goes through ``image_for_server`` → the adapter's
``image_for`` (DescribeImages by owner and name, as on AWS); the instance then boots that
image through ``ensure_instances(image_id=...)``. An OS no image fits is refused with the
server, its OS and version, and the images that do exist.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from migrationbox.cloud.aws import AwsAdapter
from migrationbox.cloud.aws_session import aws_client
from migrationbox.cloud.base import IngressRule, NoFittingImage, SubnetSpec, resource_tags
from migrationbox.cloud.images import image_for_server
from migrationbox.errors import NotFoundError
from migrationbox.inventory.models import Estate, ServerRecord
from migrationbox.planning.builder import build_plan

pytestmark = pytest.mark.integration

ESTATE = "imgs"


def srv(sid: str, os_: dict, apps: list[dict] | None = None) -> ServerRecord:
    return ServerRecord(
        server_id=sid, hostname=f"{sid}.corp.example",
        ip_addresses=[f"10.30.0.{sum(map(ord, sid)) % 250 + 1}"], os=os_,
        hardware={"cpu_cores": 2, "ram_gb": 8, "disk_total_gb": 60},
        applications=apps or [{"name": "app", "ports": [8080]}],
        performance_baseline={"cpu_avg_utilization_pct": 30,
                              "memory_avg_utilization_pct": 50},
        environment="production")


SERVERS = [
    srv("ubuntu-01", {"type": "Linux", "distribution": "Ubuntu", "version": "22.04.4 LTS",
                      "architecture": "x86_64"}),
    srv("debian-01", {"type": "Linux", "distribution": "Debian", "version": "12.5",
                      "architecture": "amd64"}),
    srv("rhel-01", {"type": "Linux", "distribution": "Red Hat Enterprise Linux",
                    "version": "9.3", "architecture": "x86_64"}),
    srv("win-01", {"type": "Windows", "distribution": "Windows Server 2019 Datacenter",
                   "version": "10.0.17763", "architecture": "x86_64"}),
    srv("sql-01", {"type": "Windows", "version": "10.0.20348", "architecture": "x86_64"},
        apps=[{"name": "Microsoft SQL Server 2022 Standard", "ports": [1433],
               "kind": "database"}]),
    srv("old-01", {"type": "Linux", "distribution": "Ubuntu", "version": "18.04",
                   "architecture": "x86_64"}),
    srv("aix-01", {"type": "AIX", "version": "7.2", "architecture": "ppc64"}),
    srv("sol-01", {"type": "SunOS", "distribution": "Oracle Solaris", "version": "11.4",
                   "architecture": "x86_64"}),
]


@pytest.fixture(scope="module")
def adapter(aws_emulator) -> AwsAdapter:
    aws_emulator.reset()
    return AwsAdapter(region="us-east-1", poll_seconds=0.2, timeout_seconds=60)


@pytest.fixture(scope="module")
def plan():
    return build_plan(Estate(name=ESTATE, servers=SERVERS),
                      now=datetime(2026, 12, 7, tzinfo=UTC))


def _image(adapter: AwsAdapter, plan, sid: str):
    return image_for_server(adapter, plan.server(sid))


@pytest.mark.parametrize(("sid", "family", "version", "match", "name_start", "owner"), [
    ("ubuntu-01", "ubuntu", "22.04", "same-release-line",
     "ubuntu/images/hvm-ssd/ubuntu-jammy-22.04-amd64-server-", "099720109477"),
    ("debian-01", "debian", "12", "same-release-line", "debian-12-amd64-", "136693071363"),
    ("rhel-01", "rhel", "9", "same-release-line", "RHEL-9.", "309956199498"),
    ("win-01", "windows-server", "2019", "exact", "Windows_Server-2019-English-Full-Base-",
     "801119661308"),
    ("sql-01", "windows-server", "2022", "exact",
     "Windows_Server-2022-English-Full-SQL_2022_Standard-", "801119661308"),
])
def test_each_os_gets_the_image_of_its_family_and_release(adapter, plan, sid, family,
                                                          version, match, name_start, owner):
    choice = _image(adapter, plan, sid)
    assert choice is not None
    assert (choice.os_family, choice.os_version, choice.match) == (family, version, match)
    assert choice.name.startswith(name_start) and choice.owner == owner
    [img] = aws_client("ec2").describe_images(ImageIds=[choice.image_id])["Images"]
    assert img["Name"] == choice.name and img["State"] == "available"


def test_windows_and_sql_server_are_flagged_in_the_plan(plan):
    assert plan.server("win-01").licence.windows
    assert plan.server("sql-01").licence.sql_server == "standard"
    assert plan.server("ubuntu-01").licence is None


@pytest.mark.parametrize(("sid", "says"), [
    ("aix-01", r"server aix-01: no aws image for AIX 7\.2 \(ppc64\): IBM AIX runs on POWER"),
    ("sol-01", r"server sol-01: .*Oracle Solaris 11\.4.*no image on AWS"),
    ("old-01", r"server old-01: no AMI in us-east-1 fits Ubuntu 18\.04 \(x86_64\) "
               r"\(looked for ubuntu 18\.04\); images that exist for ubuntu: ubuntu 24\.04: .*"
               r"ubuntu 22\.04: ubuntu/images/hvm-ssd/ubuntu-jammy"),
])
def test_an_os_no_image_fits_is_refused_naming_server_os_and_what_exists(adapter, plan, sid,
                                                                          says):
    with pytest.raises(NoFittingImage, match=says) as err:
        _image(adapter, plan, sid)
    assert isinstance(err.value, NotFoundError)


def test_instances_boot_the_chosen_image_and_none_keeps_the_default(adapter, plan):
    tags = resource_tags(ESTATE, 1, "net")
    vpc = adapter.ensure_vpc("10.31.0.0/16", tags)
    az = adapter.availability_zones()[0]
    subnet = adapter.ensure_subnets(vpc, [SubnetSpec("private", az, "10.31.1.0/24", "imgs-p")],
                                    tags)["imgs-p"]
    sg = adapter.ensure_security_group("imgs-app", vpc, [IngressRule(3389, cidr="10.0.0.0/8")],
                                       tags)
    sql = plan.server("sql-01")
    choice = image_for_server(adapter, sql)
    assert choice is not None
    ids = adapter.ensure_instances("sql-01", sql.sizing.instance_type, subnet, [sg],
                                   resource_tags(ESTATE, 1, "sql-01", server="sql-01"),
                                   root_volume_gb=60, image_id=choice.image_id)
    plain = adapter.ensure_instances("plain-01", "t3.small", subnet, [sg],
                                     resource_tags(ESTATE, 1, "plain-01", server="plain-01"))
    ec2 = aws_client("ec2")
    [inst] = [i for r in ec2.describe_instances(InstanceIds=ids)["Reservations"]
              for i in r["Instances"]]
    assert inst["ImageId"] == choice.image_id and inst.get("Platform") == "windows"
    # the root volume is mapped on the image's own root device (Windows: /dev/sda1)
    assert [b["DeviceName"] for b in inst["BlockDeviceMappings"]] == ["/dev/sda1"]
    [base] = [i for r in ec2.describe_instances(InstanceIds=plain)["Reservations"]
              for i in r["Instances"]]
    assert base["ImageId"] == adapter.default_image("t3.small")
    # a re-run finds the server's instance: nothing new, whatever image it was given
    assert adapter.ensure_instances("sql-01", sql.sizing.instance_type, subnet, [sg],
                                    resource_tags(ESTATE, 1, "sql-01", server="sql-01"),
                                    image_id=choice.image_id) == ids
    adapter.teardown(ESTATE, 1)


def test_a_wave_gets_every_image_and_every_refusal_at_once(adapter, plan):
    from migrationbox.cloud.images import images_for_servers

    chosen, refused = images_for_servers(adapter, list(plan.servers))
    assert sorted(chosen) == ["debian-01", "rhel-01", "sql-01", "ubuntu-01", "win-01"]
    assert [line.split(":")[0] for line in refused] == [
        "server aix-01", "server old-01", "server sol-01"]
