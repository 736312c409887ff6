"""Amazon Timestream (timestream-write) for the energy loads.

WriteRecords takes at most 100 records a call (the API limit); calls run on a few threads.
Only throttling, 5xx and connection errors are retried (exponential backoff with jitter,
classified by `ons_pipeline.platform.failures`);
`RejectedRecordsException` names records by index, which are mapped back to rows.
"""

from __future__ import annotations

import random
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError
from botocore.exceptions import ConnectionError as BotoConnectionError
from botocore.parsers import JSONParser, ResponseParserFactory
from dagster import ConfigurableResource
from dagster_aws.utils import ResourceWithBoto3Configuration
from pydantic import Field, PrivateAttr

from ons_pipeline.platform.failures import TransientError, classify
from ons_pipeline.resources.aws import build_client


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
    def create_parser(self, protocol_name: str) -> Any:
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


class TimestreamResource(ResourceWithBoto3Configuration):
    """Timestream database with one table per energy dataset (seed 000's variables)."""

    database: str = Field(
        default="ons_energy",
        description="TIMESTREAM_DATABASE (or seed 000's TIMESTREAM_DATABASE_NAME).",
    )
    generation_table: str = Field(default="generation", description="GENERATION_TABLE_NAME.")
    consumption_table: str = Field(default="consumption", description="CONSUMPTION_TABLE_NAME.")
    transmission_table: str = Field(default="transmission", description="TRANSMISSION_TABLE_NAME.")
    max_retries: int = Field(default=3, description="Retries per call (MAX_RETRIES).")
    max_batch_size: int = Field(
        default=100,
        ge=1,
        le=100,
        description="Records per WriteRecords call, 1..100 (the API's limit) "
        "(TIMESTREAM_MAX_BATCH_SIZE).",
    )
    threads: int = Field(default=4, description="Concurrent WriteRecords calls.")
    backoff_seconds: float = Field(default=0.2, description="First retry delay; doubles.")
    _client: Any = PrivateAttr(default=None)
    _query_client: Any = PrivateAttr(default=None)

    def get_client(self) -> Any:
        if self._client is None:
            # One attempt in botocore: this resource retries, and only what is retryable.
            self._client = build_client(self, "timestream-write", max_attempts=1)
        return self._client

    def get_query_client(self) -> Any:
        """timestream-query (the migration's reads); the caller retries what is retryable."""
        if self._query_client is None:
            self._query_client = build_client(
                self, "timestream-query", max_attempts=1, parser_factory=QueryParserFactory()
            )
        return self._query_client

    def set_client(self, client: Any) -> None:
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
        client: Any,
        table: str,
        index: int,
        common: dict[str, Any],
        records: list[dict[str, Any]],
    ) -> CallResult:
        result = CallResult(call_index=index)
        attempt = 0
        while True:
            try:
                client.write_records(
                    DatabaseName=self.database,
                    TableName=table,
                    CommonAttributes=common,
                    Records=records,
                )
                result.written = len(records)
                return result
            except ClientError as error:
                code = error.response.get("Error", {}).get("Code", "")
                status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
                if code == "RejectedRecordsException":
                    for item in error.response.get("RejectedRecords", []):
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
                problem = f"{code or status}: {error}"
            except BotoConnectionError as error:
                problem = f"connection error: {error}"
            if attempt >= self.max_retries:
                raise TimestreamUnavailableError(
                    f"Timestream WriteRecords to {self.database}.{table} failed after "
                    f"{attempt + 1} attempts: {problem}"
                )
            delay = self.backoff_seconds * (2**attempt)
            time.sleep(delay + random.uniform(0, delay))  # nosec B311  # backoff jitter, not a secret
            attempt += 1
            result.retries += 1


class EnergyStorageResource(ConfigurableResource):
    """Where the energy loads read processed Parquet and put quarantined rows."""

    processed_bucket: str = Field(description="Bucket the processed energy Parquet lands in.")
    quarantine_prefix: str = Field(
        default="quarantine/energy",
        description="Prefix in the processed bucket for rejected rows, per store and object.",
    )
    notification_queue_url: str | None = Field(
        default=None,
        description="SQS queue receiving the processed bucket's ObjectCreated notifications "
        "for `dataset=` objects. When set, the sensor reads new objects from it (O(new)) and "
        "lists the bucket only to reconcile; unset, every tick lists.",
    )
    reconcile_interval_seconds: float = Field(
        default=3600.0,
        ge=0,
        description="How often the sensor lists the `dataset=` prefixes to catch an object "
        "whose notification was lost (also on its first tick).",
    )

    sinks: str = Field(
        default="timestream,influxdb",
        description="Stores the energy loads write (ONS_ENERGY_SINKS): `timestream,influxdb` "
        "while both run, `influxdb` after cutover, `timestream` to roll back.",
    )

    migration_export: str = Field(
        default="unload",
        description="How the migration exports a window (ONS_MIGRATION_EXPORT): `unload` "
        "(UNLOAD to S3 as Parquet) or `query` (Query API pages, the fallback).",
    )
    export_bucket: str | None = Field(
        default=None,
        description="Bucket for UNLOAD exports (ONS_MIGRATION_EXPORT_BUCKET); unset: the "
        "processed bucket.",
    )
    export_prefix: str = Field(
        default="exports/timestream",
        description="Prefix for UNLOAD exports (ONS_MIGRATION_EXPORT_PREFIX); a window's "
        "objects are deleted once it is validated, and a lifecycle rule expires the rest.",
    )

    def quarantine_key(self, store: str, key: str) -> str:
        return f"{self.quarantine_prefix}/{store}/{key}"

    def writes(self, store: str) -> bool:
        """Whether the loads write `store`.

        Raises:
            ValueError: `sinks` names no store or one that does not exist.
        """
        names = {name.strip() for name in self.sinks.split(",") if name.strip()}
        if not names or not names <= {"timestream", "influxdb"}:
            raise ValueError(
                f"ONS_ENERGY_SINKS={self.sinks!r}: expected `timestream,influxdb`, `influxdb` "
                "or `timestream`"
            )
        return store in names
