"""The endpoint type and the rules a registration must pass (no credential gets through)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

import migrationbox.endpoints as domain
import migrationbox.lab.endpoints as lab
from migrationbox.endpoints.model import (
    EndpointError,
    EndpointSpec,
    parse_endpoints,
    parse_ssh_uri,
    validation_problems,
)

HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKNzi4DToz1DctumldOgykMZlVM/pqviRttnLuJN1Im9"


def problems(data: dict) -> dict[str, str]:
    with pytest.raises(ValidationError) as info:
        EndpointSpec.model_validate(data)
    return dict(validation_problems(info.value))


def test_the_lab_module_re_exports_the_domain_type():
    assert lab.Endpoint is domain.Endpoint
    assert lab.parse_endpoints is domain.parse_endpoints
    assert lab.by_server is domain.by_server
    assert issubclass(lab.EndpointsUnavailable, LookupError)


def test_valid_registrations_of_each_kind():
    disk = EndpointSpec.model_validate({
        "server_id": "db-01", "kind": "disk",
        "source_uri": "ssh://migrate@db-01.corp:2222/var/lib/pgsql",
        "details": {"ssh_conn_id": "ssh_dc1", "host_key": HOST_KEY}})
    assert disk.name == "root"
    local = EndpointSpec.model_validate({"server_id": "a", "kind": "disk",
                                         "source_uri": "file:///srv/data",
                                         "target_uri": "file:///mnt/target"})
    assert local.to_endpoint().source_path.as_posix() == "/srv/data"
    db = EndpointSpec.model_validate({"server_id": "db-01", "kind": "database",
                                      "details": {"conn_id": "pg_app"}})
    assert db.name == "app" and db.source_uri is None
    assert EndpointSpec.model_validate({"server_id": "a", "kind": "database",
                                        "source_uri": "sqlite:////srv/app.db"})
    assert EndpointSpec.model_validate({"server_id": "a", "kind": "database",
                                        "source_uri": "postgresql://app@db:5432/app"})
    assert EndpointSpec.model_validate({"server_id": "a", "kind": "http",
                                        "source_uri": "http://web:8080/health"}).name == "service"


def test_a_password_in_a_database_url_is_refused_without_echoing_it():
    found = problems({"server_id": "db-01", "kind": "database",
                      "source_uri": "postgresql://app:s3cr3t-pw@db:5432/app"})
    assert "source_uri" in found and "password" in found["source_uri"]
    assert "conn_id" in found["source_uri"]
    assert all("s3cr3t-pw" not in f"{k}{v}" for k, v in found.items())
    target = problems({"server_id": "db-01", "kind": "database", "details": {"conn_id": "x"},
                       "target_uri": "mysql+pymysql://root:hunter22@t/app"})
    assert "target_uri" in target and "hunter22" not in str(target)


def test_secrets_anywhere_in_details_or_uris_are_refused():
    found = problems({"server_id": "a", "kind": "disk", "source_uri": "ssh://h/x",
                      "details": {"ssh_conn_id": "c", "private_key": "-----BEGIN",
                                  "api_token": "t"}})
    assert set(found) >= {"details.private_key", "details.api_token"}
    assert "password" in problems({"server_id": "a", "kind": "disk",
                                   "source_uri": "ssh://u:pw@h/x",
                                   "details": {"ssh_conn_id": "c"}})["source_uri"]
    assert "source_uri" in problems({"server_id": "a", "kind": "http",
                                     "source_uri": "http://u:pw@web/health"})
    assert "details.url" in problems({"server_id": "a", "kind": "http",
                                      "source_uri": "http://web/health",
                                      "details": {"url": "postgresql://u:pw@h/db"}})


@pytest.mark.parametrize(("data", "field", "words"), [
    ({"kind": "disk", "source_uri": "ssh://host/srv"}, "details.ssh_conn_id", "SSH connection"),
    ({"kind": "disk", "source_uri": "ssh://host"}, "source_uri", "absolute path"),
    ({"kind": "disk", "source_uri": "ftp://host/x"}, "source_uri", "file:///abs/path"),
    ({"kind": "disk", "source_uri": "file://otherhost/x"}, "source_uri", "ssh://"),
    ({"kind": "disk"}, "source_uri", "needs a source"),
    ({"kind": "disk", "source_uri": "ssh://h/x", "details": {"ssh_conn_id": "c",
                                                             "host_key": "ssh-ed25519 AAAA"}},
     "details.host_key", "public key"),
    ({"kind": "database"}, "details.conn_id", "Airflow"),
    ({"kind": "database", "details": {"conn_id": "c", "tables": "orders"}}, "details.tables",
     "list of names"),
    ({"kind": "database", "source_uri": "sqlite:///relative.db"}, "source_uri", "absolute"),
    ({"kind": "database", "source_uri": "sqlite:////a.db", "details": {"conn_id": "x"}},
     "source_uri", "not both"),
    ({"kind": "database", "source_uri": "not a url"}, "source_uri", "SQLAlchemy"),
    ({"kind": "http", "source_uri": "web:8080"}, "source_uri", "http://"),
    ({"kind": "nas", "source_uri": "x"}, "kind", "disk"),
])
def test_each_rule_names_its_field(data, field, words):
    found = problems({"server_id": "srv-1", **data})
    assert field in found, found
    assert words in found[field]


def test_unknown_keys_are_refused_so_a_typo_does_not_vanish():
    found = problems({"server_id": "a", "kind": "http", "source_url": "http://x/"})
    assert "source_url" in found


def test_ssh_uri_parts():
    loc = parse_ssh_uri("ssh://migrate@db-01.corp:2222/var/lib/data")
    assert (loc.user, loc.host, loc.port, loc.path) == ("migrate", "db-01.corp", 2222,
                                                        "/var/lib/data")
    assert parse_ssh_uri("ssh://db-01/").path == "/"
    assert parse_ssh_uri("ssh://[::1]:22/x").host == "::1"
    with pytest.raises(ValueError, match="bad port"):
        parse_ssh_uri("ssh://h:99999/x")


def test_reading_stored_endpoints_names_index_server_and_field():
    good = parse_endpoints([{"server_id": "a", "kind": "http", "name": "s",
                             "source_uri": "http://x/", "id": 7}], "store")
    assert good[0].label() == "a/http/s"
    with pytest.raises(EndpointError, match=r"store\[1\] \(server b\): kind"):
        parse_endpoints([{"server_id": "a", "kind": "http", "name": "s"},
                         {"server_id": "b", "kind": "tape", "name": "s"}], "store")
    with pytest.raises(EndpointError, match="expected a list"):
        parse_endpoints({"server_id": "a"}, "options.endpoints")


def test_lab_load_endpoints_prefers_what_the_caller_handed_over(tmp_path, monkeypatch):
    from types import SimpleNamespace

    monkeypatch.setenv("MIGRATIONBOX_HOME", str(tmp_path))
    handed = domain.Endpoint("web-01", "http", "service", "http://127.0.0.1:1/", None, {})
    on_file = domain.Endpoint("web-01", "disk", "root", "file:///srv", "file:///tgt", {})
    lab.write_endpoints_file(lab.endpoints_file("est"), "est", [on_file])
    assert lab.endpoints_file("est") == tmp_path / "lab" / "est" / "endpoints.json"
    ctx = SimpleNamespace(estate="est", endpoints=[handed], options=None)
    assert lab.load_endpoints(ctx) == [handed]
    ctx = SimpleNamespace(estate="est", endpoints=None, options={})
    assert lab.load_endpoints(ctx) == [on_file]
    with pytest.raises(domain.EndpointsUnavailable, match="endpoints import"):
        lab.load_endpoints(SimpleNamespace(estate="other", endpoints=None, options=None))


def test_database_urls_are_resolved_from_airflow_connections_at_use(monkeypatch):
    import json

    from migrationbox.endpoints.connections import ConnectionMissing, database_url, shown_url
    from migrationbox.errors import ConfigurationError

    monkeypatch.setenv("AIRFLOW_CONN_PG_APP_H4", json.dumps({
        "conn_type": "postgres", "host": "db.corp", "port": 5433, "login": "reader",
        "password": "Very-Secret-9", "schema": "app", "extra": {"sslmode": "require"}}))
    ep = domain.Endpoint("db-01", "database", "app", None, None, {"conn_id": "pg_app_h4"})
    url = database_url(ep)
    assert (url.drivername, url.host, url.port, url.database, url.username) == (
        "postgresql+psycopg2", "db.corp", 5433, "app", "reader")
    assert url.password == "Very-Secret-9" and url.query == {"sslmode": "require"}
    assert "Very-Secret-9" not in shown_url(url) and "***" in shown_url(url)
    override = domain.Endpoint("db-01", "database", "app", None, None,
                               {"conn_id": "pg_app_h4", "database": "billing"})
    assert database_url(override).database == "billing"

    monkeypatch.setenv("AIRFLOW_CONN_ODD_H4", json.dumps({"conn_type": "mongo", "host": "m"}))
    with pytest.raises(ConfigurationError, match="sqlalchemy_scheme"):
        database_url(domain.Endpoint("a", "database", "app", None, None, {"conn_id": "odd_h4"}))
    monkeypatch.setenv("AIRFLOW_CONN_ODD_H4", json.dumps({
        "conn_type": "generic", "host": "m", "extra": {"sqlalchemy_scheme": "mysql+pymysql"}}))
    assert database_url(domain.Endpoint("a", "database", "app", None, None,
                                        {"conn_id": "odd_h4"})).drivername == "mysql+pymysql"
    with pytest.raises(ConnectionMissing, match="AIRFLOW_CONN_NOT_THERE_H4"):
        database_url(domain.Endpoint("a", "database", "app", None, None,
                                     {"conn_id": "not_there_h4"}))
    plain = domain.Endpoint("a", "database", "app", "sqlite:////srv/app.db",
                            "sqlite:////srv/target.db", {})
    assert database_url(plain, "target").database == "/srv/target.db"


@pytest.mark.parametrize(("raw", "why"), [
    ("é".encode("latin-1") + b'{"endpoints": []}', "not UTF-8"),
    (b"[" * 100_000, "not valid JSON|nested too deeply"),
    (b'{"endpoints": [', "not valid JSON"),
])
def test_a_bad_endpoints_file_is_an_endpoint_error_naming_it(tmp_path, raw, why):
    path = tmp_path / "endpoints.json"
    path.write_bytes(raw)
    with pytest.raises(domain.EndpointError, match=why) as caught:
        domain.read_endpoints_file(path)
    assert str(path) in str(caught.value)


@pytest.mark.parametrize("kind", [["disk"], {"disk": 1}, 3])
def test_a_kind_that_is_not_text_is_a_field_error_not_a_type_error(kind):
    with pytest.raises(EndpointError, match="kind"):
        domain.parse_endpoints([{"server_id": "web-01", "kind": kind,
                                 "source_uri": "file:///srv"}], "t")
