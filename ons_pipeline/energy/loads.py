"""One processed file into one store: the steps the energy assets wire together.

Each step calls its resource and turns the resource's errors into the run's `Failure`:
transient ones (unavailable, throttled, circuit open) retryable, the rest not. What a step
returns is what the asset reports as metadata and metrics.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from dagster import Failure, MetadataValue

from ons_pipeline.energy.line_protocol import CHUNK_ROWS, LineProtocolBatches, line_chunks
from ons_pipeline.energy.schema import COLUMN_DESCRIPTIONS, MEASUREMENT, file_schema
from ons_pipeline.energy.storage import source_uri
from ons_pipeline.energy.timestream_records import refused_positions, timestream_calls
from ons_pipeline.energy.validation import PreparedFile, count_reasons, with_refused
from ons_pipeline.platform.metadata import column_schema_metadata, markdown_table
from ons_pipeline.resources import Metric
from ons_pipeline.resources.influxdb import InfluxDBUnavailableError, InfluxDBWriteError
from ons_pipeline.resources.timestream import TimestreamUnavailableError, TimestreamWriteError

if TYPE_CHECKING:
    from collections.abc import Callable

    from ons_pipeline.resources import EnergyStorageResource, InfluxDBResource, TimestreamResource
    from ons_pipeline.resources.influxdb import WriteOutcome
    from ons_pipeline.resources.timestream import CallResult


def unavailable_metric() -> Metric:
    """Counted when a store cannot be reached at all (the run is retried)."""
    return Metric("ProcessingErrors", 1, dimensions={"ErrorType": "unavailable"}, total=True)


def influxdb_health(
    influxdb: InfluxDBResource, on_unavailable: Callable[[], None]
) -> dict[str, Any]:
    """`/health` before anything is read; `on_unavailable` runs before the retryable Failure."""
    try:
        return influxdb.health()
    except InfluxDBUnavailableError as error:
        on_unavailable()
        raise Failure(description=str(error), allow_retries=True) from error


def fail_on_invalid(prepared: PreparedFile, key: str, uri: str | None) -> None:
    """DROP_INVALID_RECORDS=false: a file with invalid rows is written not at all."""
    reasons = prepared.rejected_by_reason()
    raise Failure(
        description=f"{key}: {len(prepared.rejected)} invalid rows and DROP_INVALID_RECORDS is "
        f"false; nothing was written. Reasons: {reasons}",
        metadata={"rejected_by_reason": MetadataValue.json(reasons), "quarantine": str(uri)},
        allow_retries=False,
    )


@dataclass
class FileLoad:
    """A file's accepted rows written to one store, and every row not written, with why."""

    prepared: PreparedFile
    rejected: pd.DataFrame  # the file's rejected rows plus those the store refused

    @property
    def written(self) -> int:
        raise NotImplementedError


@dataclass
class PointsLoad(FileLoad):
    """A file's accepted rows written to InfluxDB, and the rows it refused."""

    bucket: str
    bucket_created: bool
    gzip_level: int
    outcome: WriteOutcome
    refused: np.ndarray  # positions in `prepared.accepted` InfluxDB refused
    preview: list[str]

    @property
    def written(self) -> int:
        return self.outcome.lines_written

    def conversion_rate(self) -> float:
        prepared = self.prepared
        return (len(prepared.accepted) / prepared.rows) if prepared.rows else 1.0

    def success_rate(self) -> float:
        batches = self.outcome.batches
        return (batches - self.outcome.failed_batches) / batches if batches else 1.0


def write_points(influxdb: InfluxDBResource, prepared: PreparedFile) -> PointsLoad:
    """Every accepted row as a point in the dataset's bucket, refused lines isolated.

    Lines are built a chunk at a time while earlier batches are posted; chunks are whole
    batches, so a batch never straddles two chunks.
    """
    bucket = influxdb.bucket_for(MEASUREMENT[prepared.dataset])
    try:
        gzip_level = influxdb.effective_gzip_level()
    except ValueError as error:  # a setting no retry can fix
        raise Failure(description=str(error), allow_retries=False) from error
    created = influxdb.ensure_bucket(bucket)
    size = influxdb.max_batch_size
    chunk_rows = max(size, CHUNK_ROWS // size * size)
    batches = LineProtocolBatches((lines for _, lines in line_chunks(prepared, chunk_rows)), size)
    try:
        outcome = influxdb.write_lines(bucket, batches)
    except InfluxDBUnavailableError as error:
        raise Failure(description=str(error), allow_retries=True) from error
    except InfluxDBWriteError as error:  # auth, missing bucket: a retry cannot help
        raise Failure(description=str(error), allow_retries=False) from error
    refused = np.array(sorted(outcome.rejected), dtype=np.int64)
    details = [outcome.rejected[p] for p in refused]
    rejected = with_refused(prepared, refused, "influxdb_rejected", details)
    return PointsLoad(
        prepared, rejected, bucket, created, gzip_level, outcome, refused, batches.lines(10)
    )


@dataclass
class RecordsLoad(FileLoad):
    """A file's accepted rows written to Timestream, and the rows it refused."""

    calls: int
    results: list[CallResult]

    @property
    def written(self) -> int:
        return sum(result.written for result in self.results)


def write_records(
    timestream: TimestreamResource,
    prepared: PreparedFile,
    source: str,
    on_unavailable: Callable[[], None],
) -> RecordsLoad:
    """Every accepted row as a Timestream record; `on_unavailable` runs before a retry."""
    # Version = load time: a re-load of a corrected file upserts instead of being refused.
    calls = timestream_calls(
        prepared, version=time.time_ns() // 1_000_000, batch_size=timestream.max_batch_size
    )
    try:
        results = timestream.write_calls(
            prepared.dataset, [(call.common, call.records) for call in calls]
        )
    except TimestreamUnavailableError as error:
        on_unavailable()
        raise Failure(description=str(error), allow_retries=True) from error
    except TimestreamWriteError as error:
        raise Failure(
            description=f"{source}: {error}",
            metadata={"reason": "timestream_refused"},
            allow_retries=False,
        ) from error
    positions, reasons = refused_positions(calls, results)
    rejected = with_refused(prepared, positions, "timestream_rejected", reasons)
    return RecordsLoad(prepared, rejected, len(calls), results)


def points_metrics(load: PointsLoad, elapsed: float) -> list[Metric]:
    """Seed 001's CloudWatch metrics for one file."""
    outcome = load.outcome
    return [
        Metric("PointsWritten", load.written),
        Metric("BatchesProcessed", outcome.batches),
        Metric("ProcessingTime", elapsed, unit="Seconds"),
        Metric("ConversionRate", load.conversion_rate(), unit="None"),
        Metric("SuccessRate", load.success_rate(), unit="None"),
        Metric("FailedBatches", outcome.failed_batches),
        *(
            Metric("ProcessingErrors", count, dimensions={"ErrorType": reason}, total=True)
            for reason, count in count_reasons(load.rejected).items()
        ),
    ]


def records_metrics(load: RecordsLoad) -> list[Metric]:
    """Seed 000's CloudWatch metrics for one file."""
    return [
        Metric("RecordsProcessed", load.written),
        Metric("BatchesProcessed", load.calls),
        Metric("ProcessingErrors", len(load.rejected)),
    ]


def load_metadata(
    load: FileLoad,
    storage: EnergyStorageResource,
    key: str,
    quarantine_uri: str | None,
    elapsed: float,
) -> dict[str, Any]:
    """What every energy load reports about its file, whichever store it wrote."""
    prepared, rejected = load.prepared, load.rejected
    return {
        "dagster/row_count": load.written,
        "energy_sinks": storage.sinks,
        "rows": prepared.rows,
        "dataset_type": prepared.dataset,
        "layout": prepared.layout,
        "deduplicated": prepared.deduplicated,
        "rejected": len(rejected),
        "rejected_by_reason": MetadataValue.json(count_reasons(rejected)),
        "processing_time_seconds": round(elapsed, 3),
        "source_uri": MetadataValue.path(source_uri(storage, key)),
        "quarantine_uri": MetadataValue.path(quarantine_uri or "none: no rows rejected"),
        **column_schema_metadata(
            file_schema(prepared.dataset, prepared.layout), COLUMN_DESCRIPTIONS
        ),
    }


def points_metadata(
    load: PointsLoad, health: dict[str, Any], conversion_seconds: float
) -> dict[str, Any]:
    """The InfluxDB load's own metadata (beside `load_metadata`)."""
    prepared, outcome = load.prepared, load.outcome
    return {
        "points_written": load.written,
        "bucket": load.bucket,
        "bucket_created": load.bucket_created,
        "measurement": prepared.measurement,
        "batches_processed": outcome.batches,
        "failed_batches": outcome.failed_batches,
        "write_requests": outcome.requests,
        "write_retries": outcome.retries,
        "conversion_stats": MetadataValue.json(
            {
                "input_rows": prepared.rows,
                "output_points": len(prepared.accepted),
                "conversion_rate": load.conversion_rate(),
                "conversion_seconds": round(conversion_seconds, 3),
            }
        ),
        "influxdb_health": MetadataValue.json(health),
        "write_gzip_level": load.gzip_level,
        "preview": markdown_table(pd.DataFrame({"line": load.preview})),
    }


def records_metadata(load: RecordsLoad, timestream: TimestreamResource) -> dict[str, Any]:
    """The Timestream load's own metadata (beside `load_metadata`)."""
    return {
        "records_written": load.written,
        "database": timestream.database,
        "table": timestream.table_for(load.prepared.dataset),
        "write_calls": load.calls,
        "retries": sum(result.retries for result in load.results),
        "preview": markdown_table(load.prepared.accepted),
    }
