"""Concurrent writers, as in production: Airflow task processes, the CLI and the demo
write to one store at once (in the embedded default, one SQLite file)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator

import pytest

from migrationbox.store import db
from migrationbox.store import repository as repo
from migrationbox.store.testing import store_url, tiny_estate

WRITER = textwrap.dedent(
    """
    import sys
    from migrationbox.store import db, repository as repo
    from migrationbox.store.testing import tiny_estate

    url, tag, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    # First use of the URL in this process: auto-upgrade races the other writer.
    with db.session_scope(url) as s:
        repo.save_estate(s, tiny_estate())
    for i in range(n):
        with db.session_scope(url) as s:
            repo.add_event(s, estate="tiny", wave=1, message=f"{tag} {i}", data={"i": i})
            repo.record_phase_start(s, estate="tiny", plan_version=1, wave=1,
                                    dag_run_id="shared", phase="replicate")
    print("done", tag)
    """
)


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path) -> Iterator[str]:
    try:
        with store_url(request.param, tmp_path) as value:
            yield value
    except LookupError as exc:
        pytest.skip(f"PostgreSQL tests skipped: {exc}")


def _check(url: str, tags: list[str], n: int) -> None:
    with db.session_scope(url, read_only=True) as s:
        events = repo.events(s, "tiny", wave=1)
        runs = repo.phase_runs(s, "tiny", 1, dag_run_id="shared")
        servers = repo.get_estate(s, "tiny").servers
    assert len(events) == len(tags) * n
    assert len({e.id for e in events}) == len(events)
    for tag in tags:  # each writer's events are all there, in its order
        mine = [e.data["i"] for e in events if e.message.startswith(f"{tag} ")]
        assert mine == list(range(n))
    # every upsert hit the same row, and no increment was lost
    assert len(runs) == 1 and runs[0].attempts == len(tags) * n
    assert len(servers) == 3


def test_two_processes_on_a_fresh_store(url):
    n = 25
    tags = ["alpha", "beta"]
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, url, tag, str(n)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         start_new_session=True)
        for tag in tags
    ]
    try:
        outputs = [p.communicate(timeout=120) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
    for p, (out, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err
        assert out.startswith("done")
    _check(url, tags, n)


def test_two_threads_with_their_own_sessions(url):
    with db.session_scope(url) as s:
        repo.save_estate(s, tiny_estate())
    n = 30
    tags = ["t1", "t2"]
    errors: list[BaseException] = []
    start = threading.Barrier(len(tags))

    def write(tag: str) -> None:
        try:
            start.wait()
            for i in range(n):
                with db.session_scope(url) as s:
                    repo.add_event(s, estate="tiny", wave=1, message=f"{tag} {i}",
                                   data={"i": i})
                    repo.record_phase_start(s, estate="tiny", plan_version=1, wave=1,
                                            dag_run_id="shared", phase="replicate")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(t,)) for t in tags]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    _check(url, tags, n)
