"""Validation: every bad record names file, record and field; good records still load."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from migrationbox.inventory.models import ServerRecord
from migrationbox.inventory.validation import (
    InventoryError,
    Reason,
    load_estate,
    validate_inventory,
    validate_records,
    write_quarantine,
)

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "inventory"
BAD = ROOT / "include" / "estates" / "bad"


def record(server_id: str, host: str, ip: str, deps: list[dict[str, Any]] | None = None,
           **extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "server_id": server_id,
        "hostname": host,
        "ip_addresses": [ip],
        "os": {"type": "Linux"},
        "hardware": {"cpu_cores": 2, "ram_gb": 4},
        "applications": [{"name": "nginx", "ports": [80]}],
        "network_dependencies": deps or [],
        "performance_baseline": {"cpu_avg_utilization_pct": 10,
                                 "memory_avg_utilization_pct": 20},
    }
    data.update(extra)
    return data


def dep(destination: str, **extra: Any) -> dict[str, Any]:
    return {"destination": destination, "protocol": "tcp", **extra}


# ----------------------------------------------------------------------- plan example


def test_plan_example_validates_unchanged() -> None:
    raw = json.loads((FIXTURES / "plan_example.json").read_text())
    server = ServerRecord.model_validate(raw)
    assert server.server_id == "srv-onprem-001"
    assert server.applications[1].data_size_gb == 450
    # with its two peers in the estate, nothing is quarantined
    peers = json.loads((FIXTURES / "plan_example_peers.json").read_text())
    report = validate_records([raw, *peers])
    assert report.quarantined == [] and len(report.valid) == 3
    # on its own, its peers are unknown: an error by default, a warning on request
    alone = validate_inventory(FIXTURES / "plan_example.json")
    assert [i.field for i in alone.quarantined[0].issues] == [
        "network_dependencies[0].destination", "network_dependencies[1].destination"]
    relaxed = validate_inventory(FIXTURES / "plan_example.json", unknown_dependencies="warn")
    assert len(relaxed.valid) == 1 and len(relaxed.warnings) == 2


# ----------------------------------------------------------------------- bad fixtures


@pytest.fixture(scope="module")
def bad_report():
    return validate_inventory(BAD)


def _issues(report, file_name: str) -> dict[str, list[tuple[str, Reason]]]:
    found: dict[str, list[tuple[str, Reason]]] = {}
    for q in report.quarantined:
        if Path(q.file).name == file_name:
            found.setdefault(q.record, []).extend((i.field, i.reason) for i in q.issues)
    return found


def test_bad_folder_keeps_the_good_records(bad_report) -> None:
    assert sorted(s.server_id for s in bad_report.valid) == [
        "bad-good-01", "bad-good-02", "bad-good-03"]
    assert len(bad_report.quarantined) == 9
    assert bad_report.summary().startswith("3 valid, 9 quarantined (")
    assert bad_report.reason_counts() == {
        "duplicate_server_id": 2, "invalid_value": 1, "malformed_json": 2,
        "missing_field": 2, "not_an_object": 1, "unknown_dependency": 1, "wrong_type": 1}


def test_malformed_file_names_line_and_column(bad_report) -> None:
    (item,) = [q for q in bad_report.quarantined if q.file.endswith("02_malformed.json")]
    assert item.line == 5
    assert item.issues[0].reason is Reason.malformed_json
    assert "line 5, column 3" in item.issues[0].message


def test_missing_fields(bad_report) -> None:
    assert _issues(bad_report, "03_missing_fields.json") == {"bad-missing": [
        ("hardware", Reason.missing_field), ("performance_baseline", Reason.missing_field)]}


def test_wrong_types_name_nested_fields(bad_report) -> None:
    issues = _issues(bad_report, "04_wrong_types.json")["bad-types"]
    assert issues == [
        ("ip_addresses", Reason.wrong_type),
        ("hardware.cpu_cores", Reason.wrong_type),
        ("network_dependencies[0].frequency_per_hour", Reason.wrong_type),
    ]
    (item,) = [q for q in bad_report.quarantined if q.record == "bad-types"]
    assert "'sixteen'" in item.issues[1].message


def test_duplicates_name_each_other(bad_report) -> None:
    a = _issues(bad_report, "05_duplicate_a.json")
    b = _issues(bad_report, "06_duplicate_b.json")
    assert a == b == {"bad-dup": [("server_id", Reason.duplicate_server_id)]}
    messages = [i.message for q in bad_report.quarantined if q.record == "bad-dup"
                for i in q.issues]
    assert "06_duplicate_b.json#0" in messages[0] and "05_duplicate_a.json#0" in messages[1]


def test_unknown_dependency_names_the_entry(bad_report) -> None:
    assert _issues(bad_report, "07_unknown_dependency.json") == {"bad-unknown": [
        ("network_dependencies[1].destination", Reason.unknown_dependency)]}


def test_jsonl_records_are_labelled_by_index_and_line(bad_report) -> None:
    mixed = [q for q in bad_report.quarantined if q.file.endswith("08_mixed.jsonl")]
    assert [(q.record, q.line) for q in mixed] == [("line 2", 2), ("#2", 4), ("#3", 5)]
    assert [(i.field, i.reason) for i in mixed[1].issues] == [
        ("server_id", Reason.missing_field),
        ("performance_baseline.cpu_avg_utilization_pct", Reason.invalid_value)]
    assert mixed[2].issues[0].reason is Reason.not_an_object


def test_load_estate_is_all_or_nothing() -> None:
    with pytest.raises(InventoryError) as info:
        load_estate(BAD, "bad")
    text = str(info.value)
    assert "3 valid, 9 quarantined" in text
    assert "04_wrong_types.json  record bad-types  hardware.cpu_cores:" in text
    assert len(info.value.report.quarantined) == 9


def test_load_estate_names_the_estate(tmp_path: Path) -> None:
    folder = tmp_path / "My Estate"
    folder.mkdir()
    (folder / "a.json").write_text(json.dumps(record("a", "a.x", "10.0.0.1")))
    assert load_estate(folder).name == "my-estate"
    assert load_estate(folder, "named").name == "named"


# ----------------------------------------------------------------------- estate checks


def test_hostname_collision_quarantines_both() -> None:
    report = validate_records([record("a", "web.x", "10.0.0.1"), record("b", "WEB.x", "10.0.0.2"),
                               record("c", "other.x", "10.0.0.3")])
    assert [s.server_id for s in report.valid] == ["c"]
    assert {q.record: q.issues[0].reason for q in report.quarantined} == {
        "a": Reason.hostname_collision, "b": Reason.hostname_collision}


def test_dependency_resolution_by_id_hostname_short_name_and_ip() -> None:
    db = record("db", "db-01.dc.example", "10.0.0.10")
    deps = [dep("db:5432"), dep("db-01.dc.example:5432"), dep("DB-01:5432"),
            dep("10.0.0.10:5432")]
    report = validate_records([db, record("app", "app-01.dc.example", "10.0.0.11", deps)])
    assert report.ok and not report.warnings


def test_external_flag_waives_unknown_but_must_be_boolean() -> None:
    report = validate_records([
        record("a", "a.x", "10.0.0.1", [dep("api.github.com:443", external=True)]),
        record("b", "b.x", "10.0.0.2", [dep("api.github.com:443", external="yes")]),
    ])
    assert [s.server_id for s in report.valid] == ["a"]
    (item,) = report.quarantined
    assert (item.issues[0].field, item.issues[0].reason) == (
        "network_dependencies[0].external", Reason.wrong_type)


def test_ambiguous_short_name_is_an_error_and_a_warning() -> None:
    report = validate_records([
        record("w1", "web-01.dc1.x", "10.0.0.1"), record("w2", "web-01.dc2.x", "10.0.0.2"),
        record("lb", "lb.x", "10.0.0.3", [dep("web-01:443")]),
    ])
    (item,) = report.quarantined
    assert item.record == "lb" and item.issues[0].reason is Reason.ambiguous_dependency
    assert "w1, w2" in item.issues[0].message
    assert {(w.record, w.reason) for w in report.warnings} == {
        ("w1", Reason.ambiguous_name), ("w2", Reason.ambiguous_name)}


def test_quarantined_target_warns_instead_of_cascading() -> None:
    broken_dns = record("dns", "dns.x", "10.0.0.53")
    broken_dns["hardware"]["cpu_cores"] = 0
    app = record("app", "app.x", "10.0.0.2", [dep("10.0.0.53:53")])
    web = record("web", "web.x", "10.0.0.3", [dep("app:8080")])
    report = validate_records([broken_dns, app, web])
    assert sorted(s.server_id for s in report.valid) == ["app", "web"]
    assert [(w.record, w.reason) for w in report.warnings] == [
        ("app", Reason.quarantined_dependency)]


def test_dependency_on_record_quarantined_for_its_own_dependency() -> None:
    """Quarantining for a bad dependency is re-checked until stable."""
    db = record("db", "db.x", "10.0.0.1", [dep("ghost:1")])
    app = record("app", "app.x", "10.0.0.2", [dep("db:5432")])
    report = validate_records([db, app])
    assert [s.server_id for s in report.valid] == ["app"]
    assert report.warnings[0].reason is Reason.quarantined_dependency


def test_self_dependency_gets_a_field_path() -> None:
    report = validate_records([record("a", "a.x", "10.0.0.1", [dep("b:1"), dep("a.x:80")]),
                               record("b", "b.x", "10.0.0.2")])
    (item,) = report.quarantined
    assert [(i.field, i.reason) for i in item.issues] == [
        ("network_dependencies[1].destination", Reason.self_dependency)]


def test_misspelt_field_gets_a_hint() -> None:
    data = record("a", "a.x", "10.0.0.1")
    data["hardwre"] = data.pop("hardware")
    (item,) = validate_records([data]).quarantined
    assert item.issues[0].field == "hardware"
    assert "'hardwre'" in item.issues[0].message


def test_application_server_reference_that_resolves_nowhere_warns() -> None:
    data = record("a", "a.x", "10.0.0.1")
    data["applications"][0]["dependencies"] = ["openssl", "ghost-db:5432"]
    report = validate_records([data])
    assert report.ok
    assert [(w.field, w.reason) for w in report.warnings] == [
        ("applications[0].dependencies[1]", Reason.unknown_dependency)]


def test_unknown_policy_ignore() -> None:
    report = validate_records([record("a", "a.x", "10.0.0.1", [dep("ghost:1")])],
                              unknown_dependencies="ignore")
    assert report.ok and report.warnings == []


# ----------------------------------------------------------------------- quarantine


def test_write_quarantine_is_idempotent_and_safe(tmp_path: Path) -> None:
    report = validate_inventory(BAD)
    target = tmp_path / "q"
    first = write_quarantine(report, target)
    second = write_quarantine(report, target)
    assert sorted(first) == sorted(second)
    assert sorted(p.name for p in target.iterdir() if not p.name.startswith(".")) == sorted(
        p.name for p in second)
    records = [p for p in second if p.name.endswith(".record.json")]
    assert len(records) == 7  # two malformed inputs are kept as .record.txt
    dup = next(p for p in records if "05_duplicate_a" in p.name)
    assert json.loads(dup.read_text())["hostname"] == "dup-a.bad.example"
    reason = dup.with_name(dup.name.replace(".record.json", ".reason.txt")).read_text()
    assert "server_id: server_id 'bad-dup' is also used by" in reason
    # the quarantine folder is never loaded as part of an estate
    estate = tmp_path / "estate"
    estate.mkdir()
    (estate / "a.json").write_text(json.dumps(record("a", "a.x", "10.0.0.1")))
    write_quarantine(report, estate / "quarantine")
    assert validate_inventory(estate).ok
    # a folder that is not a quarantine is not emptied
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError):
        write_quarantine(report, other)
    assert (other / "keep.txt").read_text() == "mine"


def test_valid_records_are_the_parsed_models() -> None:
    data = record("a", "a.x", "10.0.0.1")
    original = copy.deepcopy(data)
    report = validate_records([data])
    assert isinstance(report.valid[0], ServerRecord)
    assert data == original  # validation does not modify its input


def test_inventory_error_also_takes_a_plain_message() -> None:
    error = InventoryError("no valid server records in x")
    assert str(error) == "no valid server records in x" and error.report is None
