"""No pricing override crashes sizing: it applies, or an ``InputError`` names file and key.

Two kinds of file a user hands over change prices: the assumptions override
(``migrationbox size --assumptions FILE``: commitments, licences, egress) and a
refreshed price file (``<pricing dir>/<cloud>/<region>.csv`` with its ``.json``
sidecar, written by ``prices refresh`` and sometimes edited by hand). Whatever they
hold, the result is a model whose every figure is finite and non-negative, or an
``InputError`` naming the file (and key or line). A price file is all or nothing: a
catalog from the rows that parsed would silently change which machine is cheapest.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from migrationbox.errors import InputError
from migrationbox.sizing.clouds import clear_cache, load_assumptions, load_catalog
from migrationbox.sizing.clouds._files import REFRESHED_COLUMNS, PriceFileError

SETTINGS = settings(max_examples=80, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])

SCALARS = st.one_of(st.none(), st.booleans(), st.integers(),
                    st.integers(min_value=-(10**30), max_value=10**30), st.floats(),
                    st.text(max_size=8))
JSON = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=10)
ASSUMPTION_KEYS = ["commitments", "windows_usd_per_vcpu_hour", "sql_min_vcpu",
                   "egress_usd_per_gb", "egress_share", "licence_basis", "rhel_small_max_vcpu"]


@st.composite
def assumptions_text(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["any", "near", "bytes", "deep", "literal"]))
    if kind == "any":
        return json.dumps(draw(JSON)).encode()
    if kind == "near":
        data: dict[str, Any] = {}
        for key in draw(st.lists(st.sampled_from(ASSUMPTION_KEYS), min_size=1, max_size=3)):
            if key == "commitments":
                data[key] = {draw(st.sampled_from(["aws", "azure", "gcp", "x"])): draw(
                    st.one_of(JSON, st.fixed_dictionaries({
                        "one_year_discount": SCALARS, "three_year_discount": SCALARS})))}
            elif key == "egress_usd_per_gb":
                data[key] = {draw(st.sampled_from(["aws", "gcp"])): draw(SCALARS)}
            else:
                data[key] = draw(SCALARS)
        return json.dumps(data).encode()
    if kind == "bytes":
        return draw(st.binary(max_size=100))
    if kind == "deep":
        depth = draw(st.sampled_from([50, 5000, 100_000]))
        return ('{"commitments": ' + '{"a":' * depth + "1" + "}" * depth + "}").encode()
    return draw(st.sampled_from([
        b'{"windows_usd_per_vcpu_hour": NaN}', b'{"egress_usd_per_gb": {"aws": Infinity}}',
        b'{"egress_usd_per_gb": {"aws": -1}}', b'{"sql_min_vcpu": 1e400}',
        b'\xef\xbb\xbf{"egress_share": 0.5}', '{"licence_basis": "caf\u00e9"}'.encode("latin-1"),
        b'{"commitments": {"aws": 0.3}}', b'{"egress_share": 0.5', b"",
        b'{"licence_basis": "x\\ud800"}', b'{"commitments": {"aws": {"basis": "\\udfff"}}}']))


def _finite_figures(value: Any) -> bool:
    if isinstance(value, dict):
        return all(_finite_figures(v) for v in value.values())
    if isinstance(value, float):
        return math.isfinite(value) and value >= 0
    return True


@SETTINGS
@given(raw=assumptions_text())
def test_any_assumptions_file_applies_or_is_refused_naming_it(tmp_path: Path,
                                                               raw: bytes) -> None:
    path = tmp_path / "assumptions.json"
    path.write_bytes(raw)
    try:
        assumptions = load_assumptions(path)
    except InputError as exc:
        assert str(exc).startswith(f"assumptions file {path}: ")
        return
    assert _finite_figures(assumptions.model_dump())
    assert "\n".join(assumptions.notes()).encode("utf-8")  # printable with every sizing


def test_assumptions_errors_name_the_key(tmp_path: Path) -> None:
    cases = {'{"windows_usd_per_vcpu_hour": NaN}': "windows_usd_per_vcpu_hour",
             '{"egress_usd_per_gb": {"aws": Infinity}}': "egress_usd_per_gb.aws",
             '{"egress_usd_per_gb": {"aws": -1}}': "egress_usd_per_gb.aws",
             '{"commitments": {"aws": 0.3}}': "commitments.aws"}
    for text, key in cases.items():
        path = tmp_path / "a.json"
        path.write_text(text)
        with pytest.raises(InputError, match=key.replace(".", r"\.")):
            load_assumptions(path)


# ------------------------------------------------------------------ refreshed prices

CELLS = st.one_of(st.sampled_from(["", "1", "2", "0.5", "-1", "NaN", "inf", "1e309", "1e308",
                                   "4.5", "0", "x", "1,5", " 3 ", "9" * 400, '"', "\x00"]),
                  st.text(max_size=6))


@st.composite
def price_file(draw: st.DrawFn) -> tuple[bytes, bytes]:
    header = list(draw(st.sampled_from([
        REFRESHED_COLUMNS, REFRESHED_COLUMNS[:5], ("name", "price"), ("", "vcpu")])))
    rows = [["m5.large", "2", "8", "x86_64", "0.096", "0.06", "0.04"][:len(header)]]
    for _ in range(draw(st.integers(0, 3))):
        rows.append([draw(CELLS) for _ in range(draw(st.integers(0, len(header) + 1)))])
    text = "\n".join(",".join(r) for r in [list(header), *rows]) + "\n"
    csv_raw = text.encode(draw(st.sampled_from(["utf-8", "latin-1", "utf-16"])),
                          errors="replace")
    if draw(st.booleans()):
        csv_raw = csv_raw[:draw(st.integers(0, len(csv_raw)))]
    sidecar = draw(st.one_of(
        st.just(b'{"source": "hand-edited", "as_of": "2026-12-01"}'),
        st.builds(lambda v: json.dumps(v).encode(), JSON),
        st.sampled_from([b"", b"[", b'{"source": "x"}', b'{"source": null, "as_of": 1}',
                         b"[" * 50_000, b'{"source": "\\ud800", "as_of": "2026-12-01"}'])))
    return csv_raw, sidecar


@pytest.fixture()
def pricing_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "pricing"
    monkeypatch.setenv("MIGRATIONBOX_PRICING_DIR", str(folder))
    clear_cache()
    yield folder
    clear_cache()


@SETTINGS
@given(files=price_file(), cloud=st.sampled_from(["aws", "azure", "gcp"]))
def test_any_refreshed_price_file_prices_the_region_or_names_file_and_line(
        pricing_dir: Path, files: tuple[bytes, bytes], cloud: str) -> None:
    csv_raw, sidecar = files
    target = pricing_dir / cloud / "test-region-1.csv"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(csv_raw)
    target.with_suffix(".json").write_bytes(sidecar)
    clear_cache()
    try:
        catalog = load_catalog(cloud, "test-region-1")
    except PriceFileError as exc:
        assert isinstance(exc, InputError)
        assert str(target.parent) in str(exc)
        return
    str(catalog.price_source).encode("utf-8")  # printed with every price
    for machine in catalog.types:
        for price in (machine.hourly_usd, machine.monthly_usd, machine.commit_1y_monthly_usd,
                      machine.commit_3y_monthly_usd):
            assert price is None or (math.isfinite(price) and price >= 0)
        assert machine.vcpu >= 1 and math.isfinite(machine.memory_gib)


def test_infinite_vcpu_is_named_by_line_not_an_overflow(pricing_dir: Path) -> None:
    target = pricing_dir / "aws" / "eu-test-1.csv"
    target.parent.mkdir(parents=True)
    target.write_text(",".join(REFRESHED_COLUMNS) + "\nm5.large,2,8,x86_64,0.1,,\n"
                      "m5.xlarge,inf,16,x86_64,0.2,,\n")
    target.with_suffix(".json").write_text('{"source": "s", "as_of": "2026-12-01"}')
    with pytest.raises(PriceFileError, match=r"line 3: column 'vcpu': 'inf'"):
        load_catalog("aws", "eu-test-1")


# ------------------------------------------------------------------ the size command

@pytest.mark.parametrize("text", ["[1]", "[" * 100_000 + "]" * 100_000, "{", "\"x\""])
def test_size_with_an_unusable_onprem_file_exits_2_naming_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any, text: str) -> None:
    import argparse

    from migrationbox.cli import size as size_cli

    monkeypatch.setenv("MIGRATIONBOX_HOME", str(tmp_path / "mb"))
    monkeypatch.setenv("MIGRATIONBOX_PRICING_DIR", str(tmp_path / "pricing"))
    onprem = tmp_path / "onprem.json"
    onprem.write_text(text)
    parser = argparse.ArgumentParser(prog="migrationbox")
    size_cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["size", "--history", "unused.csv", "--onprem", str(onprem),
                              "--no-model"])
    assert args.handler(args) == 2
    assert f"on-prem cost file {onprem}" in capsys.readouterr().err
