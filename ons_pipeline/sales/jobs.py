"""The sales job: every sales asset, packets in, star schema out."""

from __future__ import annotations

from dagster import AssetSelection, define_asset_job

sales_job = define_asset_job(
    "sales_star_schema_job",
    selection=AssetSelection.groups("sales"),
    description="ToteSys packets from the ingestion bucket to the star schema in Parquet.",
    # One sales run at a time through the run queue (deploy/dagster.yaml limits this tag to
    # 1); runs that bypass the queue are still serialised by the manifest's conditional write.
    tags={"ons/group": "sales", "ons/serial": "sales_state"},
)
