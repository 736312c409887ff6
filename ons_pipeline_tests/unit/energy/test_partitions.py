"""Energy partition keys: short for canonical object keys, one-to-one in both directions."""

from __future__ import annotations

import pytest
from dagster import DagsterInstance
from dagster._core.definitions.partitions.utils.base import INVALID_PARTITION_SUBSTRINGS
from hypothesis import given
from hypothesis import strategies as st

from ons_pipeline.energy.partitions import (
    REFUSED_SUBSTRINGS,
    energy_objects_partitions,
    object_key_for,
    partition_key_for,
    partition_keys_known_for,
)
from ons_pipeline.local.demo.energy_data import generate_demo_files

CANONICAL = "dataset=generation/year=2026/month=11/generation_20261121.parquet"

# Object keys that stay whole: each is its own partition key.
NON_CANONICAL = [
    "dataset=generation/a.parquet",
    "dataset=generation/year=2026/month=11/day=21/x.parquet",
    "dataset=generation_backup/year=2026/month=11/x.parquet",
    "dataset=generation/year=26/month=11/x.parquet",
    "dataset=generation/year=2026/month=1/x.parquet",
    "dataset=generation/year=2026/month=11/.parquet",
    "dataset=generation/year=2026/month=11/x.PARQUET",
    "dataset=Generation/year=2026/month=11/x.parquet",
    "dataset=generation/year=2026/month=11/x.parquet/",
    "dataset=generation/year=2026/month=11//x.parquet",
    "dataset=generation/year=٢٠٢٦/month=11/x.parquet",  # non-ASCII digits
    "archive/dataset=generation/year=2026/month=11/x.parquet",
    "generation/2026-11/x/dataset=generation/y.parquet",
]
# Canonical keys whose short form is easy to get wrong.
TRICKY_CANONICAL = [
    "dataset=generation/year=2026/month=11/x.parquet.parquet",
    "dataset=generation/year=2026/month=11/x..parquet",
    "dataset=generation/year=2026/month=11/dataset=generation.parquet",
    "dataset=generation/year=2026/month=11/dataset%3Dgeneration%2Fx.parquet",
    "dataset=consumption/year=0000/month=99/ü ß %20+.parquet",
    "dataset=transmission/year=2026/month=11/-.parquet",
]


def test_a_canonical_key_reads_dataset_month_and_file_name() -> None:
    assert partition_key_for(CANONICAL) == "generation/2026-11/generation_20261121"
    assert object_key_for("generation/2026-11/generation_20261121") == CANONICAL


def test_every_demo_object_round_trips_through_a_short_key() -> None:
    keys = list(generate_demo_files(3))
    partitions = [partition_key_for(key) for key in keys]
    assert [object_key_for(p) for p in partitions] == keys
    assert all(not p.startswith("dataset=") and not p.endswith(".parquet") for p in partitions)
    assert all(len(p) < len(k) - 20 for p, k in zip(partitions, keys, strict=True))


@pytest.mark.parametrize("key", NON_CANONICAL)
def test_a_non_canonical_key_is_its_own_partition_key(key: str) -> None:
    assert partition_key_for(key) == key
    assert object_key_for(key) == key


@pytest.mark.parametrize("key", TRICKY_CANONICAL)
def test_tricky_canonical_keys_round_trip(key: str) -> None:
    short = partition_key_for(key)
    assert not short.startswith("dataset=")
    assert object_key_for(short) == key


def test_the_mapping_is_injective_over_tricky_keys() -> None:
    keys = [CANONICAL, *NON_CANONICAL, *TRICKY_CANONICAL]
    partitions = [partition_key_for(key) for key in keys]
    assert len(set(partitions)) == len(keys)


def test_a_key_that_reads_as_another_objects_short_key_is_refused() -> None:
    # Accepted by the dataset rule (its file name decodes to a dataset= segment), yet spelled
    # like the short key of the canonical object below: one of the two must not be a partition.
    lookalike = "generation/2026-11/dataset%3Dgeneration%2Fx.parquet"
    canonical = "dataset=generation/year=2026/month=11/dataset%3Dgeneration%2Fx.parquet.parquet"
    assert partition_key_for(canonical) == lookalike
    with pytest.raises(ValueError, match="reads as the partition of"):
        partition_key_for(lookalike)


def test_an_old_full_key_partition_still_names_its_object() -> None:
    assert object_key_for(CANONICAL) == CANONICAL
    assert partition_keys_known_for(CANONICAL) == (partition_key_for(CANONICAL), CANONICAL)
    assert partition_keys_known_for(NON_CANONICAL[0]) == (NON_CANONICAL[0],)


def test_refused_substrings_are_dagsters() -> None:
    assert set(REFUSED_SUBSTRINGS) == set(INVALID_PARTITION_SUBSTRINGS)


@pytest.mark.parametrize(
    "key",
    [
        "dataset=generation/year=2026/month=11/x...y.parquet",
        "dataset=generation/year=2026/month=11/x\ny.parquet",
        "dataset=generation/year=2026/month=11/x\ty.parquet",
        "dataset=generation/a\0.parquet",
        "dataset=generation/a....parquet",
    ],
)
def test_keys_dagster_refuses_are_refused_with_the_reason(key: str) -> None:
    with pytest.raises(ValueError, match="Dagster refuses"):
        partition_key_for(key)


def test_dagster_accepts_every_key_given_and_reads_each_back() -> None:
    keys = [CANONICAL, *NON_CANONICAL, *TRICKY_CANONICAL]
    partitions = [partition_key_for(key) for key in keys]
    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(energy_objects_partitions.name, partitions)
    stored = instance.get_dynamic_partitions(energy_objects_partitions.name)
    assert sorted(object_key_for(p) for p in stored) == sorted(keys)


_SEGMENT = st.text(st.sampled_from("ab0129-_.=%/ü"), max_size=12)
_YEAR = st.from_regex(r"[0-9]{2,5}", fullmatch=True)
_MONTH = st.from_regex(r"[0-9]{1,3}", fullmatch=True)
_NAME = st.sampled_from(["generation", "consumption", "transmission", "x", "dataset="])
_KEYS = st.one_of(
    st.builds("dataset={}/year={}/month={}/{}.parquet".format, _NAME, _YEAR, _MONTH, _SEGMENT),
    st.builds("{}/{}-{}/{}".format, _NAME, _YEAR, _MONTH, _SEGMENT),
    _SEGMENT,
)


@given(_KEYS)
def test_every_key_given_a_partition_reads_back_as_itself(key: str) -> None:
    """A left inverse: no two objects can share a partition key."""
    try:
        partition = partition_key_for(key)
    except ValueError:
        return
    assert object_key_for(partition) == key
    if partition != key:
        assert not partition.startswith("dataset=")
