"""Who the approval gates name as respondents, per profile.

Airflow compares a HITL task's ``assigned_users`` ids with the answering user's id. Under
the SimpleAuthManager the id is the user name, so the embedded default names ``admin``;
under FAB ids are numbers, so the production profile names nobody (``*``) and leaves the
decision to the auth manager's per-estate roles.
"""

from __future__ import annotations

import pytest

from migrationbox import settings
from migrationbox.orchestration.graph import BuildSettings
from migrationbox.platform.production import ProductionConfig


def test_the_embedded_default_names_the_admin_user() -> None:
    assert BuildSettings().assigned_users() == [{"id": "admin", "name": "admin"}]


def test_a_site_list_is_passed_through_as_ids() -> None:
    built = BuildSettings(approvers=("alice", "bob"))
    assert [u["id"] for u in built.assigned_users()] == ["alice", "bob"]


def test_star_names_no_respondent() -> None:
    assert BuildSettings(approvers=(settings.ANY_APPROVER,)).assigned_users() == []


def test_the_production_profile_leaves_respondents_to_the_auth_manager(
        monkeypatch: pytest.MonkeyPatch) -> None:
    overrides = ProductionConfig().airflow_overrides()
    assert overrides["AIRFLOW__MIGRATIONBOX__APPROVERS"] == "*"
    monkeypatch.delenv("MIGRATIONBOX_APPROVERS", raising=False)
    monkeypatch.setenv("AIRFLOW__MIGRATIONBOX__APPROVERS", "*")
    assert BuildSettings.from_settings().assigned_users() == []
    # a site's explicit list still wins over the profile's default
    monkeypatch.setenv("MIGRATIONBOX_APPROVERS", "carol")
    assert BuildSettings.from_settings().assigned_users() == [{"id": "carol", "name": "carol"}]
