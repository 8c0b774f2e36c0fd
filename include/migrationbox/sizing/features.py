"""What the sizing engine knows about one server, and the model's feature vector.

The same functions build features at training time (from a 7-day window of a
Bitbrains VM trace) and at sizing time (from a discovery baseline, or from a
utilisation history file), so the model never sees a feature computed differently
from the one it was trained on.

All utilisation figures are percent of the server's *current* capacity (its cores,
its memory). Discovery gives avg, p95 and peak; a history adds spread, p99.5,
trend, daily seasonality and Prophet forecast features. Missing values are NaN:
XGBoost and LightGBM route them natively, and the model is trained with the
history-only features blanked on half the rows so that it serves discovery-only
servers as well.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace

import numpy as np

from migrationbox.inventory.models import ServerRecord

NAN = float("nan")
DISCOVERY_FEATURES = ("cpu_cores", "mem_gib", "cpu_avg", "cpu_p95", "cpu_peak",
                      "mem_avg", "mem_p95", "mem_peak")
HISTORY_FEATURES = ("cpu_std", "cpu_p99_5", "cpu_trend", "cpu_daily_amp",
                    "mem_std", "mem_p99_5", "mem_trend")
FORECAST_FEATURES = ("fc_cpu_mean", "fc_cpu_upper", "fc_mem_mean", "fc_mem_upper")
FEATURES = DISCOVERY_FEATURES + HISTORY_FEATURES + FORECAST_FEATURES
TARGETS = ("cpu_p95", "cpu_peak", "mem_p95", "mem_peak")  # future, % of current capacity

# Roles and application kinds whose instances are interchangeable: they can scale out
# behind a load balancer. Everything else (databases, caches, directory, DNS, VPN,
# monitoring, unknown) is treated as a single instance that must fit its demand.
STATELESS = frozenset({"web", "api", "worker", "app", "application", "frontend", "batch"})
# Roles at the edge of the estate: their traffic crosses the internet, so it is egress
# in the cloud. Everything else talks east-west inside the estate (free within a VPC).
EDGE_ROLES = frozenset({"load-balancer", "lb", "proxy", "reverse-proxy", "vpn", "edge",
                        "gateway", "cdn", "mail", "smtp"})
_SQL_SERVER = re.compile(r"sql\s*server|mssql", re.IGNORECASE)
_RHEL = re.compile(r"red\s*hat|\brhel\b", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class UsageStats:
    """Utilisation of one resource over a window, in percent of current capacity."""

    avg: float
    p95: float = NAN
    p99_5: float = NAN
    peak: float = NAN
    std: float = NAN
    trend: float = NAN  # percentage points per day
    daily_amp: float = NAN  # spread of the hour-of-day profile

    def peakish(self) -> tuple[float, str]:
        """The highest figure known: peak, else p99.5, else p95, else avg x 1.5."""
        for value, name in ((self.peak, "peak"), (self.p99_5, "p99.5"), (self.p95, "p95")):
            if not math.isnan(value):
                return value, name
        return min(100.0, self.avg * 1.5), "avg*1.5"


@dataclass(frozen=True, slots=True)
class Licences:
    windows: bool = False
    sql_server: str | None = None  # "standard" | "enterprise"
    rhel: bool = False

    def names(self) -> list[str]:
        out = []
        if self.windows:
            out.append("Windows Server")
        if self.sql_server:
            out.append(f"SQL Server {self.sql_server.title()}")
        if self.rhel:
            out.append("RHEL")
        return out


@dataclass(frozen=True, slots=True)
class ServerProfile:
    """Everything sizing and TCO need about one server, from discovery or a history file."""

    server_id: str
    hostname: str
    vcpu: int
    memory_gib: float
    cpu: UsageStats
    memory: UsageStats
    stats_source: str
    arch: str = "x86_64"
    os_type: str = "Linux"
    disk_gb: float = 0.0
    used_gb: float = 0.0
    disk_type: str | None = "SSD"
    network_mbps: float = 0.0
    physical: bool = False
    role: str | None = None
    environment: str = "production"
    scalable: bool = False
    scalable_reason: str = "unknown role: assumed to be a single instance"
    internet_facing: bool = False
    licences: Licences = field(default_factory=Licences)
    forecast: dict[str, float] = field(default_factory=dict)  # FORECAST_FEATURES values

    def with_history(self, cpu: UsageStats, memory: UsageStats, source: str,
                     forecast: dict[str, float] | None = None) -> ServerProfile:
        return replace(self, cpu=cpu, memory=memory, stats_source=source,
                       forecast=forecast or {})


def _nan(value: float | None) -> float:
    return NAN if value is None else float(value)


_X86 = {"", "x86_64", "amd64", "x64", "x86-64", "x86", "i386", "i686"}
_ARM = {"arm64", "aarch64", "armv8"}


def _arch(value: str | None, server_id: str) -> str:
    """x86_64 or arm64; anything else (SPARC, POWER, ...) cannot be lifted and shifted."""
    v = (value or "").strip().lower()
    if v in _ARM:
        return "arm64"
    if v in _X86:
        return "x86_64"
    raise ValueError(f"server {server_id}: os.architecture {value!r} has no cloud machine types "
                     f"(x86_64 or arm64 needed: re-platform first)")


def _scalable(server: ServerRecord) -> tuple[bool, str]:
    role = (server.role or "").lower()
    kinds = {(a.kind or "").lower() for a in server.applications} - {""}
    if role in STATELESS:
        return True, f"role {role!r} is stateless: it can scale out behind a load balancer"
    if role:
        return False, f"role {role!r} keeps state: it must fit on one instance"
    if kinds and kinds <= STATELESS:
        return True, f"applications ({', '.join(sorted(kinds))}) are stateless"
    return False, "unknown role: assumed to be a single instance"


def _internet_facing(server: ServerRecord) -> bool:
    from ipaddress import ip_address

    if (server.role or "").lower() in EDGE_ROLES:
        return True
    return any(ip_address(ip).is_global for ip in server.ip_addresses)


def licences_of(server: ServerRecord) -> Licences:
    """Licence-bearing software the cloud image must include (Windows, SQL Server, RHEL)."""
    windows = server.os.type.strip().lower().startswith("win")
    sql: str | None = None
    for app in server.applications:
        text = f"{app.name} {app.version or ''}"
        if _SQL_SERVER.search(text):
            sql = "enterprise" if "enterprise" in text.lower() else "standard"
    rhel = bool(_RHEL.search(server.os.distribution or ""))
    return Licences(windows=windows, sql_server=sql, rhel=rhel)


def profile_from_record(server: ServerRecord) -> ServerProfile:
    """A profile from a discovery record: the 7-day baseline is the only demand data.

    A record without a baseline (an RVTools import: allocation known, utilisation not)
    is sized like-for-like: its allocated vCPUs and memory are taken as the demand, and
    ``stats_source`` says so.
    """
    base = server.performance_baseline
    if base is None:
        from migrationbox.inventory.models import PerformanceBaseline

        base = PerformanceBaseline(cpu_avg_utilization_pct=100, memory_avg_utilization_pct=100,
                                   cpu_peak_utilization_pct=100,
                                   memory_peak_utilization_pct=100)
        measured = False
    else:
        measured = True
    used = 0.0
    if server.storage and server.storage.filesystems:
        used = sum((f.used_gb if f.used_gb is not None else f.size_gb)
                   for f in server.storage.filesystems)
    disk = server.hardware.disk_total_gb
    if not disk and server.storage and server.storage.filesystems:
        disk = sum(f.size_gb for f in server.storage.filesystems)
    scalable, reason = _scalable(server)
    days = f"{base.sample_days:g}-day " if base.sample_days else ""
    return ServerProfile(
        server_id=server.server_id,
        hostname=server.hostname,
        vcpu=server.hardware.cpu_cores,
        memory_gib=server.hardware.ram_gb,
        cpu=UsageStats(avg=base.cpu_avg_utilization_pct,
                       p95=_nan(base.cpu_p95_utilization_pct),
                       peak=_nan(base.cpu_peak_utilization_pct)),
        memory=UsageStats(avg=base.memory_avg_utilization_pct,
                          p95=_nan(base.memory_p95_utilization_pct),
                          peak=_nan(base.memory_peak_utilization_pct)),
        stats_source=f"discovery {days}baseline" if measured else
        "no utilisation measured: sized like-for-like on the allocation",
        arch=_arch(server.os.architecture, server.server_id),
        os_type=server.os.type,
        disk_gb=float(disk or server.data_size_gb),
        used_gb=float(used or server.data_size_gb),
        disk_type=server.hardware.disk_type,
        network_mbps=float(base.network_throughput_mbps or 0.0),
        physical=(server.hardware.virtualization or "").lower() in {"physical", "bare-metal",
                                                                     "baremetal"},
        role=server.role,
        environment=str(server.environment),
        scalable=scalable,
        scalable_reason=reason,
        internet_facing=_internet_facing(server),
        licences=licences_of(server),
    )


def usage_stats(timestamps_s: np.ndarray, values_pct: np.ndarray) -> UsageStats:
    """Window statistics of one resource from samples (percent of capacity)."""
    v = np.asarray(values_pct, dtype=float)
    t = np.asarray(timestamps_s, dtype=float)
    if v.size == 0:
        raise ValueError("no samples")
    p95, p995 = np.percentile(v, [95, 99.5])
    trend = NAN
    amp = NAN
    if v.size >= 3 and t[-1] > t[0]:
        days = (t - t[0]) / 86400.0
        trend = float(np.polyfit(days, v, 1)[0])
        hours = ((t // 3600) % 24).astype(int)
        profile = np.array([v[hours == h].mean() for h in range(24) if (hours == h).any()])
        amp = float(profile.max() - profile.min()) if profile.size > 1 else NAN
    return UsageStats(avg=float(v.mean()), p95=float(p95), p99_5=float(p995),
                      peak=float(v.max()), std=float(v.std()), trend=trend, daily_amp=amp)


def feature_row(profile: ServerProfile, discovery_only: bool = False) -> dict[str, float]:
    """The model's input for one server (NaN where a figure is unknown)."""
    row = {
        "cpu_cores": float(profile.vcpu), "mem_gib": float(profile.memory_gib),
        "cpu_avg": profile.cpu.avg, "cpu_p95": profile.cpu.p95, "cpu_peak": profile.cpu.peak,
        "mem_avg": profile.memory.avg, "mem_p95": profile.memory.p95,
        "mem_peak": profile.memory.peak,
    }
    history = {
        "cpu_std": profile.cpu.std, "cpu_p99_5": profile.cpu.p99_5,
        "cpu_trend": profile.cpu.trend, "cpu_daily_amp": profile.cpu.daily_amp,
        "mem_std": profile.memory.std, "mem_p99_5": profile.memory.p99_5,
        "mem_trend": profile.memory.trend,
    }
    forecast = {name: float(profile.forecast.get(name, NAN)) for name in FORECAST_FEATURES}
    if discovery_only:
        history = dict.fromkeys(history, NAN)
        forecast = dict.fromkeys(forecast, NAN)
    return {**row, **history, **forecast}


def blank_history(rows: list[dict[str, float]]) -> list[dict[str, float]]:
    """The same rows as a discovery-only server would present them."""
    blank = dict.fromkeys(HISTORY_FEATURES + FORECAST_FEATURES, NAN)
    return [{**r, **blank} for r in rows]
