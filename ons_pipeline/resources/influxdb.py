"""InfluxDB (v2 API through influxdb-client; InfluxQL reads) for the energy loads.

Writes are line-protocol batches, gzipped per endpoint (`gzip_level`), with our own retry
policy: only 429, 5xx and connection errors are retried (with exponential backoff); a 400
batch is split in halves until the lines the server refuses are isolated and reported, never
skipped. Batches are produced while earlier ones are in flight, through a bounded window.
"""

from __future__ import annotations

import base64
import gzip
import ipaddress
import json
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
import weakref
from concurrent.futures import ALL_COMPLETED, FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

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
from ons_pipeline.resources import defaults, settings
from ons_pipeline.resources.aws import (
    CachedClientMixin,
    CloudWatchMetricsResource,
    Metric,
    sharing_session,
)
from ons_pipeline.resources.retry import RetryableFault, call_with_retries

if TYPE_CHECKING:
    from collections.abc import Callable

    from dagster import InitResourceContext
    from influxdb_client.domain.health_check import HealthCheck
    from types_boto3_secretsmanager import SecretsManagerClient

    from ons_pipeline.energy.line_protocol import LineProtocolBatches

T = TypeVar("T")

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


class InfluxDBResource(CachedClientMixin, ResourceWithBoto3Configuration):
    """InfluxDB v2 API (Timestream for InfluxDB in production, the local stack's gateway).

    `_client` is InfluxDB's own client; the AWS one (Secrets Manager, for the token by name)
    is an `extra_client`.
    """

    url: str = Field(description="InfluxDB v2 API URL (INFLUXDB_URL).")
    org: str = Field(default=settings.default("INFLUXDB_ORG"), description="INFLUXDB_ORG.")
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
    max_batch_size: int = Field(
        default=settings.default("MAX_BATCH_SIZE"), description="Lines per write (MAX_BATCH_SIZE)."
    )
    max_retries: int = Field(
        default=settings.default("MAX_RETRIES"),
        description="Retries of a retryable write (MAX_RETRIES).",
    )
    enable_validation: bool = Field(
        default=settings.default("ENABLE_VALIDATION"),
        description="Apply the tag rules before writing (ENABLE_VALIDATION).",
    )
    drop_invalid_records: bool = Field(
        default=settings.default("DROP_INVALID_RECORDS"),
        description="Quarantine invalid rows and write the rest; false fails the file "
        "(DROP_INVALID_RECORDS).",
    )
    write_concurrency: int = Field(
        default=settings.default("INFLUXDB_WRITE_CONCURRENCY"),
        description="Writers posting batches at once (INFLUXDB_WRITE_CONCURRENCY).",
    )
    write_queue: int = Field(
        default=8,
        description="Batches built ahead of the writers while they post (bounded, so memory "
        "stays flat); 0 builds the next batches only once every write has returned.",
    )
    gzip_level: str = Field(
        default=settings.default("INFLUXDB_GZIP_LEVEL"),
        description="Write-body compression (INFLUXDB_GZIP_LEVEL): `auto`, or 0 (off) to 9. "
        "`auto` sends plain bodies to loopback and private-address hosts, where gzip costs "
        "more CPU than the bytes it saves (benchmarks/energy_load.py), and level 1 to any "
        "other host, where the link is the limit and level 1 already shrinks line protocol "
        "about 5x at a fraction of level 9's CPU.",
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
                secrets: SecretsManagerClient = self.extra_client("secretsmanager")
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

    def effective_gzip_level(self) -> int:
        """The gzip level writes use: `gzip_level`, or for `auto` 0 near and 1 remote.

        Raises:
            ValueError: `gzip_level` is neither `auto` nor 0-9.
        """
        setting = str(self.gzip_level).strip().lower()
        if setting == "auto":
            return 0 if is_near_host(urllib.parse.urlsplit(self.url).hostname or "") else 1
        if setting in {"off", "none"}:
            return 0
        if not setting.isdigit() or not 0 <= int(setting) <= 9:
            raise ValueError(f"INFLUXDB_GZIP_LEVEL must be auto or 0-9, not {self.gzip_level!r}")
        return int(setting)

    def write_service(self) -> WriteService:
        """influxdb-client's `/api/v2/write` service (tests replace it)."""
        return WriteService(self.get_client().api_client)

    def health(self) -> dict[str, Any]:
        """`{"status", "response_time_ms", "message"}` from `/health` (writes nothing).

        Raises:
            InfluxDBUnavailableError: no answer or a failing status.
        """
        started = time.monotonic()

        def check_health() -> HealthCheck:
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
        if breaker not in _PUBLISHED:
            _PUBLISHED.add(breaker)
            metrics = sharing_session(CloudWatchMetricsResource, self)
            breaker.add_listener(
                lambda name, _old, new, _reason: metrics.put(
                    defaults.METRICS_NAMESPACE_INFLUXDB,
                    [Metric("CircuitState", STATE_VALUES[new], "None", {"Circuit": name})],
                )
            )
        return breaker

    def guarded(self, fn: Callable[[], T]) -> T:
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

    def write_lines(self, bucket: str, batches: LineProtocolBatches) -> WriteOutcome:
        """Write (start, stop, body) batches; `batches.split(start, stop)` rebuilds a sub-body.

        Raises:
            InfluxDBUnavailableError: retries exhausted on 429/5xx/connection errors.
            InfluxDBWriteError: 401/403/404 and other non-line errors.
        """
        write_api = self.write_service()
        level = self.effective_gzip_level()
        return self.guarded(lambda: self._write_batches(write_api, bucket, batches, level))

    def _write_batches(
        self,
        write_api: WriteService,
        bucket: str,
        batches: LineProtocolBatches,
        level: int,
    ) -> WriteOutcome:
        def one(batch: tuple[int, int, bytes]) -> WriteOutcome:
            start, stop, body = batch
            result = WriteOutcome(batches=1)
            self._write_range(write_api, bucket, (start, stop), body, batches, result, level)
            result.failed_batches = int(bool(result.rejected))
            return result

        # A bounded queue: the caller's generator builds the next batches while earlier ones
        # are posted, and pauses once `write_queue` batches wait beyond the writers, so a
        # large file never sits in memory. `write_queue=0` alternates instead (no overlap).
        writers = max(1, self.write_concurrency)
        window = writers + max(0, self.write_queue)
        until = FIRST_COMPLETED if self.write_queue > 0 else ALL_COMPLETED
        outcome = WriteOutcome()
        pending: set[Future[WriteOutcome]] = set()
        with ThreadPoolExecutor(max_workers=writers) as pool:
            try:
                for batch in batches:
                    if len(pending) >= window:
                        done, pending = wait(pending, return_when=until)
                        for future in done:
                            outcome.add(future.result())
                    pending.add(pool.submit(one, batch))
                for future in pending:
                    outcome.add(future.result())
            except BaseException:
                for future in pending:
                    future.cancel()
                raise
        return outcome

    def _write_range(
        self,
        write_api: WriteService,
        bucket: str,
        lines: tuple[int, int],
        body: bytes,
        batches: LineProtocolBatches,
        outcome: WriteOutcome,
        level: int,
    ) -> None:
        start, stop = lines
        status, message = self._post(write_api, bucket, body, outcome, level)
        if status is None:
            outcome.lines_written += stop - start
            return
        if status in (400, 413):
            if stop - start == 1:
                outcome.rejected[start] = message
                return
            middle = (start + stop) // 2
            for lo, hi in ((start, middle), (middle, stop)):
                sub_body = batches.split(lo, hi)
                self._write_range(write_api, bucket, (lo, hi), sub_body, batches, outcome, level)
            return
        raise InfluxDBWriteError(f"InfluxDB refused the write to {bucket}: {status} {message}")

    def _post(
        self, write_api: WriteService, bucket: str, body: bytes, outcome: WriteOutcome, level: int
    ) -> tuple[int | None, str]:
        """(None, "") on success, else (status, message) for a non-retryable answer."""
        encoding = {"content_encoding": "gzip"} if level else {}
        payload = gzip.compress(body, compresslevel=level) if level else body

        def attempt() -> tuple[int | None, str]:
            outcome.requests += 1
            try:
                write_api.post_write(
                    org=self.org,
                    bucket=bucket,
                    body=payload,
                    precision=WritePrecision.NS,
                    content_type="text/plain; charset=utf-8",
                    **encoding,
                )
            except ApiException as error:
                status = int(error.status or 0)
                if status != 429 and status < 500:
                    return status, _error_message(error)
                raise RetryableFault(f"{status} {_error_message(error)}") from error
            except (Urllib3Error, OSError) as error:
                raise RetryableFault(f"connection error: {error}") from error
            return None, ""

        def retried() -> None:
            outcome.retries += 1

        return call_with_retries(
            attempt,
            max_retries=self.max_retries,
            backoff_seconds=self.backoff_seconds,
            jitter=0.5,
            on_retry=retried,
            exhausted=lambda attempts, fault: InfluxDBUnavailableError(
                f"InfluxDB unavailable: write to {bucket} failed after {attempts} attempts: {fault}"
            ),
        )

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

        payload = self.guarded(
            lambda: call_with_retries(
                attempt_once,
                max_retries=self.max_retries,
                backoff_seconds=self.backoff_seconds,
                jitter=0.0,
                retry_on=(InfluxDBUnavailableError,),
            )
        )
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

    def teardown_after_execution(self, context: InitResourceContext) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


# Breakers whose transitions already go to CloudWatch: by object, so a breaker made anew for
# the same URL (after `reset_breakers`) publishes too.
_PUBLISHED: weakref.WeakSet[CircuitBreaker] = weakref.WeakSet()


def is_near_host(host: str) -> bool:
    """True for localhost and loopback, private or link-local addresses (no DNS lookup)."""
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False  # a name: treated as remote, so bodies are compressed
    return address.is_loopback or address.is_private or address.is_link_local


def _error_message(error: ApiException) -> str:
    body = error.body
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    try:
        parsed = json.loads(body or "")
    except (TypeError, ValueError):
        return str(body or error.reason)
    return str(parsed.get("message") or parsed.get("error") or parsed)
