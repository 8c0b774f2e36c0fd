"""No discovery input crashes ``migrationbox validate``: properties over hostile files.

Every hostile file (deep nesting, huge numbers, NaN/Infinity, duplicate keys, wrong
encodings, truncation, non-object top levels) lands in one folder beside valid records.
Whatever it holds, loading ends in a report (never an exception), every valid file
still loads, and each quarantined record names its file, record and field.

Duplicate keys are refused (the record is quarantined naming the key's path, reason
``duplicate_key``), not "last one wins": which value the agent meant cannot be known.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from migrationbox.cli import validate as validate_cli
from migrationbox.inventory.loaders import MAX_DEPTH, load_records
from migrationbox.inventory.validation import Reason, validate_inventory, write_quarantine

SETTINGS = settings(max_examples=40, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])


def record(server_id: str, **changes: Any) -> dict[str, Any]:
    """A valid discovery record with no dependencies (so it validates on its own)."""
    data: dict[str, Any] = {
        "server_id": server_id,
        "hostname": f"{server_id}.corp.example.com",
        "ip_addresses": ["10.1.0.5"],
        "os": {"type": "Linux", "distribution": "Debian", "version": "12"},
        "hardware": {"cpu_cores": 2, "ram_gb": 4, "disk_total_gb": 40},
        "applications": [{"name": "nginx", "ports": [443]}],
        "network_dependencies": [],
        "performance_baseline": {"cpu_avg_utilization_pct": 20,
                                 "memory_avg_utilization_pct": 40},
    }
    data.update(changes)
    return data


def _nested(depth: int, leaf: Any, as_list: bool) -> Any:
    value = leaf
    for _ in range(depth):
        value = [value] if as_list else {"x": value}
    return value


def _dumps(value: Any) -> bytes:
    return json.dumps(value, indent=1).encode()


# ------------------------------------------------------------------ hostile documents

@st.composite
def deep_document(draw: st.DrawFn) -> bytes:
    depth = draw(st.sampled_from([MAX_DEPTH + 1, 200, 900, 3000, 100_000]))
    as_list = draw(st.booleans())
    where = draw(st.sampled_from(["top", "field", "list"]))
    if where == "top":  # the whole file is one deep value
        opening, closing = ("[", "]") if as_list else ('{"x":', "}")
        return (opening * depth + "1" + closing * depth).encode()
    inner = _nested(min(depth, 900), 1, as_list)
    if where == "field":
        return _dumps(record("deep-1", extra=inner))
    return _dumps([record("deep-ok"), record("deep-1", extra=inner)])


@st.composite
def number_document(draw: st.DrawFn) -> bytes:
    literal = draw(st.sampled_from(
        ["NaN", "Infinity", "-Infinity", "1e400", "-1e999", "9" * 5000, "1" + "0" * 30,
         "1e-400", "123456789012345678901234567890.5"]))
    field = draw(st.sampled_from(["hardware.cpu_cores", "hardware.ram_gb",
                                  "hardware.cpu_mhz", "performance_baseline."
                                  "cpu_avg_utilization_pct", "tags.weight", "extra"]))
    data = record("num-1")
    data.setdefault("tags", {})
    section, _, key = field.partition(".")
    if key:
        data[section][key] = "__HOLE__"
    else:
        data[section] = "__HOLE__"
    return _dumps(data).replace(b'"__HOLE__"', literal.encode())


@st.composite
def duplicate_key_document(draw: st.DrawFn) -> bytes:
    key = draw(st.sampled_from(["server_id", "hardware.cpu_cores", "os.type", "tags.team"]))
    spacing = draw(st.sampled_from([": ", ":", " : ", "\t:\n "]))
    data = record("dup-1", tags={"team": "a"})
    text = json.dumps(data, separators=(",", spacing))
    section, _, name = key.partition(".")
    if not name:  # a second server_id at the top
        text = text[:-1] + f',"server_id"{spacing}"dup-2"}}'
    else:
        opening = f'"{section}"{spacing}{{'
        text = text.replace(opening, opening + f'"{name}"{spacing}"first",', 1)
    return text.encode()


@st.composite
def encoded_document(draw: st.DrawFn) -> bytes:
    data = record("enc-1", hostname="caf\u00e9-01.corp.example.com", owner="Jos\u00e9 M\u00fcller")
    text = json.dumps(data, ensure_ascii=False)
    encoding = draw(st.sampled_from(["utf-16", "utf-8-sig", "latin-1", "cp1252", "utf-16-le",
                                     "utf-8"]))
    raw = text.encode(encoding)
    if draw(st.booleans()) and encoding == "utf-8":
        at = draw(st.integers(1, len(raw) - 1))
        raw = raw[:at] + draw(st.sampled_from([b"\xff", b"\xc3", b"\x80\x80", b"\xed\xa0\x80"]))\
            + raw[at:]
    return raw


@st.composite
def truncated_document(draw: st.DrawFn) -> bytes:
    raw = _dumps([record("cut-1"), record("cut-2")])
    return raw[:draw(st.integers(0, len(raw) - 2))]


@st.composite
def surrogate_document(draw: st.DrawFn) -> bytes:
    escape = draw(st.sampled_from(["\\ud800", "\\uDFFF", "\\ud83d\\ude00", "x\\udc00y"]))
    where = draw(st.sampled_from(["server_id", "hostname", "key"]))
    text = json.dumps(record("sur-1", tags={"k": "v"}))
    if where == "key":
        return text.replace('"k"', f'"{escape}"').encode()
    return text.replace(f'"{where}": "', f'"{where}": "{escape}', 1).encode()


NON_OBJECTS = st.sampled_from([b"42", b'"srv"', b"null", b"true", b"[1, 2, 3]",
                               b'[null, {"server_id": "x"}]', b"[]", b'{"servers": []}',
                               b'{"servers": [], "servers": [{"server_id": "a"}]}',
                               b"\xef\xbb\xbf", b"   \n  "])

ANY_BYTES = st.binary(max_size=300)

HOSTILE = st.one_of(deep_document(), number_document(), duplicate_key_document(),
                    encoded_document(), truncated_document(), surrogate_document(),
                    NON_OBJECTS, ANY_BYTES)


def _jsonl(lines: list[bytes]) -> bytes:
    return b"\n".join(line.replace(b"\n", b" ") for line in lines) + b"\n"


def _assert_report_names_everything(report: Any) -> None:
    for item in report.quarantined:
        assert item.file and item.record and item.issues, item
        for issue in item.issues:
            assert issue.field and issue.message, item
        assert item.reasons <= set(Reason)
    assert len(report.issue_lines()) == sum(len(q.issues) for q in report.quarantined)
    json.dumps(report.to_dict())  # the --format json output can always be written


@SETTINGS
@given(hostile=HOSTILE, suffix=st.sampled_from([".json", ".jsonl"]))
def test_hostile_file_is_quarantined_and_valid_files_beside_it_still_load(
        tmp_path_factory: Any, hostile: bytes, suffix: str) -> None:
    folder = tmp_path_factory.mktemp("estate")
    (folder / "a-good.json").write_text(json.dumps(record("good-1")))
    (folder / "b-good.jsonl").write_text(json.dumps(record("good-2")) + "\n"
                                         + json.dumps(record("good-3")) + "\n")
    if suffix == ".jsonl":
        (folder / f"hostile{suffix}").write_bytes(
            _jsonl([json.dumps(record("good-4")).encode(), hostile]))
    else:
        (folder / f"hostile{suffix}").write_bytes(hostile)

    report = validate_inventory(folder, unknown_dependencies="ignore")

    ids = {s.server_id for s in report.valid}
    assert {"good-1", "good-2", "good-3"} <= ids
    if suffix == ".jsonl":
        assert "good-4" in ids  # the valid line beside the hostile one
    _assert_report_names_everything(report)
    write_quarantine(report, tmp_path_factory.mktemp("quarantine") / "q")


@SETTINGS
@given(hostile=HOSTILE)
def test_validate_command_exits_0_or_1_and_writes_the_quarantine(
        tmp_path_factory: Any, capsys: Any, hostile: bytes) -> None:
    folder = tmp_path_factory.mktemp("estate")
    (folder / "good.json").write_text(json.dumps(record("good-1")))
    (folder / "z.json").write_bytes(hostile)
    quarantine = tmp_path_factory.mktemp("out") / "q"
    for fmt in ("json", "text"):
        args = argparse.Namespace(path=str(folder), format=fmt,
                                  quarantine_dir=str(quarantine),
                                  unknown_dependencies="ignore")
        code = validate_cli.run(args)
        out = capsys.readouterr().out
        assert code in (0, 1)
        if fmt == "json":
            payload = json.loads(out)
            assert "good-1" in payload["valid_server_ids"]
            if code == 1:
                assert any(q["file"].endswith("z.json") for q in payload["quarantined"])
        else:
            assert "valid" in out.splitlines()[-1]


# ------------------------------------------------------------------ decided behaviour

def test_duplicate_key_quarantines_the_record_naming_the_key(tmp_path: Path) -> None:
    dup = json.dumps(record("dup-1", ip_addresses=["10.1.0.6"]))
    (tmp_path / "a.json").write_text(
        "[" + json.dumps(record("ok-1")) + ", "
        + dup.replace('"cpu_cores": 2', '"cpu_cores": 2, "cpu_cores": 64') + "]")
    report = validate_inventory(tmp_path, unknown_dependencies="ignore")
    assert [s.server_id for s in report.valid] == ["ok-1"]
    (item,) = report.quarantined
    assert item.record == "dup-1" and item.file.endswith("a.json") and item.index == 1
    (issue,) = item.issues
    assert issue.field == "hardware.cpu_cores" and issue.reason is Reason.duplicate_key
    assert "more than once" in issue.message


def test_duplicate_servers_key_of_an_estate_file_refuses_that_file_only(tmp_path: Path) -> None:
    (tmp_path / "estate.json").write_text(
        '{"name": "x", "servers": [], "servers": [' + json.dumps(record("s-1")) + "]}")
    (tmp_path / "other.json").write_text(json.dumps(record("s-2")))
    report = validate_inventory(tmp_path, unknown_dependencies="ignore")
    assert [s.server_id for s in report.valid] == ["s-2"]
    (item,) = report.quarantined
    assert "'servers'" in item.issues[0].message and item.file.endswith("estate.json")


def test_deeply_nested_field_is_quarantined_with_its_path_and_cut_for_quarantine(
        tmp_path: Path) -> None:
    (tmp_path / "list.json").write_text(json.dumps(
        [record("ok-1"), record("deep-1", extra={"a": _nested(MAX_DEPTH + 5, 1, True)})]))
    report = validate_inventory(tmp_path, unknown_dependencies="ignore")
    assert [s.server_id for s in report.valid] == ["ok-1"]
    (item,) = report.quarantined
    assert item.record == "deep-1"
    (issue,) = item.issues
    assert issue.field.startswith("extra.a[0][0]") and f"{MAX_DEPTH} levels" in issue.message
    written = write_quarantine(report, tmp_path / "q")
    assert any(p.name.endswith(".record.json") for p in written)


def test_the_reported_bug_one_deep_file_no_longer_hides_the_folder(tmp_path: Path) -> None:
    (tmp_path / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    (tmp_path / "good.json").write_text(json.dumps(record("good-1")))
    report = validate_inventory(tmp_path)
    assert [s.server_id for s in report.valid] == ["good-1"]
    (item,) = report.quarantined
    assert item.file.endswith("deep.json") and "nested too deeply" in item.issues[0].message


def test_nan_and_out_of_range_numbers_are_named_by_field(tmp_path: Path) -> None:
    text = json.dumps(record("n-1", tags={"w": 0})).replace('"cpu_mhz"', '"x"')
    text = text.replace('"ram_gb": 4', '"ram_gb": NaN').replace('"w": 0', '"w": 1e999')
    (tmp_path / "n.jsonl").write_text(text + "\n" + json.dumps(record("n-2")) + "\n")
    report = validate_inventory(tmp_path, unknown_dependencies="ignore")
    assert [s.server_id for s in report.valid] == ["n-2"]
    fields = {i.field: i.message for i in report.quarantined[0].issues}
    assert "NaN" in fields["hardware.ram_gb"] and "out of range" in fields["tags.w"]


def test_utf16_and_utf8_bom_files_load_latin1_is_refused_naming_the_byte(
        tmp_path: Path) -> None:
    text = json.dumps(record("u-1", hostname="caf\u00e9"), ensure_ascii=False)
    (tmp_path / "a.json").write_bytes(text.encode("utf-16"))  # PowerShell 5.1 Out-File
    (tmp_path / "b.json").write_bytes(text.replace("u-1", "u-2").encode("utf-8-sig"))
    (tmp_path / "c.json").write_bytes(text.replace("u-1", "u-3").encode("latin-1"))
    loaded = load_records(tmp_path)
    assert sorted(r.data["server_id"] for r in loaded.records) == ["u-1", "u-2"]
    (error,) = loaded.errors
    assert error.file.endswith("c.json") and "not UTF-8" in error.message
    assert "byte" in error.message


def test_empty_list_file_is_a_notice_not_silence(tmp_path: Path) -> None:
    (tmp_path / "empty.json").write_text("[]")
    (tmp_path / "good.json").write_text(json.dumps(record("g-1")))
    report = validate_inventory(tmp_path)
    assert [s.server_id for s in report.valid] == ["g-1"]
    assert any("no records" in w.message and w.file.endswith("empty.json")
               for w in report.warnings)


def test_unpaired_surrogate_escape_is_quarantined_and_can_be_written_and_printed(
        tmp_path: Path, capsys: Any) -> None:
    folder = tmp_path / "estate"
    folder.mkdir()
    (folder / "a.json").write_text(json.dumps(record("ok-1")))
    (folder / "b.jsonl").write_text('{"server_id": "b\\ud800", "hostname": "x"}\n'
                                    + json.dumps(record("ok-2", ip_addresses=["10.1.0.9"],
                                                        owner="\U0001f600")) + "\n")
    args = argparse.Namespace(path=str(folder), format="text",
                              quarantine_dir=str(tmp_path / "q"), unknown_dependencies="error")
    assert validate_cli.run(args) == 1
    out = capsys.readouterr().out
    out.encode("utf-8")  # printable
    assert "unpaired surrogate" in out and "2 valid" in out  # a real emoji pair is fine


@settings(max_examples=40, deadline=None)
@given(field=st.sampled_from(["hardware.disk_total_gb", "hardware.cpu_mhz",
                              "hardware.disk_iops_max", "performance_baseline.disk_iops_avg",
                              "performance_baseline.network_throughput_mbps"]),
       value=st.one_of(st.floats(min_value=1.0000001e9, allow_infinity=False),
                       st.floats(min_value=0, max_value=1e9),
                       st.sampled_from([float("inf"), float("nan"), 10**30])))
def test_absurd_measurements_are_refused_by_field_plausible_ones_load(
        field: str, value: float) -> None:
    from migrationbox.inventory.validation import validate_records

    data = record("m-1")
    section, _, key = field.partition(".")
    data[section][key] = value
    report = validate_records([data])
    if isinstance(value, float) and 0 <= value <= 1e9:
        assert [s.server_id for s in report.valid] == ["m-1"]
    else:
        (item,) = report.quarantined
        assert [i.field for i in item.issues] == [field]


def test_duplicate_key_on_one_line_of_a_large_json_lines_file_is_found(tmp_path: Path) -> None:
    lines = [json.dumps(record(f"l-{i}", ip_addresses=[f"10.2.{i // 200}.{i % 200 + 1}"]))
             for i in range(500)]
    lines[321] = lines[321].replace('"ram_gb": 4', '"ram_gb": 4, "ram_gb": 8')
    (tmp_path / "big.jsonl").write_text("\n".join(lines) + "\n")
    report = validate_inventory(tmp_path)
    assert len(report.valid) == 499
    (item,) = report.quarantined
    assert item.line == 322 and item.issues[0].field == "hardware.ram_gb"
