"""InfluxDB (v2 API through influxdb-client; InfluxQL reads) for the energy loads.

Writes are gzip line-protocol batches with our own retry policy: only 429, 5xx and
connection errors are retried (with exponential backoff); a 400 batch is split in halves
until the lines the server refuses are isolated and reported, never skipped.
"""

from __future__ import annotations

import base64
import gzip
import json
import random
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from dagster_aws.utils import ResourceWithBoto3Configuration
from influxdb_client import BucketRetentionRules, InfluxDBClient, WritePrecision, WriteService
from influxdb_client.rest import ApiException
from pydantic import Field, PrivateAttr
from urllib3.exceptions import HTTPError as Urllib3Error

from ons_pipeline.energy.query.breaker import (
    STATE_VALUES,
    CircuitBreaker,
    CircuitOpenError,
    shared_breaker,
)
from ons_pipeline.resources.aws import CloudWatchMetricsResource, Metric, build_client

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

# Seed 003: energy series are kept seven years.
RETENTION_SECONDS = 7 * 365 * 24 * 3600


class InfluxDBUnavailableError(RuntimeError):
    """InfluxDB did not answer its health check or kept failing with retryable errors."""


class InfluxDBCircuitOpenError(InfluxDBUnavailableError):
    """The circuit breaker is open: InfluxDB was not called; `retry_after` in seconds."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class InfluxQLError(RuntimeError):
    """InfluxDB answered and refused the statement (4xx other than 429, or a result error)."""


class InfluxDBWriteError(RuntimeError):
    """A non-retryable write failure that is not about individual lines (401, 403, 404)."""


@dataclass
class WriteOutcome:
    lines_written: int = 0
    batches: int = 0
    failed_batches: int = 0
    retries: int = 0
    requests: int = 0
    rejected: dict[int, str] = field(default_factory=dict)  # line index -> server's message

    def add(self, other: WriteOutcome) -> None:
        self.lines_written += other.lines_written
        self.batches += other.batches
        self.failed_batches += other.failed_batches
        self.retries += other.retries
        self.requests += other.requests
        self.rejected.update(other.rejected)


class InfluxDBResource(ResourceWithBoto3Configuration):
    """InfluxDB v2 API (Timestream for InfluxDB in production, the local stack's gateway)."""

    url: str = Field(description="InfluxDB v2 API URL (INFLUXDB_URL).")
    org: str = Field(default="ons-energy", description="Organisation (INFLUXDB_ORG).")
    token: str | None = Field(
        default=None, description="API token (INFLUXDB_TOKEN); set this or token_secret_name."
    )
    token_secret_name: str | None = Field(
        default=None,
        description="Secrets Manager secret holding the token (INFLUXDB_TOKEN_SECRET_NAME).",
    )
    query_url: str | None = Field(
        default=None,
        description="Base URL serving InfluxQL `/query` (INFLUXDB_QUERY_URL); default `url`.",
    )
    query_username: str | None = Field(
        default=None,
        description="InfluxDB 1.x user for `/query` (INFLUXDB_QUERY_USERNAME); unset: the token.",
    )
    query_password: str | None = Field(
        default=None, description="That user's password (INFLUXDB_QUERY_PASSWORD)."
    )
    bucket: str | None = Field(
        default=None,
        description="One bucket for every dataset (INFLUXDB_BUCKET); default one per dataset.",
    )
    max_batch_size: int = Field(default=5000, description="Lines per write (MAX_BATCH_SIZE).")
    max_retries: int = Field(default=3, description="Retries of a retryable write (MAX_RETRIES).")
    enable_validation: bool = Field(
        default=True, description="Apply the tag rules before writing (ENABLE_VALIDATION)."
    )
    drop_invalid_records: bool = Field(
        default=True,
        description="Quarantine invalid rows and write the rest; false fails the file "
        "(DROP_INVALID_RECORDS).",
    )
    write_concurrency: int = Field(
        default=4, description="Batches in flight at once (gzip and the server overlap)."
    )
    timeout_ms: int = Field(default=30_000, description="HTTP timeout per request.")
    backoff_seconds: float = Field(default=0.5, description="First retry delay; doubles.")
    breaker_failures: int = Field(
        default=3, description="Consecutive failures that open the circuit breaker."
    )
    breaker_cooldown_seconds: float = Field(
        default=30.0, description="Open circuit: seconds before one probe is let through."
    )
    _client: Any = PrivateAttr(default=None)
    _token: str | None = PrivateAttr(default=None)

    def resolved_token(self) -> str:
        if self._token is None:
            if self.token:
                self._token = self.token
            elif self.token_secret_name:
                secrets = build_client(self, "secretsmanager")
                self._token = secrets.get_secret_value(SecretId=self.token_secret_name)[
                    "SecretString"
                ]
            else:
                raise ValueError("InfluxDBResource needs token or token_secret_name")
        return self._token

    def get_client(self) -> InfluxDBClient:
        if self._client is None:
            self._client = InfluxDBClient(
                url=self.url,
                token=self.resolved_token(),
                org=self.org,
                timeout=self.timeout_ms,
                # Bodies are gzipped here at level 1: the client's own gzip uses level 9,
                # which costs more CPU than the whole conversion.
                enable_gzip=False,
                retries=False,
            )
        return self._client

    def bucket_for(self, dataset_bucket: str) -> str:
        return self.bucket or dataset_bucket

    def write_service(self) -> Any:
        """influxdb-client's `/api/v2/write` service (tests replace it)."""
        return WriteService(self.get_client().api_client)

    def health(self) -> dict[str, Any]:
        """`{"status", "response_time_ms", "message"}` from `/health` (writes nothing).

        Raises:
            InfluxDBUnavailableError: no answer or a failing status.
        """
        started = time.monotonic()

        def check_health() -> Any:
            try:
                with warnings.catch_warnings():
                    # `health()` is deprecated for `ping()`, which does not report the status.
                    warnings.simplefilter("ignore", DeprecationWarning)
                    check = self.get_client().health()
            except Exception as error:
                raise InfluxDBUnavailableError(
                    f"InfluxDB unavailable at {self.url}: {error}"
                ) from error
            if check.status != "pass":
                raise InfluxDBUnavailableError(
                    f"InfluxDB unavailable at {self.url}: health {check.status}: {check.message}"
                )
            return check

        check = self.guarded(check_health)
        elapsed = round((time.monotonic() - started) * 1000, 1)
        return {"status": "healthy", "response_time_ms": elapsed, "version": check.version}

    def breaker(self) -> CircuitBreaker:
        """The process-wide circuit breaker for this InfluxDB (its state is published)."""
        breaker = shared_breaker(
            self.url,
            failure_threshold=self.breaker_failures,
            cooldown_seconds=self.breaker_cooldown_seconds,
        )
        if self.url not in _PUBLISHED:
            _PUBLISHED.add(self.url)
            metrics = CloudWatchMetricsResource(
                region_name=self.region_name,
                endpoint_url=self.endpoint_url,
                aws_access_key_id=self.aws_access_key_id,
                aws_secret_access_key=self.aws_secret_access_key,
                aws_session_token=self.aws_session_token,
            )
            breaker.add_listener(
                lambda name, _old, new, _reason: metrics.put(
                    METRICS_NAMESPACE,
                    [Metric("CircuitState", STATE_VALUES[new], "None", {"Circuit": name})],
                )
            )
        return breaker

    def guarded(self, fn: Callable[[], Any]) -> Any:
        """Run `fn` behind the breaker; only `InfluxDBUnavailableError` counts as a failure.

        Raises:
            InfluxDBCircuitOpenError: the breaker is open; InfluxDB was not called.
        """
        breaker = self.breaker()
        try:
            return breaker.call(fn, lambda e: isinstance(e, InfluxDBUnavailableError))
        except CircuitOpenError as error:
            raise InfluxDBCircuitOpenError(
                f"InfluxDB at {self.url} is failing: {error}", error.retry_after
            ) from error

    def ensure_bucket(self, name: str) -> bool:
        """Create the bucket with seven-year retention, or give an existing one that retention.

        Terraform creates the instance's first bucket itself, so an existing bucket is not
        proof of the retention rule. Returns True when the bucket was created.
        """
        buckets = self.get_client().buckets_api()
        existing = buckets.find_bucket_by_name(name)
        if existing is not None:
            expire = [r for r in existing.retention_rules or [] if r.type == "expire"]
            if [r.every_seconds for r in expire] != [RETENTION_SECONDS]:
                existing.retention_rules = [
                    BucketRetentionRules(type="expire", every_seconds=RETENTION_SECONDS)
                ]
                buckets.update_bucket(bucket=existing)
            return False
        try:
            buckets.create_bucket(
                bucket_name=name,
                org=self.org,
                retention_rules=BucketRetentionRules(
                    type="expire", every_seconds=RETENTION_SECONDS
                ),
            )
        except ApiException as error:
            if error.status != 422:  # created meanwhile by a concurrent run
                raise
            return False
        return True

    def write_lines(
        self,
        bucket: str,
        batches: Iterable[tuple[int, int, bytes]],
        split: Callable[[int, int], bytes],
    ) -> WriteOutcome:
        """Write (start, stop, body) batches; `split(start, stop)` rebuilds a sub-body.

        Raises:
            InfluxDBUnavailableError: retries exhausted on 429/5xx/connection errors.
            InfluxDBWriteError: 401/403/404 and other non-line errors.
        """
        write_api = self.write_service()
        return self.guarded(lambda: self._write_batches(write_api, bucket, batches, split))

    def _write_batches(
        self,
        write_api: Any,
        bucket: str,
        batches: Iterable[tuple[int, int, bytes]],
        split: Callable[[int, int], bytes],
    ) -> WriteOutcome:
        def one(batch: tuple[int, int, bytes]) -> WriteOutcome:
            start, stop, body = batch
            result = WriteOutcome(batches=1)
            self._write_range(write_api, bucket, start, stop, body, split, result)
            result.failed_batches = int(bool(result.rejected))
            return result

        outcome = WriteOutcome()
        if self.write_concurrency <= 1:
            for batch in batches:
                outcome.add(one(batch))
            return outcome
        with ThreadPoolExecutor(max_workers=self.write_concurrency) as pool:
            for result in pool.map(one, batches):
                outcome.add(result)
        return outcome

    def _write_range(
        self,
        write_api: Any,
        bucket: str,
        start: int,
        stop: int,
        body: bytes,
        split: Callable[[int, int], bytes],
        outcome: WriteOutcome,
    ) -> None:
        status, message = self._post(write_api, bucket, body, outcome)
        if status is None:
            outcome.lines_written += stop - start
            return
        if status in (400, 413):
            if stop - start == 1:
                outcome.rejected[start] = message
                return
            middle = (start + stop) // 2
            for lo, hi in ((start, middle), (middle, stop)):
                self._write_range(write_api, bucket, lo, hi, split(lo, hi), split, outcome)
            return
        raise InfluxDBWriteError(f"InfluxDB refused the write to {bucket}: {status} {message}")

    def _post(
        self, write_api: Any, bucket: str, body: bytes, outcome: WriteOutcome
    ) -> tuple[int | None, str]:
        """(None, "") on success, else (status, message) for a non-retryable answer."""
        attempt = 0
        while True:
            outcome.requests += 1
            try:
                write_api.post_write(
                    org=self.org,
                    bucket=bucket,
                    body=gzip.compress(body, compresslevel=1),
                    precision=WritePrecision.NS,
                    content_encoding="gzip",
                    content_type="text/plain; charset=utf-8",
                )
                return None, ""
            except ApiException as error:
                status = int(error.status or 0)
                if status != 429 and status < 500:
                    return status, _error_message(error)
                problem = f"{status} {_error_message(error)}"
            except (Urllib3Error, OSError) as error:
                problem = f"connection error: {error}"
            if attempt >= self.max_retries:
                raise InfluxDBUnavailableError(
                    f"InfluxDB unavailable: write to {bucket} failed after "
                    f"{attempt + 1} attempts: {problem}"
                )
            delay = self.backoff_seconds * (2**attempt)
            time.sleep(delay + random.uniform(0, delay / 2))  # nosec B311  # backoff jitter, not a secret
            attempt += 1
            outcome.retries += 1

    def influxql(
        self, database: str, statement: str, params: dict[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        """Run one InfluxQL read over `/query`; the result's series.

        `params` are bind parameters (`$name` in `statement`), sent beside the text so a
        value never becomes query syntax. 429, 5xx and connection errors are retried with
        exponential backoff (seed 003's `execute_flux_query_with_retry`), behind the breaker.

        Raises:
            InfluxDBUnavailableError: retries exhausted, or the breaker is open.
            InfluxQLError: the server refused the statement.
        """
        base = (self.query_url or self.url).rstrip("/")
        if urllib.parse.urlsplit(base).scheme not in ("http", "https"):
            raise ValueError(f"InfluxDB query URL must be http(s): {base!r}")
        query = {"db": database, "q": statement, "epoch": "ns"}
        if params:
            query["params"] = json.dumps(params)
        params_qs = urllib.parse.urlencode(query)
        request = urllib.request.Request(
            f"{base}/query?{params_qs}", headers={"Authorization": self._query_authorization()}
        )

        def attempt_once() -> dict[str, Any]:
            try:
                with urllib.request.urlopen(request, timeout=self.timeout_ms / 1000) as response:  # nosec B310  # http(s) URL from config
                    return json.load(response)
            except urllib.error.HTTPError as error:
                if error.code != 429 and error.code < 500:
                    raise InfluxQLError(
                        f"InfluxQL refused ({error.code}): {error.read()!r}"
                    ) from error
                raise InfluxDBUnavailableError(f"InfluxDB query failed: {error}") from error
            except (urllib.error.URLError, OSError) as error:
                raise InfluxDBUnavailableError(f"InfluxDB query failed: {error}") from error

        def with_retries() -> dict[str, Any]:
            for attempt in range(self.max_retries + 1):
                try:
                    return attempt_once()
                except InfluxDBUnavailableError:
                    if attempt >= self.max_retries:
                        raise
                time.sleep(self.backoff_seconds * (2**attempt))
            raise AssertionError("unreachable")

        payload = self.guarded(with_retries)
        result = payload["results"][0]
        if "error" in result:
            raise InfluxQLError(f"InfluxQL error: {result['error']}")
        return result.get("series", [])

    def _query_authorization(self) -> str:
        """Basic auth for a 1.x server's own users (the local influxd), else the v2 token."""
        if self.query_username:
            credentials = f"{self.query_username}:{self.query_password or ''}".encode()
            return "Basic " + base64.b64encode(credentials).decode()
        return f"Token {self.resolved_token()}"

    def teardown_after_execution(self, context: Any) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


METRICS_NAMESPACE = "ONS/InfluxDB"
_PUBLISHED: set[str] = set()  # breakers whose transitions already go to CloudWatch


def _error_message(error: ApiException) -> str:
    body = error.body
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    try:
        parsed = json.loads(body or "")
    except (TypeError, ValueError):
        return str(body or error.reason)
    return str(parsed.get("message") or parsed.get("error") or parsed)
