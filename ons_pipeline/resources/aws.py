"""AWS resources on dagster-aws's configuration, with cached clients and explicit retries.

dagster-aws's `get_client()` builds a new session per call and leaves retries in legacy mode;
these subclasses keep its fields (so `S3Resource`-typed code still accepts them) but build
one client per resource instance (one per run) with botocore's standard retry mode.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol, TypeVar

import boto3
import botocore.session
from botocore.config import Config
from botocore.exceptions import ClientError
from botocore.utils import parse_timestamp
from dagster import BetaWarning, ConfigurableResource
from dagster_aws.s3 import S3Resource
from dagster_aws.ssm import SSMResource
from dagster_aws.utils import ResourceWithBoto3Configuration
from pydantic import Field, PrivateAttr

from ons_pipeline.resources import settings

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

    from botocore.client import BaseClient
    from botocore.parsers import ResponseParserFactory
    from types_boto3_cloudwatch import CloudWatchClient
    from types_boto3_s3 import S3Client
    from types_boto3_s3.type_defs import ListObjectsV2RequestTypeDef
    from types_boto3_sns import SNSClient
    from types_boto3_sqs import SQSClient
    from types_boto3_sqs.type_defs import MessageTypeDef
    from types_boto3_ssm import SSMClient

WriteOutcome = Literal["written", "unchanged"]
_PRECONDITION_CODES = frozenset({"PreconditionFailed", "ConditionalRequestConflict"})


class ConcurrentWriteError(RuntimeError):
    """A conditional write lost: the object changed since this run read it."""


# dagster-aws marks SSMResource beta and warns each time one is built, i.e. at every process
# and step start. ParameterStoreResource only uses its boto3 fields, which are stable; this
# filter silences that one warning and no other.
warnings.filterwarnings("ignore", message=r".*`SSMResource`.*", category=BetaWarning)


def parse_aws_timestamp(value: Any) -> datetime:
    """Timestamps as botocore parses them, with S3 listings' ISO 8601 parsed natively.

    botocore hands every timestamp to dateutil, which costs about 0.16 s per 1,000-key
    listing page, most of the client's time on a listing. Other forms (RFC 1123 headers,
    epoch numbers) still go through botocore.
    """
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return parse_timestamp(value)
        return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
    return parse_timestamp(value)


class Boto3Settings(Protocol):
    """The session fields dagster-aws's S3 and boto3 configuration classes both have."""

    profile_name: str | None
    aws_access_key_id: str | None
    aws_secret_access_key: str | None
    aws_session_token: str | None
    region_name: str | None
    endpoint_url: str | None
    use_ssl: bool
    verify: bool | None
    max_attempts: int


def build_client(
    settings: Boto3Settings,
    service: str,
    *,
    read_timeout: float = 60.0,
    max_attempts: int | None = None,
    parser_factory: ResponseParserFactory | None = None,
) -> BaseClient:
    """A boto3 client from dagster-aws settings with standard retries and timeouts."""
    core = botocore.session.get_session()
    if parser_factory is not None:
        core.register_component("response_parser_factory", parser_factory)
    core.get_component("response_parser_factory").set_parser_defaults(
        timestamp_parser=parse_aws_timestamp
    )
    session = boto3.session.Session(
        botocore_session=core,
        profile_name=settings.profile_name,
        aws_access_key_id=settings.aws_access_key_id,
        aws_secret_access_key=settings.aws_secret_access_key,
        aws_session_token=settings.aws_session_token,
        region_name=settings.region_name,
    )
    config = Config(
        retries={"mode": "standard", "max_attempts": max_attempts or settings.max_attempts},
        connect_timeout=10,
        read_timeout=read_timeout,
        max_pool_connections=32,
    )
    return session.client(
        service,
        endpoint_url=settings.endpoint_url,
        use_ssl=settings.use_ssl,
        verify=settings.verify,
        config=config,
    )


class CachedClientMixin(ConfigurableResource):
    """One boto3 client per service and resource instance (so one per run), built on first use.

    `service` (and `client_options` for `build_client`) name the resource's own client, kept
    in `_client`; `extra_client` caches any other service the resource needs beside it.
    """

    service: ClassVar[str]
    client_options: ClassVar[Mapping[str, Any]] = {}
    _client: Any = PrivateAttr(default=None)
    _extra_clients: dict[str, Any] = PrivateAttr(default_factory=dict)

    def own_client(self) -> Any:
        if self._client is None:
            self._client = build_client(self, self.service, **self.client_options)  # type: ignore[arg-type]  # the subclass has dagster-aws's fields
        return self._client

    def extra_client(self, service: str, **options: Any) -> Any:
        if service not in self._extra_clients:
            self._extra_clients[service] = build_client(self, service, **options)  # type: ignore[arg-type]  # as above
        return self._extra_clients[service]


class ObjectStoreResource(CachedClientMixin, S3Resource):
    """S3 with the safe-write and cursor-listing primitives the pipelines share."""

    service: ClassVar[str] = "s3"

    def get_client(self) -> S3Client:
        return self.own_client()

    def get_bytes(self, bucket: str, key: str) -> bytes | None:
        """The object's bytes, or None only when it does not exist (NoSuchKey)."""
        try:
            return self.get_client().get_object(Bucket=bucket, Key=key)["Body"].read()
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in {"NoSuchKey", "404"}:
                return None
            raise

    def put_bytes(self, bucket: str, key: str, data: bytes, content_type: str) -> None:
        """Overwrite an object (state files: one PUT, so readers never see half a file)."""
        self.get_client().put_object(Bucket=bucket, Key=key, Body=data, ContentType=content_type)

    def put_bytes_once(self, bucket: str, key: str, data: bytes, content_type: str) -> WriteOutcome:
        """Create an object that must never change: identical bytes are a no-op.

        S3's conditional write (`If-None-Match: *`) makes the check and the write one step,
        so two runs racing for the same name cannot both win.

        Raises:
            FileExistsError: the key exists with different bytes.
        """
        try:
            self.get_client().put_object(
                Bucket=bucket, Key=key, Body=data, ContentType=content_type, IfNoneMatch="*"
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") not in _PRECONDITION_CODES:
                raise
            if self.get_bytes(bucket, key) == data:
                return "unchanged"
            raise FileExistsError(
                f"s3://{bucket}/{key} already exists with different content; refusing to "
                "overwrite it"
            ) from error
        return "written"

    def get_versioned(self, bucket: str, key: str) -> tuple[bytes, str] | None:
        """(bytes, ETag) for a later `put_if_match`, or None when the key does not exist."""
        try:
            response = self.get_client().get_object(Bucket=bucket, Key=key)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in {"NoSuchKey", "404"}:
                return None
            raise
        return response["Body"].read(), response["ETag"]

    def put_if_match(
        self, bucket: str, key: str, data: bytes, content_type: str, etag: str | None
    ) -> str:
        """Replace the object only if it is still at `etag` (None: only if it is absent).

        Returns the new ETag; the read-modify-write of a state file is then one step that
        two runs cannot both win.

        Raises:
            ConcurrentWriteError: another writer changed (or created) the object meanwhile.
        """
        condition = {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}
        try:
            response = self.get_client().put_object(
                Bucket=bucket, Key=key, Body=data, ContentType=content_type, **condition
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") not in _PRECONDITION_CODES:
                raise
            # botocore retries a PUT whose response was lost; if that first PUT landed, the
            # retry's precondition fails on our own bytes, which is success, not a conflict.
            stored = self.get_versioned(bucket, key)
            if stored is not None and stored[0] == data:
                return stored[1]
            raise ConcurrentWriteError(
                f"s3://{bucket}/{key} was changed by another run after this one read it"
            ) from error
        return response["ETag"]

    def delete_keys(self, bucket: str, keys: Sequence[str]) -> None:
        """Delete objects (a missing one is not an error), 1,000 per request as S3 allows."""
        for chunk in _chunks(list(keys), 1000):
            response = self.get_client().delete_objects(
                Bucket=bucket, Delete={"Objects": [{"Key": key} for key in chunk], "Quiet": True}
            )
            if response.get("Errors"):
                raise RuntimeError(f"could not delete from s3://{bucket}: {response['Errors']}")  # nosec B608  # an error message, not SQL

    def list_etags(
        self, bucket: str, prefix: str, *, after: str | None = None, through: str | None = None
    ) -> dict[str, str]:
        """Key -> ETag (quoted, as S3 lists it) under `prefix`, for keys in (after, through].

        Conditional writes and ledgers name an object version by its ETag; a key range lets
        callers list a large prefix in parallel slices.
        """
        client = self.get_client()
        objects: dict[str, str] = {}
        request: ListObjectsV2RequestTypeDef = {"Bucket": bucket, "Prefix": prefix}
        if after is not None:
            request["StartAfter"] = after
        while True:
            page = client.list_objects_v2(**request)
            for item in page.get("Contents", []):
                if through is not None and item["Key"] > through:
                    return objects
                objects[item["Key"]] = item["ETag"]
            if not page.get("IsTruncated"):
                return objects
            request = {
                "Bucket": bucket,
                "Prefix": prefix,
                "ContinuationToken": page["NextContinuationToken"],
            }

    def list_after(
        self,
        bucket: str,
        prefix: str,
        start_after: str | None,
        *,
        max_pages: int,
        page_size: int = 1000,
    ) -> ListingPage:
        """Keys after `start_after` under `prefix`, at most `max_pages` pages of them."""
        client = self.get_client()
        keys: list[str] = []
        token: str | None = None
        pages = 0
        truncated = False
        while pages < max_pages:
            kwargs: ListObjectsV2RequestTypeDef = {
                "Bucket": bucket,
                "Prefix": prefix,
                "MaxKeys": page_size,
            }
            if token:
                kwargs["ContinuationToken"] = token
            elif start_after:
                kwargs["StartAfter"] = start_after
            response = client.list_objects_v2(**kwargs)
            pages += 1
            keys.extend(item["Key"] for item in response.get("Contents", []))
            truncated = bool(response.get("IsTruncated"))
            token = response.get("NextContinuationToken")
            if not truncated:
                break
        return ListingPage(keys=keys, pages=pages, exhausted=not truncated)

    def list_new_per_prefix(
        self,
        bucket: str,
        prefixes: Mapping[str, str],
        cursor: Mapping[str, str],
        moves_cursor: Callable[[str, str], bool],
        *,
        max_pages: int,
        page_size: int = 1000,
    ) -> tuple[dict[str, list[str]], dict[str, str], bool]:
        """Keys after each named prefix's cursor, the advanced cursor, and whether all was seen.

        For prefixes whose keys sort in arrival order, `StartAfter` makes a tick cost O(new
        keys). Only a key `moves_cursor(name, key)` accepts advances the cursor: a stray key
        can sort after objects that have not landed yet and would hide them.
        """
        found: dict[str, list[str]] = {}
        advanced = dict(cursor)
        exhausted = True
        for name, prefix in prefixes.items():
            listing = self.list_after(
                bucket, prefix, cursor.get(name), max_pages=max_pages, page_size=page_size
            )
            exhausted &= listing.exhausted
            found[name] = listing.keys
            accepted = [key for key in listing.keys if moves_cursor(name, key)]
            if accepted:
                advanced[name] = accepted[-1]
        return found, advanced, exhausted


@dataclass(frozen=True)
class ListingPage:
    keys: list[str]
    pages: int
    exhausted: bool  # False when the page budget ran out before the listing did


class ParameterStoreResource(CachedClientMixin, SSMResource):
    """SSM Parameter Store for the pipelines' small durable counters."""

    service: ClassVar[str] = "ssm"

    def get_client(self) -> SSMClient:
        return self.own_client()

    def get_int(self, name: str) -> int | None:
        """The parameter as an int, or None when it has never been written."""
        try:
            value = self.get_client().get_parameter(Name=name)["Parameter"]["Value"]
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ParameterNotFound":
                return None
            raise
        return int(value)

    def put_int(self, name: str, value: int, description: str = "") -> None:
        self.get_client().put_parameter(
            Name=name, Value=str(value), Type="String", Overwrite=True, Description=description
        )


@dataclass(frozen=True)
class Metric:
    """One data point. `total=True` also counts it in the metric's undimensioned total.

    A CloudWatch alarm watches one exact series (name and every dimension), so an alarm on
    "any run failed" needs a series without the `Job` dimension: `total` puts that sum too.
    """

    name: str
    value: float
    unit: str = "Count"
    dimensions: dict[str, str] = field(default_factory=dict)
    total: bool = False


def with_totals(metrics: Sequence[Metric]) -> list[Metric]:
    """The metrics plus, per name marked `total`, one undimensioned sum of their values."""
    totals: dict[tuple[str, str], float] = {}
    for metric in metrics:
        if metric.total and metric.dimensions:
            key = (metric.name, metric.unit)
            totals[key] = totals.get(key, 0.0) + float(metric.value)
    return [*metrics, *(Metric(name, value, unit) for (name, unit), value in totals.items())]


class CloudWatchMetricsResource(CachedClientMixin, ResourceWithBoto3Configuration):
    """CloudWatch custom metrics (the seeds' `ONS/...` namespaces)."""

    service: ClassVar[str] = "cloudwatch"
    enabled: bool = Field(default=True, description="Set false to skip PutMetricData calls.")

    def get_client(self) -> CloudWatchClient:
        return self.own_client()

    def put(self, namespace: str, metrics: Sequence[Metric]) -> int:
        """Publish metrics; returns how many data points were sent."""
        if not self.enabled or not metrics:
            return 0
        now = datetime.now(UTC)
        metrics = with_totals(metrics)
        data = [
            {
                "MetricName": metric.name,
                "Value": float(metric.value),
                "Unit": metric.unit,
                "Timestamp": now,
                "Dimensions": [{"Name": k, "Value": v} for k, v in metric.dimensions.items()],
            }
            for metric in metrics
        ]
        for chunk in _chunks(data, 1000):  # PutMetricData accepts at most 1,000 values a call
            self.get_client().put_metric_data(Namespace=namespace, MetricData=chunk)
        return len(data)


class AlertsResource(CachedClientMixin, ResourceWithBoto3Configuration):
    """SNS alerts to the administrators' topic (they subscribe by email)."""

    service: ClassVar[str] = "sns"
    topic_arn: str = Field(
        default=settings.default("ONS_ALERT_TOPIC_ARN"),
        description="ARN of the SNS topic administrators subscribe to (ONS_ALERT_TOPIC_ARN).",
    )

    def get_client(self) -> SNSClient:
        return self.own_client()

    def publish(self, subject: str, message: dict[str, Any]) -> str:
        """Publish a JSON alert; returns the SNS message id."""
        response = self.get_client().publish(
            TopicArn=self.topic_arn,
            Subject=subject[:100],  # SNS rejects subjects over 100 characters
            Message=json.dumps(message, indent=2, default=str),
        )
        return response["MessageId"]


class NotificationQueueResource(CachedClientMixin, ResourceWithBoto3Configuration):
    """SQS, where S3 announces new objects (the visit-event and energy notification queues).

    The queue URLs live with each group's storage resource; this resource is the client.
    """

    service: ClassVar[str] = "sqs"

    def get_client(self) -> SQSClient:
        return self.own_client()

    def receive(
        self, queue_url: str, *, limit: int, visibility_timeout: int
    ) -> list[MessageTypeDef]:
        """Up to `limit` messages the queue holds now (no long poll), with `SentTimestamp`.

        Each stays hidden for `visibility_timeout` seconds unless deleted or released.
        """
        messages: list[MessageTypeDef] = []
        while len(messages) < limit:
            page = (
                self.get_client()
                .receive_message(
                    QueueUrl=queue_url,
                    MaxNumberOfMessages=min(10, limit - len(messages)),  # the SQS maximum per call
                    WaitTimeSeconds=0,
                    VisibilityTimeout=visibility_timeout,
                    MessageSystemAttributeNames=["SentTimestamp"],
                )
                .get("Messages", [])
            )
            if not page:
                break
            messages.extend(page)
        return messages

    def delete(self, queue_url: str, receipts: Sequence[str]) -> None:
        """Delete handled messages.

        Raises:
            RuntimeError: SQS refused some of them (named in the message).
        """
        self._in_batches("delete", queue_url, receipts, visibility=None)

    def release(self, queue_url: str, receipts: Sequence[str]) -> None:
        """Make received messages visible again at once, for the next receiver.

        Raises:
            RuntimeError: SQS refused some of them (named in the message).
        """
        self._in_batches("release", queue_url, receipts, visibility=0)

    def _in_batches(
        self, verb: str, queue_url: str, receipts: Sequence[str], *, visibility: int | None
    ) -> None:
        client = self.get_client()
        for batch in _chunks(list(receipts), 10):  # SQS batch calls take at most 10 entries
            if visibility is None:
                response = client.delete_message_batch(
                    QueueUrl=queue_url,
                    Entries=[{"Id": str(i), "ReceiptHandle": r} for i, r in enumerate(batch)],
                )
            else:
                response = client.change_message_visibility_batch(
                    QueueUrl=queue_url,
                    Entries=[
                        {"Id": str(i), "ReceiptHandle": r, "VisibilityTimeout": visibility}
                        for i, r in enumerate(batch)
                    ],
                )
            if response.get("Failed"):
                raise RuntimeError(f"could not {verb} SQS messages: {response['Failed']}")


AwsResourceT = TypeVar("AwsResourceT", bound=ResourceWithBoto3Configuration)


def sharing_session(resource: type[AwsResourceT], aws: Boto3Settings) -> AwsResourceT:
    """A `resource` in the same account, region and endpoint as the resource `aws`."""
    return resource(
        region_name=aws.region_name,
        endpoint_url=aws.endpoint_url,
        max_attempts=aws.max_attempts,
        profile_name=aws.profile_name,
        use_ssl=aws.use_ssl,
        verify=aws.verify,
        aws_access_key_id=aws.aws_access_key_id,
        aws_secret_access_key=aws.aws_secret_access_key,
        aws_session_token=aws.aws_session_token,
    )


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
