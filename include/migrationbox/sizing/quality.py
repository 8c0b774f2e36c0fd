"""Data-quality gate on training data (great-expectations).

The retraining DAG validates the cleaned trace before anything is trained; a failed
expectation stops training and promotion, and the exception lists which expectation
failed, on which column, how many rows and a few offending values.

Expectations: no missing values in the columns models read; CPU and memory
percentages within 0-100; capacities positive; timestamps strictly increasing within
each VM (checked as a positive step between consecutive samples of a VM, since the
trace interleaves nothing but is one file of many VMs); enough rows and VMs.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from migrationbox.errors import MigrationBoxError

if TYPE_CHECKING:
    import pandas as pd

REQUIRED = ("vm_id", "timestamp_s", "cpu_cores", "cpu_pct", "mem_pct", "mem_gib",
            "mem_usage_kb")


class QualityGateFailed(MigrationBoxError, RuntimeError):
    """Training data failed its expectations; the message says which and why."""

    def __init__(self, report: QualityReport) -> None:
        self.report = report
        super().__init__("training data failed the quality gate: " + "; ".join(report.failures))


@dataclass
class QualityReport:
    success: bool
    checked: int
    failures: list[str] = field(default_factory=list)
    results: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"success": self.success, "checked": self.checked, "failures": self.failures,
                "results": self.results}


def _suite(min_rows: int) -> Any:
    import great_expectations as gx
    import great_expectations.expectations as gxe

    suite = gx.ExpectationSuite(name="migrationbox_sizing_training_data")
    for column in REQUIRED:
        suite.add_expectation(gxe.ExpectColumnToExist(column=column))
        suite.add_expectation(gxe.ExpectColumnValuesToNotBeNull(column=column))
    suite.add_expectation(gxe.ExpectColumnValuesToBeBetween(column="cpu_pct", min_value=0,
                                                            max_value=100))
    suite.add_expectation(gxe.ExpectColumnValuesToBeBetween(column="mem_pct", min_value=0,
                                                            max_value=100))
    suite.add_expectation(gxe.ExpectColumnValuesToBeBetween(column="cpu_cores", min_value=1))
    suite.add_expectation(gxe.ExpectColumnValuesToBeBetween(column="mem_gib", min_value=0,
                                                            strict_min=True))
    suite.add_expectation(gxe.ExpectColumnValuesToBeBetween(column="step_s", min_value=1))
    suite.add_expectation(gxe.ExpectTableRowCountToBeBetween(min_value=min_rows))
    return suite


def with_steps(df: pd.DataFrame) -> pd.DataFrame:
    """Adds ``step_s``: seconds since the VM's previous sample (first sample: 1)."""
    out = df.copy()
    out["step_s"] = out.groupby("vm_id", sort=False)["timestamp_s"].diff().fillna(1)
    return out


def check_training_data(df: pd.DataFrame, min_rows: int = 1000, min_vms: int = 5
                        ) -> QualityReport:
    """Run the expectations; never raises for bad data (see :func:`gate`)."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    logging.getLogger("great_expectations").setLevel(logging.ERROR)
    import great_expectations as gx

    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        return QualityReport(False, 0, [f"missing columns: {', '.join(missing)}"])
    frame = with_steps(df)
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = {"globally": False}
    source = context.data_sources.add_pandas("training")
    asset = source.add_dataframe_asset("trace")
    batch = asset.add_batch_definition_whole_dataframe("all").get_batch(
        batch_parameters={"dataframe": frame})
    result = batch.validate(_suite(min_rows))
    failures: list[str] = []
    results: list[dict[str, Any]] = []
    for r in result.results:
        cfg = r.expectation_config
        column = cfg.kwargs.get("column", "(table)")
        detail = r.result or {}
        entry = {"expectation": cfg.type, "column": column, "success": bool(r.success),
                 "unexpected_count": detail.get("unexpected_count"),
                 "sample": [str(v) for v in (detail.get("partial_unexpected_list") or [])[:5]]}
        results.append(entry)
        if not r.success:
            what = cfg.type.replace("expect_", "").replace("_", " ")
            count = detail.get("unexpected_count")
            observed = detail.get("observed_value")
            msg = f"{column}: {what}"
            if count is not None:
                msg += f" failed for {count} rows (e.g. {', '.join(entry['sample'])})"
            elif observed is not None:
                msg += f" (observed {observed})"
            if column == "step_s":
                msg += " - timestamps must strictly increase within each VM"
            failures.append(msg)
    vms = int(df["vm_id"].nunique())
    if vms < min_vms:
        failures.append(f"vm_id: only {vms} VMs; at least {min_vms} are needed to split by VM")
    return QualityReport(not failures, len(result.results), failures, results)


def gate(df: pd.DataFrame, **kwargs: Any) -> QualityReport:
    """The gate: the report if the data passes, :class:`QualityGateFailed` if not."""
    report = check_training_data(df, **kwargs)
    if not report.success:
        raise QualityGateFailed(report)
    return report
