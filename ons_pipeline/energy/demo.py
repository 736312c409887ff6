"""The energy part of the quickstart: demo Parquet into both stores through Dagster."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from typing import Any

from dagster import DagsterInstance, materialize
from dagster._core.errors import DagsterHomeNotSetError

from ons_pipeline.energy.assets import (
    INFLUXDB_KEY,
    TIMESTREAM_KEY,
    influxdb_points,
    timestream_records,
)
from ons_pipeline.energy.demo_data import demo_days, generate_demo_files
from ons_pipeline.energy.partitions import energy_objects_partitions, partition_key_for
from ons_pipeline.energy.schema import MEASUREMENT, detect_dataset
from ons_pipeline.resources import (
    CloudWatchMetricsResource,
    EnergyStorageResource,
    InfluxDBResource,
    ObjectStoreResource,
    TimestreamResource,
    defaults,
)
from ons_pipeline.resources.influxql import quote_identifier


def demo_resources(stack_env: dict[str, str]) -> dict[str, Any]:
    """Resources pointed at the stack described by `stack_env` (explicit, not ambient)."""
    aws = {
        "region_name": stack_env.get("AWS_REGION", defaults.AWS_REGION),
        "endpoint_url": stack_env.get("AWS_ENDPOINT_URL"),
        "aws_access_key_id": stack_env.get("AWS_ACCESS_KEY_ID"),
        "aws_secret_access_key": stack_env.get("AWS_SECRET_ACCESS_KEY"),
    }
    return {
        "s3": ObjectStoreResource(**aws),
        "metrics": CloudWatchMetricsResource(**aws),
        "energy_storage": EnergyStorageResource(
            processed_bucket=stack_env.get("ONS_PROCESSED_BUCKET", defaults.PROCESSED_BUCKET)
        ),
        "timestream": TimestreamResource(
            **aws, database=stack_env.get("TIMESTREAM_DATABASE", defaults.TIMESTREAM_DATABASE)
        ),
        "influxdb": InfluxDBResource(
            **aws,
            url=stack_env["INFLUXDB_URL"],
            org=stack_env.get("INFLUXDB_ORG", defaults.INFLUXDB_ORG),
            token=stack_env.get("INFLUXDB_TOKEN"),
            token_secret_name=stack_env.get("INFLUXDB_TOKEN_SECRET_NAME"),
            query_url=stack_env.get("INFLUXDB_QUERY_URL"),
            query_username=stack_env.get("INFLUXDB_QUERY_USERNAME"),
            query_password=stack_env.get("INFLUXDB_QUERY_PASSWORD"),
        ),
    }


# The quickstart's fixed dates, so the partition keys README's CLI
# commands name exist after every `ons-stack demo`. Seven-year bucket retention keeps them.
DEMO_LAST_DAY = datetime(2026, 11, 21, tzinfo=UTC)


def run_energy_demo(
    stack_env: dict[str, str], days: int = 3, last_day: datetime | None = None
) -> int:
    """Generate the demo files, load each into Timestream and InfluxDB, print what landed.

    The files cover the `days` days up to `last_day` (default: up to yesterday).

    Returns:
        0 when every load succeeded, else 1.
    """
    resources = demo_resources(stack_env)
    s3: ObjectStoreResource = resources["s3"]
    bucket = resources["energy_storage"].processed_bucket
    files = generate_demo_files(days, last_day=last_day)
    for key, body in files.items():
        s3.put_bytes(bucket, key, body, "application/vnd.apache.parquet")
    _say(
        f"Energy demo: wrote {len(files)} Parquet files to s3://{bucket}/dataset=*/; each "
        "file below is named by its energy partition key (dagster ... --partition '<key>')"
    )
    try:  # the quickstart's instance (DAGSTER_HOME), so the runs show in the UI
        instance = DagsterInstance.get()
    except DagsterHomeNotSetError:
        instance = DagsterInstance.ephemeral()
    partition_keys = [partition_key_for(key) for key in files]
    instance.add_dynamic_partitions(energy_objects_partitions.name, partition_keys)
    totals = {"points": 0, "records": 0, "rejected": 0}
    failed = 0
    for key in partition_keys:
        result = materialize(
            [influxdb_points, timestream_records],
            partition_key=key,
            resources=resources,
            instance=instance,
            raise_on_error=False,
            run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
        )
        if not result.success:
            failed += 1
            _say(f"  FAILED {key} (run {result.run_id})")
            continue
        by_key = {
            event.asset_key: event.step_materialization_data.materialization.metadata
            for event in result.get_asset_materialization_events()
        }
        points = by_key[INFLUXDB_KEY]["points_written"].value
        records = by_key[TIMESTREAM_KEY]["records_written"].value
        rejected = by_key[INFLUXDB_KEY]["rejected"].value
        totals["points"] += points
        totals["records"] += records
        totals["rejected"] += rejected
        _say(f"  {key}: {points} InfluxDB points, {records} Timestream records")
    influxdb: InfluxDBResource = resources["influxdb"]
    first_day = min(demo_days(days, None if last_day is None else last_day + timedelta(days=1)))
    window_start = int(first_day.timestamp()) * 1_000_000_000
    window_stop = window_start + days * 86_400 * 1_000_000_000
    _say("InfluxDB now holds (InfluxQL COUNT over the demo window):")
    for dataset in sorted({detect_dataset(key) for key in files}):
        measurement = MEASUREMENT[dataset]
        series = influxdb.influxql(
            influxdb.bucket_for(measurement),
            f"SELECT COUNT(*) FROM {quote_identifier(measurement)} "  # nosec B608  # quoted name; values bound
            "WHERE time >= $start AND time < $stop GROUP BY region",
            params={"start": window_start, "stop": window_stop},
        )
        counts = {
            s["tags"]["region"]: max(v for v in s["values"][0][1:] if v is not None) for s in series
        }
        _say(f"  bucket {influxdb.bucket_for(measurement)}: {counts} points by region")
    _say(
        f"Energy demo: {totals['points']} points, {totals['records']} records, "
        f"{totals['rejected']} rows rejected, {failed} files failed"
    )
    return 1 if failed else 0


def _say(text: str) -> None:
    """The quickstart's console output."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()
