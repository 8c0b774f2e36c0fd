"""Database replication for the spine: initial copy, watermark rounds, verified checksums.

Works on any pair of SQLAlchemy URLs (SQLite and PostgreSQL are what the lab uses), with
Core reflection only:

1. The source schema is reflected and every missing table is created on the target
   (types made generic when the dialects differ).
2. Each round, per table, in foreign-key order, by one of three methods:
   * ``watermark:<column>`` — tables with an ``updated_at``-like column: rows newer than
     the last watermark are upserted (the first round copies everything);
   * ``keyed-diff`` — tables with a primary key but no watermark: when the table's
     checksum differs, rows are compared by key; changed rows are upserted and rows gone
     from the source are deleted;
   * ``full-copy`` — tables without a primary key: replaced when the checksum differs.
   A round's writes and its new watermarks commit in one target transaction (state lives
   in ``_migrationbox_replication`` on the target), so a failed round changes nothing.
3. Rounds repeat until one copies no more than ``threshold_rows`` (or ``max_rounds``).
4. Verification: row count and an ordered SHA-256 of every row per table, both sides.
   Watermarks cannot see deletes, so a table whose checksum still differs gets one
   keyed-diff repair before the final comparison.

The whole-table comparisons hold one table's rows in memory: right for the lab and the
spine; chunked range checksums are the obvious next step for large tables.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any

from migrationbox.replication.progress import Progress, ProgressCallback, noop

STATE_TABLE = "_migrationbox_replication"
DEFAULT_WATERMARKS = ("updated_at", "modified_at", "last_modified", "last_updated", "changed_at")
BATCH = 1000


@dataclass
class TableCheck:
    table: str
    method: str
    rows_source: int
    rows_target: int
    checksum_source: str
    checksum_target: str

    @property
    def match(self) -> bool:
        return (self.rows_source == self.rows_target
                and self.checksum_source == self.checksum_target)

    def as_dict(self) -> dict[str, Any]:
        return {
            "table": self.table, "method": self.method, "rows_source": self.rows_source,
            "rows_target": self.rows_target, "checksum_source": self.checksum_source,
            "checksum_target": self.checksum_target, "match": self.match,
        }


@dataclass
class DbRound:
    round: int
    rows_copied: int = 0
    rows_deleted: int = 0
    tables_changed: list[str] = field(default_factory=list)


@dataclass
class DatabaseReplicationResult:
    source: str
    target: str
    rounds: list[DbRound] = field(default_factory=list)
    tables: list[TableCheck] = field(default_factory=list)
    converged: bool = False
    repaired: list[str] = field(default_factory=list)
    lag_before: dict[str, Any] | None = None

    @property
    def match(self) -> bool:
        return bool(self.tables) and all(t.match for t in self.tables)

    @property
    def rows_copied(self) -> int:
        return sum(r.rows_copied for r in self.rounds)

    def summary(self) -> dict[str, Any]:
        return {
            "rounds": len(self.rounds),
            "round_rows": [r.rows_copied + r.rows_deleted for r in self.rounds],
            "rows_copied": self.rows_copied,
            "converged": self.converged,
            "checksum_match": self.match,
            "repaired": self.repaired,
            "lag_before": self.lag_before,
            "tables": [t.as_dict() for t in self.tables],
        }


# --------------------------------------------------------------------------- values
def _canonical(value: Any) -> Any:
    """One representation per value whatever the driver returned (stable across dialects)."""
    if value is None or (isinstance(value, str | int) and not isinstance(value, bool)):
        return value
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, Decimal):
        if value == value.to_integral_value():
            return int(value)
        return format(value.normalize(), "f")
    if isinstance(value, float):
        return int(value) if value.is_integer() else repr(value)
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, date | time):
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    return str(value)


def _row_digest(row: Sequence[Any]) -> bytes:
    payload = json.dumps([_canonical(v) for v in row], separators=(",", ":"), default=str)
    return hashlib.sha256(payload.encode()).digest()


def _sort_key(key: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple((0, "") if k is None else (1, k) if isinstance(k, int) else (2, str(k))
                 for k in (_canonical(v) for v in key))


# --------------------------------------------------------------------------- schema
def _engines(source_url: str, target_url: str):
    from sqlalchemy import create_engine

    return create_engine(source_url), create_engine(target_url)


def _reflect(engine, exclude: Iterable[str] = (STATE_TABLE,)):
    from sqlalchemy import MetaData

    md = MetaData()
    md.reflect(bind=engine)
    for name in list(md.tables):
        if name in exclude:
            md.remove(md.tables[name])
    return md


def _ensure_target_schema(source_md, source_dialect: str, target_engine) -> None:
    """Create source tables missing on the target (generic types across dialects)."""
    from sqlalchemy import MetaData, inspect

    existing = set(inspect(target_engine).get_table_names())
    missing = [t for t in source_md.sorted_tables if t.name not in existing]
    if not missing:
        return
    md = MetaData()
    for table in missing:
        copy = table.to_metadata(md)
        if target_engine.dialect.name != source_dialect:
            for column in copy.columns:
                # keep the reflected type when it has no generic form
                with contextlib.suppress(NotImplementedError):
                    column.type = column.type.as_generic()
                column.server_default = None
    md.create_all(target_engine)


def _state_table(md=None):
    from sqlalchemy import Column, MetaData, String, Table, Text

    md = md or MetaData()
    return Table(
        STATE_TABLE, md,
        Column("table_name", String(255), primary_key=True),
        Column("method", String(64), nullable=False),
        Column("watermark", Text),
        Column("watermark_type", String(16)),
        Column("updated_at", String(40), nullable=False),
    )


def _encode_wm(value: Any) -> tuple[str | None, str | None]:
    if value is None:
        return None, None
    if isinstance(value, datetime):
        return value.isoformat(), "datetime"
    if isinstance(value, date):
        return value.isoformat(), "date"
    if isinstance(value, bool | int):
        return str(int(value)), "int"
    if isinstance(value, Decimal | float):
        return str(value), "decimal"
    return str(value), "str"


def _decode_wm(text: str | None, kind: str | None) -> Any:
    if text is None:
        return None
    if kind == "datetime":
        return datetime.fromisoformat(text)
    if kind == "date":
        return date.fromisoformat(text)
    if kind == "int":
        return int(text)
    if kind == "decimal":
        return Decimal(text)
    return text


def method_for(table, watermarks: Sequence[str] = DEFAULT_WATERMARKS) -> str:
    """How a table is kept in sync (see module docstring)."""
    names = {c.name.lower(): c.name for c in table.columns}
    for wm in watermarks:
        if wm in names and table.primary_key.columns:
            return f"watermark:{names[wm]}"
    return "keyed-diff" if table.primary_key.columns else "full-copy"


# --------------------------------------------------------------------------- reads
def _pk_cols(table) -> list:
    return list(table.primary_key.columns)


def _all_rows(conn, table) -> list[tuple[Any, ...]]:
    from sqlalchemy import select

    return [tuple(r) for r in conn.execute(select(*table.columns))]


def table_checksum(conn, table) -> tuple[int, str]:
    """Row count and an ordered hash of every row (ordered by primary key, else by row)."""
    pk_idx = [i for i, c in enumerate(table.columns) if c.primary_key]
    rows = _all_rows(conn, table)
    if pk_idx:
        keyed = sorted(
            ((_sort_key(tuple(r[i] for i in pk_idx)), _row_digest(r)) for r in rows),
            key=lambda x: x[0],
        )
        digests = [d for _, d in keyed]
    else:
        digests = sorted(_row_digest(r) for r in rows)
    h = hashlib.sha256()
    for d in digests:
        h.update(d)
    return len(rows), h.hexdigest()


# --------------------------------------------------------------------------- writes
def _upsert(conn, table, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    pk = [c.name for c in _pk_cols(table)]
    dialect = conn.dialect.name
    if dialect in ("postgresql", "sqlite"):
        if dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        for start in range(0, len(rows), BATCH):
            stmt = insert(table)
            others = {c.name: stmt.excluded[c.name] for c in table.columns if c.name not in pk}
            stmt = (stmt.on_conflict_do_update(index_elements=pk, set_=others) if others
                    else stmt.on_conflict_do_nothing(index_elements=pk))
            conn.execute(stmt, rows[start:start + BATCH])
        return
    from sqlalchemy import and_, bindparam

    cond = and_(*[table.c[name] == bindparam(f"_pk_{name}") for name in pk])
    conn.execute(table.delete().where(cond), [{f"_pk_{n}": r[n] for n in pk} for r in rows])
    conn.execute(table.insert(), rows)


def _delete_keys(conn, table, keys: list[tuple[Any, ...]]) -> None:
    from sqlalchemy import and_, bindparam

    if not keys:
        return
    pk = [c.name for c in _pk_cols(table)]
    cond = and_(*[table.c[name] == bindparam(f"_pk_{name}") for name in pk])
    conn.execute(table.delete().where(cond), [dict(zip([f"_pk_{n}" for n in pk], k,
                                                       strict=True)) for k in keys])


@dataclass
class _TablePlan:
    table: Any
    method: str
    upserts: list[dict[str, Any]] = field(default_factory=list)
    deletes: list[tuple[Any, ...]] = field(default_factory=list)
    replace_all: list[dict[str, Any]] | None = None
    new_watermark: Any = None
    wm_changed: bool = False


def _keyed_diff(src_conn, tgt_conn, src_table, tgt_table) -> tuple[list[dict], list[tuple]]:
    cols = [c.name for c in src_table.columns]
    pk_idx = [i for i, c in enumerate(src_table.columns) if c.primary_key]
    tgt_cols = [c.name for c in tgt_table.columns]
    order = [tgt_cols.index(c) for c in cols]

    def keyed(rows, reorder=None):
        out = {}
        for r in rows:
            r = tuple(r[i] for i in reorder) if reorder else r
            out[tuple(_canonical(r[i]) for i in pk_idx)] = r
        return out

    src = keyed(_all_rows(src_conn, src_table))
    tgt = keyed(_all_rows(tgt_conn, tgt_table), order)
    upserts = [
        dict(zip(cols, row, strict=True)) for key, row in src.items()
        if key not in tgt or _row_digest(tgt[key]) != _row_digest(row)
    ]
    deletes = [tuple(row[i] for i in pk_idx) for key, row in tgt.items() if key not in src]
    return upserts, deletes


def _plan_table(src_conn, tgt_conn, src_table, tgt_table, method: str, state: dict | None,
                force_diff: bool = False) -> _TablePlan:
    from sqlalchemy import func, select

    plan = _TablePlan(tgt_table, method)
    cols = [c.name for c in src_table.columns]
    if method.startswith("watermark:") and not force_diff:
        wm_col = src_table.c[method.split(":", 1)[1]]
        if state is None or state.get("method") != method:
            if tgt_conn.execute(select(func.count()).select_from(tgt_table)).scalar():
                plan.upserts, plan.deletes = _keyed_diff(src_conn, tgt_conn, src_table, tgt_table)
            else:
                plan.upserts = [dict(zip(cols, r, strict=True))
                                for r in _all_rows(src_conn, src_table)]
            plan.new_watermark = src_conn.execute(select(func.max(wm_col))).scalar()
            plan.wm_changed = True
            return plan
        last = _decode_wm(state.get("watermark"), state.get("watermark_type"))
        query = select(*src_table.columns)
        if last is not None:
            query = query.where(wm_col > last)
        rows = [tuple(r) for r in src_conn.execute(query.order_by(wm_col))]
        plan.upserts = [dict(zip(cols, r, strict=True)) for r in rows]
        if rows:
            plan.new_watermark = max(r[cols.index(wm_col.name)] for r in rows)
            plan.wm_changed = True
        return plan
    if table_checksum(src_conn, src_table) == table_checksum(tgt_conn, tgt_table):
        if state is None or state.get("method") != method:
            plan.wm_changed = True
        return plan
    if src_table.primary_key.columns:
        plan.upserts, plan.deletes = _keyed_diff(src_conn, tgt_conn, src_table, tgt_table)
        if method.startswith("watermark:"):
            wm_col = src_table.c[method.split(":", 1)[1]]
            plan.new_watermark = src_conn.execute(select(func.max(wm_col))).scalar()
    else:
        plan.replace_all = [dict(zip(cols, r, strict=True))
                            for r in _all_rows(src_conn, src_table)]
    plan.wm_changed = True
    return plan


def _apply(tgt_conn, plans: list[_TablePlan], state_table, round_no: int) -> DbRound:
    """Upserts parents-first, deletes children-first, then the new watermarks."""
    rnd = DbRound(round=round_no)
    for p in plans:
        if p.replace_all is not None:
            continue
        _upsert(tgt_conn, p.table, p.upserts)
        rnd.rows_copied += len(p.upserts)
    for p in reversed(plans):
        if p.replace_all is not None:
            tgt_conn.execute(p.table.delete())
            if p.replace_all:
                tgt_conn.execute(p.table.insert(), p.replace_all)
            rnd.rows_copied += len(p.replace_all)
        else:
            _delete_keys(tgt_conn, p.table, p.deletes)
            rnd.rows_deleted += len(p.deletes)
    now = datetime.now().isoformat()
    for p in plans:
        if p.upserts or p.deletes or p.replace_all:
            rnd.tables_changed.append(p.table.name)
        if not p.wm_changed:
            continue
        wm, kind = _encode_wm(p.new_watermark)
        values = {"method": p.method, "updated_at": now}
        if p.method.startswith("watermark:"):
            values |= {"watermark": wm, "watermark_type": kind}
        updated = tgt_conn.execute(
            state_table.update().where(state_table.c.table_name == p.table.name).values(**values)
        ).rowcount
        if not updated:
            tgt_conn.execute(state_table.insert().values(table_name=p.table.name, **values))
    return rnd


def _load_state(tgt_conn, state_table) -> dict[str, dict[str, Any]]:
    from sqlalchemy import select

    return {r.table_name: dict(r._mapping) for r in tgt_conn.execute(select(state_table))}


def compare_databases(
    source_url: str, target_url: str, watermarks: Sequence[str] = DEFAULT_WATERMARKS
) -> list[TableCheck]:
    """Row counts and checksums of every source table, on both sides."""
    src_engine, tgt_engine = _engines(source_url, target_url)
    try:
        src_md = _reflect(src_engine)
        tgt_md = _reflect(tgt_engine)
        out = []
        with src_engine.connect() as s, tgt_engine.connect() as t:
            for table in src_md.sorted_tables:
                tgt_table = tgt_md.tables.get(table.name)
                n_s, c_s = table_checksum(s, table)
                if tgt_table is None:
                    n_t, c_t = 0, "missing"
                else:
                    n_t, c_t = table_checksum(t, tgt_table)
                out.append(TableCheck(table.name, method_for(table, watermarks), n_s, n_t,
                                      c_s, c_t))
        return out
    finally:
        src_engine.dispose()
        tgt_engine.dispose()


def replicate_database(
    source_url: str,
    target_url: str,
    max_rounds: int = 5,
    threshold_rows: int = 0,
    watermarks: Sequence[str] = DEFAULT_WATERMARKS,
    progress: ProgressCallback | None = None,
) -> DatabaseReplicationResult:
    """Copy ``source_url`` into ``target_url`` in rounds; verify; see module docstring."""
    tick = progress or noop
    result = DatabaseReplicationResult(source=_redact(source_url), target=_redact(target_url))
    src_engine, tgt_engine = _engines(source_url, target_url)
    try:
        src_md = _reflect(src_engine)
        _ensure_target_schema(src_md, src_engine.dialect.name, tgt_engine)
        state_table = _state_table()
        state_table.metadata.create_all(tgt_engine)
        tgt_md = _reflect(tgt_engine)
        tables = [(t, tgt_md.tables[t.name], method_for(t, watermarks))
                  for t in src_md.sorted_tables]
        total = len(tables)
        for round_no in range(1, max_rounds + 1):
            with src_engine.connect() as s, tgt_engine.begin() as t:
                state = _load_state(t, state_table)
                plans = []
                for i, (src_t, tgt_t, method) in enumerate(tables, 1):
                    plans.append(_plan_table(s, t, src_t, tgt_t, method, state.get(src_t.name)))
                    tick(Progress("database", round_no, i, total, "tables", src_t.name))
                rnd = _apply(t, plans, state_table, round_no)
            result.rounds.append(rnd)
            if rnd.rows_copied + rnd.rows_deleted <= threshold_rows:
                result.converged = True
                break
        checks = compare_databases(source_url, target_url, watermarks)
        broken = [c.table for c in checks if not c.match]
        if broken:
            with src_engine.connect() as s, tgt_engine.begin() as t:
                state = _load_state(t, state_table)
                plans = [
                    _plan_table(s, t, src_t, tgt_t, method, state.get(src_t.name),
                                force_diff=True)
                    for src_t, tgt_t, method in tables if src_t.name in broken
                ]
                _apply(t, plans, state_table, len(result.rounds) + 1)
            result.repaired = broken
            checks = compare_databases(source_url, target_url, watermarks)
        result.tables = checks
        return result
    finally:
        src_engine.dispose()
        tgt_engine.dispose()


def _redact(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparseable url>"


def _as_datetime(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value.replace(tzinfo=None) if value.tzinfo else value
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day)
    if isinstance(value, str):
        try:
            return _as_datetime(datetime.fromisoformat(value))
        except ValueError:
            return None
    return None


def replication_lag(
    source_url: str, target_url: str, watermarks: Sequence[str] = DEFAULT_WATERMARKS
) -> dict[str, Any]:
    """How far the target is behind, per watermark table: rows newer than the target's
    watermark at the source (``rows_pending``) and the time between the newest change at
    the source and the newest change the target has (``lag_s``).

    Keyed-diff and full-copy tables have no clock: they report ``rows_pending`` None and
    are covered by the checksum comparison instead.
    """
    from sqlalchemy import func, select

    src_engine, tgt_engine = _engines(source_url, target_url)
    try:
        src_md = _reflect(src_engine)
        state_table = _state_table()
        out: dict[str, Any] = {"tables": {}, "rows_pending": 0, "lag_s": 0.0}
        with src_engine.connect() as s, tgt_engine.connect() as t:
            try:
                state = _load_state(t, state_table)
            except Exception:  # never replicated: no state table yet
                state = {}
            for table in src_md.sorted_tables:
                method = method_for(table, watermarks)
                if not method.startswith("watermark:"):
                    out["tables"][table.name] = {"method": method, "rows_pending": None}
                    continue
                col = table.c[method.split(":", 1)[1]]
                st = state.get(table.name) or {}
                last = _decode_wm(st.get("watermark"), st.get("watermark_type"))
                query = select(func.count(), func.max(col)).select_from(table)
                if last is not None:
                    query = query.where(col > last)
                pending, newest = s.execute(query).one()
                src_new, tgt_new = _as_datetime(newest), _as_datetime(last)
                lag: float | None = 0.0
                if pending and st.get("method") != method:
                    lag = None  # never replicated: the whole table is the lag
                    out.setdefault("never_replicated", []).append(table.name)
                elif pending and src_new is not None and tgt_new is not None:
                    lag = max((src_new - tgt_new).total_seconds(), 0.0)
                out["tables"][table.name] = {
                    "method": method, "rows_pending": int(pending or 0),
                    "target_watermark": _canonical(last), "lag_s": lag}
                out["rows_pending"] += int(pending or 0)
                if lag is not None:
                    out["lag_s"] = max(out["lag_s"], lag)
        return out
    finally:
        src_engine.dispose()
        tgt_engine.dispose()


def final_delta(source_url: str, target_url: str,
                watermarks: Sequence[str] = DEFAULT_WATERMARKS) -> DatabaseReplicationResult:
    """The last sync before traffic moves: one round (plus the checksum repair) and the
    comparison; the caller keeps the source quiet, or accepts the lag it reports."""
    before = replication_lag(source_url, target_url, watermarks)
    result = replicate_database(source_url, target_url, max_rounds=1, threshold_rows=10**12,
                                watermarks=watermarks)
    result.lag_before = before
    return result
