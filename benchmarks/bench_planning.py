"""Benchmark: validation/loading, planning and wave-DAG parse time at 1k / 10k / 100k servers.

Each stage runs in its own Python process so that its peak memory (ru_maxrss) is its own;
the stage's input comes from files the previous stage wrote. Prints one table.

    .venv/bin/python benchmarks/bench_planning.py [--sizes 1000 10000 100000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

STAGE_CODE = r"""
import json, resource, sys, time, os
from pathlib import Path
stage, work, n = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
t0 = time.perf_counter()
extra = {}
if stage == "generate":
    from migrationbox.inventory.synthetic import generate_estate, write_estate
    records = generate_estate(n, seed=7)
    write_estate(records, work / "estate.jsonl")
    extra["dependencies"] = sum(len(r.get("network_dependencies", [])) for r in records)
elif stage == "validate":
    from migrationbox.inventory.validation import validate_inventory
    report = validate_inventory(work / "estate.jsonl")
    extra["valid"] = len(report.valid); extra["quarantined"] = len(report.quarantined)
elif stage == "plan":
    from migrationbox.inventory.models import Estate
    from migrationbox.inventory.validation import validate_inventory
    from migrationbox.planning.builder import build_plan
    from migrationbox.planning.export import plan_to_json, write_wave_spec
    from migrationbox.planning.models import PlanSettings
    report = validate_inventory(work / "estate.jsonl")
    t_load = time.perf_counter() - t0
    t1 = time.perf_counter()
    plan = build_plan(Estate(name="bench", servers=report.valid), PlanSettings())
    extra["plan_s"] = round(time.perf_counter() - t1, 3)
    extra["load_s"] = round(t_load, 3)
    extra["waves"] = len(plan.waves)
    extra["move_groups"] = len(plan.move_groups)
    extra["cycles"] = sum(1 for g in plan.move_groups if g.is_cycle)
    (work / "plans").mkdir(exist_ok=True)
    write_wave_spec(plan, work / "plans")
elif stage == "parse":
    os.environ["MIGRATIONBOX_PLANS_DIR"] = str(work / "plans")
    from airflow.dag_processing.dagbag import DagBag
    t1 = time.perf_counter()
    bag = DagBag(dag_folder=sys.argv[4], safe_mode=False)
    extra["parse_s"] = round(time.perf_counter() - t1, 3)
    extra["dags"] = len(bag.dags); extra["import_errors"] = len(bag.import_errors)
    extra["tasks"] = sum(len(d.tasks) for d in bag.dags.values())
elapsed = time.perf_counter() - t0
peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"seconds": round(elapsed, 3), "peak_mib": round(peak_mib, 1), **extra}))
"""


def run_stage(stage: str, work: Path, n: int) -> dict:
    env = dict(os.environ)
    env.setdefault("AIRFLOW_HOME", str(work / "airflow"))
    env["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
    env["MIGRATIONBOX_HOME"] = str(work / "runtime")
    args = [sys.executable, "-c", STAGE_CODE, stage, str(work), str(n), str(REPO / "dags")]
    out = subprocess.run(args, env=env, capture_output=True, text=True, timeout=3600)
    if out.returncode != 0:
        raise SystemExit(f"stage {stage} at n={n} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    args = parser.parse_args()
    rows = []
    for n in args.sizes:
        with tempfile.TemporaryDirectory(prefix=f"mbbench-{n}-") as tmp:
            work = Path(tmp)
            t = time.perf_counter()
            gen = run_stage("generate", work, n)
            val = run_stage("validate", work, n)
            plan = run_stage("plan", work, n)
            parse = run_stage("parse", work, n)
            rows.append((n, gen, val, plan, parse, time.perf_counter() - t))
            print(f"n={n}: done in {rows[-1][-1]:.1f}s", file=sys.stderr)
    print("\nMigrationBox planning benchmark (each stage in its own process; peak = ru_maxrss)")
    header = (
        f"{'servers':>8} {'deps':>8} | {'validate+load s':>15} {'peak MiB':>8} | "
        f"{'plan s':>7} {'peak MiB':>8} {'waves':>6} {'groups':>7} {'cycles':>6} | "
        f"{'parse s':>7} {'peak MiB':>8} {'DAGs':>5} {'tasks':>6} {'errors':>6}"
    )
    print(header)
    print("-" * len(header))
    for n, gen, val, plan, parse, _ in rows:
        print(
            f"{n:>8} {gen['dependencies']:>8} | {val['seconds']:>15.2f} {val['peak_mib']:>8.0f} | "
            f"{plan['plan_s']:>7.2f} {plan['peak_mib']:>8.0f} {plan['waves']:>6} "
            f"{plan['move_groups']:>7} {plan['cycles']:>6} | {parse['parse_s']:>7.2f} "
            f"{parse['peak_mib']:>8.0f} {parse['dags']:>5} {parse['tasks']:>6} "
            f"{parse['import_errors']:>6}"
        )
    print(
        "\nvalidate+load: JSON Lines → pydantic records with estate-level checks; plan: graph, "
        "PageRank, SCC move groups, waves, sizing (excludes load); parse: DagBag of dags/ "
        "reading the plan's wave spec."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
