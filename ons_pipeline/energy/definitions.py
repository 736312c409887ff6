"""Everything the energy asset group contributes to the code location."""

from dagster import Definitions

from ons_pipeline.energy.assets import influxdb_points, timestream_records
from ons_pipeline.energy.jobs import energy_load_job
from ons_pipeline.energy.sensors import energy_object_sensor
from ons_pipeline.platform.metadata import with_code_references

defs = Definitions(
    assets=with_code_references([influxdb_points, timestream_records]),
    jobs=[energy_load_job],
    sensors=[energy_object_sensor],
)
