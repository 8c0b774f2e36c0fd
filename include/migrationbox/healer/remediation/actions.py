"""The matrix's actions, each against the cloud (through its adapter) and the lab.

Per action: cloud side (the adapter's healer actions: on AWS, EC2/EBS/ACM/Route 53 of
the emulator in the lab) / lab side / rollback.

* horizontal_scale: ``launch_like`` N more instances like the server's (token = the
  remediation id) / ``scale_out`` / ``terminate_instances`` and ``scale_in``.
* vertical_scale_restart: ``resize_instance`` to the next size, one instance at a time /
  memory budget x2 and restart / previous size and budget.
* rolling_restart: ``reboot_instances`` one at a time / restart / nothing to undo (said).
* increase_max_connections_restart: none (the app's pool) / max_connections x factor and
  restart / restart again (a live pool is not shrunk).
* disk_cleanup_expand: ``grow_volumes`` x2 when cleanup is not enough / delete logs
  older than N days, quota x2 / a volume cannot shrink (said).
* renew_certificate_reload: ``request_certificate`` for the DNS name / new
  ``not_after`` and reload / ``delete_certificate``.
* flush_dns_cache_verify: ``republish_records`` (a new change) / none / none.
* kill_blocking_query (approval): ``pg_terminate_backend`` of blockers, PostgreSQL only.
* enable_circuit_breaker: none (the breaker is the application's, not the cloud's) / the
  service's partner calls go through a breaker (deadline, failures that open it, trial
  call after a reset time; the caller falls back to its cache) / previous settings.
* restore_from_backup (approval): none on the emulator (a managed database restores from
  its own snapshots) / the corrupt rows of the migrated database put back from its latest
  verified backup (:mod:`migrationbox.healer.backup`), one transaction / the rows as they
  were before the restore.

A server that has no instance on the cloud (a lab-only estate, or a wave not provisioned)
gets the lab side only, and the step log says so.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from migrationbox.cloud.base import TAG_ESTATE, TAG_SERVER, InstanceInfo
from migrationbox.healer.remediation.base import RemediationContext, RemediationError

Log = Callable[[str], None]
SIZE_LADDER = ["nano", "micro", "small", "medium", "large", "xlarge", "2xlarge", "4xlarge",
               "8xlarge"]


def next_size(instance_type: str) -> str:
    family, _, size = instance_type.partition(".")
    if size not in SIZE_LADDER or size == SIZE_LADDER[-1]:
        raise RemediationError(f"instance type {instance_type!r}: no next size known")
    return f"{family}.{SIZE_LADDER[SIZE_LADDER.index(size) + 1]}"


def _instances(ctx: RemediationContext, log: Log) -> list[InstanceInfo]:
    if ctx.cloud is None:
        log("no cloud connection configured: lab side only")
        return []
    found = ctx.cloud.find_instances({TAG_ESTATE: ctx.estate, TAG_SERVER: ctx.server_id},
                                     ["pending", "running"])
    if not found:
        log(f"no running cloud instance tagged for {ctx.estate}/{ctx.server_id}: lab side only")
    return sorted(found, key=lambda i: i.instance_id)


class _Base:
    action = ""
    risky = False

    def precheck(self, ctx: RemediationContext) -> str | None:
        return None

    def rollback(self, ctx: RemediationContext, undo: dict[str, Any], log: Log) -> None:
        log("nothing to undo")


class HorizontalScale(_Base):
    action = "horizontal_scale"
    max_instances = 10

    def precheck(self, ctx: RemediationContext) -> str | None:
        current = int(ctx.lab_metrics()["instances"]) if ctx.control_url else 1
        add = int(ctx.params.get("add_instances", 2))
        if current + add > self.max_instances:
            return f"{current} instances + {add} would exceed the cap of {self.max_instances}"
        return None

    def apply(self, ctx: RemediationContext, log: Log) -> dict[str, Any]:
        add = int(ctx.params.get("add_instances", 2))
        undo: dict[str, Any] = {"_side_effects": [f"+{add} instance(s) running"]}
        found = _instances(ctx, log)
        if found and ctx.cloud is not None:
            model = found[0]
            created = ctx.cloud.launch_like(model.instance_id, add, ctx.remediation_id,
                                            {"migrationbox:healer": ctx.remediation_id})
            undo["instance_ids"] = created
            log(f"launched {len(created)} x {model.instance_type}: {', '.join(created)}")
        if ctx.control_url:
            before = int(ctx.lab_metrics()["instances"])
            undo["instances_before"] = before
            ctx.lab("scale_out", instances=before + add)
            log(f"lab: {ctx.service} scaled out from {before} to {before + add} instance(s)")
        return undo

    def rollback(self, ctx: RemediationContext, undo: dict[str, Any], log: Log) -> None:
        if undo.get("instance_ids") and ctx.cloud is not None:
            ctx.cloud.terminate_instances(list(undo["instance_ids"]))
            log(f"terminated {', '.join(undo['instance_ids'])}")
        if "instances_before" in undo:
            ctx.lab("scale_in", instances=undo["instances_before"])
            log(f"lab: scaled back to {undo['instances_before']} instance(s)")


class VerticalScaleRestart(_Base):
    action = "vertical_scale_restart"
    max_memory_mb = 4096

    def precheck(self, ctx: RemediationContext) -> str | None:
        if ctx.control_url and int(ctx.lab_metrics()["memory_limit_mb"]) * 2 > self.max_memory_mb:
            return f"memory budget would exceed {self.max_memory_mb} MB"
        return None

    def apply(self, ctx: RemediationContext, log: Log) -> dict[str, Any]:
        undo: dict[str, Any] = {"types": {}}
        for inst in _instances(ctx, log):
            iid, old = inst.instance_id, inst.instance_type
            new = next_size(old)
            undo["types"][iid] = old  # recorded before the change: rollback knows it
            ctx.cloud.resize_instance(iid, new)  # type: ignore[union-attr]
            log(f"{iid}: {old} -> {new} (stopped, resized, started)")
        if ctx.control_url:
            before = int(ctx.lab_metrics()["memory_limit_mb"])
            undo["memory_limit_mb"] = before
            ctx.lab("vertical_scale", memory_limit_mb=before * 2)
            ctx.lab("restart")
            log(f"lab: {ctx.service} memory budget {before} -> {before * 2} MB, restarted")
        undo["_side_effects"] = ["one restart per instance (brief unavailability)"]
        return undo

    def rollback(self, ctx: RemediationContext, undo: dict[str, Any], log: Log) -> None:
        for iid, old in undo.get("types", {}).items():
            if ctx.cloud is None:
                raise RemediationError(f"{iid}: no cloud connection to resize back to {old}")
            ctx.cloud.resize_instance(iid, old)
            log(f"{iid}: back to {old}")
        if "memory_limit_mb" in undo:
            ctx.lab("set_memory_limit", memory_limit_mb=undo["memory_limit_mb"])
            log(f"lab: memory budget back to {undo['memory_limit_mb']} MB")


class RollingRestart(_Base):
    action = "rolling_restart"

    def apply(self, ctx: RemediationContext, log: Log) -> dict[str, Any]:
        for inst in _instances(ctx, log):
            ctx.cloud.reboot_instances([inst.instance_id])  # type: ignore[union-attr]
            log(f"rebooted {inst.instance_id} (one at a time)")
        if ctx.control_url:
            ctx.lab("restart")
            log(f"lab: {ctx.service} restarted")
        return {}

    def rollback(self, ctx: RemediationContext, undo: dict[str, Any], log: Log) -> None:
        log("a restart cannot be undone; the service is as the restart left it")


class IncreaseMaxConnectionsRestart(_Base):
    action = "increase_max_connections_restart"

    def precheck(self, ctx: RemediationContext) -> str | None:
        if not ctx.control_url:
            return "no application control endpoint to change its connection pool"
        return None

    def apply(self, ctx: RemediationContext, log: Log) -> dict[str, Any]:
        factor = float(ctx.params.get("factor", 2))
        before = int(ctx.lab_metrics()["max_connections"])
        new = max(before + 1, int(before * factor))
        ctx.lab("set_max_connections", max_connections=new)
        log(f"lab: {ctx.service} max_connections {before} -> {new}")
        ctx.lab("restart")
        log(f"lab: {ctx.service} restarted (leaked connections dropped)")
        return {"max_connections_before": before,
                "_side_effects": [f"max_connections raised to {new}"]}

    def rollback(self, ctx: RemediationContext, undo: dict[str, Any], log: Log) -> None:
        ctx.lab("restart")
        log("lab: restarted again; max_connections left raised (a pool is not shrunk live)")


class DiskCleanupExpand(_Base):
    action = "disk_cleanup_expand"
    target_pct = 80.0

    def apply(self, ctx: RemediationContext, log: Log) -> dict[str, Any]:
        age = float(ctx.params.get("log_max_age_days", 30))
        undo: dict[str, Any] = {}
        if ctx.control_url:
            res = ctx.lab("cleanup_disk", max_age_days=age)
            log(f"lab: deleted {res['removed_files']} log file(s) older than {age:g} days; "
                f"disk now {res['disk_used_pct']}%")
            if res["disk_used_pct"] <= self.target_pct:
                return undo
        for inst in _instances(ctx, log):
            grown = ctx.cloud.grow_volumes(inst.instance_id, 2.0)  # type: ignore[union-attr]
            for vid, (size, new) in grown.items():
                log(f"{vid}: {size} -> {new} GiB")
        if ctx.control_url:
            res = ctx.lab("expand_disk")
            log(f"lab: volume quota now {res['disk_quota_mb']} MB, {res['disk_used_pct']}% used")
            undo["_side_effects"] = ["volume expanded (storage cost up)"]
        return undo

    def rollback(self, ctx: RemediationContext, undo: dict[str, Any], log: Log) -> None:
        log("deleted logs cannot be restored and a volume cannot shrink: left as is")


class RenewCertificateReload(_Base):
    action = "renew_certificate_reload"

    def apply(self, ctx: RemediationContext, log: Log) -> dict[str, Any]:
        undo: dict[str, Any] = {}
        if ctx.cloud is not None and ctx.dns_name:
            arn = ctx.cloud.request_certificate(ctx.dns_name.rstrip("."), ctx.remediation_id)
            undo["certificate_arn"] = arn
            log(f"{ctx.cloud.cloud}: requested a certificate for {ctx.dns_name}: {arn}")
        if ctx.control_url:
            res = ctx.lab("renew_certificate", certificate_days=90)
            log(f"lab: {ctx.service} reloaded with a certificate valid until "
                f"{res['certificate_not_after']}")
        return undo

    def rollback(self, ctx: RemediationContext, undo: dict[str, Any], log: Log) -> None:
        if undo.get("certificate_arn") and ctx.cloud is not None:
            ctx.cloud.delete_certificate(undo["certificate_arn"])
            log(f"deleted certificate {undo['certificate_arn']}")


class FlushDnsCacheVerify(_Base):
    action = "flush_dns_cache_verify"

    def precheck(self, ctx: RemediationContext) -> str | None:
        if ctx.cloud is None or not ctx.dns_name:
            return "no DNS name or cloud connection for this server"
        return None

    def apply(self, ctx: RemediationContext, log: Log) -> dict[str, Any]:
        from migrationbox.cloud.base import CloudServiceError

        name = ctx.dns_name.rstrip(".") + "."  # type: ignore[union-attr]
        try:
            count, change = ctx.cloud.republish_records(  # type: ignore[union-attr]
                name, f"healer {ctx.remediation_id}: republish")
        except CloudServiceError as exc:
            raise RemediationError(str(exc)) from exc
        log(f"DNS: republished {count} record set(s) of {name}: {change}")
        return {}


class KillBlockingQuery(_Base):
    action = "kill_blocking_query"
    risky = True

    def precheck(self, ctx: RemediationContext) -> str | None:
        url = str(ctx.params.get("database_url") or "")
        if not url.startswith("postgresql"):
            return "only PostgreSQL databases can list and terminate blocking sessions"
        return None

    def apply(self, ctx: RemediationContext, log: Log) -> dict[str, Any]:
        from sqlalchemy import create_engine, text

        engine = create_engine(str(ctx.params["database_url"]))
        try:
            with engine.begin() as conn:
                pids = sorted({int(p) for (p,) in conn.execute(text(
                    "SELECT DISTINCT unnest(pg_blocking_pids(pid)) FROM pg_stat_activity "
                    "WHERE datname = current_database()"))})
                for pid in pids:
                    conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid})
        finally:
            engine.dispose()
        log(f"terminated blocking session(s): {pids or 'none found'}")
        return {"_side_effects": [f"{len(pids)} session(s) terminated"]}

    def rollback(self, ctx: RemediationContext, undo: dict[str, Any], log: Log) -> None:
        log("terminated sessions cannot be restored")


class EnableCircuitBreaker(_Base):
    action = "enable_circuit_breaker"
    settings = ("enabled", "timeout_s", "failures", "reset_s")

    def precheck(self, ctx: RemediationContext) -> str | None:
        if not (ctx.control_url and ctx.service):
            return ("no control of this server's application: its circuit breaker is an "
                    "application setting people must switch")
        breaker = ctx.lab_metrics().get("circuit_breaker") or {}
        if breaker.get("enabled"):
            return ("the circuit breaker is already on and the partner API is still slow "
                    "through it: people must act")
        return None

    def apply(self, ctx: RemediationContext, log: Log) -> dict[str, Any]:
        before = ctx.lab_metrics().get("circuit_breaker") or {}
        timeout = float(ctx.params.get("timeout_s", 1.0))
        failures = int(ctx.params.get("failures", 3))
        reset = float(ctx.params.get("reset_s", 30.0))
        ctx.lab("circuit_breaker", breaker_enabled=True, breaker_timeout_s=timeout,
                breaker_failures=failures, breaker_reset_s=reset)
        log(f"lab: {ctx.service} calls its partner API through a circuit breaker: deadline "
            f"{timeout:g} s, open after {failures} failure(s), a trial call every {reset:g} s, "
            f"fallback {ctx.params.get('fallback', 'cache')}")
        return {"breaker_before": {k: before[k] for k in self.settings if k in before}}

    def rollback(self, ctx: RemediationContext, undo: dict[str, Any], log: Log) -> None:
        before = undo.get("breaker_before") or {}
        if not before:
            log("no previous breaker settings recorded: nothing to undo")
            return
        ctx.lab("circuit_breaker", breaker_enabled=bool(before.get("enabled")),
                breaker_timeout_s=before.get("timeout_s"),
                breaker_failures=before.get("failures"), breaker_reset_s=before.get("reset_s"))
        log(f"lab: circuit breaker back to {before}")


class RestoreFromBackup(_Base):
    action = "restore_from_backup"
    risky = True

    def precheck(self, ctx: RemediationContext) -> str | None:
        from migrationbox.healer import backup

        url = str(ctx.params.get("database_url") or "")
        if not url:
            return "no database behind this server: nothing to restore"
        latest = backup.latest_backup(ctx.estate, ctx.server_id)
        if latest is None:
            return "no backup of this database: restore by hand"
        broken = backup.verify_backup(latest)
        if broken:
            return f"the latest backup {latest.path.name} fails its own check ({broken})"
        if not backup.corrupted_rows(url, latest):
            return "no row differs from the backup any more: nothing to restore"
        return None

    def apply(self, ctx: RemediationContext, log: Log) -> dict[str, Any]:
        from migrationbox.healer import backup

        url = str(ctx.params["database_url"])
        latest = backup.latest_backup(ctx.estate, ctx.server_id)
        if latest is None:
            raise RemediationError("the backup disappeared after the pre-check")
        found = backup.corrupted_rows(url, latest)
        log(f"backup {latest.path.name} (taken {latest.taken_at:%Y-%m-%d %H:%M:%S} UTC) "
            "matches its manifest")
        before = backup.restore_rows(url, latest, found)
        log(f"restored {backup.count(found)} corrupt row(s) from the backup, newer writes "
            f"kept: {backup.describe(found)}")
        return {"rows_before": before,
                "_side_effects": [f"{backup.count(found)} row(s) restored from "
                                  f"{latest.path.name}"]}

    def rollback(self, ctx: RemediationContext, undo: dict[str, Any], log: Log) -> None:
        from migrationbox.healer import backup

        rows = undo.get("rows_before") or {}
        if not rows:
            log("no row was changed: nothing to undo")
            return
        backup.put_rows(str(ctx.params["database_url"]), rows)
        log(f"put back {sum(len(v) for v in rows.values())} row(s) as they were before the "
            "restore")


REGISTRY: dict[str, _Base] = {cls.action: cls() for cls in (
    HorizontalScale, VerticalScaleRestart, RollingRestart, IncreaseMaxConnectionsRestart,
    DiskCleanupExpand, RenewCertificateReload, FlushDnsCacheVerify, KillBlockingQuery,
    EnableCircuitBreaker, RestoreFromBackup)}


def remediation_for(action: str) -> _Base:
    try:
        return REGISTRY[action]
    except KeyError:
        raise KeyError(f"no remediation implements action {action!r}; known: "
                       f"{', '.join(sorted(REGISTRY))}") from None
