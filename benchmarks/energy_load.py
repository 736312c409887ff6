"""Energy load benchmark (issue 3, Performance): a 1,000,000-row long file and a wide one.

Prints side by side, per file: (a) the seeds' approach (iterrows building
`influxdb_client.Point` objects and serialising them) on a slice, as the baseline; (b) our
validation + line-protocol conversion; (c) our Timestream record building; (d) end to end
from the local S3 into the local InfluxDB through the Dagster asset (read + convert + write
+ InfluxQL verify), with the peak RSS of that process.

    .venv/bin/python benchmarks/energy_load.py [--rows 1000000] [--baseline-rows 20000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from ons_pipeline.energy.demo_data import to_parquet
from ons_pipeline.energy.schema import DIMENSION, MEASUREMENT
from ons_pipeline.energy.transform import line_chunks, prepare, read_parquet, timestream_calls

ROW_GROUP = 131_072


def make_frame(dataset: str, rows: int, wide: bool) -> pd.DataFrame:
    """Hourly-looking series for four regions, recent so InfluxDB 1.x keeps them."""
    dim = DIMENSION[dataset]
    members = [f"{dim}_{i}" for i in range(5)]
    series = 4 * len(members)
    steps = -(-rows // series)
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=steps + 60)
    times = pd.date_range(start, periods=steps, freq="min", tz="UTC")
    rng = np.random.default_rng(1)
    frame = pd.DataFrame(
        {
            "timestamp": times.repeat(series)[:rows],
            "region": np.tile(np.repeat(["N", "NE", "SE/CO", "S"], len(members)), steps)[:rows],
            dim: np.tile(members, 4 * steps)[:rows],
            "measurement_type": "power",
            "quality_flag": "good",
        }
    )
    if wide:
        for name in ("consumption_mwh", "demand_mw", "load_factor"):
            frame[name] = rng.random(rows) * 1000
    else:
        frame["value"] = rng.random(rows) * 1000
        frame["unit"] = "MW"
    return frame


def baseline(frame: pd.DataFrame, dataset: str) -> float:
    """The seeds' loop: one Point per row via iterrows, serialised; returns rows/s."""
    from influxdb_client import Point

    dim = DIMENSION[dataset]
    started = time.perf_counter()
    lines = []
    for _, row in frame.iterrows():
        point = (
            Point(MEASUREMENT[dataset])
            .tag("region", row["region"])
            .tag(dim, row[dim])
            .tag("measurement_type", row["measurement_type"])
            .tag("quality_flag", row["quality_flag"])
            .time(row["timestamp"])
        )
        if "value" in frame.columns:
            point = point.field("value", float(row["value"])).field("unit", row["unit"])
        else:
            for name in ("consumption_mwh", "demand_mw", "load_factor"):
                point = point.field(name, float(row[name]))
        lines.append(point.to_line_protocol())
    return len(frame) / (time.perf_counter() - started)


def e2e_child(key: str, env_json: str) -> None:
    """Run in a fresh process: the InfluxDB asset for one partition; prints JSON."""
    import os

    from dagster import DagsterInstance, materialize

    from ons_pipeline.energy.assets import influxdb_points
    from ons_pipeline.energy.demo import demo_resources
    from ons_pipeline.energy.partitions import energy_objects_partitions

    env = json.loads(env_json)
    os.environ.update(env)
    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(energy_objects_partitions.name, [key])
    resources = demo_resources(env)
    resources.pop("timestream")
    started = time.perf_counter()
    result = materialize(
        [influxdb_points], partition_key=key, resources=resources, instance=instance
    )
    elapsed = time.perf_counter() - started
    metadata = result.asset_materializations_for_node("energy__influxdb_points")[0].metadata
    checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
    # VmHWM belongs to this process image (ru_maxrss would carry the parent's over exec).
    status = Path("/proc/self/status").read_text()
    peak_mb = int(next(v for v in status.splitlines() if v.startswith("VmHWM")).split()[1]) / 1024
    print(
        json.dumps(
            {
                "seconds": elapsed,
                "points": metadata["points_written"].value,
                "checks": checks,
                "peak_rss_mb": peak_mb,
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--baseline-rows", type=int, default=20_000)
    parser.add_argument("--skip-e2e", action="store_true")
    args = parser.parse_args()

    files = {
        "long": ("generation", make_frame("generation", args.rows, wide=False)),
        "wide": ("consumption", make_frame("consumption", args.rows, wide=True)),
    }
    results: dict[str, dict[str, float | str]] = {}
    parquet: dict[str, bytes] = {}
    for name, (dataset, frame) in files.items():
        parquet[name] = to_parquet(frame, row_group_size=ROW_GROUP)
        base = baseline(frame.head(args.baseline_rows), dataset)
        started = time.perf_counter()
        table = read_parquet(parquet[name], dataset)
        read_s = time.perf_counter() - started
        started = time.perf_counter()
        prepared = prepare(table, dataset)
        produced = sum(len(lines) for _, lines in line_chunks(prepared))
        convert_s = time.perf_counter() - started
        assert produced == args.rows
        started = time.perf_counter()
        calls = timestream_calls(prepared, version=1)
        ts_s = time.perf_counter() - started
        assert sum(len(c.records) for c in calls) == args.rows
        results[name] = {
            "file MB": len(parquet[name]) / 1e6,
            "parquet read rows/s": args.rows / read_s,
            "(a) baseline rows/s": base,
            "(b) validate+line protocol rows/s": args.rows / convert_s,
            "(b)/(a) speed-up": (args.rows / convert_s) / base,
            "(c) timestream rows/s": args.rows / ts_s,
            "timestream calls": len(calls),
        }
        del table, prepared, calls

    if not args.skip_e2e:
        import boto3

        from ons_pipeline.local.stack import LocalStack

        with LocalStack(Path(tempfile.mkdtemp(prefix="energy-bench-"))) as stack:
            env = stack.env
            s3 = boto3.client(
                "s3",
                endpoint_url=env["AWS_ENDPOINT_URL"],
                region_name=env["AWS_REGION"],
                aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
            )
            for name, (dataset, _) in files.items():
                key = f"dataset={dataset}/year=2026/month=01/bench_{name}.parquet"
                s3.put_object(Bucket=env["ONS_PROCESSED_BUCKET"], Key=key, Body=parquet[name])
                child = subprocess.run(
                    [sys.executable, __file__, "--e2e-child", key, json.dumps(env)],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                outcome = json.loads(child.stdout.strip().splitlines()[-1])
                results[name] |= {
                    "(d) end-to-end points/s": outcome["points"] / outcome["seconds"],
                    "(d) seconds": outcome["seconds"],
                    "(d) checks passed": str(all(outcome["checks"].values())),
                    "(d) peak RSS MB": outcome["peak_rss_mb"],
                }

    names = list(results)
    metrics = list(dict.fromkeys(m for r in results.values() for m in r))
    print(f"rows per file: {args.rows:,}; baseline on the first {args.baseline_rows:,} rows")
    print(f"{'':34}" + "".join(f"{n:>18}" for n in names))
    for metric in metrics:
        cells = []
        for name in names:
            value = results[name].get(metric, "")
            cells.append(f"{value:>18,.1f}" if isinstance(value, float) else f"{value!s:>18}")
        print(f"{metric:34}" + "".join(cells))


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--e2e-child":
        e2e_child(sys.argv[2], sys.argv[3])
    else:
        main()
