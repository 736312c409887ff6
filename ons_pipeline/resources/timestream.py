"""Amazon Timestream (timestream-write) for the energy loads.

WriteRecords takes at most 100 records a call (the API limit); calls run on a few threads.
Only throttling, 5xx and connection errors are retried (exponential backoff with jitter);
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
from dagster import ConfigurableResource
from dagster_aws.utils import ResourceWithBoto3Configuration
from pydantic import Field, PrivateAttr

from ons_pipeline.resources.aws import build_client

_RETRYABLE_CODES = {"ThrottlingException", "InternalServerException", "ServiceUnavailable"}


class TimestreamUnavailableError(RuntimeError):
    """Retries exhausted on throttling or server errors."""


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

    def get_client(self) -> Any:
        if self._client is None:
            # One attempt in botocore: this resource retries, and only what is retryable.
            self._client = build_client(self, "timestream-write", max_attempts=1)
        return self._client

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
                if code not in _RETRYABLE_CODES and status < 500:
                    raise
                problem = f"{code or status}: {error}"
            except BotoConnectionError as error:
                problem = f"connection error: {error}"
            if attempt >= self.max_retries:
                raise TimestreamUnavailableError(
                    f"Timestream WriteRecords to {self.database}.{table} failed after "
                    f"{attempt + 1} attempts: {problem}"
                )
            delay = self.backoff_seconds * (2**attempt)
            time.sleep(delay + random.uniform(0, delay))
            attempt += 1
            result.retries += 1


class EnergyStorageResource(ConfigurableResource):
    """Where the energy loads read processed Parquet and put quarantined rows."""

    processed_bucket: str = Field(description="Bucket the processed energy Parquet lands in.")
    quarantine_prefix: str = Field(
        default="quarantine/energy",
        description="Prefix in the processed bucket for rejected rows, per store and object.",
    )

    def quarantine_key(self, store: str, key: str) -> str:
        return f"{self.quarantine_prefix}/{store}/{key}"
