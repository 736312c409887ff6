"""One migration window's steps, as the migration assets run them: write, then compare.

`export_window` checks InfluxDB and exports a day from Timestream (UNLOAD), `write_window`
writes it to InfluxDB; `check_window` compares the two stores for that day, quarantines what
could not be mapped and says whether the window is migrated. Errors become the run's
`Failure`, transient ones retryable.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from dagster import Failure, MetadataValue

from ons_pipeline.energy.migration.export import (
    TimestreamQueryError,
    TimestreamQueryUnavailableError,
    Window,
)
from ons_pipeline.energy.migration.unload import (
    EXPORT_MODES,
    Export,
    UnloadTarget,
    delete_export,
    unload_window,
)
from ons_pipeline.energy.migration.validate import differences, influxdb_stats, timestream_stats
from ons_pipeline.energy.migration.window import WindowOutcome, WriteLane, migrate_window
from ons_pipeline.energy.schema import MEASUREMENT
from ons_pipeline.energy.storage import write_quarantine
from ons_pipeline.resources.influxdb import InfluxDBUnavailableError, InfluxDBWriteError

if TYPE_CHECKING:
    from collections.abc import Iterator

    from dagster import AssetExecutionContext

    from ons_pipeline.resources import (
        EnergyStorageResource,
        InfluxDBResource,
        ObjectStoreResource,
        TimestreamResource,
    )

DIFFERENCES_LISTED = 50  # differing series named in the metadata


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
        "differences": MetadataValue.json(diffs[:DIFFERENCES_LISTED]),
    }
    return diffs, metadata


@contextmanager
def window_failures(dataset: str, day: str) -> Iterator[None]:
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


class WindowCheck(NamedTuple):
    """Whether a written window matches, the materialisation's and the check's metadata."""

    passed: bool
    metadata: dict[str, Any]
    check_metadata: dict[str, Any]


@dataclass
class Written:
    """A window exported and written, waiting for its comparison."""

    day: str
    window: Window
    bucket: str
    mode: str
    started: float
    outcome: WindowOutcome


@dataclass
class Exported:
    """A window checked for (InfluxDB reachable, bucket there) and, by UNLOAD, exported."""

    day: str
    window: Window
    bucket: str
    mode: str
    started: float
    unload: UnloadTarget | None
    export: Export | None


def export_window(
    dataset: str,
    day: str,
    timestream: TimestreamResource,
    influxdb: InfluxDBResource,
    s3: ObjectStoreResource,
    energy_storage: EnergyStorageResource,
) -> Exported:
    """InfluxDB's health and bucket, then the day's UNLOAD (nothing to do for Query pages).

    The asset runs this for the next window while the current one is written (`ahead`).

    Raises:
        Failure: an unknown export mode (not retried), InfluxDB down, or the export failed.
    """
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
    export = None
    with window_failures(dataset, day):
        influxdb.health()
        influxdb.ensure_bucket(bucket)
        if unload is not None:
            export = unload_window(
                timestream.get_query_client(),
                unload,
                database=timestream.database,
                table=timestream.table_for(dataset),
                dataset=dataset,
                window=window,
            )
    return Exported(day, window, bucket, mode, started, unload, export)


def write_window(
    dataset: str,
    exported: Exported,
    timestream: TimestreamResource,
    influxdb: InfluxDBResource,
    lane: WriteLane | None = None,
) -> Written:
    """Write the exported day to InfluxDB (not yet compared).

    With a `lane` shared by the run's windows, the day's last group may still be written
    on return (the next day is mapped meanwhile); `check_window` waits for it.

    Raises:
        Failure: the export's read or the write failed.
    """
    day = exported.day
    with window_failures(dataset, day):
        outcome = migrate_window(
            timestream.get_query_client(),
            influxdb,
            database=timestream.database,
            table=timestream.table_for(dataset),
            dataset=dataset,
            bucket=exported.bucket,
            window=exported.window,
            check_tags=influxdb.enable_validation,
            unload=exported.unload,
            exported=exported.export,
            lane=lane,
        )
    return Written(day, exported.window, exported.bucket, exported.mode, exported.started, outcome)


def check_window(
    context: AssetExecutionContext,
    dataset: str,
    written: Written,
    timestream: TimestreamResource,
    influxdb: InfluxDBResource,
    s3: ObjectStoreResource,
    energy_storage: EnergyStorageResource,
) -> WindowCheck:
    """Compare the stores for a written window and say whether it is migrated.

    Migrated: every record is written or quarantined, and no series differs. The records
    that could not be mapped are quarantined here.

    The export's objects are deleted only once the window matches.
    """
    day, outcome, mode = written.day, written.outcome, written.mode
    with window_failures(dataset, day):
        outcome.settle()  # the day's last group, if it was still being written
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
    return WindowCheck(passed, metadata, check_metadata)
