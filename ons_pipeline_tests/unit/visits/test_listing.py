"""Range-parallel listing: the same objects as one plain listing, whatever the ledger holds."""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from moto import mock_aws

from ons_pipeline.resources import ObjectStoreResource
from ons_pipeline.visits.storage import common_prefix, key_ranges, list_event_objects

if TYPE_CHECKING:
    from collections.abc import Iterator

PREFIX = "logs/"
EXAMPLES = settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
# Few letters, so keys share long prefixes and land on range bounds; "/" for nesting.
KEYS = st.text(alphabet="ab/-9é", min_size=1, max_size=8).map(lambda tail: PREFIX + tail)
BUCKETS = (f"listing-{n}" for n in itertools.count())


def in_range(key: str, after: str | None, through: str | None) -> bool:
    return (after is None or key > after) and (through is None or key <= through)


@EXAMPLES
@given(
    known=st.lists(KEYS, max_size=40),
    probes=st.lists(st.text(alphabet="ab/-9é", max_size=9), max_size=30),
    per_range=st.integers(1, 6),
)
def test_every_key_under_the_prefix_falls_in_exactly_one_range(
    known: list[str], probes: list[str], per_range: int
) -> None:
    ranges = key_ranges(PREFIX, known, per_range)
    for key in [*known, *probes, *(PREFIX + p for p in probes)]:
        holders = [r for r in ranges if in_range(key, r.after, r.through)]
        if key.startswith(PREFIX):
            assert len(holders) == 1, key
            assert key.startswith(holders[0].prefix)  # the narrowed prefix never hides it


def test_ranges_cut_at_every_nth_known_key_with_narrow_prefixes() -> None:
    known = [f"{PREFIX}log-{action}-{n}" for action in ("pass", "submit") for n in range(3)]
    ranges = key_ranges(PREFIX, [*known, "elsewhere/x"], per_range=2)
    assert [(r.after, r.through) for r in ranges] == [
        (None, f"{PREFIX}log-pass-1"),
        (f"{PREFIX}log-pass-1", f"{PREFIX}log-submit-0"),
        (f"{PREFIX}log-submit-0", f"{PREFIX}log-submit-2"),
        (f"{PREFIX}log-submit-2", None),
    ]
    assert [r.prefix for r in ranges] == [PREFIX, f"{PREFIX}log-", f"{PREFIX}log-submit-", PREFIX]


def test_common_prefix_is_by_character() -> None:
    assert common_prefix("logs/a-1", "logs/a-2") == "logs/a-"
    assert common_prefix("logs/ab", "logs/ab") == "logs/ab"
    assert common_prefix("logs/a", "logs/ab") == "logs/a"
    assert common_prefix("x", "y") == ""


@pytest.fixture(scope="module")
def store() -> Iterator[ObjectStoreResource]:
    with mock_aws():
        yield ObjectStoreResource(
            region_name="us-east-1", aws_access_key_id="t", aws_secret_access_key="t"
        )


@pytest.fixture(scope="module")
def s3(store: ObjectStoreResource) -> Any:
    return store.get_client()


def plain_listing(s3: Any, bucket: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=PREFIX):
        found.update({o["Key"]: o["ETag"] for o in page.get("Contents", [])})
    return {key: etag for key, etag in found.items() if not key.endswith("/")}


@EXAMPLES
@given(
    stored=st.lists(KEYS, max_size=30, unique=True),
    ledger_extra=st.lists(KEYS, max_size=10),
    per_range=st.integers(1, 5),
    data=st.data(),
)
def test_range_listing_equals_a_plain_listing(
    store: ObjectStoreResource,
    s3: Any,
    stored: list[str],
    ledger_extra: list[str],
    per_range: int,
    data: st.DataObject,
) -> None:
    """The ledger may hold any subset of what is stored, plus keys deleted since."""
    bucket = next(BUCKETS)
    s3.create_bucket(Bucket=bucket)
    for key in [*stored, f"{PREFIX}zz-outside-range-but-inside-prefix", "other/key"]:
        s3.put_object(Bucket=bucket, Key=key, Body=key.encode())
    seen_before = data.draw(
        st.lists(st.sampled_from(stored), unique=True) if stored else st.just([])
    )

    listed = list_event_objects(
        store, bucket, PREFIX, [*seen_before, *ledger_extra], per_range=per_range, workers=4
    )

    assert listed == plain_listing(s3, bucket)


def test_each_range_pages_past_a_thousand_keys(store: ObjectStoreResource, s3: Any) -> None:
    """A range that grew past one page (a burst of new files) is followed to its end."""
    bucket = next(BUCKETS)
    s3.create_bucket(Bucket=bucket)
    keys = [f"{PREFIX}log-{n:05d}" for n in range(2_500)]
    for key in keys:
        s3.put_object(Bucket=bucket, Key=key, Body=b"{}")

    listed = list_event_objects(store, bucket, PREFIX, [keys[0], keys[2_400]], per_range=1)

    assert sorted(listed) == keys
