"""Every resource the code location uses, and the one place their settings are read."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    from collections.abc import Mapping

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


def _env_setting(
    env: Mapping[str, str], literal: bool, name: str, default: str, *aliases: str
) -> Any:
    """The first of `name`, `aliases` that `env` sets (`EnvVar`, or its value when `literal`).

    Aliases are the seeds' spellings (seed 000's `TIMESTREAM_DATABASE_NAME`).
    """
    for candidate in (name, *aliases):
        if env.get(candidate):
            return env[candidate] if literal else EnvVar(candidate)
    return default


def _backoff(env: Mapping[str, str]) -> dict[str, float]:
    """`backoff_seconds` from `ONS_RETRY_BACKOFF_SECONDS` when set (tests: 0), else the default."""
    value = env.get("ONS_RETRY_BACKOFF_SECONDS")
    return {"backoff_seconds": float(value)} if value else {}


def default_resources(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Resources for the local stack and production alike: only the environment differs.

    From the process environment (default), settings are `EnvVar`s; endpoint and region come
    from boto3's own `AWS_ENDPOINT_URL` / `AWS_REGION` and credentials from the standard AWS
    chain, never from config. From an explicit `environ` (the local stack's, for the demo's
    in-process runs) every value is taken from that mapping, the AWS endpoint and credentials
    included, so the process environment is neither read nor changed.
    """
    literal = environ is not None
    env: Mapping[str, str] = os.environ if environ is None else environ

    def _setting(name: str, default: str, *aliases: str) -> Any:
        return _env_setting(env, literal, name, default, *aliases)

    def _secret(name: str) -> Any:
        """Secrets only through `EnvVar` from the process environment (never a literal there)."""
        if not env.get(name):
            return None
        return env[name] if literal else EnvVar(name)

    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
    aws: dict[str, Any] = {"region_name": region or defaults.AWS_REGION}
    if literal:
        aws |= {
            "endpoint_url": env.get("AWS_ENDPOINT_URL"),
            "aws_access_key_id": env.get("AWS_ACCESS_KEY_ID"),
            "aws_secret_access_key": env.get("AWS_SECRET_ACCESS_KEY"),
        }
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
            max_retries=int(env.get("MAX_RETRIES") or 3),
            **_backoff(env),
            max_batch_size=int(env.get("TIMESTREAM_MAX_BATCH_SIZE") or 100),
        ),
        "influxdb": InfluxDBResource(
            **aws,
            url=_setting("INFLUXDB_URL", "http://127.0.0.1:8187"),
            org=_setting("INFLUXDB_ORG", defaults.INFLUXDB_ORG),
            # The token only through EnvVar; otherwise from Secrets Manager by name (seed 001).
            token=_secret("INFLUXDB_TOKEN"),
            token_secret_name=_setting("INFLUXDB_TOKEN_SECRET_NAME", "ons/influxdb/token"),
            query_url=_setting("INFLUXDB_QUERY_URL", "") or None,
            # InfluxQL reads from a 1.x influxd log in as its user (the local stack's).
            query_username=_setting("INFLUXDB_QUERY_USERNAME", "") or None,
            query_password=_secret("INFLUXDB_QUERY_PASSWORD"),
            bucket=_setting("INFLUXDB_BUCKET", "") or None,
            max_batch_size=int(env.get("MAX_BATCH_SIZE") or 5000),
            max_retries=int(env.get("MAX_RETRIES") or 3),
            write_concurrency=int(env.get("INFLUXDB_WRITE_CONCURRENCY") or 4),
            gzip_level=_setting("INFLUXDB_GZIP_LEVEL", "auto"),
            enable_validation=env.get("ENABLE_VALIDATION", "true").lower() != "false",
            drop_invalid_records=env.get("DROP_INVALID_RECORDS", "true").lower() != "false",
            **_backoff(env),
        ),
    }
