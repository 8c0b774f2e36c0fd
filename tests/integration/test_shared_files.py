"""Shared files on a real object store: the emulator's S3 (a moto server on loopback).

"Hosts" are runtime folders (``MIGRATIONBOX_HOME``): each has its own artifacts, backups,
pricing folder and shared-files cache, and reaches the same bucket through the
``aws_default`` connection, as two workers of a cluster do. One test runs the other host
as a separate process (the ``migrationbox reports`` command) that has nothing of this
process but the environment a component gets.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from migrationbox import run_reports, shared_files
from migrationbox.cloud.emulator import EmulatorProcess
from migrationbox.errors import MigrationBoxError
from migrationbox.healer import backup
from migrationbox.lab.databases import seed_source
from migrationbox.lab.servers import LabServer
from migrationbox.phases.context import PhaseContext
from migrationbox.sizing.clouds import _files
from migrationbox.sizing.clouds.base import PriceSource

pytestmark = pytest.mark.integration


@pytest.fixture
def bucket(aws_emulator: EmulatorProcess) -> str:
    from migrationbox.cloud.aws_session import aws_client

    name = f"mbx-shared-{uuid.uuid4().hex[:10]}"
    aws_client("s3").create_bucket(Bucket=name)
    return name


@pytest.fixture
def hosts(tmp_path: Path, bucket: str, monkeypatch: pytest.MonkeyPatch
          ) -> Callable[[str], Iterator[Path]]:
    """``with host("a"):`` runs the block as host ``a`` (its own runtime folder) of a
    cluster whose shared root is ``s3://<bucket>/cluster``."""
    monkeypatch.setenv("MIGRATIONBOX_SHARED_ROOT", f"s3://{bucket}/cluster")
    for name in ("MIGRATIONBOX_ARTIFACTS_DIR", "MIGRATIONBOX_PRICING_DIR"):
        monkeypatch.delenv(name, raising=False)

    @contextmanager
    def host(name: str) -> Iterator[Path]:
        home = tmp_path / f"host-{name}"
        previous = os.environ.get("MIGRATIONBOX_HOME")
        os.environ["MIGRATIONBOX_HOME"] = str(home)
        try:
            yield home
        finally:
            if previous is None:
                os.environ.pop("MIGRATIONBOX_HOME", None)
            else:
                os.environ["MIGRATIONBOX_HOME"] = previous

    return host  # type: ignore[return-value]


def _objects(bucket: str, prefix: str) -> dict[str, bytes]:
    from migrationbox.cloud.aws_session import aws_client

    s3 = aws_client("s3")
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    return {o["Key"]: s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()
            for o in listed}


# -- the module itself --------------------------------------------------------------------


def test_put_get_list_delete_under_the_root(hosts, bucket: str) -> None:
    with hosts("a"):
        shared = shared_files.configured()
        assert shared is not None and shared.root.uri() == f"s3://{bucket}/cluster"
        shared.put_bytes("x/one.txt", b"one")
        shared.put_bytes("x/deeper/two.txt", b"two")
        shared.put_bytes("y.txt", b"y")
        assert [o.key for o in shared.list("x")] == ["x/deeper/two.txt", "x/one.txt"]
        assert shared.get_bytes("x/one.txt") == b"one"
        assert shared.head("x/one.txt").size == 3  # type: ignore[union-attr]
        assert shared.head("x/none.txt") is None
        # objects really live under the prefix, nowhere else
        assert set(_objects(bucket, "")) == {"cluster/x/one.txt", "cluster/x/deeper/two.txt",
                                             "cluster/y.txt"}
        with pytest.raises(shared_files.SharedObjectMissing, match=f"s3://{bucket}/cluster/"
                                                                   "x/none.txt"):
            shared.get_bytes("x/none.txt")
        shared.delete("y.txt")
        shared.delete("y.txt")  # idempotent
        assert shared.delete_prefix("x") == 2
        assert shared.list() == []


def test_a_missing_bucket_or_unreachable_storage_names_bucket_and_key(
        hosts, aws_emulator: EmulatorProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    from migrationbox.cloud.aws_session import clear_client_cache
    from migrationbox.cloud.emulator import free_port

    with hosts("a"):
        missing = shared_files.SharedFiles("s3://mbx-no-such-bucket/p")
        with pytest.raises(shared_files.SharedStorageError,
                           match=r"s3://mbx-no-such-bucket/p/k\.txt.*'mbx-no-such-bucket' "
                                 r"does not exist"):
            missing.put_bytes("k.txt", b"x")
        conn = json.loads(aws_emulator.airflow_connection())
        conn["extra"]["endpoint_url"] = f"http://127.0.0.1:{free_port()}"  # nobody there
        monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps(conn))
        monkeypatch.setenv("MIGRATIONBOX_AWS_MAX_ATTEMPTS", "1")
        clear_client_cache()  # hooks are cached per connection value: no stale client
        shared = shared_files.configured()
        assert shared is not None
        with pytest.raises(shared_files.SharedStorageError,
                           match=r"head s3://.*/cluster/a/b\.txt") as caught:
            shared.head("a/b.txt")
        assert isinstance(caught.value, MigrationBoxError)


def test_another_host_fetches_once_and_again_only_when_the_object_changed(hosts) -> None:
    with hosts("a") as home_a:
        writer = shared_files.configured()
        assert writer is not None
        source = home_a / "report.json"
        source.parent.mkdir(parents=True)
        source.write_text('{"v": 1}')
        first = writer.put_file("r/report.json", source)
        # the writer's own copy is current: fetching into it downloads nothing
        assert writer.cached_etag("r/report.json", source) == first.etag
    with hosts("b") as home_b:
        reader = shared_files.configured()
        assert reader is not None
        copy = home_b / "cache" / "report.json"
        assert reader.fetch("r/report.json", copy).etag == first.etag  # type: ignore[union-attr]
        assert copy.read_text() == '{"v": 1}'
        stamp = copy.stat().st_mtime_ns, copy.stat().st_ino
        reader.fetch("r/report.json", copy)
        assert (copy.stat().st_mtime_ns, copy.stat().st_ino) == stamp  # not downloaded again
        copy.write_text("edited by hand")  # a changed copy is not trusted
        reader.fetch("r/report.json", copy)
        assert copy.read_text() == '{"v": 1}'
    with hosts("a"):
        source.write_text('{"v": 2}')
        second = writer.put_file("r/report.json", source)
        assert second.etag != first.etag
    with hosts("b"):
        reader.fetch("r/report.json", copy)
        assert copy.read_text() == '{"v": 2}'
        assert reader.fetch("r/missing.json", home_b / "cache" / "missing.json") is None
        assert not (home_b / "cache" / "missing.json").exists()


# -- healer backups -----------------------------------------------------------------------


def _database(path: Path) -> str:
    url = f"sqlite:///{path}"
    seed_source(url, "e1", LabServer(server_id="db-01", hostname="db-01.corp.local",
                                     role="postgresql-primary", data_size_gb=1))
    return url


def test_a_backup_taken_on_one_host_is_restored_from_on_another(hosts, bucket: str,
                                                                  tmp_path: Path) -> None:
    url = _database(tmp_path / "target.db")  # the migrated database both hosts reach
    with hosts("a") as home_a:
        taken = backup.take_backup(url, "e1", "db-01")
        assert taken.path.is_relative_to(home_a)
    stored = _objects(bucket, "cluster/backups/e1/db-01/")
    assert set(stored) == {f"cluster/backups/e1/db-01/{taken.path.name}",
                           f"cluster/backups/e1/db-01/{taken.path.with_suffix('.json').name}"}
    assert stored[f"cluster/backups/e1/db-01/{taken.path.name}"] == taken.path.read_bytes()
    engine = create_engine(url)
    with engine.begin() as conn:  # corruption behind the application's back
        conn.execute(text("UPDATE orders SET amount = amount + 1 WHERE id IN (3, 4)"))
    engine.dispose()
    with hosts("b") as home_b:
        assert not (home_b / "backups").exists()
        latest = backup.latest_backup("e1", "db-01")
        assert latest is not None and latest.path.is_relative_to(home_b)
        assert latest.path.name == taken.path.name and latest.manifest == taken.manifest
        assert backup.verify_backup(latest) is None
        found = backup.corrupted_rows(url, latest)
        assert backup.count(found) == 2, found
        backup.restore_rows(url, latest, found)
        assert backup.corrupted_rows(url, latest) == {}
        newer = backup.take_backup(url, "e1", "db-01")  # a newer one, taken on host b
    with hosts("a"):
        seen = backup.latest_backup("e1", "db-01")
        assert seen is not None and seen.path.name == newer.path.name
        assert seen.path.is_relative_to(home_a)


def test_without_shared_root_backups_stay_local(hosts, bucket: str, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MIGRATIONBOX_SHARED_ROOT")
    url = _database(tmp_path / "target.db")
    with hosts("a"):
        backup.take_backup(url, "e1", "db-01")
        assert backup.latest_backup("e1", "db-01") is not None
    with hosts("b"):
        assert backup.latest_backup("e1", "db-01") is None
    assert _objects(bucket, "") == {}


# -- refreshed prices ---------------------------------------------------------------------


def _m5(rows: list[_files.RefreshedRow]) -> float:
    return next(r.ondemand_usd_hr for r in rows if r.name == "m5.large")


def _rows(price: float) -> list[_files.RefreshedRow]:
    return [_files.RefreshedRow("m5.large", 2, 8.0, "x86_64", price, None, None),
            _files.RefreshedRow("c5.large", 2, 4.0, "x86_64", price * 0.9, None, None)]


def test_refreshed_prices_reach_every_host_newest_first(hosts, bucket: str) -> None:
    with hosts("a"):
        _files.write_refreshed("aws", "eu-west-3", _rows(0.1),
                               PriceSource("hand-written test prices", "2026-11-01"))
    assert set(_objects(bucket, "cluster/pricing/")) == {
        "cluster/pricing/aws/eu-west-3.csv", "cluster/pricing/aws/eu-west-3.json"}
    with hosts("b") as home_b:
        rows, source = _files.load_refreshed("aws", "eu-west-3")  # type: ignore[misc]
        assert source.as_of == "2026-11-01" and _m5(rows) == pytest.approx(0.1)
        assert (home_b / "pricing" / "aws" / "eu-west-3.csv").exists()
        assert _files.load_refreshed("aws", "ap-south-1") is None
    with hosts("a"):
        _files.write_refreshed("aws", "eu-west-3", _rows(0.2),
                               PriceSource("hand-written test prices", "2026-12-01"))
    with hosts("b"):
        rows, source = _files.load_refreshed("aws", "eu-west-3")  # type: ignore[misc]
        assert source.as_of == "2026-12-01" and _m5(rows) == pytest.approx(0.2)


def test_a_refresh_caught_half_way_is_never_priced_with_the_wrong_sidecar(
        hosts, tmp_path: Path) -> None:
    with hosts("a"):
        _files.write_refreshed("gcp", "europe-west1", _rows(0.1),
                               PriceSource("test", "2026-11-01"))
        shared = shared_files.configured()
        assert shared is not None
    with hosts("b"):
        assert _files.load_refreshed("gcp", "europe-west1")[1].as_of == "2026-11-01"  # type: ignore[index]
    # another refresh has uploaded its CSV but not yet its sidecar
    other = tmp_path / "other"
    _files.write_refreshed("gcp", "europe-west1", _rows(0.3), PriceSource("test", "2026-12-01"),
                           directory=other)
    shared.put_file("pricing/gcp/europe-west1.csv", other / "gcp" / "europe-west1.csv")
    with hosts("b"):  # keeps its consistent pair
        rows, source = _files.load_refreshed("gcp", "europe-west1")  # type: ignore[misc]
        assert (source.as_of, _m5(rows)) == ("2026-11-01", pytest.approx(0.1))
    # a host that has none: the halves do not match, so no prices from them
    with hosts("c"), pytest.raises(_files.PriceFileError, match="do not match"):
        _files.load_refreshed("gcp", "europe-west1")
    shared.put_file("pricing/gcp/europe-west1.json", other / "gcp" / "europe-west1.json")
    for name in ("b", "c"):
        with hosts(name):
            rows, source = _files.load_refreshed("gcp", "europe-west1")  # type: ignore[misc]
            assert (source.as_of, _m5(rows)) == ("2026-12-01",
                                                               pytest.approx(0.3))


# -- run reports --------------------------------------------------------------------------


def _ctx(plan, home: Path, run_id: str) -> PhaseContext:
    return PhaseContext(plan=plan, wave_number=1, run_id=run_id,
                        artifacts_dir=home / "artifacts")


def test_run_reports_are_published_per_task_and_read_on_any_host(
        hosts, bucket: str, small_plan, tmp_path: Path) -> None:
    plan = small_plan(estate="shop")
    run_id = "manual__2026-12-07T10:00:00+00:00"
    run_rel = f"shop/wave_01/{run_reports.run_folder_name(run_id)}"
    with hosts("a") as home_a:  # preflight ran on host a
        ctx = _ctx(plan, home_a, run_id)
        with run_reports.published(ctx):
            (ctx.run_artifacts() / "preflight.json").write_text('{"ok": true}')
            (ctx.run_artifacts() / "gx").mkdir()
            (ctx.run_artifacts() / "gx" / "suite.json").write_text("{}")
    with hosts("b") as home_b:  # cutover on host b, failing
        ctx = _ctx(plan, home_b, run_id)
        with pytest.raises(RuntimeError, match="cutover broke"), run_reports.published(ctx):
            (ctx.run_artifacts() / "cutover.json").write_text('{"try": 1}')
            raise RuntimeError("cutover broke")
    assert set(_objects(bucket, f"cluster/artifacts/{run_rel}/")) == {
        f"cluster/artifacts/{run_rel}/{n}" for n in ("preflight.json", "gx/suite.json",
                                                     "cutover.json")}
    with hosts("a"):  # the retry ran on host a: it overwrites
        ctx = _ctx(plan, home_a, run_id)
        with run_reports.published(ctx):
            (ctx.run_artifacts() / "cutover.json").write_text('{"try": 2}')
    with hosts("b"):  # a later task on host b does not send its stale cutover.json back
        ctx = _ctx(plan, home_b, run_id)
        with run_reports.published(ctx):
            (ctx.run_artifacts() / "validate.json").write_text('{"ok": true}')
        assert run_reports.report_path("shop", 1, run_id, "cutover.json").read_text() == \
            '{"try": 2}'
        files = {f.name: f.where for f in run_reports.list_files("shop", 1, run_id)}
        assert files == {"preflight.json": "shared", "gx/suite.json": "shared",
                         "cutover.json": "local+shared", "validate.json": "local+shared"}
        assert run_reports.list_runs("shop", 1) == [run_reports.run_folder_name(run_id)]
        with pytest.raises(shared_files.SharedKeyError):
            run_reports.report_path("shop", 1, run_id, "../../../etc/passwd")
        with pytest.raises(run_reports.ReportMissing, match=r"nothing\.json"):
            run_reports.report_path("shop", 1, run_id, "nothing.json")
    with hosts("a"):  # the writer reads its own current copy without a download
        assert run_reports.report_path("shop", 1, run_id, "cutover.json") == \
            home_a / "artifacts" / run_rel / "cutover.json"
    # a third host, as its own process: the `migrationbox reports` command
    env = {**os.environ, "MIGRATIONBOX_HOME": str(tmp_path / "host-c")}
    shown = subprocess.run([sys.executable, "-m", "migrationbox.cli", "reports", "show",
                            "--estate", "shop", "--wave", "1", "--run", run_id,
                            "preflight.json"], env=env, capture_output=True, text=True,
                           timeout=120)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout == '{"ok": true}'
    listed = subprocess.run([sys.executable, "-m", "migrationbox.cli", "reports", "list",
                             "--estate", "shop", "--wave", "1", "--run", run_id, "--json"],
                            env=env, capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0, listed.stderr
    assert {f["name"]: f["where"] for f in json.loads(listed.stdout)} == {
        "preflight.json": "shared", "gx/suite.json": "shared", "cutover.json": "shared",
        "validate.json": "shared"}
    bad = subprocess.run([sys.executable, "-m", "migrationbox.cli", "reports", "show",
                          "--estate", "shop", "--wave", "1", "--run", run_id, "a/../b"],
                         env=env, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "'..'" in bad.stderr, bad.stderr


def test_without_shared_root_reports_stay_local_and_nothing_is_called(
        hosts, small_plan, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MIGRATIONBOX_SHARED_ROOT")
    # no AWS connection at all: any call to object storage would fail the task
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps({
        "conn_type": "aws", "login": "x", "password": "y",
        "extra": {"region_name": "us-east-1", "endpoint_url": "http://127.0.0.1:9"}}))
    with hosts("a") as home_a:
        ctx = _ctx(small_plan(estate="shop"), home_a, "r1")
        with run_reports.published(ctx):
            (ctx.run_artifacts() / "preflight.json").write_text("{}")
        assert [f.where for f in run_reports.list_files("shop", 1, "r1")] == ["local"]
        assert run_reports.report_path("shop", 1, "r1", "preflight.json").read_text() == "{}"
