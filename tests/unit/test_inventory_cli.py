"""``migrationbox validate`` and ``migrationbox discover``: output and exit codes."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from migrationbox.cli import discover, validate
from migrationbox.inventory.validation import validate_inventory

ROOT = Path(__file__).resolve().parents[2]
BAD = ROOT / "include" / "estates" / "bad"
SAMPLE = ROOT / "include" / "estates" / "sample"
CLI = [sys.executable, "-m", "migrationbox.cli"]


def run(module, argv: list[str]) -> int:
    """Run one sub-command through its own parser (independent of other commands)."""
    parser = argparse.ArgumentParser()
    module.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.handler(args)


def test_validate_bad_folder_prints_each_problem_and_exits_1(capsys) -> None:
    assert run(validate, ["validate", str(BAD)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert any("04_wrong_types.json" in line and "record bad-types" in line
               and "hardware.cpu_cores:" in line for line in out)
    assert any("07_unknown_dependency.json" in line and "record bad-unknown" in line
               and "network_dependencies[1].destination:" in line for line in out)
    assert any("08_mixed.jsonl:4" in line and "record #2" in line and "server_id:" in line
               for line in out)
    assert out[-1].startswith("3 valid, 9 quarantined (duplicate_server_id: 2,")


def test_validate_json_format(capsys) -> None:
    assert run(validate, ["validate", str(BAD), "--format", "json"]) == 1
    payload = json.loads(capsys.readouterr().out)
    assert payload["valid"] == 3 and len(payload["quarantined"]) == 9
    first = payload["quarantined"][0]
    assert set(first) == {"file", "record", "index", "line", "issues"}
    assert set(first["issues"][0]) == {"field", "message", "reason"}


def test_validate_good_input_exits_0(capsys) -> None:
    assert run(validate, ["validate", str(SAMPLE)]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == "58 valid, 0 quarantined"


def test_validate_unreadable_path_exits_2(tmp_path: Path, capsys) -> None:
    assert run(validate, ["validate", str(tmp_path / "missing")]) == 2
    assert "cannot read" in capsys.readouterr().err
    assert run(validate, ["validate", str(tmp_path)]) == 2  # no record files at all


def test_validate_quarantine_dir(tmp_path: Path, capsys) -> None:
    target = tmp_path / "quarantine"
    assert run(validate, ["validate", str(BAD), "--quarantine-dir", str(target)]) == 1
    assert "quarantined records written to" in capsys.readouterr().out
    index = json.loads((target / "quarantine.json").read_text())
    assert len(index["quarantined"]) == 9
    assert len(list(target.glob("*.reason.txt"))) == 9
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "mine.txt").write_text("x")
    assert run(validate, ["validate", str(BAD), "--quarantine-dir", str(foreign)]) == 2


def test_validate_unknown_dependencies_policy(capsys) -> None:
    example = ROOT / "tests" / "fixtures" / "inventory" / "plan_example.json"
    assert run(validate, ["validate", str(example)]) == 1
    capsys.readouterr()
    assert run(validate, ["validate", str(example), "--unknown-dependencies", "warn"]) == 0
    out = capsys.readouterr().out
    assert out.count("warning: ") == 2 and "1 valid, 0 quarantined, 2 warnings" in out


def test_console_command_exit_codes() -> None:
    """Through the real ``migrationbox`` entry point, in a subprocess."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    bad = subprocess.run([*CLI, "validate", str(BAD)], capture_output=True, text=True,
                         env=env, timeout=120, check=False)
    assert bad.returncode == 1, bad.stderr
    assert "3 valid, 9 quarantined" in bad.stdout
    missing = subprocess.run([*CLI, "validate", "/nonexistent/estate"], capture_output=True,
                             text=True, env=env, timeout=120, check=False)
    assert missing.returncode == 2


def test_discover_local_output_validates(tmp_path: Path, capsys) -> None:
    out = tmp_path / "me.json"
    assert run(discover, ["discover", "--local", "--output", str(out), "--environment",
                          "development", "--role", "api", "--sample-seconds", "0.2",
                          "--no-packages"]) == 0
    data = json.loads(out.read_text())
    assert data["environment"] == "development" and data["role"] == "api"
    assert all(d.get("external") is True for d in data["network_dependencies"])
    report = validate_inventory(out)
    assert report.ok and len(report.valid) == 1
    # to stdout, and with an estate to resolve peers against
    assert run(discover, ["discover", "--local", "--sample-seconds", "0.1", "--no-packages",
                          "--estate", str(SAMPLE), "--server-id", "probe-01"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["server_id"] == "probe-01"


def test_discover_requires_local() -> None:
    with pytest.raises(SystemExit):
        run(discover, ["discover"])
