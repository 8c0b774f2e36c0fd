"""Thawing after a live cutover broke off: one source whose thaw fails (its SSH server
is gone, its thaw command exits non-zero) must not leave the others frozen, and must be
named as still frozen."""

from __future__ import annotations

from dataclasses import dataclass

from migrationbox.phases.context import PhaseFailed
from migrationbox.phases.live import LiveCutover


@dataclass
class FakeFreeze:
    """A freeze whose thaw can fail the way ``CommandFreeze.thaw`` fails."""

    label: str
    fail: bool = False
    frozen_at: float | None = 1.0
    frozen_wall: str | None = "2026-01-01T00:00:00+00:00"
    thawed: bool = False

    def freeze(self) -> None:
        self.frozen_at = 1.0

    def thaw(self) -> None:
        if self.fail:
            raise PhaseFailed("cutover", f"{self.label}: details.thaw_command "
                                         "'kill -CONT -- -42' exited 1 on root@db:22: no such "
                                         "process")
        self.thawed, self.frozen_at = True, None


def test_a_failed_thaw_does_not_stop_the_others_and_is_named():
    bad, good = FakeFreeze("web-01/disk/root", fail=True), FakeFreeze("api-01/disk/root")
    out = LiveCutover(servers={"web-01": {"source_state": "frozen"},
                               "api-01": {"source_state": "frozen"}},
                      freezes=[bad, good])
    errors = out.thaw_all()
    assert len(errors) == 1 and "web-01/disk/root: details.thaw_command" in errors[0]
    assert good.thawed and not bad.thawed
    assert out.servers["api-01"]["source_state"] == "running"
    assert out.servers["web-01"]["source_state"] == "frozen: the thaw failed"
    assert out.servers["web-01"]["thaw_errors"] == errors


def test_thawing_everything_reports_nothing():
    freezes = [FakeFreeze("web-01/disk/root"), FakeFreeze("web-01/disk/data")]
    out = LiveCutover(servers={"web-01": {"source_state": "frozen"}}, freezes=list(freezes))
    assert out.thaw_all() == []
    assert all(f.thawed for f in freezes)
    assert out.servers["web-01"]["source_state"] == "running"
