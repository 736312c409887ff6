"""Benchmark: the sales star step's fast path for one new packet, on two history sizes.

For each history size (default 1 M and 4 M order versions) the state after every packet is
prepared once (raw histories, star snapshots and the newest stored `last_updated`), then one
1,000-row sales_order packet of later versions is run, each measured path in a fresh child
process so its peak RSS (VmHWM) is its own:

(fast) the fast path's work: parse the packet, check every row is newer than the stored
       watermark (so no stored row can repeat it or share its version), read the five
       dimension snapshots and dim_date, `build_star_increment`, then write the packet's raw
       part and the new facts, dates and quarantined rows as Parquet;
(full) the same packet as the sales assets run it today (`sales_star_schema.py`'s (c): whole
       histories loaded, all seven tables rebuilt and diffed against their snapshots).

Printed: both paths' time and peak memory per size, the larger over the smaller history
(floor: at most 1.5x in time and memory) and full over fast. The fast path is not wired into
the sales assets yet: this measures the work it does, on local files, not S3 round trips.

    python benchmarks/sales_increment.py [--histories 1000000 4000000] [--skip-full]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import sales_star_schema as base


def _child(*args: str, script: str = __file__) -> dict[str, Any]:
    """Run a measured path in a fresh process (of this script or the base one)."""
    done = subprocess.run(
        [sys.executable, script, *args], check=True, capture_output=True, text=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def prepare_watermark(state: Path) -> dict[str, str]:
    """Store the newest `last_updated` of the stored sales_order rows (the manifest's field)."""
    from ons_pipeline.sales.outputs import from_parquet_bytes
    from ons_pipeline.sales.transform import newest_version

    history = from_parquet_bytes((state / "raw" / "sales_order.parquet").read_bytes())
    figures = {"watermark": str(newest_version(history))}
    (state / "watermark.json").write_text(json.dumps(figures))
    return figures


def run_fast(state: Path, packet_id: int, body: bytes) -> dict[str, Any]:
    """(fast) The increment's reads, transform and writes for one packet; in a child process."""
    import numpy as np

    from ons_pipeline.sales.outputs import from_parquet_bytes, to_parquet_bytes
    from ons_pipeline.sales.packets import history_schema, parse_packet
    from ons_pipeline.sales.schema import QUARANTINE_SCHEMA, STAR_SCHEMAS
    from ons_pipeline.sales.transform import (
        all_newer_than,
        build_star_increment,
        newest_version,
        order_versions,
    )

    started = time.perf_counter()
    rows = parse_packet("sales_order", packet_id, body).rows
    stored = json.loads((state / "watermark.json").read_text())
    watermark = np.datetime64(stored["watermark"], "us")
    assert all_newer_than(rows, watermark), "the benchmark packet holds only later versions"
    snapshots = {
        name: from_parquet_bytes((state / "star" / f"{name}.parquet").read_bytes())
        for name in STAR_SCHEMAS
        if name != "fact_sales_order"
    }
    no_lookup = order_versions(rows.iloc[:0])  # nothing stored is as new as these rows
    increment = build_star_increment(rows, no_lookup, snapshots, snapshots["dim_date"]["date_id"])
    assert increment is not None
    written = len(to_parquet_bytes(rows, history_schema("sales_order")))  # the raw part
    for name, frame in increment.tables.items():
        written += len(to_parquet_bytes(frame, STAR_SCHEMAS[name]))
    written += len(to_parquet_bytes(increment.quarantine, QUARANTINE_SCHEMA))
    stored["watermark"] = str(max(watermark, newest_version(rows) or watermark))
    (state / "watermark.json").write_text(json.dumps(stored))
    return {
        "total_s": time.perf_counter() - started,
        "peak_rss_gb": base._peak_rss_gb(),  # noqa: SLF001 (the same VmHWM reading)
        "facts": len(increment.tables["fact_sales_order"]),
        "bytes_written": written,
    }


def _ratio_line(label: str, runs: list[tuple[int, dict[str, Any]]]) -> str:
    (small, a), (large, b) = runs[0], runs[-1]
    time_ratio = b["total_s"] / a["total_s"]
    rss_ratio = b["peak_rss_gb"] / a["peak_rss_gb"]
    within = max(time_ratio, rss_ratio) <= base.FLOOR_GROWTH
    return (
        f"  {label}: {large:,} over {small:,}: time {time_ratio:.2f}x, memory {rss_ratio:.2f}x "
        f"(floor <= {base.FLOOR_GROWTH}x both): {'yes' if within else 'NO'}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--histories", type=int, nargs="+", default=[1_000_000, 4_000_000])
    parser.add_argument("--skip-full", action="store_true")
    parser.add_argument("--child-watermark", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--child-fast", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_watermark:
        print(json.dumps(prepare_watermark(args.child_watermark)))
        return
    if args.child_fast:
        state, packet_id, packet = args.child_fast
        print(json.dumps(run_fast(Path(state), int(packet_id), Path(packet).read_bytes())))
        return
    fast_runs: list[tuple[int, dict[str, Any]]] = []
    full_runs: list[tuple[int, dict[str, Any]]] = []
    for orders in args.histories:
        with tempfile.TemporaryDirectory() as tmp:
            directory, state = Path(tmp) / "packets", Path(tmp) / "state"
            t0 = time.perf_counter()
            base.generate(directory, orders)
            packet_id = _child_prepare(directory, state)
            stored = _child("--child-watermark", str(state))
            packet = Path(tmp) / "new.jsonl"
            packet.write_bytes(base.new_packet(directory, base.NEW_PACKET_ROWS))
            prepared = time.perf_counter() - t0
            fast = _child("--child-fast", str(state), str(packet_id), str(packet))
            fast_runs.append((orders, fast))
            print(
                f"{base.NEW_PACKET_ROWS:,}-row packet on {orders:,} versions "
                f"(state prepared in {prepared:.0f} s, stored watermark {stored['watermark']})"
            )
            print(
                f"  fast: {fast['total_s']:.3f} s, peak {fast['peak_rss_gb']:.2f} GB "
                f"({fast['facts']:,} facts, {fast['bytes_written']:,} bytes written)"
            )
            if not args.skip_full:
                full = _child(
                    "--child-run", str(state), str(packet_id), str(packet), script=base.__file__
                )
                full_runs.append((orders, full))
                print(
                    f"  full: {full['total_s']:.3f} s, peak {full['peak_rss_gb']:.2f} GB "
                    f"(full over fast: {full['total_s'] / fast['total_s']:.1f}x time)"
                )
    if len(fast_runs) >= 2:
        print(_ratio_line("fast", fast_runs))
        if full_runs:
            print(_ratio_line("full", full_runs))


def _child_prepare(directory: Path, state: Path) -> int:
    prepared = _child("--child-prepare", str(directory), str(state), script=base.__file__)
    return int(prepared["packet_id"])


if __name__ == "__main__":
    main()
