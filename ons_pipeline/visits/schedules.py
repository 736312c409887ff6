"""Hourly checkpoint run: the seed's Lambda cadence, a safety net under the sensor."""

from __future__ import annotations

from dagster import DefaultScheduleStatus, ScheduleDefinition

from ons_pipeline.visits.jobs import visits_job

visits_hourly_schedule = ScheduleDefinition(
    name="visits_checkpoint_hourly",
    job=visits_job,
    cron_schedule="0 * * * *",
    execution_timezone="UTC",
    default_status=DefaultScheduleStatus.STOPPED,
    description="Runs the visits checkpoint every hour; a run with nothing new writes nothing.",
)
