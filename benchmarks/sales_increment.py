"""Benchmark: one new sales_order packet on two history sizes, through the sales code over HTTP.

For each history size (default 1 M and 4 M order versions) the corpus is landed in moto's S3
server (the local stack) and absorbed by the project's own code (raw step, then the star
step's first full build): the state a deployment has after that history. Then a 1,000-row
sales_order packet of later versions lands and one run processes it, in a fresh child
process so its peak RSS (VmHWM) is its own:

(incremental) what the sales assets run: `absorb_packets` (the packet becomes a raw part)
              and `run_star_step` (recover, read the new part and the dimension tables,
              append facts, dates and quarantined rows through the commit protocol), every
              read and write over HTTP to moto's S3 and SSM;
(dimensions)  a staff packet (10 later versions, renamed) with another 1,000 orders: the
              changed dimension is rebuilt from its own history, the facts still appended;
(full)        the same for a further packet (a day later) with the manifest's raw state
              forgotten, so the star step rebuilds from the whole history as every run did
              before (by default on the smallest history only; `--full-at` names others).

Printed per size: time (raw and star step) and peak memory; then the larger history over the smaller
(floor: at most 1.5x in time and in memory) and full over incremental.

    python benchmarks/sales_increment.py [--histories 1000000 4000000] [--full-at 1000000]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import sales_star_schema as base

REGION = "eu-west-2"


def _storage(size: int) -> Any:
    from ons_pipeline.resources import SalesStorageResource

    return SalesStorageResource(
        ingestion_bucket=f"bench-ingest-{size}",
        processed_bucket=f"bench-processed-{size}",
        ssm_prefix=f"/bench-{size}",
    )


def _resources() -> tuple[Any, Any]:
    from ons_pipeline.resources import ObjectStoreResource, ParameterStoreResource

    return ObjectStoreResource(region_name=REGION), ParameterStoreResource(region_name=REGION)


def run_sales(size: int, packets: dict[str, list[int]], forget_raw: bool) -> dict[str, Any]:
    """One sales run (raw step, star step) over HTTP; in a child process."""
    from ons_pipeline.sales.star import run_star_step
    from ons_pipeline.sales.storage import absorb_packets, manifest_key

    s3, ssm = _resources()
    storage = _storage(size)
    log = logging.getLogger("bench")
    if forget_raw:  # unmeasured: what a manifest from before the raw state makes a run do
        manifest = json.loads(s3.get_bytes(storage.processed_bucket, manifest_key(storage)) or b"")
        manifest.pop("raw")
        body = json.dumps(manifest).encode()
        s3.put_bytes(storage.processed_bucket, manifest_key(storage), body, "application/json")
    started = time.perf_counter()
    for table, ids in packets.items():
        absorb_packets(s3, storage, table, ids)
    absorbed = time.perf_counter() - started
    run = run_star_step(log, s3, ssm, storage)
    total = time.perf_counter() - started
    return {
        "total_s": total,
        "raw_s": absorbed,
        "star_s": total - absorbed,
        "peak_rss_gb": base._peak_rss_gb(),  # noqa: SLF001 (the same VmHWM reading)
        "incremental": run.incremental,
        "new_facts": run.published["fact_sales_order"].changed_rows,
        "facts": run.published["fact_sales_order"].rows,
    }


def _child(*args: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, __file__, *args], check=True, capture_output=True, text=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def _run(size: int, packets: dict[str, list[int]], forget_raw: bool = False) -> dict[str, Any]:
    return _child("--child-run", str(size), json.dumps(packets), "1" if forget_raw else "")


def prepare(client: Any, directory: Path, size: int) -> int:
    """Land the corpus and absorb it with the project's code; returns the next packet id."""
    storage = _storage(size)
    for bucket in (storage.ingestion_bucket, storage.processed_bucket):
        client.create_bucket(
            Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION}
        )
    packets: dict[str, list[int]] = {}
    for table_dir in sorted(directory.iterdir()):
        for packet_id, path in base._packet_files(directory, table_dir.name):  # noqa: SLF001
            key = f"{table_dir.name}/{path.name}"
            client.put_object(Bucket=storage.ingestion_bucket, Key=key, Body=path.read_bytes())
            packets.setdefault(table_dir.name, []).append(packet_id)
    first = _run(size, packets)
    assert not first["incremental"] and first["facts"], first
    return max(packets["sales_order"]) + 1


def land_update(client: Any, directory: Path, size: int, packet_id: int, day: int) -> None:
    from ons_pipeline.local.demo.sales_data import later_versions

    last = base._packet_files(directory, "sales_order")[-1][1]  # noqa: SLF001
    packet = later_versions(
        "sales_order", last.read_bytes(), base.NEW_PACKET_ROWS, packet_id, day=day
    )
    client.put_object(Bucket=_storage(size).ingestion_bucket, Key=packet.key, Body=packet.body)


def land_staff_update(client: Any, directory: Path, size: int) -> int:
    """Ten staff members renamed, as the next staff packet; returns its id."""
    from ons_pipeline.local.demo.sales_data import later_versions

    packets = base._packet_files(directory, "staff")  # noqa: SLF001
    first, last_id = packets[0][1], packets[-1][0]
    packet = later_versions(
        "staff", first.read_bytes(), 10, last_id + 1, day=2, changes={"first_name": "Ada"}
    )
    client.put_object(Bucket=_storage(size).ingestion_bucket, Key=packet.key, Body=packet.body)
    return last_id + 1


def _ratio_line(label: str, runs: list[tuple[int, dict[str, Any]]]) -> str:
    (small, a), (large, b) = runs[0], runs[-1]
    time_ratio = b["total_s"] / a["total_s"]
    rss_ratio = b["peak_rss_gb"] / a["peak_rss_gb"]
    within = max(time_ratio, rss_ratio) <= base.FLOOR_GROWTH
    return (
        f"  {label}: {large:,} over {small:,}: time {time_ratio:.2f}x, memory {rss_ratio:.2f}x "
        f"(floor <= {base.FLOOR_GROWTH}x both): {'yes' if within else 'NO'}"
    )


def _line(label: str, figures: dict[str, Any]) -> str:
    return (
        f"  {label}: {figures['total_s']:.3f} s (raw step {figures['raw_s']:.3f} s, star step "
        f"{figures['star_s']:.3f} s), peak {figures['peak_rss_gb']:.2f} GB, "
        f"{figures['new_facts']:,} new facts of {figures['facts']:,}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--histories", type=int, nargs="+", default=[1_000_000, 4_000_000])
    parser.add_argument("--full-at", type=int, nargs="*", default=None)
    parser.add_argument("--child-run", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_run:
        size, packets, forget = args.child_run
        print(json.dumps(run_sales(int(size), json.loads(packets), bool(forget))))
        return
    full_at = set(args.full_at if args.full_at is not None else [min(args.histories)])

    import boto3

    from ons_pipeline.local.stack import LocalStack

    fast_runs: list[tuple[int, dict[str, Any]]] = []
    dim_runs: list[tuple[int, dict[str, Any]]] = []
    with tempfile.TemporaryDirectory() as tmp, LocalStack(Path(tmp) / "stack") as stack:
        os.environ.update(stack.env)
        client = boto3.client("s3", region_name=REGION)
        for size in args.histories:
            directory = Path(tmp) / f"packets-{size}"
            t0 = time.perf_counter()
            base.generate(directory, size)
            packet_id = prepare(client, directory, size)
            print(
                f"{base.NEW_PACKET_ROWS:,}-row sales_order packet on {size:,} versions "
                f"(history landed and absorbed in {time.perf_counter() - t0:.0f} s)"
            )
            land_update(client, directory, size, packet_id, day=1)
            fast = _run(size, {"sales_order": [packet_id]})
            assert fast["incremental"], fast
            fast_runs.append((size, fast))
            print(_line("incremental", fast))
            staff_id = land_staff_update(client, directory, size)
            land_update(client, directory, size, packet_id + 1, day=2)
            dims = _run(size, {"staff": [staff_id], "sales_order": [packet_id + 1]})
            assert dims["incremental"], dims
            dim_runs.append((size, dims))
            print(_line("with a dimension", dims))
            if size in full_at:
                land_update(client, directory, size, packet_id + 2, day=3)
                full = _run(size, {"sales_order": [packet_id + 2]}, forget_raw=True)
                assert not full["incremental"], full
                print(_line("full rebuild", full))
                print(
                    f"  full over incremental: {full['total_s'] / fast['total_s']:.1f}x time, "
                    f"{full['peak_rss_gb'] / fast['peak_rss_gb']:.1f}x memory"
                )
            shutil.rmtree(directory, ignore_errors=True)
    if len(fast_runs) >= 2:
        print(_ratio_line("incremental", fast_runs))
        print(_ratio_line("with a dimension", dim_runs))


if __name__ == "__main__":
    main()
