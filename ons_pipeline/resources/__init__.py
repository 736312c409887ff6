"""Every resource the code location uses, and the one place their settings are read."""

from __future__ import annotations

import os
from typing import Any

from dagster import EnvVar

from ons_pipeline.resources import defaults
from ons_pipeline.resources.aws import (
    AlertsResource,
    CloudWatchMetricsResource,
    Metric,
    ObjectStoreResource,
    ParameterStoreResource,
    SalesStorageResource,
    build_client,
)
from ons_pipeline.resources.influxdb import InfluxDBResource
from ons_pipeline.resources.timestream import EnergyStorageResource, TimestreamResource
from ons_pipeline.resources.visits import VisitsStorageResource

__all__ = [
    "AlertsResource",
    "CloudWatchMetricsResource",
    "EnergyStorageResource",
    "InfluxDBResource",
    "Metric",
    "ObjectStoreResource",
    "ParameterStoreResource",
    "SalesStorageResource",
    "TimestreamResource",
    "build_client",
    "default_resources",
]


def _setting(name: str, default: str, *aliases: str) -> Any:
    """`EnvVar` of the first of `name`, `aliases` the environment sets, else the default.

    Aliases are the seeds' spellings (seed 000's `TIMESTREAM_DATABASE_NAME`).
    """
    for candidate in (name, *aliases):
        if os.environ.get(candidate):
            return EnvVar(candidate)
    return default


def _backoff() -> dict[str, float]:
    """`backoff_seconds` from `ONS_RETRY_BACKOFF_SECONDS` when set (tests: 0), else the default."""
    value = os.environ.get("ONS_RETRY_BACKOFF_SECONDS")
    return {"backoff_seconds": float(value)} if value else {}


def default_resources() -> dict[str, Any]:
    """Resources for the local stack and production alike: only the environment differs.

    Endpoint and region come from boto3's own `AWS_ENDPOINT_URL` / `AWS_REGION`; credentials
    from the standard AWS chain, never from config.
    """
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    aws = {"region_name": region or defaults.AWS_REGION}
    return {
        "s3": ObjectStoreResource(**aws),
        "ssm": ParameterStoreResource(**aws),
        "metrics": CloudWatchMetricsResource(**aws),
        "alerts": AlertsResource(
            **aws,
            topic_arn=_setting(
                "ONS_ALERT_TOPIC_ARN", defaults.local_alert_topic_arn(aws["region_name"])
            ),
        ),
        "sales_storage": SalesStorageResource(
            ingestion_bucket=_setting("ONS_INGESTION_BUCKET", defaults.INGESTION_BUCKET),
            processed_bucket=_setting("ONS_PROCESSED_BUCKET", defaults.PROCESSED_BUCKET),
            ssm_prefix=_setting("ONS_SSM_PREFIX", defaults.SSM_PREFIX),
        ),
        "visits_storage": VisitsStorageResource(
            source_bucket=_setting("ONS_EVENTS_BUCKET", defaults.EVENTS_BUCKET),
            checkpoint_bucket=_setting("ONS_CHECKPOINT_BUCKET", defaults.CHECKPOINT_BUCKET),
            notification_queue_url=_setting("ONS_EVENTS_QUEUE_URL", "") or None,
        ),
        "energy_storage": EnergyStorageResource(
            processed_bucket=_setting("ONS_PROCESSED_BUCKET", defaults.PROCESSED_BUCKET),
            notification_queue_url=_setting("ONS_ENERGY_QUEUE_URL", "") or None,
            sinks=_setting("ONS_ENERGY_SINKS", "timestream,influxdb"),
            migration_export=_setting("ONS_MIGRATION_EXPORT", "unload"),
            export_bucket=_setting("ONS_MIGRATION_EXPORT_BUCKET", "") or None,
            export_prefix=_setting("ONS_MIGRATION_EXPORT_PREFIX", "exports/timestream"),
        ),
        "timestream": TimestreamResource(
            **aws,
            database=_setting(
                "TIMESTREAM_DATABASE", defaults.TIMESTREAM_DATABASE, "TIMESTREAM_DATABASE_NAME"
            ),
            generation_table=_setting("GENERATION_TABLE_NAME", "generation"),
            consumption_table=_setting("CONSUMPTION_TABLE_NAME", "consumption"),
            transmission_table=_setting("TRANSMISSION_TABLE_NAME", "transmission"),
            max_retries=int(os.environ.get("MAX_RETRIES") or 3),
            **_backoff(),
            max_batch_size=int(os.environ.get("TIMESTREAM_MAX_BATCH_SIZE") or 100),
        ),
        "influxdb": InfluxDBResource(
            **aws,
            url=_setting("INFLUXDB_URL", "http://127.0.0.1:8187"),
            org=_setting("INFLUXDB_ORG", defaults.INFLUXDB_ORG),
            # The token only through EnvVar; otherwise from Secrets Manager by name (seed 001).
            token=EnvVar("INFLUXDB_TOKEN") if os.environ.get("INFLUXDB_TOKEN") else None,
            token_secret_name=_setting("INFLUXDB_TOKEN_SECRET_NAME", "ons/influxdb/token"),
            query_url=_setting("INFLUXDB_QUERY_URL", "") or None,
            # InfluxQL reads from a 1.x influxd log in as its user (the local stack's).
            query_username=_setting("INFLUXDB_QUERY_USERNAME", "") or None,
            query_password=(
                EnvVar("INFLUXDB_QUERY_PASSWORD")
                if os.environ.get("INFLUXDB_QUERY_PASSWORD")
                else None
            ),
            bucket=_setting("INFLUXDB_BUCKET", "") or None,
            max_batch_size=int(os.environ.get("MAX_BATCH_SIZE") or 5000),
            max_retries=int(os.environ.get("MAX_RETRIES") or 3),
            write_concurrency=int(os.environ.get("INFLUXDB_WRITE_CONCURRENCY") or 4),
            gzip_level=_setting("INFLUXDB_GZIP_LEVEL", "auto"),
            enable_validation=os.environ.get("ENABLE_VALIDATION", "true").lower() != "false",
            drop_invalid_records=os.environ.get("DROP_INVALID_RECORDS", "true").lower() != "false",
            **_backoff(),
        ),
    }
