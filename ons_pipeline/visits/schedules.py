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
    run_config={"ops": {"visit_events_checkpoint": {"config": {"reconcile": True}}}},
    description="Every hour, a checkpoint run that lists the whole prefix against the ledger: "
    "the seed's cadence, and the net under the sensor and the notification queue.",
)
