"""The event bucket's S3 notifications on SQS: receive, hand back, delete.

A checkpoint run holds the messages it received hidden while it works, hands them back
(visible at once) if it fails, and deletes them only after its commit. A message naming
another bucket or prefix belongs to another run and is always handed back.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_plus

if TYPE_CHECKING:
    from collections.abc import Callable


@dataclass(frozen=True)
class NotificationQueue:
    """The SQS queue of the event bucket's ObjectCreated notifications, and how to hold them."""

    sqs: Any
    url: str
    visibility_s: int = 900
    clock_margin_s: float = 60.0


@dataclass(frozen=True)
class Notifications:
    """Objects named by S3 ObjectCreated notifications, and the receipts to delete them by."""

    objects: dict[str, str]  # key -> ETag, quoted as S3 lists it
    receipts: list[str]  # messages this run may delete once it has committed
    ignored: int  # messages that name no object at all (S3 test events, other event types)
    sent_at_ms: list[int | None] = field(default_factory=list)  # SQS SentTimestamp per receipt
    foreign: list[str] = field(default_factory=list)  # name another bucket or prefix: kept

    def sent_before(self, cutoff_ms: int) -> tuple[list[str], list[str]]:
        """Receipts of messages SQS accepted before `cutoff_ms`, and of the rest.

        A message without a timestamp cannot be shown to be older, so it counts as the rest.
        """
        before: list[str] = []
        rest: list[str] = []
        for receipt, sent in zip(self.receipts, self.sent_at_ms, strict=True):
            (before if sent is not None and sent < cutoff_ms else rest).append(receipt)
        return before, rest


def notification_objects(
    body: str, prefix: str, bucket: str | None = None
) -> tuple[dict[str, str], int] | None:
    """What a notification names for this run, and how much it names for others.

    Returns (key -> quoted ETag of each ObjectCreated record in `bucket` under `prefix`, the
    number of ObjectCreated records for another bucket or prefix), or None if the body names
    no object at all. Keys arrive URL-encoded (`+` for a space); an SNS-wrapped notification
    is unwrapped.
    """
    try:
        payload = json.loads(body)
        if "Records" not in payload and isinstance(payload.get("Message"), str):
            payload = json.loads(payload["Message"])
    except (json.JSONDecodeError, AttributeError):
        return None
    found: dict[str, str] = {}
    foreign = 0
    for record in payload.get("Records", []) if isinstance(payload, dict) else []:
        if not str(record.get("eventName", "")).startswith("ObjectCreated"):
            continue
        named = record.get("s3", {})
        item = named.get("object", {})
        key = unquote_plus(str(item.get("key", "")))
        in_bucket = bucket is None or named.get("bucket", {}).get("name") == bucket
        if in_bucket and key.startswith(prefix):
            if not key.endswith("/"):
                found[key] = '"' + str(item.get("eTag", "")).strip('"') + '"'
        else:
            foreign += 1
    return (found, foreign) if found or foreign else None


def objects_from_notification(body: str, prefix: str) -> dict[str, str] | None:
    """Key -> quoted ETag for each ObjectCreated record under `prefix`; None if none at all."""
    named = notification_objects(body, prefix)
    return (named[0] or None) if named else None


def receive_notifications(
    sqs: Any,
    queue_url: str,
    prefix: str,
    *,
    bucket: str | None = None,
    visibility_timeout: int = 900,
) -> Notifications:
    """Drain what the queue holds now; messages stay hidden until deleted after the commit.

    A message naming an object in another bucket or outside `prefix` belongs to a run with
    other locations: it is put back on the queue (visible at once) after the drain, never
    deleted. A run that dies before deleting lets its messages reappear after
    `visibility_timeout`; one that fails returns them at once (`run_checkpoint`).
    """
    objects: dict[str, str] = {}
    receipts: list[str] = []
    foreign: list[str] = []
    sent_at_ms: list[int | None] = []
    ignored = 0
    try:
        while True:
            messages = sqs.receive_message(
                QueueUrl=queue_url,
                MaxNumberOfMessages=10,  # the SQS maximum per call
                WaitTimeSeconds=0,
                VisibilityTimeout=visibility_timeout,
                MessageSystemAttributeNames=["SentTimestamp"],
            ).get("Messages", [])
            if not messages:
                break
            for message in messages:
                named = notification_objects(message["Body"], prefix, bucket)
                if named is not None and named[1]:
                    foreign.append(message["ReceiptHandle"])
                    objects.update(named[0])  # ours too; the ledger absorbs a repeat
                    continue
                receipts.append(message["ReceiptHandle"])
                sent = message.get("Attributes", {}).get("SentTimestamp")
                sent_at_ms.append(None if sent is None else int(sent))
                if named is None:
                    ignored += 1
                else:
                    objects.update(named[0])
    except BaseException as error:
        hand_back(sqs, queue_url, receipts + foreign, error)
        raise
    return_notifications(sqs, queue_url, foreign)
    return Notifications(objects, receipts, ignored, sent_at_ms, foreign)


def hand_back(sqs: Any, queue_url: str, receipts: list[str], error: BaseException) -> None:
    """On a failure, make the received messages visible again so a retry sees them at once."""
    try:
        return_notifications(sqs, queue_url, receipts)
    except Exception as returning:  # the original error is what the run reports
        error.add_note(f"and {len(receipts)} SQS messages could not be returned: {returning}")


def delete_notifications(sqs: Any, queue_url: str, receipts: list[str]) -> None:
    _in_batches(sqs.delete_message_batch, queue_url, receipts, "delete")


def return_notifications(sqs: Any, queue_url: str, receipts: list[str]) -> None:
    """Make received messages visible again at once, for the next run to take."""
    _in_batches(
        sqs.change_message_visibility_batch, queue_url, receipts, "return", VisibilityTimeout=0
    )


def _in_batches(
    call: Callable[..., Any], queue_url: str, receipts: list[str], verb: str, **entry: Any
) -> None:
    for start in range(0, len(receipts), 10):  # SQS batch calls take at most 10 entries
        batch = receipts[start : start + 10]
        response = call(
            QueueUrl=queue_url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": handle, **entry} for i, handle in enumerate(batch)
            ],
        )
        if response.get("Failed"):
            raise RuntimeError(f"could not {verb} SQS messages: {response['Failed']}")


def settle_covered_notifications(
    sqs: Any,
    queue_url: str,
    prefix: str,
    listing_started: float,
    clock_margin_s: float,
    *,
    bucket: str | None = None,
) -> tuple[int, int]:
    """After a listing run: delete the announcements its listing already covered.

    A message SQS accepted before the listing began names an object that existed then, and
    S3 lists strongly consistently, so the listing saw it. Later messages (and any within
    `clock_margin_s` of the start, in case SQS's clock runs ahead) go back on the queue.
    Without this the backlog announced before a first run would all be received again.
    """
    received = receive_notifications(sqs, queue_url, prefix, bucket=bucket)
    covered, later = received.sent_before(round((listing_started - clock_margin_s) * 1000))
    try:
        delete_notifications(sqs, queue_url, covered)
    except BaseException as error:
        hand_back(sqs, queue_url, received.receipts, error)
        raise
    return_notifications(sqs, queue_url, later)
    return len(covered), len(later) + len(received.foreign)
