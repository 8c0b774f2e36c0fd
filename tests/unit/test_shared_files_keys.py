"""Keys and roots of shared files (:mod:`migrationbox.shared_files`): whatever text a key
is made of, it is refused with ``SharedKeyError`` or it names a file inside the folder it
is cached in; no other exception escapes. Also the folder snapshot that decides which
report files a task wrote."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from migrationbox import shared_files
from migrationbox.errors import ConfigurationError, InputError
from migrationbox.shared_files import SharedKeyError, SharedRoot, SharedRootError, check_key

_SEGMENT = st.text(st.characters(blacklist_categories=("Cs",)), min_size=0, max_size=30)
_KEYS = st.one_of(
    st.text(max_size=300),
    st.lists(st.one_of(_SEGMENT, st.sampled_from(["..", ".", "", "a", "x\\y", "\x00"])),
             min_size=1, max_size=8).map("/".join),
    st.builds(lambda k: "/" + k, st.text(max_size=20)),
)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(_KEYS)
def test_a_key_is_refused_or_stays_inside_its_folder(key: str) -> None:
    base = Path("/srv/cache/base")
    try:
        checked = check_key(key)
    except SharedKeyError as exc:
        assert str(exc)  # says why
        return
    resolved = Path(os.path.normpath(base / checked))
    assert resolved.is_relative_to(base) and resolved != base
    assert all(s not in ("", ".", "..") for s in checked.split("/"))
    assert len(checked.encode("utf-8")) <= shared_files.MAX_KEY_BYTES
    assert not any(ord(c) < 32 for c in checked)


@pytest.mark.parametrize("key", ["", "/abs", "a//b", "a/./b", "a/../b", "..", "a/", "a\\b",
                                 "a\nb", "x" * 1025, "a/" + "y" * 256, "\ud800"])
def test_bad_keys_are_input_errors_naming_the_key(key: str) -> None:
    with pytest.raises(SharedKeyError) as caught:
        check_key(key)
    assert isinstance(caught.value, InputError)


def test_good_keys_pass_unchanged() -> None:
    for key in ("artifacts/shop/wave_01/manual__2026-12-07T10_00_00/preflight.json",
                "backups/e1/db-01/20261207T100000000000Z.sqlite", "pricing/aws/us-east-1.csv",
                "with space/ünïcode.txt"):
        assert check_key(key) == key


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=80))
def test_a_root_is_parsed_or_refused_as_a_configuration_error(text: str) -> None:
    try:
        root = SharedRoot.parse(text)
    except SharedRootError as exc:
        assert isinstance(exc, ConfigurationError)
        return
    assert root.uri().startswith(f"s3://{root.bucket}")
    assert SharedRoot.parse(root.uri()) == root


def test_roots_and_object_keys() -> None:
    root = SharedRoot.parse("s3://migrationbox-shared/team/a/")
    assert (root.bucket, root.prefix) == ("migrationbox-shared", "team/a")
    assert root.object_key("x/y.json") == "team/a/x/y.json"
    assert SharedRoot.parse("s3://bucket").object_key("k") == "k"
    for bad in ("/local/folder", "file:///x", "s3://Bad_Bucket/x", "s3://ab", "s3://b..x/y",
                "s3://bucket/a/../b"):
        with pytest.raises(SharedRootError):
            SharedRoot.parse(bad)
    with pytest.raises(SharedKeyError, match="longer than"):
        SharedRoot.parse("s3://bucket/" + "p" * 200).object_key("/".join(["k" * 200] * 5))


def test_unset_shared_root_means_local_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MIGRATIONBOX_SHARED_ROOT", raising=False)
    monkeypatch.delenv("AIRFLOW__MIGRATIONBOX__SHARED_ROOT", raising=False)
    assert shared_files.configured() is None
    monkeypatch.setenv("MIGRATIONBOX_SHARED_ROOT", "  ")
    assert shared_files.configured() is None
    monkeypatch.setenv("MIGRATIONBOX_SHARED_ROOT", "not-a-uri")
    with pytest.raises(SharedRootError, match="not-a-uri"):
        shared_files.configured()


def test_changed_since_finds_what_a_task_wrote(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "old.json").write_text("old")
    (folder / "kept.json").write_text("kept")
    before = shared_files.snapshot(folder)
    (folder / "old.json").write_text("rewritten, longer")
    (folder / "sub").mkdir()
    (folder / "sub" / "new.json").write_text("new")
    (folder / ".new.json.abc.tmp").write_text("half")  # an atomic write in progress
    assert shared_files.changed_since(folder, before) == ["old.json", "sub/new.json"]
    assert shared_files.snapshot(tmp_path / "none") == {}
