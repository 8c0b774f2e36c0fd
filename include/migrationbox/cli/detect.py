"""``migrationbox detect --csv FILE``: run the healer's detector over exported metrics.

By default prints one line per **incident** (alert event), tab separated: the timestamp
of the point that opened it, of its last point above the threshold (``open`` if it had
not cleared when the file ends), ``peak=`` timestamp of its highest score, ``score=``
that score, the direction (``up``/``down``) and ``points=`` how many points were above
the threshold. A long anomaly is one line, not one per row.

``--scores`` prints every point instead: timestamp, value, score (``-`` before the
detector has enough history), and ``alert`` on the points that opened an incident.
``--rows`` prints the timestamps of the rows both of the older two models (z-score and
Prophet interval) flag, as before; ``--all`` adds their low-confidence rows with scores.

Real exports repeat timestamps (daylight-saving changes, agent restarts), reorder rows,
leave cells empty and have gaps: the command warns on stderr, naming each line, and
carries on (repeated rows kept, out-of-order rows sorted into place, rows without a usable
timestamp or value skipped, irregular sampling one warning naming the longest gap: a step
over 3x the median). ``--strict`` refuses such a file instead, naming its first bad line.

Exit codes: 0 done (whether or not anything was found), 2 the file or an option is bad
(the message names the line and field).
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from migrationbox.healer.detect import DetectorConfig, MetricCsv

#: warnings printed in full; the rest are counted
MAX_WARNINGS = 10


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "detect",
        help="detect anomalies (incidents) in a timestamp,value CSV with the healer's detector",
        description=(
            "Replay the healer's detector over a CSV of timestamp,value rows (ISO 8601 or "
            "Unix epoch seconds). Each point is judged only on the points before it. Prints "
            "one line per incident (alert event); --scores prints a score per point, "
            "--rows the rows the two older models flag."
        ),
    )
    parser.add_argument("--csv", required=True, metavar="FILE",
                        help="timestamp,value CSV (.gz accepted)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--scores", action="store_true",
                      help="print every point with its score and where alerts opened")
    mode.add_argument("--rows", action="store_true",
                      help="print high-confidence rows of the two-model detector (z-score "
                           "confirmed by a Prophet interval) instead of incidents")
    mode.add_argument("--all", action="store_true",
                      help="like --rows, also printing low-confidence rows with their scores")
    parser.add_argument("--strict", action="store_true",
                        help="refuse a file with repeated, out-of-order or missing "
                             "timestamps or values, or gaps in its sampling, instead of "
                             "warning")
    parser.add_argument("--window", type=int, default=None, metavar="N",
                        help="baseline window in points (default: 4000 for incidents, "
                             "288 for --rows)")
    parser.add_argument("--threshold", type=float, default=None, metavar="Z",
                        help="score threshold (default: 4.0 for incidents, z 3.0 for --rows)")
    parser.add_argument("--cooldown", type=int, default=None, metavar="N",
                        help="points after an alert before another may open (default 100)")
    parser.add_argument("--min-history", type=int, default=None, metavar="N",
                        help="points needed before the detector judges (default: 100 for "
                             "incidents, min(30, window) for --rows)")
    parser.add_argument("--retrain-hours", type=float, default=24.0, metavar="H",
                        help="--rows: model 2 retraining cadence in hours (default 24)")
    parser.set_defaults(handler=run)


def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None or value != value else f"{value:.{digits}f}"


def _warn(prog: str, warnings: list[str]) -> None:
    for message in warnings[:MAX_WARNINGS]:
        print(f"{prog}: warning: {message}", file=sys.stderr)
    if len(warnings) > MAX_WARNINGS:
        print(f"{prog}: warning: ... and {len(warnings) - MAX_WARNINGS} more such rows",
              file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    from migrationbox.healer.detect import IncidentConfig, MetricCsvError, read_metric_csv

    prog = "migrationbox detect"
    rows_mode = args.rows or args.all
    try:
        if rows_mode:
            config = _rows_config(args)
        else:
            defaults = IncidentConfig()
            window = args.window if args.window is not None else defaults.window
            config = IncidentConfig(
                window=window,
                threshold=args.threshold if args.threshold is not None else defaults.threshold,
                cooldown=args.cooldown if args.cooldown is not None else defaults.cooldown,
                min_history=args.min_history if args.min_history is not None
                else min(defaults.min_history, max(2, window)))
    except ValueError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    try:
        metric = read_metric_csv(args.csv, strict=args.strict)
    except MetricCsvError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    _warn(prog, metric.warnings)
    if rows_mode:
        return _print_rows(args, metric, config, prog)
    from migrationbox.healer.detect import IncidentDetector

    result = IncidentDetector(config).score(metric.series)
    stamps = metric.raw_timestamps
    if args.scores:
        frame = result.frame
        values = frame["value"].to_numpy(dtype=float)
        scores = frame["score"].to_numpy(dtype=float)
        for i, alert in enumerate(result.alerts):
            fields = [stamps[i], f"{values[i]:g}", _fmt(float(scores[i]))]
            if alert:
                fields.append("alert")
            print("\t".join(fields))
        return 0
    for incident in result.incidents:
        end = "open" if incident.end is None else stamps[incident.end_position]
        print("\t".join((stamps[incident.start_position], end,
                         f"peak={stamps[incident.peak_position]}",
                         f"score={_fmt(incident.peak_score)}", incident.direction,
                         f"points={incident.points}")))
    return 0


def _rows_config(args: argparse.Namespace) -> DetectorConfig:
    from datetime import timedelta

    from migrationbox.healer.detect import DetectorConfig, ForecastConfig, ZScoreConfig

    window = args.window if args.window is not None else 288
    zscore = ZScoreConfig(window=window,
                          threshold=args.threshold if args.threshold is not None else 3.0,
                          min_history=args.min_history or min(30, max(2, window)))
    if args.retrain_hours <= 0:
        raise ValueError(f"--retrain-hours: must be positive, got {args.retrain_hours}")
    forecast = ForecastConfig(retrain_every=timedelta(hours=args.retrain_hours))
    # Only high-confidence points are printed without --all, and those need model 1, so
    # model 2 may skip the chunks where model 1 saw nothing: same output, less fitting.
    return DetectorConfig(zscore=zscore, forecast=forecast, lazy_forecast=not args.all)


def _print_rows(args: argparse.Namespace, metric: MetricCsv, config: DetectorConfig,
                prog: str) -> int:
    from migrationbox.healer.detect import detect

    series = metric.series
    keep = ~series.index.duplicated(keep="last")
    if not keep.all():  # the two-model detector needs one value per timestamp
        dropped = [metric.lines[i] for i, k in enumerate(keep) if not k]
        _warn(prog, [f"{args.csv} line {line}: repeated timestamp; --rows keeps the later "
                     "row only" for line in dropped])
    stamps = [s for s, k in zip(metric.raw_timestamps, keep, strict=True) if k]
    result = detect(series[keep], config)
    for anomaly in result.anomalies:
        stamp = stamps[anomaly.position]
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
