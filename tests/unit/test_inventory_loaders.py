"""Loaders: folders, JSON files, JSON Lines, and parse errors that name file and line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from migrationbox.inventory.loaders import (
    QUARANTINE_MARKER,
    ParseError,
    RawRecord,
    UnreadablePath,
    load_records,
)


def _write(path: Path, data: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def test_folder_of_single_records_lists_and_jsonl(tmp_path: Path) -> None:
    _write(tmp_path / "a.json", {"server_id": "a"})
    _write(tmp_path / "sub" / "b.json", [{"server_id": "b1"}, {"server_id": "b2"}])
    (tmp_path / "c.jsonl").write_text('{"server_id": "c1"}\n\n{"server_id": "c2"}\n')
    (tmp_path / "notes.md").write_text("not a record")
    result = load_records(tmp_path)
    assert result.errors == []
    ids = [r.data["server_id"] for r in result.records]
    assert ids == ["a", "c1", "c2", "b1", "b2"]  # sorted paths: a.json, c.jsonl, sub/b.json
    by_id = {r.data["server_id"]: r.origin for r in result.records}
    assert by_id["b2"].index == 1 and by_id["b2"].line is None
    assert by_id["c2"].line == 3 and by_id["c2"].index == 1  # blank line skipped
    assert str(by_id["c2"]).endswith("c.jsonl:3")


def test_exported_estate_object_is_unwrapped(tmp_path: Path) -> None:
    path = _write(tmp_path / "estate.json", {"name": "x", "servers": [{"server_id": "s1"}]})
    result = load_records(path)
    assert [r.data for r in result.records] == [{"server_id": "s1"}]


def test_malformed_json_names_file_line_and_column(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{\n  "server_id": "x",\n  "hostname" "y"\n}\n')
    _write(tmp_path / "good.json", {"server_id": "ok"})
    result = load_records(tmp_path)
    assert [r.data["server_id"] for r in result.records] == ["ok"]
    (error,) = result.errors
    assert error.file == str(bad)
    assert (error.line, error.column) == (3, 14)
    assert "malformed JSON" in error.message and "':' delimiter" in error.message


def test_malformed_jsonl_line_keeps_the_other_lines(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_text('{"server_id": "a"}\n{"server_id": \n{"server_id": "c"}\n')
    items = load_records(path)
    assert [r.data["server_id"] for r in items.records] == ["a", "c"]
    (error,) = items.errors
    assert error.line == 2 and error.text == '{"server_id": '
    assert items.records[1].origin.line == 3


def test_not_utf8_and_empty_files_are_parse_errors(tmp_path: Path) -> None:
    (tmp_path / "latin1.json").write_bytes(b'{"server_id": "caf\xe9"}')
    (tmp_path / "empty.json").write_text("  \n")
    errors = {Path(e.file).name: e for e in load_records(tmp_path).errors}
    assert "not UTF-8" in errors["latin1.json"].message
    assert "empty file" in errors["empty.json"].message


def test_hidden_files_and_quarantine_folders_are_skipped(tmp_path: Path) -> None:
    _write(tmp_path / "a.json", {"server_id": "a"})
    _write(tmp_path / ".hidden.json", {"server_id": "hidden"})
    _write(tmp_path / "quarantine" / "x.record.json", {"server_id": "quarantined"})
    (tmp_path / "quarantine" / QUARANTINE_MARKER).write_text("")
    result = load_records(tmp_path)
    assert [r.data["server_id"] for r in result.records] == ["a"]


@pytest.mark.parametrize("make", ["missing", "empty_dir"])
def test_unreadable_paths_raise(tmp_path: Path, make: str) -> None:
    target = tmp_path / "nothing-here" if make == "missing" else tmp_path
    with pytest.raises(UnreadablePath):
        load_records(target)


def test_items_are_typed(tmp_path: Path) -> None:
    (tmp_path / "x.jsonl").write_text('{"a": 1}\nnot json\n')
    result = load_records(tmp_path / "x.jsonl")
    assert all(isinstance(r, RawRecord) for r in result.records)
    assert all(isinstance(e, ParseError) for e in result.errors)


def test_unreadable_file_in_a_folder_is_reported_not_fatal(tmp_path: Path) -> None:
    _write(tmp_path / "a.json", {"server_id": "a"})
    (tmp_path / "gone.json").symlink_to(tmp_path / "missing-target.json")
    result = load_records(tmp_path)
    assert [r.data["server_id"] for r in result.records] == ["a"]
    (error,) = result.errors
    assert error.kind == "unreadable_file" and error.file.endswith("gone.json")
    with pytest.raises(UnreadablePath):  # given directly, the path itself is unreadable
        load_records(tmp_path / "gone.json")
