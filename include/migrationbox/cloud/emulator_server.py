"""The emulator's server process: moto's own server, with CloudWatch ``GetMetricData``
answered from the datapoints of each query's metric only.

moto answers ``GetMetricData`` by scanning, for every query and every period, every
datapoint of *every* metric in the window. The cost is queries x periods x points of the
whole namespace: the healer's first read of a woken pass (about 70 series of one-second
points over 100 s, beside a lab publishing 16 services) took minutes on a busy 2-core
machine, longer than the healer may take to act. CloudWatch itself indexes by metric.

This wrapper keeps moto's code and answers unchanged: it runs moto's ``get_metric_data``
once per query, with the backend's datapoints narrowed to those of that query's metric
name (moto matches on the name and then namespace or dimensions, so no datapoint it would
have matched is left out). Requests with metric-math or Insights expressions go to moto
unchanged, since they combine queries. One lock serialises the narrowed calls (the server
is threaded and the narrowing is on the backend object).
"""

from __future__ import annotations

import sys
import threading
from collections import defaultdict
from datetime import datetime
from typing import Any

_lock = threading.Lock()


def install() -> None:
    """Wrap ``CloudWatchBackend.get_metric_data`` (idempotent)."""
    from moto.cloudwatch.models import CloudWatchBackend

    original = CloudWatchBackend.get_metric_data
    if getattr(original, "_migrationbox_indexed", False):
        return

    def get_metric_data(self: Any, queries: list[dict[str, Any]], start_time: datetime,
                        end_time: datetime, scan_by: str = "TimestampAscending"
                        ) -> list[dict[str, Any]]:
        if not queries or any("MetricStat" not in q for q in queries):
            return original(self, queries, start_time, end_time, scan_by)
        with _lock:
            by_name: dict[str, list[Any]] = defaultdict(list)
            for datum in self.get_all_metrics():
                by_name[datum.name].append(datum)
            results: list[dict[str, Any]] = []
            try:
                for query in queries:
                    name = query["MetricStat"]["Metric"]["MetricName"]
                    narrowed = by_name.get(name, [])
                    self.get_all_metrics = lambda narrowed=narrowed: narrowed
                    results += original(self, [query], start_time, end_time, scan_by)
            finally:
                self.__dict__.pop("get_all_metrics", None)
            return results

    get_metric_data._migrationbox_indexed = True  # type: ignore[attr-defined]
    get_metric_data._migrationbox_original = original  # type: ignore[attr-defined]
    CloudWatchBackend.get_metric_data = get_metric_data  # type: ignore[method-assign]


def main(argv: list[str] | None = None) -> None:
    install()
    from moto.server import main as moto_main

    moto_main(argv if argv is not None else sys.argv[1:])


if __name__ == "__main__":
    main()
