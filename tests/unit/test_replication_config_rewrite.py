"""The configure phase's rewrite: host names to target names, secrets to references."""

from __future__ import annotations

from migrationbox.phases.configure import REF_PREFIX, host_pattern, rewrite_text, secret_name

MAPPING = {
    "db-prod-01.company.local": "db-prod-01.shop.migrationbox.internal",
    "db-prod-01": "db-prod-01.shop.migrationbox.internal",
    "api-01.company.local": "api-01.shop.migrationbox.internal",
    "api-01": "api-01.shop.migrationbox.internal",
}
SOURCE = """\
DATABASE_URL=postgresql://app:s3cr3t-pw@db-prod-01.company.local:5432/app
UPSTREAM_URL=http://api-01:8080/
SESSION_SECRET=abc123
export API_TOKEN="tok-999"
BACKUP_HOST=db-prod-01.company.local.backup.example
NOT_A_HOST=xdb-prod-01
primary_conninfo = 'host=db-prod-01.company.local port=5432 user=replicator password=repl-pw'
admin:
  password: yaml-pw
"""


def _rewrite(text: str):
    return rewrite_text(text, host_pattern(MAPPING), MAPPING,
                        lambda key: secret_name("shop", "web-01", "etc/app/app.env", key))


def test_hosts_become_target_names_and_secrets_references():
    out = _rewrite(SOURCE)
    text = out.text
    assert "postgresql://app:" + REF_PREFIX in text
    assert "@db-prod-01.shop.migrationbox.internal:5432/app" in text
    assert "http://api-01.shop.migrationbox.internal:8080/" in text
    assert "host=db-prod-01.shop.migrationbox.internal port=5432" in text
    # neither a longer name that merely starts with a source name, nor a substring
    assert "BACKUP_HOST=db-prod-01.company.local.backup.example" in text
    assert "NOT_A_HOST=xdb-prod-01" in text
    for secret in ("s3cr3t-pw", "abc123", "tok-999", "repl-pw", "yaml-pw"):
        assert secret not in text
    values = dict((v, n) for n, v in out.secrets)
    assert set(values) == {"s3cr3t-pw", "abc123", "tok-999", "repl-pw", "yaml-pw"}
    assert values["s3cr3t-pw"] == (
        "migrationbox/shop/web-01/etc_app_app.env/app@db-prod-01.company.local")
    assert values["abc123"].endswith("/SESSION_SECRET")
    assert 'export API_TOKEN="' + REF_PREFIX in text
    assert out.hosts_replaced == 3


def test_rewrite_is_idempotent():
    once = _rewrite(SOURCE)
    twice = _rewrite(once.text)
    assert twice.text == once.text
    assert twice.secrets == [] and twice.hosts_replaced == 0


def test_server_ids_inside_references_are_not_rewritten():
    mapping = {"web-01": "web-01.shop.migrationbox.internal"}
    out = rewrite_text("PASSWORD=pw\nNAME=web-01\n", host_pattern(mapping), mapping,
                       lambda key: f"migrationbox/shop/web-01/{key}")
    assert "PASSWORD={{resolve:secretsmanager:migrationbox/shop/web-01/PASSWORD}}" in out.text
    assert "NAME=web-01.shop.migrationbox.internal" in out.text


def test_same_key_with_different_values_gets_distinct_secrets():
    text = "LDAP_BIND_PASSWORD=one\nLDAP_BIND_PASSWORD=two\n"
    out = rewrite_text(text, None, {}, lambda key: f"s/{key}")
    names = [n for n, _ in out.secrets]
    assert len(set(names)) == 2
    assert dict(out.secrets)[names[0]] == "one" and dict(out.secrets)[names[1]] == "two"
