"""The visits job: the checkpoint and the analytics built on it."""

from __future__ import annotations

from dagster import AssetSelection, define_asset_job

visits_job = define_asset_job(
    "visits_checkpoint_job",
    selection=AssetSelection.groups("visits"),
    description="New visit-event files into the checkpoint Parquet, then the analytics.",
    tags={"ons/group": "visits"},
)
