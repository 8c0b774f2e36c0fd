"""The emulator process: own process group, answers, resets, stops without orphans."""

from __future__ import annotations

import os

import httpx
import pytest

from migrationbox.cloud.emulator import EmulatorError, EmulatorProcess

pytestmark = pytest.mark.integration


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def test_start_reset_stop(tmp_path):
    log_path = tmp_path / "moto.log"
    emu = EmulatorProcess(log_path=log_path)
    with emu:
        assert emu.url.startswith("http://127.0.0.1:")
        pid = emu.pid
        assert pid is not None and os.getpgid(pid) == pid  # its own process group
        assert emu.start() is emu and emu.pid == pid  # idempotent
        payload = {"Action": "CreateVpc", "CidrBlock": "10.9.0.0/16", "Version": "2016-11-15"}
        headers = {"Authorization": "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/"
                                    "ec2/aws4_request, SignedHeaders=host, Signature=x"}
        assert httpx.post(emu.url, data=payload, headers=headers).status_code == 200
        listing = httpx.post(emu.url, data={"Action": "DescribeVpcs", "Version": "2016-11-15"},
                             headers=headers).text
        assert "10.9.0.0/16" in listing
        emu.reset()
        listing = httpx.post(emu.url, data={"Action": "DescribeVpcs", "Version": "2016-11-15"},
                             headers=headers).text
        assert "10.9.0.0/16" not in listing
    assert not emu.is_running()
    assert not _group_alive(pid)
    assert log_path.exists()
    emu.stop()  # stopping twice is harmless
    with pytest.raises(EmulatorError):
        emu.reset()


def test_fixed_port_and_stop_group_by_pid():
    first = EmulatorProcess().start()
    clash = EmulatorProcess(port=first.port, startup_timeout=5)
    try:
        with pytest.raises(EmulatorError, match="already in use"):
            clash.start()
        assert not clash.is_running()
    finally:
        clash.stop()
        pid = first.pid
        assert EmulatorProcess.stop_group(pid) is True
    assert not _group_alive(pid)
    assert EmulatorProcess.stop_group(pid) is False
