"""Energy asset group: each processed Parquet object loaded into Timestream and InfluxDB.

Partitioned by object key, so one file can be re-loaded or backfilled. Both loads are
idempotent: an InfluxDB point is identified by measurement, tags and time, a Timestream
record by dimensions, measure and time, so writing the same file again changes nothing;
the quarantine object is overwritten under a name derived from the key.
"""

import time
from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    Failure,
    FreshnessPolicy,
    MaterializeResult,
    MetadataValue,
    asset,
)

from ons_pipeline.energy.migration.cutover import skipped_by_sinks
from ons_pipeline.energy.partitions import energy_objects_partitions, object_key_for
from ons_pipeline.energy.schema import (
    COLUMN_DESCRIPTIONS,
    MEASUREMENT,
    PROCESSED_SCHEMA,
    FileRejectedError,
    detect_dataset,
    file_schema,
)
from ons_pipeline.energy.transform import (
    CHUNK_ROWS,
    PreparedFile,
    batch_bodies,
    expected_series_counts,
    file_rejection,
    line_chunks,
    parquet_row_count,
    prepare,
    quarantine_parquet,
    read_parquet,
    rejected_rows,
    timestream_calls,
)
from ons_pipeline.platform.failures import classified_failures
from ons_pipeline.platform.metadata import (
    AWS_RETRY_POLICY,
    OWNERS,
    asset_tags,
    column_schema_metadata,
    markdown_table,
)
from ons_pipeline.resources import (
    CloudWatchMetricsResource,
    EnergyStorageResource,
    InfluxDBResource,
    Metric,
    ObjectStoreResource,
    TimestreamResource,
)
from ons_pipeline.resources.defaults import METRICS_NAMESPACE_INFLUXDB, METRICS_NAMESPACE_TIMESTREAM
from ons_pipeline.resources.influxdb import InfluxDBUnavailableError, InfluxDBWriteError
from ons_pipeline.resources.influxql import quote_identifier
from ons_pipeline.resources.timestream import TimestreamUnavailableError, TimestreamWriteError

ENERGY_GROUP = "energy"
INFLUXDB_KEY = AssetKey(["energy", "influxdb_points"])
TIMESTREAM_KEY = AssetKey(["energy", "timestream_records"])

ENERGY_RETRY_POLICY = AWS_RETRY_POLICY
ENERGY_TAGS = asset_tags(ENERGY_GROUP, "ons-energy")
# Seed 003: processed files arrive daily; a load older than a day and a bit is overdue.
ENERGY_FRESHNESS = FreshnessPolicy.time_window(
    fail_window=timedelta(hours=30), warn_window=timedelta(hours=25)
)
ENERGY_SPEC_METADATA = column_schema_metadata(PROCESSED_SCHEMA, COLUMN_DESCRIPTIONS)


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
    bucket = storage.processed_bucket
    data = s3.get_bytes(bucket, key)
    if data is None:
        raise Failure(description=f"s3://{bucket}/{key} does not exist", allow_retries=False)
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
            description=f"s3://{bucket}/{key} rejected whole ({error.reason}), not retried: "
            f"{error}; quarantine record {uri}",
            metadata={
                "reason": error.reason,
                "rejected": rows if rows is not None else "unreadable",
                "quarantine_uri": MetadataValue.path(str(uri)),
                "source_uri": MetadataValue.path(f"s3://{bucket}/{key}"),
            },
            allow_retries=False,
        ) from error


def write_quarantine(
    s3: ObjectStoreResource, storage: EnergyStorageResource, store: str, key: str, rejected: Any
) -> str | None:
    """Put the rejected rows beside the key (or remove a stale object); the URI or None."""
    bucket = storage.processed_bucket
    quarantine_key = storage.quarantine_key(store, key)
    if len(rejected) == 0:
        s3.get_client().delete_object(Bucket=bucket, Key=quarantine_key)
        return None
    s3.put_bytes(
        bucket, quarantine_key, quarantine_parquet(rejected), "application/vnd.apache.parquet"
    )
    return f"s3://{bucket}/{quarantine_key}"


def _fail_on_invalid(prepared: PreparedFile, key: str, uri: str | None) -> None:
    reasons = prepared.rejected_by_reason()
    raise Failure(
        description=f"{key}: {len(prepared.rejected)} invalid rows and DROP_INVALID_RECORDS is "
        f"false; nothing was written. Reasons: {reasons}",
        metadata={"rejected_by_reason": MetadataValue.json(reasons), "quarantine": str(uri)},
        allow_retries=False,
    )


def _accounting(rows: int, written: int, deduplicated: int, rejected: int) -> AssetCheckResult:
    return AssetCheckResult(
        check_name="rows_accounted_for",
        passed=rows == written + deduplicated + rejected,
        severity=AssetCheckSeverity.ERROR,
        metadata={
            "rows": rows,
            "written": written,
            "deduplicated": deduplicated,
            "rejected": rejected,
        },
    )


def readback_statement(prepared: PreparedFile) -> tuple[str, dict[str, int]]:
    """One InfluxQL COUNT grouped by the file's tag set over its time window, and its params.

    One grouped query answers for every series in one round trip, however many series the
    file holds (benchmarks/energy_load.py times it against one query per series).
    """
    frame = prepared.accepted
    group_by = ", ".join(quote_identifier(column) for column in prepared.tag_columns)
    statement = (
        f"SELECT COUNT(*) FROM {quote_identifier(prepared.measurement)} "  # nosec B608  # quoted names; bounds bound
        f"WHERE time >= $low AND time <= $high GROUP BY {group_by}"
    )
    return statement, {"low": int(frame["time_ns"].min()), "high": int(frame["time_ns"].max())}


def readback_counts(
    influxdb: InfluxDBResource, bucket: str, prepared: PreparedFile
) -> dict[tuple[tuple[str, str], ...], dict[str, int]]:
    """Per series and field, how many values InfluxDB holds in the file's time window."""
    if prepared.accepted.empty:
        return {}
    statement, params = readback_statement(prepared)
    found: dict[tuple[tuple[str, str], ...], dict[str, int]] = {}
    for item in influxdb.influxql(bucket, statement, params):
        tags = tuple(sorted((k, v) for k, v in (item.get("tags") or {}).items() if v))
        counts = dict(zip(item["columns"], item["values"][0], strict=True))
        found[tags] = {
            name.removeprefix("count_"): int(value)
            for name, value in counts.items()
            if name != "time" and value
        }
    return found


def compare_counts(
    expected: dict[tuple[tuple[str, str], ...], dict[str, int]],
    found: dict[tuple[tuple[str, str], ...], dict[str, int]],
) -> list[dict[str, Any]]:
    """Series/fields holding fewer values than written (other files may add more)."""
    short = []
    for series, fields in expected.items():
        for name, count in fields.items():
            got = found.get(series, {}).get(name, 0)
            if got < count:
                short.append({"series": dict(series), "field": name, "written": count, "read": got})
    return short


READBACK_LISTED = 200  # differing series named in the check's metadata


def readback_check(
    expected: dict[tuple[tuple[str, str], ...], dict[str, int]],
    found: dict[tuple[tuple[str, str], ...], dict[str, int]],
) -> AssetCheckResult:
    """`readback_matches`, naming each series and field that reads back short."""
    short = compare_counts(expected, found)
    named = [
        ",".join(f"{k}={v}" for k, v in item["series"].items())
        + f" {item['field']}: written {item['written']}, read {item['read']}"
        for item in short[:READBACK_LISTED]
    ]
    return AssetCheckResult(
        check_name="readback_matches",
        passed=not short,
        severity=AssetCheckSeverity.ERROR,
        description=(
            "every series reads back what was written"
            if not short
            else f"{len(short)} series/fields read back short: " + "; ".join(named[:5])
        ),
        metadata={
            "series_written": len(expected),
            "series_read": len(found),
            "series_short": len(short),
            "short": MetadataValue.json(short[:READBACK_LISTED]),
            "short_series": MetadataValue.md("\n".join(f"- `{n}`" for n in named) or "none"),
        },
    )


@asset(
    key=INFLUXDB_KEY,
    group_name=ENERGY_GROUP,
    partitions_def=energy_objects_partitions,
    retry_policy=ENERGY_RETRY_POLICY,
    kinds={"influxdb", "s3"},
    owners=OWNERS,
    tags=ENERGY_TAGS,
    metadata=ENERGY_SPEC_METADATA,
    freshness_policy=ENERGY_FRESHNESS,
    check_specs=[
        AssetCheckSpec(
            "rows_accounted_for",
            asset=INFLUXDB_KEY,
            description="Rows = points written + exact duplicates folded + rows rejected.",
        ),
        AssetCheckSpec(
            "readback_matches",
            asset=INFLUXDB_KEY,
            description="InfluxQL counts per series and field in the file's time window hold "
            "every value written.",
        ),
    ],
)
@classified_failures
def influxdb_points(
    context: AssetExecutionContext,
    s3: ObjectStoreResource,
    influxdb: InfluxDBResource,
    metrics: CloudWatchMetricsResource,
    energy_storage: EnergyStorageResource,
) -> Any:
    """Energy series from one processed Parquet object as InfluxDB points, for dashboards."""
    started = time.monotonic()
    key = object_key_for(context.partition_key)
    if not energy_storage.writes("influxdb"):
        yield skipped_by_sinks(context, energy_storage, "influxdb")
        return
    try:
        health = influxdb.health()
    except InfluxDBUnavailableError as error:
        metrics.put(
            METRICS_NAMESPACE_INFLUXDB,
            [Metric("ProcessingErrors", 1, dimensions={"ErrorType": "unavailable"}, total=True)],
        )
        raise Failure(description=str(error), allow_retries=True) from error
    prepared = read_and_prepare(
        s3, energy_storage, key, store="influxdb", check_tags=influxdb.enable_validation
    )
    converted = time.monotonic()
    bucket = influxdb.bucket_for(MEASUREMENT[prepared.dataset])
    if not prepared.rejected.empty and not influxdb.drop_invalid_records:
        uri = write_quarantine(s3, energy_storage, "influxdb", key, prepared.rejected)
        _fail_on_invalid(prepared, key, uri)
    try:
        gzip_level = influxdb.effective_gzip_level()
    except ValueError as error:  # a setting no retry can fix
        raise Failure(description=str(error), allow_retries=False) from error
    created = influxdb.ensure_bucket(bucket)
    size = influxdb.max_batch_size
    chunk_rows = max(size, CHUNK_ROWS // size * size)  # batches never straddle chunks
    chunks: dict[int, Any] = {}

    def batches() -> Any:
        # Consumed while earlier batches are in flight: conversion overlaps the writes.
        for offset, lines in line_chunks(prepared, chunk_rows):
            chunks[offset] = lines
            for lo, hi, body in batch_bodies(lines, size):
                yield offset + lo, offset + hi, body

    def split(lo: int, hi: int) -> bytes:
        offset = lo // chunk_rows * chunk_rows
        return next(batch_bodies(chunks[offset].slice(lo - offset, hi - lo), hi - lo))[2]

    try:
        outcome = influxdb.write_lines(bucket, batches(), split)
    except InfluxDBUnavailableError as error:
        raise Failure(description=str(error), allow_retries=True) from error
    except InfluxDBWriteError as error:  # auth, missing bucket: a retry cannot help
        raise Failure(description=str(error), allow_retries=False) from error
    rejected = prepared.rejected
    if outcome.rejected:
        positions = np.array(sorted(outcome.rejected), dtype=np.int64)
        refused = rejected_rows(
            prepared, positions, "influxdb_rejected", [outcome.rejected[p] for p in positions]
        )
        rejected = pd.concat([rejected, refused], ignore_index=True)
    uri = write_quarantine(s3, energy_storage, "influxdb", key, rejected)
    written = outcome.lines_written
    reasons = (
        {str(k): int(v) for k, v in rejected["reason"].value_counts().items()}
        if len(rejected)
        else {}
    )
    expected = expected_series_counts(prepared)
    if outcome.rejected:
        kept = np.setdiff1d(np.arange(len(prepared.accepted)), positions)
        expected = expected_series_counts(
            PreparedFile(
                prepared.dataset,
                prepared.layout,
                prepared.rows,
                prepared.accepted.iloc[kept],
                rejected,
                prepared.deduplicated,
                prepared.field_columns,
            )
        )
    readback_started = time.monotonic()
    found = readback_counts(influxdb, bucket, prepared)
    readback_seconds = time.monotonic() - readback_started
    elapsed = time.monotonic() - started
    conversion_rate = (len(prepared.accepted) / prepared.rows) if prepared.rows else 1.0
    success_rate = (
        (outcome.batches - outcome.failed_batches) / outcome.batches if outcome.batches else 1.0
    )
    metrics.put(
        METRICS_NAMESPACE_INFLUXDB,
        [
            Metric("PointsWritten", written),
            Metric("BatchesProcessed", outcome.batches),
            Metric("ProcessingTime", elapsed, unit="Seconds"),
            Metric("ConversionRate", conversion_rate, unit="None"),
            Metric("SuccessRate", success_rate, unit="None"),
            Metric("FailedBatches", outcome.failed_batches),
            *(
                Metric("ProcessingErrors", count, dimensions={"ErrorType": reason}, total=True)
                for reason, count in reasons.items()
            ),
        ],
    )
    preview = pd.DataFrame(
        {"line": [s.rstrip("\n") for s in chunks[0].slice(0, 10).to_pylist()] if chunks else []}
    )
    yield MaterializeResult(
        metadata={
            "dagster/row_count": written,
            "energy_sinks": energy_storage.sinks,
            "points_written": written,
            "rows": prepared.rows,
            "dataset_type": prepared.dataset,
            "layout": prepared.layout,
            "bucket": bucket,
            "bucket_created": created,
            "measurement": prepared.measurement,
            "batches_processed": outcome.batches,
            "failed_batches": outcome.failed_batches,
            "write_requests": outcome.requests,
            "write_retries": outcome.retries,
            "deduplicated": prepared.deduplicated,
            "rejected": len(rejected),
            "rejected_by_reason": MetadataValue.json(reasons),
            "conversion_stats": MetadataValue.json(
                {
                    "input_rows": prepared.rows,
                    "output_points": len(prepared.accepted),
                    "conversion_rate": conversion_rate,
                    "conversion_seconds": round(converted - started, 3),
                }
            ),
            "influxdb_health": MetadataValue.json(health),
            **column_schema_metadata(
                file_schema(prepared.dataset, prepared.layout), COLUMN_DESCRIPTIONS
            ),
            "processing_time_seconds": round(elapsed, 3),
            "readback_seconds": round(readback_seconds, 3),
            "write_gzip_level": gzip_level,
            "source_uri": MetadataValue.path(f"s3://{energy_storage.processed_bucket}/{key}"),
            "quarantine_uri": MetadataValue.path(uri or "none: no rows rejected"),
            "preview": markdown_table(preview),
        }
    )
    yield _accounting(prepared.rows, written, prepared.deduplicated, len(rejected))
    yield readback_check(expected, found)


@asset(
    key=TIMESTREAM_KEY,
    group_name=ENERGY_GROUP,
    partitions_def=energy_objects_partitions,
    retry_policy=ENERGY_RETRY_POLICY,
    kinds={"timestream", "s3"},
    owners=OWNERS,
    tags=ENERGY_TAGS,
    metadata=ENERGY_SPEC_METADATA,
    freshness_policy=ENERGY_FRESHNESS,
    check_specs=[
        AssetCheckSpec(
            "rows_accounted_for",
            asset=TIMESTREAM_KEY,
            description="Rows = records written + exact duplicates folded + rows rejected.",
        )
    ],
)
@classified_failures
def timestream_records(
    context: AssetExecutionContext,
    s3: ObjectStoreResource,
    timestream: TimestreamResource,
    metrics: CloudWatchMetricsResource,
    energy_storage: EnergyStorageResource,
) -> Any:
    """Energy series from one processed Parquet object as Timestream records (seed 000)."""
    started = time.monotonic()
    key = object_key_for(context.partition_key)
    if not energy_storage.writes("timestream"):
        yield skipped_by_sinks(context, energy_storage, "timestream")
        return
    prepared = read_and_prepare(s3, energy_storage, key, store="timestream")
    # Version = load time: a re-load of a corrected file upserts instead of being refused.
    calls = timestream_calls(
        prepared, version=time.time_ns() // 1_000_000, batch_size=timestream.max_batch_size
    )
    try:
        results = timestream.write_calls(
            prepared.dataset, [(call.common, call.records) for call in calls]
        )
    except TimestreamUnavailableError as error:
        metrics.put(
            METRICS_NAMESPACE_TIMESTREAM,
            [Metric("ProcessingErrors", 1, dimensions={"ErrorType": "unavailable"}, total=True)],
        )
        raise Failure(description=str(error), allow_retries=True) from error
    except TimestreamWriteError as error:
        raise Failure(
            description=f"s3://{energy_storage.processed_bucket}/{key}: {error}",
            metadata={"reason": "timestream_refused"},
            allow_retries=False,
        ) from error
    refused_positions: list[int] = []
    refused_reasons: list[str] = []
    for call, result in zip(calls, results, strict=True):
        for index, reason in sorted(result.rejected.items()):
            refused_positions.append(int(call.positions[index]))
            refused_reasons.append(reason)
    rejected = prepared.rejected
    if refused_positions:
        refused = rejected_rows(
            prepared,
            np.array(refused_positions, dtype=np.int64),
            "timestream_rejected",
            refused_reasons,
        )
        rejected = pd.concat([rejected, refused], ignore_index=True)
    uri = write_quarantine(s3, energy_storage, "timestream", key, rejected)
    written = sum(result.written for result in results)
    reasons = (
        {str(k): int(v) for k, v in rejected["reason"].value_counts().items()}
        if len(rejected)
        else {}
    )
    elapsed = time.monotonic() - started
    metrics.put(
        METRICS_NAMESPACE_TIMESTREAM,
        [
            Metric("RecordsProcessed", written),
            Metric("BatchesProcessed", len(calls)),
            Metric("ProcessingErrors", len(rejected)),
        ],
    )
    yield MaterializeResult(
        metadata={
            "dagster/row_count": written,
            "energy_sinks": energy_storage.sinks,
            "records_written": written,
            "rows": prepared.rows,
            "dataset_type": prepared.dataset,
            "layout": prepared.layout,
            "database": timestream.database,
            "table": timestream.table_for(prepared.dataset),
            "write_calls": len(calls),
            "retries": sum(result.retries for result in results),
            "deduplicated": prepared.deduplicated,
            "rejected": len(rejected),
            "rejected_by_reason": MetadataValue.json(reasons),
            "processing_time_seconds": round(elapsed, 3),
            "source_uri": MetadataValue.path(f"s3://{energy_storage.processed_bucket}/{key}"),
            "quarantine_uri": MetadataValue.path(uri or "none: no rows rejected"),
            **column_schema_metadata(
                file_schema(prepared.dataset, prepared.layout), COLUMN_DESCRIPTIONS
            ),
            "preview": markdown_table(prepared.accepted),
        }
    )
    yield _accounting(prepared.rows, written, prepared.deduplicated, len(rejected))
