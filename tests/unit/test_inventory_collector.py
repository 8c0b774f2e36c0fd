"""The local collector: parsers over fixture text, real sockets, a record that validates."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

import psutil
import pytest

from migrationbox.inventory.collector import (
    collect_local,
    guess_kind,
    guess_protocol,
    parse_cpuinfo,
    parse_crontab,
    parse_dpkg_status,
    parse_meminfo,
    parse_os_release,
    parse_proc_route,
    parse_resolv_conf,
    read_sockets,
)
from migrationbox.inventory.models import ServerRecord
from migrationbox.inventory.resolve import AddressBook
from migrationbox.inventory.validation import validate_records


def test_parse_os_release() -> None:
    text = 'NAME="Ubuntu"\nVERSION="22.04.4 LTS (Jammy Jellyfish)"\n# comment\nID=ubuntu\n'
    assert parse_os_release(text) == {"NAME": "Ubuntu", "ID": "ubuntu",
                                      "VERSION": "22.04.4 LTS (Jammy Jellyfish)"}


def test_parse_cpuinfo_and_meminfo() -> None:
    cpu = parse_cpuinfo("processor\t: 0\nmodel name\t: Intel Xeon Gold 6248R\ncpu MHz\t\t: 2999.998"
                        "\nflags\t\t: fpu vme hypervisor\n\nprocessor\t: 1\ncpu MHz\t\t: 3100.5\n")
    assert cpu == {"model": "Intel Xeon Gold 6248R", "mhz": 3100.5, "hypervisor": True}
    mem = parse_meminfo("MemTotal:  65849232 kB\nMemAvailable:   1234 kB\nHugePages_Total: 0\n")
    assert mem["MemTotal"] == 65849232 and mem["HugePages_Total"] == 0


def test_parse_network_files() -> None:
    assert parse_resolv_conf("search x\nnameserver 10.20.1.11\nnameserver ::1\n") == [
        "10.20.1.11", "::1"]
    route = ("Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\tMTU\tWindow\tIRTT\n"
             "eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n"
             "eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n")
    assert parse_proc_route(route) == ["default via 192.0.2.1 dev eth0", "192.0.2.0/24 dev eth0"]


def test_parse_packages_and_cron() -> None:
    status = ("Package: nginx\nStatus: install ok installed\nVersion: 1.24.0-1\n\n"
              "Package: removed\nStatus: deinstall ok config-files\nVersion: 1\n\n"
              "Package: bash\nStatus: install ok installed\nVersion: 5.2-1\nDescription: x\n"
              " continued: line\n")
    assert parse_dpkg_status(status) == ["bash=5.2-1", "nginx=1.24.0-1"]
    crontab = "SHELL=/bin/sh\n# m h dom mon dow user command\n17 * * * * root cd / && run\n" \
              "@reboot root /usr/local/bin/start\n"
    assert parse_crontab(crontab, with_user=True) == ["17 * * * * cd / && run",
                                                      "@reboot /usr/local/bin/start"]


def test_port_guesses() -> None:
    assert guess_protocol(5432) == "postgresql" and guess_protocol(4) is None
    assert guess_kind([22, 443]) == "web" and guess_kind([22]) == "admin"
    assert guess_kind([12345]) is None


@pytest.fixture()
def loopback_pair() -> Iterator[tuple[int, socket.socket]]:
    """A real listener on 127.0.0.1 and an established client connection to it."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    accepted, _ = listener.accept()
    try:
        yield port, client
    finally:
        for sock in (client, accepted, listener):
            sock.close()


def _own_connections() -> list:
    return [c for c in psutil.net_connections(kind="inet") if c.pid == os.getpid()]


def test_read_sockets_finds_services_and_outbound_peers(loopback_pair) -> None:
    port, client = loopback_pair
    conns = _own_connections()
    view = read_sockets(conns, own_ips=set(), skip_loopback_peers=False)
    name = psutil.Process().name()
    apps = {a["name"]: a["ports"] for a in view.applications}
    assert port in apps[name]
    assert port not in view.open_ports  # bound to loopback: not reachable from outside
    deps = {d["destination"]: d for d in view.dependencies}
    # the client side is outbound; the accepted side is inbound and not a dependency
    assert deps[f"127.0.0.1:{port}"]["external"] is True
    assert deps[f"127.0.0.1:{port}"]["connections_observed"] == 1
    assert not any(d.endswith(f":{client.getsockname()[1]}") for d in deps)
    # a peer that is a server of the estate is not external
    book = AddressBook()
    book.add("srv-peer", "peer.example", ["127.0.0.1"])
    inside = read_sockets(conns, own_ips=set(), estate=book, skip_loopback_peers=False)
    assert "external" not in {d["destination"]: d for d in inside.dependencies}[
        f"127.0.0.1:{port}"]
    # by default loopback peers are the machine talking to itself: no dependency
    assert f"127.0.0.1:{port}" not in {
        d["destination"] for d in read_sockets(conns, own_ips=set()).dependencies}


def test_collect_local_builds_a_valid_record(loopback_pair) -> None:
    port, _ = loopback_pair
    data = collect_local(environment="staging", role="web", sample_seconds=0.2,
                         include_packages=False)
    server = ServerRecord.model_validate(data)
    assert server.hostname == socket.gethostname()
    assert server.environment.value == "staging" and server.role == "web"
    assert server.hardware.cpu_cores == psutil.cpu_count(logical=True)
    assert abs(server.hardware.ram_gb - psutil.virtual_memory().total / 1024**3) < 0.1
    assert port in {p for a in server.applications for p in a.ports}
    baseline = server.performance_baseline
    assert baseline.cpu_avg_utilization_pct <= (baseline.cpu_peak_utilization_pct or 0) + 1e-9
    assert data["tags"]["baseline_window"] == "0.2s snapshot"
    report = validate_records([data])
    assert report.ok, report.issue_lines()
