"""Amazon Timestream (timestream-write) for the energy loads.

WriteRecords takes at most 100 records a call (the API limit); calls run on a few threads.
Only throttling, 5xx and connection errors are retried (exponential backoff with jitter,
classified by `ons_pipeline.platform.failures`);
`RejectedRecordsException` names records by index, which are mapped back to rows.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from botocore.exceptions import ClientError
from botocore.exceptions import ConnectionError as BotoConnectionError
from botocore.parsers import JSONParser, ResponseParser, ResponseParserFactory
from dagster_aws.utils import ResourceWithBoto3Configuration
from pydantic import Field

from ons_pipeline.platform.failures import TransientError, classify
from ons_pipeline.resources import settings
from ons_pipeline.resources.aws import CachedClientMixin
from ons_pipeline.resources.retry import RetryableFault, call_with_retries

if TYPE_CHECKING:
    from collections.abc import Mapping

    from types_boto3_timestream_query import TimestreamQueryClient
    from types_boto3_timestream_write import TimestreamWriteClient


class QueryResponseParser(JSONParser):
    """Timestream Query pages as `json.loads` reads them.

    A `QueryResponse` holds only strings, booleans and numbers, so botocore's walk of the
    output shape, datum by datum, yields the same dict; it costs about 40 microseconds a row
    (most of a migration's time), so pages skip it. Every other shape is parsed as usual.
    """

    def _handle_json_body(self, raw_body: Any, shape: Any) -> Any:
        if shape is not None and shape.name == "QueryResponse":
            return self._parse_body_as_json(raw_body)
        return super()._handle_json_body(raw_body, shape)


class QueryParserFactory(ResponseParserFactory):
    def create_parser(self, protocol_name: str) -> ResponseParser:
        if protocol_name == "json":
            return QueryResponseParser(**self._defaults)
        return super().create_parser(protocol_name)


class TimestreamUnavailableError(TransientError):
    """Retries exhausted on throttling or server errors."""


class TimestreamWriteError(RuntimeError):
    """A permanent refusal (validation, access denied, resource not found): never retried."""


@dataclass
class CallResult:
    call_index: int
    written: int = 0
    retries: int = 0
    rejected: dict[int, str] = field(default_factory=dict)  # record index -> reason


class TimestreamResource(CachedClientMixin, ResourceWithBoto3Configuration):
    """Timestream database with one table per energy dataset (seed 000's variables)."""

    # One attempt in botocore: this resource retries, and only what is retryable.
    service: ClassVar[str] = "timestream-write"
    client_options: ClassVar[Mapping[str, Any]] = {"max_attempts": 1}

    database: str = Field(
        default=settings.default("TIMESTREAM_DATABASE"),
        description="TIMESTREAM_DATABASE (or seed 000's TIMESTREAM_DATABASE_NAME).",
    )
    generation_table: str = Field(
        default=settings.default("GENERATION_TABLE_NAME"), description="GENERATION_TABLE_NAME."
    )
    consumption_table: str = Field(
        default=settings.default("CONSUMPTION_TABLE_NAME"), description="CONSUMPTION_TABLE_NAME."
    )
    transmission_table: str = Field(
        default=settings.default("TRANSMISSION_TABLE_NAME"),
        description="TRANSMISSION_TABLE_NAME.",
    )
    max_retries: int = Field(
        default=settings.default("MAX_RETRIES"), description="Retries per call (MAX_RETRIES)."
    )
    max_batch_size: int = Field(
        default=settings.default("TIMESTREAM_MAX_BATCH_SIZE"),
        ge=1,
        le=100,
        description="Records per WriteRecords call, 1..100 (the API's limit) "
        "(TIMESTREAM_MAX_BATCH_SIZE).",
    )
    threads: int = Field(default=4, description="Concurrent WriteRecords calls.")
    backoff_seconds: float = Field(default=0.2, description="First retry delay; doubles.")

    def get_client(self) -> TimestreamWriteClient:
        return self.own_client()

    def get_query_client(self) -> TimestreamQueryClient:
        """timestream-query (the migration's reads); the caller retries what is retryable."""
        return self.extra_client(
            "timestream-query", max_attempts=1, parser_factory=QueryParserFactory()
        )

    def set_client(self, client: TimestreamWriteClient) -> None:
        """Use this client (tests record calls with it)."""
        self._client = client

    def table_for(self, dataset: str) -> str:
        return {
            "generation": self.generation_table,
            "consumption": self.consumption_table,
            "transmission": self.transmission_table,
        }[dataset]

    def write_calls(
        self, dataset: str, calls: list[tuple[dict[str, Any], list[dict[str, Any]]]]
    ) -> list[CallResult]:
        """Run (CommonAttributes, Records) calls concurrently; results in call order."""
        client = self.get_client()
        table = self.table_for(dataset)
        with ThreadPoolExecutor(max_workers=max(1, self.threads)) as pool:
            futures = [
                pool.submit(self._write_one, client, table, index, common, records)
                for index, (common, records) in enumerate(calls)
            ]
            return [future.result() for future in futures]

    def _write_one(
        self,
        client: TimestreamWriteClient,
        table: str,
        index: int,
        common: dict[str, Any],
        records: list[dict[str, Any]],
    ) -> CallResult:
        result = CallResult(call_index=index)

        def attempt() -> CallResult:
            try:
                client.write_records(
                    DatabaseName=self.database,
                    TableName=table,
                    CommonAttributes=common,  # type: ignore[arg-type]  # built by energy's transform
                    Records=records,  # type: ignore[arg-type]
                )
            except ClientError as error:
                code = error.response.get("Error", {}).get("Code", "")
                status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
                if code == "RejectedRecordsException":
                    for item in error.response.get("RejectedRecords", []):  # type: ignore[attr-defined]  # this error's extra field
                        result.rejected[int(item["RecordIndex"])] = str(item.get("Reason", ""))
                    # Timestream writes the records it did not reject.
                    result.written = len(records) - len(result.rejected)
                    return result
                verdict = classify(error)
                if not verdict.retry:  # validation, access denied, missing table: fail now
                    raise TimestreamWriteError(
                        f"Timestream WriteRecords to {self.database}.{table} refused "
                        f"({verdict.reason}); not retried: {error}"
                    ) from error
                raise RetryableFault(f"{code or status}: {error}") from error
            except BotoConnectionError as error:
                raise RetryableFault(f"connection error: {error}") from error
            result.written = len(records)
            return result

        def retried() -> None:
            result.retries += 1

        return call_with_retries(
            attempt,
            max_retries=self.max_retries,
            backoff_seconds=self.backoff_seconds,
            on_retry=retried,
            exhausted=lambda attempts, fault: TimestreamUnavailableError(
                f"Timestream WriteRecords to {self.database}.{table} failed after "
                f"{attempts} attempts: {fault}"
            ),
        )
