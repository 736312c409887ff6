"""Benchmark: the visits checkpoint against moto's S3 server over HTTP.

1. First run over 10,000 event files (no checkpoint yet).
2. Incremental run: 1,000 new files (late arrivals whose keys sort among the old ones)
   beside 100,000 already processed. The 100,000 are real objects in the bucket and are
   processed by a real (unmeasured) checkpoint run, so the ledger is the pipeline's own.
   New files are announced on an SQS queue by the bucket's ObjectCreated notifications (as
   deploy/ wires them; here moto's S3 sends them), so the incremental run takes its new
   files from the queue; the first run and the catch-up list the prefix.
3. The same with 1,000 more new files, taken by listing the prefix against the ledger (the
   hourly reconciliation's way, and the only way without a queue). After run 2, one plain
   listing of the whole prefix and one by ledger ranges are timed against each other.

Each measured run is `ons_pipeline.visits.storage.run_checkpoint` (the function the asset
calls, with the asset's clients) in a fresh child process, so its peak RSS is the run's own;
GETs are counted on the client with a botocore event hook.

    python benchmarks/visits_checkpoint.py [--first 10000] [--processed 100000] [--new 1000]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FLOOR_FIRST_S = 60.0
FLOOR_INCREMENTAL_S = 20.0
BUCKET = "bench-visit-events"
CHECKPOINTS = "bench-checkpoints"


def measure(
    endpoint: str, label: str, queue_url: str, reconcile: bool, listings: bool
) -> dict[str, object]:
    """The measured path; runs in the child process."""
    from ons_pipeline.resources import ObjectStoreResource, build_client
    from ons_pipeline.visits.storage import Locations, run_checkpoint

    # The clients the asset uses: the resource's S3 client, and SQS built from its settings.
    s3 = ObjectStoreResource(endpoint_url=endpoint, region_name="eu-west-2")
    client = s3.get_client()
    calls: dict[str, int] = {"GetObject": 0, "ListObjectsV2": 0, "PutObject": 0}

    def count(event_name: str, **_: object) -> None:
        operation = event_name.rsplit(".", 1)[-1]
        calls[operation] = calls.get(operation, 0) + 1

    client.meta.events.register("before-call.s3", count)
    sqs = build_client(s3, "sqs")
    sqs.meta.events.register("before-call.sqs", count)
    locations = Locations(
        BUCKET, "logs/", CHECKPOINTS, "checkpoints/events.parquet", notification_queue_url=queue_url
    )
    started = time.perf_counter()
    outcome = run_checkpoint(
        s3, locations, run_id=f"bench-{label}", max_workers=32, sqs=sqs, reconcile=reconcile
    )
    seconds = time.perf_counter() - started
    peak_rss_mb = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    counted = dict(calls)
    figures: dict[str, object] = {}
    if listings:  # after the run, so not in its counts: one plain listing, one by ledger ranges
        from ons_pipeline.visits.storage import list_event_objects, read_ledger

        ledger = read_ledger(s3, locations)
        for name, known in (("plain_listing_s", ()), ("ranged_listing_s", ledger)):
            listed_at = time.perf_counter()
            listed = list_event_objects(s3, BUCKET, "logs/", known)
            figures[name] = round(time.perf_counter() - listed_at, 2)
        figures["keys_listed"] = len(listed)
    return {
        **figures,
        "label": label,
        "seconds": round(seconds, 2),
        "objects_seen": outcome.objects_seen,
        "files_read": outcome.files_read,
        "files_per_s": round(outcome.files_read / seconds, 1),
        "new_events": outcome.new_events_processed,
        "total_events": outcome.total_events,
        "get_object_calls": counted["GetObject"],
        "list_calls": counted["ListObjectsV2"],
        "put_calls": counted["PutObject"],
        "sqs_receive_calls": counted.get("ReceiveMessage", 0),
        "sqs_delete_calls": counted.get("DeleteMessageBatch", 0),
        "checkpoint_bytes": outcome.checkpoint_size_bytes,
        "peak_rss_mb": peak_rss_mb,  # of the run, before the timed listings
    }


def run_child(
    endpoint: str, label: str, queue_url: str, *, reconcile: bool = False, listings: bool = False
) -> dict[str, object]:
    command = [sys.executable, __file__, "--measure", label, "--endpoint", endpoint]
    command += ["--queue", queue_url, *(["--reconcile"] if reconcile else [])]
    command += ["--listings"] if listings else []
    output = subprocess.run(
        command, check=True, capture_output=True, text=True, env={**os.environ}
    ).stdout
    return json.loads(output.strip().splitlines()[-1])


def notify_on_create(s3: object, sqs: object, queue_url: str) -> None:
    """Send the bucket's ObjectCreated events under logs/ to the queue, as deploy/ does."""
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    s3.put_bucket_notification_configuration(
        Bucket=BUCKET,
        NotificationConfiguration={
            "QueueConfigurations": [
                {
                    "QueueArn": queue_arn,
                    "Events": ["s3:ObjectCreated:*"],
                    "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "logs/"}]}},
                }
            ]
        },
    )


def upload(client: object, files: list, label: str) -> None:
    from ons_pipeline.local.demo.visits_data import land_files

    started = time.perf_counter()
    land_files(client, BUCKET, files, workers=32)
    took = time.perf_counter() - started
    print(f"  uploaded {len(files):,} {label} files in {took:.0f} s ({len(files) / took:.0f}/s)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--first", type=int, default=10_000)
    parser.add_argument("--processed", type=int, default=100_000)
    parser.add_argument("--new", type=int, default=1_000)
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    parser.add_argument("--endpoint", help=argparse.SUPPRESS)
    parser.add_argument("--queue", help=argparse.SUPPRESS)
    parser.add_argument("--reconcile", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--listings", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(
            json.dumps(
                measure(args.endpoint, args.measure, args.queue, args.reconcile, args.listings)
            )
        )
        return 0

    import boto3
    from botocore.config import Config

    from ons_pipeline.local.demo.visits_data import synthetic_files
    from ons_pipeline.local.stack import LocalStack

    with tempfile.TemporaryDirectory() as state, LocalStack(Path(state)) as stack:
        os.environ.update(stack.env)
        client = boto3.client(
            "s3", config=Config(retries={"mode": "standard"}, max_pool_connections=32)
        )
        for bucket in (BUCKET, CHECKPOINTS):
            client.create_bucket(
                Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": stack.region}
            )
        sqs = boto3.client("sqs")
        queue_url = sqs.create_queue(QueueName="bench-visit-events-created")["QueueUrl"]
        print(f"moto S3 at {stack.moto_url}")
        upload(client, synthetic_files(args.first), "first-run")
        first = run_child(stack.moto_url, "first", queue_url)
        print(json.dumps(first))

        upload(client, synthetic_files(args.processed - args.first, start=args.first), "more")
        catch_up = run_child(stack.moto_url, "catch-up (unmeasured)", queue_url, reconcile=True)
        print(f"  caught up: {catch_up['total_events']:,} events in {catch_up['seconds']} s")
        # New files: their keys interleave with the processed ones (keys sort by action
        # first), so a StartAfter cursor would miss most of them.
        # From here on the bucket announces each new file on the queue (moto's own S3
        # notifications, the JSON S3 sends); the processed files were taken by listing.
        notify_on_create(client, sqs, queue_url)
        late = synthetic_files(args.new, start=args.processed)
        upload(client, late, "new (out of key order)")
        incremental = run_child(stack.moto_url, "incremental", queue_url, listings=True)
        print(json.dumps(incremental))
        # The same again without the queue: the hourly reconciliation's way, listing the
        # whole prefix by ledger ranges (what a deployment without notifications does).
        more_late = synthetic_files(args.new, start=args.processed + args.new)
        upload(client, more_late, "new, for the listing route")
        by_listing = run_child(stack.moto_url, "incremental by listing", queue_url, reconcile=True)
        print(json.dumps(by_listing))

    ok = (
        first["seconds"] < FLOOR_FIRST_S
        and incremental["seconds"] < FLOOR_INCREMENTAL_S
        and incremental["get_object_calls"] == args.new + 2  # + checkpoint + ledger
    )
    print(
        f"\nfirst run: {first['files_read']:,} files in {first['seconds']} s "
        f"({first['files_per_s']} files/s), {first['get_object_calls']:,} GETs, "
        f"peak RSS {first['peak_rss_mb']} MB (floor {FLOOR_FIRST_S:.0f} s)\n"
        f"incremental: {incremental['files_read']:,} new of {incremental['objects_seen']:,} "
        f"announced in {incremental['seconds']} s ({incremental['files_per_s']} files/s), "
        f"{incremental['get_object_calls']:,} GETs, peak RSS {incremental['peak_rss_mb']} MB "
        f"(floor {FLOOR_INCREMENTAL_S:.0f} s)\n"
        f"incremental by listing (reconcile): {by_listing['files_read']:,} new of "
        f"{by_listing['objects_seen']:,} listed in {by_listing['seconds']} s, "
        f"{by_listing['get_object_calls']:,} GETs, {by_listing['list_calls']} list calls, "
        f"{by_listing['sqs_receive_calls']} receives to settle the queue\n"
        f"listing {incremental['keys_listed']:,} keys: plain {incremental['plain_listing_s']} s, "
        f"by ledger ranges {incremental['ranged_listing_s']} s "
        f"({incremental['plain_listing_s'] / incremental['ranged_listing_s']:.1f}x)\n"
        f"{'PASS' if ok else 'FAIL'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
