"""Where the visits pipeline reads visit events and keeps its checkpoint."""

from __future__ import annotations

from dagster import ConfigurableResource
from pydantic import Field


class VisitsStorageResource(ConfigurableResource):
    """The visits locations (the seed's Lambda event fields): runs, sensor, analytics read them."""

    source_bucket: str = Field(description="Bucket the visit-event JSON files land in.")
    prefix: str = Field(default="logs/", description="Prefix of the event files in the bucket.")
    checkpoint_bucket: str = Field(description="Bucket the checkpoint and its ledger live in.")
    checkpoint_key: str = Field(
        default="checkpoints/events.parquet",
        description="Key of the checkpoint Parquet; the ledger, errors and analytics sit "
        "beside it.",
    )
    notification_queue_url: str | None = Field(
        default=None,
        description="SQS queue receiving the event bucket's ObjectCreated notifications. When "
        "set, incremental runs take new files from it (O(new)) instead of listing the prefix; "
        "the first run and reconciliation runs still list.",
    )
    notification_clock_margin_seconds: float = Field(
        default=60.0,
        ge=0,
        description="After a listing run, queued notifications SQS accepted more than this "
        "long before the listing began are deleted as covered by it; newer ones are kept. "
        "Allows for SQS's clock running ahead of this host's.",
    )
    notification_visibility_seconds: int = Field(
        default=900,
        ge=0,
        le=43_200,
        description="How long received notifications stay hidden while a run works on them. "
        "A failing run hands them back at once; only a killed worker leaves them hidden this "
        "long (the hourly reconcile lists the prefix meanwhile). Keep it above a run's length.",
    )
    max_workers: int = Field(
        default=32, description="Concurrent GETs of new event files (botocore pool size is 32)."
    )
