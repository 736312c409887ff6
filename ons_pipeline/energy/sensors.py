"""Arrival sensor: processed energy objects announced on SQS become partitions and runs.

Keys under `dataset=<name>/` do not arrive in sorted order (a late or back-dated file sorts
before the newest), so no `StartAfter` cursor can find them. The processed bucket announces
each new `dataset=` object on a queue (ONS_ENERGY_QUEUE_URL), and a tick reads the
announcements: O(new), any key order. The energy partitions are the ledger: an object whose
partition exists and whose two loads have materialised is not loaded again. A reconcile on
the first tick and then every `reconcile_interval_seconds` lists the `dataset=` prefixes and
adds whatever the partitions lack, so a lost notification is caught; the cursor keeps the time
of the last reconcile. Without a queue every tick reconciles.

Partitions are named by `partition_key_for` (short for canonical keys). An instance that holds
an object under the full key an older release used keeps that partition: the reconcile looks
for both names, so no object is loaded twice.

A message is deleted only after the partitions it names exist (or after what it names has been
reported as not loadable), so a tick that dies leaves it to reappear.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

from dagster import (
    DagsterInstance,
    DefaultSensorStatus,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from ons_pipeline.energy.assets import INFLUXDB_KEY, TIMESTREAM_KEY
from ons_pipeline.energy.jobs import energy_load_job
from ons_pipeline.energy.partitions import (
    energy_objects_partitions,
    partition_key_for,
    partition_keys_known_for,
)
from ons_pipeline.energy.schema import (
    DATASET_PREFIX,
    LoadPlan,
    ObjectRef,
    objects_from_event,
    objects_from_message,
    plan_loads,
)
from ons_pipeline.resources import (
    EnergyStorageResource,
    NotificationQueueResource,
    ObjectStoreResource,
)
from ons_pipeline.resources.aws import sharing_session
from ons_pipeline.visits.storage import delete_notifications

if TYPE_CHECKING:
    from collections.abc import Callable

# Messages read per tick (10 per ReceiveMessage): bounds a tick; the rest wait for the next.
MAX_MESSAGES_PER_TICK = 1000
# Long enough for a tick to add the partitions before a message reappears.
VISIBILITY_TIMEOUT_SECONDS = 300
LISTING_PAGES = 1_000_000  # a reconcile lists every page: it is the one O(bucket) step


@dataclass
class Announcements:
    """What a tick read from the queue: the objects named, and the messages to delete."""

    refs: list[ObjectRef] = field(default_factory=list)
    receipts: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # messages that name no object, and why


def receive_announcements(
    sqs: Any, queue_url: str, *, max_messages: int = MAX_MESSAGES_PER_TICK
) -> Announcements:
    """Read up to `max_messages` S3 notifications; each stays hidden until deleted."""
    found = Announcements()
    while len(found.receipts) < max_messages:
        messages = sqs.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=min(10, max_messages - len(found.receipts)),
            WaitTimeSeconds=0,
            VisibilityTimeout=VISIBILITY_TIMEOUT_SECONDS,
        ).get("Messages", [])
        if not messages:
            break
        for message in messages:
            found.receipts.append(message["ReceiptHandle"])
            try:
                found.refs.extend(objects_from_message(message["Body"]))
            except ValueError as error:
                found.problems.append(f"message {message.get('MessageId')}: {error}")
    return found


def list_dataset_objects(s3: ObjectStoreResource, bucket: str) -> list[ObjectRef]:
    """Every object under the `dataset=` prefixes (the reconcile's O(bucket) listing)."""
    listing = s3.list_after(bucket, DATASET_PREFIX, None, max_pages=LISTING_PAGES)
    return [ObjectRef(bucket, key) for key in listing.keys]


def partition_plan(object_keys: list[str]) -> tuple[dict[str, str], dict[str, str]]:
    """Each object's partition key, and why an object has none (a key Dagster refuses)."""
    keys: dict[str, str] = {}
    refused: dict[str, str] = {}
    for key in object_keys:
        try:
            keys[key] = partition_key_for(key)
        except ValueError as error:
            refused[key] = str(error)
    return keys, refused


def loaded_objects(instance: DagsterInstance, objects: list[str]) -> set[str]:
    """Which of `objects` both energy loads have materialised, under either of their keys."""
    if not objects:
        return set()
    influxdb = instance.get_materialized_partitions(INFLUXDB_KEY)
    timestream = instance.get_materialized_partitions(TIMESTREAM_KEY)
    known = {key: partition_keys_known_for(key) for key in objects}
    return {
        key
        for key, names in known.items()
        if influxdb.intersection(names) and timestream.intersection(names)
    }


def existing_partitions(
    instance: DagsterInstance, objects: list[str], *, full: bool
) -> dict[str, str]:
    """The partition each of `objects` has (its short key, else its old full key).

    One query per key, or one for all.
    """
    name = energy_objects_partitions.name
    exists: Callable[[str], bool] = (
        set(instance.get_dynamic_partitions(name)).__contains__
        if full
        else partial(instance.has_dynamic_partition, name)
    )
    found: dict[str, str] = {}
    for key in objects:
        partition = next((p for p in partition_keys_known_for(key) if exists(p)), None)
        if partition is not None:
            found[key] = partition
    return found


def load_requests(plan: LoadPlan) -> SensorResult:
    """Partitions to add and one run per object (run_key = partition key)."""
    keys = list(partition_plan(plan.partition_keys)[0].values())
    return SensorResult(
        run_requests=[RunRequest(run_key=key, partition_key=key) for key in keys],
        dynamic_partitions_requests=[energy_objects_partitions.build_add_request(keys)]
        if keys
        else [],
    )


def requests_from_event(event: dict[str, object], processed_bucket: str) -> SensorResult:
    """What the sensor would request for an S3 notification or a Step Functions payload."""
    return load_requests(plan_loads(objects_from_event(event), processed_bucket))


def _reconciled_at(cursor: str | None) -> float | None:
    try:
        value = json.loads(cursor).get("reconciled_at") if cursor else None
    except (json.JSONDecodeError, AttributeError):
        return None  # an older cursor format: reconcile now
    return float(value) if isinstance(value, int | float) else None


@sensor(
    job=energy_load_job,
    minimum_interval_seconds=60,
    default_status=DefaultSensorStatus.STOPPED,
    description="Adds a partition and starts both energy loads for each processed Parquet "
    "object announced on the queue, in any key order; lists the dataset= prefixes on its "
    "first tick and hourly to catch a lost notification.",
)
def energy_object_sensor(
    context: SensorEvaluationContext, s3: ObjectStoreResource, energy_storage: EnergyStorageResource
) -> SensorResult | SkipReason:
    bucket = energy_storage.processed_bucket
    queue = energy_storage.notification_queue_url
    now = time.time()
    last = _reconciled_at(context.cursor)
    reconcile = (
        queue is None or last is None or now - last >= energy_storage.reconcile_interval_seconds
    )
    sqs = sharing_session(NotificationQueueResource, s3).get_client() if queue else None
    announced = receive_announcements(sqs, queue) if sqs is not None and queue else Announcements()
    refs = list(announced.refs)
    if reconcile:
        refs += list_dataset_objects(s3, bucket)
    plan = plan_loads(refs, bucket)
    partitions, refused = partition_plan(plan.partition_keys)
    for problem in announced.problems:
        context.log.warning(f"Not an S3 object notification, deleted: {problem}")
    for key, why in {**plan.skipped, **refused}.items():
        context.log.warning(f"Not loading {key}: {why}")

    instance = context.instance
    objects = list(partitions)
    known = existing_partitions(instance, objects, full=reconcile)
    new = [partitions[key] for key in objects if key not in known]
    if new:
        instance.add_dynamic_partitions(energy_objects_partitions.name, new)
    # Known but not loaded by both assets (a tick that died before its runs, a failed load):
    # asked again under the same partition and run key, which Dagster starts at most once.
    loaded = loaded_objects(instance, [key for key in objects if key in known])
    to_load = [known.get(key, partitions[key]) for key in objects if key not in loaded]
    if sqs is not None and queue and announced.receipts:
        delete_notifications(sqs, queue, announced.receipts)
    context.log.info(
        f"{len(announced.receipts)} notifications, {'reconciled by listing, ' if reconcile else ''}"
        f"{len(objects)} dataset objects: {len(new)} new, {len(known) - len(loaded)} known but "
        f"not loaded, {len(loaded)} already loaded; {len(plan.skipped) + len(refused)} not "
        "loadable"
    )
    cursor = json.dumps({"reconciled_at": now if reconcile else last})
    if not to_load:
        if cursor != context.cursor:
            return SensorResult(run_requests=[], cursor=cursor)
        return SkipReason(f"No new energy objects in s3://{bucket}")
    return SensorResult(
        run_requests=[RunRequest(run_key=key, partition_key=key) for key in to_load],
        cursor=cursor,
    )
