"""Names shared by the resources, the groups, the local stack and deploy/: each defined here once.

Each value is the local default; production overrides it through the environment variable
named beside it (`resources/settings.py`, README "Configuration").
"""

from __future__ import annotations

from typing import Final

from ons_pipeline.energy.schema import DATASET_PREFIX
from ons_pipeline.sales.schema import SOURCE_COLUMNS, STAR_SCHEMAS

AWS_REGION: Final = "eu-west-2"

INGESTION_BUCKET: Final = "ons-ingestion"  # ONS_INGESTION_BUCKET
PROCESSED_BUCKET: Final = "ons-processed"  # ONS_PROCESSED_BUCKET
EVENTS_BUCKET: Final = "ons-visit-events"  # ONS_EVENTS_BUCKET
CHECKPOINT_BUCKET: Final = "ons-checkpoints"  # ONS_CHECKPOINT_BUCKET
LAUNCHER_PAYLOAD_BUCKET: Final = "ons-launcher-payloads"  # ONS_LAUNCHER_PAYLOAD_BUCKET
ALL_BUCKETS: Final = (
    INGESTION_BUCKET,
    PROCESSED_BUCKET,
    EVENTS_BUCKET,
    CHECKPOINT_BUCKET,
    LAUNCHER_PAYLOAD_BUCKET,
)

EVENTS_QUEUE_NAME: Final = "ons-visit-events-created"  # ONS_EVENTS_QUEUE_URL holds its URL
EVENTS_PREFIX: Final = "logs/"
# New processed energy objects are announced here; ONS_ENERGY_QUEUE_URL holds its URL.
ENERGY_QUEUE_NAME: Final = "ons-energy-objects-created"
ENERGY_PREFIX: Final = DATASET_PREFIX  # energy/schema.py is its home (a pure module)

SSM_PREFIX: Final = "/ons_pipeline"  # ONS_SSM_PREFIX

# Content type of every Parquet object the pipelines write.
PARQUET_CONTENT_TYPE: Final = "application/vnd.apache.parquet"

# The run-worker Lambda (deploy/terraform) and the local endpoint that stands in for it.
LAMBDA_RUN_WORKER_FUNCTION: Final = "ons-run-worker"  # ONS_LAMBDA_FUNCTION
LAMBDA_TIMEOUT_SECONDS: Final = 900  # Lambda's maximum; longer jobs are routed elsewhere
LAMBDA_MEMORY_MB: Final = 3008
LAMBDA_ENDPOINT_URL_ENV: Final = "ONS_LAMBDA_ENDPOINT_URL"  # set by the local stack only
# The local endpoint runs code only for callers that send the stack's secret in this header.
LAMBDA_ENDPOINT_SECRET_ENV: Final = "ONS_LAMBDA_ENDPOINT_SECRET"  # local stack only
LAMBDA_ENDPOINT_SECRET_HEADER: Final = "X-Ons-Lambda-Secret"
ALERT_TOPIC_NAME: Final = "ons-pipeline-alerts"  # ONS_ALERT_TOPIC_ARN holds the full ARN

# CloudWatch namespaces of the custom metrics (alarms in deploy/terraform watch them).
METRICS_NAMESPACE_SALES: Final = "ONS/Sales"
METRICS_NAMESPACE_INFLUXDB: Final = "ONS/InfluxDB"
METRICS_NAMESPACE_TIMESTREAM: Final = "ONS/Timestream"
METRICS_NAMESPACE_VISITS: Final = "ONS/Visits"
METRICS_NAMESPACE_PIPELINE: Final = "ONS/Pipeline"

TIMESTREAM_DATABASE: Final = "ons_energy"  # TIMESTREAM_DATABASE
TIMESTREAM_TABLES: Final = ("generation", "consumption", "transmission")

INFLUXDB_ORG: Final = "ons-energy"  # INFLUXDB_ORG
INFLUXDB_BUCKETS: Final = ("generation_data", "consumption_data", "transmission_data")

# The sales contract's tables, in its order (sales/schema.py is their home).
SOURCE_TABLES: Final = tuple(SOURCE_COLUMNS)
STAR_TABLES: Final = tuple(STAR_SCHEMAS)


def local_alert_topic_arn(region: str = AWS_REGION) -> str:
    """The ARN moto gives the alert topic (account 123456789012)."""
    return f"arn:aws:sns:{region}:123456789012:{ALERT_TOPIC_NAME}"
