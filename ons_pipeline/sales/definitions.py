"""Everything the sales asset group contributes to the code location."""

from __future__ import annotations

from dagster import Definitions

from ons_pipeline.platform.metadata import with_code_references
from ons_pipeline.sales.assets import sales_star_schema, totesys_raw
from ons_pipeline.sales.checks import fact_foreign_keys_exist
from ons_pipeline.sales.jobs import sales_job, sales_packets_job
from ons_pipeline.sales.sensors import totesys_packet_sensor

defs = Definitions(
    assets=with_code_references([totesys_raw, sales_star_schema]),
    asset_checks=[fact_foreign_keys_exist],
    jobs=[sales_job, sales_packets_job],
    sensors=[totesys_packet_sensor],
)
