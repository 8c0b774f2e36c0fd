"""Healer benchmark: per chaos scenario, time to detection, decision and verified recovery,
and what a sensing pass costs (the scheduler's share: ``bench_sensing_cost.py``).

    .venv/bin/python benchmarks/bench_healer.py [--baseline 30] [--scenarios cpu_burn ...]

Starts its own AWS emulator (moto server) and lab on free loopback ports in a temporary
folder, marks a small estate's wave completed, publishes the lab's measured metrics to
CloudWatch every second, trains the forecasters on a baseline, then for each scenario:
inject the fault, run sensing passes back to back (``Healer.run_pass``, what the heal
DAG's task loops over) until the incident is resolved. A scenario the matrix leaves to
people (the slow partner API: confidence 0.82, no auto-heal) ends at the alert; the
approval scenarios (lock chain on PostgreSQL, corrupt rows restored from the backup) are
approved at once.

Times (seconds, from the injection):
  detected  the first pass whose readings show the fault (its matrix condition holds,
            or the 5-of-5 health rule counts a failure);
  decided   the decision of the pass that acted (the matrix's "for N s" is scaled by
            ``--sustain-scale`` so a 5-minute rule becomes 6 s);
  recovered the remediation's verification saw the metric back (MTTR = recovered - detected,
            the plan's definition).
The sensing cadence here is "back to back" (each pass ~1-3 s); the heal DAG's default
interval is 10 s, which adds up to 10 s to detection.

Time to heal through Airflow itself (the estate watch waking the heal DAG on a real
platform, p50/p95 idle and busy, with the load average beside each):
``benchmarks/bench_heal_time.py``; ``--heal-time-runs N`` runs it after this table (N
idle and N busy runs, in a subprocess: it starts its own platform).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "include"))


def main(argv: list[str] | None = None) -> int:
    from migrationbox.healer.chaoslab import ALERT_SCENARIOS, SCENARIOS

    ap = argparse.ArgumentParser()
    ap.add_argument("--baseline", type=float, default=30.0)
    ap.add_argument("--sustain-scale", type=float, default=0.02)
    ap.add_argument("--scenarios", nargs="*", default=[*SCENARIOS, *ALERT_SCENARIOS])
    ap.add_argument("--timeout", type=float, default=90.0)
    ap.add_argument("--no-risky", dest="risky", action="store_false",
                    help="skip the approval scenarios (lock chain, data corruption)")
    ap.add_argument("--heal-time-runs", type=int, default=0,
                    help="then run bench_heal_time.py with this many idle and busy runs")
    args = ap.parse_args(argv)

    root = Path(tempfile.mkdtemp(prefix="bench-healer-"))
    os.environ["MIGRATIONBOX_HOME"] = str(root / "runtime")
    os.environ["MIGRATIONBOX_STORE_URL"] = f"sqlite:///{root / 'store.db'}"
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{root / 'mlflow.db'}"
    os.environ["MIGRATIONBOX_HEAL_INTEGRITY_EVERY_S"] = "0"  # row check on every pass
    from migrationbox.cloud.emulator import EmulatorProcess

    emulator = EmulatorProcess(log_path=root / "moto.log").start()
    os.environ["AIRFLOW_CONN_AWS_DEFAULT"] = emulator.airflow_connection()
    from migrationbox.healer.chaoslab import ChaosEstate
    from migrationbox.healer.runtime import Healer, HealerSettings
    from migrationbox.healer.sensing import SensingConfig
    from migrationbox.store.db import engine

    chaos = ChaosEstate(f"bench{uuid.uuid4().hex[:6]}", root, emulator.url)
    rows = []
    try:
        chaos.up()
        t0 = time.perf_counter()
        chaos.baseline(args.baseline)
        print(f"baseline {args.baseline:g} s + forecaster training: "
              f"{time.perf_counter() - t0:.1f} s")
        healer = Healer(engine(), HealerSettings(
            sensing=SensingConfig(sustain_scale=args.sustain_scale), verify_timeout_s=30),
            notifiers=[])
        pass_times: list[float] = []
        monitoring_calls = 0
        for name in args.scenarios:
            spec = SCENARIOS.get(name) or ALERT_SCENARIOS[name]
            server, row = spec["server"], spec["row"]
            injected = time.time()
            chaos.inject(name)
            detected = decided = recovered = None
            outcome = "timeout"
            while time.time() - injected < args.timeout:
                p0 = time.perf_counter()
                report = healer.run_pass(chaos.estate, chaos.targets)
                pass_times.append(time.perf_counter() - p0)
                monitoring_calls += report.monitoring_calls
                seen = [n for n in report.watching if n.startswith(f"{server}:")]
                mine = [s for s in report.situations
                        if s.server_id == server and s.anomaly_type == row]
                if (seen or mine) and detected is None:
                    detected = datetime.fromisoformat(report.started_at).timestamp()
                acted = [s for s in mine if s.outcome in ("auto_heal", "alert")]
                if acted:
                    s = acted[0]
                    decided = datetime.fromisoformat(s.decided_at).timestamp()
                    if s.outcome == "alert":  # the matrix leaves it to people
                        outcome = "alerted people (matrix: no auto-heal)"
                        break
                    if s.resolved_at:
                        recovered = datetime.fromisoformat(s.resolved_at).timestamp()
                    outcome = "healed" if s.remediation_success else "rolled back"
                    break
            chaos.clear(server)
            rows.append((name, row, detected and detected - injected,
                         decided and decided - injected, recovered and recovered - injected,
                         (recovered - detected) if recovered and detected else None, outcome))
            time.sleep(2.0)
        for risky in ("blocking_lock", "data_corruption"):
            if args.risky and chaos.supports(risky):
                rows.append(_risky(chaos, healer, args.timeout, risky))
        # ------------------------------------------------------------ report
        def f(v: float | None) -> str:
            return "-" if v is None else f"{v:6.1f}"

        print()
        print("| scenario | matrix row | detected (s) | decided (s) | recovered (s) | "
              "MTTR (s) | outcome |")
        print("|---|---|---|---|---|---|---|")
        for name, row, det, dec, rec, mttr, outcome in rows:
            print(f"| {name} | {row} | {f(det)} | {f(dec)} | {f(rec)} | {f(mttr)} | "
                  f"{outcome} |")
        print()
        quiet = [healer.run_pass(chaos.estate, chaos.targets) for _ in range(5)]
        quiet_s = sorted(float(r.timings_s.get("total", 0)) for r in quiet)
        mean_pass = sum(quiet_s) / len(quiet_s)
        targets = len(chaos.targets)
        with_metrics = sum(1 for t in chaos.targets if t.service)
        per_hour = 3600 / 10  # the heal DAG's default interval_s
        print(f"sensing pass (quiet, {targets} targets, {with_metrics} with metrics): mean "
              f"{mean_pass:.2f} s, max {quiet_s[-1]:.2f} s; during chaos mean "
              f"{sum(pass_times) / len(pass_times):.2f} s over {len(pass_times)} passes")
        print(f"monitoring API: {monitoring_calls / max(1, len(pass_times)):.2f} "
              "GetMetricData call(s) per pass")
        print("one hour of sensing at a 10 s interval, from these passes (the scheduler's "
              "and metadata DB's share is measured by benchmarks/bench_sensing_cost.py):")
        print(f"  passes: {per_hour:.0f}; worker busy time: {per_hour * mean_pass / 60:.1f} "
              f"min/h; health-probe rows: {per_hour * targets:.0f}/h; "
              f"GetMetricData calls: {per_hour:.0f}/h")
    finally:
        chaos.down()
        emulator.stop()
    if args.heal_time_runs:
        import subprocess

        env = {k: v for k, v in os.environ.items() if not k.startswith(
            ("MIGRATIONBOX_", "MLFLOW_", "AIRFLOW_CONN_"))}
        print("\ntime to heal through Airflow (benchmarks/bench_heal_time.py):", flush=True)
        return subprocess.run([sys.executable, str(Path(__file__).with_name(
            "bench_heal_time.py")), "--runs", str(args.heal_time_runs)], env=env,
            check=False).returncode
    return 0


def _risky(chaos, healer, timeout: float, scenario: str) -> tuple:
    """A risky fix (the lock chain's kill, the corruption's restore): "decided" is when the
    healer asked for approval; the approval is given at once here (a person's thinking
    time is not the healer's), so "recovered" is ask + the approved action + its
    verification."""
    from migrationbox.healer.chaoslab import RISKY_SCENARIOS

    server, row = RISKY_SCENARIOS[scenario]["server"], RISKY_SCENARIOS[scenario]["row"]
    injected = time.time()
    chaos.inject(scenario)
    detected = decided = recovered = None
    outcome = "timeout"
    try:
        while time.time() - injected < timeout:
            report = healer.run_pass(chaos.estate, chaos.targets)
            if detected is None and (any(n.startswith(f"{server}:")
                                         for n in report.watching) or report.situations):
                detected = datetime.fromisoformat(report.started_at).timestamp()
            asked = [s for s in report.situations if s.server_id == server
                     and s.anomaly_type == row and s.outcome == "needs_approval"]
            if asked:
                detected = detected or datetime.fromisoformat(report.started_at).timestamp()
                decided = datetime.fromisoformat(asked[0].decided_at).timestamp()
                incident = healer.execute_approved(asked[0].incident_id, "bench")
                if incident.resolved_at:
                    recovered = incident.resolved_at.timestamp()
                outcome = f"approved, {incident.status.value}"
                break
            time.sleep(0.5)
    finally:
        chaos.release_locks()
    return (scenario, row, detected and detected - injected,
            decided and decided - injected, recovered and recovered - injected,
            (recovered - detected) if recovered and detected else None, outcome)


if __name__ == "__main__":
    sys.exit(main())
