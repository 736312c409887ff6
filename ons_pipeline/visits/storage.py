"""One checkpoint run against S3: the I/O around the pure logic in `checkpoint.py`.

What is new comes from one of two places: a full listing of the prefix against the ledger
(the first run, the hourly reconciliation, or when no queue is configured), or S3's
ObjectCreated notifications from an SQS queue, which costs O(new files) instead of O(bucket).
Both are filtered through the same (key, ETag) ledger, so a duplicate or replayed notification
adds nothing, and a notification that never arrives is caught by the next listing.

Order of commits: the checkpoint first (a conditional PUT on the ETag it was read at, so two
concurrent runs cannot both win), then the ledger. A crash between the two re-processes the
files next time, and the merge folds them into rows that already exist: nothing is skipped
and nothing is duplicated.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_plus

from botocore.exceptions import ClientError

from ons_pipeline.platform.faults import commit_point
from ons_pipeline.visits.checkpoint import (
    PARQUET_CONTENT_TYPE,
    ParsedFile,
    Rejection,
    checkpoint_from_parquet,
    checkpoint_to_parquet,
    empty_checkpoint,
    events_frame,
    ledger_from_parquet,
    ledger_to_parquet,
    merge_events,
    new_objects,
    parse_event_file,
    sibling_key,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    import pandas as pd


class ConcurrentCheckpointError(RuntimeError):
    """Another run replaced the checkpoint after this run read it; re-running is safe."""


@dataclass(frozen=True)
class Locations:
    """The seed's Lambda event fields, with the ledger and errors placed beside the checkpoint."""

    source_bucket: str
    prefix: str
    checkpoint_bucket: str
    checkpoint_key: str
    notification_queue_url: str | None = None  # SQS queue of the bucket's ObjectCreated events

    def __post_init__(self) -> None:
        if self.source_bucket == self.checkpoint_bucket:
            for key in (self.checkpoint_key, self.ledger_key, self.errors_prefix):
                if key.startswith(self.prefix):
                    raise ValueError(
                        f"s3://{self.checkpoint_bucket}/{key} is inside the event prefix "
                        f"{self.prefix!r}: it would be read as an event file"
                    )

    @property
    def ledger_key(self) -> str:
        return sibling_key(self.checkpoint_key, ".ledger.parquet")

    @property
    def errors_prefix(self) -> str:
        return sibling_key(self.checkpoint_key, ".errors/")

    def analytics_key(self, name: str) -> str:
        return sibling_key(self.checkpoint_key, f".analytics/{name}.parquet")

    @property
    def checkpoint_uri(self) -> str:
        return f"s3://{self.checkpoint_bucket}/{self.checkpoint_key}"


@dataclass
class CheckpointOutcome:
    objects_seen: int = 0  # listed, or named by the queue's notifications
    files_read: int = 0
    files_valid: int = 0
    files_vanished: int = 0
    new_events_processed: int = 0
    total_events: int = 0
    last_processed_timestamp: str | None = None
    checkpoint_size_bytes: int = 0
    checkpoint_written: bool = False
    ledger_written: bool = False
    first_run: bool = False
    notifications_deleted: int = 0
    notifications_returned: int = 0  # left on the queue: newer than a listing, other prefixes
    listing_started: float = 0.0  # epoch seconds the candidates were taken at
    execution_time_ms: int = 0
    errors_uri: str | None = None
    rejections: list[Rejection] = field(default_factory=list)
    checkpoint: pd.DataFrame = field(default_factory=empty_checkpoint)

    @property
    def events_failed(self) -> int:
        return len(self.rejections)

    @property
    def duplicate_events(self) -> int:
        """Valid files whose event was already in the checkpoint (copies, replays)."""
        return self.files_valid - self.new_events_processed


def _error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def read_object(client: Any, bucket: str, key: str) -> tuple[bytes, str] | None:
    """(bytes, ETag), or None only when the key does not exist; other errors propagate."""
    try:
        response = client.get_object(Bucket=bucket, Key=key)
    except ClientError as error:
        if _error_code(error) in {"NoSuchKey", "404"}:
            return None
        raise
    return response["Body"].read(), response["ETag"]


KEYS_PER_RANGE = 900  # ledger keys per listing range: with a few new files, one page each
LISTING_WORKERS = 16


@dataclass(frozen=True)
class KeyRange:
    prefix: str
    after: str | None  # exclusive; None: from the first key under the prefix
    through: str | None  # inclusive; None: to the last key under the prefix


def common_prefix(first: str, second: str) -> str:
    """The longest string both start with (character by character, not by path part)."""
    length = 0
    for a, b in zip(first, second, strict=False):
        if a != b:
            break
        length += 1
    return first[:length]


def key_ranges(prefix: str, known_keys: Iterable[str], per_range: int) -> list[KeyRange]:
    """Cut the key space under `prefix` at every `per_range`-th known key.

    Each range is (after, through]: keys greater than `after` up to and including `through`.
    Every key in it starts with the longest common prefix of its two bounds, so the listing
    can ask S3 for that narrower prefix. The first range has no lower bound and the last
    none above, so together they cover every possible key exactly once.
    """
    bounds = sorted(key for key in set(known_keys) if key.startswith(prefix))[
        per_range - 1 :: per_range
    ]
    ranges: list[KeyRange] = []
    after: str | None = None
    for through in bounds:
        narrowed = prefix if after is None else common_prefix(after, through)
        ranges.append(KeyRange(narrowed, after, through))
        after = through
    ranges.append(KeyRange(prefix, after, None))
    return ranges


def _list_range(client: Any, bucket: str, key_range: KeyRange) -> dict[str, str]:
    objects: dict[str, str] = {}
    request: dict[str, Any] = {"Bucket": bucket, "Prefix": key_range.prefix}
    if key_range.after is not None:
        request["StartAfter"] = key_range.after
    while True:
        page = client.list_objects_v2(**request)
        for item in page.get("Contents", []):
            key = item["Key"]
            if key_range.through is not None and key > key_range.through:
                return objects
            if not key.endswith("/"):
                objects[key] = item["ETag"]
        if not page.get("IsTruncated"):
            return objects
        request = {
            "Bucket": bucket,
            "Prefix": key_range.prefix,
            "ContinuationToken": page["NextContinuationToken"],
        }


def list_event_objects(
    client: Any,
    bucket: str,
    prefix: str,
    known_keys: Iterable[str] = (),
    *,
    per_range: int = KEYS_PER_RANGE,
    workers: int = LISTING_WORKERS,
) -> dict[str, str]:
    """Every object under the prefix as key -> ETag (folder markers left out).

    S3 lists 1,000 keys per request, one request after another. With the keys seen before
    (the ledger's) the key space is cut into ranges that are listed concurrently, each
    under the narrowest prefix it allows; new keys anywhere still fall in some range.
    """
    ranges = key_ranges(prefix, known_keys, per_range)
    if len(ranges) == 1:
        return _list_range(client, bucket, ranges[0])
    objects: dict[str, str] = {}
    with ThreadPoolExecutor(max_workers=min(workers, len(ranges))) as pool:
        for part in pool.map(lambda key_range: _list_range(client, bucket, key_range), ranges):
            objects.update(part)
    return objects


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
        _hand_back(sqs, queue_url, receipts + foreign, error)
        raise
    return_notifications(sqs, queue_url, foreign)
    return Notifications(objects, receipts, ignored, sent_at_ms, foreign)


def _hand_back(sqs: Any, queue_url: str, receipts: list[str], error: BaseException) -> None:
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
        _hand_back(sqs, queue_url, received.receipts, error)
        raise
    return_notifications(sqs, queue_url, later)
    return len(covered), len(later) + len(received.foreign)


def read_ledger(client: Any, locations: Locations) -> dict[str, tuple[str, str]]:
    stored = read_object(client, locations.checkpoint_bucket, locations.ledger_key)
    return {} if stored is None else ledger_from_parquet(stored[0])


def pending_objects(client: Any, locations: Locations) -> tuple[dict[str, str], int]:
    """New (key, ETag) pairs by the ledger, and how many objects were listed (sensor's view)."""
    ledger = read_ledger(client, locations)
    listing = list_event_objects(client, locations.source_bucket, locations.prefix, ledger)
    return new_objects(listing, ledger), len(listing)


def _fetch_and_parse(client: Any, bucket: str, key: str) -> ParsedFile | None:
    stored = read_object(client, bucket, key)
    if stored is None:  # deleted since the listing: nothing to record
        return None
    body, etag = stored  # the GET's ETag names exactly the bytes that were parsed
    return parse_event_file(key, etag, body)


def run_checkpoint(
    client: Any,
    locations: Locations,
    *,
    run_id: str,
    max_workers: int = 32,
    log: Callable[[str], None] | None = None,
    sqs: Any = None,
    reconcile: bool = False,
    notification_clock_margin_s: float = 60.0,
    notification_visibility_s: int = 900,
) -> CheckpointOutcome:
    """Bring the checkpoint up to date with every event object not yet in the ledger.

    With `locations.notification_queue_url` and an `sqs` client, new objects come from the
    queue; the first run and `reconcile=True` list the whole prefix instead, and afterwards
    delete the queued announcements that the listing covered.

    Raises:
        CorruptCheckpointError: the stored checkpoint or ledger is unreadable (left untouched).
        ConcurrentCheckpointError: another run wrote the checkpoint meanwhile.
        botocore.exceptions.ClientError: any S3 error other than a missing checkpoint.
    """
    say = log or (lambda _message: None)
    started = time.perf_counter()
    outcome = CheckpointOutcome()
    bucket = locations.checkpoint_bucket

    stored = read_object(client, bucket, locations.checkpoint_key)
    if stored is None:
        previous, previous_etag, previous_size = empty_checkpoint(), None, 0
        outcome.first_run = True
        ledger: dict[str, tuple[str, str]] = {}
        say(f"No checkpoint at {locations.checkpoint_uri}: first run, reading every event file")
    else:
        previous = checkpoint_from_parquet(stored[0])
        previous_etag, previous_size = stored[1], len(stored[0])
        # Without the checkpoint a ledger would hide events that exist nowhere else.
        ledger = read_ledger(client, locations)

    queue = locations.notification_queue_url if sqs is not None else None
    notifications: Notifications | None = None
    if queue and not (reconcile or outcome.first_run):
        notifications = receive_notifications(
            sqs,
            queue,
            locations.prefix,
            bucket=locations.source_bucket,
            visibility_timeout=notification_visibility_s,
        )
        commit_point("visits.after_receive")
    try:
        _commit_new_objects(
            client,
            locations,
            outcome,
            previous,
            previous_etag,
            previous_size,
            ledger,
            run_id=run_id,
            max_workers=max_workers,
            say=say,
            notifications=notifications,
        )
    except BaseException as error:
        if notifications is not None and queue:  # a retry must see them, not wait 900 s
            _hand_back(sqs, queue, notifications.receipts, error)
        raise
    # Only once the checkpoint and the ledger are committed.
    if notifications is not None and queue:
        delete_notifications(sqs, queue, notifications.receipts)
        outcome.notifications_deleted = len(notifications.receipts)
        outcome.notifications_returned = len(notifications.foreign)
    elif queue:
        outcome.notifications_deleted, outcome.notifications_returned = (
            settle_covered_notifications(
                sqs,
                queue,
                locations.prefix,
                outcome.listing_started,
                notification_clock_margin_s,
                bucket=locations.source_bucket,
            )
        )
        say(
            f"{outcome.notifications_deleted} queued announcements were covered by the listing "
            f"and deleted; {outcome.notifications_returned} newer or other prefixes' ones left "
            "on the queue"
        )
    commit_point("visits.after_notifications")
    outcome.execution_time_ms = round((time.perf_counter() - started) * 1000)
    return outcome


def _commit_new_objects(
    client: Any,
    locations: Locations,
    outcome: CheckpointOutcome,
    previous: pd.DataFrame,
    previous_etag: str | None,
    previous_size: int,
    ledger: dict[str, tuple[str, str]],
    *,
    run_id: str,
    max_workers: int,
    say: Callable[[str], None],
    notifications: Notifications | None,
) -> None:
    """Read what is new (named by `notifications`, or listed), then commit checkpoint, ledger."""
    bucket = locations.checkpoint_bucket
    outcome.listing_started = time.time()
    if notifications is not None:
        candidates = notifications.objects
        say(
            f"Queue: {len(notifications.receipts)} S3 notification message(s) announced "
            f"{len(candidates)} event file(s); {notifications.ignored} message(s) named no "
            "event file (S3 test events or keys outside the prefix)"
        )
    else:
        candidates = list_event_objects(client, locations.source_bucket, locations.prefix, ledger)
    pending = new_objects(candidates, ledger)
    outcome.objects_seen = len(candidates)
    say(f"{len(candidates)} event file(s) found, {len(pending)} of them new to the ledger")

    parsed: list[ParsedFile] = []
    if pending:
        with ThreadPoolExecutor(max_workers=max(1, min(max_workers, len(pending)))) as pool:
            results = pool.map(
                lambda key: _fetch_and_parse(client, locations.source_bucket, key), sorted(pending)
            )
            parsed = [result for result in results if result is not None]
    outcome.files_vanished = len(pending) - len(parsed)
    outcome.files_read = len(parsed)
    outcome.rejections = [p.rejection for p in parsed if p.rejection is not None]
    valid = [p.event for p in parsed if p.event is not None]
    outcome.files_valid = len(valid)

    merged = merge_events(previous, events_frame(valid))
    outcome.new_events_processed = len(merged) - len(previous)
    outcome.total_events = len(merged)
    outcome.checkpoint = merged
    if len(merged):
        outcome.last_processed_timestamp = merged["timestamp"].max().isoformat()

    if outcome.first_run or outcome.new_events_processed:
        data = checkpoint_to_parquet(merged)
        condition = {"IfMatch": previous_etag} if previous_etag else {"IfNoneMatch": "*"}
        try:
            client.put_object(
                Bucket=bucket,
                Key=locations.checkpoint_key,
                Body=data,
                ContentType=PARQUET_CONTENT_TYPE,
                **condition,
            )
        except ClientError as error:
            if _error_code(error) in {"PreconditionFailed", "ConditionalRequestConflict"}:
                raise ConcurrentCheckpointError(
                    f"{locations.checkpoint_uri} changed while this run was merging; "
                    "nothing was written, re-run to merge on top of it"
                ) from error
            raise
        outcome.checkpoint_written = True
        outcome.checkpoint_size_bytes = len(data)
        commit_point("visits.after_checkpoint")
    else:
        outcome.checkpoint_size_bytes = previous_size

    if outcome.rejections:
        key = f"{locations.errors_prefix}{run_id}.json"
        report = {
            "run_id": run_id,
            "written_at": datetime.now(UTC).isoformat(),
            "source": f"s3://{locations.source_bucket}/{locations.prefix}",
            "rejected": [
                {"key": r.key, "etag": r.etag, "reason": r.reason} for r in outcome.rejections
            ],
        }
        client.put_object(
            Bucket=bucket,
            Key=key,
            Body=json.dumps(report, indent=1).encode(),
            ContentType="application/json",
        )
        outcome.errors_uri = f"s3://{bucket}/{key}"

    if notifications is None:  # a listing also drops objects deleted since from the ledger
        updated = {key: ledger[key] for key in candidates if key in ledger and key not in pending}
    else:
        updated = {key: value for key, value in ledger.items() if key not in pending}
    for item in parsed:
        updated[item.key] = (item.etag, "valid" if item.rejection is None else "rejected")
    if updated != ledger:
        client.put_object(
            Bucket=bucket,
            Key=locations.ledger_key,
            Body=ledger_to_parquet(updated),
            ContentType=PARQUET_CONTENT_TYPE,
        )
        outcome.ledger_written = True
        commit_point("visits.after_ledger")


def read_checkpoint(client: Any, locations: Locations) -> pd.DataFrame | None:
    stored = read_object(client, locations.checkpoint_bucket, locations.checkpoint_key)
    return None if stored is None else checkpoint_from_parquet(stored[0])
