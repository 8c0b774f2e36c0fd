"""Per-cloud catalogs: real specs and prices, dated; cheapest fit; regions; storage."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

from migrationbox.sizing.clouds import (
    CLOUDS,
    DEFAULT_REGIONS,
    NothingFits,
    RegionNotPriced,
    load_catalog,
    regions,
    storage_quote,
)
from migrationbox.sizing.clouds._files import data_path


@pytest.mark.parametrize("cloud", CLOUDS)
def test_default_catalog_has_priced_candidates_and_a_dated_source(cloud: str) -> None:
    cat = load_catalog(cloud)
    assert cat.region == DEFAULT_REGIONS[cloud]
    assert len(cat.candidates()) > 100
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", cat.price_source.as_of)
    assert cat.price_source.as_of in str(cat.price_source)
    assert all(t.hourly_usd > 0 and t.monthly_usd > 0 for t in cat.types)


@pytest.mark.parametrize("cloud", CLOUDS)
@pytest.mark.parametrize("need", [(0.3, 0.5), (2, 4), (3.2, 13), (16, 64), (48, 380)])
def test_cheapest_fitting_is_the_cheapest_candidate_that_fits(cloud: str, need: tuple) -> None:
    cat = load_catalog(cloud)
    vcpu, mem = need
    chosen = cat.cheapest_fitting(vcpu, mem)
    assert chosen.vcpu >= vcpu and chosen.memory_gib >= mem
    fitting = [t for t in cat.candidates() if t.vcpu >= vcpu and t.memory_gib >= mem]
    assert chosen.monthly_usd == min(t.monthly_usd for t in fitting)
    assert chosen.excluded is None and not chosen.burstable and chosen.gpus == 0


def test_excluded_types_carry_a_reason_and_never_win() -> None:
    aws = load_catalog("aws")
    reasons = {t.excluded for t in aws.types if t.excluded}
    assert {"burstable (CPU credits)", "accelerator", "previous generation"} <= reasons
    t3 = aws.get("t3.medium")
    assert t3.burstable and t3.excluded
    assert aws.cheapest_fitting(2, 4).name != "t3.medium"
    gcp = load_catalog("gcp")
    assert gcp.get("e2-medium").excluded == "shared-core (bursting)"
    azure = load_catalog("azure")
    assert azure.get("Standard_B2s").excluded == "burstable (CPU credits)"


def test_arm_types_are_offered_only_to_arm_servers() -> None:
    for cloud in CLOUDS:
        cat = load_catalog(cloud)
        assert all(t.arch == "x86_64" for t in cat.candidates("x86_64"))
        arm = cat.cheapest_fitting(2, 8, arch="arm64")
        assert arm.arch == "arm64"
    assert load_catalog("azure").get("Standard_D2ps_v5").arch == "arm64"
    assert load_catalog("aws").get("m7g.large").arch == "arm64"


def test_other_regions_use_their_own_prices_and_dates() -> None:
    east = load_catalog("aws", "us-east-1")
    ireland = load_catalog("aws", "eu-west-1")
    assert ireland.price_source.as_of == "2025-03-02"  # the older libcloud table, said so
    assert east.price_source.as_of == "2026-07-20"
    assert ireland.get("m5.large").hourly_usd != east.get("m5.large").hourly_usd
    assert "westeurope" in regions("azure") and "europe-west1" in regions("gcp")
    we = load_catalog("azure", "westeurope").get("Standard_D2s_v5")
    assert we.hourly_usd != load_catalog("azure", "eastus").get("Standard_D2s_v5").hourly_usd


def test_region_without_prices_is_a_clear_error() -> None:
    with pytest.raises(RegionNotPriced, match=r"'mars-north-1'.*refresh"):
        load_catalog("aws", "mars-north-1")
    with pytest.raises(RegionNotPriced, match="GCP has no prices for region 'atlantis1'"):
        load_catalog("gcp", "atlantis1")


def test_nothing_fits_names_the_requirement_and_the_largest_type() -> None:
    with pytest.raises(NothingFits, match=r"5e\+03 vCPU.*largest sold: u7in"):
        load_catalog("aws").cheapest_fitting(5000, 64)


def test_gcp_commitments_come_from_the_data_aws_azure_have_none() -> None:
    n2 = load_catalog("gcp").get("n2-standard-8")
    assert n2.commit_1y_monthly_usd is not None and n2.commit_3y_monthly_usd is not None
    assert n2.commit_3y_monthly_usd < n2.commit_1y_monthly_usd < n2.monthly_usd
    assert load_catalog("aws").get("m5.large").commit_1y_monthly_usd is None
    assert load_catalog("azure").get("Standard_D2s_v5").commit_3y_monthly_usd is None


def test_block_storage_per_cloud_class_and_region() -> None:
    assert storage_quote("aws", "us-east-1", "SSD", 100).sku == "gp3"
    assert storage_quote("aws", "us-east-1", "HDD", 500).sku == "st1"
    assert storage_quote("aws", "us-east-1", "HDD", 60).sku == "gp3"  # st1 starts at 125 GiB
    far = storage_quote("azure", "japaneast", "SSD", 100)
    assert far.assumption and "eastus" in far.assumption
    be = storage_quote("gcp", "europe-west1", "SSD", 100)
    assert be.sku == "pd-balanced" and be.assumption is None and "2026-07-30" in be.source
    assert storage_quote("gcp", "us-central1", "HDD", 100).sku == "pd-standard"


def test_copied_data_files_match_their_recorded_sha256() -> None:
    provenance = data_path("PROVENANCE.md").read_text(encoding="utf-8")
    recorded = dict(re.findall(r"`([\w./-]+\.csv)`[^\n]*`([0-9a-f]{64})`", provenance))
    assert len(recorded) == 7
    for name, digest in recorded.items():
        path = Path(data_path(name))
        assert hashlib.sha256(path.read_bytes()).hexdigest() == digest, name
