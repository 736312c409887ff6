"""Read a time window out of Timestream through the Query API, page by page.

This is the fallback export (`ONS_MIGRATION_EXPORT=query`); the default is UNLOAD to S3 as
Parquet (`unload.py`, AWS's documented route for large exports), which skips the JSON: about
260 bytes a record through 1 MB pages, decoded row by row, bound this path's throughput
(benchmarks/energy_migration.py prints both). Query pages need only `timestream:Select`,
leave nothing in S3 to clean up, and the same API answers the validation's aggregates
(`stats_query`), so both modes use it for those. Pages are streamed into InfluxDB so memory
stays bounded by a page group. The SQL is built only from names checked against
Timestream's own naming rule and from integer nanosecond bounds, never from user text.
"""

from __future__ import annotations

import random
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

from botocore.exceptions import ClientError
from botocore.exceptions import ConnectionError as BotoConnectionError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from types_boto3_timestream_query import TimestreamQueryClient

# Timestream database, table, dimension and measure names (plus `::` of measure_value::type).
_NAME: Final = re.compile(r"^[A-Za-z0-9_.\-]+(::[a-z]+)?$")
_RETRYABLE: Final = {"ThrottlingException", "InternalServerException", "ServiceUnavailable"}


class TimestreamQueryError(RuntimeError):
    """A query Timestream refuses for good (validation, access, missing table)."""


class TimestreamQueryUnavailableError(RuntimeError):
    """Throttling or server errors outlasted the retries."""


def identifier(name: str) -> str:
    """`name` as a double-quoted identifier, after checking it against the naming rule.

    Raises:
        ValueError: the name could carry SQL.
    """
    if not isinstance(name, str) or not 1 <= len(name) <= 256 or not _NAME.fullmatch(name):
        raise ValueError(f"not a valid Timestream name: {name!r}")
    return f'"{name}"'


@dataclass(frozen=True)
class Window:
    """Half-open `[start_ns, end_ns)`: adjacent windows share no instant and skip none."""

    start_ns: int
    end_ns: int

    @classmethod
    def day(cls, key: str) -> Window:
        start = datetime.strptime(key, "%Y-%m-%d").replace(tzinfo=UTC)
        end = start + timedelta(days=1)
        return cls(int(start.timestamp()) * 10**9, int(end.timestamp()) * 10**9)

    def sql(self) -> str:
        if not isinstance(self.start_ns, int) or not isinstance(self.end_ns, int):
            raise TypeError("window bounds must be integers")
        return (
            f"time >= from_nanoseconds({self.start_ns:d}) "
            f"AND time < from_nanoseconds({self.end_ns:d})"
        )


def window_query(database: str, table: str, window: Window) -> str:
    """Every record of the window; `SELECT *` so multi- and single-measure columns come back."""
    return f"SELECT * FROM {identifier(database)}.{identifier(table)} WHERE {window.sql()}"  # nosec B608  # validated identifiers, integer bounds


def columns_query(database: str, table: str, window: Window) -> str:
    """The table's columns (a `SELECT *` answer lists them all), at most one row read."""
    return f"{window_query(database, table, window)} LIMIT 1"


def stats_query(
    database: str, table: str, window: Window, dimensions: list[str], measures: list[str]
) -> str:
    """Per dimension set and measure name: count, sum, first and last time of each measure."""
    keys = [identifier(name) for name in [*dimensions, "measure_name"]]
    parts = list(keys)
    for index, measure in enumerate(measures):
        column = identifier(measure)
        present = f"CASE WHEN {column} IS NOT NULL THEN time END"
        parts += [
            f'count({column}) AS "n_{index}"',
            f'sum({column}) AS "s_{index}"',
            f'to_nanoseconds(min({present})) AS "f_{index}"',
            f'to_nanoseconds(max({present})) AS "l_{index}"',
        ]
    return (
        f"SELECT {', '.join(parts)} FROM {identifier(database)}.{identifier(table)} "  # nosec B608  # validated identifiers, integer bounds
        f"WHERE {window.sql()} GROUP BY {', '.join(keys)}"
    )


def query_pages(
    client: TimestreamQueryClient,
    statement: str,
    *,
    max_retries: int = 5,
    backoff_seconds: float = 0.2,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[dict[str, Any]]:
    """Each page of the answer until the last `NextToken`, one request at a time.

    A page may hold no rows while the query runs; only a page without `NextToken` ends it.

    Raises:
        TimestreamQueryError: a permanent error (nothing is retried or marked done).
        TimestreamQueryUnavailableError: throttling or 5xx after `max_retries` retries.
    """
    token: str | None = None
    while True:
        kwargs: dict[str, Any] = {"QueryString": statement}
        if token:
            kwargs["NextToken"] = token
        attempt = 0
        while True:
            try:
                page = client.query(**kwargs)
                break
            except ClientError as error:
                code = error.response.get("Error", {}).get("Code", "")
                status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
                if code not in _RETRYABLE and status < 500:
                    raise TimestreamQueryError(
                        f"Timestream refused the query ({code or status}): "
                        f"{error.response.get('Error', {}).get('Message', error)}"
                    ) from error
                problem = f"{code or status}: {error}"
            except BotoConnectionError as error:
                problem = f"connection error: {error}"
            if attempt >= max_retries:
                raise TimestreamQueryUnavailableError(
                    f"Timestream Query failed after {attempt + 1} attempts: {problem}"
                )
            delay = backoff_seconds * (2**attempt)
            sleep(delay + random.uniform(0, delay))  # nosec B311  # retry jitter, not a secret
            attempt += 1
        yield page
        token = page.get("NextToken")
        if not token:
            return
