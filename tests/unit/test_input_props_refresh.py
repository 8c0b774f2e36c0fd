"""No price source crashes ``prices refresh``: it writes a loadable file or names the item.

``migrationbox prices refresh`` reads the clouds' public price formats (AWS bulk offer
file, Azure Retail Prices pages, GCP Cloud Billing Catalog pages) from a file or a URL.
Whatever a source holds (an item that is not an object, a field of another type, NaN,
long integers, deep nesting, bytes that are not UTF-8), the refresh either writes a
price file the catalog then loads with every price finite and positive, or raises a
``RefreshError`` naming the source (and the page and item) and writes nothing. The
samples are the shipped fixtures in the real shapes, mutated; URLs are served from
127.0.0.1 (no internet here).
"""

from __future__ import annotations

import copy
import json
import math
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from migrationbox.errors import InputError
from migrationbox.sizing.clouds import clear_cache, load_catalog
from migrationbox.sizing.clouds._files import refreshed_file
from migrationbox.sizing.refresh import RefreshError, refresh

SETTINGS = settings(max_examples=40, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "pricing"
SOURCES = {"aws": (FIXTURES / "aws_ec2_bulk_us-east-1.json", "us-east-1"),
           "azure": (FIXTURES / "azure_retail_westeurope.json", "westeurope"),
           "gcp": (FIXTURES / "gcp_compute_skus_europe-west1.json", "europe-west1")}
DOCS = {cloud: json.loads(path.read_text()) for cloud, (path, _) in SOURCES.items()}

SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(),
                    st.sampled_from(["", "x", "0.5", "-1", "NaN", "\ud800", "Hrs", "Linux",
                                     "Consumption", "Reservation", "1 Year", "Compute"]),
                    st.text(max_size=6))
JSON = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=8)
LONG_INT = "9" * 5000
DEEP = "[" * 100_000 + "]" * 100_000


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in ``doc`` a value can be replaced (the root excluded)."""
    out: list[tuple[Any, ...]] = []
    items = doc.items() if isinstance(doc, dict) else enumerate(doc) \
        if isinstance(doc, list) else []
    for key, value in items:
        out.append((*prefix, key))
        out.extend(_paths(value, (*prefix, key)))
    return out


PATHS = {cloud: _paths(doc) for cloud, doc in DOCS.items()}


def _set(doc: Any, path: tuple[Any, ...], value: Any) -> None:
    for key in path[:-1]:
        doc = doc[key]
    doc[path[-1]] = value


@st.composite
def source_text(draw: st.DrawFn, cloud: str) -> bytes:
    kind = draw(st.sampled_from(["mutate", "mutate", "mutate", "any", "bytes", "literal"]))
    if kind == "any":
        return json.dumps(draw(JSON)).encode()
    if kind == "bytes":
        return draw(st.binary(max_size=80))
    if kind == "literal":
        return draw(st.sampled_from([
            DEEP.encode(), b"[" + DEEP.encode() + b"]", b'{"Items": [1, 2]}', b"[1, 2]",
            b'[{"Items": [null]}]', b'{"skus": ["x"]}', b'{"products": [], "terms": {}}',
            b'{"products": {"a": 1}, "terms": {}}', '["caf\u00e9"]'.encode("latin-1"),
            b'{"Items": ' + LONG_INT.encode() + b"}", b"\xef\xbb\xbf{}", b""]))
    doc = copy.deepcopy(DOCS[cloud])
    for path in draw(st.lists(st.sampled_from(PATHS[cloud]), min_size=1, max_size=3)):
        try:
            _set(doc, path, draw(st.one_of(JSON, st.sampled_from(
                [float("nan"), float("inf"), -1.0, 1e308, "LONG", "DEEP"]))))
        except (KeyError, IndexError, TypeError):
            continue  # an earlier mutation removed this place
    text = json.dumps(doc)
    return text.replace('"LONG"', LONG_INT).replace('"DEEP"', DEEP).encode(
        "utf-8", "surrogatepass")


@pytest.fixture()
def pricing_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("MIGRATIONBOX_PRICING_DIR", str(tmp_path / "pricing"))
    clear_cache()
    yield tmp_path / "pricing"
    clear_cache()


def _refresh_or_refuse(cloud: str, region: str, source: str) -> None:
    target = refreshed_file(cloud, region)
    target.unlink(missing_ok=True)
    clear_cache()
    try:
        path, count, _ = refresh(cloud, region, source)
    except InputError as exc:
        assert isinstance(exc, RefreshError)
        message = str(exc)
        assert source in message, message
        message.encode("utf-8")  # printable on any terminal
        assert not target.exists()  # all or nothing
        return
    assert path.exists() and count > 0
    catalog = load_catalog(cloud, region)  # the file written is one the catalog takes
    for machine in catalog.types:
        assert math.isfinite(machine.hourly_usd) and machine.hourly_usd > 0


@pytest.mark.parametrize("cloud", ["aws", "azure", "gcp"])
def test_the_unmutated_samples_refresh(pricing_dir: Path, cloud: str) -> None:
    path, region = SOURCES[cloud]
    assert refresh(cloud, region, str(path))[1] > 0


@SETTINGS
@given(data=st.data(), cloud=st.sampled_from(["aws", "azure", "gcp"]))
def test_any_price_source_file_refreshes_or_names_the_item(
        pricing_dir: Path, tmp_path: Path, data: st.DataObject, cloud: str) -> None:
    raw = data.draw(source_text(cloud))
    source = tmp_path / f"{cloud}.json"
    source.write_bytes(raw)
    _refresh_or_refuse(cloud, SOURCES[cloud][1], str(source))


def test_errors_name_the_page_and_item(pricing_dir: Path, tmp_path: Path) -> None:
    azure = copy.deepcopy(DOCS["azure"])
    azure[0]["Items"][1] = "not an item"
    gcp = copy.deepcopy(DOCS["gcp"])
    gcp["skus"][2]["category"] = ["Compute"]
    cases = {"azure": (azure, r"page 1, Items\[1\]: not in the documented shape"),
             "gcp": (gcp, r"page 1, skus\[2\]: not in the documented shape")}
    for cloud, (doc, pattern) in cases.items():
        source = tmp_path / f"{cloud}.json"
        source.write_text(json.dumps(doc))
        with pytest.raises(RefreshError, match=f"{source}: {pattern}"):
            refresh(cloud, SOURCES[cloud][1], str(source))
    deep = tmp_path / "deep.json"
    deep.write_text(DEEP)
    with pytest.raises(RefreshError, match="nested too deeply"):
        refresh("azure", "westeurope", str(deep))
    nan = copy.deepcopy(DOCS["azure"])
    for item in nan[0]["Items"]:
        item["retailPrice"] = float("nan")
    source = tmp_path / "nan.json"
    source.write_text(json.dumps(nan))
    with pytest.raises(RefreshError, match="not a positive finite number"):
        refresh("azure", "westeurope", str(source))


# ------------------------------------------------------------------ over HTTP


class _Pages(BaseHTTPRequestHandler):
    """Serves ``self.server.pages[n]`` at ``/p/n`` (raw bytes, as a price API would)."""

    def do_GET(self) -> None:
        pages: list[bytes] = self.server.pages  # type: ignore[attr-defined]
        try:
            body = pages[int(self.path.rsplit("/", 1)[-1])]
        except (ValueError, IndexError):
            self.send_response(404)
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture()
def server() -> Iterator[ThreadingHTTPServer]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Pages)
    httpd.pages = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(second=source_text("azure"), link=st.sampled_from(["ok", "junk", "missing"]))
def test_azure_page_chains_over_http(pricing_dir: Path, server: ThreadingHTTPServer,
                                     second: bytes, link: str) -> None:
    base = f"http://127.0.0.1:{server.server_port}/p"
    first = copy.deepcopy(DOCS["azure"][0])
    first["NextPageLink"] = {"ok": f"{base}/1", "junk": ["x"], "missing": f"{base}/9"}[link]
    server.pages[:] = [json.dumps(first).encode(), second]  # type: ignore[attr-defined]
    _refresh_or_refuse("azure", "westeurope", f"{base}/0")
