"""Export a window with Timestream's UNLOAD to S3 as Parquet, and read it back in batches.

Why UNLOAD by default: the Query API returns about 260 bytes of JSON per record in 1 MB
pages, so a large history spends its time in page requests and JSON decoding; UNLOAD writes
the window as typed Parquet in one request (AWS's documented route for large exports), and
the parts are read with pyarrow a batch at a time, so memory is bounded by a part (`max_file_size`,
64 MB) plus a batch, not by the window. The price: an S3 location for exports, the worker's
`s3:PutObject`/`GetObject`/`DeleteObject` on it, and Timestream's UNLOAD metering. The
objects of a window are deleted once it is validated; a lifecycle rule on the prefix
(deploy/terraform) expires what a failed run leaves. The Query-pagination export
(`export.query_pages`) stays as the fallback (`ONS_MIGRATION_EXPORT=query`).

The statement is built only from names checked against Timestream's naming rule, integer
nanosecond bounds, and a bucket and prefix checked against S3's rules.
"""

from __future__ import annotations

import io
import json
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

import pyarrow as pa
import pyarrow.parquet as pq

from ons_pipeline.energy.migration.export import (
    TimestreamQueryError,
    Window,
    query_pages,
    window_query,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

    from types_boto3_s3 import S3Client
    from types_boto3_timestream_query import TimestreamQueryClient

EXPORT_MODES: Final = ("unload", "query")
PART_SIZE: Final = "64MB"
_BUCKET: Final = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")
_SEGMENT: Final = r"(?!\.\.?(?:/|$))[A-Za-z0-9_.=\-]+"  # not "." or ".."
_PREFIX: Final = re.compile(rf"^{_SEGMENT}(/{_SEGMENT})*$")


@dataclass(frozen=True)
class UnloadTarget:
    """Where a window's export goes: `s3://bucket/prefix/<dataset>/<day>/<run>/`."""

    s3: S3Client
    bucket: str
    prefix: str

    def folder(self, dataset: str, window: Window) -> str:
        day = datetime.fromtimestamp(window.start_ns // 10**9, UTC).strftime("%Y-%m-%d")
        folder = f"{self.prefix.strip('/')}/{dataset}/{day}/{uuid.uuid4().hex}/"
        if not _BUCKET.fullmatch(self.bucket) or not _PREFIX.fullmatch(folder.rstrip("/")):
            raise ValueError(f"not a safe export location: s3://{self.bucket}/{folder}")
        return folder


@dataclass
class Export:
    """One UNLOAD's answer: its parts (from the manifest) and where they live."""

    bucket: str
    folder: str
    rows: int
    parts: list[str]
    manifest: dict[str, Any]


def unload_statement(database: str, table: str, window: Window, bucket: str, folder: str) -> str:
    if not _BUCKET.fullmatch(bucket) or not _PREFIX.fullmatch(folder.rstrip("/")):
        raise ValueError(f"not a safe export location: s3://{bucket}/{folder}")
    return (
        f"UNLOAD ({window_query(database, table, window)}) TO 's3://{bucket}/{folder}' "
        f"WITH (format = 'PARQUET', compression = 'NONE', max_file_size = '{PART_SIZE}')"
    )


def _split(url: str) -> tuple[str, str]:
    bucket, _, key = url.removeprefix("s3://").partition("/")
    return bucket, key


def unload_window(
    client: TimestreamQueryClient,
    target: UnloadTarget,
    *,
    database: str,
    table: str,
    dataset: str,
    window: Window,
    **retry: Any,
) -> Export:
    """Run the UNLOAD (retried as any query) and read its manifest.

    Raises:
        TimestreamQueryError: refused, or an answer without a readable manifest.
        TimestreamQueryUnavailableError: throttling or 5xx after the retries.
    """
    folder = target.folder(dataset, window)
    statement = unload_statement(database, table, window, target.bucket, folder)
    page = next(query_pages(client, statement, **retry))
    try:
        names = [column["Name"] for column in page["ColumnInfo"]]
        row = {n: d.get("ScalarValue") for n, d in zip(names, page["Rows"][0]["Data"], strict=True)}
        bucket, key = _split(row["manifestFile"])
        manifest = json.loads(target.s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        parts = [part["url"] for part in manifest["result_files"]]
        rows = int(manifest["query_metadata"]["total_row_count"])
    except (KeyError, IndexError, ValueError, TypeError) as error:
        raise TimestreamQueryError(f"UNLOAD answered without a usable manifest: {error}") from error
    return Export(target.bucket, folder, rows, parts, manifest)


def export_batches(s3: S3Client, export: Export, batch_rows: int) -> Iterator[pa.Table]:
    """The export's records, `batch_rows` at a time, one part in memory at once.

    Text columns (the dimensions) are read as dictionaries: a handful of values repeated
    per row, which the mapping would otherwise encode again.
    """
    for url in export.parts:
        bucket, key = _split(url)
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        schema = pq.read_schema(io.BytesIO(body))
        text = [
            f.name for f in schema if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)
        ]
        with pq.ParquetFile(io.BytesIO(body), read_dictionary=text) as part:
            for batch in part.iter_batches(batch_size=batch_rows):
                yield pa.Table.from_batches([batch])
        del body


def delete_export(s3: S3Client, bucket: str, folder: str) -> int:
    """Delete every object under the export's folder; how many were deleted."""
    deleted = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=folder):
        keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
        if keys:
            answer = s3.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
            if answer.get("Errors"):
                raise RuntimeError(f"export objects not deleted: {answer['Errors'][:5]}")
            deleted += len(keys)
    return deleted
