"""Energy arrivals over the wire: the processed bucket announces objects on the stack's SQS.

Late, out-of-order and back-dated keys are each loaded exactly once; a lost notification is
caught by the reconcile; switching the sensor on after the demo reloads nothing.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from datetime import timedelta

import boto3
import numpy as np
import pytest
from dagster import DagsterInstance, SensorResult, SkipReason, build_sensor_context, materialize

from ons_pipeline.energy.assets import influxdb_points, timestream_records
from ons_pipeline.energy.partitions import object_key_for, partition_key_for
from ons_pipeline.energy.schema import ObjectRef, objects_from_event, objects_from_message
from ons_pipeline.energy.sensors import energy_object_sensor
from ons_pipeline.local.demo.driver import run_energy_demo, stack_definitions, stack_resources
from ons_pipeline.local.demo.energy_data import BUILDERS, demo_days, object_key, to_parquet
from ons_pipeline.local.stack import announce_objects
from ons_pipeline.resources import EnergyStorageResource

pytestmark = pytest.mark.integration

REGION = "eu-west-2"


class Arrivals:
    """A fresh processed bucket announcing `dataset=` objects on a fresh queue."""

    def __init__(self, stack_env: dict[str, str], instance: DagsterInstance | None = None) -> None:
        suffix = uuid.uuid4().hex[:10]
        self.s3 = boto3.client("s3", region_name=REGION)
        self.sqs = boto3.client("sqs", region_name=REGION)
        self.bucket = f"processed-{suffix}"
        self.s3.create_bucket(
            Bucket=self.bucket, CreateBucketConfiguration={"LocationConstraint": REGION}
        )
        self.queue = announce_objects(
            self.s3, self.sqs, self.bucket, f"energy-{suffix}", "dataset="
        )
        self.resources = stack_resources(stack_env)
        self.resources["energy_storage"] = EnergyStorageResource(
            processed_bucket=self.bucket, notification_queue_url=self.queue
        )
        self.resources["influxdb"] = self.resources["influxdb"].model_copy(
            update={"bucket": f"arrivals_{suffix}"}
        )
        self.instance = instance or DagsterInstance.ephemeral()
        self.loads: Counter[str] = Counter()
        self.rng = np.random.default_rng(3)
        self.cursor: str | None = None

    def put(self, dataset: str, days_ago: int) -> str:
        day = demo_days(1)[0] - timedelta(days=days_ago)
        key = object_key(dataset, day)
        self.s3.put_object(
            Bucket=self.bucket, Key=key, Body=to_parquet(BUILDERS[dataset](day, self.rng))
        )
        return key

    def tick(self, cursor: str | None) -> SensorResult | SkipReason:
        context = build_sensor_context(
            cursor=cursor,
            instance=self.instance,
            resources={k: self.resources[k] for k in ("s3", "energy_storage")},
        )
        result = energy_object_sensor(context)
        self.cursor = getattr(result, "cursor", None) or cursor  # what Dagster would keep
        return result

    def load(self, result: SensorResult | SkipReason) -> list[str]:
        """Run what the tick asked for, as the daemon would; the objects requested."""
        for request in getattr(result, "dynamic_partitions_requests", None) or []:
            self.instance.add_dynamic_partitions(
                request.partitions_def_name, list(request.partition_keys)
            )
        keys = [str(r.partition_key) for r in getattr(result, "run_requests", None) or []]
        for key in keys:
            run = materialize(
                [influxdb_points, timestream_records],
                partition_key=key,
                resources=self.resources,
                instance=self.instance,
            )
            assert run.success
            self.loads[object_key_for(key)] += 1
        return [object_key_for(key) for key in keys]

    def waiting(self) -> int:
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=self.queue,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return sum(int(v) for v in attributes.values())


def test_late_out_of_order_and_back_dated_keys_are_loaded_exactly_once(
    stack_env: dict[str, str],
) -> None:
    feed = Arrivals(stack_env)
    assert feed.load(feed.tick(None)) == []  # reconciles the empty bucket
    newest = feed.put("generation", 0)
    assert feed.load(feed.tick(feed.cursor)) == [newest]
    # A StartAfter cursor at `newest` would never see these: they sort before it.
    back_dated = feed.put("generation", 9)
    other = feed.put("consumption", 3)
    late = feed.put("transmission", 30)
    feed.s3.copy_object(  # the newest announced again (re-uploaded): loaded already
        Bucket=feed.bucket,
        Key=newest,
        CopySource={"Bucket": feed.bucket, "Key": newest},
        MetadataDirective="REPLACE",
    )
    assert sorted(feed.load(feed.tick(feed.cursor))) == sorted([back_dated, other, late])
    assert feed.load(feed.tick(feed.cursor)) == []
    assert feed.loads == {key: 1 for key in (newest, back_dated, other, late)}
    assert sorted(feed.instance.get_dynamic_partitions("energy_processed_objects")) == sorted(
        partition_key_for(key) for key in (newest, back_dated, other, late)
    )
    assert feed.waiting() == 0, "every announcement was deleted once its partition existed"


def test_a_purged_queue_is_caught_by_the_reconcile(stack_env: dict[str, str]) -> None:
    feed = Arrivals(stack_env)
    feed.tick(None)
    cursor = feed.cursor
    key = feed.put("transmission", 1)
    feed.sqs.purge_queue(QueueUrl=feed.queue)
    assert feed.load(feed.tick(cursor)) == []  # within the hour the bucket is not listed
    an_hour_ago = json.dumps({"reconciled_at": json.loads(cursor)["reconciled_at"] - 3601})
    assert feed.load(feed.tick(an_hour_ago)) == [key]
    assert feed.loads == {key: 1}


def test_switching_the_sensor_on_after_the_demo_reloads_nothing(
    stack_env: dict[str, str],
) -> None:
    instance = DagsterInstance.ephemeral()
    assert run_energy_demo(stack_definitions(stack_env), instance, days=3) == 0
    storage = EnergyStorageResource(
        processed_bucket=stack_env["ONS_PROCESSED_BUCKET"],
        notification_queue_url=stack_env["ONS_ENERGY_QUEUE_URL"],
    )
    s3 = boto3.client("s3", region_name=REGION)
    new = "dataset=generation/year=2020/month=01/generation_20200101.parquet"
    frame = BUILDERS["generation"](demo_days(1)[0], np.random.default_rng(5))
    s3.put_object(Bucket=storage.processed_bucket, Key=new, Body=to_parquet(frame))
    context = build_sensor_context(
        instance=instance,
        resources={"s3": stack_resources(stack_env)["s3"], "energy_storage": storage},
    )
    result = energy_object_sensor(context)
    assert [r.partition_key for r in result.run_requests] == [partition_key_for(new)]
    s3.delete_object(Bucket=storage.processed_bucket, Key=new)


def test_notification_bodies_from_the_stack_parse_like_the_step_functions_form(
    stack_env: dict[str, str],
) -> None:
    feed = Arrivals(stack_env)
    key = "dataset=consumption/year=2026/month=11/late file=1, (copy).parquet"
    feed.s3.put_object(Bucket=feed.bucket, Key=key, Body=b"x")
    bodies = [
        m["Body"]
        for m in feed.sqs.receive_message(QueueUrl=feed.queue, MaxNumberOfMessages=10).get(
            "Messages", []
        )
    ]
    named = [ref for body in bodies for ref in objects_from_message(body)]
    assert named == objects_from_event({"bucket": feed.bucket, "key": key})
    assert named == [ObjectRef(feed.bucket, key)]
    assert any("s3:TestEvent" in body for body in bodies) or len(bodies) == 1


def test_objects_the_sensor_cannot_load_are_reported(
    stack_env: dict[str, str], capfd: pytest.CaptureFixture[str]
) -> None:
    feed = Arrivals(stack_env)
    feed.tick(None)
    cursor = feed.cursor
    for key in ("dataset=generation/notes.txt", "dataset=generation/a...parquet"):
        feed.s3.put_object(Bucket=feed.bucket, Key=key, Body=b"x")
    capfd.readouterr()
    result = feed.tick(cursor)
    assert not getattr(result, "run_requests", None)
    log = capfd.readouterr().err  # the sensor's log (Dagster's console handler)
    assert "dataset=generation/notes.txt: not a .parquet object" in log
    assert "dataset=generation/a...parquet: key contains characters" in log
    assert feed.waiting() == 0, "reported, so not left on the queue"
