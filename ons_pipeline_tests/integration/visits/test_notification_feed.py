"""Incremental runs fed by the bucket's ObjectCreated notifications (SQS), over the wire."""

from __future__ import annotations

import json
import uuid
from typing import Any

import boto3
import pytest
from dagster import DagsterInstance, materialize

from ons_pipeline.resources import CloudWatchMetricsResource, ObjectStoreResource
from ons_pipeline.resources.visits import VisitsStorageResource
from ons_pipeline.visits.assets import CHECKPOINT_KEY, visit_events_checkpoint
from ons_pipeline.visits.checkpoint import checkpoint_from_parquet
from ons_pipeline.visits.demo_data import generate_corpus, land_files
from ons_pipeline.visits.storage import objects_from_notification

pytestmark = pytest.mark.integration

REGION = "eu-west-2"
CHECKPOINT = "state/events.parquet"
CALLS: list[tuple[str, str]] = []  # (operation, key) the run's S3 client made


class CountingStore(ObjectStoreResource):
    def get_client(self) -> Any:
        if self._client is not None:
            return self._client
        client = super().get_client()

        def record(event_name: str, params: dict[str, Any], **_: Any) -> None:
            CALLS.append((event_name.rsplit(".", 1)[-1], params.get("Key", "")))

        client.meta.events.register("before-parameter-build.s3", record)
        return client


class Feed:
    """Fresh buckets and a queue the event bucket notifies, for one test."""

    def __init__(self) -> None:
        suffix = uuid.uuid4().hex[:10]
        self.source, self.state = f"events-{suffix}", f"checkpoints-{suffix}"
        self.s3 = boto3.client("s3", region_name=REGION)
        self.sqs = boto3.client("sqs", region_name=REGION)
        for bucket in (self.source, self.state):
            self.s3.create_bucket(
                Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION}
            )
        self.queue = self.sqs.create_queue(QueueName=f"created-{suffix}")["QueueUrl"]
        arn = self.sqs.get_queue_attributes(QueueUrl=self.queue, AttributeNames=["QueueArn"])
        self.s3.put_bucket_notification_configuration(
            Bucket=self.source,
            NotificationConfiguration={
                "QueueConfigurations": [
                    {
                        "QueueArn": arn["Attributes"]["QueueArn"],
                        "Events": ["s3:ObjectCreated:*"],
                        "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "logs/"}]}},
                    }
                ]
            },
        )
        self.instance = DagsterInstance.ephemeral()

    def run(self, *, reconcile: bool = False) -> Any:
        CALLS.clear()
        return materialize(
            [visit_events_checkpoint],
            resources={
                "s3": CountingStore(region_name=REGION),
                "metrics": CloudWatchMetricsResource(region_name=REGION),
                "visits_storage": VisitsStorageResource(
                    source_bucket=self.source,
                    checkpoint_bucket=self.state,
                    checkpoint_key=CHECKPOINT,
                    notification_queue_url=self.queue,
                ),
            },
            instance=self.instance,
            run_config={
                "execution": {"config": {"retries": {"disabled": {}}}},
                "ops": {"visit_events_checkpoint": {"config": {"reconcile": reconcile}}},
            },
        )

    def stats(self, result: Any) -> dict[str, Any]:
        (event,) = [
            e for e in result.get_asset_materialization_events() if e.asset_key == CHECKPOINT_KEY
        ]
        return {k: v.value for k, v in event.materialization.metadata.items()}

    def queued(self) -> int:
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=self.queue,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"]) + int(
            attributes["ApproximateNumberOfMessagesNotVisible"]
        )

    def total(self) -> int:
        body = self.s3.get_object(Bucket=self.state, Key=CHECKPOINT)["Body"].read()
        return len(checkpoint_from_parquet(body))


@pytest.fixture
def feed(stack_env: dict[str, str]) -> Feed:
    return Feed()


def operations(name: str) -> list[str]:
    return [key for operation, key in CALLS if operation == name]


def test_incremental_run_takes_new_files_from_the_queue_without_listing(feed: Feed) -> None:
    corpus = generate_corpus(30, seed=4)
    land_files(feed.s3, feed.source, corpus.initial, workers=8)
    first = feed.run()  # first run: lists the prefix, whatever the queue holds
    assert operations("ListObjectsV2")
    total = feed.total()

    land_files(feed.s3, feed.source, corpus.late, workers=8)
    second = feed.run()

    stats = feed.stats(second)
    assert operations("ListObjectsV2") == []
    late_keys = {f.key for f in corpus.late}
    fetched = set(operations("GetObject")) - {CHECKPOINT, "state/events.ledger.parquet"}
    assert fetched == late_keys  # every late file, and only those, although the first
    # run's notifications for the initial files were still on the queue
    assert stats["files_read"] == len(late_keys)
    assert feed.total() == total + stats["new_events_processed"]
    assert feed.queued() == 0  # deleted once checkpoint and ledger were committed
    assert first.success and second.success


def test_replayed_notifications_add_nothing(feed: Feed) -> None:
    corpus = generate_corpus(10, seed=2, late_fraction=0)
    land_files(feed.s3, feed.source, corpus.initial, workers=8)
    feed.run()
    total = feed.total()
    # The same files again (same bytes, same ETag): new notifications, nothing new.
    land_files(feed.s3, feed.source, corpus.initial[:5], workers=8)

    again = feed.run()

    assert feed.stats(again)["files_read"] == 0
    assert feed.total() == total
    assert feed.queued() == 0


def test_a_lost_notification_is_caught_by_the_reconciling_run(feed: Feed) -> None:
    corpus = generate_corpus(10, seed=3, late_fraction=0)
    land_files(feed.s3, feed.source, corpus.initial, workers=8)
    feed.run()
    land_files(feed.s3, feed.source, corpus.late or generate_corpus(3, seed=9).initial, workers=8)
    feed.sqs.purge_queue(QueueUrl=feed.queue)  # as if S3 never delivered them
    missed = feed.run()
    assert feed.stats(missed)["files_read"] == 0

    caught = feed.run(reconcile=True)

    assert operations("ListObjectsV2")
    assert feed.stats(caught)["files_read"] > 0


def test_notification_parsing() -> None:
    record = {
        "Records": [
            {
                "eventName": "ObjectCreated:Put",
                "s3": {"object": {"key": "logs/a+b%3D.json", "eTag": "e1"}},
            },
            {
                "eventName": "ObjectRemoved:Delete",
                "s3": {"object": {"key": "logs/gone.json", "eTag": "e2"}},
            },
            {
                "eventName": "ObjectCreated:Copy",
                "s3": {"object": {"key": "other/x.json", "eTag": "e3"}},
            },
        ]
    }
    assert objects_from_notification(json.dumps(record), "logs/") == {"logs/a b=.json": '"e1"'}
    wrapped = json.dumps({"Type": "Notification", "Message": json.dumps(record)})
    assert objects_from_notification(wrapped, "logs/") == {"logs/a b=.json": '"e1"'}
    assert objects_from_notification('{"Event": "s3:TestEvent"}', "logs/") is None
    assert objects_from_notification("not json", "logs/") is None
