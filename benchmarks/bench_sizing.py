"""Benchmark: sizing + TCO for 10,000 servers x 3 clouds, model training, and the table of
risk *and* capacity/cost for every sizing option, rule and the model on held-out VMs.

Each stage runs in its own Python process so its peak memory (ru_maxrss) is its own.

1. ``size``: three options x AWS/Azure/GCP with TCO for every server of a synthetic
   estate (rules only; risk from the shipped measured table);
2. ``train``: the sizing pipeline on the shipped Bitbrains trace into a throw-away
   MLflow store (default: all 50 VMs, as ``make demo`` trains; ``--quick``: the 24-VM
   sample the tests use), printing the split and the table (models vs rules);
3. ``size-model``: the same estate sized again with the freshly trained champion.

    .venv/bin/python benchmarks/bench_sizing.py [--servers 10000] [--quick]
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
    extra["by_model"] = sum(1 for s in result.servers for o in s.options
                            if o.safe_variant is not None and o.safe_variant.method == "ml")
    for cloud in ("aws", "azure", "gcp"):
        extra[f"{cloud}_balanced_3y_month"] = round(sum(
            s.option("balanced").clouds[cloud].cost.monthly_3y
            for s in result.servers if s.option("balanced").clouds[cloud].cost), 0)
    extra["onprem_month"] = round(sum(s.onprem.monthly for s in result.servers), 0)
elif stage == "train":
    from ml.sizing.pipeline import TrainConfig, check_data, train_sizing, promote_sizing
    conf = TrainConfig.from_conf({} if full else {"quick": True})
    extra["config"] = {"max_vms": conf.max_vms, "seed": conf.seed}
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
    extra["split"] = res["split"]
    extra["metrics"] = res["metrics"]
elif stage == "splits":
    from ml.sizing.pipeline import TrainConfig, matched_comparison
    extra["splits"] = matched_comparison(TrainConfig.from_conf({} if full else {"quick": True}))
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
    parser.add_argument("--quick", action="store_true",
                        help="train on the 24-VM sample the tests use (faster, noisier)")
    parser.add_argument("--skip-training", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mbbench-sizing-") as tmp:
        work = Path(tmp)
        t = time.perf_counter()
        full = not args.quick
        rules = run_stage("size", work, args.servers, full)
        print(f"size (rules): {rules['seconds']:.1f}s", file=sys.stderr)
        train = model = splits = None
        if not args.skip_training:
            train = run_stage("train", work, args.servers, full)
            print(f"train: {train['seconds']:.1f}s", file=sys.stderr)
            model = run_stage("size-model", work, args.servers, full)
            splits = run_stage("splits", work, args.servers, full)
            print(f"splits: {splits['seconds']:.1f}s", file=sys.stderr)
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
    if model is not None:
        print(f"with the champion: {model['by_model']} unsafe options get the model's capacity as "
              "their safe variant (the cheapest method within the 10% bar for that server)")
    if train is not None:
        _print_training(train, model, full)
    if splits is not None:
        _print_splits(splits["splits"])
    print(f"\ntotal {total:.0f}s")
    return 0


def _print_splits(rows: list[dict]) -> None:
    print("\nThe same comparison on other disjoint VM splits (same time split; ML at the rule's "
          "training-VM risk vs p95 x 1.3, discovery figures):\n")
    print("| split seed | test episodes | risk asked | short: ML / rule | vCPU: ML / rule | "
          "GiB: ML / rule | USD/server-month: ML / rule |")
    print("|---|---|---|---|---|---|---|")
    tot = {"n": 0, "ml": 0.0, "rule": 0.0, "ml_v": 0.0, "rule_v": 0.0, "ml_g": 0.0,
           "rule_g": 0.0, "ml_usd": 0.0, "rule_usd": 0.0}
    for r in rows:
        ml, rule, n = r["ml"], r["rule"], r["episodes"]
        print(f"| {r['seed']} | {n} | {r['matched_risk']:.1%} | {ml['underprov_rate']:.1%} / "
              f"{rule['underprov_rate']:.1%} | {ml['mean_capacity_vcpu']:.2f} / "
              f"{rule['mean_capacity_vcpu']:.2f} | {ml['mean_capacity_gib']:.2f} / "
              f"{rule['mean_capacity_gib']:.2f} | {ml['monthly_usd']:.2f} / "
              f"{rule['monthly_usd']:.2f} |")
        tot["n"] += n
        for side, src in (("ml", ml), ("rule", rule)):
            tot[side] += src["underprov_rate"] * n
            tot[f"{side}_v"] += src["mean_capacity_vcpu"] * n
            tot[f"{side}_g"] += src["mean_capacity_gib"] * n
            tot[f"{side}_usd"] += src["monthly_usd"] * n
    n = max(tot["n"], 1)
    print(f"| pooled | {tot['n']} | | {tot['ml'] / n:.1%} / {tot['rule'] / n:.1%} | "
          f"{tot['ml_v'] / n:.2f} / {tot['rule_v'] / n:.2f} | {tot['ml_g'] / n:.2f} / "
          f"{tot['rule_g'] / n:.2f} | {tot['ml_usd'] / n:.2f} / {tot['rule_usd'] / n:.2f} |")


def _print_training(train: dict, model: dict | None, full: bool) -> None:
    split = train["split"]
    mode = "all 50 VMs" if full else f"quick: {train['config']['max_vms']} VMs"
    print(f"\nTraining ({mode}, no Prophet features): quality gate {train['gate_s']:.1f}s, "
          f"episodes {train['episodes_s']:.1f}s, model fit (incl. cross-conformal folds) "
          f"{train['fit_s']:.1f}s, whole run incl. evaluation + MLflow {train['train_s']:.1f}s, "
          f"peak {train['peak_mib']:.0f} MiB")
    print(f"promotion: {train['promote']}")
    print(f"model used for sizing: {model['model'] if model else 'n/a'}")
    print("\nSplit (Bitbrains GWA-T-12 Rnd, 5-min samples, Jul-Sep 2013; episode = 7-day window "
          "-> next 30 days' p95):")
    print(f"  trained on VMs {split['train_vms']} ({len(split['train_vms'])} VMs), episodes "
          f"starting days 0-{split['cut_day'] - split['window_days'] - split['horizon_days']:g} "
          f"(all end before day {split['cut_day']:g}): {split['train_episodes']} episodes")
    print(f"  calibrated: {split['calibration']} (each VM scored by models fitted without it)")
    print(f"  tested on VMs {split['test_vms']} ({len(split['test_vms'])} other VMs), episodes "
          f"starting day {split['cut_day']:g} or later: {split['test_episodes']} episodes")
    print(f"  model compared with p95 x 1.3 at that rule's training-VM risk: "
          f"{split['matched_risk']:.1%}")
    print("\nHeld-out table (share short = future 30-day p95 above the capacity; capacity = "
          "mean recommended vCPU and GiB; USD/server-month = cheapest AWS us-east-1 candidate "
          "instance fitting it, on demand):\n")
    print(train["table"])
    m = train["metrics"]

    def axis(key: str) -> tuple[float, ...]:
        return tuple(m.get(f"{key}.{k}", float("nan")) for k in
                     ("underprov_rate", "mean_capacity_vcpu", "mean_capacity_gib",
                      "monthly_usd"))

    ml, rule = axis("ml_discovery_matched"), axis("azure_migrate")
    names = ("share short", "vCPU", "GiB", "USD/server-month")
    verdict = ", ".join(
        f"{n} {a:.3g} vs {b:.3g} ({'lower' if a < b else 'equal' if a == b else 'HIGHER'})"
        for n, a, b in zip(names, ml, rule, strict=True))
    print(f"\nML (discovery figures) at the rule's risk vs p95 x 1.3: {verdict}")
    print("\nNot covered: one per-VM trace only (Bitbrains Rnd; the Alibaba 2018 and Google 2019 "
          "files shipped beside it are fleet-wide averages, not per-VM demand, so they cannot "
          "train or test per-server sizing); 15 held-out VMs is a small sample and episodes of "
          "one VM are correlated (read differences of a few points as noise); the model's "
          "configuration was chosen among a handful of variants while looking at this held-out "
          "split, so its held-out figures are optimistic; no per-interval maxima in the trace "
          "(sizing on cpu_max_pct is not backtested); 60/90-day horizons and growth beyond the "
          "current allocation are not backtested; prices are AWS us-east-1 on demand only.")


if __name__ == "__main__":
    sys.exit(main())
