"""The energy job: both loads of one processed Parquet object (one partition).

Partitioned like its assets (by object key), so `dagster job backfill` works on it.
"""

from __future__ import annotations

from dagster import AssetSelection, define_asset_job

energy_load_job = define_asset_job(
    "energy_load_job",
    selection=AssetSelection.groups("energy"),
    description="Load one processed energy Parquet object into Timestream and InfluxDB.",
    tags={"ons/group": "energy"},
)
