"""Train, evaluate and (maybe) promote the sizing and forecasting models from a shell.

    python -m ml.sizing.train            # full run (all 50 VMs; sizing model + forecaster)
    python -m ml.sizing.train --quick    # small and fast (24 VMs)
    python -m ml.sizing.train --write-baseline   # also refresh the shipped risk table

Tracking goes to ``MLFLOW_TRACKING_URI`` or the local store under ``.runtime/mlflow``.
"""

from __future__ import annotations

import argparse
import json
import sys

from ml.sizing.pipeline import TrainConfig, run_all, write_shipped_baseline


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ml.sizing.train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small subsample, for tests")
    parser.add_argument("--max-vms", type=int, default=None)
    parser.add_argument("--no-prophet-features", action="store_true")
    parser.add_argument("--write-baseline", action="store_true",
                        help="write the run's option-risk table into the package")
    args = parser.parse_args(argv)
    conf: dict[str, object] = {"quick": args.quick}
    if args.max_vms is not None:
        conf["max_vms"] = args.max_vms
    if args.no_prophet_features:
        conf["use_prophet_features"] = False
    result = run_all(TrainConfig.from_conf(conf))
    print(result["sizing"]["table"])
    summary = {k: v for k, v in result.items() if k != "sizing"}
    summary["sizing"] = {k: v for k, v in result["sizing"].items() if k != "table"}
    print(json.dumps(summary, indent=2, default=str))
    if args.write_baseline:
        path = write_shipped_baseline(result["sizing"]["run_id"])
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
