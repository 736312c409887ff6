"""A listing run deletes only announcements sent at least the clock margin before it began.

The margin guards against SQS's clock running ahead of ours: a message stamped a little
before the listing began may still name a file the listing did not see. So the cut-off is
`listing_started - margin`; with the sign flipped, announcements sent up to a margin *after*
the listing began would be deleted, and their files never read.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from moto import mock_aws

from ons_pipeline.visits.notifications import settle_covered_notifications

if TYPE_CHECKING:
    from collections.abc import Iterator

MARGIN = 60.0


@pytest.fixture
def queue() -> Iterator[tuple[Any, str]]:
    with mock_aws():
        sqs = boto3.client("sqs", region_name="us-east-1")
        url = sqs.create_queue(QueueName="created")["QueueUrl"]
        record = {"eventName": "ObjectCreated:Put", "s3": {"object": {"key": "logs/a.json"}}}
        sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"Records": [record]}))
        yield sqs, url


@pytest.mark.parametrize(
    ("listing_began", "deleted"),
    [
        (-30.0, False),  # the listing began 30 s before the message: it never saw the file
        (-MARGIN + 5, False),  # began 55 s before it: the sign of the margin must not matter
        (+30.0, False),  # began 30 s after the message, but within the margin: kept
        (+MARGIN + 30, True),  # began well over a margin after the message: covered
    ],
)
def test_only_messages_older_than_start_minus_margin_are_deleted(
    queue: tuple[Any, str], listing_began: float, deleted: bool
) -> None:
    """`listing_began` is seconds relative to when SQS accepted the one message."""
    sqs, url = queue
    (message,) = sqs.receive_message(
        QueueUrl=url, MessageSystemAttributeNames=["SentTimestamp"], VisibilityTimeout=0
    )["Messages"]
    sent = int(message["Attributes"]["SentTimestamp"]) / 1000

    outcome = settle_covered_notifications(
        sqs, url, "logs/", sent + listing_began, clock_margin_s=MARGIN
    )

    assert outcome == ((1, 0) if deleted else (0, 1))
    left = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=0).get("Messages", [])
    assert len(left) == (0 if deleted else 1)
