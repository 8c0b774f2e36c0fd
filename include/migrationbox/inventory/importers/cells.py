"""Turn spreadsheet cells into record values, or into a problem that names the column.

An importer must never raise on a cell: whatever a user typed (``four``, ``8 GB``,
``10.0.0.300``) ends either as a value or as a ``SourceProblem`` naming the column,
which validation then reports against the record and its row, with the other records
of the file still loading.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import unicodedata
from dataclasses import dataclass, field
from ipaddress import ip_address
from typing import Any

from migrationbox.inventory.loaders import SourceProblem

_NUMBER = re.compile(r"^[+-]?(\d+|\d{1,3}(,\d{3})+|\d{1,3}( \d{3})+)?([.,]\d+)?$")
_TRUE = {"true", "yes", "y", "1", "x", "wahr", "vrai"}
_FALSE = {"false", "no", "n", "0", "falsch", "faux", ""}
SERVER_ID_OK = re.compile(r"[^A-Za-z0-9._:-]+")


def shown(value: Any) -> str:
    """A cell as quoted in a message, shortened."""
    shown_text = repr(value)
    return shown_text if len(shown_text) <= 60 else shown_text[:57] + "..."


def clipped(value: str, limit: int = 60) -> str:
    """Text from a cell as a message shows it unquoted, shortened (a 5,000-digit cell)."""
    return value if len(value) <= limit else value[:limit - 3] + "..."


def blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def text(value: Any) -> str | None:
    """A cell as stripped text, or None when empty."""
    if blank(value):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    return str(value).strip()


@dataclass(slots=True)
class Cells:
    """One record being built: values read from cells, and what could not be read.

    ``columns`` remembers which record field came from which source column, so that a
    schema error on ``hardware.cpu_cores`` is shown as the ``CPUs`` column.
    """

    problems: list[SourceProblem] = field(default_factory=list)
    columns: dict[str, str] = field(default_factory=dict)

    def problem(self, column: str, message: str, reason: str = "wrong_type") -> None:
        self.problems.append(SourceProblem(column, message, reason))

    def source(self, path: str, column: str | None) -> None:
        if column and path not in self.columns:
            self.columns[path] = column

    def number(self, value: Any, column: str, *, where: str = "",
               minimum: float | None = 0) -> float | None:
        """A number from a cell; None when empty; a problem (and None) otherwise."""
        label = f"{where}{column}"
        if blank(value):
            return None
        if isinstance(value, bool):
            self.problem(label, f"not a number: {shown(value)}")
            return None
        if isinstance(value, (int, float)):
            number = float(value)
        else:
            raw = str(value).strip()
            if not _NUMBER.match(raw) or not any(ch.isdigit() for ch in raw):
                self.problem(label, f"not a number: {shown(value)}")
                return None
            if re.search(r"\d[ ,]\d{3}(?!\d)", raw) and not re.search(r",\d{1,2}$", raw):
                raw = raw.replace(",", "").replace(" ", "")  # thousands separators
            number = float(raw.replace(",", "."))
        if math.isnan(number) or math.isinf(number):
            self.problem(label, f"not a number: {shown(value)}")
            return None
        if minimum is not None and number < minimum:
            self.problem(label, f"must be at least {minimum:g} (got {shown(value)})",
                         "invalid_value")
            return None
        return number

    def integer(self, value: Any, column: str, *, where: str = "") -> int | float | None:
        """A whole number; a fractional one is kept as given so the schema reports it."""
        number = self.number(value, column, where=where)
        if number is None:
            return None
        if not number.is_integer():
            self.problem(f"{where}{column}", f"not a whole number: {shown(value)}")
            return None
        return int(number)

    def flag(self, value: Any, column: str, *, where: str = "") -> bool | None:
        if isinstance(value, bool):
            return value
        if value is None:
            return None
        if isinstance(value, (int, float)) and value in (0, 1):
            return bool(value)
        word = str(value).strip().lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return None if not word else False
        self.problem(f"{where}{column}", f"not true/false: {shown(value)}")
        return None

    def addresses(self, value: Any, column: str, *, where: str = "") -> list[str]:
        """IP addresses from a cell holding one or several (comma, semicolon or space)."""
        found: list[str] = []
        cell = text(value)
        if cell is None:
            return found
        for part in re.split(r"[,;\s]+", cell):
            part = part.strip().strip('"')
            if not part:
                continue
            try:
                address = ip_address(part.split("%", 1)[0])
            except ValueError:
                self.problem(f"{where}{column}", f"not an IP address: {shown(part)}",
                             "invalid_value")
                continue
            if address.is_link_local or address.is_unspecified or address.is_loopback:
                continue  # fe80::/169.254 and the like say nothing about where it lives
            found.append(str(address))
        return found


def server_id_from(name: str) -> str:
    """A server_id (``[A-Za-z0-9][A-Za-z0-9._:-]*``) from a VM or host name.

    Accents are dropped rather than the letter (``Müller`` -> ``Muller``), other
    characters a server id cannot hold become ``-``.
    """
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    cleaned = SERVER_ID_OK.sub("-", ascii_name.strip()).strip("-._:")
    return cleaned[:128]


def mib_to_gb(mib: float | None) -> float | None:
    return None if mib is None else round(mib / 1024, 3)
