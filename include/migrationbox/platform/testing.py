"""A whole local platform for a test module or a benchmark, started and put back; and
the polling helper those tests share.

Tests and benchmarks that need Airflow itself (not only the emulator) share this so that
each one leaves the process as it found it: the environment, and the AWS clients cached
for the connection the platform defined.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

from migrationbox.platform.supervisor import Platform

T = TypeVar("T")


@contextlib.contextmanager
def running_platform(runtime: Path, **env: str) -> Iterator[Platform]:
    """A whole platform (emulator + Airflow) on free loopback ports for a test module,
    with ``env`` set before it starts and this process pointed at it; everything (the
    platform, the environment, cached AWS clients) is put back afterwards."""
    from migrationbox.cloud.aws_session import clear_client_cache

    saved = dict(os.environ)
    os.environ.update(env)
    plat = Platform(runtime_dir=runtime, api_port=0, emulator_port=0)
    try:
        plat.up()
        os.environ.update(plat.env())
        clear_client_cache()
        yield plat
    finally:
        try:
            plat.down()
        finally:
            os.environ.clear()
            os.environ.update(saved)
            clear_client_cache()


def wait_until(what: str, predicate: Callable[[], T], timeout: float, poll: float = 1.0) -> T:
    """Poll ``predicate`` until it returns something truthy (and return that), or fail
    after ``timeout`` seconds naming ``what`` was awaited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
