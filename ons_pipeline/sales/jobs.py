"""The sales job: every sales asset, packets in, star schema out."""

from __future__ import annotations

from dagster import AssetSelection, define_asset_job

sales_job = define_asset_job(
    "sales_star_schema_job",
    selection=AssetSelection.groups("sales"),
    description="ToteSys packets from the ingestion bucket to the star schema in Parquet.",
    tags={"ons/group": "sales"},
)
