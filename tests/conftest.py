"""Test-wide isolation: Airflow and MigrationBox state live in a throwaway folder.

Set before anything imports Airflow, so no test touches the developer's ``.runtime``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

_ROOT = Path(tempfile.mkdtemp(prefix="mbtest-"))
os.environ.setdefault("AIRFLOW_HOME", str(_ROOT / "airflow"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("MIGRATIONBOX_HOME", str(_ROOT / "runtime"))
os.environ.setdefault("MIGRATIONBOX_STORE_URL", f"sqlite:///{_ROOT / 'runtime' / 'store.db'}")
# Platforms the tests start put the Teams bot on a free port, never the default 3978 a
# developer's own platform (or another test module's) may hold.
os.environ.setdefault("MIGRATIONBOX_TEAMS_PORT", "0")
# ... and without its background scan (notifications, approval cards, SLA clock): every
# platform test would otherwise pay for a login and HITL queries every 5 s. The Teams
# end-to-end module turns it on for its own platform.
os.environ.setdefault("MIGRATIONBOX_TEAMS_NOTIFY_INTERVAL_S", "0")
(_ROOT / "runtime").mkdir(parents=True, exist_ok=True)


# --------------------------------------------------------------------------- CI: no skips
# On a machine without PostgreSQL, Redis or OpenSSH the tests that need them skip and say
# why. CI's machine has them (or installs them), so there such a skip means a test of the
# production shape did not run: `.ci/run` sets REQUIRE_LOOPBACK_SERVICES=1 and the skip
# becomes a failure that names the reason.
_SERVICE_WORDS = ("PostgreSQL", "Redis", "OpenSSH", "sshd")


def _service_skip(reason: str) -> bool:
    return any(word in reason for word in _SERVICE_WORDS)


import pytest  # noqa: E402
from hypothesis import settings as _hypothesis_settings  # noqa: E402

# Tests assert no timings, and Hypothesis's per-example deadline (200 ms) is one: on a
# loaded 2-core machine a first example that imports a module fails it. Off for the suite.
_hypothesis_settings.register_profile("migrationbox", deadline=None)
_hypothesis_settings.load_profile("migrationbox")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):  # type: ignore[no-untyped-def]
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("REQUIRE_LOOPBACK_SERVICES") != "1" or not report.skipped:
        return
    reason = str(report.longrepr[2]) if isinstance(report.longrepr, tuple) else str(
        report.longrepr)
    if _service_skip(reason):
        report.outcome = "failed"
        report.longrepr = (f"REQUIRE_LOOPBACK_SERVICES=1 (CI): a test that needs a loopback "
                           f"service was skipped instead of run: {reason}")


@pytest.fixture
def no_profile_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """No production-profile or platform-profile setting from the calling shell: tests of
    the profiles' configuration see only the defaults and what they set themselves."""
    for key in list(os.environ):
        if key.startswith(("MIGRATIONBOX_PRODUCTION_", "AIRFLOW__MIGRATIONBOX__PRODUCTION_",
                           "MIGRATIONBOX_PLATFORM_PROFILE",
                           "AIRFLOW__MIGRATIONBOX__PLATFORM_PROFILE")):
            monkeypatch.delenv(key)
