"""AWS Database Migration Service (DMS) behind ``DatabaseMigrationService``.

The boto3 client comes from the amazon provider's ``DmsHook`` (an ``AwsBaseHook``), so
credentials, region and endpoint URL come only from the Airflow AWS connection, as for
``cloud.aws``. Per wave: one replication subnet group and one replication instance;
per database: a source endpoint, a target endpoint and one ``full-load-and-cdc`` task.
Identifiers are deterministic (``mb-<estate>-wave-NN[-<server>-<database>]``) and every
resource carries ``resource_tags``, so a re-run finds and reuses what an earlier run made.

Credentials: no password is put in an endpoint definition. The login of each side,
resolved from its Airflow connection just before the call, is stored in an AWS Secrets
Manager secret (``migrationbox/<endpoint identifier>``, JSON ``username``, ``password``,
``host``, ``port``, ``dbname``, the form DMS reads) through the provider's
``SecretsManagerHook``, and the endpoint references it through its engine settings
(``PostgreSQLSettings``/``MySQLSettings``/``MicrosoftSQLServerSettings``/``OracleSettings``:
``SecretsManagerSecretId`` + ``SecretsManagerAccessRoleArn``). DMS takes either those two
or clear-text ``Username``/``Password``/``ServerName``/``Port``, never both, so the endpoint
carries neither host nor user: they are in the secret. The access role is the one given
(``secrets_role_arn``) or a per-wave IAM role made here (``<wave identifier>-secrets``,
trusted by ``dms.<region>.amazonaws.com``, allowed ``GetSecretValue`` only on secrets
tagged with that wave). A re-run updates the secret when the password changed (rotation) and
refuses an endpoint whose host, port, user or database moved. ``credentials="password"``
is the explicit fallback that passes the password in ``CreateEndpoint`` instead (for an
account where Secrets Manager or IAM is not available to the platform); the emulator
accepts the secret route, so nothing falls back to it on its own.

Why some of the hook's conveniences are not used: ``DmsHook.create_replication_task``
waits for the task to become ``ready`` and ``delete_replication_task`` waits for the
service to answer ``ResourceNotFoundFault``; the emulator does neither (see below), so
those two waits are done here by polling, with the same end states. ``DmsFullLoadSensor``
is the provider's ``DmsTaskBaseSensor`` taught what "full load complete" means for a
task that goes on replicating changes (the provider's ``DmsTaskCompletedSensor`` waits
for ``stopped``, which a full-load-and-CDC task never reaches on its own).

What the local emulator (moto 5.2.5's DMS, run as a server) does and does not do,
read from ``moto/dms/models.py`` and checked against the server:

* emulated calls: create/describe/delete replication subnet groups (subnet ids are
  accepted but ignored; the answer always shows ``subnet-12345`` in ``vpc-12345``),
  replication instances (``creating``, then ``available`` at the next describe),
  endpoints (status ``creating`` forever; a second create with the same identifier
  silently replaces the first with a new ARN, hence the look-up before every create),
  replication tasks (create/start/stop/delete/describe), ``TestConnection`` and
  ``DescribeConnections`` (``testing``, then ``successful``; a second
  ``TestConnection`` for the same pair answers HTTP 500, hence the look-up first),
  ``ListTagsForResource``;
* not emulated: ``ModifyEndpoint``, ``AddTagsToResource``, ``DescribeTableStatistics``
  and the rest answer HTTP 500;
* task statuses: ``creating`` forever after create (never ``ready``); ``running`` right
  after a start (the start type is ignored, and any status may be started); ``stopped``
  after a stop, which is refused (``InvalidResourceStateFault``) unless ``running``.
  There is no ``failed``, no ``StopReason`` and no ``LastFailureMessage``; the
  statistics always say 100 % loaded, one table, no errors;
* **no data moves**: the endpoints' databases are never contacted. So on the emulator a
  task reports its full load complete at once while the target is still empty; the row
  checksums in ``replication.dms`` see that, and the row-checksum copy moves the data.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar
from urllib.parse import urlparse

from airflow.providers.amazon.aws.sensors.dms import DmsTaskBaseSensor
from botocore.exceptions import BotoCoreError, ClientError

from migrationbox.cloud.base import TAG_ESTATE, TAG_WAVE, resource_tags, wave_tag
from migrationbox.cloud.database_service import (
    DatabaseCredentials,
    DatabaseLocation,
    DatabaseServiceError,
    MigrationResources,
    MigrationSpec,
    TaskState,
    TaskStatus,
)
from migrationbox.config import AWS_CONN_ID
from migrationbox.errors import ConfigurationError

T = TypeVar("T")

#: SQLAlchemy dialect name → DMS engine name, per endpoint role
SOURCE_ENGINES = {"postgresql": "postgres", "mysql": "mysql", "mariadb": "mariadb",
                  "mssql": "sqlserver", "oracle": "oracle"}
TARGET_ENGINES = dict(SOURCE_ENGINES)
MIGRATION_TYPE = "full-load-and-cdc"
IDENTIFIER_MAX = 63
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
#: the copy's own bookkeeping table on a target never travels (see replication.database)
EXCLUDED_TABLES = ("_migrationbox_replication",)
#: DMS engine name → the CreateEndpoint settings that take its Secrets Manager reference
ENGINE_SETTINGS = {"postgres": "PostgreSQLSettings", "mysql": "MySQLSettings",
                   "mariadb": "MySQLSettings", "sqlserver": "MicrosoftSQLServerSettings",
                   "oracle": "OracleSettings"}
#: where an endpoint's login is kept: ``<prefix><endpoint identifier>``
SECRET_PREFIX = "migrationbox/"
CREDENTIAL_MODES = ("secrets-manager", "password")
INSTANCE_FAILED = {"deleting", "failed", "incompatible-credentials", "incompatible-network",
                   "inaccessible-encryption-credentials", "storage-full"}


def dms_identifier(*parts: str | int, max_len: int = IDENTIFIER_MAX) -> str:
    """``mb-<parts>``: lower-case letters, digits and single hyphens, starting with a
    letter, at most ``max_len`` long. When the parts had to be changed to fit (``pg_01``
    and ``PG-01`` are not ``pg-01``) or cut, a hash of the exact parts is appended, so
    two servers never share a task."""
    raw = "-".join(["mb", *(str(p) for p in parts)])
    ident = re.sub(r"-{2,}", "-", re.sub(r"[^a-z0-9]+", "-", raw.lower())).strip("-")
    if ident != raw or len(ident) > max_len:
        digest = hashlib.sha256(raw.encode()).hexdigest()[:8]
        ident = ident[: max_len - 9].rstrip("-") + "-" + digest
    return ident


def _wave_part(estate: str, wave: int | str) -> str:
    return wave_tag(estate, wave).split("/", 1)[1]


def wave_identifier(estate: str, wave: int | str) -> str:
    """The replication instance and subnet group of one wave."""
    return dms_identifier(estate, _wave_part(estate, wave))


def task_identifier(spec: MigrationSpec) -> str:
    return dms_identifier(spec.estate, _wave_part(spec.estate, spec.wave), spec.server_id,
                          spec.name)


def secret_name(endpoint_ident: str) -> str:
    return f"{SECRET_PREFIX}{endpoint_ident}"


def secrets_role_name(estate: str, wave: int | str) -> str:
    """The per-wave IAM role DMS assumes to read that wave's secrets (64 characters max)."""
    return dms_identifier(estate, _wave_part(estate, wave), "secrets", max_len=64)


def endpoint_identifier(spec: MigrationSpec, role: str) -> str:
    suffix = "src" if role == "source" else "tgt"
    return dms_identifier(spec.estate, _wave_part(spec.estate, spec.wave), spec.server_id,
                          spec.name, suffix)


def table_mappings(spec: MigrationSpec) -> dict[str, Any]:
    """Every table of the chosen schemas, except MigrationBox's own bookkeeping."""
    rules: list[dict[str, Any]] = []
    for i, schema in enumerate(spec.schemas, 1):
        rules.append({"rule-type": "selection", "rule-id": str(i), "rule-name": f"include-{i}",
                      "object-locator": {"schema-name": schema, "table-name": "%"},
                      "rule-action": "include"})
    for table in EXCLUDED_TABLES:
        n = len(rules) + 1
        rules.append({"rule-type": "selection", "rule-id": str(n), "rule-name": f"exclude-{n}",
                      "object-locator": {"schema-name": "%", "table-name": table},
                      "rule-action": "exclude"})
    return {"rules": rules}


TASK_SETTINGS = {
    # a fresh target: DMS creates the tables; the row-checksum copy then validates them
    "FullLoadSettings": {"TargetTablePrepMode": "DROP_AND_CREATE"},
    "Logging": {"EnableLogging": True},
}


def classify_task(task_id: str, task: dict[str, Any] | None) -> TaskStatus:
    """One DescribeReplicationTasks entry → ``TaskStatus``.

    A ``stopped`` task counts as failed when its ``StopReason`` names an error (or it
    carries a failure message without a stop reason), as complete when it stopped
    because a full load finished, and as stopped-on-request otherwise. A ``running``
    task has finished its full load when the statistics say 100 % with nothing loading
    or queued; errored tables make it failed even though it keeps running.
    """
    if not task:
        return TaskStatus(task_id, TaskState.MISSING, None)
    status = str(task.get("Status") or "")
    stats = task.get("ReplicationTaskStats") or {}
    pct = stats.get("FullLoadProgressPercent")
    errored = int(stats.get("TablesErrored") or 0)
    stop_reason = task.get("StopReason") or None
    message = task.get("LastFailureMessage") or None
    if status in ("failed", "failed-move"):
        state = TaskState.FAILED
    elif status == "stopped":
        reason = (stop_reason or "").upper()
        if "ERROR" in reason or (message and not stop_reason):
            state = TaskState.FAILED
        elif "FULL_LOAD_ONLY_FINISHED" in reason or "STOPPED_AFTER_FULL_LOAD" in reason:
            state = TaskState.FULL_LOAD_COMPLETE
        else:
            state = TaskState.STOPPED
    elif status == "running":
        if errored:
            state = TaskState.FAILED
            message = message or f"{errored} table(s) errored during the full load"
        elif (pct == 100 and not stats.get("TablesLoading")
              and not stats.get("TablesQueued")):
            state = TaskState.FULL_LOAD_COMPLETE
        else:
            state = TaskState.RUNNING
    elif status == "stopping":
        state = TaskState.RUNNING
    elif status == "deleting":
        state = TaskState.MISSING
    else:  # creating, ready, starting, modifying, moving, testing
        state = TaskState.PENDING
    return TaskStatus(
        task_id=task_id, state=state, provider_status=status or None,
        full_load_percent=None if pct is None else int(pct),
        tables_loaded=stats.get("TablesLoaded"), tables_errored=errored,
        stop_reason=stop_reason, last_failure_message=message)


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def describe_task(hook: Any, task_arn: str) -> dict[str, Any] | None:
    """``DmsHook.get_task_description``, with the real service's ``ResourceNotFoundFault``
    for a task that is gone read as "no task" (the emulator answers an empty list)."""
    try:
        return hook.get_task_description(task_arn)
    except ClientError as exc:
        if _code(exc) == "ResourceNotFoundFault":
            return None
        raise


def _tag_list(tags: dict[str, str]) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in sorted(tags.items())]


class AwsDmsService:
    """``DatabaseMigrationService`` for AWS DMS.

    ``poll_seconds`` is the pause between status reads (small against the emulator);
    ``timeout_seconds`` bounds every wait for the service (instance available, task
    startable, connection tested, resource gone).
    """

    cloud = "aws"

    def __init__(self, conn_id: str = AWS_CONN_ID, region: str | None = None,
                 poll_seconds: float = 15.0, timeout_seconds: float = 1800.0,
                 instance_class: str = "dms.t3.medium", allocated_storage_gb: int = 50,
                 credentials: str = "secrets-manager",
                 secrets_role_arn: str | None = None) -> None:
        if credentials not in CREDENTIAL_MODES:
            raise ConfigurationError(f"AWS DMS credentials: {credentials!r} is not one of "
                                     f"{', '.join(CREDENTIAL_MODES)}")
        self.credentials = credentials
        self.secrets_role_arn = secrets_role_arn
        self._roles: dict[str, str] = {}  # secrets role name -> ARN, as found or made
        self.conn_id = conn_id
        self.region = region
        self.poll_seconds = poll_seconds
        self.timeout_seconds = timeout_seconds
        self.instance_class = instance_class
        self.allocated_storage_gb = allocated_storage_gb
        self._hook_obj: Any = None

    # -- plumbing -------------------------------------------------------------------
    @property
    def hook(self) -> Any:
        if self._hook_obj is None:
            from airflow.providers.amazon.aws.hooks.dms import DmsHook

            self._hook_obj = DmsHook(aws_conn_id=self.conn_id, region_name=self.region,
                                     config=self._retrying_config())
        return self._hook_obj

    def _retrying_config(self) -> Any:
        """Adaptive retries like every other AWS client (``cloud.aws_session``): DMS,
        Secrets Manager and IAM calls back off when the account is throttled."""
        from migrationbox.cloud.aws_session import hook_config

        return hook_config(self.conn_id, self.region)

    @property
    def client(self) -> Any:
        return self.hook.get_conn()

    @property
    def secrets(self) -> Any:
        """Secrets Manager's boto3 client, from the same Airflow AWS connection."""
        from airflow.providers.amazon.aws.hooks.secrets_manager import SecretsManagerHook

        return SecretsManagerHook(aws_conn_id=self.conn_id, region_name=self.region,
                                  config=self._retrying_config()).get_conn()

    @property
    def iam(self) -> Any:
        from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

        return AwsBaseHook(aws_conn_id=self.conn_id, client_type="iam",
                           region_name=self.region,
                           config=self._retrying_config()).get_conn()

    @property
    def emulated(self) -> bool:
        """The connection's endpoint URL points at loopback: the local emulator."""
        url = self.hook.conn_config.endpoint_url
        return bool(url) and (urlparse(url).hostname or "") in LOOPBACK_HOSTS

    @contextmanager
    def _calling(self, where: str, what: str) -> Iterator[None]:
        try:
            yield
        except ClientError as exc:
            err = exc.response.get("Error", {})
            raise DatabaseServiceError(
                f"{where}: AWS DMS {what} failed: {err.get('Code') or 'error'}: "
                f"{(err.get('Message') or str(exc)).splitlines()[0][:300]}") from exc
        except BotoCoreError as exc:
            raise DatabaseServiceError(
                f"{where}: AWS DMS {what} failed: {type(exc).__name__}: {exc}") from exc

    def _poll(self, where: str, waiting_for: str, read: Callable[[], T],
              done: Callable[[T], bool], describe: Callable[[T], str]) -> T:
        deadline = time.monotonic() + self.timeout_seconds
        while True:
            value = read()
            if done(value):
                return value
            if time.monotonic() >= deadline:
                raise DatabaseServiceError(
                    f"{where}: {waiting_for}: still {describe(value)} after "
                    f"{self.timeout_seconds:.0f}s; a re-run resumes from here")
            time.sleep(self.poll_seconds)

    # -- what DMS can take ------------------------------------------------------------
    def unsupported_reason(self, source: DatabaseLocation,
                           target: DatabaseLocation) -> str | None:
        for role, loc, engines in (("source", source, SOURCE_ENGINES),
                                   ("target", target, TARGET_ENGINES)):
            if loc.engine not in engines:
                return (f"AWS DMS has no {loc.engine} {role} endpoint (supported here: "
                        f"{', '.join(sorted(engines))})")
            if not loc.host:
                return f"the {role} ({loc.describe()}) has no network host for DMS to reach"
        return None

    # -- look-ups -----------------------------------------------------------------------
    def _find(self, op: str, key: str, filter_name: str, value: str,
              first: bool = True) -> Any:
        """The first match (or, ``first=False``, all matches); the real service answers
        ``ResourceNotFoundFault`` where the emulator answers an empty list."""
        try:
            found = getattr(self.client, op)(
                Filters=[{"Name": filter_name, "Values": [value]}]).get(key, [])
        except ClientError as exc:
            if _code(exc) == "ResourceNotFoundFault":
                return None
            raise
        if not first:
            return found
        return found[0] if found else None

    def _task(self, arn: str) -> dict[str, Any] | None:
        return self._find("describe_replication_tasks", "ReplicationTasks",
                          "replication-task-arn", arn)

    def _instance(self, ident: str) -> dict[str, Any] | None:
        return self._find("describe_replication_instances", "ReplicationInstances",
                          "replication-instance-id", ident)

    def _endpoint(self, ident: str) -> dict[str, Any] | None:
        return self._find("describe_endpoints", "Endpoints", "endpoint-id", ident)

    def _subnet_group(self, ident: str) -> dict[str, Any] | None:
        return self._find("describe_replication_subnet_groups", "ReplicationSubnetGroups",
                          "replication-subnet-group-id", ident)

    # -- ensure ---------------------------------------------------------------------------
    def ensure_migration(self, spec: MigrationSpec, source_credentials: DatabaseCredentials,
                         target_credentials: DatabaseCredentials) -> MigrationResources:
        where = spec.label()
        reason = self.unsupported_reason(spec.source, spec.target)
        if reason:
            raise DatabaseServiceError(f"{where}: {reason}")
        created: list[str] = []
        reused: list[str] = []
        with self._calling(where, "set-up"):
            group = self._ensure_subnet_group(spec, created, reused)
            instance_arn = self._ensure_instance(spec, group, created, reused)
            src = self._ensure_endpoint(spec, "source", spec.source, source_credentials,
                                        created, reused)
            tgt = self._ensure_endpoint(spec, "target", spec.target, target_credentials,
                                        created, reused)
            task_arn = self._ensure_task(spec, instance_arn, src, tgt, created, reused)
        return MigrationResources(runner_id=instance_arn, source_endpoint_id=src,
                                  target_endpoint_id=tgt, task_id=task_arn,
                                  subnet_group_id=group, created=tuple(created),
                                  reused=tuple(reused))

    def _ensure_subnet_group(self, spec: MigrationSpec, created: list[str],
                             reused: list[str]) -> str | None:
        if not spec.subnet_ids:
            return None
        ident = wave_identifier(spec.estate, spec.wave)
        if self._subnet_group(ident):
            reused.append(ident)
            return ident
        try:
            self.client.create_replication_subnet_group(
                ReplicationSubnetGroupIdentifier=ident,
                ReplicationSubnetGroupDescription=(
                    f"MigrationBox {wave_tag(spec.estate, spec.wave)}"),
                SubnetIds=list(spec.subnet_ids),
                Tags=_tag_list(resource_tags(spec.estate, spec.wave, ident)))
            created.append(ident)
        except ClientError as exc:  # another worker of the same wave made it first
            if _code(exc) != "ResourceAlreadyExistsFault":
                raise
            reused.append(ident)
        return ident

    def _ensure_instance(self, spec: MigrationSpec, group: str | None, created: list[str],
                         reused: list[str]) -> str:
        ident = wave_identifier(spec.estate, spec.wave)
        found = self._instance(ident)
        if found:
            reused.append(ident)
        else:
            kwargs: dict[str, Any] = {
                "ReplicationInstanceIdentifier": ident,
                "ReplicationInstanceClass": self.instance_class,
                "AllocatedStorage": self.allocated_storage_gb,
                "PubliclyAccessible": False, "MultiAZ": False,
                "Tags": _tag_list(resource_tags(spec.estate, spec.wave, ident)),
            }
            if group:
                kwargs["ReplicationSubnetGroupIdentifier"] = group
            if spec.security_group_ids:
                kwargs["VpcSecurityGroupIds"] = list(spec.security_group_ids)
            try:
                self.client.create_replication_instance(**kwargs)
                created.append(ident)
            except ClientError as exc:
                if _code(exc) != "ResourceAlreadyExistsFault":
                    raise
                reused.append(ident)

        def read() -> dict[str, Any]:
            inst = self._instance(ident)
            if inst is None:
                raise DatabaseServiceError(f"{spec.label()}: replication instance {ident} "
                                           f"vanished while waiting for it")
            status = inst.get("ReplicationInstanceStatus")
            if status in INSTANCE_FAILED:
                raise DatabaseServiceError(f"{spec.label()}: replication instance {ident} "
                                           f"is {status}")
            return inst

        inst = self._poll(spec.label(), f"replication instance {ident} to be available", read,
                          lambda i: i.get("ReplicationInstanceStatus") == "available",
                          lambda i: str(i.get("ReplicationInstanceStatus")))
        return str(inst["ReplicationInstanceArn"])

    def _ensure_endpoint(self, spec: MigrationSpec, role: str, loc: DatabaseLocation,
                         creds: DatabaseCredentials, created: list[str],
                         reused: list[str]) -> str:
        ident = endpoint_identifier(spec, role)
        engine = (SOURCE_ENGINES if role == "source" else TARGET_ENGINES)[loc.engine]
        found = self._endpoint(ident)
        secret_ref: dict[str, str] | None = None
        if self.credentials == "secrets-manager":
            secret_ref = self._ensure_secret(spec, role, ident, loc, creds, engine, created,
                                             reused)
        if found:
            self._check_endpoint(spec, role, ident, found, loc, creds, engine, secret_ref)
            reused.append(ident)
            return str(found["EndpointArn"])
        kwargs: dict[str, Any] = {
            "EndpointIdentifier": ident, "EndpointType": role, "EngineName": engine,
            "Tags": _tag_list(resource_tags(spec.estate, spec.wave, ident, spec.server_id)),
        }
        if loc.database:
            kwargs["DatabaseName"] = loc.database
        if secret_ref is not None:
            # DMS takes the secret *or* clear-text user/password/host/port, never both
            kwargs[ENGINE_SETTINGS[engine]] = dict(secret_ref)
        else:  # the explicit fallback (credentials="password")
            kwargs.update(ServerName=loc.host, Port=int(loc.port or 0))
            if creds.username:
                kwargs["Username"] = creds.username
            if creds.password:
                kwargs["Password"] = creds.password
        arn = self.client.create_endpoint(**kwargs)["Endpoint"]["EndpointArn"]
        created.append(ident)
        return str(arn)

    def _check_endpoint(self, spec: MigrationSpec, role: str, ident: str, found: dict[str, Any],
                        loc: DatabaseLocation, creds: DatabaseCredentials, engine: str,
                        secret_ref: dict[str, str] | None) -> None:
        """Refuse an existing endpoint that no longer describes this database."""
        want: dict[str, Any] = {"EngineName": engine, "DatabaseName": loc.database}
        if secret_ref is None:
            want |= {"ServerName": loc.host, "Port": loc.port, "Username": creds.username}
        have = {k: found.get(k) for k in want}
        changed = sorted(k for k in want if want[k] is not None and want[k] != have[k])
        if secret_ref is not None:
            held = (found.get(ENGINE_SETTINGS[engine]) or {}).get("SecretsManagerSecretId")
            if held != secret_ref["SecretsManagerSecretId"]:
                changed.append(f"{ENGINE_SETTINGS[engine]}.SecretsManagerSecretId (the "
                               "endpoint does not read its login from this database's "
                               "secret)")
        if changed:
            raise ConfigurationError(
                f"{spec.label()}: DMS {role} endpoint {ident} exists with other "
                f"settings ({', '.join(changed)} differ from the endpoint's database "
                f"URL); delete this database's DMS resources (delete_migration) and "
                f"re-run")

    # -- credentials in Secrets Manager -------------------------------------------------------
    def _ensure_secret(self, spec: MigrationSpec, role: str, ident: str, loc: DatabaseLocation,
                       creds: DatabaseCredentials, engine: str, created: list[str],
                       reused: list[str]) -> dict[str, str]:
        """The endpoint's login in its secret (made, or brought up to date: a rotated
        password is written again); the settings that point DMS at it."""
        name = secret_name(ident)
        value = {"username": creds.username or "", "password": creds.password or "",
                 "host": loc.host or "", "port": int(loc.port or 0), "engine": engine,
                 "dbname": loc.database or ""}
        sm = self.secrets
        try:
            current = json.loads(sm.get_secret_value(SecretId=name)["SecretString"])
        except ClientError as exc:
            if _code(exc) != "ResourceNotFoundException":
                raise
            current = None
        if current is None:
            arn = sm.create_secret(
                Name=name, SecretString=json.dumps(value),
                Description=f"MigrationBox: DMS {role} login of {spec.label()}",
                Tags=_tag_list(resource_tags(spec.estate, spec.wave, name,
                                             spec.server_id)))["ARN"]
            created.append(name)
        else:
            moved = sorted(k for k in ("host", "port", "username", "dbname")
                           if current.get(k) != value[k])
            if moved:
                raise ConfigurationError(
                    f"{spec.label()}: the DMS {role} secret {name} holds another "
                    f"{', '.join(moved)} than the endpoint's database URL; delete this "
                    "database's DMS resources (delete_migration) and re-run")
            if current != value:  # the password changed (rotated): the secret follows
                sm.put_secret_value(SecretId=name, SecretString=json.dumps(value))
            arn = sm.describe_secret(SecretId=name)["ARN"]
            reused.append(name)
        return {"SecretsManagerSecretId": str(arn),
                "SecretsManagerAccessRoleArn": self._secrets_role(spec, created, reused)}

    def _secrets_role(self, spec: MigrationSpec, created: list[str], reused: list[str]) -> str:
        """The role DMS assumes to read the wave's secrets: the given one, or one made
        here, trusted by DMS in this region and allowed to read only those secrets."""
        if self.secrets_role_arn:
            return self.secrets_role_arn
        name = secrets_role_name(spec.estate, spec.wave)
        if name not in self._roles:  # one look-up per role, not one per endpoint
            try:
                self._roles[name] = str(self.iam.get_role(RoleName=name)["Role"]["Arn"])
            except ClientError as exc:
                if _code(exc) != "NoSuchEntity":
                    raise
        if name in self._roles:
            if name not in created and name not in reused:
                reused.append(name)
            return self._roles[name]
        iam = self.iam
        region = self.region or self.hook.conn_region_name or "us-east-1"
        trust = {"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": {"Service": f"dms.{region}.amazonaws.com"},
            "Action": "sts:AssumeRole"}]}
        policy = {"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow",
            "Action": ["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"],
            "Resource": f"arn:aws:secretsmanager:{region}:*:secret:{SECRET_PREFIX}*",
            # identifiers may be shortened with a hash: the wave's tag is what is exact
            "Condition": {"StringEquals": {
                f"secretsmanager:ResourceTag/{TAG_WAVE}": wave_tag(spec.estate, spec.wave)}}}]}
        arn = iam.create_role(
            RoleName=name, AssumeRolePolicyDocument=json.dumps(trust),
            Description="MigrationBox: lets AWS DMS read one wave's endpoint logins",
            Tags=_tag_list(resource_tags(spec.estate, spec.wave, name)))["Role"]["Arn"]
        iam.put_role_policy(RoleName=name, PolicyName="read-wave-secrets",
                            PolicyDocument=json.dumps(policy))
        created.append(name)
        self._roles[name] = str(arn)
        return str(arn)

    def _delete_secret(self, ident: str) -> bool:
        try:
            self.secrets.delete_secret(SecretId=secret_name(ident),
                                       ForceDeleteWithoutRecovery=True)
        except ClientError as exc:
            if _code(exc) == "ResourceNotFoundException":
                return False
            raise
        return True

    def _delete_secrets_role(self, estate: str, wave: int | str) -> bool:
        name = secrets_role_name(estate, wave)
        self._roles.pop(name, None)
        iam = self.iam
        try:
            for policy in iam.list_role_policies(RoleName=name).get("PolicyNames", []):
                iam.delete_role_policy(RoleName=name, PolicyName=policy)
            iam.delete_role(RoleName=name)
        except ClientError as exc:
            if _code(exc) == "NoSuchEntity":
                return False
            raise
        return True

    def _ensure_task(self, spec: MigrationSpec, instance_arn: str, src: str, tgt: str,
                     created: list[str], reused: list[str]) -> str:
        ident = task_identifier(spec)
        found = self._find("describe_replication_tasks", "ReplicationTasks",
                           "replication-task-id", ident)
        if found:
            wired = (found.get("SourceEndpointArn"), found.get("TargetEndpointArn"),
                     found.get("ReplicationInstanceArn"))
            if wired != (src, tgt, instance_arn):
                raise ConfigurationError(
                    f"{spec.label()}: DMS task {ident} exists but is wired to other "
                    f"endpoints or another instance; delete this database's DMS resources "
                    f"(delete_migration) and re-run")
            reused.append(ident)
            return str(found["ReplicationTaskArn"])
        try:
            task = self.client.create_replication_task(
                ReplicationTaskIdentifier=ident, SourceEndpointArn=src,
                TargetEndpointArn=tgt, ReplicationInstanceArn=instance_arn,
                MigrationType=MIGRATION_TYPE, TableMappings=json.dumps(table_mappings(spec)),
                ReplicationTaskSettings=json.dumps(TASK_SETTINGS),
                Tags=_tag_list(resource_tags(spec.estate, spec.wave, ident, spec.server_id)))
        except ClientError as exc:
            if _code(exc) != "ResourceAlreadyExistsFault":
                raise
            again = self._find("describe_replication_tasks", "ReplicationTasks",
                               "replication-task-id", ident)
            if not again:
                raise
            reused.append(ident)
            return str(again["ReplicationTaskArn"])
        created.append(ident)
        return str(task["ReplicationTask"]["ReplicationTaskArn"])

    # -- run ------------------------------------------------------------------------------
    def status(self, task_id: str) -> TaskStatus:
        with self._calling(f"task {task_id}", "status"):
            return classify_task(task_id, describe_task(self.hook, task_id))

    def _test_connections(self, where: str, task: dict[str, Any]) -> None:
        """Have the instance test both endpoints before the first start (DMS's own check
        that it can reach and log in to each side); a tested pair is not tested again."""
        instance = task["ReplicationInstanceArn"]
        for role, endpoint in (("source", task["SourceEndpointArn"]),
                               ("target", task["TargetEndpointArn"])):
            def read(endpoint: str = endpoint) -> dict[str, Any] | None:
                found = self._find("describe_connections", "Connections", "endpoint-arn",
                                   endpoint, first=False)
                conns = found or []
                return next((c for c in conns if c.get("ReplicationInstanceArn") == instance),
                            None)

            conn = read()
            if conn is None or conn.get("Status") == "failed":
                self.client.test_connection(ReplicationInstanceArn=instance,
                                            EndpointArn=endpoint)
            conn = self._poll(where, f"the connection test of the {role} endpoint", read,
                              lambda c: bool(c) and c.get("Status") != "testing",
                              lambda c: str((c or {}).get("Status")))
            if (conn or {}).get("Status") != "successful":
                raise DatabaseServiceError(
                    f"{where}: DMS cannot connect to the {role} endpoint: "
                    f"{(conn or {}).get('LastFailureMessage') or (conn or {}).get('Status')}")

    def start(self, task_id: str) -> TaskStatus:
        where = f"task {task_id}"
        with self._calling(where, "start"):
            task = self._task(task_id)
            current = classify_task(task_id, task)
            if current.state is TaskState.MISSING or task is None:
                raise DatabaseServiceError(f"{where}: no such DMS task")
            if current.active:
                return current
            self._test_connections(where, task)
            start_type = ("resume-processing" if task.get("ReplicationTaskStartDate")
                          else "start-replication")

            def attempt() -> bool:
                try:
                    self.hook.start_replication_task(
                        replication_task_arn=task_id, start_replication_task_type=start_type)
                    return True
                except ClientError as exc:  # the real service: still "creating"
                    if _code(exc) != "InvalidResourceStateFault":
                        raise
                    return False

            self._poll(where, "the task to accept a start", attempt, bool,
                       lambda _: str(self.status(task_id).provider_status))
            return self.status(task_id)

    def stop(self, task_id: str) -> TaskStatus:
        where = f"task {task_id}"
        with self._calling(where, "stop"):
            task = self._task(task_id)
            if task is None:
                return classify_task(task_id, None)
            if task.get("Status") in ("running", "starting"):
                try:
                    self.hook.stop_replication_task(replication_task_arn=task_id)
                except ClientError as exc:
                    if _code(exc) != "InvalidResourceStateFault":
                        raise
            self._poll(where, "the task to stop", lambda: self._task(task_id),
                       lambda t: (t or {}).get("Status") not in ("running", "starting",
                                                                 "stopping"),
                       lambda t: str((t or {}).get("Status")))
            return self.status(task_id)

    # -- delete ---------------------------------------------------------------------------
    def _delete_task(self, where: str, arn: str) -> None:
        if self._task(arn) is None:
            return
        self.stop(arn)
        try:
            self.client.delete_replication_task(ReplicationTaskArn=arn)
        except ClientError as exc:
            if _code(exc) != "ResourceNotFoundFault":
                raise
        self._poll(where, f"task {arn} to be deleted", lambda: self._task(arn),
                   lambda t: t is None, lambda t: str((t or {}).get("Status")))

    def _delete_endpoint(self, where: str, ident: str) -> bool:
        found = self._endpoint(ident)
        if not found:
            return False
        try:
            self.client.delete_endpoint(EndpointArn=found["EndpointArn"])
        except ClientError as exc:
            if _code(exc) != "ResourceNotFoundFault":
                raise
        self._poll(where, f"endpoint {ident} to be deleted", lambda: self._endpoint(ident),
                   lambda e: e is None, lambda e: str((e or {}).get("Status")))
        return True

    def delete_migration(self, spec: MigrationSpec) -> list[str]:
        where = spec.label()
        deleted: list[str] = []
        with self._calling(where, "delete"):
            ident = task_identifier(spec)
            task = self._find("describe_replication_tasks", "ReplicationTasks",
                              "replication-task-id", ident)
            if task:
                self._delete_task(where, task["ReplicationTaskArn"])
                deleted.append(ident)
            for role in ("source", "target"):
                ep = endpoint_identifier(spec, role)
                if self._delete_endpoint(where, ep):
                    deleted.append(ep)
                if self._delete_secret(ep):
                    deleted.append(secret_name(ep))
        return deleted

    def _tagged(self, arns: list[str], estate: str, wave: int | str) -> set[str]:
        """The ARNs among ``arns`` that carry this estate's and wave's tags."""
        if not arns:
            return set()
        want = {TAG_ESTATE: estate, TAG_WAVE: wave_tag(estate, wave)}
        tags: dict[str, dict[str, str]] = {}
        for entry in self.client.list_tags_for_resource(ResourceArnList=arns).get("TagList", []):
            tags.setdefault(entry.get("ResourceArn", ""), {})[entry["Key"]] = entry["Value"]
        return {a for a in arns if all(tags.get(a, {}).get(k) == v for k, v in want.items())}

    def _all(self, op: str, key: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for page in self.client.get_paginator(op).paginate():
            out.extend(page.get(key, []))
        return out

    def teardown(self, estate: str, wave: int | str) -> list[str]:
        """Tasks, endpoints, then the instance and subnet group of one wave (by tags;
        the subnet group, whose tags not every API returns, by its identifier)."""
        where = f"estate {estate} wave {wave_tag(estate, wave)}"
        deleted: list[str] = []
        with self._calling(where, "teardown"):
            tasks = self._all("describe_replication_tasks", "ReplicationTasks")
            mine = self._tagged([t["ReplicationTaskArn"] for t in tasks], estate, wave)
            for t in tasks:
                if t["ReplicationTaskArn"] in mine:
                    self._delete_task(where, t["ReplicationTaskArn"])
                    deleted.append(t["ReplicationTaskIdentifier"])
            endpoints = self._all("describe_endpoints", "Endpoints")
            mine = self._tagged([e["EndpointArn"] for e in endpoints], estate, wave)
            for e in endpoints:
                if e["EndpointArn"] in mine and self._delete_endpoint(
                        where, e["EndpointIdentifier"]):
                    deleted.append(e["EndpointIdentifier"])
            deleted += self._delete_wave_secrets(estate, wave)
            ident = wave_identifier(estate, wave)
            inst = self._instance(ident)
            if inst and self._tagged([inst["ReplicationInstanceArn"]], estate, wave):
                try:
                    self.client.delete_replication_instance(
                        ReplicationInstanceArn=inst["ReplicationInstanceArn"])
                except ClientError as exc:
                    if _code(exc) != "ResourceNotFoundFault":
                        raise
                self._poll(where, f"replication instance {ident} to be deleted",
                           lambda: self._instance(ident), lambda i: i is None,
                           lambda i: str((i or {}).get("ReplicationInstanceStatus")))
                deleted.append(ident)
            if self._subnet_group(ident):
                self.client.delete_replication_subnet_group(
                    ReplicationSubnetGroupIdentifier=ident)
                deleted.append(ident)
            if not self.secrets_role_arn and self._delete_secrets_role(estate, wave):
                deleted.append(secrets_role_name(estate, wave))
        return deleted

    def _delete_wave_secrets(self, estate: str, wave: int | str) -> list[str]:
        """The wave's endpoint secrets (by name prefix and the wave's tags), even when
        their endpoint is already gone (a set-up stopped between the secret and the
        endpoint)."""
        want = {TAG_ESTATE: estate, TAG_WAVE: wave_tag(estate, wave)}
        deleted: list[str] = []
        for page in self.secrets.get_paginator("list_secrets").paginate(
                Filters=[{"Key": "name", "Values": [SECRET_PREFIX]}]):
            for sec in page.get("SecretList", []):
                tags = {t["Key"]: t["Value"] for t in sec.get("Tags", [])}
                if sec["Name"].startswith(SECRET_PREFIX) and all(tags.get(k) == v
                                                                 for k, v in want.items()):
                    self.secrets.delete_secret(SecretId=sec["ARN"],
                                               ForceDeleteWithoutRecovery=True)
                    deleted.append(sec["Name"])
        return deleted


class DmsFullLoadSensor(DmsTaskBaseSensor):
    """Waits until a DMS task has finished its full load, or can no longer finish it.

    Done on ``full_load_complete`` (a running full-load-and-CDC task with 100 % loaded),
    ``failed``, ``stopped`` or ``missing``; the XCom value is ``TaskStatus.as_dict()``,
    so the task after it decides between the DMS result and the fallback copy
    (``replication.dms.finish_service_migration``) instead of the sensor failing the run.
    """

    def poke(self, context: Any) -> Any:
        from airflow.sdk import PokeReturnValue

        status = classify_task(self.replication_task_arn,
                               describe_task(self.hook, self.replication_task_arn))
        self.log.info("DMS task %s: %s (%s)", self.replication_task_arn, status.state.value,
                      status.provider_status)
        return PokeReturnValue(is_done=status.terminal, xcom_value=status.as_dict())
