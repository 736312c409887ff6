"""The S3-arrival sensor over several ticks against moto over HTTP, ledger-driven."""

from __future__ import annotations

import uuid
from typing import Any

import boto3
import pytest
from dagster import (
    DagsterInstance,
    DagsterRun,
    DagsterRunStatus,
    SensorResult,
    SkipReason,
    build_sensor_context,
    materialize,
)

from ons_pipeline.local.demo.visits_data import EventFile, land_files, synthetic_files
from ons_pipeline.resources import CloudWatchMetricsResource, ObjectStoreResource
from ons_pipeline.resources.storage import VisitsStorageResource
from ons_pipeline.visits.assets import visit_events_checkpoint
from ons_pipeline.visits.schedules import visits_hourly_schedule
from ons_pipeline.visits.sensors import visit_events_sensor

pytestmark = pytest.mark.integration

REGION = "eu-west-2"


@pytest.fixture
def setup(stack_env: dict[str, str]) -> dict[str, Any]:
    suffix = uuid.uuid4().hex[:10]
    s3 = boto3.client("s3", region_name=REGION)
    source, state = f"sensor-events-{suffix}", f"sensor-state-{suffix}"
    for bucket in (source, state):
        s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
    resources = {
        "s3": ObjectStoreResource(region_name=REGION),
        "metrics": CloudWatchMetricsResource(region_name=REGION),
        "visits_storage": VisitsStorageResource(source_bucket=source, checkpoint_bucket=state),
    }
    return {"client": s3, "source": source, "resources": resources}


def tick(setup: dict[str, Any], instance: DagsterInstance, cursor: str | None) -> Any:
    context = build_sensor_context(instance=instance, cursor=cursor, resources=setup["resources"])
    return visit_events_sensor(context)


def test_sensor_requests_runs_for_objects_the_ledger_has_not_seen(setup: dict[str, Any]) -> None:
    instance = DagsterInstance.ephemeral()
    first = tick(setup, instance, None)
    assert isinstance(first, SkipReason)
    assert "No new event files" in (first.skip_message or "")

    files = synthetic_files(5)
    land_files(setup["client"], setup["source"], files)
    second = tick(setup, instance, None)
    assert isinstance(second, SensorResult)
    (request,) = second.run_requests or []
    assert request.tags["ons/new_event_files"] == "5"
    # Where the run reads is the `visits_storage` resource alone, not a copy in run config.
    assert not request.run_config
    # The same waiting files ask for the same run: Dagster drops the duplicate run key.
    again = tick(setup, instance, second.cursor)
    assert isinstance(again, SensorResult)
    assert again.run_requests[0].run_key == request.run_key  # type: ignore[index]

    assert materialize(
        [visit_events_checkpoint], resources=setup["resources"], instance=instance
    ).success
    after_run = tick(setup, instance, second.cursor)
    assert isinstance(after_run, SkipReason)
    assert "5 listed" in (after_run.skip_message or "")

    # A late arrival whose key sorts before everything processed is still seen.
    late = EventFile("logs/0000-late/" + files[0].key.removeprefix("logs/"), files[1].body)
    land_files(setup["client"], setup["source"], [late])
    in_flight = DagsterRun(job_name="visits_checkpoint_job", status=DagsterRunStatus.STARTED)
    instance.add_run(in_flight)
    waiting = tick(setup, instance, second.cursor)
    assert isinstance(waiting, SkipReason)
    assert "already in progress" in (waiting.skip_message or "")
    instance.report_run_canceled(in_flight)

    fourth = tick(setup, instance, second.cursor)
    assert isinstance(fourth, SensorResult)
    assert fourth.run_requests[0].tags["ons/new_event_files"] == "1"  # type: ignore[index]
    assert fourth.run_requests[0].run_key != request.run_key  # type: ignore[index]


def test_hourly_schedule_targets_the_visits_job() -> None:
    assert visits_hourly_schedule.cron_schedule == "0 * * * *"
    assert visits_hourly_schedule.job_name == "visits_checkpoint_job"
