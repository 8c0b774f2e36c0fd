"""AWS DMS through the amazon provider's DmsHook, against the real moto server process,
with real PostgreSQL databases on loopback for the data.

What the emulator gives (moto 5.2.5, see cloud/aws_dms.py): resources, tags and task
statuses for real, but it moves no data and has no ``failed`` status. So these tests
check the DMS calls and statuses the emulator really returns, that the row checksums
catch a "full load complete" that delivered nothing, and that the failure path runs on
the real ``stopped`` status of a task stopped through the provider's operator.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, inspect
from sqlalchemy.engine import make_url

from migrationbox.cloud.aws_dms import (
    AwsDmsService,
    DmsFullLoadSensor,
    endpoint_identifier,
    secret_name,
    secrets_role_name,
    task_identifier,
    wave_identifier,
)
from migrationbox.cloud.aws_session import aws_client
from migrationbox.cloud.base import TAG_ESTATE, TAG_SERVER, TAG_WAVE
from migrationbox.cloud.database_service import (
    DatabaseCredentials,
    DatabaseLocation,
    DatabaseServiceError,
    MigrationSpec,
    TaskState,
    TaskStatus,
)
from migrationbox.cloud.emulator import EmulatorProcess, free_port
from migrationbox.endpoints.model import Endpoint
from migrationbox.errors import ConfigurationError
from migrationbox.lab import databases as labdb
from migrationbox.lab.servers import LabServer
from migrationbox.replication.database import compare_databases
from migrationbox.replication.dms import (
    ServicePlacement,
    ServiceStart,
    finish_service_migration,
    replicate_database_via_service,
    start_service_migration,
)

SERVER = LabServer("pg-01", "pg01.corp.example", "postgresql", data_size_gb=20)


def db_endpoint(server_id: str, name: str, source_uri: str | None, target_uri: str | None,
               details: dict[str, Any] | None = None) -> Endpoint:
    return Endpoint(server_id, "database", name, source_uri, target_uri, dict(details or {}))


@pytest.fixture
def pg() -> Iterator[labdb.LabDatabases]:
    ok, why = labdb.postgres_available()
    if not ok:
        pytest.skip(f"PostgreSQL on 127.0.0.1:5432 not reachable: {why}")
    dbs = labdb.provision(f"dms{uuid.uuid4().hex[:8]}", SERVER, "postgresql",
                          Path("/nonexistent"))
    try:
        yield dbs
    finally:
        labdb.drop(dbs)


@pytest.fixture
def service(fresh_aws: EmulatorProcess) -> AwsDmsService:
    return AwsDmsService(region="us-east-1", poll_seconds=0.1, timeout_seconds=30)


def _subnets() -> list[str]:
    ec2 = aws_client("ec2", region="us-east-1")
    vpc = ec2.create_vpc(CidrBlock="10.40.0.0/16")["Vpc"]["VpcId"]
    return [ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.40.{i}.0/24",
                              AvailabilityZone=f"us-east-1{az}")["Subnet"]["SubnetId"]
            for i, az in ((1, "a"), (2, "b"))]


def _spec(estate: str = "acme", **kw: Any) -> MigrationSpec:
    base: dict[str, Any] = dict(
        estate=estate, wave=1, server_id="pg-01", name="orders",
        source=DatabaseLocation("postgresql", "db.corp.example", 5432, "shop"),
        target=DatabaseLocation("postgresql", "10.40.1.10", 5432, "shop"))
    base.update(kw)
    return MigrationSpec(**base)


def _tags(arn: str) -> dict[str, str]:
    listed = aws_client("dms", region="us-east-1").list_tags_for_resource(ResourceArn=arn)
    return {t["Key"]: t["Value"] for t in listed["TagList"]}


def _tables(url: str) -> list[str]:
    engine = create_engine(url)
    try:
        return sorted(inspect(engine).get_table_names())
    finally:
        engine.dispose()


CREDS = DatabaseCredentials("app", "not-logged-pw")


# ---------------------------------------------------------------- resources
def test_resources_are_created_tagged_and_found_again(service):
    spec = _spec(subnet_ids=tuple(_subnets()))
    first = service.ensure_migration(spec, CREDS, CREDS)
    wave_id = wave_identifier("acme", 1)
    src_id, tgt_id = endpoint_identifier(spec, "source"), endpoint_identifier(spec, "target")
    assert set(first.created) == {wave_id, src_id, tgt_id, task_identifier(spec),
                                  secret_name(src_id), secret_name(tgt_id),
                                  secrets_role_name("acme", 1)}
    assert first.subnet_group_id == wave_id and first.reused == ()

    dms = aws_client("dms", region="us-east-1")
    (src,) = dms.describe_endpoints(Filters=[{"Name": "endpoint-id", "Values": [
        src_id]}])["Endpoints"]
    assert (src["EngineName"], src["DatabaseName"]) == ("postgres", "shop")
    # no login in the endpoint definition: it reads it from its secret through the role
    assert not {"Password", "Username", "ServerName"} & {k for k, v in src.items() if v}
    assert "not-logged-pw" not in json.dumps(dms.describe_endpoints(), default=str)
    ref = src["PostgreSQLSettings"]
    sm, iam = aws_client("secretsmanager", region="us-east-1"), aws_client("iam")
    secret = sm.describe_secret(SecretId=ref["SecretsManagerSecretId"])
    assert secret["Name"] == secret_name(src_id)
    assert json.loads(sm.get_secret_value(SecretId=secret["ARN"])["SecretString"]) == {
        "username": "app", "password": "not-logged-pw", "host": "db.corp.example",
        "port": 5432, "engine": "postgres", "dbname": "shop"}
    assert {t["Key"]: t["Value"] for t in secret["Tags"]}[TAG_WAVE] == "acme/wave-01"
    role = iam.get_role(RoleName=secrets_role_name("acme", 1))["Role"]
    assert role["Arn"] == ref["SecretsManagerAccessRoleArn"]
    trust = role["AssumeRolePolicyDocument"]
    trust = json.loads(trust) if isinstance(trust, str) else trust
    assert trust["Statement"][0]["Principal"] == {"Service": "dms.us-east-1.amazonaws.com"}
    policy = iam.get_role_policy(RoleName=role["RoleName"], PolicyName="read-wave-secrets")
    doc = policy["PolicyDocument"]
    doc = json.loads(doc) if isinstance(doc, str) else doc
    assert doc["Statement"][0]["Action"] == ["secretsmanager:GetSecretValue",
                                             "secretsmanager:DescribeSecret"]
    assert doc["Statement"][0]["Condition"]["StringEquals"] == {
        f"secretsmanager:ResourceTag/{TAG_WAVE}": "acme/wave-01"}
    (task,) = dms.describe_replication_tasks(Filters=[{"Name": "replication-task-arn",
                                                       "Values": [first.task_id]}])[
        "ReplicationTasks"]
    assert task["MigrationType"] == "full-load-and-cdc"
    assert json.loads(task["TableMappings"])["rules"][0]["rule-action"] == "include"
    for arn in (first.task_id, first.source_endpoint_id, first.target_endpoint_id):
        tags = _tags(arn)
        assert tags[TAG_ESTATE] == "acme" and tags[TAG_WAVE] == "acme/wave-01"
        assert tags[TAG_SERVER] == "pg-01"
    assert _tags(first.runner_id)[TAG_WAVE] == "acme/wave-01"

    # a re-run (a new adapter, as in a new task try) finds everything and makes nothing
    again = AwsDmsService(region="us-east-1", poll_seconds=0.1, timeout_seconds=30) \
        .ensure_migration(spec, CREDS, CREDS)
    assert again.created == ()
    assert (again.runner_id, again.source_endpoint_id, again.target_endpoint_id,
            again.task_id) == (first.runner_id, first.source_endpoint_id,
                               first.target_endpoint_id, first.task_id)
    assert len(dms.describe_endpoints()["Endpoints"]) == 2
    assert len(dms.describe_replication_tasks()["ReplicationTasks"]) == 1
    assert len(dms.describe_replication_instances()["ReplicationInstances"]) == 1

    # the password was rotated in the Airflow connection: the secret follows, the
    # endpoint (which holds no password) stays as it is
    rotated = DatabaseCredentials("app", "rotated-pw")
    service.ensure_migration(spec, rotated, CREDS)
    assert json.loads(sm.get_secret_value(SecretId=secret_name(src_id))["SecretString"])[
        "password"] == "rotated-pw"
    assert len(dms.describe_endpoints()["Endpoints"]) == 2

    # the endpoint's database moved: refused, naming server and endpoint, not silently kept
    moved = _spec(subnet_ids=spec.subnet_ids,
                  source=DatabaseLocation("postgresql", "db2.corp.example", 5432, "shop"))
    with pytest.raises(ConfigurationError) as err:
        service.ensure_migration(moved, CREDS, CREDS)
    assert "endpoint pg-01/database/orders" in str(err.value)
    assert "host" in str(err.value) and secret_name(src_id) in str(err.value)


def test_the_password_route_is_an_explicit_fallback_only(fresh_aws):
    """``credentials="password"`` puts the login in the endpoint, as DMS also allows; it
    is chosen, never fallen back to (the emulator takes the secret route)."""
    service = AwsDmsService(region="us-east-1", poll_seconds=0.1, timeout_seconds=30,
                            credentials="password")
    spec = _spec()
    res = service.ensure_migration(spec, CREDS, CREDS)
    assert secret_name(endpoint_identifier(spec, "source")) not in res.created
    dms = aws_client("dms", region="us-east-1")
    (src,) = dms.describe_endpoints(Filters=[{"Name": "endpoint-id", "Values": [
        endpoint_identifier(spec, "source")]}])["Endpoints"]
    assert (src["ServerName"], src["Port"], src["Username"]) == ("db.corp.example", 5432,
                                                                 "app")
    assert not src.get("PostgreSQLSettings")
    assert aws_client("secretsmanager", region="us-east-1").list_secrets()["SecretList"] == []
    with pytest.raises(ConfigurationError, match="credentials"):
        AwsDmsService(credentials="plaintext")


def test_task_statuses_as_the_emulator_gives_them(service):
    spec = _spec()
    res = service.ensure_migration(spec, CREDS, CREDS)
    created = service.status(res.task_id)
    assert (created.state, created.provider_status) == (TaskState.PENDING, "creating")

    started = service.start(res.task_id)
    # moto: "running" at once, statistics 100 % loaded, so the full load reads complete
    assert started.provider_status == "running"
    assert started.state is TaskState.FULL_LOAD_COMPLETE
    assert service.start(res.task_id) == started  # a running task is left alone

    sensor = DmsFullLoadSensor(task_id="dms_full_load", replication_task_arn=res.task_id,
                               aws_conn_id="aws_default", region_name="us-east-1")
    poked = sensor.poke({})
    assert poked.is_done
    assert TaskStatus.from_dict(poked.xcom_value).state is TaskState.FULL_LOAD_COMPLETE

    stopped = service.stop(res.task_id)
    assert (stopped.state, stopped.provider_status) == (TaskState.STOPPED, "stopped")
    assert stopped.reason() == "the service gave no reason"  # moto sets no StopReason
    assert service.stop(res.task_id) == stopped  # stopping a stopped task is no error
    resumed = service.start(res.task_id)  # resume-processing of the same task
    assert resumed.provider_status == "running"

    src_id, tgt_id = endpoint_identifier(spec, "source"), endpoint_identifier(spec, "target")
    assert service.delete_migration(spec) == [task_identifier(spec), src_id,
                                              secret_name(src_id), tgt_id, secret_name(tgt_id)]
    assert service.status(res.task_id).state is TaskState.MISSING
    assert service.teardown("acme", 1) == [wave_identifier("acme", 1),
                                           secrets_role_name("acme", 1)]
    dms = aws_client("dms", region="us-east-1")
    assert dms.describe_replication_instances()["ReplicationInstances"] == []
    assert aws_client("secretsmanager", region="us-east-1").list_secrets()["SecretList"] == []
    assert service.teardown("acme", 1) == []


def test_teardown_takes_only_its_own_waves_resources(service):
    mine = service.ensure_migration(_spec(subnet_ids=tuple(_subnets())), CREDS, CREDS)
    other = service.ensure_migration(_spec(wave=2), CREDS, CREDS)
    service.start(mine.task_id)
    gone = service.teardown("acme", 1)
    assert wave_identifier("acme", 1) in gone and task_identifier(_spec()) in gone
    # the wave's secrets and role go with it; wave 2's stay
    left = aws_client("secretsmanager", region="us-east-1").list_secrets()["SecretList"]
    assert sorted(s["Name"] for s in left) == sorted(
        secret_name(endpoint_identifier(_spec(wave=2), role)) for role in ("source", "target"))
    assert secrets_role_name("acme", 1) in gone
    aws_client("iam").get_role(RoleName=secrets_role_name("acme", 2))
    assert service.status(mine.task_id).state is TaskState.MISSING
    assert service.status(other.task_id).state is TaskState.PENDING
    dms = aws_client("dms", region="us-east-1")
    assert dms.describe_replication_subnet_groups()["ReplicationSubnetGroups"] == []
    assert [i["ReplicationInstanceIdentifier"] for i in
            dms.describe_replication_instances()["ReplicationInstances"]] == [
        wave_identifier("acme", 2)]


# ---------------------------------------------------------------- the whole path
def test_database_through_dms_is_judged_by_checksums_and_copied(service, pg):
    ep = db_endpoint("pg-01", "app", pg.source_url, pg.target_url)
    placement = ServicePlacement(estate="acme", wave=1, subnet_ids=tuple(_subnets()))
    result = replicate_database_via_service(ep, placement, service, poll_seconds=0.1,
                                            validation_attempts=2)
    assert result.method == "copy"
    assert result.dms_task_arn and result.dms_task_arn.endswith(":task:mb-acme-wave-01-pg-01-app")
    assert result.service_emulated
    reason = result.fallback_reason or ""
    assert "reports its full load complete" in reason
    assert "moves no data" in reason
    assert result.validation_attempts == 3  # two checks of DMS's work, one after the copy
    assert (result.dms_status or {})["provider_status"] == "stopped"  # one writer at a time
    assert result.done and result.rows_copied > 0
    assert all(c.match for c in compare_databases(pg.source_url, pg.target_url))
    assert result.resources is not None and result.resources["reused"] == []

    # a re-run reuses the same DMS resources and resumes the copy: nothing left to copy
    again = replicate_database_via_service(ep, placement, service, poll_seconds=0.1)
    assert again.dms_task_arn == result.dms_task_arn
    assert again.resources is not None and again.resources["created"] == []
    # instance, subnet group, two endpoints, task, two secrets, the secrets role
    assert len(again.resources["reused"]) == 8
    assert again.method == "copy" and "earlier run fell back" in (again.fallback_reason or "")
    assert again.done and again.rows_copied == 0
    assert service.status(again.dms_task_arn).provider_status == "stopped"


def test_a_stopped_task_falls_back_with_the_status_and_nothing_half_done(service, pg):
    """moto has no ``failed`` status: the failure path runs on the real ``stopped`` of
    a task stopped behind MigrationBox's back (the provider's DmsStopTaskOperator)."""
    from airflow.providers.amazon.aws.operators.dms import DmsStopTaskOperator

    ep = db_endpoint("pg-01", "app", pg.source_url, pg.target_url)
    placement = ServicePlacement(estate="acme", wave=1)
    start = start_service_migration(ep, placement, service)
    assert start.fallback_reason is None and start.task_id
    # the start travels through XCom between tasks: ids and statuses only
    start = ServiceStart.from_dict(json.loads(json.dumps(start.as_dict())))

    DmsStopTaskOperator(task_id="stop", replication_task_arn=start.task_id,
                        aws_conn_id="aws_default", region_name="us-east-1").execute({})
    poked = DmsFullLoadSensor(task_id="dms_full_load", replication_task_arn=start.task_id,
                              aws_conn_id="aws_default", region_name="us-east-1").poke({})
    assert poked.is_done
    status = TaskStatus.from_dict(poked.xcom_value)
    assert (status.state, status.provider_status) == (TaskState.STOPPED, "stopped")

    with pytest.raises(DatabaseServiceError) as err:
        finish_service_migration(ep, service, start, status, allow_fallback=False)
    assert "endpoint pg-01/database/app" in str(err.value)
    assert f"task {start.task_id} is stopped" in str(err.value)
    assert _tables(pg.target_url) == []  # nothing was copied, nothing reported done

    result = finish_service_migration(ep, service, start, status, poll_seconds=0.1)
    assert result.method == "copy" and result.dms_task_arn == start.task_id
    assert result.fallback_reason == (f"aws task {start.task_id} is stopped: "
                                      f"the service gave no reason")
    assert result.done


def test_a_task_not_yet_loaded_is_never_reported_done(service, pg):
    ep = db_endpoint("pg-01", "app", pg.source_url, pg.target_url)
    spec = _spec(name="app", source=DatabaseLocation.from_url(pg.source_url, "s"),
                 target=DatabaseLocation.from_url(pg.target_url, "t"))
    res = service.ensure_migration(spec, CREDS, CREDS)
    pending = service.status(res.task_id)  # the emulator's real "creating"
    start = ServiceStart(task_id=res.task_id, status=pending)
    with pytest.raises(DatabaseServiceError, match=r"has not finished its full load \(creating"):
        finish_service_migration(ep, service, start, pending)
    assert _tables(pg.target_url) == []


def test_the_service_unreachable_falls_back_or_fails_clearly(pg, monkeypatch,
                                                              aws_emulator: EmulatorProcess):
    # an AWS connection whose endpoint answers nothing (a port nobody listens on)
    down = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DMS_DOWN", json.dumps({
        "conn_type": "aws", "login": "testing", "password": "testing",
        "extra": {"region_name": "us-east-1", "endpoint_url": down,
                  "config_kwargs": {"retries": {"max_attempts": 1, "mode": "standard"},
                                    "connect_timeout": 2}}}))
    service = AwsDmsService(conn_id="aws_dms_down", poll_seconds=0.1, timeout_seconds=5)
    ep = db_endpoint("pg-01", "app", pg.source_url, pg.target_url)
    placement = ServicePlacement(estate="acme", wave=1)
    with pytest.raises(DatabaseServiceError) as err:
        replicate_database_via_service(ep, placement, service, allow_fallback=False)
    assert "endpoint pg-01/database/app" in str(err.value)
    assert "EndpointConnectionError" in str(err.value)
    assert _tables(pg.target_url) == []

    result = replicate_database_via_service(ep, placement, service)
    assert result.method == "copy" and result.dms_task_arn is None
    assert "the aws migration service failed" in (result.fallback_reason or "")
    assert result.done


def test_credentials_stay_out_of_results_and_logs(service, pg, monkeypatch, caplog):
    src = make_url(pg.source_url)
    monkeypatch.setenv("AIRFLOW_CONN_MB_DMS_SRC", json.dumps({
        "conn_type": "postgres", "login": "postgres", "password": "never-logged-pw",
        "host": src.host, "port": src.port, "schema": src.database}))
    ep = db_endpoint("pg-01", "app", None, pg.target_url, {"conn_id": "mb_dms_src"})
    caplog.set_level("INFO")  # what task logs carry (botocore DEBUG echoes request bodies)
    result = replicate_database_via_service(ep, ServicePlacement("acme", 1), service,
                                            poll_seconds=0.1, validation_attempts=1)
    assert result.done and result.dms_task_arn
    assert "never-logged-pw" not in json.dumps(result.summary(), default=str)
    assert "never-logged-pw" not in caplog.text
    dms = aws_client("dms", region="us-east-1")
    assert "never-logged-pw" not in json.dumps(dms.describe_endpoints(), default=str)
    assert os.environ["AIRFLOW_CONN_MB_DMS_SRC"]  # only the connection holds it


def _instance_transition(emulator: EmulatorProcess, transition: dict[str, Any] | None) -> None:
    """moto's state manager: how many reads a replication instance stays ``creating``."""
    import httpx

    model = {"model_name": "dms::replicationinstance"}
    if transition is None:
        response = httpx.post(f"{emulator.url}/moto-api/state-manager/unset-transition",
                              json=model, timeout=10)
    else:
        response = httpx.post(f"{emulator.url}/moto-api/state-manager/set-transition",
                              json={**model, "transition": transition}, timeout=10)
    assert response.status_code == 201, response.text


def test_an_instance_that_never_comes_up_falls_back_and_a_rerun_resumes(fresh_aws, pg):
    """The emulator's instance held in ``creating`` (moto's state manager): the wait
    gives up with a reason naming the instance, the copy takes over; once the instance
    is available, a re-run reuses it instead of making another."""
    ep = db_endpoint("pg-01", "app", pg.source_url, pg.target_url)
    placement = ServicePlacement(estate="acme", wave=1)
    slow = AwsDmsService(region="us-east-1", poll_seconds=0.1, timeout_seconds=1)
    _instance_transition(fresh_aws, {"progression": "manual", "times": 1_000_000})
    try:
        with pytest.raises(DatabaseServiceError) as err:
            start_service_migration(ep, placement, slow, allow_fallback=False)
        assert "endpoint pg-01/database/app" in str(err.value)
        assert f"replication instance {wave_identifier('acme', 1)} to be available: still " \
               f"creating" in str(err.value)
        start = start_service_migration(ep, placement, slow)
        assert start.task_id is None and "still creating" in (start.fallback_reason or "")
        assert _tables(pg.target_url) == []  # nothing copied by the start
    finally:
        _instance_transition(fresh_aws, None)
    dms = aws_client("dms", region="us-east-1")
    assert len(dms.describe_replication_instances()["ReplicationInstances"]) == 1

    resumed = start_service_migration(ep, placement, slow)
    assert resumed.fallback_reason is None and resumed.task_id
    assert resumed.resources is not None
    assert wave_identifier("acme", 1) in resumed.resources["reused"]
    assert len(dms.describe_replication_instances()["ReplicationInstances"]) == 1
