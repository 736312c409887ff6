"""S3-arrival sensor: new ToteSys packets become one run with the seed's packets payload."""

import hashlib
import json
from collections.abc import Mapping

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
from ons_pipeline.sales.packets import parse_packet_key
from ons_pipeline.sales.transform import SOURCE_TABLES

# Listing pages per table per tick: bounds a tick's work however many packets are waiting;
# the cursor makes the next tick carry on where this one stopped.
PAGES_PER_TABLE = 5


def packets_run_config(packets: list[tuple[str, int]]) -> dict[str, object]:
    """Run config for the sales job from (table, id) pairs: the seed's payload shape."""
    payload = [{"table": table, "id": packet_id} for table, packet_id in sorted(packets)]
    return {"ops": {"totesys_raw": {"config": {"packets": payload}}}}


def new_packets(
    s3: ObjectStoreResource,
    bucket: str,
    cursor: Mapping[str, str],
    *,
    pages_per_table: int = PAGES_PER_TABLE,
    page_size: int = 1000,
) -> tuple[list[tuple[str, int]], dict[str, str], bool]:
    """Packets after each table's cursor key, the advanced cursor, and whether all was seen.

    Packet keys are zero-padded, so S3's lexicographic `StartAfter` is arrival order and a
    tick costs O(new keys), never O(bucket).
    """

    def is_packet(table: str, key: str) -> bool:
        parsed = parse_packet_key(key)
        return parsed is not None and parsed[0] == table

    listed, advanced, exhausted = s3.list_new_per_prefix(
        bucket,
        {table: f"{table}/{table}-packet-" for table in SOURCE_TABLES},
        cursor,
        is_packet,
        max_pages=pages_per_table,
        page_size=page_size,
    )
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
    cursor = json.loads(context.cursor) if context.cursor else {}
    packets, advanced, exhausted = new_packets(s3, sales_storage.ingestion_bucket, cursor)
    if not packets:
        return SkipReason(f"No new packets in s3://{sales_storage.ingestion_bucket}")
    keys = sorted(f"{table}:{packet_id}" for table, packet_id in packets)
    run_key = "packets-" + hashlib.sha256("\n".join(keys).encode()).hexdigest()[:32]
    context.log.info(
        f"{len(packets)} new packets{'' if exhausted else ' (more remain for the next tick)'}"
    )
    return SensorResult(
        run_requests=[
            RunRequest(
                run_key=run_key,
                run_config=packets_run_config(packets),
                tags={"ons/packets": str(len(packets))},
            )
        ],
        cursor=json.dumps(advanced, sort_keys=True),
    )
