"""Registering endpoints: files, quarantine, idempotent re-import, the CLI and the API.

All against a real SQLite store; nothing here connects to an endpoint (see
tests/integration/test_endpoints_check.py for that).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from migrationbox.cli import main
from migrationbox.endpoints.model import Endpoint, EndpointError
from migrationbox.endpoints.registry import (
    EndpointsFileError,
    import_records,
    read_file,
    register_endpoints,
)
from migrationbox.inventory.validation import load_estate
from migrationbox.store import repository
from migrationbox.store.db import session_scope
from migrationbox.store.testing import tiny_estate

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "include" / "estates" / "endpoints"


@pytest.fixture
def store(tmp_path, monkeypatch) -> str:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    monkeypatch.setenv("MIGRATIONBOX_STORE_URL", url)
    with session_scope() as s:
        repository.save_estate(s, tiny_estate())  # web-01, db-01, dns-01
    return url


def write(path: Path, data) -> Path:
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return path


def stored(server: str | None = None) -> list:
    with session_scope(read_only=True) as s:
        return repository.endpoints(s, "tiny", server)


GOOD = [
    {"server_id": "web-01", "kind": "disk", "name": "root",
     "source_uri": "ssh://deploy@10.0.0.10/srv/www", "details": {"ssh_conn_id": "ssh_dc1"}},
    {"server_id": "web-01", "kind": "http", "source_uri": "http://10.0.0.10:8080/health"},
    {"server_id": "db-01", "kind": "database", "details": {"conn_id": "db01_app"}},
]


def test_json_import_stores_good_records_and_quarantines_bad_ones(store, tmp_path):
    records = [*GOOD,
               {"server_id": "ghost-9", "kind": "http", "source_uri": "http://x/"},
               {"server_id": "dns-01", "kind": "database",
                "source_uri": "postgresql://app:TopSecret1@db/app"},
               "not an object"]
    _, raw = read_file(write(tmp_path / "e.json", {"estate": "tiny", "endpoints": records}))
    with session_scope() as s:
        report = import_records(s, "tiny", raw, "e.json", "tiny")
    assert len(report.valid) == 3 and len(report.quarantined) == 3 and not report.ok
    lines = report.issue_lines()
    assert any("server ghost-9" in line and "server_id:" in line and "no server" in line
               for line in lines)
    assert any("server dns-01" in line and "source_uri:" in line for line in lines)
    assert any("e.json[5]" in line for line in lines)
    assert sorted(report.stored_servers) == ["db-01", "web-01"]
    assert {(e.server_id, e.kind) for e in stored()} == {
        ("web-01", "disk"), ("web-01", "http"), ("db-01", "database")}


def test_no_credential_reaches_the_store(store, tmp_path):
    records = [{"server_id": "db-01", "kind": "database",
                "source_uri": "postgresql+psycopg2://app:TopSecret1@db:5432/app"},
               {"server_id": "web-01", "kind": "disk", "source_uri": "ssh://h/x",
                "details": {"ssh_conn_id": "c", "password": "TopSecret1"}}]
    _, raw = read_file(write(tmp_path / "e.json", records))
    with session_scope() as s:
        report = import_records(s, "tiny", raw, "e.json")
    assert not report.valid and len(report.quarantined) == 2
    assert "TopSecret1" not in json.dumps(report.to_dict())
    engine = create_engine(store)
    with engine.connect() as conn:
        dumped = json.dumps([list(map(str, r)) for r in
                             conn.execute(text("SELECT * FROM server_endpoints"))])
    engine.dispose()
    assert "TopSecret1" not in dumped


def test_reimport_is_idempotent_and_replaces_that_servers_endpoints(store, tmp_path):
    path = write(tmp_path / "e.json", GOOD)
    for _ in range(2):
        _, raw = read_file(path)
        with session_scope() as s:
            assert import_records(s, "tiny", raw, "e.json").ok
    first = stored()
    assert len(first) == 3
    # provisioning adds a target; the next import keeps it when the file has none
    with session_scope() as s:
        repository.upsert_endpoint(s, estate="tiny", server_id="web-01", kind="http",
                                   name="service", target_uri="http://10.1.0.5:8080/health")
    only_http = [r for r in GOOD if r["kind"] == "http"]
    _, raw = read_file(write(tmp_path / "e2.json", only_http))
    with session_scope() as s:
        import_records(s, "tiny", raw, "e2.json")
    web = stored("web-01")
    assert [(e.kind, e.target_uri) for e in web] == [("http", "http://10.1.0.5:8080/health")]
    assert [e.kind for e in stored("db-01")] == ["database"]  # not in the file: untouched


def test_a_server_with_a_bad_record_keeps_what_it_had(store, tmp_path):
    _, raw = read_file(write(tmp_path / "e.json", GOOD))
    with session_scope() as s:
        import_records(s, "tiny", raw, "e.json")
    typo = [GOOD[0], {"server_id": "web-01", "kind": "http", "source_uri": "web:8080"}]
    _, raw = read_file(write(tmp_path / "typo.json", typo))
    with session_scope() as s:
        report = import_records(s, "tiny", raw, "typo.json")
    assert report.stored_servers == [] and len(report.quarantined) == 1
    assert {e.kind for e in stored("web-01")} == {"disk", "http"}


def test_duplicates_and_a_file_for_another_estate(store, tmp_path):
    _, raw = read_file(write(tmp_path / "d.json", [GOOD[1], GOOD[1]]))
    with session_scope() as s:
        report = import_records(s, "tiny", raw, "d.json")
    assert [q.issues[0].reason for q in report.quarantined] == ["duplicate_endpoint"]
    with session_scope() as s, pytest.raises(EndpointsFileError, match="estate 'other'"):
        import_records(s, "tiny", raw, "d.json", "other")


def test_csv_with_details_columns(store, tmp_path):
    csv_text = (
        "server_id,kind,name,source_uri,target_uri,details.ssh_conn_id,details.conn_id,"
        "details.tables\n"
        "web-01,disk,root,ssh://10.0.0.10:2222/srv,,ssh_dc1,,\n"
        'db-01,database,app,,,,db01,"[""public.orders""]"\n'
        "dns-01,disk,root,relative/path,,,,\n"
        'dns-01,database,app,,,,dns01,"[broken"\n'
        "dns-01,database,legacy,,,,dns01,public.a public.b\n"
    )
    _, raw = read_file(write(tmp_path / "e.csv", csv_text))
    with session_scope() as s:
        report = import_records(s, "tiny", raw, "e.csv")
    assert len(report.valid) == 3
    bad, broken = report.quarantined
    assert bad.server_id == "dns-01" and bad.line == 4 and bad.location() == "e.csv:4"
    assert broken.line == 5 and broken.issues[0].field == "details.tables"
    assert report.valid[-1].details["tables"] == ["public.a", "public.b"]
    db = stored("db-01")[0]
    assert db.details == {"conn_id": "db01", "tables": ["public.orders"]}
    with pytest.raises(EndpointsFileError, match="header row"):
        read_file(write(tmp_path / "h.csv", "a,b\n1,2\n"))
    with pytest.raises(EndpointsFileError, match="line 1, column"):
        read_file(write(tmp_path / "bad.json", "{nope"))


@pytest.mark.parametrize("name", ["sample.json", "sample.csv"])
def test_the_documented_examples_import_into_the_sample_estate(tmp_path, monkeypatch, name):
    monkeypatch.setenv("MIGRATIONBOX_STORE_URL", f"sqlite:///{tmp_path / 's.db'}")
    estate = load_estate(ROOT / "include" / "estates" / "sample")
    with session_scope() as s:
        repository.save_estate(s, estate.model_copy(update={"name": "sample"}))
    file_estate, raw = read_file(EXAMPLES / name)
    with session_scope() as s:
        report = import_records(s, "sample", raw, name, file_estate)
    assert report.ok, report.issue_lines()
    assert len(report.valid) == len(raw) == 5


def test_lab_style_endpoints_register_through_the_same_rules(store):
    lab_like = [
        Endpoint("web-01", "disk", "root", "file:///tmp/lab/web/source",
                 "file:///tmp/lab/web/target", {"hostname": "web-01.corp.example"}),
        Endpoint("db-01", "database", "app", "sqlite:////tmp/lab/db/src.sqlite",
                 "sqlite:////tmp/lab/db/tgt.sqlite", {"backend": "sqlite"}),
        Endpoint("web-01", "http", "service", "http://127.0.0.1:5001",
                 "http://127.0.0.1:5002", {"control_url": "http://127.0.0.1:5000"}),
    ]
    with session_scope() as s:
        report = register_endpoints(s, "tiny", lab_like)
    assert sorted(report.stored_servers) == ["db-01", "web-01"]
    leaky = [Endpoint("db-01", "database", "app", "postgresql://u:pw@h/db", None, {})]
    with session_scope() as s, pytest.raises(EndpointError, match=r"db-01.*source_uri"):
        register_endpoints(s, "tiny", leaky)
    assert len(stored()) == 3


# ----------------------------------------------------------------------------- CLI


def test_cli_import_list_and_exit_codes(store, tmp_path, capsys):
    path = write(tmp_path / "e.json", [*GOOD, {"server_id": "ghost", "kind": "http",
                                               "source_uri": "http://x/"}])
    assert main(["endpoints", "import", str(path), "--estate", "tiny"]) == 1
    out = capsys.readouterr().out
    assert "quarantined" in out and "server ghost" in out and "3 endpoint(s) valid" in out
    assert main(["endpoints", "import", str(write(tmp_path / "g.json", GOOD)),
                 "--estate", "tiny"]) == 0
    capsys.readouterr()
    assert main(["endpoints", "list", "--estate", "tiny", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert len(listed["endpoints"]) == 3
    # the listing is itself an importable file
    again = write(tmp_path / "listed.json", listed)
    assert main(["endpoints", "import", str(again), "--estate", "tiny"]) == 0
    capsys.readouterr()
    assert main(["endpoints", "list", "--estate", "tiny", "--server", "db-01"]) == 0
    assert "connection db01_app" in capsys.readouterr().out
    assert main(["endpoints", "list", "--estate", "nope"]) == 2
    assert "not in the store" in capsys.readouterr().err
    assert main(["endpoints", "import", str(tmp_path / "missing.json"),
                 "--estate", "tiny"]) == 2
    assert "cannot read" in capsys.readouterr().err
    assert main(["endpoints", "import", str(path), "--estate", "nope"]) == 2
    assert "estate 'nope'" in capsys.readouterr().err


# ----------------------------------------------------------------------------- API


def test_api_lists_imports_and_refuses_bad_bodies(store):
    from migrationbox.api.app import build_app

    client = TestClient(build_app())
    assert client.get("/estates/tiny/endpoints").json()["endpoints"] == []
    ok = client.post("/estates/tiny/endpoints", json={"estate": "tiny", "endpoints": GOOD})
    assert ok.status_code == 200, ok.text
    assert sorted(ok.json()["stored_servers"]) == ["db-01", "web-01"]
    listed = client.get("/estates/tiny/endpoints", params={"server": "web-01"}).json()
    assert {e["kind"] for e in listed["endpoints"]} == {"disk", "http"}

    bad = client.post("/estates/tiny/endpoints", json=[
        {"server_id": "dns-01", "kind": "http", "source_uri": "http://10.0.0.12/health"},
        {"server_id": "dns-01", "kind": "database",
         "source_uri": "postgresql://u:Secret99@h/db"}])
    assert bad.status_code == 422
    body = bad.json()
    assert "nothing was stored" in body["detail"]
    assert any("dns-01" in line and "source_uri" in line for line in body["issues"])
    assert "Secret99" not in bad.text
    assert stored("dns-01") == []  # all or nothing

    assert client.post("/estates/tiny/endpoints", json={"oops": 1}).status_code == 422
    assert client.post("/estates/tiny/endpoints",
                       json={"estate": "x", "endpoints": []}).status_code == 422
    assert client.post("/estates/nope/endpoints", json=GOOD).status_code == 404
    assert client.get("/estates/nope/endpoints").status_code == 404


def test_the_endpoint_routes_sit_behind_the_apis_authentication(store):
    from fastapi import HTTPException

    from migrationbox.api.app import build_app

    def deny() -> None:
        raise HTTPException(401, "not authenticated")

    client = TestClient(build_app(auth=deny))
    assert client.get("/estates/tiny/endpoints").status_code == 401
    assert client.get("/estates/tiny/endpoints/check").status_code == 401
    assert client.post("/estates/tiny/endpoints", json=GOOD).status_code == 401
    assert stored() == []
