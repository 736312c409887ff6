"""Bootstrap of the running local stack: what production's Terraform creates, made locally.

Buckets, queues and their notifications, the alert topic, Timestream's database and tables,
the InfluxDB token secret, the Parameter Store counters, influxd's admin user and the
InfluxDB buckets. Every step is safe to repeat and never overwrites what exists. Starting
and stopping the servers is `processes.py`'s business.
"""

from __future__ import annotations

import base64
import contextlib
import json
import urllib.error
import urllib.parse
import urllib.request
from typing import TYPE_CHECKING, Any

from ons_pipeline.local.processes import StackError
from ons_pipeline.resources import defaults
from ons_pipeline.resources.influxql import quote_identifier, quote_string

if TYPE_CHECKING:
    from pathlib import Path

AWS_FAKE_CREDENTIAL = "testing"
INFLUXDB_TOKEN_SECRET_NAME = "ons/influxdb/token"  # nosec B105  # a secret's name, not a secret
ALERT_EMAIL = "admin@example.com"
# Energy series are kept seven years, as in production.
INFLUXDB_RETENTION_SECONDS = 7 * 365 * 24 * 3600
INFLUXD_USER = "ons-admin"  # influxd's admin (1.x user, or 2.x onboarding user)


def boto3_client(moto_url: str, region: str, service: str) -> Any:
    """A boto3 client for the stack's moto server, independent of the environment."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        service,
        endpoint_url=moto_url,
        region_name=region,
        aws_access_key_id=AWS_FAKE_CREDENTIAL,
        aws_secret_access_key=AWS_FAKE_CREDENTIAL,
        config=Config(retries={"mode": "standard", "max_attempts": 3}),
    )


def announce_objects(s3: Any, sqs: Any, bucket: str, queue_name: str, prefix: str) -> str:
    """Send the bucket's ObjectCreated notifications under `prefix` to a queue; its URL.

    As deploy/terraform/sqs.tf does in AWS. Replaces the bucket's notification configuration.
    """
    queue_url = sqs.create_queue(QueueName=queue_name)["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    s3.put_bucket_notification_configuration(
        Bucket=bucket,
        NotificationConfiguration={
            "QueueConfigurations": [
                {
                    "QueueArn": queue_arn,
                    "Events": ["s3:ObjectCreated:*"],
                    "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": prefix}]}},
                }
            ]
        },
    )
    return str(queue_url)


def bootstrap_aws(moto_url: str, region: str, influxdb_token: str) -> None:
    """Every AWS resource the project expects, in the stack's moto server."""
    s3 = boto3_client(moto_url, region, "s3")
    existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
    for bucket in defaults.ALL_BUCKETS:
        if bucket in existing:
            continue
        try:
            s3.create_bucket(
                Bucket=bucket,
                CreateBucketConfiguration={"LocationConstraint": region},
            )
        except s3.exceptions.BucketAlreadyOwnedByYou:
            pass

    # New visit-event files and processed energy objects are announced on queues, so
    # incremental runs and the energy sensor skip the listing.
    sqs = boto3_client(moto_url, region, "sqs")
    announce_objects(
        s3, sqs, defaults.EVENTS_BUCKET, defaults.EVENTS_QUEUE_NAME, defaults.EVENTS_PREFIX
    )
    announce_objects(
        s3, sqs, defaults.PROCESSED_BUCKET, defaults.ENERGY_QUEUE_NAME, defaults.ENERGY_PREFIX
    )

    sns = boto3_client(moto_url, region, "sns")
    topic_arn = sns.create_topic(Name=defaults.ALERT_TOPIC_NAME)["TopicArn"]
    subscriptions = sns.list_subscriptions_by_topic(TopicArn=topic_arn)["Subscriptions"]
    if not any(s["Endpoint"] == ALERT_EMAIL for s in subscriptions):
        sns.subscribe(TopicArn=topic_arn, Protocol="email", Endpoint=ALERT_EMAIL)

    timestream = boto3_client(moto_url, region, "timestream-write")
    with contextlib.suppress(timestream.exceptions.ConflictException):
        timestream.create_database(DatabaseName=defaults.TIMESTREAM_DATABASE)
    for table in defaults.TIMESTREAM_TABLES:
        with contextlib.suppress(timestream.exceptions.ConflictException):
            timestream.create_table(DatabaseName=defaults.TIMESTREAM_DATABASE, TableName=table)

    secrets = boto3_client(moto_url, region, "secretsmanager")
    with contextlib.suppress(secrets.exceptions.ResourceExistsException):
        secrets.create_secret(Name=INFLUXDB_TOKEN_SECRET_NAME, SecretString=influxdb_token)

    ssm = boto3_client(moto_url, region, "ssm")
    parameters = [
        f"{defaults.SSM_PREFIX}/sales/last_packet/{table}" for table in defaults.SOURCE_TABLES
    ] + [f"{defaults.SSM_PREFIX}/sales/output_sequence/{table}" for table in defaults.STAR_TABLES]
    for name in parameters:
        with contextlib.suppress(ssm.exceptions.ParameterAlreadyExists):
            ssm.put_parameter(Name=name, Value="0", Type="String", Overwrite=False)


def influxd_query(
    influxd_url: str, password: str, statement: str, authenticated: bool = True
) -> tuple[int, str]:
    """POST one InfluxQL statement to influxd 1.x: (HTTP status, error text or "")."""
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if authenticated:
        basic = f"{INFLUXD_USER}:{password}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(basic).decode()
    body = urllib.parse.urlencode({"q": statement}).encode()
    request = urllib.request.Request(
        f"{influxd_url}/query", data=body, headers=headers, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:  # nosec B310  # http(s) URL from config
            result = json.load(resp)["results"][0]
            return resp.status, str(result.get("error") or "")
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode(errors="replace")


def ensure_influxd_admin(influxd_url: str, password: str, data_dir: Path) -> None:
    """Create influxd's admin user on first start, then check the stack can log in.

    influxd runs with auth on; while it has no admin it accepts that one statement
    unauthenticated.
    """
    status, error = influxd_query(influxd_url, password, "SHOW USERS")
    if status == 200 and not error:
        return
    create = (
        f"CREATE USER {quote_identifier(INFLUXD_USER)} WITH PASSWORD "
        f"{quote_string(password)} WITH ALL PRIVILEGES"
    )
    influxd_query(influxd_url, password, create, authenticated=False)
    status, error = influxd_query(influxd_url, password, "SHOW USERS")
    if status != 200 or error:
        raise StackError(
            f"influxd at {influxd_url} refuses this stack's credentials ({status} "
            f"{error.strip()}); its users were made by another stack: delete "
            f"{data_dir / 'influxdb'} to start its data afresh"
        )


def setup_influx2(influxd_url: str, password: str, org: str, token: str) -> None:
    """One-time onboarding of a 2.x influxd with the local org and token."""
    setup_url = f"{influxd_url}/api/v2/setup"
    with urllib.request.urlopen(setup_url, timeout=10) as resp:  # nosec B310  # http(s) URL from config
        if not json.load(resp).get("allowed"):
            return
    body = json.dumps(
        {
            "username": INFLUXD_USER,
            "password": password,
            "org": org,
            "bucket": defaults.INFLUXDB_BUCKETS[0],
            "token": token,
            "retentionPeriodSeconds": INFLUXDB_RETENTION_SECONDS,
        }
    ).encode()
    req = urllib.request.Request(
        setup_url, data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=30):  # nosec B310  # http(s) URL from config
        pass


def bootstrap_influx(influxdb_url: str, token: str, org: str) -> None:
    """The energy buckets (influxd 1.x databases behind the gateway), seven-year retention."""
    from influxdb_client import BucketRetentionRules, InfluxDBClient

    with InfluxDBClient(url=influxdb_url, token=token, org=org) as client:
        buckets = client.buckets_api()
        for name in defaults.INFLUXDB_BUCKETS:
            if buckets.find_bucket_by_name(name) is None:
                buckets.create_bucket(
                    bucket_name=name,
                    org=org,
                    retention_rules=BucketRetentionRules(
                        type="expire", every_seconds=INFLUXDB_RETENTION_SECONDS
                    ),
                )
