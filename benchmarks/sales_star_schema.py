"""Benchmark: ToteSys JSONL packets -> seven star tables -> Parquet bytes.

Two measurements, each measured path in a fresh child process so its peak RSS is its own:

(a) first load: N sales-order versions (default 1,000,000) with proportionate dimensions,
    end to end (JSON decode, raw-history merge, star transform, Parquet of the raw history
    and the star files), with each stage's wall time, share and CPU time (all threads; on
    a loaded machine wall time stretches and CPU time much less, so both are printed);
(b) the comparison a user would make, on the same packets: a plain pandas version of the
    seed's transform as public ToteSys projects write it (`pd.read_json(lines=True)` per
    packet, latest version per dimension, one merge per dimension, `.dt.date`/`.dt.time`,
    `DataFrame.to_parquet`); the ratio of the two times is printed;
A single new packet on histories of 1 M and 4 M versions is `sales_increment.py`'s, which
runs the sales code itself against moto's S3.

The corpus is generated without planted bad lines: `pd.read_json` refuses a whole packet
with one broken line, so the comparison could not run on it (the quarantine path is covered
by the tests, not timed here).

    python benchmarks/sales_star_schema.py [--orders 1000000] [--repeat 1]

`--repeat N` runs (a) N times, each in a fresh child, prints every run with the load average
around it and judges the fastest: on a shared machine other work stretches wall time.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterator

FLOOR_SECONDS = 3.5
FLOOR_RSS_GB = 1.0
FLOOR_GROWTH = 1.5  # sales_increment.py: the larger history's run over the smaller one's
NEW_PACKET_ROWS = 1_000


def _peak_rss_gb() -> float:
    """This process's own peak RSS.

    On Linux a spawned child's `ru_maxrss` also holds its parent's peak from before `exec`
    (here the corpus generator's), so the high-water mark of the child's own memory
    (`VmHWM`) is read where it exists.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024**2
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def generate(directory: Path, orders: int) -> dict[str, int]:
    """Write a clean corpus of `orders` order versions as packet files under `directory`."""
    from ons_pipeline.local.demo.sales_data import generate_totesys

    corpus = generate_totesys(orders, packets_per_table=4, seed=11, bad_rows=False)
    for packet in corpus.packets:
        path = directory / packet.key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(packet.body)
    return corpus.rows_per_table


def _packet_files(directory: Path, table: str) -> list[tuple[int, Path]]:
    from ons_pipeline.sales.packets import parse_packet_key

    found = []
    for path in sorted((directory / table).glob("*.jsonl")):
        parsed = parse_packet_key(f"{table}/{path.name}")
        assert parsed is not None
        found.append((parsed[1], path))
    return found


def run_pipeline(directory: Path) -> dict[str, object]:
    """(a) The project's first load; runs in the child process."""
    from ons_pipeline.sales.outputs import to_parquet_bytes
    from ons_pipeline.sales.packets import empty_rows, history_schema, merge_history, parse_packet
    from ons_pipeline.sales.schema import QUARANTINE_SCHEMA, STAR_SCHEMAS
    from ons_pipeline.sales.transform import SOURCE_TABLES, build_star_schema

    started, started_cpu = time.perf_counter(), time.process_time()
    raw = {}
    lines = 0
    stages = _Stages()
    written = 0
    for table in SOURCE_TABLES:
        with stages("decode"):
            packets = [
                parse_packet(table, packet_id, path.read_bytes())
                for packet_id, path in _packet_files(directory, table)
            ]
        lines += sum(p.lines for p in packets)
        with stages("merge"):
            raw[table] = merge_history(empty_rows(table), packets, table)
        del packets
        with stages("parquet"):
            written += len(to_parquet_bytes(raw[table], history_schema(table)))
    with stages("transform"):
        result = build_star_schema(raw)
    with stages("parquet"):
        written += sum(
            len(to_parquet_bytes(frame, STAR_SCHEMAS[name]))
            for name, frame in result.tables.items()
        )
        written += len(to_parquet_bytes(result.quarantine, QUARANTINE_SCHEMA))
    return {
        "lines": lines,
        "fact_rows": len(result.tables["fact_sales_order"]),
        "quarantined": len(result.quarantine),
        "stages": stages.seconds,
        "total_s": time.perf_counter() - started,
        "total_cpu_s": time.process_time() - started_cpu,
        "parquet_bytes": written,
        "peak_rss_gb": _peak_rss_gb(),
    }


class _Stages:
    """Wall and CPU seconds per named stage (CPU counts every thread, e.g. Arrow's reader)."""

    def __init__(self) -> None:
        self.seconds: dict[str, list[float]] = {}

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        wall, cpu = time.perf_counter(), time.process_time()
        yield
        spent = self.seconds.setdefault(name, [0.0, 0.0])
        spent[0] += time.perf_counter() - wall
        spent[1] += time.process_time() - cpu


def run_pandas_baseline(directory: Path) -> dict[str, object]:
    """(b) The seed's transform as a plain pandas project writes it; runs in a child process."""
    import pandas as pd

    from ons_pipeline.sales.schema import CURRENCY_NAMES

    started, started_cpu = time.perf_counter(), time.process_time()
    raw: dict[str, pd.DataFrame] = {}
    for table_dir in sorted(directory.iterdir()):
        parts = [pd.read_json(path, lines=True) for path in sorted(table_dir.glob("*.jsonl"))]
        raw[table_dir.name] = pd.concat(parts, ignore_index=True).drop_duplicates()

    def latest(table: str) -> pd.DataFrame:
        frame = raw[table].copy()
        frame["last_updated"] = pd.to_datetime(frame["last_updated"], format="ISO8601")
        return frame.sort_values("last_updated").drop_duplicates(f"{table}_id", keep="last")

    department = latest("department")
    staff = latest("staff").merge(
        department[["department_id", "department_name", "location"]], on="department_id"
    )
    dim_staff = staff[
        ["staff_id", "first_name", "last_name", "department_name", "location", "email_address"]
    ]
    address = latest("address")
    location_columns = ["address_line_1", "address_line_2", "district", "city", "postal_code"]
    dim_location = address.rename(columns={"address_id": "location_id"})[
        ["location_id", *location_columns, "country", "phone"]
    ]
    currency = latest("currency")
    dim_currency = currency[["currency_id", "currency_code"]].assign(
        currency_name=currency["currency_code"].map(CURRENCY_NAMES)
    )
    dim_design = latest("design")[["design_id", "design_name", "file_location", "file_name"]]
    legal = address.rename(columns=lambda c: f"counterparty_legal_{c}")
    counterparty = latest("counterparty").merge(
        legal, left_on="legal_address_id", right_on="counterparty_legal_address_id"
    )
    dim_counterparty = counterparty[
        ["counterparty_id", "counterparty_legal_name"]
        + [f"counterparty_legal_{c}" for c in [*location_columns, "country"]]
        + ["counterparty_legal_phone"]
    ].rename(columns={"counterparty_legal_phone": "counterparty_legal_phone_number"})

    orders = raw["sales_order"]
    created = pd.to_datetime(orders["created_at"], format="ISO8601")
    updated = pd.to_datetime(orders["last_updated"], format="ISO8601")
    fact = pd.DataFrame(
        {
            "sales_order_id": orders["sales_order_id"],
            "created_date": created.dt.date,
            "created_time": created.dt.time,
            "last_updated_date": updated.dt.date,
            "last_updated_time": updated.dt.time,
            "sales_staff_id": orders["staff_id"],
            "counterparty_id": orders["counterparty_id"],
            "units_sold": orders["units_sold"],
            "unit_price": orders["unit_price"],
            "currency_id": orders["currency_id"],
            "design_id": orders["design_id"],
            "agreed_payment_date": pd.to_datetime(orders["agreed_payment_date"]).dt.date,
            "agreed_delivery_date": pd.to_datetime(orders["agreed_delivery_date"]).dt.date,
            "agreed_delivery_location_id": orders["agreed_delivery_location_id"],
        }
    )
    for column, dim, key in (
        ("sales_staff_id", dim_staff, "staff_id"),
        ("counterparty_id", dim_counterparty, "counterparty_id"),
        ("currency_id", dim_currency, "currency_id"),
        ("design_id", dim_design, "design_id"),
        ("agreed_delivery_location_id", dim_location, "location_id"),
    ):
        fact = fact.merge(dim[[key]], left_on=column, right_on=key, how="inner")
        if key != column:
            fact = fact.drop(columns=[key])
    fact.insert(0, "sales_record_id", range(1, len(fact) + 1))
    days = pd.to_datetime(
        pd.concat(
            [
                fact[c]
                for c in (
                    "created_date",
                    "last_updated_date",
                    "agreed_payment_date",
                    "agreed_delivery_date",
                )
            ]
        ).unique()
    )
    dim_date = pd.DataFrame(
        {
            "date_id": days.date,
            "year": days.year,
            "month": days.month,
            "day": days.day,
            "day_of_week": days.dayofweek,
            "day_name": days.day_name(),
            "month_name": days.month_name(),
            "quarter": days.quarter,
        }
    )
    written = 0
    for frame in (
        fact,
        dim_date,
        dim_staff,
        dim_location,
        dim_currency,
        dim_design,
        dim_counterparty,
    ):
        sink = io.BytesIO()
        frame.to_parquet(sink, index=False)
        written += len(sink.getvalue())
    return {
        "fact_rows": len(fact),
        "total_s": time.perf_counter() - started,
        "total_cpu_s": time.process_time() - started_cpu,
        "parquet_bytes": written,
        "peak_rss_gb": _peak_rss_gb(),
    }


def _child(*args: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, __file__, *args], check=True, capture_output=True, text=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def first_load(orders: int, repeat: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp) / "packets"
        t0 = time.perf_counter()
        per_table = generate(directory, orders)
        print(f"generated {sum(per_table.values()):,} lines in {time.perf_counter() - t0:.1f} s")
        runs = []
        for _ in range(repeat):  # each run in a fresh child: a cold process, as a run starts
            before = os.getloadavg()[0]  # other work stretches wall time, much less CPU time
            runs.append((before, _child("--child-pipeline", str(directory)), os.getloadavg()[0]))
        baseline = _child("--child-pandas", str(directory))

    figures = min((run[1] for run in runs), key=lambda run: run["total_s"])
    total = figures["total_s"]
    print(f"(a) first load of {orders:,} sales-order versions, {repeat} run(s)")
    for number, (before, run, after) in enumerate(runs, 1):
        print(
            f"  run {number}: {run['total_s']:5.2f} s wall, {run['total_cpu_s']:5.2f} s CPU, "
            f"peak {run['peak_rss_gb']:.2f} GB (load average {before:.1f} -> {after:.1f})"
        )
    print(f"  lines read (all tables):   {figures['lines']:,}")
    print(f"  fact rows written:         {figures['fact_rows']:,}")
    label = "fastest run" if repeat > 1 else "the run"
    print(f"  {'stage (' + label + ')':<27}{'wall':>7}  share  {'CPU':>7}  (CPU of all threads)")
    for name, key in (
        ("JSON decode", "decode"),
        ("history merge", "merge"),
        ("star transform", "transform"),
        ("Parquet (history + star)", "parquet"),
    ):
        wall, cpu = figures["stages"][key]
        print(f"  {name + ':':<27}{wall:5.2f} s  {wall / total:4.0%}  {cpu:5.2f} s")
    print(
        f"  total:                     {total:5.2f} s         {figures['total_cpu_s']:5.2f} s"
        f"  (floor < {FLOOR_SECONDS} s wall)"
    )
    rss = max(run[1]["peak_rss_gb"] for run in runs)
    print(f"  peak RSS (highest run):    {rss:.2f} GB  (floor < {FLOOR_RSS_GB} GB)")
    within = total < FLOOR_SECONDS and rss < FLOOR_RSS_GB
    print(f"  within floor:              {'yes' if within else 'NO'} ({label})")
    print("(b) plain pandas (read_json(lines=True), merges per dimension), same packets")
    print(f"  fact rows:                 {baseline['fact_rows']:,}")
    print(
        f"  total:                     {baseline['total_s']:5.2f} s         "
        f"{baseline['total_cpu_s']:5.2f} s"
    )
    print(f"  peak RSS:                  {baseline['peak_rss_gb']:.2f} GB")
    print(
        f"  pipeline speed-up:         {baseline['total_s'] / total:.1f}x wall, "
        f"{baseline['total_cpu_s'] / figures['total_cpu_s']:.1f}x CPU ({label})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument(
        "--repeat", type=int, default=1, help="first-load runs; the fastest is judged"
    )
    parser.add_argument("--child-pipeline", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--child-pandas", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_pipeline:
        print(json.dumps(run_pipeline(args.child_pipeline)))
    elif args.child_pandas:
        print(json.dumps(run_pandas_baseline(args.child_pandas)))
    else:
        first_load(args.orders, args.repeat)


if __name__ == "__main__":
    main()
