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

__all__ = [
    "AlertsResource",
    "CloudWatchMetricsResource",
    "Metric",
    "ObjectStoreResource",
    "ParameterStoreResource",
    "SalesStorageResource",
    "build_client",
    "default_resources",
]


def _setting(name: str, default: str) -> Any:
    """`EnvVar(name)` when the environment sets it (resolved at run time), else the default."""
    return EnvVar(name) if os.environ.get(name) else default


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
    }
