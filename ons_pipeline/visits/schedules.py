"""Hourly checkpoint run: the seed's Lambda cadence, a safety net under the sensor."""

from __future__ import annotations

from dagster import DefaultScheduleStatus, DefaultSensorStatus, ScheduleDefinition

from ons_pipeline.resources import settings
from ons_pipeline.visits.jobs import visits_job


def automation_running() -> bool:
    """Whether the hourly reconcile and the sensor start RUNNING (`ONS_VISITS_AUTOMATION`).

    RUNNING by default: the hourly listing is what catches a lost S3 notification, so a
    deployment that forgot to switch it on would lose events silently for good. The local
    stack's `.env` sets `stopped`, so `dagster dev` on a laptop starts nothing by itself.
    """
    return settings.read("ONS_VISITS_AUTOMATION") == "running"


DEFAULT_SENSOR_STATUS = (
    DefaultSensorStatus.RUNNING if automation_running() else DefaultSensorStatus.STOPPED
)

visits_hourly_schedule = ScheduleDefinition(
    name="visits_checkpoint_hourly",
    job=visits_job,
    cron_schedule="0 * * * *",
    execution_timezone="UTC",
    default_status=DefaultScheduleStatus.RUNNING
    if automation_running()
    else DefaultScheduleStatus.STOPPED,
    run_config={"ops": {"visit_events_checkpoint": {"config": {"reconcile": True}}}},
    description="Every hour, a checkpoint run that lists the whole prefix against the ledger: "
    "the seed's cadence, and the net under the sensor and the notification queue.",
)
