"""The Teams app package: the manifest validates against the published 1.29 schema, the
icons have the sizes Teams demands, bad input is refused with the reason, and the CLI
writes the zip."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from migrationbox.teams.manifest import (
    COMMAND_HELP,
    COMMAND_MENUS,
    SCHEMA_PATH,
    ManifestError,
    build_manifest,
    build_package,
    validate_manifest,
)
from migrationbox.teams.models import Command

APP_ID = "3f2504e0-4f89-11d3-9a0c-0305e82c3301"
BASE = "https://migrationbox.contoso.com/bot"


def _schema_errors(manifest: dict) -> list[str]:
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    return [e.message for e in jsonschema.Draft4Validator(schema).iter_errors(manifest)]


def test_manifest_validates_against_the_published_schema() -> None:
    manifest = build_manifest(APP_ID, BASE)
    assert _schema_errors(manifest) == []
    assert manifest["manifestVersion"] == "1.29"
    assert manifest["id"] == manifest["bots"][0]["botId"] == APP_ID
    assert manifest["webApplicationInfo"] == {
        "id": APP_ID, "resource": f"api://migrationbox.contoso.com/{APP_ID}"}
    assert manifest["validDomains"] == ["migrationbox.contoso.com"]
    assert set(manifest["bots"][0]["scopes"]) == {"personal", "team", "groupChat"}
    tab = manifest["staticTabs"][0]
    assert tab["contentUrl"] == f"{BASE}/teams/tab/dashboard"
    assert tab["scopes"] == ["personal"]


def test_command_menus_are_real_commands_within_teams_limits() -> None:
    manifest = build_manifest(APP_ID, BASE)
    lists = manifest["bots"][0]["commandLists"]
    assert sorted(s for menu in lists for s in menu["scopes"]) == sorted(COMMAND_MENUS)
    shown: set[str] = set()
    for menu in lists:
        titles = [c["title"] for c in menu["commands"]]
        assert len(titles) <= 12 and len(set(titles)) == len(titles)
        assert all(Command(t) in COMMAND_HELP for t in titles)
        shown.update(titles)
    assert {"status", "start", "approve", "reject", "pause"} <= shown
    assert set(COMMAND_HELP) == set(Command)  # every command has its help line


@pytest.mark.parametrize("app_id,base,message", [
    ("not-a-guid", BASE, "not a GUID"),
    (APP_ID, "http://migrationbox.contoso.com", "https"),
    (APP_ID, "migrationbox.contoso.com", "https"),
    (APP_ID, "https://host.example.com/?x=1", "query"),
])
def test_bad_input_is_refused_with_the_reason(app_id: str, base: str, message: str) -> None:
    with pytest.raises(ManifestError, match=message):
        build_manifest(app_id, base)


def test_bad_version_is_refused() -> None:
    with pytest.raises(ManifestError, match="semver"):
        build_manifest(APP_ID, BASE, version="one")


def test_schema_violations_name_the_field() -> None:
    manifest = build_manifest(APP_ID, BASE)
    manifest["accentColor"] = "blue"
    manifest["bots"][0]["scopes"] = ["everywhere"]
    with pytest.raises(ManifestError) as caught:
        validate_manifest(manifest)
    assert "accentColor" in str(caught.value) and "bots/0/scopes/0" in str(caught.value)


def test_package_holds_manifest_and_icons_of_the_right_sizes(tmp_path: Path) -> None:
    path = build_package(APP_ID, BASE, tmp_path / "app.zip")
    with zipfile.ZipFile(path) as archive:
        assert sorted(archive.namelist()) == ["color.png", "manifest.json", "outline.png"]
        manifest = json.loads(archive.read("manifest.json"))
        color = Image.open(io.BytesIO(archive.read(manifest["icons"]["color"])))
        outline = Image.open(io.BytesIO(archive.read(manifest["icons"]["outline"])))
    assert _schema_errors(manifest) == []
    assert (color.format, color.size) == ("PNG", (192, 192))
    assert (outline.format, outline.size) == ("PNG", (32, 32))
    # outline: white on transparent only
    pixels = list(outline.convert("RGBA").getdata())
    assert any(p[3] == 0 for p in pixels) and any(p[3] > 0 for p in pixels)
    assert all(p[:3] == (255, 255, 255) for p in pixels if p[3] > 0)


def test_package_must_be_a_zip(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match=r"\.zip"):
        build_package(APP_ID, BASE, tmp_path / "app.tar")


@settings(max_examples=60, deadline=None)
@given(app_id=st.text(max_size=50), base=st.text(max_size=80),
       version=st.text(max_size=12))
def test_any_input_gives_a_valid_manifest_or_a_clear_refusal(app_id: str, base: str,
                                                              version: str) -> None:
    try:
        manifest = build_manifest(app_id, base, version=version)
    except ManifestError as exc:
        assert str(exc)
    else:
        assert _schema_errors(manifest) == []


def test_cli_writes_the_package(tmp_path: Path) -> None:
    out = tmp_path / "pkg" / "app.zip"
    done = subprocess.run(
        [sys.executable, "-m", "migrationbox.cli", "teams", "manifest", "--app-id", APP_ID,
         "--base-url", BASE, "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"{BASE}/api/messages" in done.stdout
    assert zipfile.ZipFile(out).namelist()
    refused = subprocess.run(
        [sys.executable, "-m", "migrationbox.cli", "teams", "manifest", "--app-id", "x",
         "--base-url", BASE, "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and "not a GUID" in refused.stderr
    assert "Traceback" not in refused.stderr
