"""One partition per processed Parquet object, added by the arrival sensor.

Dagster 1.13 labels a dynamic partition with its key (there is no separate label), and the
partition picker cuts the middle out of a long key: the object key
`dataset=generation/year=2026/month=11/generation_20261121.parquet` reads "dataset…parquet".
A canonical object key (ARCHITECTURE.md section 4) therefore gets a short partition key that
keeps what tells objects apart at both ends, `generation/2026-11/generation_20261121`; any
other object key is its own partition key. The two functions below are inverse to each other:
a short key never starts with `dataset=`, and an object key that would read back as another
object's short key is refused, so every partition names exactly one object.
"""

from __future__ import annotations

import re
from typing import Final

from dagster import DynamicPartitionsDefinition

from ons_pipeline.energy.schema import DATASET_PREFIX, DATASETS

energy_objects_partitions = DynamicPartitionsDefinition(name="energy_processed_objects")

# Dagster refuses partition keys containing these (dagster's INVALID_PARTITION_SUBSTRINGS).
REFUSED_SUBSTRINGS: Final = ("...", "\a", "\b", "\f", "\n", "\r", "\t", "\v", "\0")

_NAMES: Final = "|".join(DATASETS)
_CANONICAL: Final = re.compile(
    rf"{DATASET_PREFIX}(?P<dataset>{_NAMES})/year=(?P<year>[0-9]{{4}})"
    r"/month=(?P<month>[0-9]{2})/(?P<stem>[^/]+)\.parquet"
)
_SHORT: Final = re.compile(
    rf"(?P<dataset>{_NAMES})/(?P<year>[0-9]{{4}})-(?P<month>[0-9]{{2}})/(?P<stem>[^/]+)"
)


def object_key_for(partition_key: str) -> str:
    """The processed object an energy partition loads.

    A short key expands to its canonical object key; any other key (a non-canonical object,
    or a partition an older release added under the full object key) is the object key.
    """
    short = _SHORT.fullmatch(partition_key)
    if short is None:
        return partition_key
    return (
        f"{DATASET_PREFIX}{short['dataset']}/year={short['year']}/month={short['month']}/"
        f"{short['stem']}.parquet"
    )


def partition_key_for(object_key: str) -> str:
    """The energy partition key of a processed object: short when the key is canonical.

    Raises:
        ValueError: Dagster would refuse the partition key, or a non-canonical key reads as
            the short key of another object (e.g. `generation/2026-11/x`).
    """
    canonical = _CANONICAL.fullmatch(object_key)
    if canonical is not None:
        key = f"{canonical['dataset']}/{canonical['year']}-{canonical['month']}/{canonical['stem']}"
    elif object_key_for(object_key) != object_key:
        raise ValueError(f"{object_key!r} reads as the partition of {object_key_for(object_key)!r}")
    else:
        key = object_key
    refused = [s for s in REFUSED_SUBSTRINGS if s in key]
    if refused:
        raise ValueError(f"partition key {key!r} contains {refused}, which Dagster refuses")
    return key


def partition_keys_known_for(object_key: str) -> tuple[str, ...]:
    """The keys an instance may hold the object under: its partition key, then its full key.

    Partitions added before short keys existed are named by the object key; a reconcile that
    looked only for the short key would load those objects a second time.
    """
    key = partition_key_for(object_key)
    return (key,) if key == object_key else (key, object_key)
