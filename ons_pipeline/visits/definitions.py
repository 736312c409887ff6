"""Everything the visits asset group contributes to the code location."""

from __future__ import annotations

from dagster import Definitions

from ons_pipeline.platform.metadata import with_code_references
from ons_pipeline.visits.assets import visit_analytics, visit_events_checkpoint
from ons_pipeline.visits.jobs import visits_job
from ons_pipeline.visits.schedules import visits_hourly_schedule
from ons_pipeline.visits.sensors import visit_events_sensor

defs = Definitions(
    assets=with_code_references([visit_events_checkpoint, visit_analytics]),
    jobs=[visits_job],
    schedules=[visits_hourly_schedule],
    sensors=[visit_events_sensor],
)
