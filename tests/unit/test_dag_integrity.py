"""DAG integrity: every file in dags/ imports cleanly, creates nothing, and one broken plan
spec fails its own estate only; the wave DAGs' trigger form is the run-conf model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from migrationbox.orchestration.spec import SCHEMA_VERSION, SpecError
from migrationbox.orchestration.wave_dag import build_all, spec_error_dag_id

REPO = Path(__file__).resolve().parents[2]
DAGS = REPO / "dags"


def _spec(estate: str, waves: int = 2) -> dict:
    return {
        "schema_version": SCHEMA_VERSION,
        "estate": estate,
        "version": 1,
        "created_at": "2026-11-25T00:00:00+00:00",
        "waves": [
            {
                "number": n, "name": f"Wave {n}", "server_count": 2,
                "environment": "non-production", "needs_approval": False,
                "approval_reasons": [], "predicted_monthly_usd": 100.0,
                "depends_on_waves": list(range(1, n)), "estimated_hours": 1.0,
            }
            for n in range(1, waves + 1)
        ],
    }


BREAKAGES = {
    "bad_json": lambda: "{\"estate\": \"broken\",",
    "newer_schema": lambda: json.dumps(
        {**_spec("broken"), "schema_version": SCHEMA_VERSION + 1, "written_by": "7.0.0"}),
    "bad_field": lambda: json.dumps(
        {**_spec("broken"), "waves": [{**_spec("broken")["waves"][0], "server_count": 0}]}),
}
EXPECTED = {
    "bad_json": "not valid JSON",
    "newer_schema": "MigrationBox 7.0.0",
    "bad_field": "waves.0.server_count",
}


@pytest.fixture()
def plans(tmp_path, monkeypatch):
    folder = tmp_path / "plans"
    folder.mkdir()
    monkeypatch.setenv("MIGRATIONBOX_PLANS_DIR", str(folder))
    monkeypatch.delenv("MIGRATIONBOX_STRICT_SPECS", raising=False)
    return folder


def _dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS), safe_mode=False)


@pytest.mark.parametrize("breakage", sorted(BREAKAGES))
def test_one_broken_spec_fails_its_estate_only_in_a_real_dagbag(plans, breakage):
    (plans / "good.json").write_text(json.dumps(_spec("good")))
    (plans / "broken.json").write_text(BREAKAGES[breakage]())
    bag = _dagbag()
    assert bag.import_errors == {}, bag.import_errors
    waves = sorted(d for d in bag.dag_ids if d.startswith("migrate__"))
    assert waves == ["migrate__broken__spec_error", "migrate__good__wave_01",
                     "migrate__good__wave_02"]
    broken = bag.dags[spec_error_dag_id("broken")]
    assert EXPECTED[breakage] in broken.doc_md and "broken.json" in broken.doc_md
    assert "broken-plan-spec" in broken.tags and "estate:broken" in broken.tags
    # its only task fails, without retries, with the spec's error
    from airflow.sdk.exceptions import AirflowFailException

    task = broken.get_task("report_spec_error")
    assert task.retries == 0
    with pytest.raises(AirflowFailException, match=r"broken\.json"):
        task.python_callable(**task.op_kwargs)


def test_a_worker_running_a_task_of_the_broken_estate_gets_the_spec_error(plans):
    (plans / "good.json").write_text(json.dumps(_spec("good")))
    (plans / "broken.json").write_text(BREAKAGES["bad_field"]())
    with pytest.raises(SpecError, match=r"broken\.json: invalid plan spec: waves\.0\.server_count"):
        build_all(plans, only_dag_id="migrate__broken__wave_01")
    # the other estate's worker parses its own spec only, and never sees the broken one
    assert list(build_all(plans, only_dag_id="migrate__good__wave_02")) == [
        "migrate__good__wave_02"]
    # the spec-error DAG's own task can still be loaded to report the error
    assert list(build_all(plans, only_dag_id=spec_error_dag_id("broken"))) == [
        spec_error_dag_id("broken")]


def test_strict_mode_turns_a_broken_spec_into_an_import_error_of_the_file(plans, monkeypatch):
    (plans / "good.json").write_text(json.dumps(_spec("good")))
    (plans / "broken.json").write_text(BREAKAGES["newer_schema"]())
    monkeypatch.setenv("MIGRATIONBOX_STRICT_SPECS", "1")
    bag = _dagbag()
    errors = {Path(k).name: v for k, v in bag.import_errors.items()}
    assert list(errors) == ["migration_waves.py"]
    assert "schema version" in errors["migration_waves.py"]


def test_every_dag_file_imports_with_tags_owner_and_retries(plans):
    (plans / "good.json").write_text(json.dumps(_spec("good")))
    bag = _dagbag()
    assert bag.import_errors == {}
    files = {Path(d.fileloc).name for d in bag.dags.values()}
    assert files == {p.name for p in DAGS.glob("*.py")}
    for dag in bag.dags.values():
        assert dag.tags and "migrationbox" in dag.tags, dag.dag_id
        assert dag.description or dag.doc_md, dag.dag_id
        assert all(t.owner and t.owner != "airflow" for t in dag.tasks), dag.dag_id


_PARSE_ALL = """
import json, sys
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder=sys.argv[1], safe_mode=False)
print(json.dumps({"errors": {k: v[-500:] for k, v in bag.import_errors.items()},
                  "dags": sorted(bag.dag_ids)}))
"""


@pytest.mark.parametrize("with_spec", [False, True], ids=["no-plans", "one-spec"])
def test_parsing_every_dag_file_creates_nothing(tmp_path, with_spec):
    """MIGRATIONBOX_HOME (and the plans folder) absent: parsing leaves them absent."""
    home = tmp_path / "absent-home"
    plans = tmp_path / "absent-plans"
    if with_spec:
        plans = tmp_path / "plans"
        plans.mkdir()
        (plans / "good.json").write_text(json.dumps(_spec("good")))
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "MIGRATIONBOX_HOME": str(home),
        "MIGRATIONBOX_PLANS_DIR": str(plans),
        "MIGRATIONBOX_ARTIFACTS_DIR": str(tmp_path / "absent-artifacts"),
        "MIGRATIONBOX_STORE_URL": f"sqlite:///{tmp_path / 'absent-store' / 'store.db'}",
    }
    env.pop("MIGRATIONBOX_STRICT_SPECS", None)
    before = set(tmp_path.iterdir())
    out = subprocess.run([sys.executable, "-c", _PARSE_ALL, str(DAGS)], env=env,
                         capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["errors"] == {}
    assert ("migrate__good__wave_01" in result["dags"]) is with_spec
    created = {p.name for p in set(tmp_path.iterdir()) - before} - {"airflow"}
    assert created == set(), f"parsing created {sorted(created)}"
    for absent in (home, tmp_path / "absent-artifacts", tmp_path / "absent-store"):
        assert not absent.exists(), absent
    assert not plans.exists() or [p.name for p in plans.iterdir()] == ["good.json"]


# -- the trigger form -----------------------------------------------------------------


def _serialized_params(dag):
    """The params as the API server holds them when a run is triggered."""
    from airflow.serialization.serialized_objects import DagSerialization

    return DagSerialization.from_dict(DagSerialization.to_dict(dag)).params


@pytest.fixture(scope="module")
def wave_dag():
    from migrationbox.orchestration.spec import PlanSpec
    from migrationbox.orchestration.wave_dag import build_wave_dag

    spec = PlanSpec.model_validate(_spec("form", waves=1))
    return build_wave_dag(spec, spec.waves[0])


def test_every_run_conf_field_is_a_typed_param(wave_dag):
    from migrationbox.orchestration.runconf import WaveRunConf

    keys = {info.alias or name for name, info in WaveRunConf.model_fields.items()}
    assert set(wave_dag.params) == keys
    schema = WaveRunConf.model_json_schema(by_alias=True)
    for key in keys:
        param = wave_dag.params.get_param(key)
        assert param.schema, key  # typed, not a raw JSON box
        prop = schema["properties"][key]
        declared = prop.get("type") or (
            "object" if "$ref" in prop else None)
        if declared:
            assert param.schema.get("type") == declared, key
        assert param.description, key


def test_tasks_carry_no_copy_of_the_form(wave_dag):
    """The params live on the DAG once; copied into every task they made each wave DAG
    several times slower to parse and larger to store."""
    assert all(not task.params for task in wave_dag.tasks)
    assert _serialized_params(wave_dag).keys() == wave_dag.params.keys()


def test_a_conf_from_the_models_defaults_passes_the_trigger_validation(wave_dag):
    from migrationbox.orchestration.runconf import WaveRunConf, parse_run_conf

    params = _serialized_params(wave_dag)
    # what the form sends when left alone: every param's default
    form_conf = params.deep_merge(None).validate()
    assert set(form_conf) == set(wave_dag.params)
    parse_run_conf(form_conf)  # ... and the model (the authority) takes it
    # the model's own defaults, dumped, pass Airflow's validation too
    defaults = WaveRunConf().model_dump(mode="json", by_alias=True)
    params.deep_merge(defaults).validate()


CONFS_THE_MODEL_ACCEPTS = [
    {},
    {"dry_run": True, "approvals": "auto_non_production", "ignore_previous_wave": True},
    {"cutover": {"steps": [10, 50, 100], "dwell_seconds": 0}},
    {"replicate": {"block_mib": 8, "bandwidth_mib_s": None}},
    {"validate": {"gx": False}},
]


@pytest.mark.parametrize("conf", CONFS_THE_MODEL_ACCEPTS, ids=lambda c: ",".join(c) or "empty")
def test_params_never_reject_a_conf_the_model_accepts(wave_dag, conf):
    from migrationbox.orchestration.runconf import WaveRunConf

    WaveRunConf.model_validate_json(json.dumps(conf))  # the model accepts it ...
    _serialized_params(wave_dag).deep_merge(conf).validate()  # ... so Airflow must


def test_params_take_every_field_of_every_section_at_its_default(wave_dag):
    """Field by field, so that one over-strict nested schema cannot hide behind another."""
    from migrationbox.orchestration.runconf import WaveRunConf

    params = _serialized_params(wave_dag)
    checked = 0
    for key, value in WaveRunConf().model_dump(mode="json", by_alias=True).items():
        confs = ([{key: {f: v}} for f, v in value.items()] if isinstance(value, dict)
                 else [{key: value}])
        for conf in confs:
            WaveRunConf.model_validate_json(json.dumps(conf))
            params.deep_merge(conf).validate()
            checked += 1
    assert checked > len(WaveRunConf.model_fields)


def test_params_refuse_what_the_model_refuses_before_the_run_exists(wave_dag):
    from airflow.exceptions import ParamValidationError

    params = _serialized_params(wave_dag)
    with pytest.raises(ParamValidationError, match="approvals"):
        params.deep_merge({"approvals": "sometimes"}).validate()
