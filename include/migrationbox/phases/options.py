"""What a phase may be told: one typed model, a section per phase.

The wave DAG's run conf (``orchestration.runconf.WaveRunConf``) is this model plus the
run flags, so anything a phase reads, and any key a phase's message tells an operator
to set, is a key the run conf accepts; unknown keys are refused with their path. The
defaults are the behaviour of a run that sets nothing.

Two sections are shared because several phases must agree on them: ``network`` (the
target VPC and the on-premise source networks: pre-flight checks them, design and
provision turn them into security-group rules) and ``health`` (how service health is
probed by smoke tests, cutover and validate). Collaborators (the cloud adapter,
callbacks, clients) are never options: see ``phases.context.Collaborators``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

#: Percent of traffic on the target at each cutover step when the run sets none.
DEFAULT_CUTOVER_STEPS = (5, 25, 50, 100)
#: The target VPC's CIDR when the run sets none (kept equal to ``iac.design``'s).
DEFAULT_VPC_CIDR = "10.100.0.0/16"


class _Section(BaseModel):
    # NaN and Infinity are refused by name: an infinite timeout or dwell would hang a
    # phase instead of failing the run's first task with the key path.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class BackupFact(_Section):
    """What the run may state about one server's backup (or just ``true``)."""

    available: bool = Field(default=False, description="a backup of the server exists")
    last_backup_at: datetime | None = Field(default=None, description="when it was taken")
    restore_tested: bool | None = Field(default=None, description="a restore was tested")
    tool: str | None = Field(default=None, description="the backup tool, for the report")


class NetworkOptions(_Section):
    """The target network and the on-premise networks it must stay clear of and admit."""

    target_vpc_cidr: str = Field(
        default=DEFAULT_VPC_CIDR,
        description="CIDR of the target VPC; must not overlap the source networks",
    )
    source_networks: list[str] | dict[str, list[str]] | None = Field(
        default=None,
        description=(
            "on-premise CIDRs (a list for the estate, or server id → list); unset: the "
            "networks of the estate's discovery records in the store. Pre-flight checks "
            "them against target_vpc_cidr; provision admits them in the security groups"
        ),
    )


class HealthOptions(_Section):
    """How service health is probed (smoke tests, cutover steps, validate)."""

    probe_requests: int = Field(default=20, ge=1, description="requests per health probe")
    timeout_seconds: float = Field(default=5.0, gt=0, description="timeout of one request")


class CloudOptions(_Section):
    """How the cloud adapter talks to the cloud."""

    poll_seconds: float | None = Field(
        default=None, gt=0,
        description="waiter polling interval (small against the emulator); unset: the adapter's",
    )
    database_credentials: Literal["secrets-manager", "password"] = Field(
        default="secrets-manager",
        description="how the cloud's database migration service gets each side's login: "
                    "a secret in the cloud's secrets store it reads through a role "
                    "(no password in the endpoint definition), or the password itself in "
                    "the endpoint (an explicit fallback)",
    )
    database_secrets_role_arn: str | None = Field(
        default=None, min_length=1,
        description="role the migration service reads the secrets with; unset: one per "
                    "wave, created and removed with it",
    )

    def database_service_options(self) -> dict[str, Any]:
        """The options ``get_database_service`` takes from this section."""
        out: dict[str, Any] = {"credentials": self.database_credentials}
        if self.poll_seconds is not None:
            out["poll_seconds"] = self.poll_seconds
        if self.database_secrets_role_arn is not None:
            out["secrets_role_arn"] = self.database_secrets_role_arn
        return out


class PreflightOptions(_Section):
    """Facts and limits pre-flight checks against (beyond the plan and the store)."""

    expected_account: str | None = Field(
        default=None, description="the cloud account the connection must be (unset: any)"
    )
    vcpu_quota: float | None = Field(
        default=None, gt=0,
        description="the account's vCPU limit when Service Quotas does not serve it",
    )
    backups: dict[str, bool | BackupFact] | None = Field(
        default=None,
        description="server id → backup facts (or true); unset: the discovery records",
    )
    data_residency: str | dict[str, str] | None = Field(
        default=None,
        description="residency requirement (for all, or server id → requirement); unset: "
                    "the discovery records",
    )
    backup_max_age_hours: float | None = Field(
        default=None, gt=0, description="a backup older than this fails the check"
    )
    require_restore_tested: bool = Field(
        default=False, description="a backup whose restore was never tested fails the check"
    )
    residency_equivalents: dict[str, list[str]] | None = Field(
        default=None,
        description="requirement → further jurisdictions or countries with a legal basis",
    )


class ProvisionOptions(_Section):
    """How provision builds the wave's infrastructure."""

    health_check_path: str = Field(
        default="/health", description="the load balancers' health-check path"
    )
    availability_zones: list[str] | None = Field(
        default=None, description="the two AZs to use (unset: the region's first two)"
    )


class ReplicateOptions(_Section):
    """Block and database replication until the delta is small enough to cut over."""

    block_mib: float = Field(default=4.0, gt=0, description="block size of disk copies (MiB)")
    delta_pct: float = Field(
        default=1.0, ge=0, description="converged once a round copies under this % of the data"
    )
    delta_mib: float = Field(
        default=1.0, ge=0, description="... or under this many MiB"
    )
    max_rounds: int = Field(default=10, ge=1, description="rounds before giving up")
    bandwidth_mib_s: float | None = Field(
        default=None, gt=0, description="throttle per copy stream (MiB/s); unset: unthrottled"
    )
    cadence_seconds: float | None = Field(
        default=None, ge=0,
        description="pause between replication rounds (unset: the setting replication cadence)",
    )
    allow_empty_source: bool = Field(
        default=False, description="accept a source tree with no files (else a failure)"
    )
    delta_rows: int = Field(
        default=0, ge=0, description="databases converge once a round copies at most this"
    )
    workers: int = Field(default=2, ge=1, description="servers replicated in parallel")


class CutoverOptions(_Section):
    """The weighted DNS canary and its automatic rollback rules."""

    steps: list[int] = Field(
        default_factory=lambda: list(DEFAULT_CUTOVER_STEPS),
        description="percent of traffic on the target at each step, rising, ending at 100",
    )
    dwell_seconds: float = Field(
        default=5.0, ge=0, description="seconds of health checks at each step"
    )
    ttl_seconds: int = Field(default=30, ge=0, description="TTL of the weighted records")
    final_sync: bool = Field(
        default=True, description="copy the last database changes before the first step"
    )
    health_checks_per_batch: int | None = Field(
        default=None, ge=1, description="health checks per probe batch (unset: half the requests)"
    )
    probe_interval_seconds: float = Field(
        default=1.0, ge=0, description="seconds between probe batches during a step"
    )
    error_rate_points: float = Field(
        default=5.0, ge=0, description="roll back when the error rate exceeds baseline + this"
    )
    latency_factor: float = Field(
        default=2.0, gt=0, description="roll back when P95 exceeds this × the baseline P95"
    )
    latency_floor_ms: float = Field(
        default=250.0, ge=0, description="... and exceeds this many milliseconds"
    )
    health_fail_pct: float = Field(
        default=10.0, ge=0, le=100, description="roll back when more health checks fail (%)"
    )
    saturation_pct: float = Field(
        default=95.0, ge=0, le=100, description="roll back on CPU or memory above this ..."
    )
    sustained_seconds: float = Field(
        default=120.0, ge=0, description="... for at least this long"
    )

    @field_validator("steps")
    @classmethod
    def _rising(cls, steps: list[int]) -> list[int]:
        if not steps or any(not 0 < s <= 100 for s in steps) or steps != sorted(set(steps)):
            raise ValueError(f"steps must rise strictly within 1..100, got {steps}")
        return steps if steps[-1] == 100 else [*steps, 100]


class ValidateOptions(_Section):
    """What validate checks beyond checksums and row counts."""

    gx: bool = Field(default=True, description="run the great-expectations suites")
    performance: bool = Field(default=True, description="compare source and target performance")
    performance_baselines: dict[str, dict[str, Any]] | None = Field(
        default=None,
        description="server id → performance baseline (unset: the discovery records)",
    )


class TeardownOptions(_Section):
    """What teardown leaves standing."""

    keep_landing_zone: bool = Field(
        default=False, description="keep the VPC and DNS zone when no other wave uses them"
    )


#: The sections, in the order of the wave; the run conf has exactly these plus its flags.
SECTIONS: dict[str, type[_Section]] = {
    "network": NetworkOptions,
    "health": HealthOptions,
    "cloud": CloudOptions,
    "preflight": PreflightOptions,
    "provision": ProvisionOptions,
    "replicate": ReplicateOptions,
    "cutover": CutoverOptions,
    "validate": ValidateOptions,
    "teardown": TeardownOptions,
}


class PhaseOptions(BaseModel):
    """Everything a phase may be told, a section per phase (or per shared concern).

    The validate section is ``validate`` in the conf and ``validate_`` in Python (a
    pydantic model has a ``validate`` attribute of its own).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    network: NetworkOptions = Field(default_factory=NetworkOptions)
    health: HealthOptions = Field(default_factory=HealthOptions)
    cloud: CloudOptions = Field(default_factory=CloudOptions)
    preflight: PreflightOptions = Field(default_factory=PreflightOptions)
    provision: ProvisionOptions = Field(default_factory=ProvisionOptions)
    replicate: ReplicateOptions = Field(default_factory=ReplicateOptions)
    cutover: CutoverOptions = Field(default_factory=CutoverOptions)
    validate_: ValidateOptions = Field(default_factory=ValidateOptions, alias="validate")
    teardown: TeardownOptions = Field(default_factory=TeardownOptions)

    def merged(self, changes: dict[str, dict[str, Any]]) -> PhaseOptions:
        """A copy with ``{section: {field: value}}`` applied on top, validated again."""
        data = self.model_dump(by_alias=True, exclude_unset=True)
        for section, values in changes.items():
            data[section] = {**data.get(section, {}), **values}
        return PhaseOptions.model_validate(data)


def key_exists(path: str) -> bool:
    """Whether ``section.field`` names an option of the model."""
    section, _, name = path.partition(".")
    model = SECTIONS.get(section)
    return model is not None and name in model.model_fields


def conf_key(path: str) -> str:
    """``path`` as an operator sees it in a message (``conf preflight.vcpu_quota``).

    Refuses a path the model does not have, so a remedy can never name an option a run
    cannot take.
    """
    if not key_exists(path):
        raise KeyError(f"{path!r} is not an option of the run conf")
    return f"conf {path}"
