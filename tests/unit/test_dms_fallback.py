"""replication.dms without a cloud: logins from Airflow connections, bad input, and the
row-checksum copy when there is no service or the engine is one it cannot take.

The database side is real (SQLite files from the lab's generator, and PostgreSQL on
loopback where a test says so); the cloud side is in tests/integration/test_dms.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from migrationbox.cloud.aws_dms import AwsDmsService
from migrationbox.endpoints.model import Endpoint
from migrationbox.errors import ConfigurationError, ExternalServiceError, InputError
from migrationbox.lab import databases as labdb
from migrationbox.lab.servers import LabServer
from migrationbox.replication.dms import (
    DatabaseCopyFailed,
    ServicePlacement,
    ServiceStart,
    replicate_database_via_service,
    resolve_database_url,
)

SERVER = LabServer("db-01", "db-prod-01.company.local", "postgresql", data_size_gb=20)
PLACEMENT = ServicePlacement(estate="unit", wave=1)


def db_endpoint(server_id: str, name: str, source_uri: str | None, target_uri: str | None,
               details: dict[str, Any] | None = None) -> Endpoint:
    return Endpoint(server_id, "database", name, source_uri, target_uri, dict(details or {}))


@pytest.fixture
def sqlite_pair(tmp_path: Path) -> tuple[str, str]:
    dbs = labdb.provision("unit", SERVER, "sqlite", tmp_path)
    return dbs.source_url, dbs.target_url


def _conn_env(monkeypatch, conn_id: str, **fields: Any) -> None:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(fields))


# ---------------------------------------------------------------- logins and bad input
def test_login_comes_from_the_airflow_connection_at_call_time(monkeypatch):
    _conn_env(monkeypatch, "mb_unit_src", conn_type="postgres", login="app",
              password="p@ss:w/rd", host="db.corp.example", port=5433, schema="shop")
    ep = db_endpoint("pg-01", "orders", None, None, {"conn_id": "mb_unit_src"})
    from sqlalchemy.engine import make_url

    parsed = make_url(resolve_database_url(ep, "source"))
    assert (parsed.username, parsed.password) == ("app", "p@ss:w/rd")
    assert (parsed.host, parsed.port, parsed.database) == ("db.corp.example", 5433, "shop")
    # rotated in Airflow: the next call sees the new password, nothing kept the old one
    _conn_env(monkeypatch, "mb_unit_src", conn_type="postgres", login="app", password="new",
              host="db.corp.example", port=5433, schema="shop")
    assert make_url(resolve_database_url(ep, "source")).password == "new"
    # a URI without a connection is used as it is
    plain = db_endpoint("pg-01", "orders", "postgresql://app@db.corp.example/shop", None)
    assert resolve_database_url(plain, "source") == "postgresql://app@db.corp.example/shop"


def test_missing_connection_names_server_endpoint_field_and_connection(sqlite_pair):
    src, _ = sqlite_pair
    ep = db_endpoint("pg-01", "orders", src, None, {"target_conn_id": "mb_unit_absent"})
    with pytest.raises(ConfigurationError) as err:
        replicate_database_via_service(ep, PLACEMENT, None)
    message = str(err.value)
    for part in ("endpoint pg-01/database/orders", "details.target_conn_id",
                 "'mb_unit_absent'", "AIRFLOW_CONN_MB_UNIT_ABSENT"):
        assert part in message
    assert "Traceback" not in message


def test_no_url_and_unknown_engine_are_input_errors(sqlite_pair):
    src, tgt = sqlite_pair
    with pytest.raises(InputError, match=r"endpoint pg-01/database/orders.*target"):
        replicate_database_via_service(db_endpoint("pg-01", "orders", src, None), PLACEMENT,
                                       None)
    with pytest.raises(InputError) as err:
        replicate_database_via_service(
            db_endpoint("pg-01", "orders", "foodb://legacy.corp/erp", tgt), PLACEMENT, None)
    assert "endpoint pg-01/database/orders field source_uri" in str(err.value)
    assert "foodb" in str(err.value)
    # refused before anything was written
    engine = create_engine(tgt)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM sqlite_master")).scalar() == 0
    engine.dispose()


# ---------------------------------------------------------------- fallback copy
def test_sqlite_source_is_copied_with_the_reason_and_validated(sqlite_pair):
    src, tgt = sqlite_pair
    # the adapter is real, but is never called for an engine DMS cannot take
    service = AwsDmsService(conn_id="mb_unit_no_aws_here", region="us-east-1")
    result = replicate_database_via_service(db_endpoint("db-01", "app", src, tgt), PLACEMENT,
                                            service)
    assert result.method == "copy"
    assert result.dms_task_arn is None
    assert "AWS DMS has no sqlite source endpoint" in (result.fallback_reason or "")
    assert result.done and result.match and result.rows_copied > 0
    summary = result.summary()
    assert summary["checksum_match"] is True and summary["method"] == "copy"
    assert {t["table"] for t in summary["tables"]} == {t.table for t in result.tables}
    # a re-run resumes from the copy's watermarks: nothing left to copy
    again = replicate_database_via_service(db_endpoint("db-01", "app", src, tgt), PLACEMENT,
                                           service)
    assert again.done and again.rows_copied == 0


def test_no_service_for_the_cloud_is_recorded(sqlite_pair):
    src, tgt = sqlite_pair
    result = replicate_database_via_service(db_endpoint("db-01", "app", src, tgt), PLACEMENT,
                                            None)
    assert result.method == "copy" and result.done
    assert result.fallback_reason == "no database migration service for this cloud"


def test_a_copy_that_cannot_write_is_an_error_not_a_result(sqlite_pair, tmp_path):
    src, _ = sqlite_pair
    missing_dir = tmp_path / "no-such-dir" / "target.sqlite"
    ep = db_endpoint("db-01", "app", src, f"sqlite:///{missing_dir}")
    with pytest.raises(DatabaseCopyFailed) as err:
        replicate_database_via_service(ep, PLACEMENT, None)
    assert isinstance(err.value, ExternalServiceError)
    assert "endpoint db-01/database/app" in str(err.value)


def test_password_is_in_no_result(monkeypatch):
    ok, why = labdb.postgres_available()
    if not ok:
        pytest.skip(f"PostgreSQL on 127.0.0.1:5432 not reachable: {why}")
    import uuid

    estate = f"unitdms{uuid.uuid4().hex[:6]}"
    dbs = labdb.provision(estate, SERVER, "postgresql", Path("/nonexistent"))
    try:
        # the lab's PostgreSQL trusts loopback, so any password is accepted and must
        # still never show up in what the copy reports
        from sqlalchemy.engine import make_url

        src = make_url(dbs.source_url)
        _conn_env(monkeypatch, "mb_unit_pg_src", conn_type="postgres", login="postgres",
                  password="never-shown-pw", host=src.host, port=src.port,
                  schema=src.database)
        ep = db_endpoint("db-01", "app", None, dbs.target_url, {"conn_id": "mb_unit_pg_src"})
        result = replicate_database_via_service(ep, PLACEMENT, None)
        assert result.done
        assert "never-shown-pw" not in json.dumps(result.summary(), default=str)
        assert "never-shown-pw" not in json.dumps(ServiceStart().as_dict())
    finally:
        labdb.drop(dbs)
