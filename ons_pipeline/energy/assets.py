"""Energy asset group: each processed Parquet object loaded into Timestream and InfluxDB.

Partitioned by object key, so one file can be re-loaded or backfilled. Both loads are
idempotent: an InfluxDB point is identified by measurement, tags and time, a Timestream
record by dimensions, measure and time, so writing the same file again changes nothing;
the quarantine object is overwritten under a name derived from the key.
"""

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from dagster import (
    AssetCheckResult,
    AssetExecutionContext,
    AssetKey,
    FreshnessPolicy,
    MaterializeResult,
    asset,
)

from ons_pipeline.energy.checks import (
    accounting_check,
    accounting_spec,
    readback_check,
    readback_spec,
)
from ons_pipeline.energy.loads import (
    fail_on_invalid,
    influxdb_health,
    load_metadata,
    points_metadata,
    points_metrics,
    records_metadata,
    records_metrics,
    unavailable_metric,
    write_points,
    write_records,
)
from ons_pipeline.energy.migration.cutover import skipped_by_sinks
from ons_pipeline.energy.partitions import energy_objects_partitions, object_key_for
from ons_pipeline.energy.readback import (
    expected_series_counts,
    readback_fields,
    timed_readback_counts,
)
from ons_pipeline.energy.schema import COLUMN_DESCRIPTIONS, PROCESSED_SCHEMA
from ons_pipeline.energy.storage import read_and_prepare, source_uri, write_quarantine
from ons_pipeline.platform.failures import classified_failures
from ons_pipeline.platform.metadata import (
    AWS_RETRY_POLICY,
    OWNERS,
    asset_tags,
    column_schema_metadata,
)
from ons_pipeline.resources import (
    CloudWatchMetricsResource,
    EnergyStorageResource,
    InfluxDBResource,
    ObjectStoreResource,
    TimestreamResource,
)
from ons_pipeline.resources.defaults import METRICS_NAMESPACE_INFLUXDB, METRICS_NAMESPACE_TIMESTREAM

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
    check_specs=[accounting_spec(INFLUXDB_KEY, "points"), readback_spec(INFLUXDB_KEY)],
)
@classified_failures
def influxdb_points(
    context: AssetExecutionContext,
    s3: ObjectStoreResource,
    influxdb: InfluxDBResource,
    metrics: CloudWatchMetricsResource,
    energy_storage: EnergyStorageResource,
) -> Iterator[MaterializeResult | AssetCheckResult]:
    """Energy series from one processed Parquet object as InfluxDB points, for dashboards."""
    started = time.monotonic()
    key = object_key_for(context.partition_key)
    if not energy_storage.writes("influxdb"):
        yield skipped_by_sinks(context, energy_storage, "influxdb")
        return
    health = influxdb_health(
        influxdb, lambda: metrics.put(METRICS_NAMESPACE_INFLUXDB, [unavailable_metric()])
    )
    prepared = read_and_prepare(
        s3, energy_storage, key, store="influxdb", check_tags=influxdb.enable_validation
    )
    converted = time.monotonic()
    if not prepared.rejected.empty and not influxdb.drop_invalid_records:
        fail_on_invalid(
            prepared, key, write_quarantine(s3, energy_storage, "influxdb", key, prepared.rejected)
        )
    load = write_points(influxdb, prepared)
    fields = readback_fields(prepared)
    # influxd counts what it holds while this process writes the quarantine and tallies what
    # it should hold, so the read-back costs the query's time, not the query's plus ours.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="readback") as pool:
        readback = pool.submit(timed_readback_counts, influxdb, load.bucket, prepared, fields)
        uri = write_quarantine(s3, energy_storage, "influxdb", key, load.rejected)
        expected = expected_series_counts(prepared.without(load.refused), fields)
        if metrics.enabled:
            metrics.get_client()  # built (botocore loads its model) while influxd counts
        found, readback_seconds = readback.result()
    elapsed = time.monotonic() - started
    metrics.put(METRICS_NAMESPACE_INFLUXDB, points_metrics(load, elapsed))
    metadata = load_metadata(load, energy_storage, key, uri, elapsed)
    yield MaterializeResult(
        metadata=metadata
        | points_metadata(load, health, converted - started)
        | {"readback_seconds": round(readback_seconds, 3)}
    )
    yield accounting_check(prepared.rows, load.written, prepared.deduplicated, len(load.rejected))
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
    check_specs=[accounting_spec(TIMESTREAM_KEY, "records")],
)
@classified_failures
def timestream_records(
    context: AssetExecutionContext,
    s3: ObjectStoreResource,
    timestream: TimestreamResource,
    metrics: CloudWatchMetricsResource,
    energy_storage: EnergyStorageResource,
) -> Iterator[MaterializeResult | AssetCheckResult]:
    """Energy series from one processed Parquet object as Timestream records (seed 000)."""
    started = time.monotonic()
    key = object_key_for(context.partition_key)
    if not energy_storage.writes("timestream"):
        yield skipped_by_sinks(context, energy_storage, "timestream")
        return
    prepared = read_and_prepare(s3, energy_storage, key, store="timestream")
    load = write_records(
        timestream,
        prepared,
        source_uri(energy_storage, key),
        lambda: metrics.put(METRICS_NAMESPACE_TIMESTREAM, [unavailable_metric()]),
    )
    uri = write_quarantine(s3, energy_storage, "timestream", key, load.rejected)
    elapsed = time.monotonic() - started
    metrics.put(METRICS_NAMESPACE_TIMESTREAM, records_metrics(load))
    metadata = load_metadata(load, energy_storage, key, uri, elapsed)
    yield MaterializeResult(metadata=metadata | records_metadata(load, timestream))
    yield accounting_check(prepared.rows, load.written, prepared.deduplicated, len(load.rejected))
