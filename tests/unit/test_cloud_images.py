"""Reading the OS → image table (``cloud/os_images.json``): which rows a server's
discovered OS asks for, per cloud, before any catalogue is consulted."""

from __future__ import annotations

import pytest

from migrationbox.cloud.base import NoFittingImage
from migrationbox.cloud.images import family_of, rules_for, table


@pytest.mark.parametrize(("name", "version", "family", "row", "match"), [
    ("Ubuntu", "22.04.4 LTS", "ubuntu", "22.04", "same-release-line"),
    ("ubuntu", "20.04", "ubuntu", "20.04", "exact"),
    ("Debian GNU/Linux", "12.5", "debian", "12", "same-release-line"),
    ("Red Hat Enterprise Linux Server", "7.9", "rhel", "7", "same-release-line"),
    ("Windows", "10.0.17763", "windows-server", "2019", "exact"),
    ("Microsoft Windows Server 2012 R2 Standard", "6.3.9600", "windows-server", "2012 R2",
     "exact"),
    ("Windows", "6.3.9600", "windows-server", "2012 R2", "exact"),
    ("SUSE Linux Enterprise Server", "15 SP5", "sles", "15", "exact"),
    ("Amazon Linux", "2023", "amazon-linux", "2023", "exact"),
])
def test_discovered_os_picks_its_row(name, version, family, row, match):
    [rule] = rules_for("aws", name, version)
    assert (rule.family, rule.version, rule.match) == (family, row, match)


def test_unknown_version_tries_the_family_newest_first():
    rules = rules_for("aws", "Ubuntu", None)
    assert [r.version for r in rules][:2] == ["24.04", "22.04"]
    assert {r.match for r in rules} == {"family-default"}


def test_each_cloud_reads_its_own_entries():
    [aws] = rules_for("aws", "Ubuntu", "22.04")
    [azure] = rules_for("azure", "Ubuntu", "22.04")
    [gcp] = rules_for("gcp", "Ubuntu", "22.04")
    assert aws.entry["owners"] == ["099720109477"]
    assert azure.entry["publisher"] == "Canonical"
    assert gcp.entry == {"project": "ubuntu-os-cloud", "family": "ubuntu-2204-lts"}
    with pytest.raises(NoFittingImage, match="ubuntu 14.04 is not in the image table "
                                             r"\(versions with gcp images: 24.04"):
        rules_for("gcp", "Ubuntu", "14.04")


@pytest.mark.parametrize(("name", "version", "arch", "says"), [
    ("AIX", "7.2", "ppc64", "POWER"),
    ("SunOS", "5.11", "sparc", "Solaris"),
    ("HP-UX", "11i v3", "ia64", "Itanium"),
    ("Plan 9", "4", "x86_64", "not in the image table"),
    ("Windows Server 2022", None, "arm64", "images exist for x86_64 only"),
    ("Windows Server 2003", None, "x86_64", "windows-server 2003 is not in the image table"),
])
def test_what_no_image_can_fit_is_refused_with_the_reason(name, version, arch, says):
    with pytest.raises(NoFittingImage, match=says) as err:
        rules_for("aws", name, version, arch, server="srv-9")
    assert str(err.value).startswith("server srv-9: ")


def test_the_longest_alias_wins_and_every_row_is_well_formed():
    assert family_of("Red Hat Enterprise Linux")["family"] == "rhel"
    assert family_of("SUSE Linux Enterprise Server")["family"] == "sles"
    for fam in table()["families"]:
        for row in fam["versions"]:
            aws = row.get("aws")
            if aws:
                assert aws["owners"], (fam["family"], row["version"])
                # Windows names carry no architecture: the table lists x86_64 only
                assert "{arch}" in aws["name"] or list(fam["arch"]) == ["x86_64"]
