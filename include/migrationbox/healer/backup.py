"""Database backups the healer restores from, and the integrity check that finds corruption.

In the cloud this is the managed database's own backup (RDS automated snapshots and
point-in-time restore); for the migrated lab databases (SQLite or PostgreSQL) a backup is
a SQLite copy of every table plus a manifest of per-table row counts and SHA-256 digests,
written next to the runtime (``<MIGRATIONBOX_HOME>/backups/<estate>/<server>/``) and
renamed into place only when complete, so a half-written backup is never used.

**On a cluster** (the ``shared_root`` setting, :mod:`migrationbox.shared_files`) every
backup is also published when taken, as ``<shared_root>/backups/<estate>/<server>/<stamp>
.sqlite`` and ``.json``: a remediation compares and restores on whichever worker it
runs, and the estate watch checks integrity in the triggerer, neither necessarily on the
host that took the backup. :func:`latest_backup` picks the newest backup of the local
folder and of shared storage together and fetches it into the local folder when this host
does not have it (backups never change once taken, so a copy is fetched once). Without
``shared_root`` backups stay in the local folder, as before.

**Corruption, not change.** A row whose values differ from the backup is corrupt only
when nothing legitimate explains it: in a table with an ``updated_at`` watermark the
application bumps it on every write, so a row that differs while its watermark is not
newer than the backup was changed behind the application's back (bit rot, a bad script,
a broken replica). Tables without a watermark are compared as they are. Rows added or
deleted since the backup are the application's business and never count.

**Restore** puts back only the corrupt rows, inside one transaction, after saving their
current values (the undo): newer legitimate writes elsewhere are kept, and a restore that
does not help can be rolled back exactly.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

WATERMARK = "updated_at"
#: rows named per table in a finding (the count is exact; the list is for people)
MAX_LISTED = 20


@dataclass(frozen=True)
class Backup:
    path: Path
    taken_at: datetime
    manifest: dict[str, dict[str, Any]]  # table -> {"rows": n, "sha256": hex, "pk": [...]}

    @property
    def url(self) -> str:
        return f"sqlite:///{self.path}"


def backup_dir(estate: str, server_id: str) -> Path:
    from migrationbox.config import runtime_dir

    return runtime_dir() / "backups" / estate / server_id


def _shared_prefix(estate: str, server_id: str) -> str:
    """``backups/<estate>/<server>``: the backups' folder below the shared root."""
    from migrationbox.shared_files import key_of

    return key_of("backups", estate, server_id)


def _publish(final: Path, estate: str, server_id: str) -> None:
    """Upload a backup just taken (database copy first, then its manifest: a manifest in
    shared storage means its copy is there), when ``shared_root`` is set."""
    from migrationbox import shared_files

    shared = shared_files.configured()
    if shared is None:
        return
    prefix = _shared_prefix(estate, server_id)
    try:
        for path in (final, final.with_suffix(".json")):
            shared.put_file(shared_files.key_of(prefix, path.name), path)
    except shared_files.SharedStorageError as exc:
        raise shared_files.SharedStorageError(
            f"backup {final} of {estate}/{server_id} was taken on this host but not "
            f"shared, so other hosts cannot restore from it: {exc}") from exc


def _canon(value: Any) -> Any:
    if value is None or isinstance(value, (str, int, bool)):
        return value
    if isinstance(value, (float, Decimal)):
        return f"{Decimal(str(value)):.6f}"
    if isinstance(value, datetime):
        return value.replace(tzinfo=None).isoformat(timespec="microseconds")
    return str(value)


def _row_key(row: Mapping[str, Any], pk: list[str]) -> str:
    return json.dumps([_canon(row[c]) for c in pk])


def _row_value(row: Mapping[str, Any]) -> str:
    return json.dumps({k: _canon(v) for k, v in sorted(row.items())}, sort_keys=True)


def _rows(conn: Any, table: Any, pk: list[str]) -> list[dict[str, Any]]:
    from sqlalchemy import select

    order = [table.c[c] for c in pk] or list(table.c)
    return [dict(r._mapping) for r in conn.execute(select(table).order_by(*order))]


def _digest(rows: Iterable[Mapping[str, Any]]) -> str:
    h = hashlib.sha256()
    for row in rows:
        h.update(_row_value(row).encode())
        h.update(b"\n")
    return h.hexdigest()


def take_backup(database_url: str, estate: str, server_id: str) -> Backup:
    """Copy every table of the database into a new SQLite backup with its manifest."""
    from sqlalchemy import MetaData, create_engine

    taken_at = datetime.now(UTC)
    folder = backup_dir(estate, server_id)
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"{taken_at:%Y%m%dT%H%M%S%fZ}.sqlite"
    partial = final.with_suffix(".partial")
    partial.unlink(missing_ok=True)
    source, target = create_engine(database_url), create_engine(f"sqlite:///{partial}")
    manifest: dict[str, dict[str, Any]] = {}
    try:
        md = MetaData()
        md.reflect(source)
        for table in md.sorted_tables:
            for column in table.c:
                column.server_default = None  # engine-specific defaults do not travel
        md.create_all(target)
        with source.connect() as src, target.begin() as dst:
            for table in md.sorted_tables:
                pk = [c.name for c in table.primary_key.columns]
                rows = _rows(src, table, pk)
                if rows:
                    dst.execute(table.insert(), rows)
                manifest[table.name] = {"rows": len(rows), "sha256": _digest(rows), "pk": pk}
    finally:
        source.dispose()
        target.dispose()
    (final.with_suffix(".json")).write_text(json.dumps(
        {"taken_at": taken_at.isoformat(), "database": _redacted(database_url),
         "tables": manifest}, indent=1))
    os.replace(partial, final)
    _publish(final, estate, server_id)
    return Backup(final, taken_at, manifest)


def _redacted(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def latest_backup(estate: str, server_id: str) -> Backup | None:
    """The newest complete backup (database copy and manifest) of the server's database,
    of this host's folder and, with ``shared_root`` set, of shared storage: one taken on
    another host is fetched into this host's folder first. ``None`` when there is none."""
    from migrationbox import shared_files

    folder = backup_dir(estate, server_id)
    local = {p.stem for p in folder.glob("*.sqlite") if p.with_suffix(".json").exists()} \
        if folder.is_dir() else set()
    shared = shared_files.configured()
    remote: dict[str, shared_files.SharedObject] = {}
    if shared is not None:
        prefix = _shared_prefix(estate, server_id)
        remote = {o.key[len(prefix) + 1:]: o for o in shared.list(prefix)}
    shared_stems = {name.removesuffix(".json") for name in remote
                    if name.endswith(".json") and "/" not in name
                    and name.removesuffix(".json") + ".sqlite" in remote}
    for stem in sorted(local | shared_stems, reverse=True):  # names are UTC time stamps
        path = folder / f"{stem}.sqlite"
        if stem not in local:
            assert shared is not None
            prefix = _shared_prefix(estate, server_id)
            # the copy first, the manifest last: a manifest here means its copy is whole
            shared.fetch(shared_files.key_of(prefix, path.name), path,
                         known=remote[path.name])
            shared.fetch(shared_files.key_of(prefix, f"{stem}.json"),
                         path.with_suffix(".json"), known=remote[f"{stem}.json"])
        doc = json.loads(path.with_suffix(".json").read_text())
        return Backup(path, datetime.fromisoformat(doc["taken_at"]), doc["tables"])
    return None


def verify_backup(backup: Backup) -> str | None:
    """None when every table of the backup still matches its manifest; else what differs."""
    from sqlalchemy import MetaData, create_engine

    engine = create_engine(backup.url)
    try:
        md = MetaData()
        md.reflect(engine)
        with engine.connect() as conn:
            for name, entry in backup.manifest.items():
                if name not in md.tables:
                    return f"table {name} is missing from the backup"
                rows = _rows(conn, md.tables[name], list(entry["pk"]))
                if len(rows) != entry["rows"] or _digest(rows) != entry["sha256"]:
                    return f"table {name} no longer matches the backup's manifest"
    finally:
        engine.dispose()
    return None


def corrupted_rows(database_url: str, backup: Backup) -> dict[str, list[str]]:
    """Per table, the keys (JSON lists of primary-key values) of the corrupt rows."""
    from sqlalchemy import MetaData, create_engine

    live, saved = create_engine(database_url), create_engine(backup.url)
    found: dict[str, list[str]] = {}
    cutoff = backup.taken_at.replace(tzinfo=None)
    try:
        md_live, md_saved = MetaData(), MetaData()
        md_live.reflect(live)
        md_saved.reflect(saved)
        with live.connect() as lc, saved.connect() as sc:
            for name, entry in backup.manifest.items():
                pk = list(entry["pk"])
                if not pk or name not in md_live.tables:
                    continue
                before = {_row_key(r, pk): r for r in _rows(sc, md_saved.tables[name], pk)}
                bad: list[str] = []
                for row in _rows(lc, md_live.tables[name], pk):
                    key = _row_key(row, pk)
                    old = before.get(key)
                    if old is None or _row_value(old) == _row_value(row):
                        continue
                    mark = row.get(WATERMARK)
                    if isinstance(mark, datetime) and mark.replace(tzinfo=None) > cutoff:
                        continue  # a legitimate write after the backup
                    bad.append(key)
                if bad:
                    found[name] = bad
    finally:
        live.dispose()
        saved.dispose()
    return found


def restore_rows(database_url: str, backup: Backup, rows: Mapping[str, list[str]]
                 ) -> dict[str, list[dict[str, Any]]]:
    """Put the backup's values back into the given rows (one transaction) and return the
    values they had (the undo, for :func:`put_rows`)."""
    from sqlalchemy import MetaData, create_engine

    live, saved = create_engine(database_url), create_engine(backup.url)
    undo: dict[str, list[dict[str, Any]]] = {}
    try:
        md_live, md_saved = MetaData(), MetaData()
        md_live.reflect(live)
        md_saved.reflect(saved)
        with saved.connect() as sc:
            wanted: dict[str, list[dict[str, Any]]] = {}
            for name, keys in rows.items():
                pk = list(backup.manifest[name]["pk"])
                by_key = {_row_key(r, pk): r for r in _rows(sc, md_saved.tables[name], pk)}
                missing = [k for k in keys if k not in by_key]
                if missing:
                    raise LookupError(f"{name}: row(s) {', '.join(missing[:5])} are not in "
                                      f"the backup {backup.path.name}")
                wanted[name] = [by_key[k] for k in keys]
        with live.begin() as lc:
            for name, new_rows in wanted.items():
                undo[name] = _replace(lc, md_live.tables[name],
                                      list(backup.manifest[name]["pk"]), new_rows)
    finally:
        live.dispose()
        saved.dispose()
    return undo


def put_rows(database_url: str, rows: Mapping[str, list[dict[str, Any]]]) -> None:
    """Write rows (an undo from :func:`restore_rows`) back, in one transaction."""
    from sqlalchemy import MetaData, create_engine

    engine = create_engine(database_url)
    try:
        md = MetaData()
        md.reflect(engine)
        with engine.begin() as conn:
            for name, new_rows in rows.items():
                table = md.tables[name]
                pk = [c.name for c in table.primary_key.columns]
                _replace(conn, table, pk, [_typed(r) for r in new_rows])
    finally:
        engine.dispose()


def _replace(conn: Any, table: Any, pk: list[str], new_rows: list[Mapping[str, Any]]
             ) -> list[dict[str, Any]]:
    from sqlalchemy import and_, select

    previous: list[dict[str, Any]] = []
    for row in new_rows:
        where = and_(*[table.c[c] == row[c] for c in pk])
        current = conn.execute(select(table).where(where)).first()
        if current is None:
            raise LookupError(f"{table.name}: row {_row_key(row, pk)} no longer exists")
        previous.append({k: _jsonable(v) for k, v in current._mapping.items()})
        conn.execute(table.update().where(where).values(
            {k: v for k, v in row.items() if k not in pk}))
    return previous


def _jsonable(value: Any) -> Any:
    """Undo rows travel as JSON (the remediation record): keep their types recoverable."""
    if isinstance(value, Decimal):
        return {"decimal": str(value)}
    if isinstance(value, datetime):
        return {"datetime": value.isoformat()}
    return value


def _typed(row: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in row.items():
        if isinstance(value, dict) and "decimal" in value:
            value = Decimal(value["decimal"])
        elif isinstance(value, dict) and "datetime" in value:
            value = datetime.fromisoformat(value["datetime"])
        out[key] = value
    return out


def count(found: Mapping[str, list[str]]) -> int:
    return sum(len(v) for v in found.values())


def describe(found: Mapping[str, list[str]]) -> str:
    return "; ".join(f"{name}: {len(keys)} row(s) ({', '.join(keys[:MAX_LISTED])})"
                     for name, keys in sorted(found.items())) or "no corrupt row"
