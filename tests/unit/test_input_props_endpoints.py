"""No endpoints file crashes ``endpoints import``: each record is stored or quarantined.

``migrationbox endpoints import FILE`` reads JSON or CSV a person wrote or exported.
Whatever the file holds, either every record ends valid (stored) or quarantined with
its line/index, server and field, the good records beside the bad still stored; or,
when the records themselves cannot be told apart (not UTF-8/UTF-16 text, not JSON,
JSON nested past the parser, a CSV cell past the CSV field limit), an
``EndpointsFileError`` names the file and line. The CLI prints either and exits 0, 1
or 2, never a traceback. Runs against a real SQLite store.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from migrationbox.cli import main
from migrationbox.endpoints.registry import EndpointsFileError, import_records, read_file
from migrationbox.errors import InputError
from migrationbox.store import repository
from migrationbox.store.db import session_scope
from migrationbox.store.testing import tiny_estate

SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])

GOOD = [
    {"server_id": "web-01", "kind": "disk", "name": "good-root",
     "source_uri": "ssh://deploy@10.0.0.10/srv/www", "details": {"ssh_conn_id": "ssh_dc1"}},
    {"server_id": "web-01", "kind": "http", "name": "good-health",
     "source_uri": "http://10.0.0.10:8080/health"},
    {"server_id": "db-01", "kind": "database", "name": "good-app",
     "details": {"conn_id": "db01_app", "tables": ["public.orders"]}},
]
KEYS = ["server_id", "kind", "name", "source_uri", "target_uri", "details", "port", "\ud800"]
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(),
                    st.sampled_from(["web-01", "db-01", "ghost", "disk", "http", "database",
                                     "file:///srv", "ssh://h/x", "http://h/", "\ud800",
                                     "a\x00b", ""]),
                    st.text(max_size=8))
JSON = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=8)
# record texts json.dumps cannot write: long integers and deep nesting, as raw JSON
RAW_RECORDS = ['{"server_id": "web-01", "kind": "http", "port": ' + "9" * 5000 + "}",
               '{"server_id": "db-01", "kind": "database", "details": {"conn_id": "c", '
               '"x": ' + "[" * 100 + "]" * 100 + "}}",
               '{"server_id": "dns-01", "kind": "http", "source_uri": "http://h/", '
               '"details": {"w": NaN, "v": -Infinity}}',
               '{"server_id": "web-01", "kind": "disk", "name": "\\udfff"}']
PARSER_DEEP = '{"server_id": "x", "details": ' + '{"a":' * 100_000 + "1" + "}" * 100_000 + "}"


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    monkeypatch.setenv("MIGRATIONBOX_STORE_URL", url)
    with session_scope() as s:
        repository.save_estate(s, tiny_estate())  # web-01, db-01, dns-01
    return url


@st.composite
def json_file(draw: st.DrawFn) -> tuple[bytes, list[int], bool]:
    """(file bytes, indexes of the good records, whether the file may be refused whole)."""
    records: list[str] = []
    good: list[int] = []
    whole = False
    for item in draw(st.lists(st.sampled_from(["good", "any", "near", "raw", "deep"]),
                              max_size=6)):
        if item == "good":
            record = GOOD[draw(st.integers(0, len(GOOD) - 1))]
            if any(json.loads(records[i]) == record for i in good):
                continue
            good.append(len(records))
            records.append(json.dumps(record))
        elif item == "any":
            records.append(json.dumps(draw(JSON)))
        elif item == "near":
            records.append(json.dumps({k: draw(JSON) for k in draw(
                st.lists(st.sampled_from(KEYS), min_size=1, max_size=5))}))
        elif item == "raw":
            records.append(draw(st.sampled_from(RAW_RECORDS)))
        else:
            whole = True
            records.append(PARSER_DEEP)
    body = "[" + ", ".join(records) + "]"
    if draw(st.booleans()):
        body = '{"estate": "tiny", "endpoints": ' + body + "}"
    encoding = draw(st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "latin-1", "junk"]))
    if encoding == "junk":
        return draw(st.binary(max_size=60)), [], True
    if encoding == "latin-1":
        whole = True
        body = body.replace("good-app", "g\u00f6od-app")
    return body.encode(encoding, "surrogatepass"), good, whole


CELLS = st.one_of(st.sampled_from(["", "web-01", "disk", "http", "NaN", '{"conn_id": "c"}',
                                   '{"w": Infinity}', "[" * 5000 + "]" * 5000,
                                   '{"n": ' + "9" * 5000 + "}", '["a", 1]', "[broken",
                                   "a\x00b", '"', "x,y", "line\nbreak"]),
                  st.text(max_size=6))
HEADER = ["server_id", "kind", "name", "source_uri", "target_uri", "details",
          "details.ssh_conn_id", "details.tables"]


def _row(record: dict[str, Any]) -> list[str]:
    details = dict(record.get("details", {}))
    tables = details.pop("tables", None)
    ssh = details.pop("ssh_conn_id", "")
    return [record.get("server_id", ""), record.get("kind", ""), record.get("name", ""),
            record.get("source_uri", ""), record.get("target_uri", ""),
            json.dumps(details) if details else "", ssh, json.dumps(tables) if tables else ""]


@st.composite
def csv_file(draw: st.DrawFn) -> tuple[bytes, list[int], bool]:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(HEADER)
    lines: list[str] = []  # one entry per record, written out
    good: list[int] = []
    whole = False
    used: set[int] = set()
    for item in draw(st.lists(st.sampled_from(["good", "cells", "raw", "huge"]), max_size=6)):
        buf = io.StringIO()
        row_writer = csv.writer(buf, lineterminator="\n")
        if item == "good":
            pick = draw(st.integers(0, len(GOOD) - 1))
            if pick in used:
                continue
            used.add(pick)
            good.append(len(lines))
            row_writer.writerow(_row(GOOD[pick]))
        elif item == "cells":
            cells = [draw(CELLS) for _ in range(draw(st.integers(1, 10)))]
            # the writer leaves a bare CR unquoted (it quotes only "\n", its line end);
            # a reader rightly ends the row there, so the record indexes shift
            whole = whole or any("\r" in cell for cell in cells)
            row_writer.writerow(cells)
        elif item == "huge":
            whole = True
            row_writer.writerow(["web-01", "disk", "x" * 200_000])
        else:  # a hand-written line: may break the structure (a stray quote)
            whole = True
            buf.write(",".join(draw(st.lists(CELLS, min_size=1, max_size=4))) + "\n")
        lines.append(buf.getvalue())
    text = out.getvalue() + "".join(lines)
    return text.encode("utf-8"), good, whole


def _check(path: Path, good: list[int], whole: bool) -> None:
    try:
        file_estate, records = read_file(path)
        with session_scope() as s:
            report = import_records(s, "tiny", records, str(path), file_estate)
    except InputError as exc:
        assert isinstance(exc, EndpointsFileError)
        assert str(path) in str(exc)
        str(exc).encode("utf-8")
        assert whole, exc  # only a file whose records cannot be told apart is refused
        return
    assert len(report.valid) + len(report.quarantined) == len(records)
    by_index = {q.index: q for q in report.quarantined}
    for index in good if not whole else []:  # hand-written lines shift the indexes
        if index in by_index:  # the good load beside the bad (unless repeated earlier)
            assert [i.reason for i in by_index[index].issues] == ["duplicate_endpoint"]
    held_back = {q.server_id for q in report.quarantined}
    for line in report.issue_lines():
        line.encode("utf-8")
    stored = {(e.server_id, e.kind, e.name) for e in _stored()}
    for ep in report.valid:
        if ep.server_id not in held_back:
            assert (ep.server_id, ep.kind, ep.name) in stored


def _stored() -> list[Any]:
    with session_scope(read_only=True) as s:
        return list(repository.endpoints(s, "tiny", None))


@SETTINGS
@given(case=json_file())
def test_any_json_endpoints_file_imports_per_record(store: str, tmp_path: Path,
                                                    case: tuple[bytes, list[int], bool]) -> None:
    raw, good, whole = case
    path = tmp_path / "endpoints.json"
    path.write_bytes(raw)
    _check(path, good, whole)


@SETTINGS
@given(case=csv_file())
def test_any_csv_endpoints_file_imports_per_record(store: str, tmp_path: Path,
                                                   case: tuple[bytes, list[int], bool]) -> None:
    raw, good, whole = case
    path = tmp_path / "endpoints.csv"
    path.write_bytes(raw)
    _check(path, good, whole)


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(case=st.one_of(json_file(), csv_file()), suffix=st.sampled_from([".json", ".csv"]))
def test_the_cli_prints_a_report_or_a_message_never_a_traceback(
        store: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        case: tuple[bytes, list[int], bool], suffix: str) -> None:
    path = tmp_path / f"endpoints{suffix}"
    path.write_bytes(case[0])
    code = main(["endpoints", "import", str(path), "--estate", "tiny"])
    out, err = capsys.readouterr()
    assert code in (0, 1, 2)
    if code == 2:
        assert err.startswith("migrationbox endpoints import: ") and str(path) in err
    else:
        assert "endpoint(s) valid" in out


def test_per_record_problems_name_line_and_field(store: str, tmp_path: Path) -> None:
    path = tmp_path / "e.json"
    path.write_text("[" + ", ".join([json.dumps(GOOD[0]), *RAW_RECORDS]) + "]")
    _, records = read_file(path)
    with session_scope() as s:
        report = import_records(s, "tiny", records, str(path))
    # valid, but web-01 keeps what it had: two of its records were quarantined
    assert len(report.valid) == 1 and report.stored_servers == []
    fields = {q.index: [(i.field, i.message) for i in q.issues] for q in report.quarantined}
    assert fields[1] == [("port", "an integer of 5000 digits (at most 4300)")]
    assert fields[2] == [("details.x", "nested more than 64 levels deep")]
    assert sorted(f for f, _ in fields[3]) == ["details.v", "details.w"]
    assert fields[4][0][0] == "name" and "surrogate" in fields[4][0][1]

    csv_path = tmp_path / "e.csv"
    csv_path.write_text("server_id,kind,name,details\n"
                        'web-01,http,h,"{""x"": ' + "[" * 5000 + "]" * 5000 + '}"\n'
                        'db-01,database,app,"{""conn_id"": ""c"", ""n"": ' + "9" * 5000 + '}"\n'
                        'dns-01,database,app,"{""conn_id"": ""c""}"\n')
    _, records = read_file(csv_path)
    with session_scope() as s:
        report = import_records(s, "tiny", records, str(csv_path))
    assert [(q.line, q.issues[0].field) for q in report.quarantined] == [
        (2, "details"), (3, "details.n")]
    assert len(report.valid) == 1


def test_whole_file_problems_name_file_and_line(tmp_path: Path) -> None:
    latin = tmp_path / "latin.json"
    latin.write_bytes('[\n{"server_id": "caf\u00e9"}]'.encode("latin-1"))
    with pytest.raises(EndpointsFileError, match=r"latin\.json: line 2: not UTF-8 text"):
        read_file(latin)
    deep = tmp_path / "deep.json"
    deep.write_text("[" + PARSER_DEEP + "]")
    with pytest.raises(EndpointsFileError, match=r"deep\.json: JSON nested too deeply"):
        read_file(deep)
    huge = tmp_path / "huge.csv"
    huge.write_text("server_id,kind,name\nweb-01,http,ok\nweb-01,disk," + "x" * 200_000
                    + "\n")
    with pytest.raises(EndpointsFileError, match=r"huge\.csv: line 3, column name: "):
        read_file(huge)
    other = tmp_path / "estate.json"
    other.write_text('{"estate": ' + "9" * 5000 + ', "endpoints": []}')
    with pytest.raises(EndpointsFileError, match=r"estate\.json: 'estate' must be"):
        read_file(other)
    utf16 = tmp_path / "u16.json"
    utf16.write_bytes(json.dumps(GOOD).encode("utf-16"))
    assert len(read_file(utf16)[1]) == 3
