"""The cloud adapter contract, as tests any adapter must pass (AWS today, Azure/GCP next).

``AdapterContract`` is a test class that talks to an adapter only through
``migrationbox.cloud.base.CloudAdapter`` and its value types: no SDK, no provider ids
assumed. A cloud plugs in with a test module that subclasses it and provides three
fixtures:

* ``adapter``: a ready adapter against a clean account of that cloud (its emulator,
  or a sandbox subscription/project);
* ``dead_adapter``: the same adapter class pointed at an endpoint that does not answer
  (monitoring calls must raise ``CloudServiceError``, not hang or crash otherwise);
* ``network``: ``(subnet_id, [security_group_id])`` where instances may be launched.

``tests/integration/test_aws_adapter_contract.py`` does this for AWS against the moto
server. The file name does not start with ``test_``, so pytest collects the class only
through such subclasses.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from migrationbox.cloud.base import (
    TAG_ESTATE,
    CloudAdapter,
    CloudServiceError,
    ImageChoice,
    MetricDatum,
    MetricQuery,
    NoFittingImage,
    resource_tags,
)
from migrationbox.errors import NotFoundError


def _estate() -> str:
    return f"contract{uuid.uuid4().hex[:6]}"


class AdapterContract:
    # -- the protocol -----------------------------------------------------------------
    def test_is_a_cloud_adapter(self, adapter: CloudAdapter) -> None:
        assert isinstance(adapter, CloudAdapter)
        assert adapter.cloud and adapter.region

    # -- DNS --------------------------------------------------------------------------
    def test_find_hosted_zone_prefers_the_estate_tagged_zone(self, adapter: CloudAdapter
                                                             ) -> None:
        mine, other = _estate(), _estate()
        name = f"{mine}.contract.internal"
        theirs = adapter.ensure_hosted_zone(name, resource_tags(other, 1, name))
        ours = adapter.ensure_hosted_zone(name, resource_tags(mine, 1, name),
                                          vpc_id=adapter.ensure_vpc(
                                              "10.77.0.0/16", resource_tags(mine, 1, "vpc")))
        assert ours != theirs
        assert adapter.find_hosted_zone(name, mine) == ours
        assert adapter.find_hosted_zone(name + ".", other) == theirs
        assert adapter.find_hosted_zone(name) in {ours, theirs}
        assert adapter.find_hosted_zone(f"absent-{mine}.contract.internal", mine) is None
        adapter.teardown(mine, 1)
        adapter.teardown(other, 1)
        assert adapter.find_hosted_zone(name, mine) is None

    def test_republish_records_reupserts_what_is_there(self, adapter: CloudAdapter) -> None:
        estate = _estate()
        zone = f"{estate}.contract.internal"
        zone_id = adapter.ensure_hosted_zone(zone, resource_tags(estate, 1, zone))
        adapter.upsert_record(zone_id, f"web.{zone}", "10.1.2.3")
        count, change = adapter.republish_records(f"web.{zone}", "contract test")
        assert count == 1 and change
        assert [r["values"] for r in adapter.get_records(zone_id, f"web.{zone}")] == [
            ["10.1.2.3"]]
        with pytest.raises(CloudServiceError, match="no record"):
            adapter.republish_records(f"nothing.{zone}")
        adapter.teardown(estate, 1)

    # -- monitoring ---------------------------------------------------------------------
    def test_metrics_round_trip_in_one_read_call(self, adapter: CloudAdapter) -> None:
        ns, svc = "MigrationBox/Contract", _estate()
        now = datetime.now(UTC).replace(microsecond=0)
        points = [MetricDatum(name="cpu", value=float(10 + i), dimensions={"Service": svc},
                              timestamp=now - timedelta(seconds=30 - i), unit="Percent",
                              high_resolution=True) for i in range(5)]
        points.append(MetricDatum(name="requests", value=7.0, dimensions={"Service": svc},
                                  timestamp=now - timedelta(seconds=20), unit="Count"))
        adapter.put_metric_data(ns, points)
        queries = [MetricQuery("cpu", ns, "cpu", {"Service": svc}, period_s=1),
                   MetricQuery("req", ns, "requests", {"Service": svc}, period_s=1,
                               stat="Sum"),
                   MetricQuery("none", ns, "never_published", {"Service": svc}, period_s=1)]
        before = adapter.monitoring_calls
        got = adapter.metric_series(queries, now - timedelta(minutes=2),
                                    now + timedelta(seconds=5))
        assert adapter.monitoring_calls - before == 1
        assert set(got) == {"cpu", "req", "none"}
        assert [v for _, v in got["cpu"]] == [10.0, 11.0, 12.0, 13.0, 14.0]
        times = [t for t, _ in got["cpu"]]
        assert times == sorted(times) and all(t.tzinfo is not None for t in times)
        assert [v for _, v in got["req"]] == [7.0]
        assert got["none"] == []

    def test_many_series_take_one_read_call_per_500(self, adapter: CloudAdapter) -> None:
        ns, svc = "MigrationBox/Contract", _estate()
        now = datetime.now(UTC).replace(microsecond=0)
        adapter.put_metric_data(ns, [MetricDatum(name="m0", value=1.0,
                                                 dimensions={"Service": svc},
                                                 timestamp=now - timedelta(seconds=5))])
        queries = [MetricQuery(f"s{i}", ns, f"m{i}", {"Service": svc}, period_s=60)
                   for i in range(501)]
        before = adapter.monitoring_calls
        got = adapter.metric_series(queries, now - timedelta(minutes=5),
                                    now + timedelta(minutes=1))
        assert adapter.monitoring_calls - before == 2
        assert len(got) == 501 and [v for _, v in got["s0"]] == [1.0]
        with pytest.raises(ValueError, match="unique"):
            adapter.metric_series([queries[0], queries[0]], now, now)

    def test_metric_statistics_per_period(self, adapter: CloudAdapter) -> None:
        ns, svc = "MigrationBox/Contract", _estate()
        at = datetime.now(UTC).replace(second=5, microsecond=0) - timedelta(minutes=2)
        adapter.put_metric_data(ns, [
            MetricDatum(name="latency", value=v, dimensions={"Service": svc, "Side": "t"},
                        timestamp=at + timedelta(seconds=i), unit="Milliseconds")
            for i, v in enumerate((5.0, 50.0, 20.0))])
        stats = adapter.metric_statistics(ns, "latency", {"Service": svc, "Side": "t"},
                                          at - timedelta(minutes=1),
                                          at + timedelta(minutes=1), 60)
        assert len(stats) == 1
        s = stats[0]
        assert (s.sum, s.maximum, s.minimum, s.sample_count) == (75.0, 50.0, 5.0, 3.0)
        assert s.average == pytest.approx(25.0)
        assert adapter.metric_statistics(ns, "latency", {"Service": "nobody"},
                                         at - timedelta(minutes=1),
                                         at + timedelta(minutes=1)) == []

    def test_monitoring_that_does_not_answer_raises_cloud_service_error(
            self, dead_adapter: CloudAdapter) -> None:
        now = datetime.now(UTC)
        with pytest.raises(CloudServiceError):
            dead_adapter.put_metric_data("X", [MetricDatum("m", 1.0, {"S": "a"})])
        with pytest.raises(CloudServiceError):
            dead_adapter.metric_series([MetricQuery("a", "X", "m", {"S": "a"})],
                                       now - timedelta(minutes=1), now)
        with pytest.raises(CloudServiceError):
            dead_adapter.metric_statistics("X", "m", {"S": "a"}, now - timedelta(minutes=1),
                                           now)

    # -- images ---------------------------------------------------------------------------
    def test_image_for_fits_the_source_os(self, adapter: CloudAdapter) -> None:
        ubuntu = adapter.image_for("Ubuntu", "22.04.4 LTS")
        assert isinstance(ubuntu, ImageChoice)
        assert ubuntu.os_family == "ubuntu" and ubuntu.os_version == "22.04"
        assert ubuntu.match == "same-release-line" and ubuntu.platform == "linux"
        windows = adapter.image_for("Windows Server 2019 Datacenter", "10.0.17763")
        assert windows.os_family == "windows-server" and windows.os_version == "2019"
        assert windows.platform == "windows" and windows.image_id != ubuntu.image_id

    def test_image_for_refuses_what_no_image_fits(self, adapter: CloudAdapter) -> None:
        with pytest.raises(NoFittingImage, match=r"server aix-01: .*AIX 7\.2.*POWER") as err:
            adapter.image_for("AIX", "7.2", server="aix-01")
        assert isinstance(err.value, NotFoundError)
        with pytest.raises(NoFittingImage, match=r"ubuntu 12\.04 is not in the image table"):
            adapter.image_for("Ubuntu", "12.04", server="old-01")

    # -- compute and healer actions ----------------------------------------------------
    def test_healer_compute_actions_are_idempotent(self, adapter: CloudAdapter,
                                                   network: tuple[str, list[str]]) -> None:
        estate = _estate()
        subnet, groups = network
        tags = resource_tags(estate, 1, "app-01", server="app-01")
        image = adapter.image_for("Ubuntu", "22.04")
        [model] = adapter.ensure_instances("app-01", "t3.small", subnet, groups, tags,
                                           root_volume_gb=10, image_id=image.image_id)
        assert adapter.ensure_instances("app-01", "t3.small", subnet, groups, tags,
                                        image_id=image.image_id) == [model]

        token = f"heal-{uuid.uuid4().hex[:8]}"
        extra = {"migrationbox:healer": token}
        added = adapter.launch_like(model, 2, token, extra)
        assert len(added) == 2 and model not in added
        assert sorted(adapter.launch_like(model, 2, token, extra)) == sorted(added)
        infos = adapter.describe_instances(added)
        for info in infos.values():
            assert info.tags[TAG_ESTATE] == estate and info.tags["migrationbox:healer"] == token
            assert info.instance_type == "t3.small" and info.subnet_id == subnet
        adapter.terminate_instances(added, wait=True)
        adapter.terminate_instances(added)  # again: nothing left to do, no error
        assert set(adapter.instances_state(added).values()) == {"terminated"}

        adapter.reboot_instances([model])
        assert adapter.resize_instance(model, "t3.medium") == "t3.small"
        assert adapter.describe_instances([model])[model].instance_type == "t3.medium"
        assert adapter.resize_instance(model, "t3.medium") == "t3.medium"
        adapter.wait_running([model])

        grown = adapter.grow_volumes(model, 2.0)
        assert grown and all(new == 2 * old for old, new in grown.values())

        arn = adapter.request_certificate(f"app.{estate}.example.com", token)
        assert adapter.request_certificate(f"app.{estate}.example.com", token) == arn
        adapter.delete_certificate(arn)
        adapter.teardown(estate, 1)
        assert adapter.instances_state([model])[model] == "terminated"

    def test_healer_actions_on_missing_things_raise_cloud_service_error(
            self, adapter: CloudAdapter) -> None:
        with pytest.raises(CloudServiceError):
            adapter.launch_like("i-00000000000000000", 1, "t", {})
        with pytest.raises(CloudServiceError):
            adapter.resize_instance("i-00000000000000000", "t3.small")
