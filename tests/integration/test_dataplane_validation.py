"""Post-migration validation with great-expectations against the real lab."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from migrationbox.lab.endpoints import by_server
from migrationbox.lab.lab import Lab
from migrationbox.lab.testing import tiny_plan
from migrationbox.phases import replicate, validate
from migrationbox.phases.context import Collaborators, PhaseContext, PhaseFailed
from migrationbox.phases.options import PhaseOptions

pytestmark = pytest.mark.integration


def test_gx_suites_are_evidence_and_catch_tampering(tmp_path: Path):
    estate = f"gx{uuid.uuid4().hex[:8]}"
    plan = tiny_plan(estate)
    lab = Lab(estate, plan, root=tmp_path / "lab", data_scale_mb=0.5)
    try:
        endpoints = lab.up()
        opts = PhaseOptions.model_validate({
            "replicate": {"block_mib": 0.25}, "health": {"probe_requests": 5},
            "validate": {"performance_baselines": {
                "web-01": {"cpu_avg_utilization_pct": 30.0}}}})

        def ctx(run_id: str) -> PhaseContext:
            return PhaseContext(plan=plan, wave_number=1, run_id=run_id,
                                artifacts_dir=tmp_path / "artifacts", options=opts,
                                endpoints=endpoints)

        assert replicate.run(ctx("r1")).ok
        v = validate
        c = ctx("r1")
        evidence = v.gx_evidence(c, endpoints)
        summary = evidence.summary()
        assert summary["ok"], summary["suites_failed"]
        names = {s["name"] for s in summary["suites"]}
        assert {"db-01.app.customers", "db-01.app.customers.checksums",
                "web-01.root.files", "dns-01.root.files"} <= names
        kinds = {s["kind"] for s in summary["suites"]}
        assert kinds == {"database_table", "column_checksums", "file_manifest"}
        stored = json.loads(Path(summary["results_path"]).read_text())
        assert stored["ok"] and "db-01.app.customers" in stored["suites"]
        docs = Path(summary["data_docs"].removeprefix("file://"))
        assert docs.is_file() and "customers" in "".join(
            p.name for p in docs.parent.rglob("*.html"))
        perf = v.performance_report(c, endpoints)
        web = perf["servers"]["web-01"]
        assert web["discovery"] == {"cpu_avg_utilization_pct": 30.0}
        assert web["service"]["target_p95_ms"] > 0 and web["service"]["source_p95_ms"] > 0

        # tampering on the target: a lost row, a changed value, a flipped file byte
        db = by_server(endpoints, "db-01", "database")[0]
        engine = create_engine(db.target_uri)
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM audit_log WHERE id = 1"))
            conn.execute(text("UPDATE customers SET name = 'tampered' WHERE id = 2"))
        engine.dispose()
        disk = by_server(endpoints, "dns-01", "disk")[0]
        victim = next(p for p in sorted(disk.target_path.rglob("*"))
                      if p.is_file() and ".migrationbox" not in p.parts)
        data = bytearray(victim.read_bytes())
        data[0] ^= 0xFF
        victim.write_bytes(bytes(data))
        bad = v.gx_evidence(ctx("r2"), endpoints).summary()
        assert not bad["ok"]
        assert set(bad["suites_failed"]) == {"db-01.app.audit_log",
                                             "db-01.app.audit_log.checksums",
                                             "db-01.app.customers.checksums",
                                             "dns-01.root.files"}
        failed = {s["name"]: s["failed"] for s in bad["suites"]}
        assert any("table_row_count_to_equal" in f for f in failed["db-01.app.audit_log"])
        assert [f for f in failed["db-01.app.customers.checksums"] if "name" in f]
        assert not [f for f in failed["db-01.app.customers.checksums"] if "email" in f]
        assert any("column_pair_values_to_be_equal" in f for f in failed["dns-01.root.files"])
        with pytest.raises(PhaseFailed, match=r"great-expectations suite db-01\.app\.audit_log"):
            validate.run(PhaseContext(
                plan=plan, wave_number=1, run_id="r3", artifacts_dir=tmp_path / "artifacts",
                options=opts, endpoints=endpoints,
                collaborators=Collaborators(adapter=_NoCloud())))  # type: ignore[arg-type]
    finally:
        lab.down(purge=True)


class _NoCloud:
    """The validate phase's cost report asks the cloud for instances; none here."""

    def find_instances(self, tags):
        return []
