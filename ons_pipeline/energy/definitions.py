"""Everything the energy asset group contributes to the code location."""

from dagster import Definitions

from ons_pipeline.energy.assets import influxdb_points, timestream_records
from ons_pipeline.energy.jobs import energy_load_job
from ons_pipeline.energy.sensors import energy_object_sensor

defs = Definitions(
    assets=[influxdb_points, timestream_records],
    jobs=[energy_load_job],
    sensors=[energy_object_sensor],
)
