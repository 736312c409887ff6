"""Which failures are worth a retry: only transient faults, never bad input.

The assets' RetryPolicy retries any exception that is not `Failure(allow_retries=False)`, so an
unreadable file or a refused request would be tried three more times (30 + 60 + 120 s in
production) before failing the same way. Every asset error goes through `classify`: throttling,
5xx and connection errors are retried; invalid or unreadable input and permanent AWS errors
(access denied, validation, missing resource) fail at once with their reason.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Final, TypeVar

import pyarrow as pa
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    EndpointConnectionError,
    ReadTimeoutError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError
from dagster import Failure, MetadataValue, RetryRequested
from pydantic import ValidationError
from urllib3.exceptions import HTTPError as Urllib3Error

# Error codes AWS services use for throttling and server-side faults.
RETRYABLE_CODES: Final = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottled",
        "RequestThrottledException",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "SlowDown",
        "InternalError",
        "InternalServerError",
        "InternalServerException",
        "InternalFailure",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "RequestTimeout",
        "RequestTimeoutException",
        "PriorRequestNotComplete",
    }
)


class TransientError(RuntimeError):
    """A resource gave up on a fault that may pass (throttling, 5xx, unreachable): retried."""


@dataclass(frozen=True)
class Classification:
    retry: bool
    reason: str  # short and stable: metadata, metrics and alerts group by it


def classify(error: BaseException) -> Classification:
    """Retry or not, and why, for an exception raised while loading an object."""
    if isinstance(error, Failure):
        return Classification(error.allow_retries, "failure")
    # Imported here: the resources import this module.
    from ons_pipeline.resources.influxdb import InfluxDBUnavailableError

    if isinstance(error, TransientError | InfluxDBUnavailableError):
        return Classification(True, f"unavailable:{type(error).__name__}")
    status = getattr(error, "status", None)  # an HTTP client's error (influxdb-client's)
    if isinstance(status, int) and not isinstance(error, ClientError) and status >= 400:
        if status == 429 or status >= 500:
            return Classification(True, f"transient_http_error:{status}")
        return Classification(False, f"permanent_http_error:{status}")
    if isinstance(error, Urllib3Error):  # connection refused, reset, protocol errors
        return Classification(True, "connection_error")
    if isinstance(error, ClientError):
        code = str(error.response.get("Error", {}).get("Code", ""))
        status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        if code in RETRYABLE_CODES or status == 429 or status >= 500:
            return Classification(True, f"transient_aws_error:{code or status}")
        return Classification(False, f"permanent_aws_error:{code or status}")
    if isinstance(
        error,
        EndpointConnectionError | ConnectionClosedError | ReadTimeoutError | BotoConnectionError,
    ):
        return Classification(True, "connection_error")
    if isinstance(error, pa.ArrowException):  # ArrowInvalid: e.g. "magic bytes not found"
        return Classification(False, "unreadable_input")
    if isinstance(error, ConnectionError | TimeoutError):
        return Classification(True, "connection_error")
    if isinstance(error, FileExistsError | FileNotFoundError | PermissionError):
        return Classification(False, f"refused:{type(error).__name__}")
    if isinstance(error, ValidationError | ValueError | KeyError | TypeError):
        return Classification(False, "invalid_input")
    if isinstance(error, OSError):  # sockets and other I/O faults outside the cases above
        return Classification(True, "io_error")
    return Classification(False, f"unexpected_error:{type(error).__name__}")


def as_failure(error: BaseException, subject: str) -> Failure | RetryRequested:
    """A `Failure` naming `subject` whose `allow_retries` follows `classify`."""
    if isinstance(error, Failure | RetryRequested):
        return error  # already decided
    verdict = classify(error)
    return Failure(
        description=f"{subject}: {verdict.reason} ({'retried' if verdict.retry else 'not retried'})"
        f": {type(error).__name__}: {error}",
        metadata={
            "reason": verdict.reason,
            "retried": verdict.retry,
            "subject": MetadataValue.text(subject),
        },
        allow_retries=verdict.retry,
    )


F = TypeVar("F", bound=Callable[..., Any])


def _subject(args: tuple[Any, ...]) -> str:
    context = args[0] if args else None
    if context is not None and getattr(context, "has_partition_key", False):
        return str(context.partition_key)
    op_context = getattr(context, "op_execution_context", context)
    return str(getattr(getattr(op_context, "op", None), "name", "step"))


def classified_failures(fn: F) -> F:
    """Decorate an asset function: what it raises becomes a classified `Failure`.

    The subject named is the partition key (the object being loaded) or the op's name.
    Generators (assets that yield results and checks) are wrapped as they run.
    """
    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def generator(*args: Any, **kwargs: Any) -> Iterator[Any]:
            try:
                yield from fn(*args, **kwargs)
            except (Failure, RetryRequested):
                raise
            except Exception as error:
                raise as_failure(error, _subject(args)) from error

        return generator  # type: ignore[return-value]

    @functools.wraps(fn)
    def plain(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (Failure, RetryRequested):
            raise
        except Exception as error:
            raise as_failure(error, _subject(args)) from error

    return plain  # type: ignore[return-value]
