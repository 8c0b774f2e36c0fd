"""AWS implementation of ``CloudAdapter``, with boto3 clients from Airflow's AWS hook.

Credentials, region and endpoint come only from the Airflow connection (``aws_default``
unless told otherwise), so the same code runs against the local emulator and a real
account. Each ``ensure_*`` looks the resource up by its MigrationBox tags or its
deterministic name before creating it; ``teardown`` deletes exactly what carries one
wave's tags, in dependency order.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from ipaddress import ip_address
from typing import Any, TypeVar

from botocore.exceptions import BotoCoreError, ClientError, WaiterError

from migrationbox.cloud.aws_session import aws_client
from migrationbox.cloud.base import (
    TAG_ESTATE,
    TAG_NAME,
    TAG_SERVER,
    TAG_WAVE,
    CloudResource,
    CloudServiceError,
    Identity,
    ImageChoice,
    IngressRule,
    InstanceInfo,
    LoadBalancer,
    MetricDatum,
    MetricQuery,
    MetricStatistics,
    NoFittingImage,
    Quota,
    SubnetSpec,
    WeightedRecord,
    dns_record_id,
    wave_tag,
)
from migrationbox.config import AWS_CONN_ID
from migrationbox.errors import ExternalServiceError

log = logging.getLogger("migrationbox.cloud.aws")

T = TypeVar("T")

#: Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances, in vCPUs.
EC2_STANDARD_VCPU_QUOTA = ("ec2", "L-1216C47A")
#: VPC quotas that provisioning one wave consumes.
VPC_QUOTAS = {
    "vpcs_per_region": ("vpc", "L-F678F1CE"),
    "subnets_per_vpc": ("vpc", "L-407747CB"),
    "security_groups_per_region": ("vpc", "L-E79EC296"),
    "rules_per_security_group": ("vpc", "L-0EA8095F"),
}
AMI_PARAMETERS = {
    "x86_64": "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64",
    "arm64": "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-arm64",
}
LIVE_INSTANCE_STATES = ["pending", "running", "stopping", "stopped"]
#: tag of instances a token-keyed action (``launch_like``) created
TAG_TOKEN = "migrationbox:token"
TLS_PORTS = {443, 8443}


#: GetMetricData takes at most this many queries per call
METRIC_QUERIES_PER_CALL = 500
#: PutMetricData takes at most this many data points per call
METRIC_POINTS_PER_CALL = 1000


class AwsAdapterError(ExternalServiceError):
    """An AWS call failed in a way the caller must act on; the message says what."""


@contextlib.contextmanager
def _cloud_call(what: str) -> Iterator[None]:
    """Turn botocore's errors (API refusals, unreachable endpoints) into CloudServiceError."""
    try:
        yield
    except (ClientError, BotoCoreError) as exc:
        raise CloudServiceError(f"AWS {what} failed ({type(exc).__name__}: {exc})") from exc


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _tag_list(tags: dict[str, str]) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in sorted(tags.items())]


def _tag_dict(tags: Iterable[dict[str, str]] | None) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in tags or []}


def _fqdn(name: str) -> str:
    return name if name.endswith(".") else f"{name}."


def _norm_value(value: str) -> str:
    return value.lower().rstrip(".")


def _record_type(value: str) -> str:
    try:
        return "A" if ip_address(value).version == 4 else "AAAA"
    except ValueError:
        return "CNAME"


def _chunks(items: list[T], size: int) -> Iterator[list[T]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


class AwsAdapter:
    """``CloudAdapter`` for AWS.

    ``poll_seconds`` is the waiter delay: small against the emulator, the default suits
    a real account. ``timeout_seconds`` bounds every wait.
    """

    cloud = "aws"

    def __init__(
        self,
        conn_id: str = AWS_CONN_ID,
        region: str | None = None,
        poll_seconds: float = 2.0,
        timeout_seconds: float = 900.0,
    ) -> None:
        self.conn_id = conn_id
        self._region = region
        self.poll_seconds = poll_seconds
        self.timeout_seconds = timeout_seconds
        self._images: dict[str, str] = {}
        self.monitoring_calls = 0

    # -- plumbing -------------------------------------------------------------------
    def _client(self, service: str) -> Any:
        return aws_client(service, self.conn_id, self._region)

    @property
    def region(self) -> str:
        if self._region is None:
            self._region = str(self._client("ec2").meta.region_name)
        return self._region

    def _waiter_config(self) -> dict[str, int]:
        delay = max(1, round(self.poll_seconds))
        return {"Delay": delay, "MaxAttempts": max(1, int(self.timeout_seconds / delay))}

    def _paginate(self, client: Any, op: str, key: str, **kwargs: Any) -> list[dict[str, Any]]:
        if client.can_paginate(op):
            out: list[dict[str, Any]] = []
            for page in client.get_paginator(op).paginate(**kwargs):
                out.extend(page.get(key, []))
            return out
        return list(getattr(client, op)(**kwargs).get(key, []))

    def _retry_dependency(self, what: str, func: Callable[[], T]) -> T:
        """Retry while AWS still holds a dependency (ENIs of a deleted LB, a detaching IGW)."""
        deadline = time.monotonic() + self.timeout_seconds
        while True:
            try:
                return func()
            except ClientError as exc:
                if _code(exc) not in ("DependencyViolation", "ResourceInUse") or (
                    time.monotonic() > deadline
                ):
                    raise AwsAdapterError(f"cannot delete {what}: {exc}") from exc
                time.sleep(self.poll_seconds)

    @staticmethod
    def _tag_filters(tags: dict[str, str]) -> list[dict[str, Any]]:
        return [{"Name": f"tag:{k}", "Values": [v]} for k, v in sorted(tags.items())]

    @staticmethod
    def _owner_filters(estate: str, wave: int | str | None) -> list[dict[str, Any]]:
        filters = [{"Name": f"tag:{TAG_ESTATE}", "Values": [estate]}]
        if wave is not None:
            filters.append({"Name": f"tag:{TAG_WAVE}", "Values": [wave_tag(estate, wave)]})
        return filters

    @staticmethod
    def _ownership(tags: dict[str, str]) -> dict[str, str]:
        """The tags that identify an owner (estate, wave, server, Name) for look-ups."""
        return {k: v for k, v in tags.items() if k in (TAG_ESTATE, TAG_WAVE, TAG_SERVER, TAG_NAME)}

    # -- pre-flight -----------------------------------------------------------------
    def whoami(self) -> Identity:
        ident = self._client("sts").get_caller_identity()
        return Identity(account=ident["Account"], arn=ident["Arn"], user_id=ident["UserId"])

    def availability_zones(self) -> list[str]:
        zones = self._client("ec2").describe_availability_zones(
            Filters=[{"Name": "state", "Values": ["available"]}]
        )["AvailabilityZones"]
        return sorted(z["ZoneName"] for z in zones if z.get("ZoneType", "availability-zone")
                      == "availability-zone")

    def _service_quota(self, service: str, code: str) -> Quota | None:
        """The quota in force (GetServiceQuota); ``None`` when the endpoint does not know it."""
        try:
            quota = self._client("service-quotas").get_service_quota(
                ServiceCode=service, QuotaCode=code
            )["Quota"]
        except ClientError as exc:
            if _code(exc) in ("NoSuchResourceException", "ResourceNotFoundException",
                              "NotImplemented", "InvalidAction"):
                return None
            raise
        return Quota(
            name=quota.get("QuotaName", code),
            limit=float(quota["Value"]),
            source=f"service-quotas {service}/{code}",
        )

    def vcpu_quota(self) -> Quota | None:
        return self._service_quota(*EC2_STANDARD_VCPU_QUOTA)

    def network_quotas(self) -> dict[str, Quota]:
        out = {}
        for key, (service, code) in VPC_QUOTAS.items():
            quota = self._service_quota(service, code)
            if quota is not None:
                out[key] = quota
        return out

    def network_usage(self) -> dict[str, int]:
        ec2 = self._client("ec2")
        return {
            "vpcs_per_region": len(self._paginate(ec2, "describe_vpcs", "Vpcs")),
            "security_groups_per_region": len(
                self._paginate(ec2, "describe_security_groups", "SecurityGroups")
            ),
        }

    def instance_type_info(self, instance_types: list[str]) -> dict[str, dict[str, Any]]:
        """vCPUs and architectures per instance type; unknown types raise a clear error."""
        wanted = sorted(set(instance_types))
        found: dict[str, dict[str, Any]] = {}
        ec2 = self._client("ec2")
        for chunk in _chunks(wanted, 100):
            try:
                items = ec2.describe_instance_types(InstanceTypes=chunk)["InstanceTypes"]
            except ClientError as exc:
                raise AwsAdapterError(
                    f"instance types {chunk} not offered in {self.region}: {exc}"
                ) from exc
            for item in items:
                found[item["InstanceType"]] = {
                    "vcpus": int(item["VCpuInfo"]["DefaultVCpus"]),
                    "architectures": list(item["ProcessorInfo"]["SupportedArchitectures"]),
                }
        missing = [t for t in wanted if t not in found]
        if missing:
            raise AwsAdapterError(f"instance types not offered in {self.region}: {missing}")
        return found

    def instance_type_vcpus(self, instance_types: list[str]) -> dict[str, int]:
        return {k: v["vcpus"] for k, v in self.instance_type_info(instance_types).items()}

    def vcpus_in_use(self) -> int:
        ec2 = self._client("ec2")
        reservations = self._paginate(
            ec2, "describe_instances", "Reservations",
            Filters=[{"Name": "instance-state-name", "Values": ["pending", "running"]}],
        )
        types = [i["InstanceType"] for r in reservations for i in r["Instances"]]
        if not types:
            return 0
        vcpus = self.instance_type_vcpus(types)
        return sum(vcpus[t] for t in types)

    def existing_networks(self) -> dict[str, str]:
        """VPC id → CIDR for every VPC of the account in this region."""
        vpcs = self._paginate(self._client("ec2"), "describe_vpcs", "Vpcs")
        return {v["VpcId"]: v["CidrBlock"] for v in vpcs}

    # -- network --------------------------------------------------------------------
    def ensure_vpc(self, cidr: str, tags: dict[str, str]) -> str:
        ec2 = self._client("ec2")
        found = ec2.describe_vpcs(Filters=self._tag_filters(self._ownership(tags)))["Vpcs"]
        if found:
            vpc = found[0]
            if vpc["CidrBlock"] != cidr:
                raise AwsAdapterError(
                    f"VPC {vpc['VpcId']} tagged {tags.get(TAG_NAME)!r} has CIDR "
                    f"{vpc['CidrBlock']}, the plan asks for {cidr}: change the plan's "
                    f"target CIDR or tear the landing zone down first"
                )
            return str(vpc["VpcId"])
        vpc_id = ec2.create_vpc(
            CidrBlock=cidr,
            TagSpecifications=[{"ResourceType": "vpc", "Tags": _tag_list(tags)}],
        )["Vpc"]["VpcId"]
        ec2.get_waiter("vpc_available").wait(VpcIds=[vpc_id], WaiterConfig=self._waiter_config())
        # Private hosted zones resolve only with both attributes on.
        ec2.modify_vpc_attribute(VpcId=vpc_id, EnableDnsSupport={"Value": True})
        ec2.modify_vpc_attribute(VpcId=vpc_id, EnableDnsHostnames={"Value": True})
        log.info("created VPC %s (%s)", vpc_id, cidr)
        return str(vpc_id)

    def ensure_subnets(
        self, vpc_id: str, specs: list[SubnetSpec], tags: dict[str, str]
    ) -> dict[str, str]:
        """Subnet name → id; an existing subnet is matched by its CIDR inside the VPC."""
        ec2 = self._client("ec2")
        existing = self._paginate(
            ec2, "describe_subnets", "Subnets", Filters=[{"Name": "vpc-id", "Values": [vpc_id]}]
        )
        by_cidr = {s["CidrBlock"]: s for s in existing}
        out: dict[str, str] = {}
        for spec in specs:
            subnet = by_cidr.get(spec.cidr)
            if subnet is not None:
                have = _tag_dict(subnet.get("Tags")).get(TAG_NAME)
                if have != spec.name or subnet["AvailabilityZone"] != spec.az:
                    raise AwsAdapterError(
                        f"subnet {subnet['SubnetId']} already holds {spec.cidr} in VPC {vpc_id} "
                        f"(Name={have!r}, AZ {subnet['AvailabilityZone']}), expected "
                        f"{spec.name!r} in {spec.az}"
                    )
                out[spec.name] = subnet["SubnetId"]
                continue
            subnet_tags = {**tags, TAG_NAME: spec.name, "migrationbox:tier": spec.tier}
            subnet_id = ec2.create_subnet(
                VpcId=vpc_id,
                CidrBlock=spec.cidr,
                AvailabilityZone=spec.az,
                TagSpecifications=[{"ResourceType": "subnet", "Tags": _tag_list(subnet_tags)}],
            )["Subnet"]["SubnetId"]
            if spec.tier == "public":
                ec2.modify_subnet_attribute(
                    SubnetId=subnet_id, MapPublicIpOnLaunch={"Value": True}
                )
            out[spec.name] = subnet_id
        return out

    def ensure_internet_access(
        self, vpc_id: str, public_subnet_ids: list[str], tags: dict[str, str]
    ) -> str:
        """An internet gateway and a public route table (0.0.0.0/0) for the public tier."""
        ec2 = self._client("ec2")
        base = tags.get(TAG_NAME, vpc_id)
        igws = ec2.describe_internet_gateways(
            Filters=[{"Name": "attachment.vpc-id", "Values": [vpc_id]}]
        )["InternetGateways"]
        if igws:
            igw_id = igws[0]["InternetGatewayId"]
        else:
            igw_id = ec2.create_internet_gateway(
                TagSpecifications=[{
                    "ResourceType": "internet-gateway",
                    "Tags": _tag_list({**tags, TAG_NAME: f"{base}-igw"}),
                }]
            )["InternetGateway"]["InternetGatewayId"]
            ec2.attach_internet_gateway(InternetGatewayId=igw_id, VpcId=vpc_id)
        rt_name = f"{base}-public"
        tables = ec2.describe_route_tables(
            Filters=[{"Name": "vpc-id", "Values": [vpc_id]},
                     {"Name": f"tag:{TAG_NAME}", "Values": [rt_name]}]
        )["RouteTables"]
        if tables:
            table = tables[0]
        else:
            table = ec2.create_route_table(
                VpcId=vpc_id,
                TagSpecifications=[{
                    "ResourceType": "route-table",
                    "Tags": _tag_list({**tags, TAG_NAME: rt_name}),
                }],
            )["RouteTable"]
        rt_id = table["RouteTableId"]
        if not any(r.get("DestinationCidrBlock") == "0.0.0.0/0" for r in table.get("Routes", [])):
            ec2.create_route(RouteTableId=rt_id, DestinationCidrBlock="0.0.0.0/0",
                             GatewayId=igw_id)
        associated = {a.get("SubnetId") for a in table.get("Associations", [])}
        for subnet_id in public_subnet_ids:
            if subnet_id not in associated:
                ec2.associate_route_table(RouteTableId=rt_id, SubnetId=subnet_id)
        return str(igw_id)

    def security_group_id(self, name: str, vpc_id: str) -> str | None:
        groups = self._client("ec2").describe_security_groups(
            Filters=[{"Name": "vpc-id", "Values": [vpc_id]},
                     {"Name": "group-name", "Values": [name]}]
        )["SecurityGroups"]
        return str(groups[0]["GroupId"]) if groups else None

    def ensure_security_group(
        self,
        name: str,
        vpc_id: str,
        ingress_rules: list[IngressRule],
        tags: dict[str, str],
        prune: bool = True,
    ) -> str:
        """Create or reconcile a group: add missing rules; with ``prune``, revoke others."""
        ec2 = self._client("ec2")
        groups = ec2.describe_security_groups(
            Filters=[{"Name": "vpc-id", "Values": [vpc_id]},
                     {"Name": "group-name", "Values": [name]}]
        )["SecurityGroups"]
        if groups:
            group = groups[0]
            group_id = group["GroupId"]
        else:
            group_id = ec2.create_security_group(
                GroupName=name,
                Description=f"MigrationBox {tags.get(TAG_WAVE, '')} {name}"[:255],
                VpcId=vpc_id,
                TagSpecifications=[{
                    "ResourceType": "security-group",
                    "Tags": _tag_list({**tags, TAG_NAME: name}),
                }],
            )["GroupId"]
            group = {"IpPermissions": []}
        have = self._permission_keys(group.get("IpPermissions", []))
        want = {
            (r.protocol, r.port, r.port, "cidr" if r.cidr else "sg", r.cidr or r.source_group)
            for r in ingress_rules
        }
        descriptions = {
            (r.protocol, r.port, r.port, "cidr" if r.cidr else "sg", r.cidr or r.source_group):
            r.description for r in ingress_rules
        }
        missing = sorted(want - have, key=str)
        if missing:
            ec2.authorize_security_group_ingress(
                GroupId=group_id,
                IpPermissions=[self._permission(k, descriptions.get(k, "")) for k in missing],
            )
        if prune and have - want:
            self._revoke(group_id, lambda key: key not in want)
        return str(group_id)

    def _revoke(self, group_id: str, doomed: Callable[[tuple[Any, ...]], bool]) -> None:
        """Revoke inbound rules by rule id (matching by content trips over descriptions)."""
        ec2 = self._client("ec2")
        rules = self._paginate(
            ec2, "describe_security_group_rules", "SecurityGroupRules",
            Filters=[{"Name": "group-id", "Values": [group_id]}],
        )
        ids = []
        for rule in rules:
            if rule.get("IsEgress"):
                continue
            kind, value = (("sg", rule["ReferencedGroupInfo"]["GroupId"])
                           if rule.get("ReferencedGroupInfo") else ("cidr", rule.get("CidrIpv4")))
            key = (rule["IpProtocol"], rule.get("FromPort"), rule.get("ToPort"), kind, value)
            if doomed(key):
                ids.append(rule["SecurityGroupRuleId"])
        if ids:
            ec2.revoke_security_group_ingress(GroupId=group_id, SecurityGroupRuleIds=ids)

    @staticmethod
    def _permission_keys(perms: list[dict[str, Any]]) -> set[tuple[Any, ...]]:
        keys = set()
        for perm in perms:
            proto = perm.get("IpProtocol")
            lo, hi = perm.get("FromPort"), perm.get("ToPort")
            for rng in perm.get("IpRanges", []):
                keys.add((proto, lo, hi, "cidr", rng["CidrIp"]))
            for pair in perm.get("UserIdGroupPairs", []):
                keys.add((proto, lo, hi, "sg", pair["GroupId"]))
        return keys

    @staticmethod
    def _permission(key: tuple[Any, ...], description: str) -> dict[str, Any]:
        proto, lo, hi, kind, value = key
        perm: dict[str, Any] = {"IpProtocol": proto, "FromPort": lo, "ToPort": hi}
        entry: dict[str, str] = {"CidrIp": value} if kind == "cidr" else {"GroupId": value}
        if description:
            entry["Description"] = description[:255]
        perm["IpRanges" if kind == "cidr" else "UserIdGroupPairs"] = [entry]
        return perm

    # -- compute --------------------------------------------------------------------
    def default_image(self, instance_type: str) -> str:
        """The current Amazon Linux 2023 AMI for the instance type's architecture (the
        image ``ensure_instances`` boots when it is not given one)."""
        if instance_type not in self._images:
            archs = self.instance_type_info([instance_type])[instance_type]["architectures"]
            arch = "arm64" if "arm64" in archs and "x86_64" not in archs else "x86_64"
            self._images[instance_type] = str(self._client("ssm").get_parameter(
                Name=AMI_PARAMETERS[arch])["Parameter"]["Value"])
        return self._images[instance_type]

    def find_instances(self, tags: dict[str, str], states: list[str] | None = None) -> list[
        InstanceInfo
    ]:
        filters = self._tag_filters(tags)
        filters.append({"Name": "instance-state-name", "Values": states or LIVE_INSTANCE_STATES})
        reservations = self._paginate(
            self._client("ec2"), "describe_instances", "Reservations", Filters=filters
        )
        found = [self._info(i) for r in reservations for i in r["Instances"]]
        return sorted(found, key=lambda i: i.instance_id)

    @staticmethod
    def _info(inst: dict[str, Any]) -> InstanceInfo:
        return InstanceInfo(
            instance_id=inst["InstanceId"],
            state=inst["State"]["Name"],
            instance_type=inst["InstanceType"],
            private_ip=inst.get("PrivateIpAddress"),
            subnet_id=inst.get("SubnetId"),
            tags=_tag_dict(inst.get("Tags")),
        )

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
    ) -> list[str]:
        """``count`` live instances for ``server_id`` under these tags; waits until running.

        ``image_id`` (from :meth:`image_for`) boots an image that fits the source OS;
        ``None`` boots :meth:`default_image`. Instances found running another image are
        left as they are (replacing a server's OS is not a re-run's business).
        """
        tags = {TAG_NAME: server_id, **tags, TAG_SERVER: server_id}
        lookup = {k: tags[k] for k in (TAG_ESTATE, TAG_WAVE, TAG_SERVER) if k in tags}
        found = self.find_instances(lookup)
        for inst in found:
            if inst.instance_type != instance_type:
                log.warning(
                    "instance %s of %s is %s, plan says %s: left as is (resize is a "
                    "separate change)", inst.instance_id, server_id, inst.instance_type,
                    instance_type,
                )
        ec2 = self._client("ec2")
        stopped = [i.instance_id for i in found if i.state in ("stopped", "stopping")]
        if stopped:
            ec2.get_waiter("instance_stopped").wait(
                InstanceIds=stopped, WaiterConfig=self._waiter_config()
            )
            ec2.start_instances(InstanceIds=stopped)
        ids = [i.instance_id for i in found]
        missing = count - len(ids)
        if missing > 0:
            token_src = "|".join([*(f"{k}={v}" for k, v in sorted(lookup.items())), str(len(ids))])
            request: dict[str, Any] = {
                "ImageId": image_id or self.default_image(instance_type),
                "InstanceType": instance_type,
                "MinCount": missing,
                "MaxCount": missing,
                "SubnetId": subnet_id,
                "SecurityGroupIds": sg_ids,
                "ClientToken": hashlib.sha256(token_src.encode()).hexdigest()[:64],
                "MetadataOptions": {"HttpTokens": "required", "HttpEndpoint": "enabled"},
                "TagSpecifications": [
                    {"ResourceType": "instance", "Tags": _tag_list(tags)},
                    {"ResourceType": "volume", "Tags": _tag_list(tags)},
                ],
            }
            if root_volume_gb:
                request["BlockDeviceMappings"] = [{
                    "DeviceName": self._root_device(request["ImageId"]),
                    "Ebs": {"VolumeSize": int(max(8, min(root_volume_gb, 16384))),
                            "VolumeType": "gp3", "Encrypted": True,
                            "DeleteOnTermination": True},
                }]
            created = ec2.run_instances(**request)["Instances"]
            ids.extend(i["InstanceId"] for i in created)
            log.info("launched %s for %s: %s", instance_type, server_id,
                     [i["InstanceId"] for i in created])
        ids = ids[:count] if count else ids
        if wait:
            self.wait_running(ids)
        return ids

    def wait_running(self, ids: list[str]) -> None:
        if ids:
            try:
                self._client("ec2").get_waiter("instance_running").wait(
                    InstanceIds=ids, WaiterConfig=self._waiter_config()
                )
            except WaiterError as exc:
                raise AwsAdapterError(f"instances {ids} did not reach 'running': {exc}") from exc

    def instances_state(self, ids: list[str]) -> dict[str, str]:
        """Instance id → state name (pending, running, stopped, terminated, ...)."""
        return {k: v.state for k, v in self.describe_instances(ids).items()}

    def describe_instances(self, ids: list[str]) -> dict[str, InstanceInfo]:
        """Instance id → type, state, private IP, subnet and tags."""
        if not ids:
            return {}
        reservations = self._paginate(
            self._client("ec2"), "describe_instances", "Reservations", InstanceIds=ids
        )
        return {i["InstanceId"]: self._info(i) for r in reservations for i in r["Instances"]}

    def wave_instance_ids(self, estate: str, wave: int | str) -> list[str]:
        """Ids of the live instances tagged with this wave (any server)."""
        tags = {TAG_ESTATE: estate, TAG_WAVE: wave_tag(estate, wave)}
        return [i.instance_id for i in self.find_instances(tags)]

    def _root_device(self, image_id: str) -> str:
        """The image's root device name (Windows images boot from /dev/sda1)."""
        images = self._client("ec2").describe_images(ImageIds=[image_id])["Images"]
        return str(images[0].get("RootDeviceName") or "/dev/xvda") if images else "/dev/xvda"

    # -- images that fit the source ----------------------------------------------------
    def _find_images(self, entry: dict[str, Any], arch_token: str, architecture: str,
                     edition: str | None = None) -> list[dict[str, Any]]:
        key = "sql_name" if edition else "name"
        if key not in entry:
            return []
        pattern = entry[key].format(arch=arch_token, edition=(edition or "").capitalize())
        images = self._client("ec2").describe_images(
            Owners=list(entry["owners"]),
            Filters=[{"Name": "name", "Values": [pattern]},
                     {"Name": "state", "Values": ["available"]},
                     {"Name": "architecture", "Values": [architecture]}],
        )["Images"]
        from migrationbox.cloud.images import natural_key

        # newest first: creation date, then the date or build in the name
        return sorted(images, key=lambda i: (i.get("CreationDate", ""),
                                             natural_key(i.get("Name", ""))), reverse=True)

    def image_for(
        self,
        os_name: str,
        os_version: str | None,
        architecture: str = "x86_64",
        sql_server: str | None = None,
        server: str | None = None,
    ) -> ImageChoice:
        """The newest AMI that fits ``os_name``/``os_version`` (``os_images.json`` rows).

        ``sql_server`` (an edition: standard, enterprise, web, express) asks for the
        licence-included Windows + SQL Server image of that edition. ``server`` only
        names the server in the refusal. Raises ``NoFittingImage`` saying what was
        looked for and which images of that family the account's region does have.
        """
        from migrationbox.cloud.images import family_rows, rules_for

        rules = rules_for(self.cloud, os_name, os_version, architecture, server)
        edition = sql_server.lower() if sql_server else None
        if rules[0].platform != "windows":
            edition = None  # SQL Server on Linux is installed on the plain image
        for rule in rules:
            found = self._find_images(rule.entry, rule.arch_token, architecture, edition)
            if found:
                img = found[0]
                return ImageChoice(
                    image_id=str(img["ImageId"]), name=str(img.get("Name", "")),
                    owner=str(img.get("OwnerId", "")), match=rule.match,
                    os_family=rule.family, os_version=rule.version,
                    rule=rule.rule + (f" + SQL Server {edition}" if edition else ""),
                    architecture=str(img.get("Architecture", architecture)),
                    platform=rule.platform)
        family = rules[0].family
        exist = []
        for row in family_rows(self.cloud, family):
            for img in self._find_images(row[self.cloud], rules[0].arch_token, architecture)[:1]:
                exist.append(f"{family} {row['version']}: {img['Name']} ({img['ImageId']})")
        who = f"server {server}: " if server else ""
        what = f"{os_name} {os_version or '(version unknown)'} ({architecture})"
        if edition:
            what += f" with SQL Server {edition}"
        tried = ", ".join(r.rule for r in rules)
        raise NoFittingImage(
            f"{who}no AMI in {self.region} fits {what} (looked for {tried}); images that "
            f"exist for {family}: {'; '.join(exist) if exist else 'none'}")

    # -- healer actions -------------------------------------------------------------
    def launch_like(
        self, instance_id: str, count: int, token: str, extra_tags: dict[str, str]
    ) -> list[str]:
        """``count`` more instances with the image, type, subnet, groups and tags of
        ``instance_id`` (plus ``extra_tags``); ``token`` makes a repeat return the same.

        The token is both the client token and a tag (``TAG_TOKEN``): a repeat finds the
        instances by that tag first, so it holds even where client tokens are not kept.
        """
        with _cloud_call(f"find instances of token {token}"):
            done = [i.instance_id for i in self.find_instances({TAG_TOKEN: token})]
        count -= len(done)
        if count <= 0:
            return done
        ec2 = self._client("ec2")
        with _cloud_call(f"describe {instance_id}"):
            found = [i for r in ec2.describe_instances(InstanceIds=[instance_id])[
                "Reservations"] for i in r["Instances"]]
        if not found:
            raise CloudServiceError(f"instance {instance_id} does not exist")
        model = found[0]
        tags = {k: v for k, v in _tag_dict(model.get("Tags")).items()
                if not k.startswith("aws:")}
        tags.update(extra_tags)
        tags[TAG_TOKEN] = token[:256]
        request: dict[str, Any] = {
            "ImageId": model["ImageId"], "InstanceType": model["InstanceType"],
            "MinCount": count, "MaxCount": count, "ClientToken": token[:64],
            "TagSpecifications": [{"ResourceType": "instance", "Tags": _tag_list(tags)}],
        }
        if model.get("SubnetId"):
            request["SubnetId"] = model["SubnetId"]
        groups = [g["GroupId"] for g in model.get("SecurityGroups", [])]
        if groups and model.get("SubnetId"):
            request["SecurityGroupIds"] = groups
        with _cloud_call(f"run_instances like {instance_id}"):
            created = ec2.run_instances(**request)["Instances"]
        return done + [str(i["InstanceId"]) for i in created]

    def terminate_instances(self, ids: list[str], wait: bool = False) -> None:
        if not ids:
            return
        ec2 = self._client("ec2")
        with _cloud_call(f"terminate {ids}"):
            ec2.terminate_instances(InstanceIds=ids)
            if wait:
                ec2.get_waiter("instance_terminated").wait(
                    InstanceIds=ids, WaiterConfig=self._waiter_config())

    def reboot_instances(self, ids: list[str]) -> None:
        if ids:
            with _cloud_call(f"reboot {ids}"):
                self._client("ec2").reboot_instances(InstanceIds=ids)

    def resize_instance(self, instance_id: str, instance_type: str) -> str:
        """Stop, change the type, start; returns the previous type. Already that type:
        only makes sure it runs."""
        ec2 = self._client("ec2")
        with _cloud_call(f"describe {instance_id}"):
            info = self.describe_instances([instance_id]).get(instance_id)
        if info is None:
            raise CloudServiceError(f"instance {instance_id} does not exist")
        with _cloud_call(f"resize {instance_id} to {instance_type}"):
            if info.instance_type != instance_type:
                if info.state not in ("stopped",):
                    ec2.stop_instances(InstanceIds=[instance_id])
                ec2.get_waiter("instance_stopped").wait(
                    InstanceIds=[instance_id], WaiterConfig=self._waiter_config())
                ec2.modify_instance_attribute(InstanceId=instance_id,
                                              InstanceType={"Value": instance_type})
            if info.state != "running" or info.instance_type != instance_type:
                ec2.start_instances(InstanceIds=[instance_id])
        return info.instance_type

    def grow_volumes(self, instance_id: str, factor: float = 2.0) -> dict[str, tuple[int, int]]:
        """Grow every EBS volume of the instance by ``factor``: volume id → (old, new) GiB."""
        ec2 = self._client("ec2")
        out: dict[str, tuple[int, int]] = {}
        with _cloud_call(f"grow volumes of {instance_id}"):
            volumes = ec2.describe_volumes(Filters=[
                {"Name": "attachment.instance-id", "Values": [instance_id]}])["Volumes"]
            for vol in sorted(volumes, key=lambda v: v["VolumeId"]):
                old = int(vol["Size"])
                new = max(old + 1, int(old * factor))
                ec2.modify_volume(VolumeId=vol["VolumeId"], Size=new)
                out[vol["VolumeId"]] = (old, new)
        return out

    def request_certificate(self, domain: str, token: str) -> str:
        """A DNS-validated certificate for ``domain``; ``token`` makes a repeat idempotent."""
        clean = "".join(c for c in token if c.isalnum())[:32] or "migrationbox"
        with _cloud_call(f"request a certificate for {domain}"):
            return str(self._client("acm").request_certificate(
                DomainName=domain.rstrip("."), ValidationMethod="DNS",
                IdempotencyToken=clean)["CertificateArn"])

    def delete_certificate(self, certificate_id: str) -> None:
        with _cloud_call(f"delete certificate {certificate_id}"):
            self._client("acm").delete_certificate(CertificateArn=certificate_id)

    def republish_records(self, fqdn: str, comment: str = "") -> tuple[int, str]:
        """Re-UPSERT the record sets of ``fqdn`` (a new change propagates them again);
        returns how many sets and the change's id and status."""
        name = _fqdn(fqdn).lower()
        zone_name = name.split(".", 1)[1]
        zone_id = self.find_hosted_zone(zone_name)
        if zone_id is None:
            raise CloudServiceError(f"no hosted zone {zone_name}")
        with _cloud_call(f"republish {name}"):
            sets = [r for r in self._record_sets(zone_id) if r["Name"].lower() == name]
            if not sets:
                raise CloudServiceError(f"no record {name} in {zone_name}")
            batch: dict[str, Any] = {"Changes": [{"Action": "UPSERT", "ResourceRecordSet": r}
                                                 for r in sets]}
            if comment:
                batch["Comment"] = comment[:256]
            info = self._client("route53").change_resource_record_sets(
                HostedZoneId=zone_id, ChangeBatch=batch)["ChangeInfo"]
        return len(sets), f"{info['Id']} {info['Status']}"

    # -- load balancing -------------------------------------------------------------
    def ensure_load_balancer(
        self,
        name: str,
        subnet_ids: list[str],
        sg_ids: list[str],
        tags: dict[str, str],
        internal: bool = False,
    ) -> LoadBalancer:
        elb = self._client("elbv2")
        try:
            lb = elb.describe_load_balancers(Names=[name])["LoadBalancers"][0]
        except ClientError as exc:
            if _code(exc) != "LoadBalancerNotFound":
                raise
            lb = elb.create_load_balancer(
                Name=name,
                Subnets=subnet_ids,
                SecurityGroups=sg_ids,
                Scheme="internal" if internal else "internet-facing",
                Type="application",
                IpAddressType="ipv4",
                Tags=_tag_list({**tags, TAG_NAME: name}),
            )["LoadBalancers"][0]
            elb.get_waiter("load_balancer_available").wait(
                LoadBalancerArns=[lb["LoadBalancerArn"]], WaiterConfig=self._waiter_config()
            )
        return LoadBalancer(arn=lb["LoadBalancerArn"], name=name, dns_name=lb["DNSName"])

    def ensure_target_group(
        self,
        name: str,
        vpc_id: str,
        port: int,
        tags: dict[str, str],
        health_check_path: str = "/",
    ) -> str:
        elb = self._client("elbv2")
        try:
            return str(elb.describe_target_groups(Names=[name])["TargetGroups"][0]
                       ["TargetGroupArn"])
        except ClientError as exc:
            if _code(exc) != "TargetGroupNotFound":
                raise
        protocol = "HTTPS" if port in TLS_PORTS else "HTTP"
        return str(elb.create_target_group(
            Name=name,
            Protocol=protocol,
            Port=port,
            VpcId=vpc_id,
            TargetType="instance",
            HealthCheckProtocol=protocol,
            HealthCheckPath=health_check_path,
            Tags=_tag_list({**tags, TAG_NAME: name}),
        )["TargetGroups"][0]["TargetGroupArn"])

    def ensure_listener(
        self, lb_arn: str, port: int, target_group_arn: str, tags: dict[str, str]
    ) -> str:
        """An HTTP listener on ``port`` forwarding to the target group.

        TLS termination needs a certificate, which the configure phase installs; until
        then the listener speaks HTTP on every port.
        """
        elb = self._client("elbv2")
        action = [{"Type": "forward", "TargetGroupArn": target_group_arn}]
        for listener in elb.describe_listeners(LoadBalancerArn=lb_arn)["Listeners"]:
            if listener["Port"] == port:
                current = [a.get("TargetGroupArn") for a in listener.get("DefaultActions", [])]
                if current != [target_group_arn]:
                    elb.modify_listener(ListenerArn=listener["ListenerArn"], DefaultActions=action)
                return str(listener["ListenerArn"])
        return str(elb.create_listener(
            LoadBalancerArn=lb_arn, Protocol="HTTP", Port=port, DefaultActions=action,
            Tags=_tag_list(tags),
        )["Listeners"][0]["ListenerArn"])

    def register_targets(
        self, tg_arn: str, instance_ids: list[str], port: int | None = None
    ) -> None:
        if not instance_ids:
            return
        targets = [{"Id": i, **({"Port": port} if port else {})} for i in instance_ids]
        self._client("elbv2").register_targets(TargetGroupArn=tg_arn, Targets=targets)

    def target_health(self, tg_arn: str) -> dict[str, str]:
        """Instance id → health state (healthy, unhealthy, initial, unused, ...)."""
        descs = self._client("elbv2").describe_target_health(TargetGroupArn=tg_arn)[
            "TargetHealthDescriptions"
        ]
        return {d["Target"]["Id"]: d["TargetHealth"]["State"] for d in descs}

    # -- DNS ------------------------------------------------------------------------
    def ensure_hosted_zone(
        self, name: str, tags: dict[str, str], vpc_id: str | None = None
    ) -> str:
        """A hosted zone (private when ``vpc_id`` is given) owned by these tags; its id."""
        r53 = self._client("route53")
        fqdn = _fqdn(name)
        for zone in self._zones_named(fqdn):
            zone_id = zone["Id"].split("/")[-1]
            if bool(zone["Config"].get("PrivateZone")) != bool(vpc_id):
                continue
            if _tag_dict(self._zone_tags([zone_id]).get(zone_id)).get(TAG_ESTATE) != tags.get(
                TAG_ESTATE
            ):
                continue
            if vpc_id:
                vpcs = r53.get_hosted_zone(Id=zone_id).get("VPCs", [])
                if vpc_id not in {v["VPCId"] for v in vpcs}:
                    r53.associate_vpc_with_hosted_zone(
                        HostedZoneId=zone_id, VPC={"VPCRegion": self.region, "VPCId": vpc_id}
                    )
            return str(zone_id)
        request: dict[str, Any] = {
            "Name": fqdn,
            "CallerReference": f"migrationbox-{fqdn}-{time.time_ns()}",
            "HostedZoneConfig": {"Comment": f"MigrationBox {tags.get(TAG_WAVE, '')}",
                                 "PrivateZone": bool(vpc_id)},
        }
        if vpc_id:
            request["VPC"] = {"VPCRegion": self.region, "VPCId": vpc_id}
        zone_id = r53.create_hosted_zone(**request)["HostedZone"]["Id"].split("/")[-1]
        r53.change_tags_for_resource(
            ResourceType="hostedzone", ResourceId=zone_id, AddTags=_tag_list(tags)
        )
        return str(zone_id)

    def find_hosted_zone(self, name: str, estate: str | None = None) -> str | None:
        """The id of the zone called ``name``; with several of that name (a private and a
        public one), the one tagged with ``estate`` wins, else the first listed."""
        fqdn = _fqdn(name).lower()
        r53 = self._client("route53")
        found = r53.list_hosted_zones_by_name(DNSName=fqdn, MaxItems="100")["HostedZones"]
        ids = [z["Id"].split("/")[-1] for z in found if z["Name"].lower() == fqdn]
        if len(ids) <= 1 or estate is None:
            return ids[0] if ids else None
        for zone_id, tag_list in self._zone_tags(ids).items():
            if _tag_dict(tag_list).get(TAG_ESTATE) == estate:
                return str(zone_id)
        return ids[0]

    def _zones_named(self, fqdn: str) -> list[dict[str, Any]]:
        zones = self._paginate(self._client("route53"), "list_hosted_zones", "HostedZones")
        return [z for z in zones if z["Name"].lower() == fqdn.lower()]

    def _zone_tags(self, zone_ids: list[str]) -> dict[str, list[dict[str, str]]]:
        out: dict[str, list[dict[str, str]]] = {}
        r53 = self._client("route53")
        for chunk in _chunks(zone_ids, 10):
            sets = r53.list_tags_for_resources(ResourceType="hostedzone", ResourceIds=chunk)
            for item in sets["ResourceTagSets"]:
                out[item["ResourceId"]] = item.get("Tags", [])
        return out

    def upsert_record(
        self, zone_id: str, name: str, value: str, record_type: str | None = None, ttl: int = 60
    ) -> None:
        self._client("route53").change_resource_record_sets(
            HostedZoneId=zone_id,
            ChangeBatch={"Changes": [{
                "Action": "UPSERT",
                "ResourceRecordSet": {
                    "Name": _fqdn(name), "Type": record_type or _record_type(value), "TTL": ttl,
                    "ResourceRecords": [{"Value": value}],
                },
            }]},
        )

    def _record_sets(self, zone_id: str) -> list[dict[str, Any]]:
        return self._paginate(
            self._client("route53"), "list_resource_record_sets", "ResourceRecordSets",
            HostedZoneId=zone_id,
        )

    def get_records(self, zone_id: str, name: str | None = None) -> list[dict[str, Any]]:
        """Record sets of a zone (only ``name`` if given), as plain dicts."""
        out = []
        for rrset in self._record_sets(zone_id):
            if name and _norm_value(rrset["Name"]) != _norm_value(name):
                continue
            out.append({
                "name": rrset["Name"],
                "type": rrset["Type"],
                "values": [r["Value"] for r in rrset.get("ResourceRecords", [])],
                "set_identifier": rrset.get("SetIdentifier"),
                "weight": rrset.get("Weight"),
                "ttl": rrset.get("TTL"),
            })
        return out

    def upsert_weighted_records(
        self,
        zone_id: str,
        record_name: str,
        source_value: str,
        target_value: str,
        target_weight_pct: int,
        ttl: int = 30,
    ) -> None:
        """Two weighted records, ``source`` (100 - pct) and ``target`` (pct), in one change.

        A plain record of the same name and type (the one provisioning made) cannot
        coexist with weighted ones, so it is deleted in the same atomic change batch.
        """
        if not 0 <= int(target_weight_pct) <= 100:
            raise ValueError(f"target_weight_pct must be 0..100, got {target_weight_pct}")
        rtype = _record_type(source_value)
        if _record_type(target_value) != rtype:
            raise ValueError(
                f"weighted records for {record_name}: source {source_value!r} and target "
                f"{target_value!r} must be the same record type (both IPs or both names)"
            )
        fqdn = _fqdn(record_name)
        changes: list[dict[str, Any]] = []
        for rrset in self._record_sets(zone_id):
            if _norm_value(rrset["Name"]) == _norm_value(fqdn) and rrset["Type"] == rtype and (
                "SetIdentifier" not in rrset
            ):
                changes.append({"Action": "DELETE", "ResourceRecordSet": rrset})
        for ident, value, weight in (
            ("source", source_value, 100 - int(target_weight_pct)),
            ("target", target_value, int(target_weight_pct)),
        ):
            changes.append({
                "Action": "UPSERT",
                "ResourceRecordSet": {
                    "Name": fqdn, "Type": rtype, "SetIdentifier": ident, "Weight": weight,
                    "TTL": ttl, "ResourceRecords": [{"Value": value}],
                },
            })
        self._client("route53").change_resource_record_sets(
            HostedZoneId=zone_id, ChangeBatch={"Changes": changes}
        )

    def get_weighted_records(self, zone_id: str, name: str) -> list[WeightedRecord]:
        out = [
            WeightedRecord(
                set_identifier=r["set_identifier"],
                value=r["values"][0] if r["values"] else "",
                weight=int(r["weight"]),
                record_type=r["type"],
            )
            for r in self.get_records(zone_id, name)
            if r["set_identifier"] is not None and r["weight"] is not None
        ]
        return sorted(out, key=lambda w: w.set_identifier)

    # -- secrets and monitoring -----------------------------------------------------
    def put_secret(self, name: str, value: str, tags: dict[str, str]) -> str:
        """Create the secret or store a new version; the value is never logged."""
        sm = self._client("secretsmanager")
        try:
            desc = sm.describe_secret(SecretId=name)
        except ClientError as exc:
            if _code(exc) != "ResourceNotFoundException":
                raise
            return str(sm.create_secret(Name=name, SecretString=value, Tags=_tag_list(tags))["ARN"])
        if desc.get("DeletedDate"):
            sm.restore_secret(SecretId=name)
        sm.put_secret_value(SecretId=name, SecretString=value)
        if any(_tag_dict(desc.get("Tags")).get(k) != v for k, v in tags.items()):
            sm.tag_resource(SecretId=name, Tags=_tag_list(tags))
        return str(desc["ARN"])

    def get_secret(self, name: str) -> str:
        return str(self._client("secretsmanager").get_secret_value(SecretId=name)["SecretString"])

    def put_metric_data(self, namespace: str, points: list[MetricDatum]) -> None:
        """Publish points, up to 1,000 per PutMetricData call."""
        cw = self._client("cloudwatch")
        data = []
        for p in points:
            item: dict[str, Any] = {
                "MetricName": p.name, "Value": float(p.value),
                "Dimensions": [{"Name": k, "Value": v} for k, v in p.dimensions.items()],
            }
            if p.timestamp is not None:
                item["Timestamp"] = p.timestamp
            if p.unit:
                item["Unit"] = p.unit
            if p.high_resolution:
                item["StorageResolution"] = 1
            data.append(item)
        for chunk in _chunks(data, METRIC_POINTS_PER_CALL):
            with _cloud_call("CloudWatch put_metric_data"):
                cw.put_metric_data(Namespace=namespace, MetricData=chunk)

    def metric_series(
        self, queries: list[MetricQuery], start: datetime, end: datetime
    ) -> dict[str, list[tuple[datetime, float]]]:
        """Series per query id, oldest first: one GetMetricData call per 500 queries
        (plus its continuation pages)."""
        ids = [q.id for q in queries]
        if len(set(ids)) != len(ids):
            raise ValueError(f"metric query ids must be unique: {ids}")
        cw = self._client("cloudwatch")
        out: dict[str, dict[datetime, float]] = {q.id: {} for q in queries}
        for chunk in _chunks(queries, METRIC_QUERIES_PER_CALL):
            # CloudWatch ids must start with a lower-case letter: use positions, map back
            request = [{"Id": f"q{i}", "ReturnData": True, "MetricStat": {
                "Metric": {"Namespace": q.namespace, "MetricName": q.metric,
                           "Dimensions": [{"Name": k, "Value": v}
                                          for k, v in q.dimensions.items()]},
                "Period": int(q.period_s), "Stat": q.stat}} for i, q in enumerate(chunk)]
            token: str | None = None
            while True:
                kwargs: dict[str, Any] = {"MetricDataQueries": request, "StartTime": start,
                                          "EndTime": end, "ScanBy": "TimestampAscending"}
                if token:
                    kwargs["NextToken"] = token
                with _cloud_call("CloudWatch get_metric_data"):
                    res = cw.get_metric_data(**kwargs)
                self.monitoring_calls += 1
                for r in res["MetricDataResults"]:
                    out[chunk[int(r["Id"][1:])].id].update(
                        zip(r["Timestamps"], r["Values"], strict=False))
                token = res.get("NextToken")
                if not token:
                    break
        return {k: sorted(v.items()) for k, v in out.items()}

    def metric_statistics(
        self,
        namespace: str,
        metric: str,
        dimensions: dict[str, str],
        start: datetime,
        end: datetime,
        period_s: int = 60,
    ) -> list[MetricStatistics]:
        """Sum, maximum, minimum, sample count and average per period, oldest first."""
        with _cloud_call("CloudWatch get_metric_statistics"):
            res = self._client("cloudwatch").get_metric_statistics(
                Namespace=namespace, MetricName=metric,
                Dimensions=[{"Name": k, "Value": v} for k, v in dimensions.items()],
                StartTime=start, EndTime=end, Period=int(period_s),
                Statistics=["Sum", "Maximum", "Minimum", "SampleCount", "Average"])
        self.monitoring_calls += 1
        points = [MetricStatistics(
            timestamp=d["Timestamp"], sum=float(d.get("Sum", 0.0)),
            maximum=float(d.get("Maximum", 0.0)), minimum=float(d.get("Minimum", 0.0)),
            sample_count=float(d.get("SampleCount", 0.0)),
            average=float(d.get("Average", 0.0))) for d in res.get("Datapoints", [])]
        return sorted(points, key=lambda p: p.timestamp)

    def ensure_cpu_alarm(
        self, name: str, instance_id: str, tags: dict[str, str], threshold_pct: float = 80.0
    ) -> str:
        """CPU above ``threshold_pct`` for 10 minutes; ``put_metric_alarm`` is an upsert."""
        self._client("cloudwatch").put_metric_alarm(
            AlarmName=name,
            AlarmDescription=f"MigrationBox {tags.get(TAG_WAVE, '')}: CPU high on {instance_id}",
            Namespace="AWS/EC2",
            MetricName="CPUUtilization",
            Dimensions=[{"Name": "InstanceId", "Value": instance_id}],
            Statistic="Average",
            Period=300,
            EvaluationPeriods=2,
            Threshold=threshold_pct,
            ComparisonOperator="GreaterThanThreshold",
            TreatMissingData="missing",
            Tags=_tag_list(tags),
        )
        return name

    # -- inventory ------------------------------------------------------------------
    def resources_by_tag(
        self, estate: str, wave: int | str | None = None
    ) -> list[CloudResource]:
        """Everything carrying the estate's tags (and the wave's, if given)."""
        want_wave = wave_tag(estate, wave) if wave is not None else None

        def mine(tags: dict[str, str]) -> bool:
            return tags.get(TAG_ESTATE) == estate and (
                want_wave is None or tags.get(TAG_WAVE) == want_wave
            )

        ec2 = self._client("ec2")
        filters = self._owner_filters(estate, wave)
        out: list[CloudResource] = []

        def add(kind: str, rid: str, tags: dict[str, str]) -> None:
            out.append(CloudResource(kind, rid, tags.get(TAG_NAME, ""), tags))

        for r in self._paginate(ec2, "describe_instances", "Reservations", Filters=[
            *filters, {"Name": "instance-state-name", "Values": LIVE_INSTANCE_STATES}
        ]):
            for inst in r["Instances"]:
                add("instance", inst["InstanceId"], _tag_dict(inst.get("Tags")))
        for op, key, kind, id_key in (
            ("describe_security_groups", "SecurityGroups", "security_group", "GroupId"),
            ("describe_route_tables", "RouteTables", "route_table", "RouteTableId"),
            ("describe_internet_gateways", "InternetGateways", "internet_gateway",
             "InternetGatewayId"),
            ("describe_subnets", "Subnets", "subnet", "SubnetId"),
            ("describe_vpcs", "Vpcs", "vpc", "VpcId"),
        ):
            for item in self._paginate(ec2, op, key, Filters=filters):
                add(kind, item[id_key], _tag_dict(item.get("Tags")))

        elb = self._client("elbv2")
        for op, key, kind, arn_key in (
            ("describe_load_balancers", "LoadBalancers", "load_balancer", "LoadBalancerArn"),
            ("describe_target_groups", "TargetGroups", "target_group", "TargetGroupArn"),
        ):
            arns = [i[arn_key] for i in self._paginate(elb, op, key)]
            for chunk in _chunks(arns, 20):
                for desc in elb.describe_tags(ResourceArns=chunk)["TagDescriptions"]:
                    tags = _tag_dict(desc.get("Tags"))
                    if mine(tags):
                        add(kind, desc["ResourceArn"], tags)

        zones = self._paginate(self._client("route53"), "list_hosted_zones", "HostedZones")
        zone_ids = [z["Id"].split("/")[-1] for z in zones]
        for zone_id, tag_list in self._zone_tags(zone_ids).items():
            tags = _tag_dict(tag_list)
            if mine(tags):
                add("hosted_zone", zone_id, tags)

        for secret in self._paginate(self._client("secretsmanager"), "list_secrets", "SecretList"):
            tags = _tag_dict(secret.get("Tags"))
            if mine(tags) and not secret.get("DeletedDate"):
                add("secret", secret["ARN"], {**tags, TAG_NAME: tags.get(TAG_NAME, secret["Name"])})

        cw = self._client("cloudwatch")
        for alarm in self._paginate(cw, "describe_alarms", "MetricAlarms"):
            tags = _tag_dict(cw.list_tags_for_resource(ResourceARN=alarm["AlarmArn"]).get("Tags"))
            if mine(tags):
                add("alarm", alarm["AlarmName"], {**tags, TAG_NAME: alarm["AlarmName"]})
        return out

    # -- teardown -------------------------------------------------------------------
    def teardown(self, estate: str, wave: int | str) -> list[CloudResource]:
        """Delete what carries this wave's tags, dependents first; return what went.

        Order: DNS records pointing at the wave's instances or load balancers (a
        weighted pair falls back to a plain record of its source value), alarms, load
        balancers, target groups, instances, secrets, security groups, hosted zones,
        route tables, internet gateways, subnets, VPCs.
        """
        found = self.resources_by_tag(estate, wave)
        by_type: dict[str, list[CloudResource]] = {}
        for res in found:
            by_type.setdefault(res.type, []).append(res)
        deleted: list[CloudResource] = []
        ec2 = self._client("ec2")
        elb = self._client("elbv2")

        deleted += self._delete_wave_records(estate, by_type)

        alarms = [r.id for r in by_type.get("alarm", [])]
        for chunk in _chunks(alarms, 100):
            self._client("cloudwatch").delete_alarms(AlarmNames=chunk)
        deleted += by_type.get("alarm", [])

        lbs = by_type.get("load_balancer", [])
        for lb in lbs:
            for listener in elb.describe_listeners(LoadBalancerArn=lb.id)["Listeners"]:
                deleted.append(CloudResource("listener", listener["ListenerArn"],
                                             f"{lb.name}:{listener['Port']}", lb.tags))
            elb.delete_load_balancer(LoadBalancerArn=lb.id)
        if lbs:
            elb.get_waiter("load_balancers_deleted").wait(
                LoadBalancerArns=[lb.id for lb in lbs], WaiterConfig=self._waiter_config()
            )
        deleted += lbs
        for tg in by_type.get("target_group", []):
            self._retry_dependency(f"target group {tg.id}",
                                   lambda tg=tg: elb.delete_target_group(TargetGroupArn=tg.id))
            deleted.append(tg)

        instances = [r.id for r in by_type.get("instance", [])]
        if instances:
            ec2.terminate_instances(InstanceIds=instances)
            ec2.get_waiter("instance_terminated").wait(
                InstanceIds=instances, WaiterConfig=self._waiter_config()
            )
        deleted += by_type.get("instance", [])

        sm = self._client("secretsmanager")
        for secret in by_type.get("secret", []):
            sm.delete_secret(SecretId=secret.id, ForceDeleteWithoutRecovery=True)
            deleted.append(secret)

        groups = by_type.get("security_group", [])
        self._revoke_references({g.id for g in groups})
        for group in groups:
            self._retry_dependency(f"security group {group.id} ({group.name})",
                                   lambda g=group: ec2.delete_security_group(GroupId=g.id))
            deleted.append(group)

        r53 = self._client("route53")
        for zone in by_type.get("hosted_zone", []):
            changes = [
                {"Action": "DELETE", "ResourceRecordSet": rrset}
                for rrset in self._record_sets(zone.id) if rrset["Type"] not in ("SOA", "NS")
            ]
            for chunk in _chunks(changes, 500):
                r53.change_resource_record_sets(HostedZoneId=zone.id,
                                                ChangeBatch={"Changes": chunk})
            r53.delete_hosted_zone(Id=zone.id)
            deleted.append(zone)

        for table in by_type.get("route_table", []):
            desc = ec2.describe_route_tables(RouteTableIds=[table.id])["RouteTables"][0]
            if any(a.get("Main") for a in desc.get("Associations", [])):
                continue
            for assoc in desc.get("Associations", []):
                ec2.disassociate_route_table(AssociationId=assoc["RouteTableAssociationId"])
            ec2.delete_route_table(RouteTableId=table.id)
            deleted.append(table)

        for igw in by_type.get("internet_gateway", []):
            desc = ec2.describe_internet_gateways(InternetGatewayIds=[igw.id])["InternetGateways"]
            for att in desc[0].get("Attachments", []) if desc else []:
                self._retry_dependency(
                    f"internet gateway {igw.id}",
                    lambda igw=igw, att=att: ec2.detach_internet_gateway(
                        InternetGatewayId=igw.id, VpcId=att["VpcId"]),
                )
            ec2.delete_internet_gateway(InternetGatewayId=igw.id)
            deleted.append(igw)

        for subnet in by_type.get("subnet", []):
            self._retry_dependency(f"subnet {subnet.id} ({subnet.name})",
                                   lambda s=subnet: ec2.delete_subnet(SubnetId=s.id))
            deleted.append(subnet)
        for vpc in by_type.get("vpc", []):
            self._retry_dependency(f"VPC {vpc.id} ({vpc.name})",
                                   lambda v=vpc: ec2.delete_vpc(VpcId=v.id))
            deleted.append(vpc)
        log.info("teardown %s: deleted %d resources", wave_tag(estate, wave), len(deleted))
        return deleted

    def _revoke_references(self, group_ids: set[str]) -> None:
        """Drop rules inside the doomed groups that name each other (AWS refuses otherwise)."""
        if not group_ids:
            return
        for group_id in sorted(group_ids):
            self._revoke(group_id, lambda key: key[3] == "sg" and key[4] in group_ids)

    def _delete_wave_records(
        self, estate: str, by_type: dict[str, list[CloudResource]]
    ) -> list[CloudResource]:
        """DNS records cannot carry tags: find them by value in the estate's zones."""
        instance_ids = [r.id for r in by_type.get("instance", [])]
        values = {_norm_value(i.private_ip) for i in self.describe_instances(instance_ids).values()
                  if i.private_ip}
        lb_arns = [r.id for r in by_type.get("load_balancer", [])]
        if lb_arns:
            lbs = self._client("elbv2").describe_load_balancers(LoadBalancerArns=lb_arns)
            values |= {_norm_value(lb["DNSName"]) for lb in lbs["LoadBalancers"]}
        if not values:
            return []
        estate_zones = [r.id for r in self.resources_by_zone_estate(estate)]
        r53 = self._client("route53")
        deleted: list[CloudResource] = []
        for zone_id in estate_zones:
            rrsets = self._record_sets(zone_id)
            changes: list[dict[str, Any]] = []
            for rrset in rrsets:
                rvalues = {_norm_value(r["Value"]) for r in rrset.get("ResourceRecords", [])}
                if not rvalues & values:
                    continue
                changes.append({"Action": "DELETE", "ResourceRecordSet": rrset})
                deleted.append(CloudResource(
                    "dns_record",
                    dns_record_id(zone_id, rrset["Name"], rrset["Type"],
                                  rrset.get("SetIdentifier", "")),
                    rrset["Name"],
                ))
                if rrset.get("SetIdentifier") == "target":
                    source = next(
                        (s for s in rrsets if s["Name"] == rrset["Name"]
                         and s["Type"] == rrset["Type"] and s.get("SetIdentifier") == "source"),
                        None,
                    )
                    if source is not None:
                        changes.append({"Action": "DELETE", "ResourceRecordSet": source})
                        changes.append({"Action": "CREATE", "ResourceRecordSet": {
                            "Name": source["Name"], "Type": source["Type"],
                            "TTL": source.get("TTL", 60),
                            "ResourceRecords": source["ResourceRecords"],
                        }})
            for chunk in _chunks(changes, 500):
                r53.change_resource_record_sets(HostedZoneId=zone_id,
                                                ChangeBatch={"Changes": chunk})
        return deleted

    def resources_by_zone_estate(self, estate: str) -> list[CloudResource]:
        """Hosted zones of the estate, whichever wave (or the landing zone) made them."""
        r53 = self._client("route53")
        zones = self._paginate(r53, "list_hosted_zones", "HostedZones")
        out = []
        for zone_id, tag_list in self._zone_tags([z["Id"].split("/")[-1] for z in zones]).items():
            tags = _tag_dict(tag_list)
            if tags.get(TAG_ESTATE) == estate:
                out.append(CloudResource("hosted_zone", zone_id, tags.get(TAG_NAME, ""), tags))
        return out
