"""The provider-neutral database-service values and the AWS DMS adapter's pure parts.

``classify_task`` is fed DescribeReplicationTasks entries in the shape AWS documents,
including the ``failed`` and error-stopped ones the emulator cannot produce (it has no
``failed`` status, no ``StopReason`` and no ``LastFailureMessage``); the statuses the
emulator does produce are read from it in tests/integration/test_dms.py.
"""

from __future__ import annotations

import re

import pytest

from migrationbox.cloud.aws_dms import (
    ENGINE_SETTINGS,
    SOURCE_ENGINES,
    TARGET_ENGINES,
    AwsDmsService,
    classify_task,
    dms_identifier,
    endpoint_identifier,
    secret_name,
    secrets_role_name,
    table_mappings,
    task_identifier,
    wave_identifier,
)
from migrationbox.cloud.database_service import (
    DatabaseCredentials,
    DatabaseLocation,
    DatabaseMigrationService,
    MigrationSpec,
    NoDatabaseService,
    TaskState,
    TaskStatus,
    get_database_service,
)
from migrationbox.errors import ConfigurationError, InputError

VALID_ID = re.compile(r"^[a-z](?:[a-z0-9]|-(?!-))*[a-z0-9]$")


def _spec(**kw) -> MigrationSpec:
    src = DatabaseLocation("postgresql", "db.corp.example", 5432, "shop")
    tgt = DatabaseLocation("postgresql", "10.0.3.7", 5432, "shop")
    base = dict(estate="acme", wave=1, server_id="pg-01", name="orders", source=src,
                target=tgt)
    base.update(kw)
    return MigrationSpec(**base)


# ---------------------------------------------------------------- locations, credentials
@pytest.mark.parametrize(("url", "expected"), [
    ("postgresql+psycopg2://app:pw@db.corp.example/shop",
     DatabaseLocation("postgresql", "db.corp.example", 5432, "shop")),
    ("postgresql://app@10.0.0.5:6432/billing",
     DatabaseLocation("postgresql", "10.0.0.5", 6432, "billing")),
    ("mysql+pymysql://root:x@mysql.local/crm", DatabaseLocation("mysql", "mysql.local", 3306,
                                                                 "crm")),
    ("mssql+pymssql://sa:x@sql01:1444/erp", DatabaseLocation("mssql", "sql01", 1444, "erp")),
    ("sqlite:////var/lib/app/app.db", DatabaseLocation("sqlite", None, None,
                                                       "/var/lib/app/app.db")),
])
def test_location_from_url_reads_engine_host_port_database(url, expected):
    assert DatabaseLocation.from_url(url, "server s endpoint e field source_uri") == expected


def test_unknown_engine_is_refused_naming_server_endpoint_and_field():
    with pytest.raises(InputError) as err:
        DatabaseLocation.from_url("foodb://h/db", "server pg-01 endpoint orders field source_uri")
    assert "server pg-01 endpoint orders field source_uri" in str(err.value)
    assert "foodb" in str(err.value)
    with pytest.raises(InputError, match="not a database URL"):
        DatabaseLocation.from_url("just text", "server pg-01 endpoint orders field target_uri")


def test_credentials_never_show_the_password():
    creds = DatabaseCredentials.from_url("postgresql://app:s3cr3t-pw@db/shop")
    assert creds.username == "app" and creds.password == "s3cr3t-pw"
    assert "s3cr3t-pw" not in repr(creds) and "s3cr3t-pw" not in str(creds)


# ---------------------------------------------------------------- identifiers, mappings
def test_identifiers_are_deterministic_valid_and_distinct():
    spec = _spec()
    assert task_identifier(spec) == task_identifier(_spec())
    assert task_identifier(spec) == "mb-acme-wave-01-pg-01-orders"
    assert endpoint_identifier(spec, "source") == "mb-acme-wave-01-pg-01-orders-src"
    assert endpoint_identifier(spec, "target") == "mb-acme-wave-01-pg-01-orders-tgt"
    assert wave_identifier("acme", 1) == wave_identifier("acme", "acme/wave-01")
    ids = {task_identifier(_spec(server_id=s, name=n)) for s in ("pg-01", "pg_01", "pg-02")
           for n in ("orders", "crm")}
    assert len(ids) == 6  # pg_01 is not pg-01: a hash of the exact name tells them apart
    assert task_identifier(_spec(server_id="PG-01")) != task_identifier(spec)
    for ident in ids | {wave_identifier("acme", 1)}:
        assert VALID_ID.match(ident), ident


def test_long_identifiers_are_cut_with_a_hash_and_stay_unique():
    long_a = dms_identifier("estate-with-a-very-long-name", "wave-01", "server" * 10, "db-a")
    long_b = dms_identifier("estate-with-a-very-long-name", "wave-01", "server" * 10, "db-b")
    assert len(long_a) <= 63 and len(long_b) <= 63
    assert long_a != long_b
    assert VALID_ID.match(long_a) and VALID_ID.match(long_b)
    assert dms_identifier("Ünïcode__Estate", "--wave--").startswith("mb-n-code-estate-wave-")


def test_table_mappings_select_the_schemas_and_leave_out_the_copy_bookkeeping():
    rules = table_mappings(_spec(schemas=("public", "sales")))["rules"]
    includes = [r["object-locator"]["schema-name"] for r in rules
                if r["rule-action"] == "include"]
    excludes = [r["object-locator"]["table-name"] for r in rules
                if r["rule-action"] == "exclude"]
    assert includes == ["public", "sales"]
    assert excludes == ["_migrationbox_replication"]
    assert len({r["rule-id"] for r in rules}) == len(rules)


# ---------------------------------------------------------------- task statuses
def _task(status, **kw):
    stats = kw.pop("stats", {})
    return {"ReplicationTaskArn": "arn:aws:dms:us-east-1:1:task:T", "Status": status,
            "ReplicationTaskStats": stats, **kw}


@pytest.mark.parametrize(("task", "state"), [
    (_task("creating"), TaskState.PENDING),
    (_task("ready"), TaskState.PENDING),
    (_task("starting"), TaskState.PENDING),
    (_task("running", stats={"FullLoadProgressPercent": 42, "TablesLoading": 2}),
     TaskState.RUNNING),
    (_task("running", stats={"FullLoadProgressPercent": 100, "TablesLoading": 0,
                             "TablesQueued": 0, "TablesLoaded": 4}),
     TaskState.FULL_LOAD_COMPLETE),
    (_task("running", stats={"FullLoadProgressPercent": 100, "TablesQueued": 1}),
     TaskState.RUNNING),
    (_task("stopping"), TaskState.RUNNING),
    (_task("stopped", StopReason="Stop Reason FULL_LOAD_ONLY_FINISHED"),
     TaskState.FULL_LOAD_COMPLETE),
    (_task("stopped", StopReason="Stop Reason NORMAL"), TaskState.STOPPED),
    (_task("stopped"), TaskState.STOPPED),
    (_task("stopped", StopReason="Stop Reason FATAL_ERROR",
           LastFailureMessage="Error: could not connect to server"), TaskState.FAILED),
    (_task("stopped", StopReason="Stop Reason RECOVERABLE_ERROR"), TaskState.FAILED),
    (_task("failed", LastFailureMessage="Last Error Task error notification"),
     TaskState.FAILED),
    (_task("deleting"), TaskState.MISSING),
])
def test_classify_task(task, state):
    assert classify_task("T", task).state is state


def test_failed_task_keeps_the_services_words():
    status = classify_task("T", _task("stopped", StopReason="Stop Reason FATAL_ERROR",
                                      LastFailureMessage="Error: password authentication "
                                                         "failed for user app"))
    assert status.state is TaskState.FAILED and status.terminal and not status.active
    assert "password authentication failed" in status.reason()
    assert "FATAL_ERROR" in status.reason()
    assert TaskStatus.from_dict(status.as_dict()) == status


def test_errored_tables_fail_a_running_task():
    status = classify_task("T", _task("running", stats={"FullLoadProgressPercent": 100,
                                                        "TablesErrored": 2}))
    assert status.state is TaskState.FAILED
    assert "2 table(s) errored" in status.reason()


def test_no_task_is_missing_and_a_silent_stop_says_so():
    assert classify_task("T", None).state is TaskState.MISSING
    assert classify_task("T", _task("stopped")).reason() == "the service gave no reason"


# ---------------------------------------------------------------- factory, engines
def test_factory_gives_the_aws_adapter_and_refuses_clouds_without_one():
    service = get_database_service("aws", "aws_default", "eu-west-1", poll_seconds=1)
    assert isinstance(service, AwsDmsService)
    assert isinstance(service, DatabaseMigrationService)
    assert service.region == "eu-west-1" and service.poll_seconds == 1
    with pytest.raises(NoDatabaseService) as err:
        get_database_service("azure", "azure_default", "westeurope")
    assert isinstance(err.value, ConfigurationError)
    assert "azure" in str(err.value)


def test_dms_takes_server_engines_and_refuses_sqlite_with_the_reason():
    service = AwsDmsService()
    pg = DatabaseLocation("postgresql", "db", 5432, "shop")
    assert service.unsupported_reason(pg, pg) is None
    assert service.unsupported_reason(DatabaseLocation("mssql", "sql01", 1433, "erp"), pg) \
        is None
    reason = service.unsupported_reason(DatabaseLocation("sqlite", None, None, "/x.db"), pg)
    assert reason is not None and "sqlite source" in reason
    reason = service.unsupported_reason(pg, DatabaseLocation("sqlite", None, None, "/y.db"))
    assert reason is not None and "sqlite target" in reason


@pytest.mark.parametrize(("endpoint_url", "emulated"), [
    ("http://127.0.0.1:5000", True),
    ("http://localhost:4566", True),
    ("https://dms.eu-west-1.amazonaws.com", False),
    (None, False),
])
def test_emulated_is_read_from_the_aws_connection(monkeypatch, endpoint_url, emulated):
    import json

    extra = {"region_name": "eu-west-1"}
    if endpoint_url:
        extra["endpoint_url"] = endpoint_url
    monkeypatch.setenv("AIRFLOW_CONN_MB_UNIT_AWS", json.dumps(
        {"conn_type": "aws", "login": "k", "password": "s", "extra": extra}))
    assert AwsDmsService(conn_id="mb_unit_aws").emulated is emulated


def test_every_engine_dms_takes_has_settings_that_carry_a_secret():
    """The secret route must exist for each engine DMS is used for, or that engine's
    endpoint would need a password in its definition."""
    assert set(SOURCE_ENGINES.values()) | set(TARGET_ENGINES.values()) <= set(ENGINE_SETTINGS)
    assert ENGINE_SETTINGS["postgres"] == "PostgreSQLSettings"
    assert ENGINE_SETTINGS["sqlserver"] == "MicrosoftSQLServerSettings"


def test_secret_and_role_names_are_per_endpoint_and_per_wave_and_fit_iam():
    spec = MigrationSpec("acme", 1, "pg-01", "orders",
                         DatabaseLocation("postgresql", "db", 5432, "shop"),
                         DatabaseLocation("postgresql", "10.0.0.1", 5432, "shop"))
    src, tgt = endpoint_identifier(spec, "source"), endpoint_identifier(spec, "target")
    assert secret_name(src) == f"migrationbox/{src}" != secret_name(tgt)
    assert secrets_role_name("acme", 1) == "mb-acme-wave-01-secrets"
    assert secrets_role_name("acme", 1) != secrets_role_name("acme", 2)
    long = secrets_role_name("e" * 80, 7)
    assert len(long) <= 64 and re.fullmatch(r"[a-z0-9-]+", long)


def test_the_credentials_route_is_one_of_two_named_ones():
    assert AwsDmsService().credentials == "secrets-manager"
    assert AwsDmsService(credentials="password").credentials == "password"
    with pytest.raises(ConfigurationError, match="secrets-manager, password"):
        AwsDmsService(credentials="in-the-clear")
