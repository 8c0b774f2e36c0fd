"""Benchmark: sizing + TCO for 10,000 servers x 3 clouds, model training time, accuracy table.

Each stage runs in its own Python process so its peak memory (ru_maxrss) is its own.

1. ``size``: three options x AWS/Azure/GCP with TCO for every server of a synthetic
   estate (rules only; risk from the shipped measured table);
2. ``train``: the sizing pipeline on the Bitbrains trace into a throw-away MLflow
   store (``--full``: all 50 VMs with Prophet forecast features; default: the quick
   subsample the tests use), printing the accuracy table (models vs rules);
3. ``size-model``: the same estate sized again with the freshly trained champion.

    .venv/bin/python benchmarks/bench_sizing.py [--servers 10000] [--full]
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
import json, resource, sys, time
from pathlib import Path
stage, work, n, full = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1"
sys.path.insert(0, sys.argv[5])
extra = {}
t0 = time.perf_counter()
if stage in ("size", "size-model"):
    from migrationbox.inventory.models import ServerRecord
    from migrationbox.inventory.synthetic import generate_estate
    from migrationbox.sizing.options import SizingEngine, size_estate
    records = [ServerRecord.model_validate(r) for r in generate_estate(n, seed=11)]
    extra["load_s"] = round(time.perf_counter() - t0, 3)
    t1 = time.perf_counter()
    engine = SizingEngine.with_champion() if stage == "size-model" else SizingEngine()
    extra["engine_s"] = round(time.perf_counter() - t1, 3)
    t2 = time.perf_counter()
    result = size_estate(records, engine)
    extra["size_s"] = round(time.perf_counter() - t2, 3)
    extra["servers"] = len(result.servers); extra["failed"] = len(result.failed)
    extra["options"] = sum(len(s.options) for s in result.servers)
    extra["choices"] = sum(len(o.clouds) for s in result.servers for o in s.options)
    extra["unsafe"] = sum(o.unsafe for s in result.servers for o in s.options)
    extra["model"] = engine.model_label
    for cloud in ("aws", "azure", "gcp"):
        extra[f"{cloud}_balanced_3y_month"] = round(sum(
            s.option("balanced").clouds[cloud].cost.monthly_3y
            for s in result.servers if s.option("balanced").clouds[cloud].cost), 0)
    extra["onprem_month"] = round(sum(s.onprem.monthly for s in result.servers), 0)
elif stage == "train":
    from ml.sizing.pipeline import TrainConfig, check_data, train_sizing, promote_sizing
    conf = TrainConfig.from_conf({} if full else {"quick": True})
    t1 = time.perf_counter()
    check_data(conf)
    extra["gate_s"] = round(time.perf_counter() - t1, 3)
    t2 = time.perf_counter()
    res = train_sizing(conf)
    extra["train_s"] = round(time.perf_counter() - t2, 3)
    extra["fit_s"] = round(res["metrics"]["fit_seconds"], 3)
    extra["episodes_s"] = round(res["metrics"]["episodes_seconds"], 3)
    extra["promote"] = promote_sizing(res, conf)["reason"]
    extra["table"] = res["table"]
elapsed = time.perf_counter() - t0
peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"seconds": round(elapsed, 3), "peak_mib": round(peak_mib, 1), **extra}))
"""


def run_stage(stage: str, work: Path, n: int, full: bool) -> dict:
    env = dict(os.environ)
    env["MIGRATIONBOX_HOME"] = str(work / "runtime")
    env.pop("MLFLOW_TRACKING_URI", None)
    args = [sys.executable, "-c", STAGE_CODE, stage, str(work), str(n), "1" if full else "0",
            str(REPO)]
    out = subprocess.run(args, env=env, capture_output=True, text=True, timeout=7200)
    if out.returncode != 0:
        raise SystemExit(f"stage {stage} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--servers", type=int, default=10_000)
    parser.add_argument("--full", action="store_true",
                        help="train on all 50 VMs with Prophet features (minutes)")
    parser.add_argument("--skip-training", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mbbench-sizing-") as tmp:
        work = Path(tmp)
        t = time.perf_counter()
        rules = run_stage("size", work, args.servers, args.full)
        print(f"size (rules): {rules['seconds']:.1f}s", file=sys.stderr)
        train = model = None
        if not args.skip_training:
            train = run_stage("train", work, args.servers, args.full)
            print(f"train: {train['seconds']:.1f}s", file=sys.stderr)
            model = run_stage("size-model", work, args.servers, args.full)
        total = time.perf_counter() - t

    print("\nMigrationBox sizing benchmark (each stage in its own process; peak = ru_maxrss)")
    header = (f"{'stage':<22} {'servers':>8} {'cloud choices':>13} {'load s':>7} "
              f"{'engine s':>8} {'size+TCO s':>10} {'per server ms':>13} {'peak MiB':>8}")
    print(header)
    print("-" * len(header))
    for name, r in (("rules (no model)", rules), ("with champion model", model)):
        if r is None:
            continue
        print(f"{name:<22} {r['servers']:>8} {r['choices']:>13} {r['load_s']:>7.2f} "
              f"{r['engine_s']:>8.2f} {r['size_s']:>10.2f} "
              f"{1000 * r['size_s'] / max(r['servers'], 1):>13.3f} {r['peak_mib']:>8.0f}")
    print(f"\nnot sized: {rules['failed']}; options flagged unsafe (with a safe variant): "
          f"{rules['unsafe']} of {rules['options']}")
    print("estate monthly, Balanced with 3-year commitment (safe variants not substituted): "
          + ", ".join(f"{c.upper()} ${rules[f'{c}_balanced_3y_month']:,.0f}"
                      for c in ("aws", "azure", "gcp"))
          + f"; on-prem ${rules['onprem_month']:,.0f}")
    if train is not None:
        mode = "full: 50 VMs, Prophet features" if args.full else "quick: 24 VMs, no Prophet"
        print(f"\nTraining ({mode}): quality gate {train['gate_s']:.1f}s, episodes "
              f"{train['episodes_s']:.1f}s, ensemble fit {train['fit_s']:.1f}s, whole run "
              f"incl. evaluation + MLflow {train['train_s']:.1f}s, peak {train['peak_mib']:.0f} "
              f"MiB")
        print(f"promotion: {train['promote']}")
        print(f"model used for sizing: {model['model'] if model else 'n/a'}")
        print("\nAccuracy on held-out VMs (7-day baseline -> next 30 days, Bitbrains):\n")
        print(train["table"])
    print(f"\ntotal {total:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
