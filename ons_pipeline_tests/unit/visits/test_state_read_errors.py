"""Only a missing object means "nothing there yet": any other S3 error stops the run.

If AccessDenied or InternalError on the checkpoint read counted as a first run, the run would
replace the checkpoint with whatever it read; on the ledger it would re-read every file; on an
event read taken from the queue it would drop the event and delete its announcement. And a
checkpoint another run wrote meanwhile is never overwritten.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from ons_pipeline.local.demo.visits_data import land_files, synthetic_files
from ons_pipeline.resources import ObjectStoreResource
from ons_pipeline.visits.storage import ConcurrentCheckpointError, Locations, run_checkpoint

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

REGION = "us-east-1"
SOURCE, STATE = "visit-events", "visit-state"
LOCATIONS = Locations(SOURCE, "logs/", STATE, "visits/checkpoint.parquet")
TRANSIENT_OR_DENIED = ["AccessDenied", "InternalError", "SlowDown", "ServiceUnavailable"]


@pytest.fixture
def aws() -> Iterator[tuple[ObjectStoreResource, Any]]:
    """The store the run reads through, and an SQS client; `store.get_client()` is its S3."""
    with mock_aws():
        store = ObjectStoreResource(region_name=REGION)
        sqs = boto3.client("sqs", region_name=REGION)
        for bucket in (SOURCE, STATE):
            store.get_client().create_bucket(Bucket=bucket)
        yield store, sqs


def fail_reads_of(s3: Any, key: str, code: str) -> Callable[[], None]:
    """Every later GetObject of `key` answers with the S3 error `code`, until undone."""
    event = "before-parameter-build.s3.GetObject"

    def refuse(params: dict[str, Any], **_: Any) -> None:
        if params.get("Key") == key:
            raise ClientError({"Error": {"Code": code, "Message": code}}, "GetObject")

    s3.meta.events.register(event, refuse)
    return lambda: s3.meta.events.unregister(event, refuse)


def state_objects(s3: Any) -> dict[str, bytes]:
    listing = s3.list_objects_v2(Bucket=STATE).get("Contents", [])
    return {o["Key"]: s3.get_object(Bucket=STATE, Key=o["Key"])["Body"].read() for o in listing}


def test_a_missing_object_is_none(aws: tuple[ObjectStoreResource, Any]) -> None:
    store, _ = aws
    assert store.get_versioned(STATE, "no/such/key") is None


@pytest.mark.parametrize("code", TRANSIENT_OR_DENIED)
def test_any_other_error_is_raised(aws: tuple[ObjectStoreResource, Any], code: str) -> None:
    store, _ = aws
    store.get_client().put_object(Bucket=STATE, Key="k", Body=b"x")
    fail_reads_of(store.get_client(), "k", code)
    with pytest.raises(ClientError, match=code):
        store.get_versioned(STATE, "k")


@pytest.mark.parametrize("code", ["AccessDenied", "InternalError"])
@pytest.mark.parametrize("which", ["checkpoint", "ledger"])
def test_a_failed_state_read_fails_the_run_and_writes_nothing(
    aws: tuple[ObjectStoreResource, Any], code: str, which: str
) -> None:
    store, _ = aws
    s3 = store.get_client()
    land_files(s3, SOURCE, synthetic_files(5), workers=2)
    first = run_checkpoint(store, LOCATIONS, run_id="r1")
    assert first.first_run and first.total_events == 5
    land_files(s3, SOURCE, synthetic_files(3, start=5), workers=2)
    before = state_objects(s3)
    key = LOCATIONS.checkpoint_key if which == "checkpoint" else LOCATIONS.ledger_key
    undo = fail_reads_of(s3, key, code)

    with pytest.raises(ClientError, match=code):
        run_checkpoint(store, LOCATIONS, run_id="r2")

    undo()
    assert state_objects(s3) == before


def notification(key: str, etag: str) -> str:
    record = {
        "eventName": "ObjectCreated:Put",
        "s3": {"bucket": {"name": SOURCE}, "object": {"key": key, "eTag": etag}},
    }
    return json.dumps({"Records": [record]})


@pytest.mark.parametrize("code", ["AccessDenied", "InternalError"])
def test_a_failed_event_read_keeps_its_announcement(
    aws: tuple[ObjectStoreResource, Any], code: str
) -> None:
    store, sqs = aws
    s3 = store.get_client()
    queue = sqs.create_queue(QueueName="created")["QueueUrl"]
    locations = Locations(
        SOURCE, "logs/", STATE, LOCATIONS.checkpoint_key, notification_queue_url=queue
    )
    land_files(s3, SOURCE, synthetic_files(2), workers=2)
    assert run_checkpoint(store, locations, run_id="r1", sqs=sqs).total_events == 2
    (late,) = synthetic_files(1, start=2)
    etag = s3.put_object(Bucket=SOURCE, Key=late.key, Body=late.body)["ETag"]
    sqs.send_message(QueueUrl=queue, MessageBody=notification(late.key, etag))
    before = state_objects(s3)
    undo = fail_reads_of(s3, late.key, code)

    with pytest.raises(ClientError, match=code):
        run_checkpoint(store, locations, run_id="r2", sqs=sqs)

    undo()
    assert state_objects(s3) == before
    # Not deleted, and handed back at once: a retry sees it without waiting out the timeout.
    attributes = sqs.get_queue_attributes(
        QueueUrl=queue,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    assert attributes["ApproximateNumberOfMessages"] == "1"
    assert attributes["ApproximateNumberOfMessagesNotVisible"] == "0"


@pytest.mark.parametrize("first_run", [True, False])
def test_a_checkpoint_written_by_another_run_meanwhile_is_kept(
    aws: tuple[ObjectStoreResource, Any], first_run: bool
) -> None:
    store, _ = aws
    s3 = store.get_client()
    land_files(s3, SOURCE, synthetic_files(3), workers=2)
    if not first_run:
        run_checkpoint(store, LOCATIONS, run_id="r0")
        land_files(s3, SOURCE, synthetic_files(2, start=3), workers=2)
    before = state_objects(s3)
    theirs = b"the other run's checkpoint"

    def other_run_commits_first(params: dict[str, Any], **_: Any) -> None:
        if params.get("Key") == LOCATIONS.checkpoint_key and not raced:
            raced.append(True)
            other = boto3.client("s3", region_name=REGION)
            other.put_object(Bucket=STATE, Key=LOCATIONS.checkpoint_key, Body=theirs)

    raced: list[bool] = []
    s3.meta.events.register("before-parameter-build.s3.PutObject", other_run_commits_first)

    with pytest.raises(ConcurrentCheckpointError):
        run_checkpoint(store, LOCATIONS, run_id="r1")

    assert raced
    assert state_objects(s3) == {**before, LOCATIONS.checkpoint_key: theirs}
