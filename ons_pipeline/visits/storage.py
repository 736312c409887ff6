"""One checkpoint run against S3: the I/O around the pure logic in `checkpoint.py`.

What is new comes from one of two places: a full listing of the prefix against the ledger
(the first run, the hourly reconciliation, or when no queue is configured), or S3's
ObjectCreated notifications from an SQS queue, which costs O(new files) instead of O(bucket).
Both are filtered through the same (key, ETag) ledger, so a duplicate or replayed notification
adds nothing, and a notification that never arrives is caught by the next listing.

A run is three steps: discover (what is new), fetch and parse, commit. Order of commits: the
checkpoint first (`put_if_match` on the ETag it was read at, so two concurrent runs cannot
both win), then the ledger. A crash between the two re-processes the files next time, and the
merge folds them into rows that already exist: nothing is skipped and nothing is duplicated.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ons_pipeline.platform.faults import commit_point
from ons_pipeline.resources.aws import ConcurrentWriteError
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
from ons_pipeline.visits.notifications import (
    NotificationQueue,
    Notifications,
    delete_notifications,
    hand_back,
    receive_notifications,
    settle_covered_notifications,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    import pandas as pd

    from ons_pipeline.resources import ObjectStoreResource
    from ons_pipeline.resources.storage import VisitsStorageResource

Ledger = dict[str, tuple[str, str]]  # key -> (ETag, "valid" or "rejected")


class ConcurrentCheckpointError(ConcurrentWriteError):
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

    @classmethod
    def of(cls, storage: VisitsStorageResource) -> Locations:
        """The resource's locations: the one place runs, sensors and analytics take them from."""
        return cls(
            source_bucket=storage.source_bucket,
            prefix=storage.prefix,
            checkpoint_bucket=storage.checkpoint_bucket,
            checkpoint_key=storage.checkpoint_key,
            notification_queue_url=storage.notification_queue_url,
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

    @property
    def ledger_uri(self) -> str:
        return f"s3://{self.checkpoint_bucket}/{self.ledger_key}"


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


def _list_range(store: ObjectStoreResource, bucket: str, key_range: KeyRange) -> dict[str, str]:
    client = store.get_client()
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
    store: ObjectStoreResource,
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
        return _list_range(store, bucket, ranges[0])
    objects: dict[str, str] = {}
    with ThreadPoolExecutor(max_workers=min(workers, len(ranges))) as pool:
        for part in pool.map(lambda key_range: _list_range(store, bucket, key_range), ranges):
            objects.update(part)
    return objects


def read_ledger(store: ObjectStoreResource, locations: Locations) -> Ledger:
    stored = store.get_versioned(locations.checkpoint_bucket, locations.ledger_key)
    return {} if stored is None else ledger_from_parquet(stored[0])


def read_checkpoint(store: ObjectStoreResource, locations: Locations) -> pd.DataFrame | None:
    stored = store.get_versioned(locations.checkpoint_bucket, locations.checkpoint_key)
    return None if stored is None else checkpoint_from_parquet(stored[0])


def pending_objects(store: ObjectStoreResource, locations: Locations) -> tuple[dict[str, str], int]:
    """New (key, ETag) pairs by the ledger, and how many objects were listed (sensor's view)."""
    ledger = read_ledger(store, locations)
    listing = list_event_objects(store, locations.source_bucket, locations.prefix, ledger)
    return new_objects(listing, ledger), len(listing)


@dataclass(frozen=True)
class StoredState:
    """The checkpoint and ledger as this run read them; `etag` guards the checkpoint write."""

    checkpoint: pd.DataFrame
    etag: str | None  # None: no checkpoint yet, a first run
    size_bytes: int
    ledger: Ledger

    @property
    def first_run(self) -> bool:
        return self.etag is None


@dataclass(frozen=True)
class Discovery:
    """What a run found: every candidate object, and those the ledger has not seen."""

    candidates: dict[str, str]  # key -> ETag, listed or announced
    pending: dict[str, str]
    listing_started: float  # epoch seconds
    notifications: Notifications | None  # None: the candidates are a full listing


def read_state(
    store: ObjectStoreResource, locations: Locations, say: Callable[[str], None]
) -> StoredState:
    """The checkpoint at its ETag, and the ledger; a missing checkpoint is a first run."""
    stored = store.get_versioned(locations.checkpoint_bucket, locations.checkpoint_key)
    if stored is None:
        say(f"No checkpoint at {locations.checkpoint_uri}: first run, reading every event file")
        # Without the checkpoint a ledger would hide events that exist nowhere else.
        return StoredState(empty_checkpoint(), None, 0, {})
    body, etag = stored
    return StoredState(
        checkpoint_from_parquet(body), etag, len(body), read_ledger(store, locations)
    )


def discover(
    store: ObjectStoreResource,
    locations: Locations,
    state: StoredState,
    queue: NotificationQueue | None,
    *,
    reconcile: bool,
    say: Callable[[str], None],
) -> Discovery:
    """New objects from the queue, or from a listing on a first or reconciling run."""
    notifications: Notifications | None = None
    if queue is not None and not (reconcile or state.first_run):
        notifications = receive_notifications(
            queue.sqs,
            queue.url,
            locations.prefix,
            bucket=locations.source_bucket,
            visibility_timeout=queue.visibility_s,
        )
        commit_point("visits.after_receive")
    started = time.time()
    if notifications is not None:
        candidates = notifications.objects
        say(
            f"Queue: {len(notifications.receipts)} S3 notification message(s) announced "
            f"{len(candidates)} event file(s); {notifications.ignored} message(s) named no "
            "event file (S3 test events or keys outside the prefix)"
        )
    else:
        candidates = list_event_objects(
            store, locations.source_bucket, locations.prefix, state.ledger
        )
    pending = new_objects(candidates, state.ledger)
    say(f"{len(candidates)} event file(s) found, {len(pending)} of them new to the ledger")
    return Discovery(candidates, pending, started, notifications)


def _fetch_one(store: ObjectStoreResource, bucket: str, key: str) -> ParsedFile | None:
    stored = store.get_versioned(bucket, key)
    if stored is None:  # deleted since it was discovered: nothing to record
        return None
    body, etag = stored  # the GET's ETag names exactly the bytes that were parsed
    return parse_event_file(key, etag, body)


def fetch_and_parse(
    store: ObjectStoreResource, bucket: str, keys: Iterable[str], max_workers: int
) -> list[ParsedFile]:
    """Each object fetched concurrently and parsed; a vanished one is left out."""
    ordered = sorted(keys)
    if not ordered:
        return []
    with ThreadPoolExecutor(max_workers=max(1, min(max_workers, len(ordered)))) as pool:
        results = pool.map(lambda key: _fetch_one(store, bucket, key), ordered)
        return [result for result in results if result is not None]


def commit(
    store: ObjectStoreResource,
    locations: Locations,
    state: StoredState,
    found: Discovery,
    parsed: list[ParsedFile],
    *,
    run_id: str,
) -> CheckpointOutcome:
    """Merge the parsed files; write the checkpoint (if it changed), errors, then the ledger."""
    valid = [p.event for p in parsed if p.event is not None]
    merged = merge_events(state.checkpoint, events_frame(valid))
    outcome = CheckpointOutcome(
        objects_seen=len(found.candidates),
        files_read=len(parsed),
        files_valid=len(valid),
        files_vanished=len(found.pending) - len(parsed),
        new_events_processed=len(merged) - len(state.checkpoint),
        total_events=len(merged),
        last_processed_timestamp=merged["timestamp"].max().isoformat() if len(merged) else None,
        checkpoint_size_bytes=state.size_bytes,
        first_run=state.first_run,
        listing_started=found.listing_started,
        rejections=[p.rejection for p in parsed if p.rejection is not None],
        checkpoint=merged,
    )
    if outcome.first_run or outcome.new_events_processed:
        outcome.checkpoint_size_bytes = _write_checkpoint(store, locations, state, merged)
        outcome.checkpoint_written = True
        commit_point("visits.after_checkpoint")
    if outcome.rejections:
        outcome.errors_uri = _write_errors(store, locations, outcome.rejections, run_id)
    updated = updated_ledger(state.ledger, found, parsed)
    if updated != state.ledger:
        data = ledger_to_parquet(updated)
        store.put_bytes(
            locations.checkpoint_bucket, locations.ledger_key, data, PARQUET_CONTENT_TYPE
        )
        outcome.ledger_written = True
        commit_point("visits.after_ledger")
    return outcome


def _write_checkpoint(
    store: ObjectStoreResource, locations: Locations, state: StoredState, merged: pd.DataFrame
) -> int:
    data = checkpoint_to_parquet(merged)
    try:
        store.put_if_match(
            locations.checkpoint_bucket,
            locations.checkpoint_key,
            data,
            PARQUET_CONTENT_TYPE,
            state.etag,
        )
    except ConcurrentWriteError as error:
        raise ConcurrentCheckpointError(
            f"{locations.checkpoint_uri} changed while this run was merging; "
            "nothing was written, re-run to merge on top of it"
        ) from error
    return len(data)


def _write_errors(
    store: ObjectStoreResource, locations: Locations, rejections: list[Rejection], run_id: str
) -> str:
    """The run's rejected files with their reasons, beside the checkpoint; returns its URI."""
    key = f"{locations.errors_prefix}{run_id}.json"
    report = {
        "run_id": run_id,
        "written_at": datetime.now(UTC).isoformat(),
        "source": f"s3://{locations.source_bucket}/{locations.prefix}",
        "rejected": [{"key": r.key, "etag": r.etag, "reason": r.reason} for r in rejections],
    }
    data = json.dumps(report, indent=1).encode()
    store.put_bytes(locations.checkpoint_bucket, key, data, "application/json")
    return f"s3://{locations.checkpoint_bucket}/{key}"


def updated_ledger(ledger: Ledger, found: Discovery, parsed: list[ParsedFile]) -> Ledger:
    """The ledger after this run; a listing also drops the objects deleted since."""
    if found.notifications is None:
        kept = {k: ledger[k] for k in found.candidates if k in ledger and k not in found.pending}
    else:
        kept = {key: value for key, value in ledger.items() if key not in found.pending}
    for item in parsed:
        kept[item.key] = (item.etag, "valid" if item.rejection is None else "rejected")
    return kept


def settle_queue(
    queue: NotificationQueue,
    locations: Locations,
    found: Discovery,
    outcome: CheckpointOutcome,
    say: Callable[[str], None],
) -> None:
    """After the commit: delete what this run took in, or what its listing covered."""
    if found.notifications is not None:
        delete_notifications(queue.sqs, queue.url, found.notifications.receipts)
        outcome.notifications_deleted = len(found.notifications.receipts)
        outcome.notifications_returned = len(found.notifications.foreign)
        return
    outcome.notifications_deleted, outcome.notifications_returned = settle_covered_notifications(
        queue.sqs,
        queue.url,
        locations.prefix,
        found.listing_started,
        queue.clock_margin_s,
        bucket=locations.source_bucket,
    )
    say(
        f"{outcome.notifications_deleted} queued announcements were covered by the listing "
        f"and deleted; {outcome.notifications_returned} newer or other prefixes' ones left "
        "on the queue"
    )


def run_checkpoint(
    store: ObjectStoreResource,
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
    queue = None
    if sqs is not None and locations.notification_queue_url:
        queue = NotificationQueue(
            sqs,
            locations.notification_queue_url,
            notification_visibility_s,
            notification_clock_margin_s,
        )
    state = read_state(store, locations, say)
    found = discover(store, locations, state, queue, reconcile=reconcile, say=say)
    try:
        parsed = fetch_and_parse(store, locations.source_bucket, found.pending, max_workers)
        outcome = commit(store, locations, state, found, parsed, run_id=run_id)
    except BaseException as error:
        if queue is not None and found.notifications is not None:  # a retry must see them now
            hand_back(queue.sqs, queue.url, found.notifications.receipts, error)
        raise
    if queue is not None:  # only once the checkpoint and the ledger are committed
        settle_queue(queue, locations, found, outcome, say)
    commit_point("visits.after_notifications")
    outcome.execution_time_ms = round((time.perf_counter() - started) * 1000)
    return outcome
