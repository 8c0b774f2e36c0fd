"""The wave DAG's handoff backend: state between tasks in the MigrationBox store.

Every worker reaches the store (SQLite on one host in the embedded default, PostgreSQL
in the production profile), so a task on any worker host sees what an earlier task of
the wave handed over: what provision built, the replication rounds' figures, the final
sync's verdict (``phases.handoff``). A record is keyed by estate, wave, run (empty for
the wave as a whole), name and item number, and writing a key again replaces it, so a
retried task neither loses nor doubles anything.

Strict: in a wave DAG every producer runs before its consumers, so a missing record is
an error naming the record and the wave, never an empty value.

Upgrading: waves provisioned before this backend existed left their state in the local
artifacts folder (``phases.handoff.FileWaveState``). When the store has no record and
that file is on this host, it is imported into the store once (``legacy``), so such a
wave goes on instead of failing; after that the store is the only place read.
"""

from __future__ import annotations

import logging
import socket
from dataclasses import dataclass, field
from typing import Any

from migrationbox.phases.handoff import REPLICATION_ROUND, FileWaveState, Handoff, StateKey

log = logging.getLogger("migrationbox.wave_state")


def _handoff(record: Any) -> Handoff:
    return Handoff(record.name, dict(record.payload), record.written_by, record.written_at,
                   f"store record {record.name}#{record.seq}", record.seq)


@dataclass
class StoreWaveState:
    """``phases.handoff.WaveStateStore`` over the store's ``wave_state`` table."""

    url: str | None = None  # None: the process's store (config.store_url)
    strict: bool = True
    #: the local files an older MigrationBox wrote, imported on a miss (see above)
    legacy: FileWaveState | None = None
    hint: str = field(default=(
        "the store holds it for every worker host, so the producing task has not "
        "succeeded for this wave since its last teardown (or the store was reset): run "
        "that task again."))

    def _scope(self, key: StateKey) -> str:
        return key.run_id or ""

    def where(self, key: StateKey) -> str:
        from sqlalchemy.engine import make_url

        from migrationbox.store.db import resolve_url

        store = make_url(resolve_url(self.url)).render_as_string(hide_password=True)
        run = f", run {key.run_id}" if key.run_id else ""
        return (f"record {key.name!r} (estate {key.estate}, wave {key.wave}{run}) in the "
                f"store's wave_state table at {store}")

    def producer_host(self, key: StateKey) -> str | None:
        """Where the producer ran, when a phase run says (``tasks.producer_host``)."""
        from migrationbox.orchestration.tasks import producer_host

        return producer_host(key)

    def put(self, key: StateKey, payload: Any, seq: int = 0) -> Handoff:
        from migrationbox.store import repository
        from migrationbox.store.db import session_scope

        with session_scope(self.url) as session:
            record = repository.put_wave_state(
                session, estate=key.estate, wave=key.wave, name=key.name, payload=payload,
                run_id=self._scope(key), seq=seq, written_by=socket.gethostname())
        return _handoff(record)

    def get(self, key: StateKey, seq: int = 0) -> Handoff | None:
        from migrationbox.store import repository
        from migrationbox.store.db import session_scope

        with session_scope(self.url, read_only=True) as session:
            record = repository.get_wave_state(session, key.estate, key.wave, key.name,
                                               self._scope(key), seq)
        if record is not None:
            return _handoff(record)
        if self.legacy is not None and self._import_legacy(key):
            return self.get(key, seq) if self._has(key, seq) else None
        return None

    def _has(self, key: StateKey, seq: int) -> bool:
        from migrationbox.store import repository
        from migrationbox.store.db import session_scope

        with session_scope(self.url, read_only=True) as session:
            return repository.get_wave_state(session, key.estate, key.wave, key.name,
                                             self._scope(key), seq) is not None

    def _import_legacy(self, key: StateKey) -> int:
        """Copy this key's local-file state (an older MigrationBox's) into the store;
        the number of records imported (0: no such file on this host)."""
        assert self.legacy is not None
        found = self.legacy.items(key) if key.name == REPLICATION_ROUND \
            else [h for h in [self.legacy.get(key)] if h is not None]
        for item in found:
            if isinstance(item.payload, dict):
                self.put(key, item.payload, item.seq)
        if found:
            log.warning("imported %d local %s record(s) (%s) into the store: written by an "
                        "older MigrationBox", len(found), key.describe(),
                        self.legacy.where(key))
        return len(found)

    def items(self, key: StateKey) -> list[Handoff]:
        from migrationbox.store import repository
        from migrationbox.store.db import session_scope

        with session_scope(self.url, read_only=True) as session:
            records = repository.wave_state_items(session, key.estate, key.wave, key.name,
                                                  self._scope(key))
        if not records and self.legacy is not None and self._import_legacy(key):
            return self.items(key)
        return [_handoff(r) for r in records]

    def delete(self, key: StateKey) -> int:
        from migrationbox.store import repository
        from migrationbox.store.db import session_scope

        with session_scope(self.url) as session:
            deleted = repository.delete_wave_state(session, estate=key.estate, wave=key.wave,
                                                   name=key.name, run_id=self._scope(key))
        if self.legacy is not None:  # an older file would be imported again otherwise
            deleted += self.legacy.delete(key)
        return deleted
