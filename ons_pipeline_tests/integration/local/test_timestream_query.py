"""The local stack answers Timestream Query over what timestream-write stored, in AWS's shape."""

from __future__ import annotations

import json
import struct
import uuid
from typing import Any

import boto3
import botocore.session
import pytest
from botocore.exceptions import ClientError

pytestmark = pytest.mark.integration

REGION = "eu-west-2"
T0 = 1_704_067_200_000_000_000  # 2024-01-01T00:00:00Z in ns
MODEL = botocore.session.get_session().get_service_model("timestream-query")


def bits(value: float) -> int:
    return struct.unpack("<q", struct.pack("<d", value))[0]


def conforms(value: Any, shape: Any, path: str = "") -> None:
    """`value` holds only members the documented output shape declares, with their types."""
    if shape.type_name == "structure":
        assert isinstance(value, dict), path
        unknown = set(value) - set(shape.members) - {"ResponseMetadata"}
        assert not unknown, f"{path}: undocumented members {unknown}"
        for name, item in value.items():
            if name != "ResponseMetadata":
                conforms(item, shape.members[name], f"{path}.{name}")
    elif shape.type_name == "list":
        assert isinstance(value, list), path
        for index, item in enumerate(value):
            conforms(item, shape.member, f"{path}[{index}]")
    elif shape.type_name == "string":
        assert isinstance(value, str), path
        if shape.enum:
            assert value in shape.enum, f"{path}: {value} not in {shape.enum}"
        if "max" in shape.metadata:
            assert len(value) <= shape.metadata["max"], path
    elif shape.type_name == "boolean":
        assert isinstance(value, bool), path
    elif shape.type_name in ("long", "integer"):
        assert isinstance(value, int), path
    elif shape.type_name == "double":
        assert isinstance(value, float | int), path


@pytest.fixture
def table(stack_env: dict[str, str]) -> tuple[Any, Any, str, str]:
    write = boto3.client("timestream-write", region_name=REGION)
    query = boto3.client("timestream-query", region_name=REGION)
    database, name = f"db_{uuid.uuid4().hex[:8]}", "readings"
    write.create_database(DatabaseName=database)
    write.create_table(DatabaseName=database, TableName=name)
    return write, query, database, name


def test_query_reads_what_was_written_in_the_documented_shape(
    table: tuple[Any, Any, str, str],
) -> None:
    write, query, database, name = table
    common = {
        "Dimensions": [{"Name": "region", "Value": 'SE "co"'}, {"Name": "unit", "Value": "MW"}],
        "MeasureName": "value",
        "MeasureValueType": "DOUBLE",
        "TimeUnit": "NANOSECONDS",
        "Version": 1,
    }
    values = [0.1, 1 / 3, 5e-324, 1.7976931348623157e308, 2.0**53 + 2]
    write.write_records(
        DatabaseName=database,
        TableName=name,
        CommonAttributes=common,
        Records=[{"Time": str(T0 + i), "MeasureValue": repr(v)} for i, v in enumerate(values)],
    )
    # A higher version of the first record replaces it (Timestream's upsert).
    write.write_records(
        DatabaseName=database,
        TableName=name,
        CommonAttributes={**common, "Version": 2},
        Records=[{"Time": str(T0), "MeasureValue": "7.25"}],
    )
    write.write_records(
        DatabaseName=database,
        TableName=name,
        CommonAttributes={
            "Dimensions": [{"Name": "region", "Value": "N"}],
            "MeasureName": "fields",
            "MeasureValueType": "MULTI",
        },
        Records=[
            {
                "Time": str(T0 // 1_000_000),
                "MeasureValues": [{"Name": "power_mw", "Value": "1.5", "Type": "DOUBLE"}],
            }
        ],
    )
    statement = (
        f'SELECT * FROM "{database}"."{name}" WHERE time >= from_nanoseconds({T0}) '
        f"AND time < from_nanoseconds({T0 + 10}) ORDER BY time, region"
    )
    pages = [query.query(QueryString=statement, MaxRows=2)]
    while pages[-1].get("NextToken"):
        pages.append(
            query.query(QueryString=statement, MaxRows=2, NextToken=pages[-1]["NextToken"])
        )
    output = MODEL.operation_model("Query").output_shape
    for page in pages:
        conforms(page, output)
        assert page["QueryId"] == pages[0]["QueryId"]
        assert 1 <= len(page["Rows"]) <= 2
    assert [len(p["Rows"]) for p in pages] == [2, 2, 2]
    assert pages[-1]["QueryStatus"]["ProgressPercentage"] == 100.0
    columns = [(c["Name"], c["Type"]["ScalarType"]) for c in pages[0]["ColumnInfo"]]
    assert columns == [
        ("region", "VARCHAR"),
        ("unit", "VARCHAR"),
        ("measure_name", "VARCHAR"),
        ("time", "TIMESTAMP"),
        ("measure_value::double", "DOUBLE"),
        ("power_mw", "DOUBLE"),
    ]
    rows = [[d.get("ScalarValue") for d in row["Data"]] for p in pages for row in p["Rows"]]
    assert rows[0] == ["N", None, "fields", "2024-01-01 00:00:00.000000000", None, "1.5"]
    assert rows[1] == ['SE "co"', "MW", "value", "2024-01-01 00:00:00.000000000", "7.25", None]
    assert [r[3][-3:] for r in rows[2:]] == ["001", "002", "003", "004"]
    assert [bits(float(r[4])) for r in rows[2:]] == [bits(v) for v in values[1:]]
    assert pages[0]["Rows"][0]["Data"][1] == {"NullValue": True}


def test_aggregates_and_an_empty_answer(table: tuple[Any, Any, str, str]) -> None:
    write, query, database, name = table
    write.write_records(
        DatabaseName=database,
        TableName=name,
        CommonAttributes={"Dimensions": [{"Name": "region", "Value": "N"}], "MeasureName": "v"},
        Records=[{"Time": str(1_704_067_200_000 + i), "MeasureValue": "2.5"} for i in range(4)],
    )
    answer = query.query(
        QueryString=f'SELECT region, count(*) AS n, sum("measure_value::double") AS total '
        f'FROM "{database}"."{name}" GROUP BY region'
    )
    assert [c["Type"]["ScalarType"] for c in answer["ColumnInfo"]] == [
        "VARCHAR",
        "BIGINT",
        "DOUBLE",
    ]
    assert answer["Rows"] == [
        {"Data": [{"ScalarValue": "N"}, {"ScalarValue": "4"}, {"ScalarValue": "10"}]}
    ]
    assert "NextToken" not in answer
    empty = query.query(
        QueryString=f'SELECT * FROM "{database}"."{name}" WHERE time < from_nanoseconds(0)'
    )
    assert empty["Rows"] == [] and "NextToken" not in empty
    assert [c["Name"] for c in empty["ColumnInfo"]][:3] == ["region", "measure_name", "time"]


def test_unlimited_pages_stay_under_a_megabyte(table: tuple[Any, Any, str, str]) -> None:
    write, query, database, name = table
    long_region = "r" * 2000
    for start in range(0, 1500, 100):
        write.write_records(
            DatabaseName=database,
            TableName=name,
            CommonAttributes={
                "Dimensions": [{"Name": "region", "Value": long_region}],
                "MeasureName": "v",
            },
            Records=[
                {"Time": str(1_704_067_200_000 + i), "MeasureValue": "1"}
                for i in range(start, start + 100)
            ],
        )
    statement = f'SELECT * FROM "{database}"."{name}"'
    pages = [query.query(QueryString=statement)]
    while pages[-1].get("NextToken"):
        pages.append(query.query(QueryString=statement, NextToken=pages[-1]["NextToken"]))
    assert len(pages) >= 3
    assert sum(len(p["Rows"]) for p in pages) == 1500


@pytest.mark.parametrize(
    "statement",
    [
        "DROP TABLE x",
        "SELECT 1; SELECT 2",
        "COPY (SELECT 1) TO '/tmp/out.csv'",
        "SELECT * FROM read_csv('/etc/passwd')",
        'SELECT * FROM "nope"."missing"',
        "SELEKT 1",
    ],
)
def test_anything_else_is_a_validation_exception(
    table: tuple[Any, Any, str, str], statement: str
) -> None:
    _, query, _, _ = table
    with pytest.raises(ClientError) as error:
        query.query(QueryString=statement)
    assert error.value.response["Error"]["Code"] == "ValidationException"
    assert error.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_page_limits_and_tokens_are_checked(table: tuple[Any, Any, str, str]) -> None:
    query = table[1]
    with pytest.raises(ClientError, match="MaxRows"):
        query.query(QueryString="SELECT 1", MaxRows=1001)
    with pytest.raises(ClientError) as error:
        query.query(QueryString="SELECT 1", NextToken="bm90IGEgdG9rZW4=")
    assert error.value.response["Error"]["Code"] == "ValidationException"


@pytest.fixture
def export_bucket(stack_env: dict[str, str]) -> tuple[Any, str]:
    s3 = boto3.client("s3", region_name=REGION)
    bucket = f"exports-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
    return s3, bucket


def _write_mixed(write: Any, database: str, name: str) -> None:
    write.write_records(
        DatabaseName=database,
        TableName=name,
        CommonAttributes={
            "Dimensions": [{"Name": "region", "Value": "N"}, {"Name": "unit", "Value": "MW"}],
            "MeasureName": "value",
            "TimeUnit": "NANOSECONDS",
        },
        Records=[{"Time": str(T0 + i), "MeasureValue": repr(i / 3)} for i in range(50)],
    )


def test_unload_writes_parquet_a_manifest_and_metadata_in_the_documented_shape(
    table: tuple[Any, Any, str, str], export_bucket: tuple[Any, str]
) -> None:
    import io

    import pyarrow.parquet as pq

    write, query, database, name = table
    s3, bucket = export_bucket
    _write_mixed(write, database, name)
    select = f'SELECT * FROM "{database}"."{name}" WHERE time >= from_nanoseconds({T0})'

    answer = query.query(
        QueryString=f"UNLOAD ({select}) TO 's3://{bucket}/window/' "
        "WITH (format = 'PARQUET', compression = 'NONE')"
    )

    conforms(answer, MODEL.operation_model("Query").output_shape)
    assert "NextToken" not in answer
    assert answer["QueryStatus"]["ProgressPercentage"] == 100.0
    assert [(c["Name"], c["Type"]["ScalarType"]) for c in answer["ColumnInfo"]] == [
        ("rows", "BIGINT"),
        ("metadataFile", "VARCHAR"),
        ("manifestFile", "VARCHAR"),
    ]
    ((rows, metadata_url, manifest_url),) = [
        [d["ScalarValue"] for d in row["Data"]] for row in answer["Rows"]
    ]
    assert rows == "50"
    query_id = answer["QueryId"]
    assert manifest_url.startswith(f"s3://{bucket}/window/{query_id}_")
    assert manifest_url.endswith("_manifest.json")
    assert metadata_url.startswith(f"s3://{bucket}/window/{query_id}_")
    assert metadata_url.endswith("_metadata.json")

    def read(url: str) -> bytes:
        key = url.removeprefix(f"s3://{bucket}/")
        return s3.get_object(Bucket=bucket, Key=key)["Body"].read()

    manifest = json.loads(read(manifest_url))
    assert set(manifest) == {"result_files", "query_metadata", "author"}
    assert manifest["query_metadata"]["total_row_count"] == 50
    assert manifest["query_metadata"]["result_format"] == "PARQUET"
    assert manifest["author"]["name"] == "Amazon Timestream"
    (part,) = manifest["result_files"]
    assert part["url"].startswith(f"s3://{bucket}/window/results/")
    body = read(part["url"])
    assert part["file_metadata"] == {"content_length_in_bytes": len(body), "row_count": 50}
    assert manifest["query_metadata"]["content_length_in_bytes"] == len(body)
    metadata = json.loads(read(metadata_url))
    columns = [(c["Name"], c["Type"]["ScalarType"]) for c in metadata["ColumnInfo"]]
    assert columns == [
        ("region", "VARCHAR"),
        ("unit", "VARCHAR"),
        ("measure_name", "VARCHAR"),
        ("time", "TIMESTAMP"),
        ("measure_value::double", "DOUBLE"),
    ]
    data = pq.read_table(io.BytesIO(body)).sort_by("time")
    assert data.column_names == [name for name, _ in columns]
    assert [bits(v) for v in data["measure_value::double"].to_pylist()] == [
        bits(i / 3) for i in range(50)
    ]
    times = data["time"].cast("int64").to_pylist()
    assert times == [T0 + i for i in range(50)]


def test_unload_of_nothing_writes_an_empty_manifest(
    table: tuple[Any, Any, str, str], export_bucket: tuple[Any, str]
) -> None:
    _, query, database, name = table
    s3, bucket = export_bucket
    answer = query.query(
        QueryString=f'UNLOAD (SELECT * FROM "{database}"."{name}") TO \'s3://{bucket}/e/\' '
        "WITH (format = 'PARQUET')"
    )
    manifest_url = answer["Rows"][0]["Data"][2]["ScalarValue"]
    key = manifest_url.removeprefix(f"s3://{bucket}/")
    manifest = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    assert manifest["result_files"] == []
    assert manifest["query_metadata"]["total_row_count"] == 0
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert len(keys) == 2  # the manifest and the metadata, no part


@pytest.mark.parametrize(
    "shape",
    [
        "UNLOAD ({select}) TO 's3://{bucket}/x/' WITH (format = 'CSV')",
        "UNLOAD ({select}) TO 's3://{bucket}/x/' WITH (format = 'PARQUET', "
        "partitioned_by = ARRAY['region'])",
        "UNLOAD ({select}) TO 's3://{bucket}/x/'",
        "UNLOAD ({select}) TO 's3://{bucket}/x' WITH (format = 'PARQUET')",
        "UNLOAD ({select}) TO 's3://{bucket}/x/' WITH (format = 'PARQUET', format = 'PARQUET')",
        "UNLOAD ({select}) TO 's3://{bucket}/x/' WITH (format = 'PARQUET', max_file_size = '1MB')",
        "UNLOAD ({select}) TO 's3://{bucket}/x/' WITH (format = 'PARQUET', kms_key = 'k')",
        "UNLOAD (DROP TABLE t) TO 's3://{bucket}/x/' WITH (format = 'PARQUET')",
        "UNLOAD ({select}; SELECT 1) TO 's3://{bucket}/x/' WITH (format = 'PARQUET')",
        "UNLOAD ({select}) TO 's3://no-such-bucket-{bucket}/x/' WITH (format = 'PARQUET')",
        "UNLOAD ({select}) TO '/tmp/x/' WITH (format = 'PARQUET')",
    ],
)
def test_a_malformed_unload_is_a_validation_exception(
    table: tuple[Any, Any, str, str], export_bucket: tuple[Any, str], shape: str
) -> None:
    _, query, database, name = table
    s3, bucket = export_bucket
    statement = shape.format(select=f'SELECT * FROM "{database}"."{name}"', bucket=bucket)
    with pytest.raises(ClientError) as error:
        query.query(QueryString=statement)
    assert error.value.response["Error"]["Code"] == "ValidationException"
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket)  # nothing half-written
