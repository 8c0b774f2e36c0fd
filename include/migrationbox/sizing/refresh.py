"""Refresh prices from the clouds' own public price formats.

- **AWS Price List bulk JSON** (``offers/v1.0/aws/AmazonEC2/current/<region>/index.json``):
  ``products`` keyed by SKU with ``attributes`` (instanceType, vcpu, memory "8 GiB",
  operatingSystem, tenancy, preInstalledSw, capacitystatus), ``terms.OnDemand`` and
  ``terms.Reserved`` keyed by SKU then offer term, with ``priceDimensions`` (unit
  "Hrs", ``pricePerUnit.USD``) and, for reservations, ``termAttributes``
  (LeaseContractLength, OfferingClass, PurchaseOption). We keep shared-tenancy Linux
  without pre-installed software, on demand and Standard No-Upfront 1yr/3yr RIs, so a
  refresh replaces the AWS commitment *assumption* with real prices.
- **Azure Retail Prices API** (``https://prices.azure.com/api/retail/prices``): pages
  of ``Items`` (armSkuName, armRegionName, retailPrice, unitOfMeasure, type
  Consumption/Reservation, reservationTerm, productName, skuName, effectiveStartDate)
  linked by ``NextPageLink``. Linux = product names without "Windows"; Spot and Low
  Priority meters are skipped; a reservation's price is for the whole term.
- **GCP Cloud Billing Catalog** (``cloudbilling.googleapis.com/v1/services/
  6F81-5844-456A/skus``): ``skus`` with ``description``, ``category`` (resourceFamily,
  usageType OnDemand/Commit1Yr/Commit3Yr), ``serviceRegions`` and ``pricingInfo``
  (tieredRates with unitPrice {units, nanos}, usageUnit "h" per vCPU or "GiBy.h" per
  GiB). Compute Engine prices vCPU and memory per series, so a machine type's price is
  vCPUs x core rate + GiB x RAM rate, for the machine types of the shipped spec table.

Each parser returns normalised rows; ``refresh`` writes them for one region with a
sidecar naming the source and date (``clouds._files``), and catalogs prefer them.

A source that is not in its documented shape (a page or item that is not an object, a
field of the wrong type, a price that is not a finite number, JSON nested past the
parser's limit) raises ``RefreshError`` naming the source, page and item; nothing is
written. A refresh is all or nothing, like a price file: a catalog from the items that
parsed would silently change which machine is cheapest.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from migrationbox.errors import InputError
from migrationbox.sizing.clouds._files import RefreshedRow, write_refreshed
from migrationbox.sizing.clouds.base import PriceSource

HOURS_PER_YEAR = 8760
AZURE_MAX_PAGES = 200
GCP_COMPUTE_SERVICE = "6F81-5844-456A"


class RefreshError(InputError):
    """The price source could not be read or parsed; the message says where."""


#: What reading a field of the wrong shape raises (``None.get``, ``"x" > 1``, ``float("x")``,
#: ``{}["k"]``, ``[][0]``, a list as a dict key).
_SHAPE_ERRORS = (AttributeError, TypeError, ValueError, KeyError, IndexError)


def _printable(text: object) -> str:
    """``text`` safe to print (a JSON key may hold a lone surrogate escape)."""
    return str(text).encode("utf-8", "backslashreplace").decode("utf-8")


def _page_items(pages: Iterable[Any], key: str, what: str) -> Iterator[tuple[str, Any]]:
    """Each item of each page's ``key`` list, with where it is (``page 2, skus[5]``) for
    the messages; a page without that list is not ``what``."""
    for page_no, page in enumerate(pages, start=1):
        with _item(f"page {page_no}"):
            items = page.get(key)
            if not isinstance(items, list):
                raise RefreshError(f"page {page_no}: not {what}: '{key}' list expected")
        for item_no, item in enumerate(items):
            yield f"page {page_no}, {key}[{item_no}]", item


@contextmanager
def _item(where: str) -> Iterator[None]:
    """Turn a shape error while reading one page or item into a ``RefreshError`` naming it.

    The parsers read documented formats field by field; a value of another type
    surfaces as one of ``_SHAPE_ERRORS`` at the line that uses it, and the useful
    message is which item of the source is malformed, not which line of ours noticed.
    """
    try:
        yield
    except RefreshError:
        raise
    except _SHAPE_ERRORS as exc:
        raise RefreshError(f"{_printable(where)}: not in the documented shape "
                           f"({type(exc).__name__}: {_printable(exc)[:200]})") from None


def _today() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d")


def _date(text: str | None) -> str | None:
    if not text:
        return None
    match = re.match(r"(\d{4}-\d{2}-\d{2})", text)
    return match.group(1) if match else None


def _memory_gib(text: str) -> float | None:
    match = re.match(r"\s*([\d,.]+)\s*GiB", text or "")
    return float(match.group(1).replace(",", "")) if match else None


# --------------------------------------------------------------------------- AWS


def parse_aws_bulk(doc: dict[str, Any], region: str) -> tuple[list[RefreshedRow], str | None]:
    """On-demand and Standard No-Upfront RI hourly prices per instance type."""
    products = doc.get("products")
    terms = doc.get("terms")
    if not isinstance(products, dict) or not isinstance(terms, dict):
        raise RefreshError("not an AWS Price List bulk offer file: 'products' and 'terms' "
                           "objects expected")
    wanted: dict[str, dict[str, str]] = {}
    for sku, product in products.items():
        with _item(f"products.{sku}"):
            attrs = product.get("attributes", {})
            if product.get("productFamily") != "Compute Instance":
                continue
            if attrs.get("regionCode", region) != region:
                continue
            if (attrs.get("operatingSystem") != "Linux" or attrs.get("tenancy") != "Shared"
                    or attrs.get("preInstalledSw", "NA") != "NA"
                    or attrs.get("capacitystatus", "Used") != "Used"):
                continue
            wanted[sku] = attrs

    def hourly(term: dict[str, Any]) -> float | None:
        for dim in term.get("priceDimensions", {}).values():
            if dim.get("unit") == "Hrs":
                try:
                    return float(dim["pricePerUnit"]["USD"])
                except (KeyError, ValueError):
                    return None
        return None

    rows: list[RefreshedRow] = []
    for sku, attrs in wanted.items():
        with _item(f"products.{sku} and its terms"):
            on_demand = None
            for term in terms.get("OnDemand", {}).get(sku, {}).values():
                on_demand = hourly(term)
            if on_demand is None or on_demand <= 0:
                continue
            reserved: dict[str, float] = {}
            for term in terms.get("Reserved", {}).get(sku, {}).values():
                ta = term.get("termAttributes", {})
                if (ta.get("OfferingClass") == "standard"
                        and ta.get("PurchaseOption") == "No Upfront"):
                    price = hourly(term)
                    if price is not None:
                        reserved[ta.get("LeaseContractLength", "")] = price
            processor = attrs.get("physicalProcessor", "")
            vcpu = _whole_vcpu(attrs.get("vcpu"))
            rows.append(RefreshedRow(
                name=attrs.get("instanceType", ""), vcpu=vcpu,
                memory_gib=_memory_gib(attrs.get("memory", "")),
                arch="arm64" if "graviton" in processor.lower() else None,
                ondemand_usd_hr=on_demand, commit_1y_usd_hr=reserved.get("1yr"),
                commit_3y_usd_hr=reserved.get("3yr")))
    with _item("publicationDate"):
        return [r for r in rows if r.name], _date(doc.get("publicationDate"))


def _whole_vcpu(value: Any) -> int | None:
    """The offer's ``vcpu`` attribute (a string such as ``"2"``) as a count >= 1, else
    None (unknown): ``int(False)`` is 0 and ``int(2.5)`` is 2, neither a vCPU count the
    price file may record."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return None
    try:
        count = int(value)
    except ValueError:
        return None
    return count if count >= 1 else None


# --------------------------------------------------------------------------- Azure


def parse_azure_retail(pages: Iterable[dict[str, Any]], region: str
                       ) -> tuple[list[RefreshedRow], str | None]:
    """Linux pay-as-you-go and 1/3-year reservation prices per VM size."""
    on_demand: dict[str, tuple[str, float]] = {}
    reserved: dict[tuple[str, int], tuple[str, float]] = {}
    latest: str | None = None
    for where, item in _page_items(pages, "Items", "an Azure Retail Prices page"):
        with _item(where):
            if (item.get("serviceName") != "Virtual Machines"
                    or item.get("armRegionName") != region
                    or item.get("currencyCode", "USD") != "USD"):
                continue
            name = item.get("armSkuName") or ""
            product = item.get("productName") or ""
            sku_name = item.get("skuName") or ""
            if (not name or "Windows" in product or "Spot" in sku_name
                    or "Low Priority" in sku_name):
                continue
            start = item.get("effectiveStartDate") or ""
            price = float(item.get("retailPrice", 0) or 0)
            if price <= 0:
                continue
            kind = item.get("type")
            if kind == "Consumption" and "Hour" in (item.get("unitOfMeasure") or ""):
                if name not in on_demand or start > on_demand[name][0]:
                    on_demand[name] = (start, price)
            elif kind == "Reservation":
                match = re.match(r"(\d+)\s+Years?", item.get("reservationTerm") or "")
                if not match:
                    continue
                years = int(match.group(1))
                hourly = price / (HOURS_PER_YEAR * years)  # the price is for the whole term
                key = (name, years)
                if key not in reserved or start > reserved[key][0]:
                    reserved[key] = (start, hourly)
            else:
                continue
            d = _date(start)
            if d and (latest is None or d > latest):
                latest = d
    rows = [RefreshedRow(name=name, vcpu=None, memory_gib=None, arch=None, ondemand_usd_hr=p,
                         commit_1y_usd_hr=reserved.get((name, 1), (None, None))[1],
                         commit_3y_usd_hr=reserved.get((name, 3), (None, None))[1])
            for name, (_, p) in on_demand.items()]
    return rows, latest


# --------------------------------------------------------------------------- GCP

_GCP_ONDEMAND = re.compile(
    r"^(?P<series>[A-Z][A-Z0-9]*)\b(?:(?!Custom|Sole Tenancy|Extended).)*?"
    r"Instance (?P<kind>Core|Ram) running in", re.IGNORECASE)
_GCP_COMMIT = re.compile(
    r"^Commitment v1: (?P<series>[A-Z][A-Z0-9]*)\b(?:(?!Custom|Sole Tenancy).)*?"
    r"(?P<kind>Cpu|Ram) in .* for (?P<years>\d+) Years?", re.IGNORECASE)


def _unit_price(sku: dict[str, Any]) -> tuple[float, str] | None:
    info = (sku.get("pricingInfo") or [None])[0]
    if not info:
        return None
    expr = info.get("pricingExpression", {})
    rates = expr.get("tieredRates") or []
    if not rates:
        return None
    rate = max(rates, key=lambda r: float(r.get("startUsageAmount", 0)))
    up = rate.get("unitPrice", {})
    if up.get("currencyCode", "USD") != "USD":
        return None
    return float(up.get("units") or 0) + float(up.get("nanos") or 0) / 1e9, expr.get(
        "usageUnit", "")


def parse_gcp_skus(pages: Iterable[dict[str, Any]], region: str,
                   machine_specs: dict[str, tuple[str, float, float]]
                   ) -> tuple[list[RefreshedRow], str | None]:
    """Machine prices = vCPU x core rate + GiB x RAM rate, per series, for one region.

    ``machine_specs``: machine type -> (series, vCPUs, memory GiB).
    """
    rates: dict[tuple[str, str, str], float] = {}  # (series, kind, usage) -> per hour
    latest: str | None = None
    for where, sku in _page_items(pages, "skus", "a Cloud Billing Catalog page"):
        with _item(where):
            cat = sku.get("category", {})
            if cat.get("resourceFamily") != "Compute" or region not in (
                    sku.get("serviceRegions") or []):
                continue
            desc = sku.get("description", "")
            usage = cat.get("usageType", "")
            if usage == "OnDemand":
                m = _GCP_ONDEMAND.match(desc)
                key_usage = "od"
            elif usage in ("Commit1Yr", "Commit3Yr"):
                m = _GCP_COMMIT.match(desc)
                key_usage = "1y" if usage == "Commit1Yr" else "3y"
            else:
                continue
            if not m:
                continue
            price = _unit_price(sku)
            if price is None:
                continue
            kind = "core" if m.group("kind").lower() in ("core", "cpu") else "ram"
            rates[(m.group("series").lower(), kind, key_usage)] = price[0]
            d = _date(((sku.get("pricingInfo") or [{}])[0]).get("effectiveTime"))
            if d and (latest is None or d > latest):
                latest = d
    rows = []
    for name, (series, vcpu, mem) in sorted(machine_specs.items()):
        core, ram = rates.get((series, "core", "od")), rates.get((series, "ram", "od"))
        if core is None or ram is None:
            continue

        def total(usage: str, series: str = series, vcpu: float = vcpu, mem: float = mem
                  ) -> float | None:
            c, r = rates.get((series, "core", usage)), rates.get((series, "ram", usage))
            return None if c is None or r is None else vcpu * c + mem * r

        rows.append(RefreshedRow(name=name, vcpu=int(vcpu) if vcpu >= 1 else None,
                                 memory_gib=mem, arch=None, ondemand_usd_hr=vcpu * core + mem * ram,
                                 commit_1y_usd_hr=total("1y"), commit_3y_usd_hr=total("3y")))
    return rows, latest


def _gcp_specs() -> dict[str, tuple[str, float, float]]:
    from migrationbox.sizing.clouds import gcp

    return {name: (row.get("series") or name.split("-")[0], float(row["vcpu"]),
                   float(row["memory_gb"]))
            for name, row in gcp._specs().items()
            if row.get("series") != "custom" and row.get("vcpu") and row.get("memory_gb")}


# --------------------------------------------------------------------------- IO


def _fetch_json(url: str) -> dict[str, Any]:
    import httpx

    try:
        response = httpx.get(url, timeout=120, follow_redirects=True)
        response.raise_for_status()
        return response.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise RefreshError(f"{url}: {exc}") from exc
    except RecursionError:
        raise RefreshError(f"{url}: JSON nested too deeply for the parser") from None


def _read(source: str) -> Any:
    if source.startswith(("https://", "http://")):
        return _fetch_json(source)
    path = Path(source)
    try:
        return json.loads(path.read_text(encoding="utf-8-sig"))  # a BOM is harmless
    except OSError as exc:
        raise RefreshError(f"cannot read {source}: {exc}") from exc
    except ValueError as exc:  # not UTF-8, not JSON, an integer of thousands of digits
        raise RefreshError(f"{source} is not JSON: {exc}") from exc
    except RecursionError:
        raise RefreshError(f"{source} is not JSON: nested too deeply for the parser") from None


def _pages(doc: Any, source: str, next_key: str) -> list[dict[str, Any]]:
    """One page, a list of pages, or (for a URL) the page chain via ``next_key``."""
    if isinstance(doc, list):
        return doc
    pages = [doc]
    if source.startswith(("https://", "http://")) and isinstance(doc, dict):
        link = doc.get(next_key)
        while link and len(pages) < AZURE_MAX_PAGES:
            if not isinstance(link, str):
                raise RefreshError(f"page {len(pages)}: {next_key} is not a link or token")
            if next_key == "nextPageToken":
                sep = "&" if "?" in source else "?"
                link = f"{source}{sep}pageToken={link}"
            page = _fetch_json(link)
            pages.append(page)
            link = page.get(next_key) if isinstance(page, dict) else None
    return pages


def _check_rows(rows: list[RefreshedRow]) -> None:
    """Every price written is a positive finite number (NaN passes ``price <= 0``)."""
    for row in rows:
        if not isinstance(row.name, str):
            raise RefreshError(f"machine name {_printable(row.name)[:80]!r} is not a string")
        for label, value in (("on-demand", row.ondemand_usd_hr),
                             ("1-year commitment", row.commit_1y_usd_hr),
                             ("3-year commitment", row.commit_3y_usd_hr),
                             ("memory", row.memory_gib)):
            if value is not None and not (isinstance(value, int | float)
                                          and math.isfinite(value) and value > 0):
                raise RefreshError(f"{_printable(row.name)}: {label} figure {value!r} is not "
                                   "a positive finite number")


def refresh(cloud: str, region: str, source: str, as_of: str | None = None,
            directory: Path | None = None) -> tuple[Path, int, PriceSource]:
    """Parse ``source`` (file or URL) and write the region's refreshed prices."""
    if cloud not in ("aws", "azure", "gcp"):
        raise RefreshError(f"unknown cloud {cloud!r}")
    doc = _read(source)
    try:
        if cloud == "aws":
            if not isinstance(doc, dict):
                raise RefreshError("an AWS bulk offer file is one JSON object")
            rows, found = parse_aws_bulk(doc, region)
            text = "AWS Price List bulk API (AmazonEC2 offer file), Linux, on demand + " \
                   "Standard No-Upfront RIs"
        elif cloud == "azure":
            rows, found = parse_azure_retail(_pages(doc, source, "NextPageLink"), region)
            text = "Azure Retail Prices API, Linux pay-as-you-go + 1/3-year reservations"
        else:
            rows, found = parse_gcp_skus(_pages(doc, source, "nextPageToken"), region,
                                         _gcp_specs())
            text = ("GCP Cloud Billing Catalog API (Compute Engine SKUs), on demand without "
                    "sustained-use discount + 1/3-year commitments")
        _check_rows(rows)
    except RefreshError as exc:  # a parser names the page and item; say which source
        raise RefreshError(f"{source}: {exc}") from None
    if not rows:
        raise RefreshError(f"{source}: no {cloud} machine prices for region {region!r} found")
    date = as_of or found or _today()
    price_source = PriceSource(f"{text}; from {source}", date)
    path = write_refreshed(cloud, region, rows, price_source, directory)
    return path, len(rows), price_source
