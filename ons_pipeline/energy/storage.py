"""The energy group's I/O on S3: processed objects in, validated rows out, quarantine records.

Every read and write goes through `ObjectStoreResource`; the keys come from
`EnergyStorageResource`. A quarantine object is overwritten under a name derived from the
source key (or removed when nothing is rejected), so a re-load leaves one current record.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pyarrow as pa
from dagster import Failure, MetadataValue

from ons_pipeline.energy.schema import FileRejectedError, detect_dataset
from ons_pipeline.energy.validation import (
    PreparedFile,
    file_rejection,
    parquet_row_count,
    prepare,
    quarantine_parquet,
    read_parquet,
)

if TYPE_CHECKING:
    import pandas as pd

    from ons_pipeline.resources import EnergyStorageResource, ObjectStoreResource

PARQUET: str = "application/vnd.apache.parquet"


def source_uri(storage: EnergyStorageResource, key: str) -> str:
    return f"s3://{storage.processed_bucket}/{key}"


def read_processed(s3: ObjectStoreResource, storage: EnergyStorageResource, key: str) -> bytes:
    """The processed object's bytes.

    Raises:
        Failure: (not retried) the object does not exist.
    """
    data = s3.get_bytes(storage.processed_bucket, key)
    if data is None:
        raise Failure(description=f"{source_uri(storage, key)} does not exist", allow_retries=False)
    return data


def write_quarantine(
    s3: ObjectStoreResource,
    storage: EnergyStorageResource,
    store: str,
    key: str,
    rejected: pd.DataFrame,
) -> str | None:
    """Put the rejected rows beside the key (or remove a stale object); the URI or None."""
    bucket = storage.processed_bucket
    quarantine_key = storage.quarantine_key(store, key)
    if len(rejected) == 0:
        s3.delete_keys(bucket, [quarantine_key])
        return None
    s3.put_bytes(bucket, quarantine_key, quarantine_parquet(rejected), PARQUET)
    return f"s3://{bucket}/{quarantine_key}"


def read_and_prepare(
    s3: ObjectStoreResource,
    storage: EnergyStorageResource,
    key: str,
    *,
    store: str,
    check_tags: bool = True,
) -> PreparedFile:
    """The object's rows after the section 4 rules.

    A file rejected whole (`unknown_dataset`, `ambiguous_dataset`, `unreadable_file`,
    `missing_column`) leaves a quarantine record where `store`'s rejected rows go.

    Raises:
        Failure: (not retried) the object is missing or the whole file is rejected.
    """
    data = read_processed(s3, storage, key)
    try:
        dataset = detect_dataset(key)
        try:
            frame = read_parquet(data, dataset)
        except (pa.ArrowException, OSError) as error:  # e.g. "magic bytes not found"
            raise FileRejectedError(
                "unreadable_file", f"not a readable Parquet file: {error}"
            ) from error
        return prepare(frame, dataset, check_tags=check_tags)
    except FileRejectedError as error:
        rows = parquet_row_count(data)
        uri = write_quarantine(
            s3, storage, store, key, file_rejection(key, error.reason, str(error), rows)
        )
        raise Failure(
            description=f"{source_uri(storage, key)} rejected whole ({error.reason}), not "
            f"retried: {error}; quarantine record {uri}",
            metadata={
                "reason": error.reason,
                "rejected": rows if rows is not None else "unreadable",
                "quarantine_uri": MetadataValue.path(str(uri)),
                "source_uri": MetadataValue.path(source_uri(storage, key)),
            },
            allow_retries=False,
        ) from error
