"""The plan spec: one model for the writer (`migrationbox plan`) and the reader (DAG file)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from migrationbox.orchestration.spec import (
    SCHEMA_VERSION,
    PlanSpec,
    SpecError,
    estate_of_dag_id,
    read_spec,
    read_specs,
)
from migrationbox.planning.builder import build_plan
from migrationbox.planning.export import plan_spec, write_wave_spec
from migrationbox.store.testing import tiny_estate

NOW = datetime(2026, 11, 25, tzinfo=UTC)


@pytest.fixture(scope="module")
def plan():
    return build_plan(tiny_estate("shop", ("web-01", "web-02", "db-01", "dns-01")), now=NOW)


def _written(plan, folder: Path) -> tuple[Path, dict]:
    path = write_wave_spec(plan, folder)
    return path, json.loads(path.read_text())


def test_writer_writes_the_readers_model_with_the_current_schema_version(plan, tmp_path):
    path, raw = _written(plan, tmp_path / "plans")
    assert raw["schema_version"] == SCHEMA_VERSION
    assert raw["written_by"]  # the MigrationBox version, for the refusal message
    spec = read_spec(path)
    assert spec == plan_spec(plan)
    assert spec.model_dump(mode="json") == raw
    # every key the writer writes is a field of the reader's model, and nothing more
    assert set(raw) == set(PlanSpec.model_fields)


def test_spec_is_compact_no_per_server_data(plan, tmp_path):
    _, raw = _written(plan, tmp_path / "plans")
    keys = set(raw) | {k for w in raw["waves"] for k in w}
    assert not keys & {"servers", "server_ids", "move_groups", "endpoints"}
    assert [w["server_count"] for w in raw["waves"]] == [len(w.server_ids) for w in plan.waves]


def _with(path: Path, **changes) -> Path:
    raw = json.loads(path.read_text())
    raw.update(changes)
    path.write_text(json.dumps(raw))
    return path


def test_newer_schema_version_is_refused_naming_file_and_writer(plan, tmp_path):
    path, _ = _written(plan, tmp_path / "plans")
    _with(path, schema_version=SCHEMA_VERSION + 1, written_by="9.4.0", new_field={"x": 1})
    with pytest.raises(SpecError) as err:
        read_spec(path)
    message = str(err.value)
    assert str(path) in message
    assert f"schema version {SCHEMA_VERSION + 1}" in message
    assert "MigrationBox 9.4.0" in message and "upgrade" in message
    assert err.value.estate == plan.estate


@pytest.mark.parametrize("value", [None, "1", 0, True])
def test_missing_or_malformed_schema_version_is_refused(plan, tmp_path, value):
    path, _ = _written(plan, tmp_path / "plans")
    raw = json.loads(path.read_text())
    if value is None:
        raw.pop("schema_version")
    else:
        raw["schema_version"] = value
    path.write_text(json.dumps(raw))
    with pytest.raises(SpecError, match=r"schema_version: missing or not a positive integer"):
        read_spec(path)


def test_spec_written_before_schema_version_existed_is_read_as_version_1(plan, tmp_path):
    path, raw = _written(plan, tmp_path / "plans")
    raw.pop("schema_version")
    raw.pop("written_by")
    raw["schema"] = "migrationbox.wave-spec/1"
    path.write_text(json.dumps(raw))
    assert read_spec(path).schema_version == 1


def test_unknown_key_of_the_current_version_is_refused_with_its_path(plan, tmp_path):
    path, raw = _written(plan, tmp_path / "plans")
    raw["waves"][0]["servers"] = ["srv-1"]
    path.write_text(json.dumps(raw))
    with pytest.raises(SpecError, match=r"waves\.0\.servers: Extra inputs are not permitted"):
        read_spec(path)


def test_spec_named_for_another_estate_is_refused(plan, tmp_path):
    path, _ = _written(plan, tmp_path / "plans")
    other = path.with_name("other.json")
    path.rename(other)
    with pytest.raises(SpecError, match=r"other\.json.*estate"):
        read_spec(other)


def test_wave_dependencies_are_checked_by_the_model_on_both_sides(plan, tmp_path):
    path, raw = _written(plan, tmp_path / "plans")
    raw["waves"][0]["depends_on_waves"] = [len(raw["waves"]) + 3]
    path.write_text(json.dumps(raw))
    with pytest.raises(SpecError, match=r"waves\[1\]\.depends_on_waves: .* not earlier waves"):
        read_spec(path)
    with pytest.raises(ValueError, match=r"not earlier waves"):
        PlanSpec.model_validate(raw)  # what the writer builds is validated the same way


def test_reading_a_missing_folder_creates_nothing(tmp_path):
    folder = tmp_path / "no" / "plans"
    assert read_specs(folder) == []
    assert not (tmp_path / "no").exists()


def test_estate_of_dag_id():
    assert estate_of_dag_id("migrate__lab__wave_01") == "lab"
    assert estate_of_dag_id("migrate__my__estate__wave_02") == "my__estate"
    assert estate_of_dag_id("migrate__lab__spec_error") == "lab"
    assert estate_of_dag_id("migrationbox__discover_and_plan") is None
    assert estate_of_dag_id(None) is None
