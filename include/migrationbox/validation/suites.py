"""great-expectations suites per server and database, results kept as evidence.

Why great-expectations rather than our own comparisons (``phases.validate`` has those
too): its results are a format auditors and data teams already read, and its data docs
give a browsable HTML record of every expectation, observed value and failure. Each run
gets a file-backed context under ``<run artifacts>/gx`` — nothing global, nothing shared
between runs — so the evidence of a wave is a folder that can be archived as it is.

Suites (expectations built from the *source*, validated against the *target*):

* database table ``<server>.<db>.<table>``: row count equals the source's; key
  uniqueness (single or compound primary key); the proportion of non-null values of
  every column equals the source's;
* ``<server>.<db>.<table>.checksums``: a one-row frame of the target's column
  checksums, each expected to be the source's value;
* disk ``<server>.<disk>.files``: one row per path on either side; no path missing on the
  target or extra on it, sizes and digests equal, paths unique, file count equal.
  Files the configure phase rewrote are excluded (``phases.validate`` checks them
  against the rewrite of the current source file).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")  # no phoning home from a migration
# GX logs every config substitution at INFO: keep task logs to what matters
logging.getLogger("great_expectations").setLevel(logging.WARNING)

DATASOURCE = "migrationbox"


@dataclass
class SuiteOutcome:
    name: str
    kind: str
    server_id: str
    success: bool
    evaluated: int
    failed: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "server_id": self.server_id,
                "success": self.success, "evaluated": self.evaluated, "failed": self.failed}


@dataclass
class Evidence:
    ok: bool
    suites: list[SuiteOutcome]
    results_path: str
    docs_index: str | None

    def summary(self) -> dict[str, Any]:
        return {"ok": self.ok, "suites": [s.as_dict() for s in self.suites],
                "suites_failed": [s.name for s in self.suites if not s.success],
                "results_path": self.results_path, "data_docs": self.docs_index}


def _describe(result: dict[str, Any]) -> str:
    cfg = result.get("expectation_config", {})
    kwargs = {k: v for k, v in cfg.get("kwargs", {}).items() if k not in ("batch_id",)}
    observed = result.get("result", {})
    seen = observed.get("observed_value", observed.get("unexpected_count"))
    sample = observed.get("partial_unexpected_list")
    return (f"{cfg.get('type')} {json.dumps(kwargs, default=str)[:160]} observed {seen!r}"
            + (f" e.g. {sample[:3]}" if sample else ""))


class GxValidator:
    """Collect suites with their target data frames, then run them all at once."""

    def __init__(self, root: Path):
        import great_expectations as gx

        self.gx = gx
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.context = gx.get_context(mode="file", project_root_dir=str(self.root))
        from great_expectations.data_context.types.base import ProgressBarsConfig

        # task logs are not terminals: progress bars would only fill them with noise
        self.context.variables.progress_bars = ProgressBarsConfig(globally=False)
        try:
            self.source = self.context.data_sources.get(DATASOURCE)
        except (KeyError, ValueError):
            self.source = self.context.data_sources.add_pandas(DATASOURCE)
        self._pending: list[tuple[str, str, str, Any, list[Any]]] = []

    def add(self, name: str, kind: str, server_id: str, frame: Any,
            expectations: list[Any]) -> None:
        self._pending.append((name, kind, server_id, frame, expectations))

    # -------------------------------------------------------------- suite builders
    def add_table(self, server_id: str, db_name: str, source: Any, target_frame: Any) -> None:
        """``source``: the source table's ``TableProfile``; ``target_frame``: its rows."""
        import pandas as pd

        E = self.gx.expectations
        name = f"{server_id}.{db_name}.{source.table}"
        exps: list[Any] = [E.ExpectTableRowCountToEqual(value=source.rows)]
        if len(source.primary_key) == 1:
            exps.append(E.ExpectColumnValuesToBeUnique(column=source.primary_key[0]))
        elif source.primary_key:
            exps.append(E.ExpectCompoundColumnsToBeUnique(column_list=source.primary_key))
        for col in source.columns:
            share = 1 - source.null_counts[col] / source.rows if source.rows else 1.0
            exps.append(E.ExpectColumnProportionOfNonNullValuesToBeBetween(
                column=col, min_value=max(0.0, share - 1e-9), max_value=min(1.0, share + 1e-9)))
        self.add(name, "database_table", server_id, target_frame, exps)
        from migrationbox.validation.profiles import _column_checksums

        cols = list(target_frame.columns)
        pk_idx = [cols.index(k) for k in source.primary_key if k in cols]
        rows = [tuple(None if pd.isna(v) else v for v in r)
                for r in target_frame.itertuples(index=False, name=None)]
        target_sums = _column_checksums(cols, pk_idx, rows)
        frame = pd.DataFrame([{c: target_sums.get(c) for c in source.columns}])
        self.add(f"{name}.checksums", "column_checksums", server_id, frame,
                 [E.ExpectColumnValuesToBeInSet(column=c, value_set=[source.checksums[c]])
                  for c in source.columns])

    def add_files(self, server_id: str, disk_name: str, frame: Any, source_files: int) -> None:
        E = self.gx.expectations
        self.add(f"{server_id}.{disk_name}.files", "file_manifest", server_id, frame, [
            E.ExpectTableRowCountToEqual(value=source_files),
            E.ExpectColumnValuesToBeUnique(column="path"),
            E.ExpectColumnValuesToNotBeNull(column="digest_target"),  # missing on target
            E.ExpectColumnValuesToNotBeNull(column="digest_source"),  # extra on target
            E.ExpectColumnPairValuesToBeEqual(column_A="digest_source", column_B="digest_target",
                                              ignore_row_if="either_value_is_missing"),
            E.ExpectColumnPairValuesToBeEqual(column_A="size_source", column_B="size_target",
                                              ignore_row_if="either_value_is_missing"),
        ])

    # -------------------------------------------------------------- run
    def run(self, evidence_path: Path) -> Evidence:
        gx = self.gx
        outcomes: list[SuiteOutcome] = []
        raw: dict[str, Any] = {}
        for name, kind, server_id, frame, exps in self._pending:
            safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in name)
            for store, key in ((self.context.checkpoints, safe),
                               (self.context.validation_definitions, safe),
                               (self.context.suites, safe)):
                # a re-run of validate replaces its suites; "not there yet" raises the
                # store's own exception types
                with contextlib.suppress(Exception):
                    store.delete(key)
            try:
                asset = self.source.get_asset(safe)
            except LookupError:
                asset = self.source.add_dataframe_asset(safe)
            try:
                batch = asset.get_batch_definition("whole")
            except (KeyError, ValueError, LookupError):
                batch = asset.add_batch_definition_whole_dataframe("whole")
            suite = self.context.suites.add(gx.ExpectationSuite(name=safe))
            for e in exps:
                suite.add_expectation(e)
            vd = self.context.validation_definitions.add(
                gx.ValidationDefinition(name=safe, data=batch, suite=suite))
            cp = self.context.checkpoints.add(gx.Checkpoint(
                name=safe, validation_definitions=[vd], result_format="SUMMARY",
                actions=[gx.checkpoint.UpdateDataDocsAction(name="data_docs")]))
            result = cp.run(batch_parameters={"dataframe": frame})
            for vres in result.run_results.values():
                as_json = vres.to_json_dict()
                raw[name] = as_json
                failed = [_describe(r) for r in as_json["results"] if not r["success"]]
                outcomes.append(SuiteOutcome(name, kind, server_id, bool(vres.success),
                                             len(as_json["results"]), failed))
        evidence_path.parent.mkdir(parents=True, exist_ok=True)
        ok = bool(outcomes) and all(o.success for o in outcomes)
        evidence_path.write_text(json.dumps({"ok": ok, "suites": raw}, indent=1, default=str))
        docs = self.context.get_docs_sites_urls()
        index = docs[0]["site_url"] if docs else None
        return Evidence(ok, outcomes, str(evidence_path), index)
