"""S3-arrival sensor: event files the ledger has not seen become one checkpoint run.

Visit-event keys sort by action and event time, not arrival, so a `StartAfter` cursor would
skip late files; the sensor compares the listing with the ledger instead. A tick costs one
listing of the prefix and one GET of the ledger, never a GET per event file.
"""

from __future__ import annotations

import hashlib

from dagster import (
    DagsterRunStatus,
    RunRequest,
    RunsFilter,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from ons_pipeline.resources import ObjectStoreResource
from ons_pipeline.resources.storage import VisitsStorageResource
from ons_pipeline.visits.jobs import visits_job
from ons_pipeline.visits.schedules import DEFAULT_SENSOR_STATUS
from ons_pipeline.visits.storage import Locations, pending_objects

IN_FLIGHT = [
    DagsterRunStatus.QUEUED,
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
]


@sensor(
    job=visits_job,
    minimum_interval_seconds=120,
    default_status=DEFAULT_SENSOR_STATUS,
    description="Starts the visits checkpoint when event files the ledger has not seen land.",
)
def visit_events_sensor(
    context: SensorEvaluationContext, s3: ObjectStoreResource, visits_storage: VisitsStorageResource
) -> SensorResult | SkipReason:
    locations = Locations.of(visits_storage)
    pending, listed = pending_objects(s3, locations)
    where = f"s3://{locations.source_bucket}/{locations.prefix}"
    if not pending:
        return SkipReason(f"No new event files in {where} ({listed} listed, all in the ledger)")
    running = context.instance.get_runs_count(
        RunsFilter(job_name=visits_job.name, statuses=IN_FLIGHT)
    )
    if running:
        return SkipReason(
            f"{len(pending)} new event files wait for the checkpoint run already in progress"
        )
    # The same pending set asks for one run only; a failed run is retried by its RetryPolicy
    # and then by the hourly schedule, not by every tick.
    digest = hashlib.sha256(
        "\n".join(f"{key}\t{etag}" for key, etag in sorted(pending.items())).encode()
    ).hexdigest()[:32]
    context.log.info(f"{len(pending)} new event files of {listed} listed in {where}")
    return SensorResult(
        run_requests=[
            RunRequest(
                run_key=f"visit-events-{digest}",  # the run reads the same `visits_storage`
                tags={"ons/new_event_files": str(len(pending))},
            )
        ],
        cursor=digest,
    )
