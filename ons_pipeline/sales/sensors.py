"""S3-arrival sensor: new ToteSys packets become one run with the seed's packets payload."""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING

from dagster import (
    DefaultSensorStatus,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from ons_pipeline.resources import ObjectStoreResource, SalesStorageResource
from ons_pipeline.sales.jobs import sales_job
from ons_pipeline.sales.packets import packet_key_problem, parse_packet_key
from ons_pipeline.sales.transform import SOURCE_TABLES

if TYPE_CHECKING:
    from collections.abc import Mapping

# Listing pages per table per tick: bounds a tick's work however many packets are waiting;
# the cursor makes the next tick carry on where this one stopped.
PAGES_PER_TABLE = 5


# The cursor's entry naming keys already reported as not packets (so each is reported once).
REPORTED = "_reported"
MAX_REPORTED = 1000


def packets_run_config(
    packets: list[tuple[str, int]], not_packets: Mapping[str, str] | None = None
) -> dict[str, object]:
    """Run config for the sales job from (table, id) pairs: the seed's payload shape.

    `not_packets` (key -> reason) is carried into the run's metadata.
    """
    payload = [{"table": table, "id": packet_id} for table, packet_id in sorted(packets)]
    config: dict[str, object] = {"packets": payload}
    if not_packets:
        config["not_packets"] = dict(sorted(not_packets.items()))
    return {"ops": {"totesys_raw": {"config": config}}}


def stray_keys(s3: ObjectStoreResource, bucket: str, listed: list[str]) -> dict[str, str]:
    """Keys that are not packets, and why.

    Those listed under the table prefixes, and anything outside them (one delimited page of
    the bucket's top level, so a `widgets/` prefix costs one entry, not a listing).
    """
    found = {key: why for key in listed if (why := packet_key_problem(key)) is not None}
    page = s3.get_client().list_objects_v2(Bucket=bucket, Delimiter="/", MaxKeys=1000)
    for item in page.get("CommonPrefixes", []):
        prefix = item["Prefix"]
        if prefix.rstrip("/") not in SOURCE_TABLES:
            found[prefix] = "a prefix that is not a ToteSys table: its objects are not packets"
    for item in page.get("Contents", []):
        found[item["Key"]] = packet_key_problem(item["Key"]) or "not a packet"
    return found


def new_packets(
    s3: ObjectStoreResource,
    bucket: str,
    cursor: Mapping[str, str],
    *,
    pages_per_table: int = PAGES_PER_TABLE,
    page_size: int = 1000,
    listed_out: list[str] | None = None,
) -> tuple[list[tuple[str, int]], dict[str, str], bool]:
    """Packets after each table's cursor key, the advanced cursor, and whether all was seen.

    Packet keys are zero-padded, so S3's lexicographic `StartAfter` is arrival order and a
    tick costs O(new keys), never O(bucket). Every key listed is appended to `listed_out`.
    """

    def is_packet(table: str, key: str) -> bool:
        parsed = parse_packet_key(key)
        return parsed is not None and parsed[0] == table

    listed, advanced, exhausted = s3.list_new_per_prefix(
        bucket,
        {table: f"{table}/" for table in SOURCE_TABLES},  # stray keys there get reported
        cursor,
        is_packet,
        max_pages=pages_per_table,
        page_size=page_size,
    )
    if listed_out is not None:
        listed_out.extend(key for keys in listed.values() for key in keys)
    found = [
        parsed
        for table, keys in listed.items()
        for key in keys
        if (parsed := parse_packet_key(key)) is not None and parsed[0] == table
    ]
    return found, advanced, exhausted


@sensor(
    job=sales_job,
    minimum_interval_seconds=60,
    default_status=DefaultSensorStatus.STOPPED,
    description="Starts the sales job for ToteSys packets that landed since the last tick.",
)
def totesys_packet_sensor(
    context: SensorEvaluationContext, s3: ObjectStoreResource, sales_storage: SalesStorageResource
) -> SensorResult | SkipReason:
    bucket = sales_storage.ingestion_bucket
    cursor = json.loads(context.cursor) if context.cursor else {}
    positions = {k: v for k, v in cursor.items() if k != REPORTED}
    listed: list[str] = []
    packets, advanced, exhausted = new_packets(s3, bucket, positions, listed_out=listed)
    stray = stray_keys(s3, bucket, listed)
    reported = set(cursor.get(REPORTED, []))
    for key, why in sorted(stray.items()):
        if key not in reported:
            context.log.warning(f"s3://{bucket}/{key} is not a ToteSys packet: {why}")
    if stray:  # only keys still seen stay in the set, so one that comes back is reported again
        advanced[REPORTED] = sorted(stray)[:MAX_REPORTED]  # type: ignore[assignment]
    new_cursor = json.dumps(advanced, sort_keys=True)
    if not packets:
        skip = SkipReason(f"No new packets in s3://{bucket}")
        if stray and new_cursor != context.cursor:
            return SensorResult(skip_reason=skip, cursor=new_cursor)
        return skip
    keys = sorted(f"{table}:{packet_id}" for table, packet_id in packets)
    run_key = "packets-" + hashlib.sha256("\n".join(keys).encode()).hexdigest()[:32]
    context.log.info(
        f"{len(packets)} new packets{'' if exhausted else ' (more remain for the next tick)'}"
    )
    return SensorResult(
        run_requests=[
            RunRequest(
                run_key=run_key,
                run_config=packets_run_config(packets, stray),
                tags={"ons/packets": str(len(packets)), "ons/not_packets": str(len(stray))},
            )
        ],
        cursor=new_cursor,
    )
