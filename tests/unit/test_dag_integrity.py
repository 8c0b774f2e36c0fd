"""DAG integrity: every file in dags/ imports cleanly, creates nothing, and one broken plan
spec fails its own estate only; the wave DAGs' trigger form is the run-conf model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from migrationbox.orchestration.spec import (
    SCHEMA_VERSION,
    SpecError,
    loader_path,
    loader_source,
    loaders_dir,
)
from migrationbox.orchestration.wave_dag import (
    build_all,
    load_estate,
    plans_bundle_configured,
    spec_error_dag_id,
)
from migrationbox.planning.export import ensure_loaders, write_estate_loader, write_wave_spec

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
    """A plans folder, and Airflow configured with the ``dags/`` bundle only (the
    single-file fallback); ``bundles`` adds the plans bundle."""
    folder = tmp_path / "plans"
    folder.mkdir()
    monkeypatch.setenv("MIGRATIONBOX_PLANS_DIR", str(folder))
    monkeypatch.delenv("MIGRATIONBOX_STRICT_SPECS", raising=False)
    monkeypatch.delenv("AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST", raising=False)
    monkeypatch.delenv("_AIRFLOW_PARSING_CONTEXT_DAG_ID", raising=False)
    return folder


@pytest.fixture()
def bundles(plans, monkeypatch):
    """Airflow configured as the platform configures it: ``dags/`` and ``<plans>/dags``."""
    from migrationbox.platform.airflow_runtime import dag_bundles

    monkeypatch.setenv("AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST",
                       json.dumps(dag_bundles(DAGS, loaders_dir(plans))))
    return plans


def _dagbag(folder: Path = DAGS):
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(folder), safe_mode=True)


def _export(plans: Path, estate: str, text: str | None = None) -> None:
    """A spec (``text``, default a good one) and its estate's loader, as `plan` writes."""
    (plans / f"{estate}.json").write_text(text or json.dumps(_spec(estate)))
    write_estate_loader(plans, estate)


# -- the plans bundle: one loader file per estate --------------------------------------


@pytest.mark.parametrize("breakage", sorted(BREAKAGES))
def test_a_broken_spec_is_an_import_error_of_its_estate_only(bundles, breakage):
    _export(bundles, "good")
    _export(bundles, "broken", BREAKAGES[breakage]())
    _export(bundles, "other")
    # dags/ registers no wave DAG once the plans bundle is configured: no id in two bundles
    main = _dagbag()
    assert main.import_errors == {}
    assert not [d for d in main.dag_ids if d.startswith("migrate__")]

    bag = _dagbag(loaders_dir(bundles))
    assert sorted(bag.dag_ids) == ["migrate__good__wave_01", "migrate__good__wave_02",
                                   "migrate__other__wave_01", "migrate__other__wave_02"]
    errors = {Path(k).name: v for k, v in bag.import_errors.items()}
    assert list(errors) == ["migrate__broken.py"]
    message = errors["migrate__broken.py"].strip().splitlines()[-1]
    assert "SpecError: estate broken:" in message
    assert str(bundles / "broken.json") in message
    assert EXPECTED[breakage] in message


def test_a_loader_without_its_spec_is_an_import_error_naming_the_missing_file(bundles):
    _export(bundles, "good")
    write_estate_loader(bundles, "gone")  # its spec was deleted, or never written
    bag = _dagbag(loaders_dir(bundles))
    errors = {Path(k).name: v for k, v in bag.import_errors.items()}
    assert list(errors) == ["migrate__gone.py"]
    assert "estate gone:" in errors["migrate__gone.py"]
    assert "gone.json: cannot read the plan spec" in errors["migrate__gone.py"]
    assert "migrate__good__wave_01" in bag.dag_ids


def test_a_worker_parsing_a_loader_builds_only_its_task_s_dag(bundles, monkeypatch):
    _export(bundles, "good")
    _export(bundles, "broken", BREAKAGES["bad_field"]())
    monkeypatch.setenv("_AIRFLOW_PARSING_CONTEXT_DAG_ID", "migrate__good__wave_02")
    loader = loader_path(bundles, "good")
    assert list(load_estate(loader, "good")) == ["migrate__good__wave_02"]
    # a task of the broken estate fails at once with the spec's error
    monkeypatch.setenv("_AIRFLOW_PARSING_CONTEXT_DAG_ID", "migrate__broken__wave_01")
    with pytest.raises(SpecError, match=r"estate broken: .*broken\.json: invalid plan spec: "
                                        r"waves\.0\.server_count"):
        load_estate(loader_path(bundles, "broken"), "broken")


def test_exporting_a_plan_writes_its_loader_once(tmp_path):
    from migrationbox.planning.builder import build_plan
    from migrationbox.store.testing import tiny_estate

    plan = build_plan(tiny_estate("shop", ("web-01", "db-01")))
    plans = tmp_path / "plans"
    spec = write_wave_spec(plan, plans)
    loader = loader_path(plans, "shop")
    assert spec == plans / "shop.json" and loader.read_text() == loader_source("shop")
    assert "airflow" in loader.read_text().lower() and "dag" in loader.read_text().lower()
    before = loader.stat().st_mtime_ns
    write_wave_spec(plan, plans)  # unchanged: neither file is rewritten
    assert loader.stat().st_mtime_ns == before
    # a spec exported before loaders existed gets one; a name that is no estate does not
    loader.unlink()
    (plans / "Not An Estate.json").write_text("{}")
    assert ensure_loaders(plans) == [loader]
    assert sorted(p.name for p in loaders_dir(plans).iterdir()) == ["migrate__shop.py"]
    with pytest.raises(SpecError, match="not a valid estate name"):
        loader_source("bad'name")


def test_airflow_reads_the_platform_s_two_bundles(bundles):
    """The configuration the platform passes is one Airflow itself accepts."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager

    from migrationbox.platform.airflow_runtime import DAGS_BUNDLE, PLANS_BUNDLE

    found = {b.name: b.path for b in DagBundlesManager().get_all_dag_bundles()}
    assert found == {DAGS_BUNDLE: DAGS.resolve(), PLANS_BUNDLE: loaders_dir(bundles).resolve()}
    assert plans_bundle_configured()


# -- the single-file fallback: dags/ only ----------------------------------------------


@pytest.mark.parametrize("breakage", sorted(BREAKAGES))
def test_without_the_plans_bundle_a_broken_spec_gets_a_spec_error_dag(plans, breakage):
    (plans / "good.json").write_text(json.dumps(_spec("good")))
    (plans / "broken.json").write_text(BREAKAGES[breakage]())
    assert not plans_bundle_configured()
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


def test_without_the_plans_bundle_a_worker_of_the_broken_estate_gets_the_error(plans):
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
errors, dags = {}, []
for folder in sys.argv[1:]:
    bag = DagBag(dag_folder=folder, safe_mode=True)
    errors.update({k: v[-500:] for k, v in bag.import_errors.items()})
    dags += bag.dag_ids
print(json.dumps({"errors": errors, "dags": sorted(dags)}))
"""


def _snapshot(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


@pytest.mark.parametrize(
    ("with_spec", "with_bundle"),
    [(False, False), (True, False), (True, True)],
    ids=["no-plans", "one-spec", "one-spec-plans-bundle"],
)
def test_parsing_every_dag_file_creates_nothing(tmp_path, with_spec, with_bundle):
    """MIGRATIONBOX_HOME (and the plans folder) absent: parsing leaves them absent; with
    a spec, parsing (its loader too, in the plans bundle) adds no file anywhere."""
    from migrationbox.platform.airflow_runtime import dag_bundles

    home = tmp_path / "absent-home"
    plans = tmp_path / "absent-plans"
    folders = [str(DAGS)]
    if with_spec:
        plans = tmp_path / "plans"
        plans.mkdir()
        (plans / "good.json").write_text(json.dumps(_spec("good")))
        write_estate_loader(plans, "good")
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "MIGRATIONBOX_HOME": str(home),
        "MIGRATIONBOX_PLANS_DIR": str(plans),
        "MIGRATIONBOX_ARTIFACTS_DIR": str(tmp_path / "absent-artifacts"),
        "MIGRATIONBOX_STORE_URL": f"sqlite:///{tmp_path / 'absent-store' / 'store.db'}",
    }
    for key in ("MIGRATIONBOX_STRICT_SPECS", "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST",
                "_AIRFLOW_PARSING_CONTEXT_DAG_ID"):
        env.pop(key, None)
    if with_bundle:
        env["AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST"] = json.dumps(
            dag_bundles(DAGS, loaders_dir(plans)))
        folders.append(str(loaders_dir(plans)))
    before = set(tmp_path.iterdir())
    plans_before = _snapshot(plans) if plans.exists() else set()
    out = subprocess.run([sys.executable, "-c", _PARSE_ALL, *folders], env=env,
                         capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["errors"] == {}
    # each wave DAG comes from exactly one place: dags/ without the bundle, the loader with
    assert result["dags"].count("migrate__good__wave_01") == int(with_spec)
    created = {p.name for p in set(tmp_path.iterdir()) - before} - {"airflow"}
    assert created == set(), f"parsing created {sorted(created)}"
    for absent in (home, tmp_path / "absent-artifacts", tmp_path / "absent-store"):
        assert not absent.exists(), absent
    assert (_snapshot(plans) if plans.exists() else set()) == plans_before


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
