"""The shipped instance and storage catalogs: provenance, filters, cheapest fit."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

from migrationbox.sizing import catalog as cat
from migrationbox.sizing.catalog import (
    CatalogError,
    NoInstanceFits,
    block_storage_price,
    cheapest_fitting,
    load_catalog,
)

DATA = Path(cat.__file__).parent / "data"


def test_data_files_match_the_checksums_in_their_provenance():
    provenance = (DATA / "PROVENANCE.md").read_text()
    for name in (cat.AWS_EC2_FILE, cat.BLOCK_STORAGE_FILE):
        row = next(line for line in provenance.splitlines() if line.startswith(f"| `{name}`"))
        recorded = re.findall(r"`([0-9a-f]{64})`", row)
        assert recorded == [hashlib.sha256((DATA / name).read_bytes()).hexdigest()], name
        assert "Apache-2.0" in row or "MIT" in row


def test_catalog_loads_typed_rows_with_dated_price_source():
    catalog = load_catalog()
    assert load_catalog() is catalog  # cached
    assert len(catalog.types) == 1395
    assert sum(t.hourly_usd is not None for t in catalog.types) == 1340
    m5 = catalog.get("m5.large")
    assert (m5.vcpu, m5.memory_gib, m5.arch, m5.burstable) == (2, 8.0, "x86_64", False)
    assert m5.hourly_usd == pytest.approx(0.096)
    assert catalog.price_source == ("AWS us-east-1 on-demand Linux, "
                                    "aws/karpenter-provider-aws pricing generated 2026-07-20")
    with pytest.raises(KeyError, match=r"no instance type 'm0\.huge'"):
        catalog.get("m0.huge")


def test_default_candidates_are_priced_current_x86_without_accelerators_or_bursting():
    pool = load_catalog().candidates()
    assert pool
    for t in pool:
        assert t.hourly_usd is not None and t.current_generation
        assert t.arch == "x86_64" and not t.burstable and t.gpus == 0
        assert not re.match(r"^(inf|trn|f\d|vt|g\d|p\d)", t.family), t.name
    prices = [t.hourly_usd for t in pool]
    assert prices == sorted(prices)


@pytest.mark.parametrize(("vcpu", "mem"), [(1, 1), (1.2, 3.9), (2, 8), (3.1, 7), (8, 64),
                                           (16, 16), (47.5, 190), (96, 768), (0, 0)])
def test_cheapest_fitting_is_the_true_minimum(vcpu, mem):
    catalog = load_catalog()
    chosen = cheapest_fitting(vcpu, mem)
    fits = [t for t in catalog.candidates() if t.vcpu >= vcpu and t.memory_gib >= mem]
    assert chosen.vcpu >= vcpu and chosen.memory_gib >= mem
    assert chosen.hourly_usd == min(t.hourly_usd for t in fits)
    assert cheapest_fitting(vcpu, mem) is chosen  # cached answer, same object


def test_burstable_and_arm_only_when_asked():
    assert cheapest_fitting(2, 2, allow_burstable=True).burstable
    assert not cheapest_fitting(2, 2).burstable
    arm = cheapest_fitting(4, 16, arch="arm64")
    assert arm.arch == "arm64"


def test_nothing_fits_names_the_requirement():
    with pytest.raises(NoInstanceFits, match=r"fits 5000 vCPU and 64 GiB memory among x86_64 "
                                             r"AWS us-east-1 types .*largest: "):
        cheapest_fitting(5000, 64)
    with pytest.raises(NoInstanceFits, match="100000 GiB"):
        cheapest_fitting(2, 100000)
    with pytest.raises(ValueError, match="finite and >= 0"):
        cheapest_fitting(-1, 2)


def test_other_regions_are_a_clear_error_not_a_silent_fallback():
    with pytest.raises(CatalogError, match=r"region='eu-west-1'.*shipped: aws/us-east-1"):
        load_catalog("aws", "eu-west-1")


def test_gp3_price():
    gp3 = block_storage_price()
    assert gp3.usd_per_gb_month == pytest.approx(0.08)
    assert "2026-09-06" in gp3.source
    with pytest.raises(CatalogError, match="no block storage price for aws/us-east-1/io9"):
        block_storage_price("io9")


def test_a_refreshed_file_carries_its_own_date(tmp_path):
    rows = (DATA / cat.AWS_EC2_FILE).read_text().splitlines()
    header = rows[0].replace("ondemand_usd_hr_karpenter_2026-07-20",
                             "ondemand_usd_hr_karpenter_2027-01-31")
    path = tmp_path / "ec2.csv"
    path.write_text("\n".join([header, *rows[1:]]) + "\n")
    refreshed = cat.load_aws_instance_catalog(path)
    assert refreshed.price_source.endswith("generated 2027-01-31")


def test_a_broken_catalog_row_is_named(tmp_path):
    rows = (DATA / cat.AWS_EC2_FILE).read_text().splitlines()
    path = tmp_path / "ec2.csv"
    path.write_text("\n".join([rows[0], rows[1].replace(",False,", ",maybe,", 1)]) + "\n")
    with pytest.raises(CatalogError, match=r"ec2.csv line 2: column 'burstable'"):
        cat.load_aws_instance_catalog(path)
