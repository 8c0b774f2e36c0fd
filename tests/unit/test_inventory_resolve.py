"""Resolving observed peers to servers, and the dependency edges planning uses."""

from __future__ import annotations

from typing import Any

import pytest

from migrationbox.inventory.models import NetworkDependency, ServerRecord
from migrationbox.inventory.resolve import (
    AddressBook,
    dependency_edges,
    is_external,
    split_host_port,
)


def server(server_id: str, hostname: str, ips: list[str], deps: list[str] | None = None,
           app_deps: list[str] | None = None, ports: list[int] | None = None,
           **dep_extra: Any) -> ServerRecord:
    return ServerRecord.model_validate({
        "server_id": server_id,
        "hostname": hostname,
        "ip_addresses": ips,
        "os": {"type": "Linux"},
        "hardware": {"cpu_cores": 2, "ram_gb": 4},
        "applications": [{"name": "svc", "ports": ports or [],
                          "dependencies": app_deps or []}],
        "network_dependencies": [{"destination": d, **dep_extra} for d in deps or []],
        "performance_baseline": {"cpu_avg_utilization_pct": 1,
                                 "memory_avg_utilization_pct": 1},
    })


@pytest.fixture()
def servers() -> list[ServerRecord]:
    return [
        server("srv-db", "db-01.dc1.example", ["10.20.2.11", "2001:db8::11"], ports=[5432]),
        server("srv-cache", "cache-01.dc1.example", ["10.20.2.21"], ports=[6379, 16379]),
        server("srv-app", "app-01.dc1.example", ["10.20.3.11"],
               deps=["db-01:5432", "10.20.2.21:6379", "api.github.com:443"],
               app_deps=["openssl", "srv-cache", "db-01.dc1.example:5432", "srv-app"]),
    ]


@pytest.mark.parametrize(("value", "expected"), [
    ("db-01:5432", ("db-01", 5432)),
    ("[2001:db8::11]:5432", ("2001:db8::11", 5432)),
    ("db-01", ("db-01", None)),
    ("2001:db8::11", ("2001:db8::11", None)),
])
def test_split_host_port(value: str, expected: tuple[str, int | None]) -> None:
    assert split_host_port(value) == expected


def test_resolve_every_kind_of_name(servers: list[ServerRecord]) -> None:
    book = AddressBook.from_servers(servers)
    for name in ("srv-db", "db-01.dc1.example", "DB-01.DC1.EXAMPLE.", "db-01", "10.20.2.11",
                 "2001:db8:0:0:0:0:0:11", "[2001:db8::11]"):
        assert book.resolve(name) == "srv-db", name
    assert book.resolve("db-02") is None
    assert book.resolve("api.github.com") is None
    assert book.resolve("db") is None  # no partial matches


def test_ambiguous_names_resolve_to_none() -> None:
    book = AddressBook.from_servers([
        server("a", "web-01.dc1.example", ["10.0.0.1"]),
        server("b", "web-01.dc2.example", ["10.0.0.1"]),
    ])
    assert book.candidates("web-01") == {"a", "b"}
    assert book.resolve("web-01") is None
    assert book.resolve("10.0.0.1") is None
    assert book.resolve("web-01.dc2.example") == "b"  # the full name is not ambiguous
    assert book.collisions("ip") == {"10.0.0.1": {"a", "b"}}


def test_server_id_wins_over_short_hostname() -> None:
    book = AddressBook.from_servers([
        server("web-01", "host-a.example", ["10.0.0.1"]),
        server("b", "web-01.example", ["10.0.0.2"]),
    ])
    assert book.resolve("web-01") == "web-01"


def test_dependency_edges_network_and_application(servers: list[ServerRecord]) -> None:
    edges = dependency_edges(servers)
    pairs = [(a, b, d.protocol) for a, b, d in edges]
    assert pairs == [
        ("srv-app", "srv-db", None),
        ("srv-app", "srv-cache", None),
        ("srv-app", "srv-cache", "application"),
        ("srv-app", "srv-db", "application"),
    ]  # the external peer, the library and the self-reference are not edges
    app_cache = edges[2][2]
    assert isinstance(app_cache, NetworkDependency)
    assert app_cache.destination == "srv-cache:6379"  # lowest listening port of the target
    assert app_cache.model_extra == {"via_application": "svc", "declared_as": "srv-cache"}
    assert edges[3][2].port == 5432  # the port named in the item


def test_application_reference_to_server_without_ports_has_port_zero() -> None:
    edges = dependency_edges([server("a", "a.x", ["10.0.0.1"], app_deps=["b"]),
                              server("b", "b.x", ["10.0.0.2"])])
    assert [(s, d, dep.port) for s, d, dep in edges] == [("a", "b", 0)]


def test_is_external_requires_true() -> None:
    ext = server("a", "a.x", ["10.0.0.1"], deps=["x:1"], external=True)
    text = server("b", "b.x", ["10.0.0.2"], deps=["x:1"], external="true")
    assert is_external(ext.network_dependencies[0])
    assert not is_external(text.network_dependencies[0])
