"""Every data-plane phase re-run after success: nothing sent again, nothing duplicated."""

from __future__ import annotations

import json

import pytest
from test_dataplane_phases import WAVE1, make_dataplane  # noqa: F401  (fixture)

from migrationbox.cloud.aws_session import aws_client
from migrationbox.lab.endpoints import by_server
from migrationbox.phases import configure, replicate, validate
from migrationbox.replication.manifest import load_manifest

pytestmark = pytest.mark.integration


def test_rerunning_replicate_configure_validate_duplicates_nothing(make_dataplane):  # noqa: F811
    dp = make_dataplane()
    ctx = dp.ctx(options={"validate": {"gx": True}})
    first = replicate.run(ctx)
    digests = {sid: load_manifest(by_server(dp.endpoints, sid, "disk")[0].target_path).digest
               for sid in WAVE1}
    again = replicate.run(dp.ctx(run_id="run-2"))
    assert again.details["bytes_sent"] == 0 < first.details["bytes_sent"]
    assert again.details["servers"]["db-01"]["databases"]["app"]["rows_copied"] == 0
    assert {sid: load_manifest(by_server(dp.endpoints, sid, "disk")[0].target_path).digest
            for sid in WAVE1} == digests

    configure.run(ctx)
    sm = aws_client("secretsmanager")
    secrets = sorted(s["Name"] for s in sm.list_secrets()["SecretList"]
                     if dp.estate in s["Name"])
    rerun = configure.run(ctx)
    assert all(s.get("files_rewritten", 0) == 0 for s in rerun.details["servers"].values())
    assert sorted(s["Name"] for s in sm.list_secrets()["SecretList"]
                  if dp.estate in s["Name"]) == secrets

    checked = validate.run(ctx)
    assert checked.details["gx"]["ok"]
    suites = sorted(s["name"] for s in checked.details["gx"]["suites"])
    rechecked = validate.run(ctx)  # same run folder: suites replaced, not added
    assert sorted(s["name"] for s in rechecked.details["gx"]["suites"]) == suites
    gx_root = ctx.run_artifacts() / "gx" / "gx"
    for kind in ("validation_definitions", "checkpoints"):
        assert sorted(p.stem for p in (gx_root / kind).glob("*.json")) == suites
    evidence = json.loads((ctx.run_artifacts() / "validation-evidence.json").read_text())
    assert evidence["ok"] and sorted(evidence["suites"]) == suites


def test_sync_rounds_of_the_deferrable_operator_converge_and_are_recorded(
        make_dataplane):  # noqa: F811
    """``sync_round`` is what ``ReplicationRoundsOperator`` runs between trigger waits."""
    dp = make_dataplane(with_zone=False)
    ctx = dp.ctx()
    seen: list[dict] = []
    ctx.collaborators.on_progress = lambda message, data: seen.append(data)
    first = replicate.sync_round(ctx, 1)
    assert not first["converged"] and first["bytes_sent"] == first["bytes_total"] > 0
    assert first["rows_changed"] > 0
    second = replicate.sync_round(ctx, 2)
    assert second["converged"] and second["bytes_sent"] == 0 and second["rows_changed"] == 0
    rounds = json.loads((ctx.run_artifacts() / replicate.ROUNDS_FILE).read_text())
    assert [r["round"] for r in rounds] == [1, 2]
    assert [d["round"] for d in seen if "converged" in d] == [1, 2]
    # a re-run of round 2 (a retried task) replaces its record instead of adding one
    replicate.sync_round(ctx, 2)
    rounds = json.loads((ctx.run_artifacts() / replicate.ROUNDS_FILE).read_text())
    assert [r["round"] for r in rounds] == [1, 2]
    # the phase's final run reports what every round sent, not only its own (empty) delta
    result = replicate.run(ctx)
    per_server = result.details["servers"]
    replicated = [d for d in per_server.values() if "skipped" not in d]
    assert replicated and all(d["final_delta_bytes"] == 0 for d in replicated)
    assert result.details["bytes_sent_total"] == first["bytes_sent"] > 0
    assert sum(d["bytes_sent_total"] for d in replicated) == first["bytes_sent"]
    assert all(d["rounds_total"] >= 3 for d in replicated)  # rounds 1, 2 and the final one
    assert "MiB sent over all rounds" in result.summary
