"""``migrationbox size``: three sizing options per server for AWS, Azure and GCP, with TCO.

    migrationbox size include/estates/sample --cloud all
    migrationbox size ESTATE --format json > sizing.json
    migrationbox size --history cpu_mem.csv --vcpu 8 --memory-gib 32
    migrationbox size ESTATE --history srv-007.csv          # history of one estate server
    migrationbox prices refresh --cloud azure --region westeurope --source prices.json
    migrationbox prices show --cloud gcp --region europe-west1

Exit codes: 0 every server sized in every cloud asked for; 1 some server or cloud could
not be sized (the rest are still printed, each problem is named); 2 the input could
not be used at all.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

CLOUD_NAMES = {"aws": "AWS", "azure": "Azure", "gcp": "GCP"}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "size",
        help="three sizing options per server (AWS/Azure/GCP) with TCO and measured risk",
        description=(
            "Size every server of an estate (folder, .json or .jsonl of discovery records) "
            "into the plan's Conservative / Balanced / Aggressive options, per cloud and "
            "region, with monthly cost on demand and with commitments, savings versus "
            "on-prem, and the under-provisioning rate each option showed on the backtest. "
            "A utilisation history CSV (timestamp, cpu_pct, mem_pct, ...) sizes from "
            "exported monitoring data instead of the discovery baseline."
        ),
    )
    parser.add_argument("path", nargs="?", help="estate folder, .json or .jsonl file")
    parser.add_argument("--cloud", choices=("aws", "azure", "gcp", "all"), default="all")
    parser.add_argument("--region", action="append", default=[], metavar="CLOUD=REGION",
                        help="region per cloud (repeatable), e.g. aws=eu-west-1; defaults: "
                             "aws=us-east-1, azure=eastus, gcp=us-central1")
    parser.add_argument("--format", choices=("text", "json"), default="text")
    parser.add_argument("--history", metavar="CSV",
                        help="utilisation history: timestamp, cpu_pct, mem_pct [, more]")
    parser.add_argument("--server-id", help="which estate server the history belongs to "
                                            "(default: the CSV file name without .csv)")
    parser.add_argument("--vcpu", type=int, help="current vCPUs (history without an estate)")
    parser.add_argument("--memory-gib", type=float, help="current memory in GiB (history "
                                                         "without an estate)")
    parser.add_argument("--disk-gb", type=float, default=0.0,
                        help="current disk in GB (history without an estate)")
    parser.add_argument("--os", default="Linux", help="OS type (history without an estate)")
    parser.add_argument("--assumptions", metavar="JSON",
                        help="override pricing assumptions (commitments, licences, egress)")
    parser.add_argument("--onprem", metavar="JSON", help="override the on-prem cost model")
    parser.add_argument("--max-risk", type=float, default=0.10,
                        help="measured under-provisioning rate above which an option is "
                             "unsafe (default 0.10)")
    parser.add_argument("--no-model", action="store_true",
                        help="do not load the champion model from the MLflow registry")
    parser.set_defaults(handler=run)

    prices = subparsers.add_parser(
        "prices", help="show or refresh the instance price catalogs",
        description="Show a cloud region's catalog (with the date of its prices) or refresh "
                    "it from the cloud's public price format.")
    sub = prices.add_subparsers(dest="prices_command", metavar="ACTION", required=True)
    show = sub.add_parser("show", help="summarise a cloud region's catalog")
    show.add_argument("--cloud", choices=("aws", "azure", "gcp"), required=True)
    show.add_argument("--region")
    show.add_argument("--type", dest="type_name", help="one machine type in detail")
    show.set_defaults(handler=run_prices_show)
    refresh = sub.add_parser(
        "refresh", help="parse the cloud's public price file and use it for this region",
        description="AWS: Price List bulk JSON (offers/v1.0/aws/AmazonEC2/current/<region>/"
                    "index.json). Azure: Retail Prices API JSON (prices.azure.com/api/retail/"
                    "prices, one page or a list of pages). GCP: Cloud Billing Catalog SKUs "
                    "JSON (cloudbilling.googleapis.com/v1/services/6F81-5844-456A/skus). "
                    "SOURCE is a file, or an https URL to fetch (Azure pages are followed).")
    refresh.add_argument("--cloud", choices=("aws", "azure", "gcp"), required=True)
    refresh.add_argument("--region", required=True)
    refresh.add_argument("--source", required=True, help="file path or https URL")
    refresh.add_argument("--as-of", help="date of the prices (default: from the source, "
                                         "else today)")
    refresh.set_defaults(handler=run_prices_refresh)


def _regions(values: list[str]) -> dict[str, str]:
    out = {}
    for value in values:
        cloud, sep, region = value.partition("=")
        if not sep or cloud not in CLOUD_NAMES or not region:
            raise ValueError(f"--region {value!r}: expected CLOUD=REGION with CLOUD one of "
                             f"aws, azure, gcp")
        out[cloud] = region
    return out


def run(args: argparse.Namespace) -> int:
    from migrationbox.sizing.clouds import load_assumptions
    from migrationbox.sizing.history import HistoryError, load_history
    from migrationbox.sizing.onprem import load_onprem_model
    from migrationbox.sizing.options import SizingEngine, size_estate

    err = sys.stderr
    if not args.path and not args.history:
        print("migrationbox size: give an estate PATH, or --history CSV with --vcpu and "
              "--memory-gib", file=err)
        return 2
    try:
        regions = _regions(args.region)
        assumptions = load_assumptions(args.assumptions)
        onprem = load_onprem_model(args.onprem)
    except ValueError as exc:
        print(f"migrationbox size: {exc}", file=err)
        return 2
    clouds = ["aws", "azure", "gcp"] if args.cloud == "all" else [args.cloud]
    kwargs: dict[str, Any] = {"clouds": clouds, "regions": regions, "assumptions": assumptions,
                              "onprem": onprem, "max_risk": args.max_risk}
    engine = (SizingEngine(model_label="rules only (--no-model)", **kwargs) if args.no_model
              else SizingEngine.with_champion(**kwargs))

    history = None
    history_problem: str | None = None
    if args.history:
        try:
            history = load_history(args.history)
        except HistoryError as exc:
            history_problem = str(exc)

    exit_code = 0
    servers: list[Any] = []
    pre_failed: list[tuple[str, str]] = []
    if args.path:
        from migrationbox.inventory.loaders import UnreadablePath
        from migrationbox.inventory.validation import validate_inventory

        try:
            report = validate_inventory(args.path, unknown_dependencies="warn")
        except UnreadablePath as exc:
            print(f"migrationbox size: cannot read {exc}", file=err)
            return 2
        servers = list(report.valid)
        for q in report.quarantined:
            pre_failed.append((q.record, "invalid discovery record: " + "; ".join(
                f"{i.field}: {i.message}" for i in q.issues)))
    histories: dict[str, Any] = {}
    late_warnings: dict[str, str] = {}
    if args.history:
        target = args.server_id or Path(args.history).stem
        known = {s.server_id for s in servers}
        if args.path and target in known:
            if history is not None:
                histories[target] = history
            else:
                late_warnings[target] = (f"{history_problem}; sized from its discovery "
                                         f"baseline instead")
                exit_code = 1
        elif history_problem is not None:
            print(f"migrationbox size: {history_problem}", file=err)
            if not servers:
                return 2
            exit_code = 1
        else:
            if args.vcpu is None or args.memory_gib is None:
                print(f"migrationbox size: history {args.history} is not for a server of the "
                      f"estate ({target!r}); give --vcpu and --memory-gib", file=err)
                return 2
            if args.vcpu < 1 or args.memory_gib <= 0:
                print("migrationbox size: --vcpu must be >= 1 and --memory-gib > 0", file=err)
                return 2
            servers.append(_standalone(target, args))
            histories[target] = history
    result = size_estate(servers, engine, histories)
    result.failed = pre_failed + result.failed
    for sized in result.servers:
        if sized.profile.server_id in late_warnings:
            sized.warnings.insert(0, late_warnings[sized.profile.server_id])
    if result.failed:
        exit_code = 1
    if any(o.clouds[c].error for s in result.servers for o in s.options for c in o.clouds):
        exit_code = 1
    if args.format == "json":
        from migrationbox.sizing.options import SizingReport

        data = SizingReport.model_validate(result.as_dict()).model_dump(mode="json")
        json.dump(data, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(render_text(result))
    return exit_code


def _standalone(server_id: str, args: argparse.Namespace) -> Any:
    """A minimal discovery record for a server known only from its history file."""
    from migrationbox.inventory.models import ServerRecord

    return ServerRecord.model_validate({
        "server_id": server_id, "hostname": server_id, "ip_addresses": ["192.0.2.1"],
        "os": {"type": args.os}, "hardware": {"cpu_cores": args.vcpu,
                                              "ram_gb": args.memory_gib,
                                              "disk_total_gb": args.disk_gb},
        "performance_baseline": {"cpu_avg_utilization_pct": 0,
                                 "memory_avg_utilization_pct": 0},
    })


# --------------------------------------------------------------------------- text


def _money(x: float) -> str:
    return f"${x:,.0f}"


def _size_gb(gb: float) -> str:
    return f"{gb / 1000:.1f}TB".replace(".0TB", "TB") if gb >= 1000 else f"{gb:,.0f}GB"


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.0%}"


def render_text(result: Any) -> str:
    out: list[str] = []
    for s in result.servers:
        out.extend(_server_text(s, result.clouds))
    for server_id, message in result.failed:
        out.append(f"Server {server_id}: NOT SIZED: {message}")
        out.append("")
    out.append("Sources and assumptions")
    out.append("-----------------------")
    out.extend(f"  {n}" for n in result.notes)
    sized = len(result.servers)
    out.append("")
    out.append(f"{sized} server(s) sized for {', '.join(CLOUD_NAMES[c] for c in result.clouds)}"
               f"; {len(result.failed)} not sized")
    return "\n".join(out) + "\n"


def _server_text(s: Any, clouds: list[str]) -> list[str]:
    import math

    p = s.profile
    lic = f", {'/'.join(p.licences.names())}" if p.licences.names() else ""
    disk = f"{_size_gb(p.disk_gb)} {p.disk_type or 'disk'}" if p.disk_gb else "disk unknown"
    o = s.onprem
    lines = [
        f"Server: {p.hostname} ({p.server_id})",
        f"Current On-Prem: {p.vcpu} vCPU, {p.memory_gib:g}GB RAM, {disk}{lic}, "
        f"{_money(o.monthly)}/month (estimated: hardware {_money(o.hardware)}, storage "
        f"{_money(o.storage)}, power {_money(o.power)}, space {_money(o.space)}, licences "
        f"{_money(o.licences)}, network {_money(o.network)}, operations "
        f"{_money(o.operations)})",
    ]

    def st(x: Any) -> str:
        parts = [f"avg {x.avg:.1f}%"]
        for name, v in (("p95", x.p95), ("p99.5", x.p99_5), ("peak", x.peak)):
            if not math.isnan(v):
                parts.append(f"{name} {v:.1f}%")
        return " ".join(parts)

    lines.append(f"Demand ({p.stats_source}): CPU {st(p.cpu)}; memory {st(p.memory)}")
    fallback_note = ""
    for metric, f in s.forecasts.items():
        pts = "; ".join(
            f"{pt.horizon_days}d {pt.mean:.1f}"
            + (f" [{pt.lower:.1f}-{pt.upper:.1f}]" if pt.lower is not None else "")
            for pt in f.points)
        lines.append(f"Forecast {metric} ({f.method}): {pts}")
        if f.method == "baseline-fallback":
            fallback_note = f.note
        elif f.note:
            lines.append(f"  ({f.note})")
    if fallback_note:
        lines.append(f"  ({fallback_note})")
    if s.prediction:
        pr = s.prediction
        lines.append(f"Model (next 30 days): CPU p95 {pr['cpu_p95']:.1f}%, memory p95 "
                     f"{pr['mem_p95']:.1f}% of current capacity (median); capacity for a "
                     f"{pr['target_risk']:.1%} risk of falling short: CPU "
                     f"{pr['cpu_capacity']:.1f}%, memory {pr['mem_capacity']:.1f}%")
    lines.append(f"Sized by: {s.sized_by}")
    lines.append(f"Scaling: {'can scale out' if p.scalable else 'single instance'} "
                 f"({p.scalable_reason})")
    for w in s.warnings:
        lines.append(f"WARNING: {w}")
    for cloud in clouds:
        choices = [o.clouds[cloud] for o in s.options]
        region = choices[0].region
        head = f"RECOMMENDATION: {CLOUD_NAMES[cloud]} ({region})"
        lines += ["", head, "-" * len(head)]
        for i, option in enumerate(s.options, start=1):
            lines.extend(_option_text(i, option, option.clouds[cloud], o.monthly))
    lines.append("")
    lines.append("=" * 78)
    lines.append("")
    return lines


def _option_text(index: int, option: Any, choice: Any, onprem_monthly: float) -> list[str]:
    spec = option.spec
    star = " ⭐ RECOMMENDED" if option.recommended else ""
    if choice.error:
        return [f"Option {index}: {spec.label} ({spec.formula}){star}",
                f"  - NOT AVAILABLE: {choice.error}"]
    m, c = choice.machine, choice.cost
    storage = f"{_size_gb(c.storage_gb)} {c.storage_sku}"
    scaling = ""
    if spec.autoscaling:
        scaling = (" + Aggressive Auto Scaling" if spec.autoscaling == "aggressive"
                   else " + Auto Scaling") if choice.autoscaling else ", single instance"
    lines = [f"Option {index}: {spec.label} ({m.name} + {storage}{scaling}){star}"]
    scales = (f" (scales to {choice.autoscaling[1] * m.vcpu})" if choice.autoscaling else "")
    lines.append(f"  - vCPU: {m.vcpu}{scales}, RAM: {m.memory_gib:g}GB, Storage: {storage} "
                 f"(needs {option.required_vcpu:.2f} vCPU, {option.required_memory_gib:.1f}GB: "
                 f"{spec.formula})")
    basis = {"data": "from price data", "assumption": "ASSUMED discount",
             "none": "no commitment price"}[c.commitment_basis]
    kind = "blended" if choice.autoscaling else "On-Demand"
    lines.append(f"  - Monthly Cost: {_money(c.monthly_on_demand)} ({kind}) | "
                 f"{_money(c.monthly_3y)} (3-year commitment, {basis}) = "
                 f"{_money(c.monthly_3y * 12)}/year; 3-year TCO {_money(c.tco_3y_committed)}")
    extras = []
    if c.licences:
        extras.append(f"licences {_money(c.licences)}")
    if c.egress:
        extras.append(f"egress {_money(c.egress)} ({c.egress_gb:,.0f} GB)")
    if extras:
        lines.append(f"    incl. storage {_money(c.storage)}, " + ", ".join(extras))
    lines.append(f"  - Savings: {_pct(choice.savings)} vs on-prem with commitment, "
                 f"{_pct(choice.savings_on_demand)} on demand (on-prem "
                 f"{_money(onprem_monthly)}/month)")
    lines.append(f"  - Risk: {option.risk.text}")
    if option.unsafe:
        lines.append(f"  - UNSAFE for this server: measured under-provisioning "
                     f"{_pct(option.risk.rate)} is above the bar")
        sv = option.safe_variant
        if sv is not None:
            sc = sv.clouds.get(choice.cloud)
            if sc is None or sc.error:
                lines.append(f"    Safe variant ({sv.label}): "
                             f"{sc.error if sc else 'not sized'}")
            else:
                lines.append(f"    Safe variant: {sv.label}: {sc.machine.name} "
                             f"({sc.machine.vcpu} vCPU, {sc.machine.memory_gib:g}GB), "
                             f"{_money(sc.cost.monthly_on_demand)}/month on demand, "
                             f"{_money(sc.cost.monthly_3y)} with 3-year commitment; risk "
                             f"{sv.risk.text}")
                if sv.note:
                    lines.append(f"    ({sv.note})")
    if choice.storage and choice.storage.assumption:
        lines.append(f"  - Note: {choice.storage.assumption}")
    lines.append("")
    return lines


# --------------------------------------------------------------------------- prices


def run_prices_show(args: argparse.Namespace) -> int:
    from migrationbox.shared_files import SharedStorageError
    from migrationbox.sizing.clouds import DEFAULT_REGIONS, CatalogError, load_catalog

    try:
        cat = load_catalog(args.cloud, args.region or DEFAULT_REGIONS[args.cloud])
    except (CatalogError, SharedStorageError) as exc:  # shared storage: published prices
        print(f"migrationbox prices: {exc}", file=sys.stderr)
        return 2
    if args.type_name:
        try:
            t = cat.get(args.type_name)
        except KeyError as exc:
            print(f"migrationbox prices: {exc.args[0]}", file=sys.stderr)
            return 1
        from dataclasses import asdict

        print(json.dumps({**asdict(t), "price_source": str(cat.price_source)}, indent=2))
        return 0
    cands = cat.candidates("x86_64")
    arm = cat.candidates("arm64")
    print(f"{CLOUD_NAMES[cat.cloud]} {cat.region}: {len(cat.types)} priced machine types, "
          f"{len(cands)} x86_64 and {len(arm)} arm64 sizing candidates")
    print(f"prices: {cat.price_source}")
    print(f"specs: {cat.spec_source}")
    reasons: dict[str, int] = {}
    for t in cat.types:
        if t.excluded:
            reasons[t.excluded] = reasons.get(t.excluded, 0) + 1
    for reason, count in sorted(reasons.items()):
        print(f"  not a candidate: {count} x {reason}")
    for note in cat.notes:
        print(f"  note: {note}")
    return 0


def run_prices_refresh(args: argparse.Namespace) -> int:
    from migrationbox import shared_files
    from migrationbox.sizing.clouds import clear_cache
    from migrationbox.sizing.refresh import RefreshError, refresh

    try:
        path, count, source = refresh(args.cloud, args.region, args.source, as_of=args.as_of)
    except RefreshError as exc:
        print(f"migrationbox prices refresh: {exc}", file=sys.stderr)
        return 2
    except shared_files.SharedStorageError as exc:  # written here, not published
        print(f"migrationbox prices refresh: prices written on this host only, other hosts "
              f"do not see them: {exc}", file=sys.stderr)
        return 2
    clear_cache()
    root = shared_files.shared_root()
    print(f"{CLOUD_NAMES[args.cloud]} {args.region}: {count} machine types priced from "
          f"{source}; written to {path}"
          + (f" and published to {root.uri(f'pricing/{args.cloud}/')}" if root else ""))
    return 0
