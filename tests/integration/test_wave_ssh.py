"""A wave migrated from sources reached over SSH, driven as a wave DAG run drives it.

The lab is started as a real estate looks to MigrationBox: its source disks are served
by a real OpenSSH server on loopback (``Lab(ssh_sources=True)``), its endpoints are
registered in the store through the domain registration (``ssh://127.0.0.1:PORT/...``
disks naming an Airflow SSH connection given as ``AIRFLOW_CONN_<ID>``, host key pinned),
and every phase gets its context from ``orchestration.tasks`` (plan, endpoints and
options from the store and the run conf) against the real moto server. The lab's
database is SQLite, which AWS DMS cannot take: the row-checksum copy moves it and the
reason is recorded. When PostgreSQL runs on loopback, one more database, registered by
Airflow connection ids only, goes through DMS on the emulator (which moves no data, so
the checksums see an empty target and the copy finishes the job, recorded as such).
"""

from __future__ import annotations

import json
import random
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from migrationbox.cloud.aws_session import aws_client
from migrationbox.endpoints import Endpoint
from migrationbox.inventory.models import Estate, ServerRecord
from migrationbox.lab import databases as labdb
from migrationbox.lab.lab import Lab
from migrationbox.lab.servers import LabServer
from migrationbox.lab.sshd import sshd_available
from migrationbox.lab.testing import tiny_plan
from migrationbox.orchestration import tasks
from migrationbox.phases import replicate
from migrationbox.planning.models import PlanDocument, SourceOs
from migrationbox.replication.manifest import journal_path

pytestmark = pytest.mark.integration

WAVE1 = ["db-01", "api-01", "web-01", "dns-01"]
BLOCK = 256 * 1024
CONF: dict[str, Any] = {
    "cloud": {"poll_seconds": 0.2},
    "network": {"source_networks": ["172.20.0.0/16"]},
    "preflight": {"vcpu_quota": 64, "backups": {sid: True for sid in WAVE1}},
    "replicate": {"block_mib": 0.25},
}
UBUNTU = SourceOs(type="Linux", name="Ubuntu", version="22.04", architecture="x86_64")


@dataclass
class Wave:
    plan: PlanDocument
    lab: Lab
    pg: labdb.LabDatabases | None

    @property
    def estate(self) -> str:
        return self.plan.estate

    def context(self, task_id: str, run_id: str, conf: dict[str, Any] | None = None
                ) -> dict[str, Any]:
        """What Airflow hands a task callable: the DAG run (conf, id) and the task."""
        return {"dag_run": SimpleNamespace(conf=conf or CONF, run_id=run_id),
                "ti": SimpleNamespace(task_id=task_id)}

    def run(self, phase: str, run_id: str, conf: dict[str, Any] | None = None
            ) -> dict[str, Any]:
        return tasks.run_phase(phase, self.estate, 1, self.plan.version,
                               **self.context(phase, run_id, conf))

    def ctx(self, run_id: str, task_id: str = "replicate.sync_rounds"):
        return tasks.build_context(self.estate, 1, self.plan.version,
                                   self.context(task_id, run_id))

    def disk(self, server_id: str) -> tuple[Path, Path]:
        return self.lab.disk_paths(server_id)


def _record(server_id: str, hostname: str) -> ServerRecord:
    return ServerRecord.model_validate({
        "server_id": server_id, "hostname": hostname, "ip_addresses": ["172.20.1.10"],
        "os": {"type": "Linux", "distribution": "Ubuntu", "version": "22.04"},
        "hardware": {"cpu_cores": 2, "ram_gb": 4},
        "performance_baseline": {"cpu_avg_utilization_pct": 20,
                                 "memory_avg_utilization_pct": 30},
        "backup": {"available": True},
    })


def _pg_connection(url: str) -> str:
    """An Airflow connection (JSON) for a lab PostgreSQL database."""
    u = make_url(url)
    return json.dumps({"conn_type": "postgres", "host": u.host, "port": u.port or 5432,
                       "login": u.username, "password": u.password, "schema": u.database})


@pytest.fixture(scope="module")
def wave(aws_emulator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Wave]:
    ok, why = sshd_available()
    if not ok:
        pytest.skip(why)
    from migrationbox.store import repository
    from migrationbox.store.db import dispose, session_scope

    tmp = tmp_path_factory.mktemp("wave-ssh")
    patch = pytest.MonkeyPatch()
    patch.setenv("MIGRATIONBOX_STORE_URL", f"sqlite:///{tmp / 'store.db'}")
    patch.setenv("MIGRATIONBOX_ARTIFACTS_DIR", str(tmp / "artifacts"))
    dispose()
    estate = f"ssh{uuid.uuid4().hex[:6]}"
    base = tiny_plan(estate)
    plan = base.model_copy(update={"servers": [s.model_copy(update={"os": UBUNTU})
                                               for s in base.servers]})
    lab = Lab(estate, plan, root=tmp / "lab", data_scale_mb=1.0, db_backend="sqlite",
              ssh_sources=True)
    pg: labdb.LabDatabases | None = None
    try:
        with session_scope() as session:
            repository.save_estate(session, Estate(name=estate, servers=[
                _record(s.server_id, s.hostname) for s in plan.servers]))
            plan = repository.save_plan(session, plan)
        endpoints = lab.up()
        for name, value in lab.airflow_env().items():
            patch.setenv(name, value)
        if labdb.postgres_available()[0]:
            pg = labdb.provision(estate, LabServer("api-01", "api-prod-01.company.local",
                                                   "postgresql"), "postgresql", tmp)
            patch.setenv("AIRFLOW_CONN_MBX_SSHWAVE_PG_SRC", _pg_connection(pg.source_url))
            patch.setenv("AIRFLOW_CONN_MBX_SSHWAVE_PG_TGT", _pg_connection(pg.target_url))
            endpoints.append(Endpoint("api-01", "database", "reports", None, None, {
                "conn_id": "mbx_sshwave_pg_src", "target_conn_id": "mbx_sshwave_pg_tgt"}))
        lab.register_endpoints(endpoints)
        yield Wave(plan, lab, pg)
    finally:
        lab.down(purge=True)
        if pg is not None:
            labdb.drop(pg)
        patch.undo()
        dispose()


def _same_tree(src: Path, dst: Path) -> None:
    files = sorted(p.relative_to(src) for p in src.rglob("*") if p.is_file()
                   and ".migrationbox" not in p.parts)
    assert files
    for rel in files:
        assert (dst / rel).read_bytes() == (src / rel).read_bytes(), rel


def test_wave_from_ssh_sources_is_provisioned_replicated_verified_and_torn_down(wave):
    # the registered disk endpoints are remote: nothing below reads a local source path
    stored = tasks.build_context(wave.estate, 1, wave.plan.version,
                                 wave.context("preflight", "r1")).endpoints
    disks = [e for e in stored if e.kind == "disk"]
    assert {e.server_id for e in disks} >= set(WAVE1)
    assert all(e.source_uri.startswith("ssh://127.0.0.1:") and e.details["host_key"]
               for e in disks)

    assert wave.run("preflight", "r1")["details"]["checks"]["images"] == "pass"
    provisioned = wave.run("provision", "r1")
    images = provisioned["details"]["images"]
    assert {images[s]["rule"] for s in WAVE1} == {"ubuntu 22.04"}
    ec2 = aws_client("ec2")
    booted = {i["ImageId"] for r in ec2.describe_instances(
        InstanceIds=list(provisioned["details"]["instances"].values()))["Reservations"]
        for i in r["Instances"]}
    assert booted == {images["web-01"]["image_id"]}

    # a dry run sizes each source over SSH and writes nothing
    dry = wave.run("replicate", "dry", {**CONF, "dry_run": True})["details"]["servers"]
    assert all(dry[s]["disks"]["root"]["bytes"] > 0 for s in WAVE1)
    assert not any(wave.disk(s)[1].joinpath("etc").exists() for s in WAVE1)

    # the deferrable operator's unit of work, then the final verified rounds and the gate
    first = replicate.sync_round(wave.ctx("r1"), 1)
    assert first["bytes_sent"] > 0 and not first["problems"]
    assert first["databases"]["db-01/database/app"]["method"] == "copy"
    result = wave.run("replicate", "r1")["details"]["servers"]
    assert tasks.gate("replication_converged", wave.estate, 1, wave.plan.version,
                      **wave.context("replicate.replication_converged", "r1"))
    for sid in WAVE1:
        root = result[sid]["disks"]["root"]
        assert root["source"].startswith(f"endpoint {sid}/disk/root on ")
        assert root["verify"]["ok"] and root["verify"]["source_matches_target"]
        _same_tree(*wave.disk(sid))
    # SQLite is no DMS engine: the copy moved it (in the first round) and says why
    assert first["databases"]["db-01/database/app"]["rows_changed"] > 0
    app = result["db-01"]["databases"]["app"]
    assert app["method"] == "copy" and app["checksum_match"] and app["converged"]
    assert "AWS DMS has no sqlite source endpoint" in app["fallback_reason"]
    if wave.pg is not None:
        # DMS on the emulator: resources made and the task run, but no data moved; the
        # checksums saw it and the copy did the job, which it keeps from then on
        started = first["databases"]["api-01/database/reports"]
        assert started["dms_task_arn"].startswith("arn:aws:dms:")
        assert "reports its full load complete" in started["fallback_reason"]
        assert "emulator" in started["fallback_reason"] and started["rows_changed"] > 0
        reports = result["api-01"]["databases"]["reports"]
        assert reports["dms_task_arn"] == started["dms_task_arn"]
        assert reports["method"] == "copy" and reports["checksum_match"]
        assert "earlier run fell back" in reports["fallback_reason"]
        # the runner was placed in the wave's data subnets, as provision made them
        assert reports["resources"]["subnet_group_id"]
        assert all(t["match"] for t in reports["tables"]) and len(reports["tables"]) >= 3
        assert "password" not in json.dumps(reports).lower()

    # a change at the source: only its block crosses the network
    src, _dst = wave.disk("web-01")
    data_file = sorted((src / "var/lib/app").glob("*.bin"))[0]
    with data_file.open("r+b") as fh:
        fh.write(b"changed at the source")
    again = wave.run("replicate", "r2")["details"]["servers"]
    web = again["web-01"]["disks"]["root"]
    assert web["bytes_sent"] == BLOCK and web["blocks_sent"] == 1
    assert web["wire_bytes"] < 2 * BLOCK + web["bytes_total"] // 20
    assert again["dns-01"]["bytes_sent"] == 0
    _same_tree(*wave.disk("web-01"))

    # configure rewrites the targets; validate compares them with the sources over SSH
    # (configured files read back from the source, file evidence hashed at the source)
    assert wave.run("configure", "r2")["ok"]
    checked = wave.run("validate", "r2", {**CONF, "validate": {"performance": False}})
    servers = checked["details"]["servers"]
    assert all(servers[s]["ok"] for s in WAVE1)
    assert servers["api-01"]["disks"]["root"]["configured_files"] >= 2
    assert checked["details"]["gx"]["ok"], checked["details"]["gx"]["suites_failed"]
    # decommission marks each source over SFTP; a second run finds the marks
    gone = wave.run("decommission", "r2")["details"]
    assert gone["decommissioned"] == sorted(WAVE1)
    for sid in WAVE1:
        marker = json.loads((wave.disk(sid)[0] / ".migrationbox/DECOMMISSIONED.json")
                            .read_text())
        assert marker["server_id"] == sid and marker["run_id"] == "r2"
    assert wave.run("decommission", "r3")["details"]["already_marked"] == sorted(WAVE1)

    # teardown: the wave's DMS resources go with its instances
    dms = aws_client("dms")
    if wave.pg is not None:
        assert dms.describe_replication_tasks()["ReplicationTasks"]
    torn = wave.run("teardown", "r1")
    assert torn["ok"]
    mine = [t for t in dms.describe_replication_tasks()["ReplicationTasks"]
            if wave.estate in t["ReplicationTaskIdentifier"]]
    assert mine == []
    if wave.pg is not None:
        assert any(wave.estate in d for d in torn["details"]["database_service_deleted"])


# paramiko's SFTP prefetch thread reports the killed socket on its own, as a thread exception
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_ssh_dropped_mid_round_fails_naming_server_and_endpoint_then_resumes(
        wave, monkeypatch: pytest.MonkeyPatch):
    from airflow.sdk.exceptions import AirflowFailException

    from migrationbox.replication import source

    # pipelined reads of 1 MiB (32 MiB by default): a drop while a file is written finds
    # reads of that file still to do, as on a slow network
    monkeypatch.setattr(source, "READ_BATCH_BYTES", 4 * BLOCK)
    # the test before tore the wave down, and replication refuses a wave with no
    # provisioned state (the database runner's placement): provision it again
    assert wave.run("provision", "r3")["ok"]
    src, dst = wave.disk("web-01")
    rng = random.Random(7)
    for i in range(2):  # bulk0 is copied whole before the drop, bulk1 is cut mid-file
        (src / f"var/lib/app/bulk{i}.bin").write_bytes(rng.randbytes(48 * BLOCK))
    sshd = wave.lab.ssh_server()
    dropped: list[int] = []
    stop = threading.Event()

    def drop_when_copying() -> None:
        # the round has begun writing the target (its journal exists): cut every session
        while not stop.is_set():
            if journal_path(dst).exists() and (dst / "var/lib/app/bulk1.bin").exists():
                dropped.append(sshd.kill_sessions())
                return
            stop.wait(0.01)

    slow = {**CONF, "replicate": {**CONF["replicate"], "bandwidth_mib_s": 8, "workers": 1}}
    killer = threading.Thread(target=drop_when_copying, daemon=True)
    killer.start()
    try:
        with pytest.raises(AirflowFailException) as err:
            wave.run("replicate", "r3", slow)
    finally:
        stop.set()
        killer.join(10)
    assert dropped and dropped[0] > 0, dropped
    message = str(err.value)
    assert "web-01/disk/root" in message and f"127.0.0.1:{sshd.port}" in message
    assert journal_path(dst).exists()  # nothing reported done; the journal stays

    # the re-run resumes from the journal: the file finished before the drop is not
    # sent again, and the result is verified against hashes taken at the source
    resumed = wave.run("replicate", "r4")["details"]["servers"]["web-01"]["disks"]["root"]
    assert resumed["round_baselines"][0] == "resume"
    assert resumed["blocks_recovered"] >= 48
    assert resumed["bytes_sent"] <= 48 * BLOCK
    assert resumed["verify"]["ok"] and resumed["converged"]
    _same_tree(src, dst)
    assert not journal_path(dst).exists()


def test_a_per_endpoint_host_key_pins_the_source(wave, monkeypatch: pytest.MonkeyPatch):
    """One connection shared by many hosts carries no host key: each endpoint pins its
    own (``details.host_key``), and another key than the server's is refused."""
    from migrationbox.replication.source import HostKeyRefused

    sshd = wave.lab.ssh_server()
    shared = sshd.airflow_connection()
    shared["extra"].pop("host_key")
    monkeypatch.setenv("AIRFLOW_CONN_MBX_SSHWAVE_SHARED", json.dumps(shared))
    src, _dst = wave.disk("dns-01")

    def endpoint(host_key: str | None) -> Endpoint:
        details = {"ssh_conn_id": "mbx_sshwave_shared"}
        if host_key:
            details["host_key"] = host_key
        return Endpoint("dns-01", "disk", "root", f"ssh://127.0.0.1:{sshd.port}{src}",
                        "file:///nonexistent", details)

    with replicate.open_disk_source(endpoint(sshd.host_public_key)) as tree:
        scan = tree.scan(BLOCK)
        try:
            assert scan.ok and scan.total_bytes > 0
        finally:
            scan.close()
    other = " ".join(sshd.client_public_key.split()[:2])  # a valid key, not the server's
    for pinned in (other, None):
        with pytest.raises(HostKeyRefused) as err, \
                replicate.open_disk_source(endpoint(pinned)) as tree:
            tree.scan(BLOCK).close()
        assert "dns-01/disk/root" in str(err.value)
        assert f"127.0.0.1:{sshd.port}" in str(err.value)
