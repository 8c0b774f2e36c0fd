"""The plans DAG bundle in object storage: its Airflow configuration, and planning
publishing each estate's spec and loader to a real moto server on loopback, which
Airflow's own S3DagBundle then downloads and parses on a host that never saw the local
plans folder."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from migrationbox.cloud.emulator import EmulatorProcess
from migrationbox.orchestration.plans_bundle import (
    MARKER,
    PlansBundleError,
    PlansRoot,
    PlansRootError,
    parse_plans_root,
    prepare_bundle,
    publish_estate,
    published_estates,
    withdraw_estate,
)
from migrationbox.orchestration.spec import loader_path, loader_source
from migrationbox.platform.airflow_runtime import (
    LOCAL_BUNDLE_CLASS,
    PLANS_BUNDLE,
    PLANS_BUNDLE_REFRESH_S,
    S3_BUNDLE_CLASS,
    airflow_config_env,
    dag_bundles,
)

REPO = Path(__file__).resolve().parents[2]
BUCKET = "mb-unit-plans"
ROOT = f"s3://{BUCKET}/team/plans"


# -- the root and the bundle configuration ---------------------------------------------


def test_a_plans_root_is_a_bucket_and_a_prefix():
    assert parse_plans_root("s3://migrationbox-plans/plans/") == PlansRoot(
        "migrationbox-plans", "plans")
    root = parse_plans_root(ROOT)
    assert root.spec_key("shop") == "team/plans/shop.json"
    assert root.loader_key("shop") == "team/plans/dags/migrate__shop.py"
    assert parse_plans_root("s3://bucket-only").loader_key("a") == "dags/migrate__a.py"
    for bad in ("/srv/plans", "file:///srv/plans", "s3://Bad_Bucket/p", "s3://b/a/../c",
                "s3://bucket/a//b"):
        with pytest.raises(PlansRootError, match="plans_root"):
            parse_plans_root(bad)


def test_the_embedded_default_keeps_its_local_plans_bundle(tmp_path):
    env = airflow_config_env(tmp_path / "home", 8080, REPO / "dags", REPO / "plugins",
                             loaders_folder=tmp_path / "plans" / "dags")
    bundles = json.loads(env["AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST"])
    assert bundles[1] == {"name": PLANS_BUNDLE, "classpath": LOCAL_BUNDLE_CLASS,
                          "kwargs": {"path": str((tmp_path / "plans" / "dags").resolve())}}
    assert "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_STORAGE_PATH" not in env


def test_with_a_plans_root_the_plans_bundle_is_an_s3_bundle_airflow_accepts(
        tmp_path, monkeypatch):
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.providers.amazon.aws.bundles.s3 import S3DagBundle

    from migrationbox.orchestration.wave_dag import plans_bundle_configured

    env = airflow_config_env(tmp_path / "home", 8080, REPO / "dags", REPO / "plugins",
                             loaders_folder=tmp_path / "plans" / "dags", plans_root=ROOT)
    config = json.loads(env["AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST"])
    assert config[1] == {"name": PLANS_BUNDLE, "classpath": S3_BUNDLE_CLASS,
                         "kwargs": {"bucket_name": BUCKET, "prefix": "team/plans",
                                    "aws_conn_id": "aws_default",
                                    "refresh_interval": PLANS_BUNDLE_REFRESH_S}}
    assert config == dag_bundles(REPO / "dags", None, ROOT)  # no local folder needed
    storage = tmp_path / "home" / "dag_bundles"
    assert env["AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_STORAGE_PATH"] == str(storage.resolve())
    for name in ("AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST",
                 "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_STORAGE_PATH"):
        monkeypatch.setenv(name, env[name])
    bundles = {b.name: b for b in DagBundlesManager().get_all_dag_bundles()}
    plans = bundles[PLANS_BUNDLE]
    assert isinstance(plans, S3DagBundle)
    assert (plans.bucket_name, plans.prefix, plans.aws_conn_id) == (BUCKET, "team/plans",
                                                                   "aws_default")
    assert plans.refresh_interval == PLANS_BUNDLE_REFRESH_S
    assert plans.path == storage.resolve() / PLANS_BUNDLE  # per platform, not /tmp/airflow
    # dags/migration_waves.py leaves the wave DAGs to the loaders: no id in two bundles
    assert plans_bundle_configured(tmp_path / "elsewhere")


# -- publishing, against a moto server -------------------------------------------------


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorProcess]:
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with EmulatorProcess(log_path=log) as running:
        yield running


@pytest.fixture()
def s3(emulator: EmulatorProcess, monkeypatch: pytest.MonkeyPatch):
    """An empty bucket on the emulator, and ``aws_default`` pointing there."""
    import boto3

    from migrationbox.cloud.aws_session import clear_client_cache

    emulator.reset()
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", emulator.airflow_connection())
    clear_client_cache()
    client = boto3.client("s3", endpoint_url=emulator.url, region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    client.create_bucket(Bucket=BUCKET)
    yield client
    clear_client_cache()


def _plan(estate: str, servers: tuple[str, ...] = ("web-01", "db-01", "dns-01")):
    from migrationbox.planning.builder import build_plan
    from migrationbox.store.testing import tiny_estate

    return build_plan(tiny_estate(estate, servers))


def _keys(client) -> dict[str, bytes]:
    listed = client.list_objects_v2(Bucket=BUCKET).get("Contents", [])
    return {o["Key"]: client.get_object(Bucket=BUCKET, Key=o["Key"])["Body"].read()
            for o in listed}


def test_planning_publishes_spec_and_loader_once_and_replaces_them(s3, tmp_path,
                                                                   monkeypatch):
    from migrationbox.planning.export import write_wave_spec
    from migrationbox.service import plan_estate

    plans = tmp_path / "plans"
    monkeypatch.setenv("MIGRATIONBOX_PLANS_ROOT", ROOT)
    inventory = tmp_path / "shop"
    inventory.mkdir()
    from migrationbox.store.testing import tiny_estate

    for server in tiny_estate("shop").servers:
        (inventory / f"{server.server_id}.json").write_text(server.model_dump_json())
    # not stored, not published (`plan --no-store`); published when asked
    plan_estate(inventory, estate="shop", store=False, spec_folder=plans)
    assert _keys(s3) == {}
    planned = plan_estate(inventory, estate="shop", store=False, spec_folder=plans,
                          publish=True)
    keys = _keys(s3)
    assert keys == {"team/plans/shop.json": planned.spec_path.read_bytes(),
                    "team/plans/dags/migrate__shop.py": loader_source("shop").encode()}
    root = parse_plans_root(ROOT)
    # the same plan again: nothing rewritten (no host downloads or re-parses anything)
    assert publish_estate(plans, "shop", root) == []
    # re-planned: the spec is replaced under the same key, the loader is not touched
    write_wave_spec(_plan("shop", ("web-01", "db-01")), plans)
    assert publish_estate(plans, "shop", root) == ["team/plans/shop.json"]
    assert _keys(s3)["team/plans/shop.json"] == (plans / "shop.json").read_bytes()
    assert published_estates(root) == ["shop"]
    # withdrawn: loader and spec gone, another estate untouched
    write_wave_spec(_plan("other"), plans)
    publish_estate(plans, "other", root)
    assert withdraw_estate("shop", root) == ["team/plans/dags/migrate__shop.py",
                                             "team/plans/shop.json"]
    assert withdraw_estate("shop", root) == []
    assert sorted(_keys(s3)) == ["team/plans/dags/migrate__other.py",
                                 "team/plans/other.json"]


def test_errors_name_the_bucket_key_and_estate(s3, tmp_path):
    from migrationbox.planning.export import write_wave_spec

    plans = tmp_path / "plans"
    write_wave_spec(_plan("shop"), plans)
    with pytest.raises(PlansBundleError,
                       match=r"s3://no-such-bucket/p/shop\.json \(estate shop\)"):
        publish_estate(plans, "shop", "s3://no-such-bucket/p")
    with pytest.raises(PlansBundleError, match=r"estate gone has no readable wave spec"):
        publish_estate(plans, "gone", ROOT)
    assert _keys(s3) == {}


def test_a_host_without_the_plans_folder_parses_the_wave_dags_from_the_s3_bundle(
        s3, tmp_path, monkeypatch):
    """What a DAG processor or worker of another host does: Airflow's S3DagBundle
    downloads the bundle, and each loader reads its spec from that download."""
    from airflow.dag_processing.dagbag import DagBag
    from airflow.providers.amazon.aws.bundles.s3 import S3DagBundle

    from migrationbox.planning.export import write_wave_spec

    plans = tmp_path / "planner" / "plans"
    plan = _plan("shop")
    write_wave_spec(plan, plans)
    (plans / "orphan.json").write_text("{}")  # a spec without a loader is not published
    assert sorted(prepare_bundle(plans, ROOT)) == [
        "team/plans/README.txt", "team/plans/dags/migrate__shop.py", "team/plans/shop.json"]
    assert prepare_bundle(plans, ROOT) == []  # idempotent
    elsewhere = tmp_path / "worker-plans"  # this "host" has an empty plans folder
    elsewhere.mkdir()
    monkeypatch.setenv("MIGRATIONBOX_PLANS_DIR", str(elsewhere))
    monkeypatch.setenv("AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_STORAGE_PATH",
                       str(tmp_path / "bundles"))
    monkeypatch.delenv("_AIRFLOW_PARSING_CONTEXT_DAG_ID", raising=False)
    bundle = S3DagBundle(name=PLANS_BUNDLE, bucket_name=BUCKET, prefix="team/plans",
                         aws_conn_id="aws_default", refresh_interval=PLANS_BUNDLE_REFRESH_S)
    bundle.initialize()
    loader = loader_path(bundle.path, "shop")
    assert loader.read_text() == loader_source("shop")
    assert (bundle.path / MARKER).is_file()
    bag = DagBag(dag_folder=str(bundle.path), safe_mode=True)
    assert bag.import_errors == {}
    assert sorted(bag.dag_ids) == [f"migrate__shop__wave_{w.number:02d}" for w in plan.waves]
    assert {bag.dags[d].fileloc for d in bag.dag_ids} == {str(loader)}
    # withdrawn from the bucket: the next refresh deletes the host's copies
    withdraw_estate("shop", ROOT)
    bundle.refresh()
    assert not loader.exists() and not (bundle.path / "shop.json").exists()
    assert DagBag(dag_folder=str(bundle.path), safe_mode=True).dag_ids == []


def test_the_supervisor_prepares_the_bundle_prefix_before_the_first_plan(s3, tmp_path):
    """S3DagBundle refuses a prefix with nothing under it: the marker makes it exist."""
    empty = tmp_path / "plans"
    assert prepare_bundle(empty, ROOT) == ["team/plans/README.txt"]
    assert published_estates(ROOT) == []
