"""What the source looks like, and the target as data frames, for the suites to check.

Profiles are computed the same way on both sides (the replication module's canonical
value form and primary-key order), so a column checksum means the same on PostgreSQL
and SQLite.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from migrationbox.replication.database import _canonical, _reflect, _sort_key
from migrationbox.replication.manifest import Manifest, scan_tree


@dataclass
class TableProfile:
    table: str
    columns: list[str]
    primary_key: list[str]
    rows: int
    null_counts: dict[str, int] = field(default_factory=dict)
    checksums: dict[str, str] = field(default_factory=dict)


def _column_checksums(columns: list[str], pk_idx: list[int], rows: list[tuple[Any, ...]],
                      ) -> dict[str, str]:
    if pk_idx:
        rows = sorted(rows, key=lambda r: _sort_key(tuple(r[i] for i in pk_idx)))
    else:
        rows = sorted(rows, key=lambda r: repr([_canonical(v) for v in r]))
    out = {}
    for i, col in enumerate(columns):
        h = hashlib.sha256()
        for r in rows:
            h.update(repr(_canonical(r[i])).encode())
            h.update(b"\x1f")
        out[col] = h.hexdigest()
    return out


def profile_database(url: str) -> dict[str, tuple[TableProfile, Any]]:
    """Every table's profile and its rows as a pandas DataFrame."""
    import pandas as pd
    from sqlalchemy import create_engine, select

    engine = create_engine(url)
    try:
        md = _reflect(engine)
        out = {}
        with engine.connect() as conn:
            for table in md.sorted_tables:
                cols = [c.name for c in table.columns]
                pk = [c.name for c in table.primary_key.columns]
                rows = [tuple(r) for r in conn.execute(select(*table.columns))]
                prof = TableProfile(
                    table=table.name, columns=cols, primary_key=pk, rows=len(rows),
                    null_counts={c: sum(1 for r in rows if r[i] is None)
                                 for i, c in enumerate(cols)},
                    checksums=_column_checksums(cols, [cols.index(k) for k in pk], rows),
                )
                frame = pd.DataFrame.from_records(rows, columns=cols)
                out[table.name] = (prof, frame)
        return out
    finally:
        engine.dispose()


def file_frame(source: Path | Manifest, target: Path, exclude: set[str], block_size: int):
    """One row per path on either side: size and whole-file digest at source and target
    (None where the path is missing), for the file-manifest suite. ``source`` may be the
    source's manifest hashed where it lives (an SSH source) instead of a local folder."""
    import pandas as pd

    def digests(root: Path | Manifest) -> dict[str, tuple[int, str]]:
        m = root if isinstance(root, Manifest) else scan_tree(root, block_size)
        out = {}
        for rel, e in m.files.items():
            if rel in exclude:
                continue
            body = e.link if e.type == "symlink" else ",".join(e.blocks)
            out[rel] = (e.size, hashlib.sha256(f"{e.type}:{e.mode}:{body}".encode()).hexdigest())
        return out

    src, tgt = digests(source), digests(target)
    rows = []
    for rel in sorted(set(src) | set(tgt)):
        s, t = src.get(rel), tgt.get(rel)
        rows.append({"path": rel, "size_source": s[0] if s else None,
                     "size_target": t[0] if t else None,
                     "digest_source": s[1] if s else None, "digest_target": t[1] if t else None})
    frame = pd.DataFrame(rows, columns=["path", "size_source", "size_target", "digest_source",
                                        "digest_target"])
    return frame, len(src)
