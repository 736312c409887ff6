"""Visits asset group: visit-event JSON files -> checkpoint Parquet -> the seed's analytics.

The assets are wiring: locations come from the `visits_storage` resource, the work from
`storage.py` (I/O) over `checkpoint.py` and `analytics.py` (pure), the checks from `checks.py`.
"""

import io
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetSpec,
    Config,
    Failure,
    FreshnessPolicy,
    MaterializeResult,
    MetadataValue,
    TableSchema,
    asset,
    multi_asset,
)
from pydantic import Field

from ons_pipeline.platform.metadata import (
    AWS_RETRY_POLICY,
    OWNERS,
    asset_tags,
    column_schema_metadata,
    markdown_table,
)
from ons_pipeline.resources import (
    CloudWatchMetricsResource,
    Metric,
    NotificationQueueResource,
    ObjectStoreResource,
    VisitsStorageResource,
)
from ons_pipeline.resources.aws import sharing_session
from ons_pipeline.resources.defaults import METRICS_NAMESPACE_VISITS
from ons_pipeline.visits.analytics import (
    average_days_to_qc_by_center,
    latest_event_per_visit,
    monthly_not_pass_qc_by_center,
)
from ons_pipeline.visits.checkpoint import PARQUET_CONTENT_TYPE, CorruptCheckpointError
from ons_pipeline.visits.checks import checkpoint_check_specs, checkpoint_checks
from ons_pipeline.visits.schema import ANALYTICS_SCHEMAS, CHECKPOINT_SCHEMA, COLUMN_DESCRIPTIONS
from ons_pipeline.visits.storage import (
    CheckpointOutcome,
    ConcurrentCheckpointError,
    Locations,
    read_checkpoint,
    run_checkpoint,
)

VISITS_GROUP = "visits"
CHECKPOINT_KEY = AssetKey(["visit_events_checkpoint"])
LATEST_KEY = AssetKey(["latest_visit_events"])
MONTHLY_KEY = AssetKey(["monthly_not_pass_qc_by_center"])
QC_DAYS_KEY = AssetKey(["avg_days_to_qc_by_center"])
REJECTIONS_IN_METADATA = 50

VISITS_RETRY_POLICY = AWS_RETRY_POLICY
VISITS_TAGS = asset_tags(VISITS_GROUP, "flywheel")
CHECKPOINT_SCHEMA_METADATA = column_schema_metadata(CHECKPOINT_SCHEMA, COLUMN_DESCRIPTIONS)
# Seed 004: the checkpoint runs hourly; one missed run warns, two fail.
CHECKPOINT_FRESHNESS = FreshnessPolicy.time_window(
    fail_window=timedelta(hours=2, minutes=15), warn_window=timedelta(hours=1, minutes=15)
)


class VisitsCheckpointConfig(Config):
    """How a checkpoint run finds new files; where they are is the `visits_storage` resource."""

    reconcile: bool = Field(
        default=False,
        description="List the whole prefix against the ledger even when a notification queue "
        "is configured (the hourly schedule does, so a lost notification is caught).",
    )


def _locations(storage: VisitsStorageResource) -> Locations:
    try:
        return Locations.of(storage)
    except ValueError as error:  # misplaced state objects: no retry can fix the config
        raise Failure(description=str(error), allow_retries=False) from error


@contextmanager
def _as_failures(locations: Locations) -> Iterator[None]:
    """Corrupt state never heals on a retry; a checkpoint another run wrote first does."""
    try:
        yield
    except CorruptCheckpointError as error:
        raise Failure(
            description=f"{locations.checkpoint_uri} is corrupt ({error}); it was left untouched. "
            "Restore it from a version or move it aside to rebuild from the event files.",
            allow_retries=False,
        ) from error
    except ConcurrentCheckpointError as error:
        raise Failure(description=str(error), allow_retries=True) from error


def _previous_total(context: AssetExecutionContext) -> int | None:
    event = context.instance.get_latest_materialization_event(CHECKPOINT_KEY)
    if event is None or event.asset_materialization is None:
        return None
    value = event.asset_materialization.metadata.get("total_events")
    return None if value is None else int(value.value)


def _metrics(outcome: CheckpointOutcome) -> list[Metric]:
    """The seed's CloudWatch metrics, under the names its alarms and dashboards use."""
    return [
        Metric("NewEventsProcessed", outcome.new_events_processed),
        Metric("TotalEvents", outcome.total_events),
        Metric("EventsFailed", outcome.events_failed),
        Metric("ExecutionTime", outcome.execution_time_ms, unit="Milliseconds"),
        Metric("CheckpointFileSize", outcome.checkpoint_size_bytes, unit="Bytes"),
    ]


def _checkpoint_metadata(
    outcome: CheckpointOutcome, locations: Locations
) -> dict[str, MetadataValue | TableSchema | str | int | bool]:
    rejected = [
        {"key": r.key, "reason": r.reason} for r in outcome.rejections[:REJECTIONS_IN_METADATA]
    ]
    return {
        "new_events_processed": outcome.new_events_processed,
        "total_events": outcome.total_events,
        "events_failed": outcome.events_failed,
        "last_processed_timestamp": outcome.last_processed_timestamp or "",
        "execution_time_ms": outcome.execution_time_ms,
        "checkpoint_size_bytes": outcome.checkpoint_size_bytes,
        "objects_seen": outcome.objects_seen,
        "files_read": outcome.files_read,
        "files_valid": outcome.files_valid,
        "files_vanished": outcome.files_vanished,
        "notifications_deleted": outcome.notifications_deleted,
        "notifications_returned": outcome.notifications_returned,
        "duplicate_events": outcome.duplicate_events,
        "checkpoint_written": outcome.checkpoint_written,
        "first_run": outcome.first_run,
        "checkpoint_uri": MetadataValue.path(locations.checkpoint_uri),
        "checkpoint_bucket": locations.checkpoint_bucket,
        "checkpoint_key": locations.checkpoint_key,
        "ledger_uri": MetadataValue.path(locations.ledger_uri),
        "errors_uri": MetadataValue.path(outcome.errors_uri or "none: no file rejected"),
        "rejected_files": MetadataValue.json(rejected),
        "dagster/row_count": outcome.total_events,
        **CHECKPOINT_SCHEMA_METADATA,
        "preview": markdown_table(outcome.checkpoint.tail(10)),
    }


@asset(
    key=CHECKPOINT_KEY,
    group_name=VISITS_GROUP,
    kinds={"s3", "parquet"},
    owners=OWNERS,
    tags=VISITS_TAGS,
    metadata=CHECKPOINT_SCHEMA_METADATA,
    freshness_policy=CHECKPOINT_FRESHNESS,
    retry_policy=VISITS_RETRY_POLICY,
    check_specs=checkpoint_check_specs(CHECKPOINT_KEY),
)
def visit_events_checkpoint(
    context: AssetExecutionContext,
    config: VisitsCheckpointConfig,
    s3: ObjectStoreResource,
    metrics: CloudWatchMetricsResource,
    visits_storage: VisitsStorageResource,
) -> MaterializeResult:
    """Every distinct visit event ever logged (all versions of each visit), as one Parquet file.

    Incremental by object identity: only event files whose (key, ETag) the ledger has not seen
    are fetched, so late and out-of-order arrivals and corrected re-uploads are never missed.
    """
    locations = _locations(visits_storage)
    previous_total = _previous_total(context)
    with _as_failures(locations):
        outcome = run_checkpoint(
            s3,
            locations,
            run_id=context.run.run_id,
            max_workers=visits_storage.max_workers,
            log=context.log.info,
            sqs=(
                sharing_session(NotificationQueueResource, s3).get_client()
                if locations.notification_queue_url
                else None
            ),
            reconcile=config.reconcile,
            notification_clock_margin_s=visits_storage.notification_clock_margin_seconds,
            notification_visibility_s=visits_storage.notification_visibility_seconds,
        )
    for rejection in outcome.rejections:
        context.log.warning(
            f"Rejected s3://{locations.source_bucket}/{rejection.key}: {rejection.reason}"
        )
    metrics.put(METRICS_NAMESPACE_VISITS, _metrics(outcome))
    return MaterializeResult(
        metadata=_checkpoint_metadata(outcome, locations),
        check_results=checkpoint_checks(outcome, previous_total),
    )


def _write_parquet(s3: ObjectStoreResource, bucket: str, key: str, frame: pd.DataFrame) -> int:
    sink = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), sink, compression="snappy")
    s3.put_bytes(bucket, key, sink.getvalue(), PARQUET_CONTENT_TYPE)
    return sink.tell()


ANALYTICS = {
    LATEST_KEY: (
        "latest_visit_events",
        latest_event_per_visit,
        "The newest event of each visit (ptid, visit_date, visit_number): its most complete "
        "state, for analysts who want one row per visit.",
    ),
    MONTHLY_KEY: (
        "monthly_not_pass_qc_by_center",
        monthly_not_pass_qc_by_center,
        "Not-pass-QC events per center and visit month, for the monthly error report.",
    ),
    QC_DAYS_KEY: (
        "avg_days_to_qc_by_center",
        average_days_to_qc_by_center,
        "Average calendar days (UTC) from visit date to QC outcome per center: QC turnaround.",
    ),
}


@multi_asset(
    specs=[
        AssetSpec(
            key,
            group_name=VISITS_GROUP,
            deps=[CHECKPOINT_KEY],
            description=desc,
            kinds={"s3", "parquet"},
            owners=OWNERS,
            tags=VISITS_TAGS,
            metadata=column_schema_metadata(ANALYTICS_SCHEMAS[name], COLUMN_DESCRIPTIONS),
        )
        for key, (name, _, desc) in ANALYTICS.items()
    ],
    name="visit_analytics",
    retry_policy=VISITS_RETRY_POLICY,
    can_subset=True,
)
def visit_analytics(
    context: AssetExecutionContext, s3: ObjectStoreResource, visits_storage: VisitsStorageResource
) -> Iterator[MaterializeResult]:
    """The seed's three queries over the checkpoint, each kept as Parquet beside it."""
    locations = _locations(visits_storage)
    with _as_failures(locations):
        events = read_checkpoint(s3, locations)
    if events is None:
        raise Failure(
            description=f"No checkpoint at {locations.checkpoint_uri}: materialise "
            "visit_events_checkpoint first",
            allow_retries=False,
        )
    for key in sorted(context.selected_asset_keys, key=lambda k: k.to_user_string()):
        name, query, _ = ANALYTICS[key]
        result = query(events)
        object_key = locations.analytics_key(name)
        size = _write_parquet(s3, locations.checkpoint_bucket, object_key, result)
        yield MaterializeResult(
            asset_key=key,
            metadata={
                "dagster/row_count": len(result),
                **column_schema_metadata(ANALYTICS_SCHEMAS[name], COLUMN_DESCRIPTIONS),
                "s3_uri": MetadataValue.path(f"s3://{locations.checkpoint_bucket}/{object_key}"),
                "size_bytes": size,
                "source_events": len(events),
                "preview": markdown_table(result),
            },
        )
