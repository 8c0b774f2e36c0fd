"""Where catalog data lives: the shipped copies, and refreshed prices in the runtime folder.

Shipped files are verbatim copies of public data (see ``data/PROVENANCE.md``).
``migrationbox prices refresh`` writes *normalised* price files for one cloud region
into ``<runtime>/pricing/<cloud>/<region>.csv`` with a ``.json`` sidecar saying where
the prices came from and when; a refreshed region wins over the shipped data, and
its own date is what users see.

**On a cluster** (the ``shared_root`` setting, :mod:`migrationbox.shared_files`) a
refresh also publishes both files as ``<shared_root>/pricing/<cloud>/<region>.csv`` and
``.json``, and every host prices from the newest published pair: before reading a region
a reader asks for the sidecar's ETag (one HEAD) and fetches the pair into its own pricing
folder only when it changed. The sidecar carries the CSV's SHA-256, written last, so a
reader that caught a refresh half-way (new CSV, old sidecar) sees the mismatch and
fetches again instead of pricing with the wrong date. A region with no published prices
falls back to a local refreshed file this host wrote itself (before ``shared_root`` was
set; the log says other hosts do not see it), and a copy fetched earlier whose objects
were deleted is dropped. Without ``shared_root`` only the local folder is read.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import math
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from migrationbox.errors import InputError
from migrationbox.sizing.clouds.base import CatalogError, PriceSource

log = logging.getLogger("migrationbox.sizing.prices")

REFRESHED_COLUMNS = ("name", "vcpu", "memory_gib", "arch", "ondemand_usd_hr",
                     "commit_1y_usd_hr", "commit_3y_usd_hr")


def data_path(*parts: str) -> Path:
    return Path(str(resources.files("migrationbox.sizing.clouds").joinpath("data", *parts)))


def pricing_dir() -> Path:
    """Folder of refreshed price files (the ``pricing_dir`` setting or the runtime folder)."""
    from migrationbox import settings

    explicit = settings.get("pricing_dir")
    if explicit:
        return Path(explicit)
    from migrationbox.config import runtime_dir

    return runtime_dir() / "pricing"


def opt_float(row: dict[str, str], column: str) -> float | None:
    value = (row.get(column) or "").strip()
    if not value:
        return None
    number = float(value)
    return number


def read_rows(path: Path) -> list[dict[str, str]]:
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            return list(csv.DictReader(handle))
    except OSError as exc:
        raise CatalogError(f"cannot read catalog file {path}: {exc}") from exc
    except (UnicodeDecodeError, csv.Error) as exc:
        raise PriceFileError(f"{path}: not a readable CSV price file ({exc})") from exc


class PriceFileError(CatalogError, InputError):
    """A refreshed price file (or its sidecar) is unusable; the message names the line.

    A price file is all or nothing: pricing a region from the rows that happened to
    parse would silently change which machine type is cheapest.
    """


def _price(row: dict[str, str | None], column: str, *, required: bool = False,
           whole: bool = False) -> float | None:
    """A finite, non-negative number from one cell (``None`` when empty and optional)."""
    cell = row.get(column)
    value = cell.strip() if isinstance(cell, str) else ""
    if not value:
        if required:
            raise ValueError(f"column {column!r}: empty")
        return None
    shown = repr(value) if len(value) <= 30 else repr(value[:27] + "...")
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"column {column!r}: {shown} is not a number") from None
    if not math.isfinite(number) or number < 0:
        raise ValueError(f"column {column!r}: {shown} is not a finite number >= 0")
    if whole and (number != int(number) or number < 1):
        raise ValueError(f"column {column!r}: {shown} is not a whole number >= 1")
    return number


@dataclass(frozen=True, slots=True)
class RefreshedRow:
    name: str
    vcpu: int | None
    memory_gib: float | None
    arch: str | None
    ondemand_usd_hr: float
    commit_1y_usd_hr: float | None
    commit_3y_usd_hr: float | None


def refreshed_file(cloud: str, region: str) -> Path:
    return pricing_dir() / cloud / f"{region}.csv"


#: attempts at fetching a consistent CSV + sidecar pair while a refresh is publishing
_PAIR_ATTEMPTS = 3


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _shared_keys(cloud: str, region: str) -> tuple[str, str]:
    from migrationbox.shared_files import key_of

    return key_of("pricing", cloud, f"{region}.csv"), key_of("pricing", cloud, f"{region}.json")


def _recorded_sha(meta_path: Path) -> str | None:
    try:
        doc = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    value = doc.get("sha256") if isinstance(doc, dict) else None
    return value if isinstance(value, str) else None


def sync_refreshed(cloud: str, region: str) -> None:
    """With ``shared_root`` set: make this host's refreshed files of the region the
    newest published pair (see the module docstring); a no-op without it.
    ``SharedStorageError`` (naming bucket and key) when object storage fails, and
    ``PriceFileError`` when the published pair stays inconsistent."""
    from migrationbox import shared_files

    shared = shared_files.configured()
    if shared is None:
        return
    path = refreshed_file(cloud, region)
    meta = path.with_suffix(".json")
    csv_key, meta_key = _shared_keys(cloud, region)
    for _ in range(_PAIR_ATTEMPTS):
        current = shared.head(meta_key)
        if current is None:
            if shared.cached_etag(meta_key, meta) is not None:
                # fetched from shared storage earlier, deleted there since: not prices
                for key, local in ((meta_key, meta), (csv_key, path)):
                    local.unlink(missing_ok=True)
                    shared.forget_copy(key, local)
            elif path.exists():
                log.warning("%s %s: prices refreshed on this host only (%s); they are not "
                            "in %s, so other hosts price this region from shipped data",
                            cloud, region, path, shared.root.uri(meta_key))
            return
        if shared.cached_etag(meta_key, meta) == current.etag and path.exists() and \
                _recorded_sha(meta) in (None, _sha256(path)):
            return  # this host has the current pair
        shared.fetch(meta_key, meta, known=current)
        if shared.fetch(csv_key, path) is None:
            continue  # the sidecar without its CSV: deleted or being replaced
        expected = _recorded_sha(meta)
        if expected is None or expected == _sha256(path):
            return
        shared.forget_copy(meta_key, meta)  # caught a refresh half-way: fetch again
    raise PriceFileError(f"{shared.root.uri(csv_key)} and its sidecar {meta_key} do not "
                         f"match after {_PAIR_ATTEMPTS} attempts (a refresh still "
                         "publishing, or a hand-edited object): refresh the region again")


def publish_refreshed(cloud: str, region: str) -> bool:
    """Upload the region's refreshed files (CSV, then the sidecar) when ``shared_root``
    is set; whether they were published."""
    from migrationbox import shared_files

    shared = shared_files.configured()
    if shared is None:
        return False
    path = refreshed_file(cloud, region)
    csv_key, meta_key = _shared_keys(cloud, region)
    shared.put_file(csv_key, path)
    shared.put_file(meta_key, path.with_suffix(".json"))
    return True


def load_refreshed(cloud: str, region: str) -> tuple[list[RefreshedRow], PriceSource] | None:
    """The refreshed prices of one region, or None when none were written (with
    ``shared_root`` set: the newest published ones, see :func:`sync_refreshed`)."""
    sync_refreshed(cloud, region)
    path = refreshed_file(cloud, region)
    if not path.exists():
        return None
    meta_path = path.with_suffix(".json")
    need = "refreshed prices need a JSON sidecar with 'source' and 'as_of' strings"
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise PriceFileError(f"{meta_path}: {need}: {exc.strerror or exc}") from exc
    except (ValueError, RecursionError) as exc:  # not UTF-8, not JSON, nested too deeply
        raise PriceFileError(f"{meta_path}: {need}: not JSON ({exc})") from exc
    if not isinstance(meta, dict) or not all(
            isinstance(meta.get(k), (str, int)) and str(meta.get(k)).strip()
            for k in ("source", "as_of")):
        raise PriceFileError(f"{meta_path}: {need}")
    source = PriceSource(text=str(meta["source"]), as_of=str(meta["as_of"]))
    try:  # printed with every price: an unpaired surrogate escape cannot be
        str(source).encode("utf-8")
    except UnicodeEncodeError:
        raise PriceFileError(f"{meta_path}: {need} (text with an unpaired surrogate "
                             "escape is not Unicode)") from None
    rows: list[RefreshedRow] = []
    table = read_rows(path)
    if table and not {"name", "ondemand_usd_hr"} <= set(table[0]):
        raise PriceFileError(f"{path}: expected the columns {', '.join(REFRESHED_COLUMNS)}")
    for line, row in enumerate(table, start=2):
        try:
            if None in row:  # csv.DictReader puts surplus cells under the key None
                raise ValueError("more cells than the header has columns")
            name = (row.get("name") or "").strip()
            if not name:
                raise ValueError("column 'name': empty")
            vcpu = _price(row, "vcpu", whole=True)
            rows.append(RefreshedRow(
                name=name,
                vcpu=int(vcpu) if vcpu is not None else None,
                memory_gib=_price(row, "memory_gib"),
                arch=(row.get("arch") or "").strip() or None,
                ondemand_usd_hr=_price(row, "ondemand_usd_hr", required=True) or 0.0,
                commit_1y_usd_hr=_price(row, "commit_1y_usd_hr"),
                commit_3y_usd_hr=_price(row, "commit_3y_usd_hr"),
            ))
        except ValueError as exc:
            raise PriceFileError(f"{path} line {line}: {exc}") from exc
    return rows, source


def write_refreshed(cloud: str, region: str, rows: list[RefreshedRow], source: PriceSource,
                    directory: Path | None = None) -> Path:
    """Write one region's refreshed prices atomically (file, then sidecar)."""
    base = (directory or pricing_dir()) / cloud
    base.mkdir(parents=True, exist_ok=True)
    path = base / f"{region}.csv"
    tmp = path.with_suffix(".csv.tmp")
    with tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(REFRESHED_COLUMNS)
        for r in sorted(rows, key=lambda r: r.name):
            writer.writerow([r.name, "" if r.vcpu is None else r.vcpu,
                             "" if r.memory_gib is None else f"{r.memory_gib:g}", r.arch or "",
                             f"{r.ondemand_usd_hr:.6g}",
                             "" if r.commit_1y_usd_hr is None else f"{r.commit_1y_usd_hr:.6g}",
                             "" if r.commit_3y_usd_hr is None else f"{r.commit_3y_usd_hr:.6g}"])
    os.replace(tmp, path)
    meta = path.with_suffix(".json")
    meta_tmp = meta.with_suffix(".json.tmp")
    # the CSV's digest: a reader of a published pair can tell it got matching halves
    meta_tmp.write_text(json.dumps({"source": source.text, "as_of": source.as_of,
                                    "rows": len(rows), "sha256": _sha256(path)}, indent=2),
                        encoding="utf-8")
    os.replace(meta_tmp, meta)
    if directory is None or Path(directory) == pricing_dir():
        publish_refreshed(cloud, region)
    return path
