"""MigrationBox's site settings: from Airflow, with environment variables as overrides.

One place that knows every setting, its default and where it may come from, so that
no module reads ``os.environ`` for a knob of its own. A setting is resolved, first hit
wins:

1. the environment variable ``MIGRATIONBOX_<NAME>`` (an override: tests, the demo, a
   one-off run);
2. the Airflow Variable ``migrationbox_<name>``, for settings marked ``variable`` and
   only at run time (a task, the CLI): Variables are read through the metadata
   database or API, which DAG-parse code must not do; ``AIRFLOW_VAR_MIGRATIONBOX_<NAME>``
   counts as the Variable;
3. the option ``<name>`` of the ``[migrationbox]`` section of airflow.cfg (or its
   ``AIRFLOW__MIGRATIONBOX__<NAME>`` variable);
4. the default.

Reading is cheap and creates nothing: Airflow's configuration and Variables are only
consulted in a process that has already imported Airflow (a DAG parse, a task, the
plugin); elsewhere (the CLI, unit tests) their environment forms are read directly,
since importing Airflow would set up its home folder.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from migrationbox.errors import ConfigurationError

SECTION = "migrationbox"
ENV_PREFIX = "MIGRATIONBOX_"
VARIABLE_PREFIX = "migrationbox_"


def _number_list(raw: str) -> list[int]:
    value = json.loads(raw) if raw.strip().startswith("[") else raw.split(",")
    return [int(v) for v in value]


#: ``approvers`` value meaning "no named respondents: the auth manager decides"
ANY_APPROVER = "*"


def _names(raw: str) -> tuple[str, ...]:
    value = json.loads(raw) if raw.strip().startswith("[") else raw.split(",")
    return tuple(str(v).strip() for v in value if str(v).strip())


def _flag(raw: str) -> bool:
    value = raw.strip().lower()
    if value not in {"1", "true", "yes", "on", "0", "false", "no", "off"}:
        raise ValueError("expected true or false")
    return value in {"1", "true", "yes", "on"}


def _choice(*allowed: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip().lower()
        if value not in allowed:
            raise ValueError(f"expected one of {', '.join(allowed)}")
        return value
    return parse


@dataclass(frozen=True)
class Setting:
    name: str
    default: Any
    parse: Callable[[str], Any]
    description: str
    #: may also be set as an Airflow Variable (read at run time only)
    variable: bool = False


SETTINGS: dict[str, Setting] = {s.name: s for s in (
    Setting("home", None, str,
            "folder for local state (stores, plan exports, lab data); unset: .runtime of "
            "the checkout"),
    Setting("plans_dir", None, str, "folder of exported plan specs; unset: <home>/plans"),
    Setting("artifacts_dir", None, str, "folder of phase reports; unset: <home>/artifacts"),
    Setting("shared_root", None, str,
            "object storage (s3://bucket/prefix, reached through the aws_default "
            "connection) for the files every host of a cluster must reach: run reports, "
            "the healer's backups, refreshed prices; unset: the local runtime folder only "
            "(the production profile sets it from production_shared_root)"),
    Setting("plans_root", None, str,
            "object storage (s3://bucket/prefix) the per-estate plans bundle is published "
            "to and read from (Airflow's S3DagBundle); unset: the local plans folder is the "
            "bundle (the production profile sets it from production_plans_root)"),
    Setting("teams_port", 3978, int,
            "loopback port of the Microsoft Teams bot endpoint (POST /api/messages); 0 "
            "picks a free one; the platform starts it with Airflow"),
    Setting("teams_conn_id", "migrationbox_teams", str,
            "Airflow connection holding the Teams bot's credentials: login = the bot's "
            "app id, password = its client secret, extra = tenant_id, openid_metadata_url, "
            "issuers, connector_token_url (see docs/teams.md)"),
    Setting("teams_speech_model_path", None, str,
            "folder of a faster-whisper (CTranslate2) speech model for voice commands; "
            "unset: the multilingual base model installed from the package registry"),
    Setting("teams_notify_interval_s", 5.0, float,
            "seconds between the Teams bot's scans for events to notify (wave started, "
            "phase failed, incidents, approvals waiting)"),
    Setting("store_url", None, str,
            "SQLAlchemy URL of the MigrationBox store; unset: the Airflow connection "
            "migrationbox_store, else a SQLite file in <home>"),
    Setting("budget_threshold_usd", 20_000.0, float,
            "a wave whose predicted monthly cost exceeds this (USD) gets a budget approval "
            "gate (shapes the wave DAG: read at parse time)"),
    Setting("approvers", ("admin",), _names,
            "Airflow user ids assigned to the approval gates (JSON list or comma-separated; "
            "read at parse time); `*` assigns nobody, so whoever the auth manager lets "
            "answer the DAG's gates may (the production profile's per-estate roles)"),
    Setting("strict_specs", False, _flag,
            "a broken plan spec is an import error of the whole wave-DAG file (CI) instead "
            "of failing its own estate only (read at parse time)"),
    Setting("sensor_poke_seconds", 10.0, float, "seconds between two pokes of a gate"),
    Setting("task_retries", 2, int, "retries of a wave task (bad input never retries)"),
    Setting("replication_cadence_seconds", 300.0, float,
            "seconds between replication rounds of the deferrable replication operator"),
    Setting("cutover_weights", [5, 25, 50, 100], _number_list,
            "percent of traffic on the target at each cutover step, when a run sets no "
            "conf cutover.steps", variable=True),
    Setting("cutover_check_seconds", 5.0, float,
            "seconds of health checks between two cutover steps, when a run sets no conf "
            "cutover.dwell_seconds", variable=True),
    Setting("replication_delta_threshold_bytes", 1_048_576, int,
            "replication rounds stop once a round copies less than this, when a run sets "
            "no conf replicate.delta_mib", variable=True),
    Setting("heal_schedule", "@continuous", str,
            "schedule of the heal DAG when the mechanism is `window` (read at parse time)"),
    Setting("heal_mechanism", "asset", _choice("asset", "window", "deferrable"),
            "how the healer is woken: `asset` (a triggerer watch wakes the heal DAG), "
            "`window` (a continuous DAG that senses in a loop) or `deferrable` (read at "
            "parse time)"),
    Setting("heal_integrity_every_s", 60.0, float,
            "seconds between two row-integrity checks of a database target"),
    Setting("heal_watch_interval_s", 10.0, float,
            "seconds between two cheap looks of the triggerer's estate watch"),
    Setting("heal_watch_refire_s", 60.0, float,
            "seconds before the estate watch wakes the healer again for a signal that "
            "still holds"),
    Setting("healer_notify_from_airflow", False, _flag,
            "outside a task, also look up the healer's notification connections in "
            "Airflow (not only AIRFLOW_CONN_* variables)"),
    Setting("aws_max_attempts", 5, int,
            "attempts per AWS API call (the first included) of every boto3 client, which "
            "retries throttling and transient errors in botocore's adaptive mode; a "
            "config_kwargs.retries in the connection's extra wins"),
    Setting("terraform_templates", None, str,
            "folder of Terraform templates; unset: terraform_templates of the checkout"),
    Setting("lab_db", None, _choice("postgresql", "sqlite"),
            "database engine of the local lab; unset: PostgreSQL when reachable, else "
            "SQLite"),
    Setting("traces_dir", None, str,
            "folder of the public VM traces sizing trains on; unset: ml/data/traces of the "
            "checkout"),
    Setting("pricing_dir", None, str,
            "folder of refreshed price files; unset: <home>/pricing"),
    Setting("test_pg_admin_url", None, str,
            "PostgreSQL admin URL the tests create throw-away databases with; unset: the "
            "loopback default"),
    Setting("platform_profile", "embedded", _choice("embedded", "production"),
            "what `platform up` starts when no --profile is given: `embedded` (SQLite, "
            "LocalExecutor) or `production` (PostgreSQL, CeleryExecutor with Redis; "
            "docs/production.md)"),
    Setting("production_pg_admin_url", None, str,
            "production profile: SQLAlchemy URL of a PostgreSQL role that may CREATE "
            "DATABASE; the Airflow metadata and store databases are created and reached "
            "through it (a password may also come from PGPASSWORD or ~/.pgpass); unset: "
            "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"),
    Setting("production_airflow_db", "migrationbox_airflow", str,
            "production profile: name of Airflow's metadata database (created if missing)"),
    Setting("production_store_db", "migrationbox_store", str,
            "production profile: name of the MigrationBox store's database (created if "
            "missing)"),
    Setting("production_mlflow_db", "migrationbox_mlflow", str,
            "production profile: name of MLflow's tracking database (models, runs; created "
            "if missing)"),
    Setting("production_mlflow_artifact_root", "s3://migrationbox-mlflow/artifacts", str,
            "production profile: where MLflow keeps model files (an s3:// URI; the "
            "emulator's S3 on a single host, so a model trained on one worker loads on "
            "any other)"),
    Setting("production_shared_root", "s3://migrationbox-shared", str,
            "production profile: object storage for files every host must reach (run "
            "reports, healer backups, refreshed prices); the emulator's S3 on one host"),
    Setting("production_plans_root", "s3://migrationbox-plans/plans", str,
            "production profile: object storage of the plans bundle (the per-estate "
            "loader DAG files), read by every DAG processor, scheduler and worker through "
            "Airflow's S3DagBundle"),
    Setting("production_triggerers", 2, int,
            "production profile: number of Airflow triggerers (each trigger runs in one "
            "of them; a dead triggerer's triggers move to a live one)"),
    Setting("production_broker_url", "redis://127.0.0.1:6379/0", str,
            "production profile: the Celery broker (Redis URL)"),
    Setting("production_schedulers", 2, int,
            "production profile: number of Airflow schedulers (active-active)"),
    Setting("production_celery_workers", 2, int,
            "production profile: number of Celery workers"),
    Setting("production_worker_concurrency", 2, int,
            "production profile: task slots of each Celery worker (small on a 2-core "
            "machine)"),
    Setting("production_replication_workers", 2, int,
            "production profile: Celery workers that serve only the `replication` queue "
            "(the tasks that read source disks and write target disks)"),
    Setting("production_replication_concurrency", 1, int,
            "production profile: task slots of each replication worker (one: a "
            "replication task is heavy I/O)"),
    Setting("production_task_heartbeat_timeout", 60, int,
            "production profile: seconds without a task heartbeat before the scheduler "
            "marks the task failed and retries it (Airflow's [scheduler] "
            "task_instance_heartbeat_timeout; Airflow's default is 300): how fast a "
            "killed worker's task is noticed"),
)}


def _from_variable(name: str) -> str | None:
    key = VARIABLE_PREFIX + name
    if "airflow.sdk" in sys.modules:
        try:
            from airflow.sdk import Variable

            value = Variable.get(key, default=None)
        except Exception:  # no API or database here: the Variable is just not known
            value = None
        if value is not None:
            return str(value)
    return os.environ.get(f"AIRFLOW_VAR_{key.upper()}")


def _from_config(name: str) -> str | None:
    if "airflow.configuration" in sys.modules:
        from airflow.configuration import conf

        value = conf.get(SECTION, name, fallback=None)
        return None if value is None else str(value)
    return os.environ.get(f"AIRFLOW__{SECTION.upper()}__{name.upper()}")


def get(name: str, *, variables: bool = True) -> Any:
    """The setting's value (see the module docstring for the order).

    ``variables=False`` skips Airflow Variables (DAG-parse time). A value that does not
    parse raises ``ConfigurationError`` naming where it came from.
    """
    setting = SETTINGS[name]
    candidates: list[tuple[str, Callable[[], str | None]]] = [
        (f"environment variable {ENV_PREFIX}{name.upper()}",
         lambda: os.environ.get(ENV_PREFIX + name.upper())),
    ]
    if variables and setting.variable:
        candidates.append((f"Airflow Variable {VARIABLE_PREFIX}{name}",
                           lambda: _from_variable(name)))
    candidates.append((f"[{SECTION}] {name} of the Airflow configuration",
                       lambda: _from_config(name)))
    for where, read in candidates:
        raw = read()
        if raw is None or raw == "":
            continue
        try:
            return setting.parse(raw)
        except (ValueError, TypeError) as exc:
            raise ConfigurationError(f"{where}: {raw!r} is not valid: {exc}") from exc
    return setting.default


def run_defaults() -> dict[str, dict[str, Any]]:
    """Phase options whose site default is a setting: ``{section: {field: value}}``.

    A run's conf overrides each of them (``WaveRunConf.phase_options``).
    """
    return {
        "cutover": {"steps": get("cutover_weights"),
                    "dwell_seconds": get("cutover_check_seconds")},
        "replicate": {"delta_mib": get("replication_delta_threshold_bytes") / 1_048_576},
    }


def reference() -> str:
    """The settings as a Markdown reference (docs/settings.md is this text), so the
    documentation cannot drift from the declarations."""
    lines = [
        "# Settings",
        "",
        "Generated by `python -m migrationbox.settings` from `include/migrationbox/settings.py`;",
        "do not edit by hand. A setting is resolved, first hit wins: the environment",
        f"variable `{ENV_PREFIX}<NAME>`; for settings marked *Variable*, the Airflow Variable",
        f"`{VARIABLE_PREFIX}<name>` (at run time only); the option `<name>` of the",
        f"`[{SECTION}]` section of airflow.cfg (or `AIRFLOW__{SECTION.upper()}__<NAME>`);",
        "the default. A value that does not parse stops the command with a message naming",
        "where it came from.",
        "",
        "| setting | environment override | Variable | default | what it does |",
        "|---|---|---|---|---|",
    ]
    for s in SETTINGS.values():
        shown = json.dumps(list(s.default)) if isinstance(s.default, (list, tuple)) \
            else s.default
        default = "unset" if s.default is None else f"`{shown}`"
        variable = f"`{VARIABLE_PREFIX}{s.name}`" if s.variable else ""
        description = s.description.replace("|", "\\|")
        lines.append(f"| `{s.name}` | `{ENV_PREFIX}{s.name.upper()}` | {variable} | {default} | "
                     f"{description} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(reference())
