"""The arrival sensor over several ticks against moto's in-process S3 and SQS."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from dagster import (
    AssetMaterialization,
    DagsterInstance,
    SensorResult,
    SkipReason,
    build_sensor_context,
)
from moto import mock_aws

from ons_pipeline.energy.assets import INFLUXDB_KEY, TIMESTREAM_KEY
from ons_pipeline.energy.partitions import partition_key_for
from ons_pipeline.energy.schema import ObjectRef, objects_from_message
from ons_pipeline.energy.sensors import energy_object_sensor, requests_from_event
from ons_pipeline.local.stack import announce_objects
from ons_pipeline.resources import EnergyStorageResource, ObjectStoreResource

if TYPE_CHECKING:
    from collections.abc import Iterator

BUCKET = "ons-processed-test"
REGION = "eu-west-2"


@pytest.fixture
def aws() -> Iterator[tuple[Any, str]]:
    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
        queue = announce_objects(
            s3, boto3.client("sqs", region_name=REGION), BUCKET, "energy-test", "dataset="
        )
        yield s3, queue


def tick(
    instance: DagsterInstance, cursor: str | None, queue: str | None, **storage: Any
) -> SensorResult | SkipReason:
    context = build_sensor_context(
        cursor=cursor,
        instance=instance,
        resources={
            "s3": ObjectStoreResource(region_name=REGION),
            "energy_storage": EnergyStorageResource(
                processed_bucket=BUCKET, notification_queue_url=queue, **storage
            ),
        },
    )
    return energy_object_sensor(context)


def requested(result: SensorResult | SkipReason) -> list[str]:
    return [str(r.partition_key) for r in getattr(result, "run_requests", None) or []]


def short(*object_keys: str) -> list[str]:
    return [partition_key_for(key) for key in object_keys]


def mark_loaded(instance: DagsterInstance, partition_keys: list[str]) -> None:
    for key in partition_keys:
        for asset_key in (INFLUXDB_KEY, TIMESTREAM_KEY):
            instance.report_runless_asset_event(AssetMaterialization(asset_key, partition=key))


def put(s3: Any, *keys: str) -> None:
    for key in keys:
        s3.put_object(Bucket=BUCKET, Key=key, Body=b"x")


def test_back_dated_keys_are_found_from_the_queue_and_loaded_once(aws: tuple[Any, str]) -> None:
    s3, queue = aws
    instance = DagsterInstance.ephemeral()
    first = tick(instance, None, queue)  # reconciles an empty bucket
    assert requested(first) == []
    cursor = first.cursor
    newest = "dataset=generation/year=2026/month=11/generation_20261129.parquet"
    put(s3, newest, "dataset=generation/year=2026/month=11/notes.txt", "fact_sales/x.parquet")
    second = tick(instance, cursor, queue)
    assert requested(second) == ["generation/2026-11/generation_20261129"]
    assert instance.get_dynamic_partitions("energy_processed_objects") == short(newest)
    mark_loaded(instance, short(newest))
    # Sorts before the newest key: a StartAfter cursor would never see it.
    late = "dataset=generation/year=2026/month=11/generation_20261120.parquet"
    other = "dataset=consumption/year=2025/month=01/consumption_20250101.parquet"
    put(s3, late, other, newest)  # the newest is re-announced: already loaded, not again
    third = tick(instance, second.cursor, queue)
    assert sorted(requested(third)) == sorted(short(late, other))
    mark_loaded(instance, short(late, other))
    assert requested(tick(instance, third.cursor, queue)) == []
    attributes = boto3.client("sqs", region_name=REGION).get_queue_attributes(
        QueueUrl=queue, AttributeNames=["ApproximateNumberOfMessages"]
    )
    assert attributes["Attributes"]["ApproximateNumberOfMessages"] == "0"


def test_a_lost_notification_is_caught_by_the_next_reconcile(aws: tuple[Any, str]) -> None:
    s3, queue = aws
    instance = DagsterInstance.ephemeral()
    cursor = tick(instance, None, queue).cursor
    key = "dataset=transmission/year=2026/month=11/transmission_20261101.parquet"
    put(s3, key)
    boto3.client("sqs", region_name=REGION).purge_queue(QueueUrl=queue)
    assert requested(tick(instance, cursor, queue)) == []  # within the hour: not listed
    an_hour_ago = json.dumps({"reconciled_at": json.loads(cursor)["reconciled_at"] - 3600})
    assert requested(tick(instance, an_hour_ago, queue)) == short(key)


def test_first_tick_does_not_reload_what_is_loaded(aws: tuple[Any, str]) -> None:
    s3, queue = aws
    instance = DagsterInstance.ephemeral()
    loaded = [f"dataset=generation/year=2026/month=11/g_{day}.parquet" for day in range(10, 20)]
    put(s3, *loaded)
    instance.add_dynamic_partitions("energy_processed_objects", short(*loaded))
    mark_loaded(instance, short(*loaded))
    new = "dataset=generation/year=2026/month=11/g_20.parquet"
    put(s3, new)
    assert requested(tick(instance, None, queue)) == short(new)


def test_without_a_queue_every_tick_lists(aws: tuple[Any, str]) -> None:
    s3, _ = aws
    instance = DagsterInstance.ephemeral()
    key = "dataset=generation/year=2026/month=11/a.parquet"
    put(s3, key)
    first = tick(instance, None, None)
    assert requested(first) == short(key)
    mark_loaded(instance, short(key))
    late = "dataset=generation/year=2026/month=10/a.parquet"
    put(s3, late)
    assert requested(tick(instance, first.cursor, None)) == short(late)


def test_a_failed_tick_leaves_the_announcements_for_the_next(
    aws: tuple[Any, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    s3, queue = aws
    monkeypatch.setattr("ons_pipeline.energy.sensors.VISIBILITY_TIMEOUT_SECONDS", 1)
    instance = DagsterInstance.ephemeral()
    cursor = tick(instance, None, queue).cursor
    key = "dataset=generation/year=2026/month=11/b.parquet"
    put(s3, key)

    original = instance.add_dynamic_partitions
    instance.add_dynamic_partitions = _raise  # type: ignore[method-assign]
    with pytest.raises(ConnectionError):
        tick(instance, cursor, queue, reconcile_interval_seconds=3600)
    instance.add_dynamic_partitions = original  # type: ignore[method-assign]
    time.sleep(1.5)  # the message was not deleted: it reappears after its visibility timeout
    assert requested(tick(instance, cursor, queue)) == short(key)


def _raise(*_args: Any, **_kwargs: Any) -> None:
    raise ConnectionError("instance storage unreachable")


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
            {"s3": {"bucket": {"name": BUCKET}, "object": {"key": "elsewhere/y.parquet"}}},
        ]
    }
    from_s3 = requests_from_event(notification, BUCKET)
    from_sfn = requests_from_event({"bucket": BUCKET, "key": key}, BUCKET)
    assert [r.partition_key for r in from_s3.run_requests] == ["generation/2024-02/a b"]
    assert [r.partition_key for r in from_sfn.run_requests] == short(key)
    assert from_s3.dynamic_partitions_requests[0].partition_keys == short(key)
    # An unknown dataset under dataset= is loaded, to be rejected with a quarantine record.
    unknown = "dataset=generation_backup/y.parquet"
    assert [
        r.partition_key
        for r in requests_from_event({"bucket": BUCKET, "key": unknown}, BUCKET).run_requests
    ] == [unknown]


def test_objects_an_instance_holds_under_old_full_keys_are_not_loaded_twice(
    aws: tuple[Any, str],
) -> None:
    s3, queue = aws
    instance = DagsterInstance.ephemeral()
    # Partitions an older release added under the object keys: two loaded, one not.
    loaded = [f"dataset=consumption/year=2026/month=11/c_{day}.parquet" for day in (1, 2)]
    failed = "dataset=consumption/year=2026/month=11/c_3.parquet"
    put(s3, *loaded, failed)
    instance.add_dynamic_partitions("energy_processed_objects", [*loaded, failed])
    mark_loaded(instance, loaded)
    new = "dataset=consumption/year=2026/month=11/c_4.parquet"
    put(s3, new)
    first = tick(instance, None, queue)  # reconciles by listing, and reads the announcements
    # The one not loaded is asked again under its old key; only the new object is added.
    assert sorted(requested(first)) == sorted([failed, *short(new)])
    assert sorted(instance.get_dynamic_partitions("energy_processed_objects")) == sorted(
        [*loaded, failed, *short(new)]
    )
    mark_loaded(instance, [failed, *short(new)])
    put(s3, loaded[0])  # re-announced: known under its old key and loaded
    assert requested(tick(instance, first.cursor, queue)) == []
    an_hour_ago = json.dumps({"reconciled_at": json.loads(first.cursor)["reconciled_at"] - 3600})
    assert requested(tick(instance, an_hour_ago, queue)) == []
    assert len(instance.get_dynamic_partitions("energy_processed_objects")) == 4


def test_a_key_that_reads_as_another_objects_partition_is_reported_not_added(
    aws: tuple[Any, str],
) -> None:
    s3, _ = aws
    instance = DagsterInstance.ephemeral()
    lookalike = "generation/2026-11/dataset%3Dgeneration%2Fx.parquet"
    canonical = "dataset=generation/year=2026/month=11/dataset%3Dgeneration%2Fx.parquet.parquet"
    result = requests_from_event({"bucket": BUCKET, "key": lookalike}, BUCKET)
    assert result.run_requests == []
    assert result.dynamic_partitions_requests == []
    put(s3, canonical)
    assert requested(tick(instance, None, None)) == [lookalike]


def test_message_bodies_sns_wrapped_test_events_and_garbage() -> None:
    record = {"Records": [{"s3": {"bucket": {"name": "b"}, "object": {"key": "dataset%3Dx"}}}]}
    assert objects_from_message(json.dumps(record)) == [ObjectRef("b", "dataset=x")]
    wrapped = json.dumps({"Type": "Notification", "Message": json.dumps(record)})
    assert objects_from_message(wrapped) == [ObjectRef("b", "dataset=x")]
    assert objects_from_message(json.dumps({"Event": "s3:TestEvent", "Bucket": "b"})) == []
    with pytest.raises(ValueError, match="not JSON"):
        objects_from_message("not json")
    with pytest.raises(ValueError, match="neither"):
        objects_from_message(json.dumps({"hello": 1}))
