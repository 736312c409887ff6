"""Seed 003's performance suite on the local stack, each figure beside the seed's target.

1. High-frequency writes: `--write-rate` points/s (10,000) for `--write-seconds` (60) in
   batches every 100 ms through `InfluxDBResource.write_lines`; p50/p95 request latency
   (target p95 < 100 ms). Baseline: p95 of `/ping` in the same run (the floor of a request).
2. 30-day aggregation templates over `--days` (30) of 1-minute data for 4 regions x 5
   sources (generation, long) and 4 regions x 5 consumer types (consumption, wide), through
   the templates' InfluxQL with bind parameters; p95 per template (target < 5 s). Baseline:
   the same template over one hour.
3. `--readers` (10) and `--writers` (5) at once for `--mixed-seconds` (30): reads are the
   one-hour templates, writes are 100-point requests; operations/s (target > 5,000).
   Baseline: one reader alone.
4. The same 30-day templates answered by the S3 fallback (pyarrow over moto's S3); p95.
   Baseline: InfluxDB's p95 from 2.
Plus the 30-day question end to end through the HTTP API (uvicorn).

The machine may be shared: figures are as measured in this run.

    .venv/bin/python benchmarks/energy_query.py               # the seed's sizes
    .venv/bin/python benchmarks/energy_query.py --quick       # 3 days, 10 s phases
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import threading
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ons_pipeline.energy.api import InfluxTemplates, service_from_env
from ons_pipeline.energy.line_protocol import LineProtocolBatches, line_chunks, lines_of_body
from ons_pipeline.energy.query.templates import parse_template
from ons_pipeline.energy.validation import prepare
from ons_pipeline.local.demo.energy_data import to_parquet
from ons_pipeline.local.query_api import start_api
from ons_pipeline.local.stack import LocalStack, free_port

REGIONS = ("N", "NE", "SE/CO", "S")
SOURCES = ("hydro", "thermal", "wind", "solar", "nuclear")
CONSUMERS = ("residential", "industrial", "commercial", "public", "rural")


def p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(round(q * (len(ordered) - 1)), len(ordered) - 1)] if ordered else 0.0


def day_frame(dataset: str, day: datetime, rng: np.random.Generator) -> pd.DataFrame:
    """One day of 1-minute points for 4 regions x 5 members."""
    minutes = pd.date_range(day, periods=1440, freq="min", tz="UTC")
    members = SOURCES if dataset == "generation" else CONSUMERS
    dim = "energy_source" if dataset == "generation" else "consumer_type"
    n = len(minutes) * len(REGIONS) * len(members)
    frame = pd.DataFrame(
        {
            "timestamp": np.tile(minutes, len(REGIONS) * len(members)),
            "region": np.repeat(REGIONS, len(minutes) * len(members)),
            dim: np.tile(np.repeat(members, len(minutes)), len(REGIONS)),
            "quality_flag": "good",
        }
    )
    if dataset == "generation":
        frame["value"] = np.round(rng.random(n) * 10_000, 3)
        frame["unit"] = "MW"
    else:
        frame["consumption_mwh"] = np.round(rng.random(n) * 500, 3)
        frame["demand_mw"] = np.round(rng.random(n) * 30_000, 3)
        frame["load_factor"] = np.round(rng.random(n), 4)
    return frame


def load(service: Any, s3: Any, bucket: str, days: list[datetime]) -> int:
    """Parquet into S3 and the same rows into InfluxDB through the load path's writer."""
    influxdb = service.influx.influxdb
    rng = np.random.default_rng(3)
    points = 0
    for day in days:
        for dataset in ("generation", "consumption"):
            frame = day_frame(dataset, day, rng)
            key = f"dataset={dataset}/year={day:%Y}/month={day:%m}/{dataset}_{day:%Y%m%d}.parquet"
            s3.put_object(Bucket=bucket, Key=key, Body=to_parquet(frame))
            prepared = prepare(frame, dataset)
            target = influxdb.bucket_for(prepared.measurement)
            influxdb.ensure_bucket(target)
            for _, lines in line_chunks(prepared):
                batches = LineProtocolBatches([lines], influxdb.max_batch_size)
                outcome = influxdb.write_lines(target, batches)
                assert not outcome.rejected, outcome.rejected
                points += outcome.lines_written
    return points


def timed(fn: Any, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        out.append(time.perf_counter() - started)
    return out


def write_bodies(count: int, size: int, offset_minutes: int) -> list[bytes]:
    """Distinct line-protocol bodies of `size` points each, recent times."""
    base = int((datetime.now(UTC) - timedelta(minutes=offset_minutes)).timestamp()) * 10**9
    bodies = []
    for i in range(count):
        times = base + (i * size + np.arange(size)) * 1_000_000
        lines = [
            f"bench_writes,region={REGIONS[j % 4]},energy_source={SOURCES[j % 5]} "
            f"power_mw={j}.5 {t}"
            for j, t in enumerate(times.tolist())
        ]
        bodies.append(("\n".join(lines) + "\n").encode())
    return bodies


def write_phase(influxdb: Any, rate: int, seconds: float) -> dict[str, float]:
    interval = 0.1
    size = max(int(rate * interval), 1)
    count = int(seconds / interval)
    influxdb.ensure_bucket("bench_writes")
    bodies = [lines_of_body(body) for body in write_bodies(count, size, offset_minutes=600)]
    latencies = []
    started = time.perf_counter()
    for i, body in enumerate(bodies):
        due = started + i * interval
        if (wait := due - time.perf_counter()) > 0:
            time.sleep(wait)
        t0 = time.perf_counter()
        influxdb.write_lines("bench_writes", LineProtocolBatches([body], size))
        latencies.append(time.perf_counter() - t0)
    elapsed = time.perf_counter() - started
    return {
        "p50": p(latencies, 0.5),
        "p95": p(latencies, 0.95),
        "points_per_s": count * size / elapsed,
    }


def mixed_phase(
    service: Any, readers: int, writers: int, seconds: float, one_hour: list[Any]
) -> dict[str, float]:
    influxdb = service.influx.influxdb
    stop_at = time.perf_counter() + seconds
    counts = {"reads": 0, "writes": 0, "points": 0, "errors": 0}
    lock = threading.Lock()
    bodies = [lines_of_body(body) for body in write_bodies(200, 100, offset_minutes=300)]

    def reader(index: int) -> None:
        i = index
        while time.perf_counter() < stop_at:
            try:
                service.influx.answer(one_hour[i % len(one_hour)])
                key = "reads"
            except Exception:
                key = "errors"
            with lock:
                counts[key] += 1
            i += 1

    def writer(index: int) -> None:
        i = index
        while time.perf_counter() < stop_at:
            body = bodies[i % len(bodies)]
            influxdb.write_lines("bench_writes", LineProtocolBatches([body], 100))
            with lock:
                counts["writes"] += 1
                counts["points"] += 100
            i += 1

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(readers)]
    threads += [threading.Thread(target=writer, args=(i,)) for i in range(writers)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    return {k: v / elapsed for k, v in counts.items()} | {
        "ops": (counts["reads"] + counts["writes"]) / elapsed
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--write-rate", type=int, default=10_000)
    parser.add_argument("--write-seconds", type=float, default=60)
    parser.add_argument("--mixed-seconds", type=float, default=30)
    parser.add_argument("--readers", type=int, default=10)
    parser.add_argument("--writers", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=10, help="runs per template")
    parser.add_argument("--quick", action="store_true", help="3 days, 10 s phases, 3 runs")
    args = parser.parse_args()
    if args.quick:
        args.days, args.write_seconds, args.mixed_seconds, args.repeat = 3, 10, 10, 3

    print(f"CPU cores: {os.cpu_count()} (shared with other work: figures as measured)")
    with tempfile.TemporaryDirectory() as tmp, LocalStack(Path(tmp)) as stack:
        env = stack.env
        os.environ.update(env)
        service = service_from_env(env)
        assert isinstance(service.influx, InfluxTemplates)
        influxdb = service.influx.influxdb
        import boto3

        s3 = boto3.client("s3")
        today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        days = [today - timedelta(days=args.days - i) for i in range(args.days)]
        started = time.perf_counter()
        points = load(service, s3, service.lake.config.bucket, days)
        took = time.perf_counter() - started
        print(
            f"Loaded {args.days} days x 1-minute x 4 regions x 5 members, 2 datasets: "
            f"{points:,} points in {took:.1f}s ({points / took:,.0f} points/s incl. Parquet to S3)"
        )

        ping = timed(
            lambda: urllib.request.urlopen(f"{stack.influxd_url}/ping", timeout=10).read(), 50
        )
        writes = write_phase(influxdb, args.write_rate, args.write_seconds)
        print("\n1. High-frequency writes")
        print(
            f"   {args.write_rate:,} points/s asked for {args.write_seconds:.0f}s: "
            f"{writes['points_per_s']:,.0f} points/s achieved"
        )
        print(
            f"   write p50 {writes['p50'] * 1000:.1f} ms, p95 {writes['p95'] * 1000:.1f} ms "
            f"(target p95 < 100 ms: {'met' if writes['p95'] < 0.1 else 'NOT met'}); "
            f"baseline /ping p95 {p(ping, 0.95) * 1000:.1f} ms, "
            f"ratio {writes['p95'] / p(ping, 0.95):.1f}x"
        )

        span = {
            "start": days[0].isoformat(),
            "stop": (days[-1] + timedelta(days=1)).isoformat(),
        }
        last = days[-1] + timedelta(hours=12)
        hour = {"start": last.isoformat(), "stop": (last + timedelta(hours=1)).isoformat()}
        templates = [
            ("generation_trend", {"window": "1h"}),
            ("generation_trend", {"window": "1d", "region": "SE/CO"}),
            ("consumption_peak", {}),
            ("latest", {"dataset": "consumption", "field": "demand_mw"}),
        ]
        print(f"\n2. {args.days}-day aggregation templates, InfluxDB (p95 of {args.repeat})")
        print("   4. and the S3 fallback over the same data, beside each")
        influx_p95 = {}
        for name, extra in templates:
            long_params = parse_template(name, {**span, **extra})
            short_params = parse_template(name, {**hour, **extra})
            long_runs = timed(lambda lp=long_params: service.influx.answer(lp), args.repeat)
            short_runs = timed(lambda sp=short_params: service.influx.answer(sp), args.repeat)
            lake_runs = timed(
                lambda lp=long_params: service.lake.answer(lp), max(args.repeat // 2, 2)
            )
            label = f"{name} {json.dumps(extra)}"
            influx_p95[label] = p(long_runs, 0.95)
            print(
                f"   {label:<55} InfluxDB p95 {p(long_runs, 0.95):6.3f}s "
                f"(target < 5 s: {'met' if p(long_runs, 0.95) < 5 else 'NOT met'}); "
                f"1-hour baseline p95 {p(short_runs, 0.95):.3f}s, ratio "
                f"{p(long_runs, 0.95) / p(short_runs, 0.95):.1f}x"
            )
            print(
                f"   {'':<55} S3 fallback p95 {p(lake_runs, 0.95):6.3f}s, "
                f"{p(lake_runs, 0.95) / p(long_runs, 0.95):.1f}x InfluxDB's"
            )

        one_hour = [
            parse_template(name, {**hour, **extra, "region": region})
            for name, extra in templates
            for region in REGIONS
        ]
        alone = mixed_phase(service, 1, 0, args.mixed_seconds / 2, one_hour)
        mixed = mixed_phase(service, args.readers, args.writers, args.mixed_seconds, one_hour)
        print(f"\n3. {args.readers} readers + {args.writers} writers for {args.mixed_seconds:.0f}s")
        print(
            f"   {mixed['ops']:,.0f} ops/s ({mixed['reads']:,.0f} one-hour template reads/s, "
            f"{mixed['writes']:,.0f} write requests/s = {mixed['points']:,.0f} points/s, "
            f"{mixed['errors']:,.1f} errors/s) (target > 5,000 ops/s: "
            f"{'met' if mixed['ops'] > 5000 else 'NOT met'}); "
            f"baseline one reader alone {alone['reads']:,.0f} reads/s, ratio "
            f"{mixed['ops'] / max(alone['reads'], 1e-9):.1f}x"
        )

        api = start_api(env, free_port(), Path(tmp) / "api.log")
        try:
            body = json.dumps({"template": "generation_trend", "params": span}).encode()

            def ask() -> None:
                request = urllib.request.Request(
                    f"{api.url}/query", data=body, headers={"Content-Type": "application/json"}
                )
                with urllib.request.urlopen(request, timeout=120) as response:
                    assert json.load(response)["backend"] == "influxdb"

            through_api = timed(ask, args.repeat)
        finally:
            api.stop()
        first = next(iter(influx_p95.values()))
        print(
            f"\nThe {args.days}-day generation_trend through the HTTP API (uvicorn): p95 "
            f"{p(through_api, 0.95):.3f}s, {p(through_api, 0.95) / first:.2f}x the direct read"
        )
        print(f"median /ping {statistics.median(ping) * 1000:.2f} ms")


if __name__ == "__main__":
    main()
