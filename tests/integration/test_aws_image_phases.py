"""Pre-flight and provision choose each instance's image from its server's source OS, and
refuse a wave with a server no image fits before anything is created (real moto server)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from migrationbox.cloud.aws import AwsAdapter
from migrationbox.cloud.aws_session import aws_client
from migrationbox.orchestration.runconf import parse_run_conf
from migrationbox.phases import preflight, provision, teardown
from migrationbox.phases.context import PhaseContext, PhaseFailed
from migrationbox.planning.models import SourceOs

pytestmark = pytest.mark.integration

CONF = {
    "network": {"source_networks": ["192.168.0.0/16"]},
    "cloud": {"poll_seconds": 0.2},
    "preflight": {"backups": {"dns-01": True, "pg-01": True}, "vcpu_quota": 64},
}
OSES = {
    "dns-01": SourceOs(type="Linux", name="Debian", version="12.5", architecture="amd64"),
    "pg-01": SourceOs(type="Linux", name="Ubuntu", version="22.04.4 LTS"),
}
AIX = SourceOs(type="AIX", name="AIX", version="7.2", architecture="ppc64")
OLD_UBUNTU = SourceOs(type="Linux", name="Ubuntu", version="12.04", architecture="x86_64")


def _plan(small_plan, estate: str, oses: dict[str, SourceOs]):
    plan = small_plan(estate=estate)
    return plan.model_copy(update={"servers": [
        s.model_copy(update={"os": oses.get(s.server_id)}) for s in plan.servers]})


def _ctx(plan, tmp_path: Path, run_id: str) -> PhaseContext:
    return PhaseContext(plan=plan, wave_number=1, run_id=run_id, artifacts_dir=tmp_path,
                        options=parse_run_conf(CONF).phase_options())


def test_each_instance_boots_the_image_of_its_source_os(fresh_aws, small_plan, tmp_path):
    plan = _plan(small_plan, "imgok", OSES)
    checked = preflight.run(_ctx(plan, tmp_path, "r1"))
    assert checked.details["checks"]["images"] == "pass"
    result = provision.run(_ctx(plan, tmp_path, "r1"))
    try:
        images = result.details["images"]
        assert images["dns-01"]["rule"].startswith("debian 12")
        assert images["pg-01"]["rule"].startswith("ubuntu 22.04")
        ec2 = aws_client("ec2")
        for sid, instance_id in result.details["instances"].items():
            (reservation,) = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
            assert reservation["Instances"][0]["ImageId"] == images[sid]["image_id"], sid
        names = {images[s]["image_id"]: images[s]["name"] for s in images}
        assert any("debian-12" in n for n in names.values())
        assert any("jammy-22.04" in n for n in names.values())
    finally:
        teardown.rollback(_ctx(plan, tmp_path, "r1"))


@pytest.mark.parametrize(("server_os", "said"), [
    (AIX, "AIX 7.2"),
    (OLD_UBUNTU, "Ubuntu 12.04"),
])
def test_a_server_no_image_fits_stops_the_wave_before_anything_exists(
        fresh_aws, small_plan, tmp_path, server_os, said):
    plan = _plan(small_plan, "imgbad", {**OSES, "pg-01": server_os})
    with pytest.raises(PhaseFailed) as err:
        preflight.run(_ctx(plan, tmp_path, "r1"))
    report = json.loads(Path(err.value.details["report_json"]).read_text())
    images = next(c for c in report["checks"] if c["name"] == "images")
    assert images["status"] == "fail" and images["remedy"]
    assert "server pg-01" in images["detail"] and said in images["detail"]
    assert "dns-01" not in images["detail"]  # the Debian server fits
    if server_os is OLD_UBUNTU:  # what does exist for the family is named
        assert "22.04" in images["detail"]

    with pytest.raises(PhaseFailed, match=rf"server pg-01.*{said}.*Nothing was created"):
        provision.run(_ctx(plan, tmp_path, "r2"))
    assert AwsAdapter().resources_by_tag("imgbad") == []
