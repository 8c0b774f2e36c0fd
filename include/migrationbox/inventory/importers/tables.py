"""Read spreadsheet-shaped input (an .xlsx sheet or a CSV file) as header + rows.

Importers think in tables: a header row of column names and data rows numbered the way
the user's spreadsheet program numbers them (the header is row 1), so that a message
such as ``vInfo row 17`` leads straight to the cell. Column names are matched loosely
(case, spacing and punctuation ignored) because exports of the same tool differ across
versions and locales.

Bad files never raise out of here as anything but ``TableError`` with a plain message:
a truncated workbook, a CSV that is not text, an encrypted file.
"""

from __future__ import annotations

import csv
import io
import re
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from migrationbox.errors import InputError

_NORMALISE = re.compile(r"[^a-z0-9#]+")

# A header row is looked for among the first rows only: some exports put a title above it.
_HEADER_SEARCH_ROWS = 5


class TableError(InputError):
    """The file cannot be read as a table (message is meant for the user)."""


def norm(name: object) -> str:
    """``"Provisioned MiB"`` and ``"provisioned_mib"`` compare equal."""
    return _NORMALISE.sub("", str(name).lower()) if name is not None else ""


@dataclass(slots=True)
class Row:
    number: int  # 1-based row (xlsx) or line (CSV) as a spreadsheet program shows it
    cells: dict[str, Any]  # normalised column name -> value (None or "" when empty)


@dataclass(slots=True)
class Table:
    """One sheet or CSV file: its columns (as written) and its rows."""

    name: str  # sheet title, or the CSV file name
    columns: list[str]
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # e.g. "read as Windows-1252"
    from_csv: bool = False

    @property
    def part(self) -> str:
        """How a message names this table beside the file: the sheet, or "" for a CSV."""
        return "" if self.from_csv else self.name

    def where(self, row: Row) -> str:
        """``vDisk row 5`` (a sheet) or ``RVTools_tabvDisk.csv row 5`` (a CSV file)."""
        return f"{self.name} row {row.number}"

    @property
    def normalised(self) -> set[str]:
        return {norm(c) for c in self.columns}

    def column(self, *variants: str) -> str | None:
        """The column (as written in the file) matching the first variant present."""
        by_norm = {norm(c): c for c in self.columns}
        for variant in variants:
            if norm(variant) in by_norm:
                return by_norm[norm(variant)]
        return None


def _table(name: str, raw_rows: Iterable[tuple[int, list[Any]]],
           looks_like_header: Any = None) -> Table:
    """Build a table from numbered raw rows; the first non-empty row is the header.

    ``looks_like_header`` (a predicate on the normalised names) lets a caller skip
    title rows above the real header.
    """
    rows_iter = iter(raw_rows)
    pending: list[tuple[int, list[Any]]] = []
    header: list[str] | None = None
    for number, values in rows_iter:
        if not any(v not in (None, "") for v in values):
            continue
        pending.append((number, values))
        names = [("" if v is None else str(v).strip()) for v in values]
        if looks_like_header is None or looks_like_header({norm(n) for n in names}):
            header = names
            break
        if len(pending) >= _HEADER_SEARCH_ROWS:
            break
    if header is None:
        first = pending[0][1] if pending else []
        return Table(name, [("" if v is None else str(v).strip()) for v in first])
    keys = [norm(n) for n in header]
    table = Table(name, [n for n in header if n])
    for number, values in rows_iter:
        if not any(v not in (None, "") for v in values):
            continue
        cells: dict[str, Any] = {}
        for key, value in zip(keys, values, strict=False):
            if key and key not in cells:  # first of two same-named columns wins
                cells[key] = value.strip() if isinstance(value, str) else value
        table.rows.append(Row(number, cells))
    return table


# ---------------------------------------------------------------------------- xlsx


def read_workbook(path: Path, looks_like_header: Any = None) -> list[Table]:
    """Every sheet of an .xlsx workbook, read in openpyxl's read-only (streaming) mode."""
    from openpyxl import load_workbook
    from openpyxl.utils.exceptions import InvalidFileException

    try:
        book = load_workbook(path, read_only=True, data_only=True)
    except (zipfile.BadZipFile, InvalidFileException) as exc:
        raise TableError(f"not a readable .xlsx workbook ({exc}); if it was cut short "
                         "in transfer, export or copy it again") from exc
    except KeyError as exc:  # a zip without the workbook parts
        raise TableError(f"not an .xlsx workbook: it lacks the part {exc}") from exc
    except OSError as exc:
        raise TableError(f"cannot read file: {exc.strerror or exc}") from exc
    except Exception as exc:  # openpyxl raises assorted errors on damaged XML
        raise TableError(f"damaged .xlsx workbook: {type(exc).__name__}: {exc}") from exc
    tables: list[Table] = []
    try:
        for sheet in book.worksheets:
            numbered = (
                (number, list(values))
                for number, values in enumerate(sheet.iter_rows(values_only=True), start=1)
            )
            tables.append(_table(sheet.title, numbered, looks_like_header))
    except (zipfile.BadZipFile, EOFError, zipfile.LargeZipFile) as exc:
        raise TableError(f"damaged .xlsx workbook (a sheet cannot be read: {exc}); "
                         "export or copy it again") from exc
    except Exception as exc:
        raise TableError(f"damaged .xlsx workbook: {type(exc).__name__}: {exc}") from exc
    finally:
        book.close()
    return tables


# ---------------------------------------------------------------------------- CSV


def decode_text(raw: bytes) -> tuple[str, str | None]:
    """Text of a CSV file and a note when it was not UTF-8.

    UTF-8 (with or without the byte-order mark Excel writes) is read as such; anything
    else is read as Windows-1252, the code page RVTools and Excel use on most Western
    Windows machines, and said so, since a wrong guess shows up as odd characters in
    names rather than as an error.
    """
    if raw.startswith(b"\xff\xfe") or raw.startswith(b"\xfe\xff"):  # Excel "Unicode text"
        return raw.decode("utf-16", errors="replace"), None
    try:
        return raw.decode("utf-8-sig"), None
    except UnicodeDecodeError as exc:
        note = (f"not UTF-8 (byte {exc.start}): read as Windows-1252; save it as UTF-8 "
                "if names look wrong")
        try:
            return raw.decode("cp1252"), note
        except UnicodeDecodeError:
            return raw.decode("latin-1"), note.replace("Windows-1252", "Latin-1")


def _delimiter(first_line: str) -> str:
    """Comma, semicolon (Excel in many European locales) or tab: the most frequent one."""
    counts = {d: first_line.count(d) for d in (",", ";", "\t")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def read_csv(path: Path, looks_like_header: Any = None) -> Table:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise TableError(f"cannot read file: {exc.strerror or exc}") from exc
    if b"\x00" in raw[:4096] and not raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise TableError("not a text file (binary content): expected a CSV export")
    try:
        text, note = decode_text(raw)
    except UnicodeDecodeError as exc:
        raise TableError(f"cannot decode text: {exc.reason}") from exc
    first = text.lstrip("\ufeff").split("\n", 1)[0]
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff"), newline=""),
                        delimiter=_delimiter(first))

    def numbered() -> Iterator[tuple[int, list[Any]]]:
        start = 1
        try:
            for values in reader:
                yield start, values
                start = reader.line_num + 1
        except csv.Error as exc:
            raise TableError(f"line {reader.line_num}: not valid CSV: {exc}") from exc

    table = _table(path.name, numbered(), looks_like_header)
    table.from_csv = True
    if note:
        table.notes.append(note)
    return table


def header_of_csv(path: Path) -> set[str]:
    """The normalised column names of a CSV file's first non-empty line (cheap sniff)."""
    try:
        with path.open("rb") as handle:
            head = handle.read(65536)
    except OSError:
        return set()
    text, _ = decode_text(head)
    for line in text.lstrip("\ufeff").splitlines():
        if line.strip():
            try:
                names = next(csv.reader([line], delimiter=_delimiter(line)))
            except csv.Error:
                return set()
            return {norm(n) for n in names}
    return set()
