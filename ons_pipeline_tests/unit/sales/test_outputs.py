"""Star-file naming, deterministic bytes, change detection and the write-once rule."""

from __future__ import annotations

from datetime import datetime

import boto3
import pandas as pd
import pyarrow as pa
import pytest
from moto import mock_aws

from ons_pipeline.resources import ObjectStoreResource
from ons_pipeline.sales.outputs import (
    changed_rows,
    from_parquet_bytes,
    output_key,
    to_parquet_bytes,
)

SCHEMA = pa.schema([("id", pa.int64()), ("name", pa.string())])


def frame(rows: list[tuple[int, str]]) -> pd.DataFrame:
    return pa.Table.from_pylist([{"id": i, "name": n} for i, n in rows], schema=SCHEMA).to_pandas(
        types_mapper=pd.ArrowDtype
    )


def test_output_key_follows_the_seed_convention() -> None:
    key = output_key("dim_staff", 12, datetime(2022, 11, 3, 14, 20, 49, 962000))
    assert key == "dim_staff/dim_staff_packet_00000012_processed_20221103T142049962000.parquet"


def test_parquet_bytes_are_deterministic_and_round_trip() -> None:
    data = to_parquet_bytes(frame([(1, "a"), (2, "b")]), SCHEMA)
    assert data == to_parquet_bytes(frame([(1, "a"), (2, "b")]), SCHEMA)
    assert from_parquet_bytes(data)["name"].tolist() == ["a", "b"]


def test_changed_rows_are_new_or_different() -> None:
    before = frame([(1, "a"), (2, "b")])
    now = frame([(1, "a"), (2, "B"), (3, "c")])
    assert changed_rows(now, before)["id"].tolist() == [2, 3]
    assert changed_rows(now, None)["id"].tolist() == [1, 2, 3]
    assert changed_rows(before, before).empty


@mock_aws
def test_put_bytes_once_is_idempotent_and_never_overwrites() -> None:
    boto3.client("s3", region_name="eu-west-2").create_bucket(
        Bucket="out-bucket", CreateBucketConfiguration={"LocationConstraint": "eu-west-2"}
    )
    s3 = ObjectStoreResource(region_name="eu-west-2")
    assert s3.put_bytes_once("out-bucket", "k", b"one", "text/plain") == "written"
    assert s3.put_bytes_once("out-bucket", "k", b"one", "text/plain") == "unchanged"
    with pytest.raises(FileExistsError, match="different content"):
        s3.put_bytes_once("out-bucket", "k", b"two", "text/plain")
    assert s3.get_bytes("out-bucket", "k") == b"one"
    assert s3.get_bytes("out-bucket", "missing") is None
