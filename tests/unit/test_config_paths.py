"""The config path functions name folders and create nothing (they run at DAG-parse time)."""

from __future__ import annotations

from pathlib import Path

import pytest

from migrationbox import config


def test_path_functions_create_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("MIGRATIONBOX_HOME", str(home))
    monkeypatch.delenv("MIGRATIONBOX_PLANS_DIR", raising=False)
    monkeypatch.delenv("MIGRATIONBOX_ARTIFACTS_DIR", raising=False)

    assert config.runtime_dir() == home
    assert config.plans_dir() == home / "plans"
    assert config.artifacts_dir() == home / "artifacts"
    assert not home.exists()


def test_explicit_folders_win(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MIGRATIONBOX_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MIGRATIONBOX_PLANS_DIR", str(tmp_path / "specs"))
    monkeypatch.setenv("MIGRATIONBOX_ARTIFACTS_DIR", str(tmp_path / "out"))

    assert config.plans_dir() == tmp_path / "specs"
    assert config.artifacts_dir() == tmp_path / "out"
    assert list(tmp_path.iterdir()) == []


def test_locations_are_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The [migrationbox] section names the folders; a MIGRATIONBOX_* variable overrides."""
    for key in ("MIGRATIONBOX_HOME", "MIGRATIONBOX_PLANS_DIR", "MIGRATIONBOX_STORE_URL"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AIRFLOW__MIGRATIONBOX__HOME", str(tmp_path / "cfg"))
    monkeypatch.setenv("AIRFLOW__MIGRATIONBOX__STORE_URL", "sqlite:///from-cfg.db")
    assert config.plans_dir() == tmp_path / "cfg" / "plans"
    assert config.store_url() == "sqlite:///from-cfg.db"
    monkeypatch.setenv("MIGRATIONBOX_HOME", str(tmp_path / "env"))
    assert config.runtime_dir() == tmp_path / "env"
