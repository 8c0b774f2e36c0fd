"""Site settings: environment overrides, Airflow Variables, the [migrationbox] section."""

from __future__ import annotations

import sys

import pytest
import yaml

from migrationbox import settings
from migrationbox.config import project_root
from migrationbox.errors import ConfigurationError


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for key in list(os.environ):
        if key.startswith(("MIGRATIONBOX_CUTOVER", "AIRFLOW_VAR_MIGRATIONBOX_",
                           "AIRFLOW__MIGRATIONBOX__", "MIGRATIONBOX_REPLICATION",
                           "MIGRATIONBOX_BUDGET", "MIGRATIONBOX_APPROVERS")):
            monkeypatch.delenv(key)


def test_defaults_when_nothing_is_set():
    assert settings.get("cutover_weights") == [5, 25, 50, 100]
    assert settings.get("replication_cadence_seconds") == 300.0
    assert settings.get("approvers") == ("admin",)


def test_environment_overrides_variable_overrides_config(monkeypatch):
    monkeypatch.setenv("AIRFLOW__MIGRATIONBOX__CUTOVER_CHECK_SECONDS", "3")
    assert settings.get("cutover_check_seconds") == 3.0
    monkeypatch.setenv("AIRFLOW_VAR_MIGRATIONBOX_CUTOVER_CHECK_SECONDS", "4")
    assert settings.get("cutover_check_seconds") == 4.0
    assert settings.get("cutover_check_seconds", variables=False) == 3.0  # parse time
    monkeypatch.setenv("MIGRATIONBOX_CUTOVER_CHECK_SECONDS", "5.5")
    assert settings.get("cutover_check_seconds") == 5.5


def test_a_setting_that_is_not_a_variable_ignores_the_variable(monkeypatch):
    monkeypatch.setenv("AIRFLOW_VAR_MIGRATIONBOX_BUDGET_THRESHOLD_USD", "1")
    monkeypatch.setenv("AIRFLOW__MIGRATIONBOX__BUDGET_THRESHOLD_USD", "5000")
    assert settings.get("budget_threshold_usd") == 5000.0


def test_lists_take_json_or_commas(monkeypatch):
    monkeypatch.setenv("MIGRATIONBOX_APPROVERS", "alice, bob")
    assert settings.get("approvers") == ("alice", "bob")
    monkeypatch.setenv("AIRFLOW_VAR_MIGRATIONBOX_CUTOVER_WEIGHTS", "[10, 50, 100]")
    assert settings.get("cutover_weights") == [10, 50, 100]


def test_a_bad_value_names_where_it_came_from(monkeypatch):
    monkeypatch.setenv("AIRFLOW_VAR_MIGRATIONBOX_CUTOVER_WEIGHTS", "[10, fifty]")
    with pytest.raises(ConfigurationError, match="Airflow Variable migrationbox_cutover_weights"):
        settings.get("cutover_weights")


def test_run_defaults_feed_the_phase_options(monkeypatch):
    from migrationbox.orchestration.runconf import parse_run_conf

    monkeypatch.setenv("AIRFLOW_VAR_MIGRATIONBOX_CUTOVER_WEIGHTS", "[20, 100]")
    monkeypatch.setenv("AIRFLOW_VAR_MIGRATIONBOX_REPLICATION_DELTA_THRESHOLD_BYTES", "2097152")
    options = parse_run_conf({}).phase_options(settings.run_defaults())
    assert options.cutover.steps == [20, 100] and options.replicate.delta_mib == 2
    explicit = parse_run_conf({"cutover": {"steps": [50, 100]}})
    assert explicit.phase_options(settings.run_defaults()).cutover.steps == [50, 100]


def test_the_defaults_are_the_phase_option_defaults():
    from migrationbox.phases.options import PhaseOptions

    options = PhaseOptions()
    defaults = {"cutover": {"steps": settings.SETTINGS["cutover_weights"].default,
                            "dwell_seconds": settings.SETTINGS["cutover_check_seconds"].default},
                "replicate": {"delta_mib": settings.SETTINGS[
                    "replication_delta_threshold_bytes"].default / 1_048_576}}
    assert options.cutover.steps == defaults["cutover"]["steps"]
    assert options.cutover.dwell_seconds == defaults["cutover"]["dwell_seconds"]
    assert options.replicate.delta_mib == defaults["replicate"]["delta_mib"]


def test_every_variable_of_airflow_settings_is_read(monkeypatch):
    """Each Variable the platform applies is a setting read as a Variable, and its
    value in the file parses to that setting's default (the file documents them)."""
    doc = yaml.safe_load((project_root() / "airflow_settings.yaml").read_text())
    variables = doc["airflow"]["variables"]
    assert variables, "the file declares Variables"
    for var in variables:
        name = var["variable_name"].removeprefix(settings.VARIABLE_PREFIX)
        assert var["variable_name"].startswith(settings.VARIABLE_PREFIX)
        assert name in settings.SETTINGS, f"{var['variable_name']} is read by nothing"
        setting = settings.SETTINGS[name]
        assert setting.variable, f"{var['variable_name']} is not read as a Variable"
        monkeypatch.setenv(f"AIRFLOW_VAR_{var['variable_name'].upper()}",
                           var["variable_value"])
        assert settings.get(name) == setting.default


def test_reading_settings_imports_no_airflow_and_creates_nothing(tmp_path, monkeypatch):
    """Outside an Airflow process nothing of Airflow is imported (it would set up its
    home folder); the environment forms are read instead."""
    import subprocess

    code = ("import sys; from migrationbox import settings; "
            "settings.get('cutover_weights'); settings.run_defaults(); "
            "settings.get('budget_threshold_usd', variables=False); "
            "print(any(m == 'airflow' or m.startswith('airflow.') for m in sys.modules))")
    env = {"PATH": "/usr/bin:/bin", "AIRFLOW_HOME": str(tmp_path / "af"),
           "MIGRATIONBOX_HOME": str(tmp_path / "mb"), "PYTHONPATH": str(project_root() / "include")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True, cwd=tmp_path)
    assert out.stdout.strip() == "False"
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_the_replication_cadence_is_a_setting(monkeypatch):
    from migrationbox.orchestration.triggers import default_cadence

    monkeypatch.setenv("AIRFLOW__MIGRATIONBOX__REPLICATION_CADENCE_SECONDS", "12")
    assert default_cadence() == 12.0
    monkeypatch.setenv("MIGRATIONBOX_REPLICATION_CADENCE_SECONDS", "3")
    assert default_cadence() == 3.0


def test_no_module_reads_a_migrationbox_variable_of_its_own():
    """Every knob goes through ``migrationbox.settings`` (so it is declared, documented
    and may come from Airflow): no other module reads ``MIGRATIONBOX_*`` from the
    environment. The supervisor only passes variables on to the processes it starts."""
    import re

    pattern = re.compile(r"""(environ\.get|getenv|environ\[)\(?\s*f?["']MIGRATIONBOX_""")
    offenders = []
    root = project_root()
    for folder in ("include", "dags", "plugins"):
        for path in (root / folder).rglob("*.py"):
            rel = path.relative_to(root).as_posix()
            if rel in {"include/migrationbox/settings.py",
                       "include/migrationbox/platform/supervisor.py"}:
                continue
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if pattern.search(line):
                    offenders.append(f"{rel}:{number}: {line.strip()}")
    assert not offenders, "read through migrationbox.settings instead:\n" + "\n".join(offenders)


def test_the_settings_reference_lists_every_setting():
    """docs/settings.md is generated from the declarations
    (``python -m migrationbox.settings > docs/settings.md``); a setting added without
    regenerating it fails here."""
    doc = (project_root() / "docs" / "settings.md").read_text()
    assert doc == settings.reference(), \
        "regenerate: python -m migrationbox.settings > docs/settings.md"
