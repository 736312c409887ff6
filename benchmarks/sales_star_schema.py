"""Benchmark: ToteSys JSONL packets -> seven star tables -> Parquet bytes.

Generates N sales-order versions (default 1,000,000) with proportionate dimensions, writes
the packets to a temporary folder, then times the project's path (parse, raw history,
star schema, Parquet) in a fresh child process so its peak RSS is the pipeline's own.
The baseline in the same run is a row-by-row version of the seed's Lambda (json.loads per
line, a dict per row) on a slice of the same packets; the ratio of rows/s is the speed-up.

    python benchmarks/sales_star_schema.py [--orders 1000000] [--baseline-orders 100000]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from decimal import Decimal
from pathlib import Path

FLOOR_SECONDS = 20.0
FLOOR_RSS_GB = 3.0


def generate(directory: Path, orders: int) -> dict[str, int]:
    from ons_pipeline.sales.demo_data import generate_totesys

    corpus = generate_totesys(orders, packets_per_table=4, seed=11)
    for packet in corpus.packets:
        path = directory / packet.key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(packet.body)
    return corpus.rows_per_table


def run_pipeline(directory: Path) -> dict[str, object]:
    """The measured path; runs in the child process."""
    from ons_pipeline.sales.outputs import to_parquet_bytes
    from ons_pipeline.sales.packets import empty_rows, merge_history, parse_packet, parse_packet_key
    from ons_pipeline.sales.schema import QUARANTINE_SCHEMA, STAR_SCHEMAS
    from ons_pipeline.sales.transform import SOURCE_TABLES, build_star_schema

    started = time.perf_counter()
    raw = {}
    lines = 0
    for table in SOURCE_TABLES:
        packets = []
        for path in sorted((directory / table).glob("*.jsonl")):
            parsed_key = parse_packet_key(f"{table}/{path.name}")
            assert parsed_key is not None
            packets.append(parse_packet(table, parsed_key[1], path.read_bytes()))
        lines += sum(p.lines for p in packets)
        raw[table] = merge_history(empty_rows(table), packets, table)
    parsed_at = time.perf_counter()
    result = build_star_schema(raw)
    transformed_at = time.perf_counter()
    written = sum(
        len(to_parquet_bytes(frame, STAR_SCHEMAS[name])) for name, frame in result.tables.items()
    )
    written += len(to_parquet_bytes(result.quarantine, QUARANTINE_SCHEMA))
    finished = time.perf_counter()
    return {
        "lines": lines,
        "fact_rows": len(result.tables["fact_sales_order"]),
        "quarantined": len(result.quarantine),
        "parse_s": parsed_at - started,
        "transform_s": transformed_at - parsed_at,
        "parquet_s": finished - transformed_at,
        "total_s": finished - started,
        "parquet_bytes": written,
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2,
    }


def run_baseline(directory: Path, limit: int) -> dict[str, float]:
    """The seed's shape: one json.loads and one Python dict per row, for `limit` orders."""
    started = time.perf_counter()
    rows: dict[str, list[dict]] = {}
    for table_dir in sorted(directory.iterdir()):
        records = []
        for path in sorted(table_dir.glob("*.jsonl")):
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
                if table_dir.name == "sales_order" and len(records) >= limit:
                    break
        rows[table_dir.name] = records
    latest = {}
    for table in ("staff", "department", "address", "currency", "design", "counterparty"):
        key = f"{table}_id"
        latest[table] = {r[key]: r for r in sorted(rows[table], key=lambda r: r["last_updated"])}
    facts = []
    for r in rows["sales_order"]:
        try:
            created = datetime.fromisoformat(r["created_at"])
            updated = datetime.fromisoformat(r["last_updated"])
            if r["staff_id"] not in latest["staff"] or r["units_sold"] < 0:
                continue
            facts.append(
                {
                    "sales_order_id": r["sales_order_id"],
                    "created_date": created.date(),
                    "created_time": created.time(),
                    "last_updated_date": updated.date(),
                    "last_updated_time": updated.time(),
                    "units_sold": r["units_sold"],
                    "unit_price": Decimal(str(r["unit_price"])),
                    "agreed_payment_date": datetime.fromisoformat(r["agreed_payment_date"]).date(),
                }
            )
        except (KeyError, TypeError, ValueError):
            continue
    import pandas as pd

    pd.DataFrame(facts).astype(str).to_parquet(directory.parent / "baseline.parquet")
    elapsed = time.perf_counter() - started
    return {"orders": len(rows["sales_order"]), "seconds": elapsed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--baseline-orders", type=int, default=100_000)
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_pipeline(args.child)))
        return

    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp) / "packets"
        t0 = time.perf_counter()
        per_table = generate(directory, args.orders)
        print(f"generated {sum(per_table.values()):,} lines in {time.perf_counter() - t0:.1f} s")
        child = subprocess.run(
            [sys.executable, __file__, "--child", str(directory)],
            check=True,
            capture_output=True,
            text=True,
        )
        figures = json.loads(child.stdout.strip().splitlines()[-1])
        baseline = run_baseline(directory, args.baseline_orders)

    rate = figures["lines"] / figures["total_s"]
    baseline_rate = baseline["orders"] / baseline["seconds"]
    print(f"sales-order versions:      {args.orders:,}")
    print(f"lines read (all tables):   {figures['lines']:,}")
    print(f"fact rows written:         {figures['fact_rows']:,}")
    print(f"rows quarantined:          {figures['quarantined']:,}")
    print(f"parse + history:           {figures['parse_s']:.2f} s")
    print(f"star schema transform:     {figures['transform_s']:.2f} s")
    print(
        f"parquet (8 tables):        {figures['parquet_s']:.2f} s "
        f"({figures['parquet_bytes'] / 1e6:.1f} MB)"
    )
    print(f"total:                     {figures['total_s']:.2f} s  (floor {FLOOR_SECONDS:.0f} s)")
    print(f"rows/s:                    {rate:,.0f}")
    print(
        f"peak RSS:                  {figures['peak_rss_gb']:.2f} GB  (floor {FLOOR_RSS_GB:.0f} GB)"
    )
    print(
        f"baseline (row by row):     {baseline_rate:,.0f} rows/s on {baseline['orders']:,} orders"
    )
    print(f"speed-up vs baseline:      {rate / baseline_rate:.1f}x")
    within = figures["total_s"] < FLOOR_SECONDS and figures["peak_rss_gb"] < FLOOR_RSS_GB
    print(f"within floor:              {'yes' if within else 'NO'}")


if __name__ == "__main__":
    main()
