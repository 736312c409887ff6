"""Dagster wiring: one migration asset per dataset, partitioned by day, backfillable.

`BackfillPolicy.single_run()` lets one run take a range of days (the UI's partition picker,
`dagster asset materialize --partition-range`); the run migrates its windows in order. For
each window the blocking check `window_matches` compares the stores per series; only a window
that matches is reported materialized, so a failed window stays unmigrated and fails the run
(the run-failure sensor then alerts through SNS). Transient faults are retried per request
inside (Timestream throttling/5xx, InfluxDB 429/5xx); a failed window is simply re-run, as
writing the same points again overwrites them.
"""

import os
import time
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from dagster import (
    AssetCheckEvaluation,
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    AssetMaterialization,
    AssetSelection,
    AssetSpec,
    BackfillPolicy,
    DailyPartitionsDefinition,
    Failure,
    MetadataValue,
    Output,
    ScheduleDefinition,
    asset_check,
    define_asset_job,
    multi_asset,
)

from ons_pipeline.energy.migration.export import (
    TimestreamQueryError,
    TimestreamQueryUnavailableError,
    Window,
)
from ons_pipeline.energy.migration.unload import EXPORT_MODES, UnloadTarget, delete_export
from ons_pipeline.energy.migration.validate import (
    differences,
    influxdb_stats,
    timestream_stats,
)
from ons_pipeline.energy.migration.window import WindowOutcome, migrate_window, overlapped
from ons_pipeline.energy.schema import COLUMN_DESCRIPTIONS, DATASETS, MEASUREMENT, PROCESSED_SCHEMA
from ons_pipeline.energy.storage import write_quarantine
from ons_pipeline.platform.metadata import OWNERS, asset_tags, column_schema_metadata
from ons_pipeline.resources import (
    EnergyStorageResource,
    InfluxDBResource,
    ObjectStoreResource,
    TimestreamResource,
)
from ons_pipeline.resources.influxdb import InfluxDBUnavailableError, InfluxDBWriteError

MIGRATION_GROUP = "energy_migration"
WINDOW_CHECK = "window_matches"
BLUE_GREEN_CHECK = "blue_green_last_day"
START_DATE_ENV = "ONS_MIGRATION_START_DATE"
DEFAULT_START_DATE = "2024-01-01"

migration_partitions = DailyPartitionsDefinition(
    start_date=os.environ.get(START_DATE_ENV) or DEFAULT_START_DATE, timezone="UTC"
)


def migration_key(dataset: str) -> AssetKey:
    return AssetKey(["energy", "migration", dataset])


def _series_table(diffs: list[dict[str, Any]]) -> MetadataValue:
    return MetadataValue.json(diffs[:50])


def compare_window(
    timestream: TimestreamResource,
    influxdb: InfluxDBResource,
    dataset: str,
    window: Window,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(differing series, metadata) for one window of one dataset.

    The two stores are asked at once (different servers; each side mostly waits).
    """
    bucket = influxdb.bucket_for(MEASUREMENT[dataset])
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="compare") as pool:
        influx_side = pool.submit(influxdb_stats, influxdb, bucket, dataset, window)
        expected, unmapped = timestream_stats(
            timestream.get_query_client(),
            timestream.database,
            timestream.table_for(dataset),
            dataset,
            window,
        )
        found = influx_side.result()
    diffs = differences(expected, found)
    metadata = {
        "series_timestream": len(expected),
        "series_influxdb": len(found),
        "points_timestream": sum(s.count for s in expected.values()),
        "points_influxdb": sum(s.count for s in found.values()),
        "unmappable_records": MetadataValue.json(dict(unmapped)),
        "differing_series": len(diffs),
        "differences": _series_table(diffs),
    }
    return diffs, metadata


@contextmanager
def _window_failures(dataset: str, day: str) -> Iterator[None]:
    """Export, write and compare errors as the run's Failure; transient ones retryable."""
    try:
        yield
    except (InfluxDBUnavailableError, TimestreamQueryUnavailableError) as error:
        raise Failure(
            description=f"{dataset} {day}: {error}; the window is not migrated",
            allow_retries=True,
        ) from error
    except (InfluxDBWriteError, TimestreamQueryError) as error:
        raise Failure(
            description=f"{dataset} {day}: {error}; the window is not migrated",
            allow_retries=False,
        ) from error


@dataclass
class _Written:
    """A window exported and written, waiting for its comparison."""

    day: str
    window: Window
    bucket: str
    mode: str
    started: float
    outcome: WindowOutcome


def _write_one(
    dataset: str,
    day: str,
    timestream: TimestreamResource,
    influxdb: InfluxDBResource,
    s3: ObjectStoreResource,
    energy_storage: EnergyStorageResource,
) -> _Written:
    started = time.monotonic()
    window = Window.day(day)
    bucket = influxdb.bucket_for(MEASUREMENT[dataset])
    mode = energy_storage.migration_export
    if mode not in EXPORT_MODES:
        raise Failure(
            description=f"ONS_MIGRATION_EXPORT={mode!r}: expected one of {EXPORT_MODES}",
            allow_retries=False,
        )
    unload = None
    if mode == "unload":
        unload = UnloadTarget(
            s3.get_client(),
            energy_storage.export_bucket or energy_storage.processed_bucket,
            energy_storage.export_prefix,
        )
    with _window_failures(dataset, day):
        influxdb.health()
        influxdb.ensure_bucket(bucket)
        outcome = migrate_window(
            timestream.get_query_client(),
            influxdb,
            database=timestream.database,
            table=timestream.table_for(dataset),
            dataset=dataset,
            bucket=bucket,
            window=window,
            check_tags=influxdb.enable_validation,
            unload=unload,
        )
    return _Written(day, window, bucket, mode, started, outcome)


def _check_one(
    context: AssetExecutionContext,
    dataset: str,
    written: _Written,
    timestream: TimestreamResource,
    influxdb: InfluxDBResource,
    s3: ObjectStoreResource,
    energy_storage: EnergyStorageResource,
) -> tuple[bool, dict[str, Any], dict[str, Any]]:
    day, outcome, mode = written.day, written.outcome, written.mode
    with _window_failures(dataset, day):
        diffs, check_metadata = compare_window(timestream, influxdb, dataset, written.window)
    quarantine = outcome.quarantine()
    quarantine_uri = write_quarantine(
        s3,
        energy_storage,
        "migration",
        f"{dataset}/{day}.parquet",
        quarantine.assign(_row=range(len(quarantine))),
    )
    accounted = outcome.records == outcome.written.lines_written + outcome.rejected
    passed = accounted and not diffs
    export_uri = "none: exported through Query pages"
    if outcome.export is not None:
        export_uri = f"s3://{outcome.export.bucket}/{outcome.export.folder}"
        if passed:  # kept for inspection otherwise; the lifecycle rule expires them
            deleted = delete_export(s3.get_client(), outcome.export.bucket, outcome.export.folder)
            export_uri = f"deleted ({deleted} objects) after validation: {export_uri}"
    elapsed = time.monotonic() - written.started
    metadata = {
        "dagster/row_count": outcome.written.lines_written,
        "window": f"[{day}T00:00:00Z, +1 day)",
        "records_exported": outcome.records,
        "points_written": outcome.written.lines_written,
        "quarantined": outcome.rejected,
        "quarantined_by_reason": MetadataValue.json(outcome.rejected_by_reason()),
        "quarantine_uri": MetadataValue.path(quarantine_uri or "none: every record mapped"),
        "export_mode": mode,
        "export": export_uri,
        "query_pages": outcome.pages,
        "write_requests": outcome.written.requests,
        "write_retries": outcome.written.retries,
        "bucket": written.bucket,
        "database": timestream.database,
        "table": timestream.table_for(dataset),
        "processing_time_seconds": round(elapsed, 3),
        "records_per_second": round(outcome.records / elapsed, 1) if elapsed else 0.0,
    }
    check_metadata |= {
        "records_exported": outcome.records,
        "points_written": outcome.written.lines_written,
        "quarantined": outcome.rejected,
        "rows_accounted_for": accounted,
        "export_mode": mode,
        "export": export_uri,
    }
    context.log.info(
        f"{dataset} {day}: {outcome.records} records, {outcome.written.lines_written} points, "
        f"{outcome.rejected} quarantined, {len(diffs)} differing series"
    )
    return passed, metadata, check_metadata


def build_migration_asset(dataset: str) -> Any:
    key = migration_key(dataset)
    with warnings.catch_warnings():
        # A partitioned check is a Dagster preview; it is what makes the check per window.
        warnings.filterwarnings("ignore", message=r".*partitions_def on an AssetCheckSpec.*")
        window_check = AssetCheckSpec(
            WINDOW_CHECK,
            asset=key,
            blocking=True,
            partitions_def=migration_partitions,
            description="Per series: count, sum and first/last time in Timestream equal those "
            "in InfluxDB for the window; every exported record written or quarantined.",
        )

    @multi_asset(
        name=f"energy_migration_{dataset}",
        specs=[
            AssetSpec(
                key,
                group_name=MIGRATION_GROUP,
                skippable=True,
                kinds={"timestream", "influxdb"},
                owners=OWNERS,
                tags=asset_tags(MIGRATION_GROUP, "timestream"),
                metadata=column_schema_metadata(PROCESSED_SCHEMA, COLUMN_DESCRIPTIONS),
                description=f"{dataset} history moved from Timestream into InfluxDB, one "
                "UTC day per partition.",
            )
        ],
        check_specs=[window_check],
        partitions_def=migration_partitions,
        backfill_policy=BackfillPolicy.single_run(),
        op_tags={"ons/group": MIGRATION_GROUP},
    )
    def migrate(
        context: AssetExecutionContext,
        timestream: TimestreamResource,
        influxdb: InfluxDBResource,
        s3: ObjectStoreResource,
        energy_storage: EnergyStorageResource,
    ) -> Any:
        # A window's comparison runs while the next window is exported and written.
        checked = overlapped(
            context.partition_keys,
            lambda day: _write_one(dataset, day, timestream, influxdb, s3, energy_storage),
            lambda _, written: _check_one(
                context, dataset, written, timestream, influxdb, s3, energy_storage
            ),
        )
        for day, (passed, metadata, check_metadata) in checked:
            yield AssetCheckEvaluation(
                asset_key=key,
                check_name=WINDOW_CHECK,
                passed=passed,
                metadata=check_metadata,
                severity=AssetCheckSeverity.ERROR,
                blocking=True,
                partition=day,
                description=None if passed else f"{day}: the stores differ; not migrated",
            )
            if passed:
                yield AssetMaterialization(asset_key=key, partition=day, metadata=metadata)
        # One evaluation per window went out above; the check's output closes the step (a
        # failed blocking evaluation then fails it).
        yield Output(None, output_name=window_check.get_python_identifier())

    return migrate


def build_blue_green_check(dataset: str) -> Any:
    @asset_check(
        asset=migration_key(dataset),
        name=BLUE_GREEN_CHECK,
        description="While both stores are written: yesterday (UTC) holds the same series in "
        "Timestream and InfluxDB. A divergence fails the run, which alerts through SNS.",
    )
    def blue_green(
        context: AssetCheckExecutionContext,
        timestream: TimestreamResource,
        influxdb: InfluxDBResource,
        energy_storage: EnergyStorageResource,
    ) -> AssetCheckResult:
        today = datetime.now(UTC).date()
        day = (today - timedelta(days=1)).isoformat()
        sinks = energy_storage.sinks
        if not (energy_storage.writes("timestream") and energy_storage.writes("influxdb")):
            return AssetCheckResult(
                passed=True, metadata={"day": day, "skipped": f"ONS_ENERGY_SINKS={sinks}"}
            )
        diffs, metadata = compare_window(timestream, influxdb, dataset, Window.day(day))
        if diffs:
            raise Failure(
                description=f"{dataset} {day}: Timestream and InfluxDB differ in "
                f"{len(diffs)} series: "
                + "; ".join(f"{d['series']} {d['field']}" for d in diffs[:10]),
                metadata={"day": day, **metadata},
                allow_retries=False,
            )
        return AssetCheckResult(passed=True, metadata={"day": day, **metadata})

    return blue_green


migration_assets = [build_migration_asset(dataset) for dataset in DATASETS]
blue_green_checks = [build_blue_green_check(dataset) for dataset in DATASETS]

energy_migration_job = define_asset_job(
    "energy_migration_job",
    selection=AssetSelection.groups(MIGRATION_GROUP),
    description="Migrate Timestream history into InfluxDB for the selected days.",
    tags={"ons/group": MIGRATION_GROUP},
)
energy_blue_green_job = define_asset_job(
    "energy_blue_green_job",
    selection=AssetSelection.checks(*blue_green_checks),
    description="Compare yesterday in Timestream and InfluxDB while both are written.",
    tags={"ons/group": MIGRATION_GROUP},
)
energy_blue_green_daily = ScheduleDefinition(
    name="energy_blue_green_daily",
    job=energy_blue_green_job,
    cron_schedule="30 1 * * *",
    execution_timezone="UTC",
    description="Daily blue/green comparison of the two energy stores.",
)
