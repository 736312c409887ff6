"""Incremental runs fed by the bucket's ObjectCreated notifications (SQS), over the wire."""

from __future__ import annotations

import json
import uuid
from typing import Any

import boto3
import pytest
from dagster import DagsterInstance, materialize

from ons_pipeline.local.demo.visits_data import EventFile, generate_corpus, land_files
from ons_pipeline.resources import CloudWatchMetricsResource, ObjectStoreResource
from ons_pipeline.resources.storage import VisitsStorageResource
from ons_pipeline.visits.assets import CHECKPOINT_KEY, visit_events_checkpoint
from ons_pipeline.visits.checkpoint import checkpoint_from_parquet
from ons_pipeline.visits.notifications import objects_from_notification

pytestmark = pytest.mark.integration

REGION = "eu-west-2"
CHECKPOINT = "state/events.parquet"
CALLS: list[tuple[str, str]] = []  # (operation, key) the run's S3 client made
# (operation, key prefix) -> a file to land as the run first makes that call
LAND_DURING: dict[tuple[str, str], EventFile] = {}


class CountingStore(ObjectStoreResource):
    def get_client(self) -> Any:
        if self._client is not None:
            return self._client
        client = super().get_client()

        def record(event_name: str, params: dict[str, Any], **_: Any) -> None:
            operation = event_name.rsplit(".", 1)[-1]
            CALLS.append((operation, params.get("Key", "")))
            for operation_name, key_prefix in list(LAND_DURING):
                if operation == operation_name and params.get("Key", "").startswith(key_prefix):
                    landing = LAND_DURING.pop((operation_name, key_prefix))
                    boto3.client("s3", region_name=REGION).put_object(
                        Bucket=params["Bucket"], Key=landing.key, Body=landing.body
                    )

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

    def run(self, *, reconcile: bool = False, clock_margin: float = 60.0) -> Any:
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
                    notification_clock_margin_seconds=clock_margin,
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


def test_a_listing_run_deletes_the_announcements_it_covered(feed: Feed) -> None:
    corpus = generate_corpus(20, seed=5)
    land_files(feed.s3, feed.source, corpus.initial, workers=8)
    assert feed.queued() >= len(corpus.initial)

    first = feed.run(clock_margin=0)

    assert feed.stats(first)["notifications_deleted"] >= len(corpus.initial)
    assert feed.stats(first)["notifications_returned"] == 0
    assert feed.queued() == 0
    land_files(feed.s3, feed.source, corpus.late, workers=8)
    second = feed.run()
    late_keys = {f.key for f in corpus.late}
    assert feed.stats(second)["objects_seen"] == len(late_keys)  # none of the initial again
    assert set(operations("GetObject")) - {CHECKPOINT, "state/events.ledger.parquet"} == late_keys


@pytest.mark.parametrize("landed_during", ["ListObjectsV2", "GetObject"])
def test_a_file_landing_during_a_listing_run_is_never_lost(feed: Feed, landed_during: str) -> None:
    """Landed before the listing request: listed now. Landed after it: its message is kept."""
    corpus = generate_corpus(10, seed=6, late_fraction=0)
    land_files(feed.s3, feed.source, corpus.initial, workers=8)
    late = generate_corpus(1, seed=99, late_fraction=0).initial[0]
    LAND_DURING[(landed_during, "" if landed_during == "ListObjectsV2" else "logs/")] = late

    first = feed.run(clock_margin=0)

    assert not LAND_DURING  # it did land during the run
    listed_now = landed_during == "ListObjectsV2"
    assert (late.key in operations("GetObject")) == listed_now
    assert feed.stats(first)["notifications_returned"] == 1  # sent after the listing began
    assert feed.queued() == 1
    total = feed.total()

    second = feed.run()

    assert feed.stats(second)["files_read"] == (0 if listed_now else 1)
    assert feed.total() == total + (0 if listed_now else 1)
    assert feed.queued() == 0


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
