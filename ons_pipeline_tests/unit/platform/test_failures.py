"""Each error class maps to retry or no retry, with a reason."""

from __future__ import annotations

import io

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError
from dagster import Failure, RetryRequested
from influxdb_client.rest import ApiException
from pydantic import BaseModel, ValidationError
from urllib3.exceptions import NewConnectionError

from ons_pipeline.energy.schema import FileRejectedError
from ons_pipeline.platform.failures import as_failure, classified_failures, classify
from ons_pipeline.resources.influxdb import InfluxDBUnavailableError
from ons_pipeline.resources.timestream import TimestreamUnavailableError


def client_error(code: str, status: int) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}},
        "Operation",
    )


def arrow_error() -> Exception:
    try:
        pq.read_table(io.BytesIO(b'{"not": "parquet"}'))
    except pa.ArrowInvalid as error:  # "Parquet magic bytes not found in footer"
        return error
    raise AssertionError("pyarrow read JSON as Parquet")


def validation_error() -> ValidationError:
    class Packet(BaseModel):
        id: int

    try:
        Packet(id="x")  # type: ignore[arg-type]
    except ValidationError as error:
        return error
    raise AssertionError("pydantic accepted a non-integer id")


@pytest.mark.parametrize(
    ("error", "retry", "reason"),
    [
        (client_error("ThrottlingException", 400), True, "transient_aws_error:ThrottlingException"),
        (client_error("SlowDown", 503), True, "transient_aws_error:SlowDown"),
        (client_error("InternalServerException", 500), True, "transient_aws_error"),
        (client_error("", 502), True, "transient_aws_error:502"),
        (client_error("TooManyRequestsException", 429), True, "transient_aws_error"),
        (EndpointConnectionError(endpoint_url="http://127.0.0.1:1"), True, "connection_error"),
        (ReadTimeoutError(endpoint_url="http://127.0.0.1:1"), True, "connection_error"),
        (ConnectionResetError("reset"), True, "connection_error"),
        (TimeoutError("slow"), True, "connection_error"),
        (InfluxDBUnavailableError("health check failed"), True, "unavailable"),
        (TimestreamUnavailableError("throttled 4 times"), True, "unavailable"),
        (ApiException(status=503), True, "transient_http_error:503"),
        (ApiException(status=401), False, "permanent_http_error:401"),
        (NewConnectionError(None, "refused"), True, "connection_error"),
        (client_error("AccessDenied", 403), False, "permanent_aws_error:AccessDenied"),
        (client_error("AccessDeniedException", 400), False, "permanent_aws_error"),
        (client_error("ValidationException", 400), False, "permanent_aws_error:Validation"),
        (client_error("ResourceNotFoundException", 404), False, "permanent_aws_error"),
        (client_error("NoSuchBucket", 404), False, "permanent_aws_error:NoSuchBucket"),
        (client_error("InvalidAccessKeyId", 403), False, "permanent_aws_error"),
        (arrow_error(), False, "unreadable_input"),
        (pa.ArrowTypeError("wrong type"), False, "unreadable_input"),
        (FileRejectedError("missing_column", "no value"), False, "invalid_input"),
        (validation_error(), False, "invalid_input"),
        (ValueError("packet id -1 out of range"), False, "invalid_input"),
        (KeyError("table"), False, "invalid_input"),
        (FileExistsError("different bytes"), False, "refused:FileExistsError"),
        (RuntimeError("bug"), False, "unexpected_error:RuntimeError"),
        (Failure("decided", allow_retries=False), False, "failure"),
        (Failure("decided", allow_retries=True), True, "failure"),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, Exception) else None,
)
def test_each_error_class_is_retried_or_not(error: Exception, retry: bool, reason: str) -> None:
    verdict = classify(error)
    assert verdict.retry is retry
    assert verdict.reason.startswith(reason)
    failure = as_failure(error, "s3://bucket/key")
    assert isinstance(failure, Failure)
    assert failure.allow_retries is retry


def test_the_decorator_names_the_subject_and_passes_decisions_through() -> None:
    class Context:
        has_partition_key = True
        partition_key = "dataset=generation/a.parquet"

    @classified_failures
    def plain(context: Context) -> None:
        raise arrow_error()

    @classified_failures
    def generator(context: Context):  # type: ignore[no-untyped-def]
        yield 1
        raise client_error("ThrottlingException", 400)

    with pytest.raises(Failure) as caught:
        plain(Context())
    assert not caught.value.allow_retries
    assert "dataset=generation/a.parquet: unreadable_input" in str(caught.value.description)
    with pytest.raises(Failure) as caught:
        list(generator(Context()))
    assert caught.value.allow_retries

    @classified_failures
    def asks(context: Context) -> None:
        raise RetryRequested(max_retries=1)

    with pytest.raises(RetryRequested):
        asks(Context())
