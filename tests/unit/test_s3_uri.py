"""The one ``s3://bucket/prefix`` parser and its three users agree on what is valid."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from migrationbox import mlflow_backend
from migrationbox.cloud.s3_uri import S3Root, S3RootError, parse_s3_root
from migrationbox.orchestration.plans_bundle import PlansRootError, parse_plans_root
from migrationbox.shared_files import SharedRoot, SharedRootError


@pytest.mark.parametrize(("text", "expected"), [
    ("s3://migrationbox-plans/plans", S3Root("migrationbox-plans", "plans")),
    ("  s3://bucket.example/a/b/ ", S3Root("bucket.example", "a/b")),
    ("s3://abc", S3Root("abc", "")),
])
def test_valid_roots(text: str, expected: S3Root):
    assert parse_s3_root(text, what="x") == expected


@pytest.mark.parametrize(("text", "words"), [
    ("file:///tmp/x", "must be s3://"),
    ("bucket/prefix", "must be s3://"),
    ("s3://Bad_Bucket/x", "not a valid S3 bucket name"),
    ("s3://ab/x", "not a valid S3 bucket name"),
    ("s3://a..b/x", "not a valid S3 bucket name"),
    ("s3://bucket/x?y=1", "no query or fragment"),
    ("s3://bucket/a//b", "empty, . or .. part"),
    ("s3://bucket/a/../b", "empty, . or .. part"),
])
def test_invalid_roots_name_the_setting(text: str, words: str):
    with pytest.raises(S3RootError, match="my_setting") as err:
        parse_s3_root(text, what="my_setting")
    assert words in str(err.value)


def _accepts(parse, error: type[Exception], text: str) -> bool:
    try:
        parse(text)
    except error:
        return False
    return True


@given(st.text(alphabet="abz09.-_A/", min_size=0, max_size=70))
def test_the_three_users_agree_on_buckets(bucket: str):
    """A bucket one setting accepts, the others accept too (before the shared parser the
    three regular expressions had drifted apart)."""
    text = f"s3://{bucket}/prefix"
    verdicts = {
        _accepts(lambda t: parse_s3_root(t, what="x"), S3RootError, text),
        _accepts(parse_plans_root, PlansRootError, text),
        _accepts(SharedRoot.parse, SharedRootError, text),
        _accepts(mlflow_backend.split_s3, mlflow_backend.MlflowBackendError, text),
    }
    assert len(verdicts) == 1
