"""Where each group keeps its data: buckets, prefixes, queues and state locations.

One `ConfigurableResource` per group, holding names only; the I/O goes through
`ObjectStoreResource`, `ParameterStoreResource` and `NotificationQueueResource`.
"""

from __future__ import annotations

from dagster import ConfigurableResource
from pydantic import Field

from ons_pipeline.resources import defaults, settings


class SalesStorageResource(ConfigurableResource):
    """Where the sales pipeline reads packets, writes the star schema and keeps its state."""

    ingestion_bucket: str = Field(description="Bucket the ToteSys JSONL packets land in.")
    processed_bucket: str = Field(description="Bucket the star-schema Parquet is written to.")
    ssm_prefix: str = Field(
        default=settings.default("ONS_SSM_PREFIX"),
        description="Parameter Store prefix for packet counters (ONS_SSM_PREFIX).",
    )
    state_prefix: str = Field(
        default="_state/sales",
        description="Prefix in the processed bucket for the raw history and star snapshots.",
    )
    quarantine_prefix: str = Field(
        default="quarantine/sales", description="Prefix in the processed bucket for bad rows."
    )

    def last_packet_parameter(self, table: str) -> str:
        return f"{self.ssm_prefix}/sales/last_packet/{table}"

    def output_sequence_parameter(self, star_table: str) -> str:
        return f"{self.ssm_prefix}/sales/output_sequence/{star_table}"


class EnergyStorageResource(ConfigurableResource):
    """Where the energy loads read processed Parquet and put quarantined rows."""

    processed_bucket: str = Field(description="Bucket the processed energy Parquet lands in.")
    quarantine_prefix: str = Field(
        default="quarantine/energy",
        description="Prefix in the processed bucket for rejected rows, per store and object.",
    )
    notification_queue_url: str | None = Field(
        default=None,
        description="SQS queue receiving the processed bucket's ObjectCreated notifications "
        "for `dataset=` objects. When set, the sensor reads new objects from it (O(new)) and "
        "lists the bucket only to reconcile; unset, every tick lists.",
    )
    reconcile_interval_seconds: float = Field(
        default=3600.0,
        ge=0,
        description="How often the sensor lists the `dataset=` prefixes to catch an object "
        "whose notification was lost (also on its first tick).",
    )

    sinks: str = Field(
        default=settings.default("ONS_ENERGY_SINKS"),
        description="Stores the energy loads write (ONS_ENERGY_SINKS): `timestream,influxdb` "
        "while both run, `influxdb` after cutover, `timestream` to roll back.",
    )

    migration_export: str = Field(
        default=settings.default("ONS_MIGRATION_EXPORT"),
        description="How the migration exports a window (ONS_MIGRATION_EXPORT): `unload` "
        "(UNLOAD to S3 as Parquet) or `query` (Query API pages, the fallback).",
    )
    export_bucket: str | None = Field(
        default=None,
        description="Bucket for UNLOAD exports (ONS_MIGRATION_EXPORT_BUCKET); unset: the "
        "processed bucket.",
    )
    export_prefix: str = Field(
        default=settings.default("ONS_MIGRATION_EXPORT_PREFIX"),
        description="Prefix for UNLOAD exports (ONS_MIGRATION_EXPORT_PREFIX); a window's "
        "objects are deleted once it is validated, and a lifecycle rule expires the rest.",
    )

    def quarantine_key(self, store: str, key: str) -> str:
        return f"{self.quarantine_prefix}/{store}/{key}"

    def writes(self, store: str) -> bool:
        """Whether the loads write `store`.

        Raises:
            ValueError: `sinks` names no store or one that does not exist.
        """
        names = {name.strip() for name in self.sinks.split(",") if name.strip()}
        if not names or not names <= {"timestream", "influxdb"}:
            raise ValueError(
                f"ONS_ENERGY_SINKS={self.sinks!r}: expected `timestream,influxdb`, `influxdb` "
                "or `timestream`"
            )
        return store in names


class VisitsStorageResource(ConfigurableResource):
    """The visits locations (the seed's Lambda event fields): runs, sensor, analytics read them."""

    source_bucket: str = Field(description="Bucket the visit-event JSON files land in.")
    prefix: str = Field(
        default=defaults.EVENTS_PREFIX, description="Prefix of the event files in the bucket."
    )
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
