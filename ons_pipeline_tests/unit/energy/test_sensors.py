"""The arrival sensor over several ticks against moto's in-process S3."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from dagster import DagsterInstance, SensorResult, SkipReason, build_sensor_context
from moto import mock_aws

from ons_pipeline.energy.sensors import energy_object_sensor, new_objects, requests_from_event
from ons_pipeline.resources import EnergyStorageResource, ObjectStoreResource

if TYPE_CHECKING:
    from collections.abc import Iterator

BUCKET = "ons-processed-test"


@pytest.fixture
def s3() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("s3", region_name="eu-west-2")
        client.create_bucket(
            Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-2"}
        )
        yield client


def tick(cursor: str | None, store: ObjectStoreResource | None = None) -> Any:
    context = build_sensor_context(
        cursor=cursor,
        instance=DagsterInstance.ephemeral(),
        resources={
            "s3": store or ObjectStoreResource(region_name="eu-west-2"),
            "energy_storage": EnergyStorageResource(processed_bucket=BUCKET),
        },
    )
    return energy_object_sensor(context)


def put(s3: Any, *keys: str) -> None:
    for key in keys:
        s3.put_object(Bucket=BUCKET, Key=key, Body=b"x")


def test_ticks_pick_up_each_new_object_once(s3: Any) -> None:
    assert isinstance(tick(None), SkipReason)
    put(
        s3,
        "dataset=generation/year=2024/month=02/generation_20240201.parquet",
        "dataset=transmission/year=2024/month=02/t_20240201.parquet",
        "dataset=generation/year=2024/month=02/notes.txt",
        "quarantine/energy/influxdb/dataset=generation/x.parquet",
        "fact_sales_order/x.parquet",
    )
    first = tick(None)
    assert isinstance(first, SensorResult)
    keys = [r.partition_key for r in first.run_requests]
    assert keys == [
        "dataset=generation/year=2024/month=02/generation_20240201.parquet",
        "dataset=transmission/year=2024/month=02/t_20240201.parquet",
    ]
    assert [r.run_key for r in first.run_requests] == keys
    assert first.dynamic_partitions_requests[0].partition_keys == keys

    nothing = tick(first.cursor)
    assert isinstance(nothing, SensorResult | SkipReason)
    assert not getattr(nothing, "run_requests", None)
    cursor = getattr(nothing, "cursor", None) or first.cursor

    # A consumption file sorts before the generation cursor: its own prefix cursor finds it.
    put(s3, "dataset=consumption/year=2024/month=01/c_20240131.parquet")
    put(s3, "dataset=generation/year=2024/month=02/generation_20240202.parquet")
    third = tick(cursor)
    assert [r.partition_key for r in third.run_requests] == [
        "dataset=generation/year=2024/month=02/generation_20240202.parquet",
        "dataset=consumption/year=2024/month=01/c_20240131.parquet",
    ]
    assert isinstance(tick(third.cursor), SkipReason)


def test_a_failed_tick_keeps_the_cursor_and_the_next_tick_catches_up(s3: Any) -> None:
    put(s3, "dataset=generation/year=2024/month=02/a.parquet")
    first = tick(None)

    class Broken(ObjectStoreResource):
        def list_after(self, *args: Any, **kwargs: Any) -> Any:
            raise ConnectionError("S3 unreachable")

    put(s3, "dataset=generation/year=2024/month=02/b.parquet")
    with pytest.raises(Exception, match="S3 unreachable"):
        tick(first.cursor, Broken(region_name="eu-west-2"))
    after = tick(first.cursor)
    assert [r.partition_key for r in after.run_requests] == [
        "dataset=generation/year=2024/month=02/b.parquet"
    ]


def test_page_budget_bounds_a_tick_and_the_cursor_resumes(s3: Any) -> None:
    keys = [f"dataset=generation/year=2024/month=03/f{i:03d}.parquet" for i in range(7)]
    put(s3, *keys)
    store = ObjectStoreResource(region_name="eu-west-2")
    seen: list[str] = []
    cursor: dict[str, str] = {}
    ticks = 0
    while True:
        refs, cursor, exhausted = new_objects(
            store, BUCKET, cursor, pages_per_dataset=1, page_size=3
        )
        seen += [ref.key for ref in refs]
        ticks += 1
        assert len(refs) <= 3
        if exhausted:
            break
    assert seen == keys
    assert ticks == 3
    assert json.loads(json.dumps(cursor))["generation"] == keys[-1]


def test_events_in_both_shapes_plan_the_same_runs() -> None:
    key = "dataset=generation/year=2024/month=02/a b.parquet"
    notification = {
        "Records": [
            {
                "s3": {
                    "bucket": {"name": BUCKET},
                    "object": {"key": "dataset%3Dgeneration/year%3D2024/month%3D02/a+b.parquet"},
                }
            },
            {"s3": {"bucket": {"name": BUCKET}, "object": {"key": "dataset=x/y.parquet"}}},
        ]
    }
    from_s3 = requests_from_event(notification, BUCKET)
    from_sfn = requests_from_event({"bucket": BUCKET, "key": key}, BUCKET)
    assert [r.partition_key for r in from_s3.run_requests] == [key]
    assert [r.partition_key for r in from_sfn.run_requests] == [key]
    assert from_s3.dynamic_partitions_requests[0].partition_keys == [key]
