"""No request crashes the plugin API: bad parameters and bodies get a 4xx, never a 500.

The app is the real one (``migrationbox.api.app.build_app``, mounted in Airflow's API
server), served by FastAPI's TestClient over a throwaway SQLite store. Path and query
parameters take any text and integers far beyond 64 bits; bodies take any JSON, deep
nesting, NaN, duplicate keys and bytes that are not JSON or not UTF-8. Every answer is
either a success or a 4xx whose ``detail`` says what was wrong.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from migrationbox.store import repository
from migrationbox.store.db import session_scope
from migrationbox.store.testing import tiny_estate, tiny_plan

SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    folder = tmp_path_factory.mktemp("api-store")
    patch = pytest.MonkeyPatch()
    patch.setenv("MIGRATIONBOX_STORE_URL", f"sqlite:///{folder / 'api.db'}")
    from migrationbox.api.app import build_app

    estate = tiny_estate()
    with session_scope() as s:
        repository.save_estate(s, estate)
        repository.save_plan(s, tiny_plan(estate))
    with TestClient(build_app(), raise_server_exceptions=False) as c:
        yield c
    patch.undo()


TEXT = st.one_of(
    st.text(min_size=1, max_size=40),
    st.sampled_from(["tiny", "nope", "\x00", "a" * 5000, "..", "%00", "' OR 1=1 --",
                     "\ud7ff\ue000", "tiny\x00x", " "]))
NUMBER_TEXT = st.one_of(
    st.integers().map(str),
    st.integers(min_value=-(10**60), max_value=10**60).map(str),
    st.sampled_from(["9223372036854775807", "9223372036854775808", "-9223372036854775809",
                     "1e400", "NaN", "inf", "0x10", "1.5", "", "١", "99999999999999999999"]),
    TEXT)

READ_ROUTES = ["/estates/{estate}/plans", "/estates/{estate}/plan",
               "/estates/{estate}/waves", "/estates/{estate}/waves/{wave}/runs",
               "/estates/{estate}/events", "/estates/{estate}/endpoints"]


def _assert_clear(response: Any) -> None:
    assert response.status_code < 500, (response.status_code, response.text[:300])
    if response.status_code >= 400:
        detail = response.json()["detail"]
        assert detail, response.text


@pytest.mark.parametrize("route", READ_ROUTES)
@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(estate=TEXT, wave=NUMBER_TEXT,
       params=st.dictionaries(st.sampled_from(["version", "wave", "since_id", "limit",
                                               "dag_run_id", "server"]),
                              NUMBER_TEXT, max_size=4))
def test_read_routes_answer_4xx_not_500_for_any_parameters(
        client: TestClient, route: str, estate: str, wave: str, params: dict[str, str]) -> None:
    url = route.format(estate=quote(estate, safe=""), wave=quote(wave, safe=""))
    _assert_clear(client.get(url, params=params))


def _json_value() -> st.SearchStrategy[Any]:
    scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(),
                        st.text(max_size=10),
                        st.integers(min_value=-(10**40), max_value=10**40))
    return st.recursive(scalars, lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.sampled_from(["estate", "endpoints", "server_id", "kind", "name",
                                         "source_uri", "target_uri", "details", "x"]),
                        inner, max_size=5)), max_leaves=15)


@st.composite
def body(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["json", "endpoints", "bytes", "deep", "nan", "dup",
                                 "surrogate"]))
    if kind == "json":
        return json.dumps(draw(_json_value())).encode()
    if kind == "endpoints":
        items = draw(st.lists(_json_value(), max_size=3))
        return json.dumps({"estate": draw(st.sampled_from(["tiny", "other", None])),
                           "endpoints": items}).encode()
    if kind == "bytes":
        return draw(st.binary(max_size=200))
    if kind == "deep":
        depth = draw(st.sampled_from([100, 1000, 50_000]))
        return ("[" * depth + "]" * depth).encode()
    if kind == "surrogate":
        return b'{"endpoints": [{"server_id": "web-01\\udc00", "kind": "files"}]}'
    if kind == "nan":
        return b'{"endpoints": [{"server_id": "web-01", "kind": "files", "x": NaN}]}'
    return b'{"endpoints": [], "endpoints": [{"server_id": "web-01"}]}'


@SETTINGS
@given(estate=st.sampled_from(["tiny", "nope", "a" * 300]), content=body(),
       content_type=st.sampled_from(["application/json", "text/plain", None]))
def test_endpoint_registration_answers_4xx_not_500_for_any_body(
        client: TestClient, estate: str, content: bytes, content_type: str | None) -> None:
    headers = {"content-type": content_type} if content_type else {}
    response = client.post(f"/estates/{estate}/endpoints", content=content, headers=headers)
    _assert_clear(response)


def test_wave_beyond_64_bits_is_a_422_naming_the_parameter(client: TestClient) -> None:
    response = client.get("/estates/tiny/waves/99999999999999999999/runs")
    assert response.status_code == 422
    assert "wave" in json.dumps(response.json()["detail"])


def test_deep_body_is_a_400_not_a_recursion_error(client: TestClient) -> None:
    response = client.post("/estates/tiny/endpoints",
                           content=b"[" * 100_000 + b"]" * 100_000,
                           headers={"content-type": "application/json"})
    assert response.status_code in (400, 422)
    assert "nest" in response.text or "JSON" in response.text


def test_nul_in_a_name_is_a_422_before_the_database_sees_it(client: TestClient) -> None:
    for url in ("/estates/ti%00ny/plans", "/estates/tiny/endpoints?server=a%00b",
                "/estates/tiny/waves/1/runs?dag_run_id=%00"):
        response = client.get(url)
        assert response.status_code == 422, url


def test_body_that_is_not_usable_json_is_a_400_saying_why(client: TestClient) -> None:
    cases = {b'{"endpoints": [], "endpoints": []}': "more than once",
             b'[{"server_id": "web-01", "port": NaN}]': "NaN",
             b"\xff\xfe[]": "UTF-8", b'{"endpoints": [': "not JSON",
             b'[{"server_id": "web-01\\ud800", "kind": "files"}]': "[0].server_id holds an "
                                                                 "unpaired surrogate"}
    for content, expected in cases.items():
        response = client.post("/estates/tiny/endpoints", content=content,
                               headers={"content-type": "application/json"})
        assert response.status_code == 400 and expected in response.json()["detail"], content
