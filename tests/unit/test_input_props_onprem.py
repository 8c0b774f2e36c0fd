"""No on-prem cost file crashes sizing: it applies, or an ``InputError`` names file and key.

``migrationbox size --onprem FILE`` overrides the on-premise cost model, the baseline
of every saving. Whatever the file holds (any JSON, any bytes, deep nesting, NaN,
Infinity, astronomical figures, lone surrogate escapes), the result is a model whose
every figure is finite and whose estimate for a server is finite, or an
``OnPremFileError`` saying which file (and key) is wrong; ``size`` prints it and exits 2.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from migrationbox.cli import size as size_cli
from migrationbox.errors import InputError
from migrationbox.sizing.features import Licences, ServerProfile, UsageStats
from migrationbox.sizing.onprem import OnPremCostModel, OnPremFileError, estimate, load_onprem_model
from migrationbox.sizing.tco import savings

SETTINGS = settings(max_examples=80, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])

SCALARS = st.one_of(st.none(), st.booleans(), st.integers(),
                    st.integers(min_value=-(10**30), max_value=10**30), st.floats(),
                    st.sampled_from([1e-300, 1e300, 1e12, 1e13, 0.0, -0.0]), st.text(max_size=8))
JSON = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=10)
FIELDS = sorted(OnPremCostModel.model_fields)


@st.composite
def onprem_text(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["any", "near", "bytes", "deep", "literal"]))
    if kind == "any":
        return json.dumps(draw(JSON)).encode()
    if kind == "near":
        keys = draw(st.lists(st.sampled_from([*FIELDS, "colour", "\ud800"]),
                             min_size=1, max_size=4))
        return json.dumps({k: draw(SCALARS) for k in keys}).encode()
    if kind == "bytes":
        return draw(st.binary(max_size=100))
    if kind == "deep":
        depth = draw(st.sampled_from([50, 70, 5000, 100_000]))
        opener = draw(st.sampled_from(['{"a":', "["]))
        closer = "}" if opener.startswith("{") else "]"
        return ('{"pue": ' + opener * depth + "1" + closer * depth + "}").encode()
    return draw(st.sampled_from([
        b'{"host_price_usd": Infinity}', b'{"usd_per_kwh": NaN}', b'{"pue": -Infinity}',
        b'{"host_cores": 1e400}', b'{"host_price_usd": 1e300, '
        b'"hardware_support_pct_per_year": 1e300}', b'{"vcpu_per_core": 1e-300}',
        b'{"servers_per_admin": 5e-324}', b'\xef\xbb\xbf{"pue": 1.2}',
        '{"usd_per_kwh": "caf\u00e9"}'.encode("latin-1"), b"[]", b"null", b'"x"',
        b'{"pue": 1.2', b"", b'{"host_cores": ' + b"9" * 5000 + b"}", b'{"\\ud800": 1}',
        b'{"pue": "\\udfff"}', b'\xff\xfe{\x00}\x00']))


def _profile(**kw: Any) -> ServerProfile:
    base = ServerProfile(server_id="s1", hostname="s1", vcpu=8, memory_gib=32,
                         cpu=UsageStats(avg=30, p95=50, peak=60),
                         memory=UsageStats(avg=60, p95=70, peak=80), stats_source="test",
                         disk_gb=500, used_gb=200, network_mbps=100)
    return replace(base, **kw)


PROFILES = [_profile(), _profile(physical=True, internet_facing=True),
            _profile(vcpu=10**9, memory_gib=1e9, disk_gb=1e9, network_mbps=1e9,
                     licences=Licences(windows=True, sql_server="enterprise", rhel=True),
                     internet_facing=True)]


@SETTINGS
@given(raw=onprem_text())
def test_any_onprem_file_applies_or_is_refused_naming_it(tmp_path: Path, raw: bytes) -> None:
    path = tmp_path / "onprem.json"
    path.write_bytes(raw)
    try:
        model = load_onprem_model(path)
    except InputError as exc:
        assert isinstance(exc, OnPremFileError)
        message = str(exc)
        assert message.startswith(f"on-prem cost file {path}: ")
        message.encode("utf-8")  # printable: no lone surrogate from the file
        return
    figures = model.model_dump()
    assert all(math.isfinite(v) for v in figures.values())
    assert model.note().encode("utf-8")
    for profile in PROFILES:
        cost = estimate(profile, model)
        assert all(math.isfinite(v) for v in cost.as_dict().values()), (figures, profile)
        assert math.isfinite(savings(cost, 100.0))


def test_onprem_errors_name_the_key(tmp_path: Path) -> None:
    cases = {'{"host_price_usd": Infinity}': "host_price_usd",
             '{"usd_per_kwh": NaN}': "usd_per_kwh",
             '{"host_cores": 1e400}': "host_cores",
             '{"host_price_usd": 1e300}': "host_price_usd",
             '{"vcpu_per_core": 1e-300}': "vcpu_per_core",
             '{"pue": ' + "[" * 70 + "]" * 70 + "}": "pue: nested more than 64",
             '{"\\ud800": 1}': r"\\ud800: unknown key",
             "[1, 2]": "expected a JSON object",
             '{"pue": 1.2': "not JSON"}
    for text, key in cases.items():
        path = tmp_path / "o.json"
        path.write_text(text)
        with pytest.raises(OnPremFileError, match=key):
            load_onprem_model(path)


def test_onprem_file_with_bom_applies(tmp_path: Path) -> None:
    path = tmp_path / "o.json"
    path.write_bytes(b'\xef\xbb\xbf{"pue": 1.2, "servers_per_admin": 30}')
    model = load_onprem_model(path)
    assert model.pue == 1.2 and model.servers_per_admin == 30


@pytest.fixture()
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MIGRATIONBOX_HOME", str(tmp_path / "mb"))
    monkeypatch.setenv("MIGRATIONBOX_PRICING_DIR", str(tmp_path / "pricing"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


@pytest.mark.parametrize("text", ['{"host_price_usd": Infinity}', "[1]", '{"a":' * 5000
                                  + "1" + "}" * 5000, '{"\\ud800": 1}'])
def test_size_exits_2_with_the_message(isolated: None, tmp_path: Path, text: str,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "onprem.json"
    path.write_text(text)
    parser = argparse.ArgumentParser(prog="migrationbox")
    size_cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["size", "--history", str(tmp_path / "h.csv"), "--vcpu", "2",
                              "--memory-gib", "4", "--onprem", str(path), "--no-model"])
    assert args.handler(args) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"migrationbox size: on-prem cost file {path}: ")
    assert "Traceback" not in err
