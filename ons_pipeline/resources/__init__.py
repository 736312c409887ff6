"""Every resource the code location uses, and the one place their settings are read."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ons_pipeline.resources import defaults, settings
from ons_pipeline.resources.aws import (
    AlertsResource,
    CloudWatchMetricsResource,
    Metric,
    NotificationQueueResource,
    ObjectStoreResource,
    ParameterStoreResource,
    build_client,
)
from ons_pipeline.resources.influxdb import InfluxDBResource
from ons_pipeline.resources.settings import SettingError
from ons_pipeline.resources.storage import (
    EnergyStorageResource,
    SalesStorageResource,
    VisitsStorageResource,
)
from ons_pipeline.resources.timestream import TimestreamResource

if TYPE_CHECKING:
    from collections.abc import Mapping

    from dagster import ConfigurableResource

__all__ = [
    "AlertsResource",
    "CloudWatchMetricsResource",
    "EnergyStorageResource",
    "InfluxDBResource",
    "Metric",
    "NotificationQueueResource",
    "ObjectStoreResource",
    "ParameterStoreResource",
    "SalesStorageResource",
    "SettingError",
    "TimestreamResource",
    "VisitsStorageResource",
    "build_client",
    "default_resources",
]


def default_resources(
    environ: Mapping[str, str] | None = None,
) -> dict[str, ConfigurableResource]:
    """Resources for the local stack and production alike: only the environment differs.

    Every value comes from the settings table (`resources/settings.py`). From the process
    environment (the default), text settings and secrets are `EnvVar`s; endpoint and region
    come from boto3's own `AWS_ENDPOINT_URL` / `AWS_REGION` and credentials from the standard
    AWS chain, never from config. From an explicit `environ` (the local stack's, for the
    demo's in-process runs) every value is taken from that mapping, the AWS endpoint and
    credentials included, so the process environment is neither read nor changed.

    Raises:
        SettingError: a numeric or boolean variable holds something else.
    """

    def value(name: str, default: Any = None) -> Any:
        return settings.config(name, default=default, env=environ)

    region: str = settings.read("AWS_REGION", environ)
    aws: dict[str, Any] = {"region_name": region}
    if environ is not None:
        aws |= {
            "endpoint_url": environ.get("AWS_ENDPOINT_URL"),
            "aws_access_key_id": environ.get("AWS_ACCESS_KEY_ID"),
            "aws_secret_access_key": environ.get("AWS_SECRET_ACCESS_KEY"),
        }
    backoff = settings.read("ONS_RETRY_BACKOFF_SECONDS", environ)
    retries = {
        "max_retries": value("MAX_RETRIES"),
        **({"backoff_seconds": backoff} if backoff is not None else {}),
    }
    return {
        "s3": ObjectStoreResource(**aws),
        "ssm": ParameterStoreResource(**aws),
        "sqs": NotificationQueueResource(**aws),
        "metrics": CloudWatchMetricsResource(**aws),
        "alerts": AlertsResource(
            **aws,
            topic_arn=value("ONS_ALERT_TOPIC_ARN", defaults.local_alert_topic_arn(region)),
        ),
        "sales_storage": SalesStorageResource(
            ingestion_bucket=value("ONS_INGESTION_BUCKET"),
            processed_bucket=value("ONS_PROCESSED_BUCKET"),
            ssm_prefix=value("ONS_SSM_PREFIX"),
        ),
        "visits_storage": VisitsStorageResource(
            source_bucket=value("ONS_EVENTS_BUCKET"),
            checkpoint_bucket=value("ONS_CHECKPOINT_BUCKET"),
            notification_queue_url=value("ONS_EVENTS_QUEUE_URL"),
        ),
        "energy_storage": EnergyStorageResource(
            processed_bucket=value("ONS_PROCESSED_BUCKET"),
            notification_queue_url=value("ONS_ENERGY_QUEUE_URL"),
            sinks=value("ONS_ENERGY_SINKS"),
            migration_export=value("ONS_MIGRATION_EXPORT"),
            export_bucket=value("ONS_MIGRATION_EXPORT_BUCKET"),
            export_prefix=value("ONS_MIGRATION_EXPORT_PREFIX"),
        ),
        "timestream": TimestreamResource(
            **aws,
            database=value("TIMESTREAM_DATABASE"),
            generation_table=value("GENERATION_TABLE_NAME"),
            consumption_table=value("CONSUMPTION_TABLE_NAME"),
            transmission_table=value("TRANSMISSION_TABLE_NAME"),
            max_batch_size=value("TIMESTREAM_MAX_BATCH_SIZE"),
            **retries,
        ),
        "influxdb": InfluxDBResource(
            **aws,
            url=value("INFLUXDB_URL"),
            org=value("INFLUXDB_ORG"),
            # Secrets only ever as EnvVar; unset, the token comes from Secrets Manager.
            token=value("INFLUXDB_TOKEN"),
            token_secret_name=value("INFLUXDB_TOKEN_SECRET_NAME"),
            query_url=value("INFLUXDB_QUERY_URL"),
            # InfluxQL reads from a 1.x influxd log in as its user (the local stack's).
            query_username=value("INFLUXDB_QUERY_USERNAME"),
            query_password=value("INFLUXDB_QUERY_PASSWORD"),
            bucket=value("INFLUXDB_BUCKET"),
            max_batch_size=value("MAX_BATCH_SIZE"),
            write_concurrency=value("INFLUXDB_WRITE_CONCURRENCY"),
            gzip_level=value("INFLUXDB_GZIP_LEVEL"),
            enable_validation=value("ENABLE_VALIDATION"),
            drop_invalid_records=value("DROP_INVALID_RECORDS"),
            **retries,
        ),
    }
