"""Everything the energy asset group contributes to the code location."""

from __future__ import annotations

from dagster import Definitions

from ons_pipeline.energy.assets import influxdb_points, timestream_records
from ons_pipeline.energy.jobs import energy_load_job
from ons_pipeline.energy.migration.assets import (
    blue_green_checks,
    energy_blue_green_daily,
    energy_blue_green_job,
    energy_migration_job,
    migration_assets,
)
from ons_pipeline.energy.sensors import energy_object_sensor
from ons_pipeline.platform.metadata import with_code_references

defs = Definitions(
    assets=with_code_references([influxdb_points, timestream_records, *migration_assets]),
    asset_checks=blue_green_checks,
    jobs=[energy_load_job, energy_migration_job, energy_blue_green_job],
    schedules=[energy_blue_green_daily],
    sensors=[energy_object_sensor],
)
