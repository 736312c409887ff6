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

# The seed's trigger payload, as the launchpad of `sales_packets_job` opens with it. Packet 1
# of sales_order always exists, and re-processing a packet is absorbed once.
EXAMPLE_PACKETS_CONFIG = {
    "ops": {"totesys_raw": {"config": {"packets": [{"table": "sales_order", "id": 1}]}}}
}

sales_packets_job = define_asset_job(
    "sales_packets_job",
    selection=AssetSelection.groups("sales"),
    description='Re-process the ToteSys packets you name (the seed\'s `{"packets": [...]}` '
    "payload); the launchpad opens with an example to edit.",
    tags={"ons/group": "sales"},
    config=EXAMPLE_PACKETS_CONFIG,
)
