"""The one interface every cloud adapter implements, and the value types it speaks.

Phases, gates, smoke tests, the cutover's canary metrics, the healer (sensing and
remediations) and the lab's metrics agent talk to a ``CloudAdapter`` only, never to
boto3/Azure/GCP SDKs, so that the same code provisions, measures and heals on AWS today
and on Azure or GCP when their adapters land. Only modules under ``migrationbox.cloud``
build SDK clients (through the Airflow providers' hooks).

Every adapter obeys the same three rules, because the wave DAG may re-run any task:

* every resource it creates carries the MigrationBox tags (estate, wave, server where
  relevant, Name), so that ``resources_by_tag`` and ``teardown`` can find exactly
  what a wave made and nothing else;
* every ``ensure_*`` call looks the resource up (by tags or deterministic name) before
  creating it, so that re-running creates no duplicates;
* calls return provider ids, which the store ledger records.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, runtime_checkable

from migrationbox.errors import ExternalServiceError, NotFoundError

TAG_ESTATE = "migrationbox:estate"
TAG_WAVE = "migrationbox:wave"
TAG_SERVER = "migrationbox:server"
TAG_NAME = "Name"

#: the wave-tag value of estate-wide resources (network, private DNS zone) that every
#: wave shares; they are torn down only when no wave of the estate still has resources.
LANDING_ZONE = "landing-zone"


def wave_tag(estate: str, wave: int | str) -> str:
    """The ``migrationbox:wave`` value: same format as ``PhaseContext.wave_tag``.

    ``wave`` may be a wave number, an already formatted tag, or ``LANDING_ZONE``.
    """
    if isinstance(wave, int):
        return f"{estate}/wave-{wave:02d}"
    if wave.startswith(f"{estate}/"):
        return wave
    if wave.isdigit():
        return f"{estate}/wave-{int(wave):02d}"
    return f"{estate}/{wave}"


def landing_zone_tag(estate: str) -> str:
    return wave_tag(estate, LANDING_ZONE)


def resource_tags(
    estate: str, wave: int | str, name: str, server: str | None = None
) -> dict[str, str]:
    """The tag set for one resource."""
    tags = {TAG_ESTATE: estate, TAG_WAVE: wave_tag(estate, wave), TAG_NAME: name}
    if server:
        tags[TAG_SERVER] = server
    return tags


def dns_record_id(zone_id: str, name: str, record_type: str, set_identifier: str = "") -> str:
    """Ledger id of a DNS record set (records carry no tags and no provider id)."""
    fqdn = name if name.endswith(".") else f"{name}."
    return f"{zone_id}|{fqdn.lower()}|{record_type}|{set_identifier}"


@dataclass(frozen=True)
class Identity:
    account: str
    arn: str
    user_id: str


@dataclass(frozen=True)
class Quota:
    """A service limit and where its value came from (API, configuration, ...)."""

    name: str
    limit: float
    source: str


@dataclass(frozen=True)
class SubnetSpec:
    """One subnet of the target network: its tier, zone and address block."""

    tier: str  # public, private or data
    az: str
    cidr: str
    name: str


@dataclass(frozen=True)
class IngressRule:
    """Allow TCP/UDP ``port`` from a CIDR or from members of another security group."""

    port: int
    protocol: str = "tcp"
    cidr: str | None = None
    source_group: str | None = None
    description: str = ""

    def __post_init__(self) -> None:
        if (self.cidr is None) == (self.source_group is None):
            raise ValueError(
                f"ingress rule for port {self.port}: give exactly one of cidr or source_group"
            )


@dataclass(frozen=True)
class InstanceInfo:
    instance_id: str
    state: str
    instance_type: str
    private_ip: str | None
    subnet_id: str | None
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class LoadBalancer:
    arn: str
    name: str
    dns_name: str


@dataclass(frozen=True)
class WeightedRecord:
    set_identifier: str
    value: str
    weight: int
    record_type: str


@dataclass(frozen=True)
class CloudResource:
    """Something a wave created, as found by its tags (or, for DNS records, its zone)."""

    type: str  # vpc, subnet, internet_gateway, route_table, security_group, instance,
    #            load_balancer, target_group, hosted_zone, dns_record, secret, alarm
    id: str
    name: str = ""
    tags: dict[str, str] = field(default_factory=dict)


class CloudServiceError(ExternalServiceError):
    """A cloud API call failed or the endpoint did not answer; the message names the call.

    Adapters raise it (or a subclass) from the monitoring and healer-action methods, so
    that callers catch one provider-neutral type whatever SDK sits underneath.
    """


class NoFittingImage(NotFoundError):
    """No machine image of the target cloud fits a server's operating system."""


@dataclass(frozen=True)
class MetricDatum:
    """One measurement to publish.

    ``unit`` is one of ``Count``, ``Milliseconds``, ``Seconds``, ``Percent``, ``Bytes`` or
    ``None``; ``high_resolution`` asks for 1-second storage where the cloud offers it.
    """

    name: str
    value: float
    dimensions: dict[str, str]
    timestamp: datetime | None = None
    unit: str | None = None
    high_resolution: bool = False


@dataclass(frozen=True)
class MetricQuery:
    """One series to read: ``stat`` of ``metric`` per ``period_s``; ``id`` keys the result.

    ``stat`` is ``Average``, ``Sum``, ``Minimum``, ``Maximum`` or ``SampleCount``.
    """

    id: str
    namespace: str
    metric: str
    dimensions: dict[str, str]
    period_s: int = 60
    stat: str = "Average"


@dataclass(frozen=True)
class MetricStatistics:
    """All the statistics of one period of one metric (what a canary window needs)."""

    timestamp: datetime
    sum: float
    maximum: float
    minimum: float
    sample_count: float
    average: float


@dataclass(frozen=True)
class ImageChoice:
    """The machine image chosen for a server's operating system, and how it matched.

    ``match`` is ``exact`` (family and version as discovered), ``major`` (same family and
    major version, e.g. RHEL 7.9 on a RHEL 7 image) or ``family-default`` (version
    unknown: the family's default). ``rule`` is the mapping-table entry that matched.
    """

    image_id: str
    name: str
    owner: str
    match: str
    os_family: str
    os_version: str | None
    rule: str
    architecture: str = "x86_64"
    platform: str = "linux"


@runtime_checkable
class CloudAdapter(Protocol):
    """What MigrationBox needs from a cloud. AWS implements it in ``cloud.aws``.

    A second cloud implements every method below with the same meaning (see the
    group docstrings) and registers itself in ``migrationbox.cloud.get_adapter``; the
    contract tests (``tests/integration/adapter_contract.py``) then run against it
    unchanged. Provider ids (instance ids, zone ids, ARNs) are opaque strings to callers.
    """

    cloud: str
    #: read calls made to the monitoring API so far (the healer reports it per pass)
    monitoring_calls: int

    @property
    def region(self) -> str: ...

    # -- pre-flight -------------------------------------------------------------
    # Read-only: who we are, zones, quotas and usage. ``None``/missing keys mean "the
    # cloud does not say", never zero.
    def whoami(self) -> Identity: ...
    def availability_zones(self) -> list[str]: ...
    def vcpu_quota(self) -> Quota | None: ...
    def vcpus_in_use(self) -> int: ...
    def instance_type_vcpus(self, instance_types: list[str]) -> dict[str, int]: ...
    def network_quotas(self) -> dict[str, Quota]: ...
    def network_usage(self) -> dict[str, int]: ...
    def existing_networks(self) -> dict[str, str]: ...

    # -- network ----------------------------------------------------------------
    # Idempotent by tags/name: a second call returns the same ids and changes nothing.
    def ensure_vpc(self, cidr: str, tags: dict[str, str]) -> str: ...
    def ensure_subnets(
        self, vpc_id: str, specs: list[SubnetSpec], tags: dict[str, str]
    ) -> dict[str, str]: ...
    def ensure_internet_access(
        self, vpc_id: str, public_subnet_ids: list[str], tags: dict[str, str]
    ) -> str: ...
    def ensure_security_group(
        self,
        name: str,
        vpc_id: str,
        ingress_rules: list[IngressRule],
        tags: dict[str, str],
        prune: bool = True,
    ) -> str: ...
    def security_group_id(self, name: str, vpc_id: str) -> str | None: ...

    # -- compute ----------------------------------------------------------------
    # ``ensure_instances`` is idempotent by the server's tags; ``image_id=None`` keeps the
    # adapter's default image (a current Linux image for the instance type's CPU
    # architecture); pass ``image_for(...).image_id`` to boot an image that fits the
    # source OS (``sql_server``, an edition, asks for the licence-included Windows + SQL
    # Server image). ``image_for`` raises ``NoFittingImage`` naming the server, the OS,
    # version and the images that do exist for that family.
    def image_for(
        self,
        os_name: str,
        os_version: str | None,
        architecture: str = "x86_64",
        sql_server: str | None = None,
        server: str | None = None,
    ) -> ImageChoice: ...
    def ensure_instances(
        self,
        server_id: str,
        instance_type: str,
        subnet_id: str,
        sg_ids: list[str],
        tags: dict[str, str],
        count: int = 1,
        root_volume_gb: int | None = None,
        wait: bool = True,
        image_id: str | None = None,
    ) -> list[str]: ...
    def wait_running(self, ids: list[str]) -> None: ...
    def instances_state(self, ids: list[str]) -> dict[str, str]: ...
    def describe_instances(self, ids: list[str]) -> dict[str, InstanceInfo]: ...
    def find_instances(
        self, tags: dict[str, str], states: list[str] | None = None
    ) -> list[InstanceInfo]: ...
    def wave_instance_ids(self, estate: str, wave: int | str) -> list[str]: ...

    # -- healer actions -------------------------------------------------------------
    # What the healer's remediations do to compute, volumes, certificates and DNS. Each
    # is safe to repeat: ``launch_like`` is keyed by ``token`` (the remediation id), a
    # resize to the type an instance already has only makes sure it runs, terminating a
    # terminated instance is a no-op. Failures raise ``CloudServiceError``.
    def launch_like(
        self, instance_id: str, count: int, token: str, extra_tags: dict[str, str]
    ) -> list[str]: ...
    def terminate_instances(self, ids: list[str], wait: bool = False) -> None: ...
    def reboot_instances(self, ids: list[str]) -> None: ...
    def resize_instance(self, instance_id: str, instance_type: str) -> str: ...
    def grow_volumes(self, instance_id: str, factor: float = 2.0) -> dict[str, tuple[int, int]]:
        ...
    def request_certificate(self, domain: str, token: str) -> str: ...
    def delete_certificate(self, certificate_id: str) -> None: ...
    def republish_records(self, fqdn: str, comment: str = "") -> tuple[int, str]: ...

    # -- load balancing ---------------------------------------------------------
    def ensure_load_balancer(
        self,
        name: str,
        subnet_ids: list[str],
        sg_ids: list[str],
        tags: dict[str, str],
        internal: bool = False,
    ) -> LoadBalancer: ...
    def ensure_target_group(
        self, name: str, vpc_id: str, port: int, tags: dict[str, str], health_check_path: str = "/"
    ) -> str: ...
    def ensure_listener(
        self, lb_arn: str, port: int, target_group_arn: str, tags: dict[str, str]
    ) -> str: ...
    def register_targets(
        self, tg_arn: str, instance_ids: list[str], port: int | None = None
    ) -> None: ...
    def target_health(self, tg_arn: str) -> dict[str, str]: ...

    # -- DNS ----------------------------------------------------------------------
    # ``find_hosted_zone`` is the read-only lookup smoke tests and cutover use: the id of
    # the zone called ``name`` (trailing dot optional), the one tagged with ``estate``
    # when several share the name, ``None`` when there is none.
    def find_hosted_zone(self, name: str, estate: str | None = None) -> str | None: ...
    def ensure_hosted_zone(
        self, name: str, tags: dict[str, str], vpc_id: str | None = None
    ) -> str: ...
    def upsert_record(
        self, zone_id: str, name: str, value: str, record_type: str | None = None, ttl: int = 60
    ) -> None: ...
    def get_records(self, zone_id: str, name: str | None = None) -> list[dict]: ...
    def upsert_weighted_records(
        self,
        zone_id: str,
        record_name: str,
        source_value: str,
        target_value: str,
        target_weight_pct: int,
        ttl: int = 30,
    ) -> None: ...
    def get_weighted_records(self, zone_id: str, name: str) -> list[WeightedRecord]: ...

    # -- secrets and monitoring ---------------------------------------------------
    # Monitoring: ``put_metric_data`` publishes points (batched by the adapter);
    # ``metric_series`` reads many series over one window with as few calls as the cloud
    # allows (AWS: one GetMetricData per 500 queries), returning ``{query.id: [(time,
    # value), ...]}`` in time order, an empty list for a series without points;
    # ``metric_statistics`` returns every statistic per period of one metric. All three
    # raise ``CloudServiceError`` when the monitoring API fails or does not answer.
    def put_metric_data(self, namespace: str, points: list[MetricDatum]) -> None: ...
    def metric_series(
        self, queries: list[MetricQuery], start: datetime, end: datetime
    ) -> dict[str, list[tuple[datetime, float]]]: ...
    def metric_statistics(
        self,
        namespace: str,
        metric: str,
        dimensions: dict[str, str],
        start: datetime,
        end: datetime,
        period_s: int = 60,
    ) -> list[MetricStatistics]: ...
    def put_secret(self, name: str, value: str, tags: dict[str, str]) -> str: ...
    def get_secret(self, name: str) -> str: ...
    def ensure_cpu_alarm(
        self, name: str, instance_id: str, tags: dict[str, str], threshold_pct: float = 80.0
    ) -> str: ...

    # -- inventory and teardown ---------------------------------------------------
    def resources_by_tag(
        self, estate: str, wave: int | str | None = None
    ) -> list[CloudResource]: ...
    def teardown(self, estate: str, wave: int | str) -> list[CloudResource]: ...
