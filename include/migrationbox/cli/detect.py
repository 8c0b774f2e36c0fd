"""``migrationbox detect --csv FILE``: run the healer's detector over exported metrics.

Prints the timestamp of each high-confidence anomaly (both models agree), one per line,
exactly as written in the file. ``--all`` prints every flagged point instead, tab
separated: timestamp, confidence, category, value, z-score, forecast score (``-`` where
a model had too little history to judge).

Exit codes: 0 done (whether or not anything was found), 2 the file or an option is bad
(the message names the line and field).
"""

from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "detect",
        help="detect anomalies in a timestamp,value CSV with the healer's two models",
        description=(
            "Replay the healer's detector over a CSV of timestamp,value rows (ISO 8601 or "
            "Unix epoch seconds, strictly increasing). Each point is judged only on the "
            "points before it. Prints the timestamp of each high-confidence anomaly (z-score "
            "and Prophet forecast interval agree), one per line."
        ),
    )
    parser.add_argument("--csv", required=True, metavar="FILE", help="timestamp,value CSV")
    parser.add_argument("--all", action="store_true",
                        help="also print low-confidence anomalies, with their scores")
    parser.add_argument("--window", type=int, default=288, metavar="N",
                        help="z-score window in points (default 288: a day of 5-min samples)")
    parser.add_argument("--threshold", type=float, default=3.0, metavar="Z",
                        help="z-score threshold (default 3.0)")
    parser.add_argument("--min-history", type=int, default=None, metavar="N",
                        help="points needed before model 1 judges (default min(30, window))")
    parser.add_argument("--retrain-hours", type=float, default=24.0, metavar="H",
                        help="model 2 retraining cadence in hours (default 24)")
    parser.set_defaults(handler=run)


def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def run(args: argparse.Namespace) -> int:
    from datetime import timedelta

    from migrationbox.healer.detect import (
        DetectorConfig,
        ForecastConfig,
        MetricCsvError,
        ZScoreConfig,
        detect,
        read_metric_csv,
    )

    prog = "migrationbox detect"
    try:
        zscore = ZScoreConfig(window=args.window, threshold=args.threshold,
                              min_history=args.min_history or min(30, max(2, args.window)))
        if args.retrain_hours <= 0:
            raise ValueError(f"--retrain-hours: must be positive, got {args.retrain_hours}")
        forecast = ForecastConfig(retrain_every=timedelta(hours=args.retrain_hours))
    except ValueError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    try:
        metric = read_metric_csv(args.csv)
    except MetricCsvError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    # Only high-confidence points are printed without --all, and those need model 1, so
    # model 2 may skip the chunks where model 1 saw nothing: same output, less fitting.
    config = DetectorConfig(zscore=zscore, forecast=forecast, lazy_forecast=not args.all)
    result = detect(metric.series, config)
    for anomaly in result.anomalies:
        stamp = metric.raw_timestamps[anomaly.position]
        if args.all:
            print("\t".join((stamp, anomaly.confidence.value, anomaly.category.value,
                             _fmt(anomaly.value, 4), f"z={_fmt(anomaly.z_score)}",
                             f"forecast={_fmt(anomaly.forecast_score)}")))
        elif anomaly.high_confidence:
            print(stamp)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the command on its own (``python -m migrationbox.cli.detect``)."""
    parser = argparse.ArgumentParser(prog="migrationbox")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["detect", *(sys.argv[1:] if argv is None else argv)])
    return int(args.handler(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
