"""Timestream history into InfluxDB over the wire: point for point, faults, cutover, CLI."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pandas as pd
import pytest
from dagster import DagsterInstance, DagsterRunStatus, RunsFilter, materialize

from ons_pipeline.energy.assets import influxdb_points, timestream_records
from ons_pipeline.energy.migration.assets import migration_assets
from ons_pipeline.energy.migration.export import Window
from ons_pipeline.energy.migration.steps import compare_window
from ons_pipeline.energy.migration.validate import influxdb_stats
from ons_pipeline.energy.partitions import energy_objects_partitions
from ons_pipeline.local.demo.energy_data import to_parquet
from ons_pipeline.resources import (
    CloudWatchMetricsResource,
    EnergyStorageResource,
    InfluxDBResource,
    ObjectStoreResource,
    TimestreamResource,
)

pytestmark = pytest.mark.integration

REGION = "eu-west-2"
DAY = "2024-01-01"
REPO_ROOT = Path(__file__).resolve().parents[3]
GENERATION = migration_assets[0]


def bits(value: float) -> int:
    return struct.unpack("<q", struct.pack("<d", value))[0]


def long_file(day: str, hours: int = 24) -> pd.DataFrame:
    """Awkward tags, units and floats, nanosecond times, both optional tags."""
    base = pd.Timestamp(day, tz="UTC")
    floats = [0.1, 1 / 3, 5e-324, 1.7976931348623157e308, 2.0**53 + 2, -0.0, 123456.789]
    rows = [
        {
            "timestamp": base + pd.Timedelta(minutes=20 * i, nanoseconds=i % 7),
            "region": ["N", "SE/CO", "a b,c=d", "São Paulo ☀"][i % 4],
            "energy_source": ["wind", 'say "hi"', "solar"][i % 3],
            "value": floats[i % len(floats)],
            "unit": ["MW", "MWh", "kV", "weird unit", "%"][i % 5],
            "measurement_type": "power" if i % 2 else None,
            "quality_flag": "good" if i % 3 == 0 else "",
        }
        for i in range(hours * 3)
    ]
    return pd.DataFrame(rows)


def wide_file(day: str) -> pd.DataFrame:
    base = pd.Timestamp(day, tz="UTC")
    times = pd.date_range(base, periods=30, freq="47min")
    rng = np.random.default_rng(3)
    frame = pd.DataFrame(
        {
            "timestamp": times,
            "region": "N",
            "energy_source": ["wind", "solar"] * 15,
            "power_mw": rng.random(30) * 1000,
            "capacity_factor": rng.random(30),
            "efficiency": rng.random(30),
        }
    )
    frame.loc[3, "capacity_factor"] = np.nan  # a field absent from one point
    return frame


class Stores:
    """A fresh Timestream database, processed bucket and InfluxDB buckets for one test."""

    def __init__(self, env: dict[str, str]) -> None:
        suffix = uuid.uuid4().hex[:10]
        self.env = env
        self.database = f"energy_{suffix}"
        self.processed = f"processed-{suffix}"
        self.direct = f"direct_{suffix}"
        self.migrated = f"migrated_{suffix}"
        self.s3 = boto3.client("s3", region_name=REGION)
        self.s3.create_bucket(
            Bucket=self.processed, CreateBucketConfiguration={"LocationConstraint": REGION}
        )
        write = boto3.client("timestream-write", region_name=REGION)
        write.create_database(DatabaseName=self.database)
        for table in ("generation", "consumption", "transmission"):
            write.create_table(DatabaseName=self.database, TableName=table)

    def influxdb(self, bucket: str, **overrides: Any) -> InfluxDBResource:
        settings: dict[str, Any] = {
            "region_name": REGION,
            "url": self.env["INFLUXDB_URL"],
            "org": self.env["INFLUXDB_ORG"],
            "token_secret_name": self.env["INFLUXDB_TOKEN_SECRET_NAME"],
            "query_url": self.env["INFLUXDB_QUERY_URL"],
            "query_username": self.env.get("INFLUXDB_QUERY_USERNAME"),
            "query_password": self.env.get("INFLUXDB_QUERY_PASSWORD"),
            "bucket": bucket,
            "max_batch_size": 50,
            "max_retries": 1,
            "backoff_seconds": 0.05,
        }
        return InfluxDBResource(**(settings | overrides))

    def resources(
        self, bucket: str, sinks: str = "timestream,influxdb", export: str = "unload", **influx: Any
    ) -> Any:
        return {
            "s3": ObjectStoreResource(region_name=REGION),
            "metrics": CloudWatchMetricsResource(region_name=REGION),
            "energy_storage": EnergyStorageResource(
                processed_bucket=self.processed, sinks=sinks, migration_export=export
            ),
            "influxdb": self.influxdb(bucket, **influx),
            "timestream": TimestreamResource(region_name=REGION, database=self.database),
        }

    def load(
        self, key: str, frame: pd.DataFrame, bucket: str, sinks: str = "timestream,influxdb"
    ) -> Any:
        self.s3.put_object(Bucket=self.processed, Key=key, Body=to_parquet(frame))
        instance = DagsterInstance.ephemeral()
        instance.add_dynamic_partitions(energy_objects_partitions.name, [key])
        result = materialize(
            [influxdb_points, timestream_records],
            partition_key=key,
            resources=self.resources(bucket, sinks),
            instance=instance,
        )
        assert result.success
        return result

    def migrate(
        self,
        day: str,
        bucket: str,
        instance: DagsterInstance | None = None,
        export: str = "unload",
        **influx: Any,
    ) -> Any:
        return materialize(
            [GENERATION],
            partition_key=day,
            resources=self.resources(bucket, export=export, **influx),
            instance=instance or DagsterInstance.ephemeral(),
            raise_on_error=False,
        )

    def points(self, bucket: str, measurement: str = "generation_data") -> list[Any]:
        series = self.influxdb(bucket).influxql(bucket, f'SELECT * FROM "{measurement}" GROUP BY *')
        out = []
        for item in series:
            tags = tuple(sorted((k, v) for k, v in (item.get("tags") or {}).items() if v))
            for row in item["values"]:
                record = dict(zip(item["columns"], row, strict=True))
                fields = tuple(
                    sorted(
                        (k, bits(v) if isinstance(v, float) else v)
                        for k, v in record.items()
                        if k != "time" and v is not None
                    )
                )
                out.append((tags, record["time"], fields))
        return sorted(out)

    def exports(self) -> list[str]:
        listed = self.s3.list_objects_v2(Bucket=self.processed, Prefix="exports/")
        return [item["Key"] for item in listed.get("Contents", [])]


@pytest.fixture
def stores(stack_env: dict[str, str]) -> Stores:
    return Stores(stack_env)


def check_of(result: Any) -> list[Any]:
    return [e for e in result.get_asset_check_evaluations() if e.check_name == "window_matches"]


@pytest.mark.parametrize("export", ["unload", "query"])
def test_migrated_window_equals_a_direct_load_point_for_point(stores: Stores, export: str) -> None:
    stores.load(
        f"dataset=generation/year=2024/month=01/long_{DAY}.parquet", long_file(DAY), stores.direct
    )
    stores.load(
        f"dataset=generation/year=2024/month=01/wide_{DAY}.parquet", wide_file(DAY), stores.direct
    )

    result = stores.migrate(DAY, stores.migrated, export=export)

    assert result.success
    direct = stores.points(stores.direct)
    assert len(direct) == 24 * 3 + 30
    assert stores.points(stores.migrated) == direct
    (check,) = check_of(result)
    assert check.passed and check.partition == DAY
    assert check.metadata["differing_series"].value == 0
    (materialization,) = result.asset_materializations_for_node("energy_migration_generation")
    assert materialization.partition == DAY
    assert materialization.metadata["records_exported"].value == 24 * 3 + 30
    assert materialization.metadata["points_written"].value == 24 * 3 + 30
    assert materialization.metadata["quarantined"].value == 0
    assert materialization.metadata["export_mode"].value == export
    # A validated window leaves no export objects behind.
    assert stores.exports() == []
    if export == "unload":
        assert materialization.metadata["export"].value.startswith("deleted (")

    # A re-run (say after a crash) converges: the same points, no duplicates.
    again = stores.migrate(DAY, stores.migrated, export=export)
    assert again.success
    assert stores.points(stores.migrated) == direct


def test_empty_window_succeeds_with_zeros(stores: Stores) -> None:
    result = stores.migrate("2024-01-05", stores.migrated)

    assert result.success
    (materialization,) = result.asset_materializations_for_node("energy_migration_generation")
    assert materialization.metadata["records_exported"].value == 0
    assert materialization.metadata["points_written"].value == 0
    assert check_of(result)[0].passed


def test_half_open_windows_share_no_boundary_record(stores: Stores) -> None:
    frame = pd.DataFrame(
        {
            "timestamp": pd.to_datetime(
                ["2024-01-01T23:59:59.999999999Z", "2024-01-02T00:00:00.000000000Z"],
                utc=True,
                format="ISO8601",
            ),
            "region": "N",
            "energy_source": "wind",
            "value": [1.0, 2.0],
            "unit": "MW",
        }
    )
    stores.load("dataset=generation/year=2024/month=01/edge.parquet", frame, stores.direct)
    first = stores.migrate("2024-01-01", stores.migrated)
    second = stores.migrate("2024-01-02", stores.migrated)
    exported = [
        r.asset_materializations_for_node("energy_migration_generation")[0]
        .metadata["records_exported"]
        .value
        for r in (first, second)
    ]
    assert exported == [1, 1]
    assert stores.points(stores.migrated) == stores.points(stores.direct)


def test_influxdb_down_fails_the_window_and_leaves_it_unmigrated(stores: Stores) -> None:
    stores.load(
        f"dataset=generation/year=2024/month=01/long_{DAY}.parquet",
        long_file(DAY, 2),
        stores.direct,
    )
    instance = DagsterInstance.ephemeral()

    result = stores.migrate(DAY, stores.migrated, instance=instance, url="http://127.0.0.1:9")

    assert not result.success
    assert result.asset_materializations_for_node("energy_migration_generation") == []
    assert not any(e.passed for e in check_of(result))
    failure = result.get_step_failure_events()[0].event_specific_data.error.to_string()
    assert "not migrated" in failure
    status = instance.get_materialized_partitions(GENERATION.key)
    assert status == set()


def test_a_window_that_differs_is_not_reported_migrated(stores: Stores) -> None:
    stores.load(
        f"dataset=generation/year=2024/month=01/long_{DAY}.parquet",
        long_file(DAY, 2),
        stores.direct,
    )
    # InfluxDB already holds a point Timestream never had in this window.
    stores.influxdb(stores.migrated).ensure_bucket(stores.migrated)
    stray = pd.DataFrame(
        {
            "timestamp": [pd.Timestamp("2024-01-01T12:00:00Z")],
            "region": "ghost",
            "energy_source": "wind",
            "value": [1.0],
            "unit": "MW",
        }
    )
    stores.load(
        "dataset=generation/year=2024/month=01/stray.parquet",
        stray,
        stores.migrated,
        sinks="influxdb",
    )

    result = stores.migrate(DAY, stores.migrated)

    assert not result.success
    (check,) = check_of(result)
    assert not check.passed
    differing = check.metadata["differences"].value
    assert [d["series"]["region"] for d in differing] == ["ghost"]
    assert differing[0]["timestream"] is None
    assert result.asset_materializations_for_node("energy_migration_generation") == []
    # The export of a window that failed its check is kept for inspection (and expires).
    folder = check.metadata["export"].value.removeprefix(f"s3://{stores.processed}/")
    assert folder.startswith("exports/timestream/generation/2024-01-01/")
    kept = stores.exports()
    assert kept and all(key.startswith(folder) for key in kept)
    assert any(key.endswith("_manifest.json") for key in kept)


def test_cutover_and_rollback_walk_ends_with_both_stores_equal(stores: Stores) -> None:
    # 1. Both stores written; backfill and validate the history.
    bucket = stores.migrated  # production: the loads and the migration share the buckets
    stores.load("dataset=generation/year=2024/month=01/day1.parquet", long_file(DAY, 4), bucket)
    assert stores.migrate(DAY, bucket).success
    # 2. Switch: loads write InfluxDB only; a new file lands in the same window.
    new_key = "dataset=generation/year=2024/month=01/day1_late.parquet"
    late = long_file(DAY, 2).assign(region="late")
    result = stores.load(new_key, late, bucket, sinks="influxdb")
    skipped = result.asset_materializations_for_node("energy__timestream_records")[0].metadata
    assert skipped["written"].value is False
    assert skipped["energy_sinks"].value == "influxdb"
    written = result.asset_materializations_for_node("energy__influxdb_points")[0].metadata
    assert written["energy_sinks"].value == "influxdb"
    # 3. Roll back: the stores now differ in that window, and the check says where.
    diffs, _ = compare_window(
        TimestreamResource(region_name=REGION, database=stores.database),
        stores.influxdb(bucket),
        "generation",
        Window.day(DAY),
    )
    assert {d["series"]["region"] for d in diffs} == {"late"}
    # 4. Re-run the affected load into Timestream (sinks=timestream) and the window.
    stores.load(new_key, late, bucket, sinks="timestream")
    rerun = stores.migrate(DAY, bucket)
    assert rerun.success
    assert check_of(rerun)[0].passed
    diffs, _ = compare_window(
        TimestreamResource(region_name=REGION, database=stores.database),
        stores.influxdb(bucket),
        "generation",
        Window.day(DAY),
    )
    assert diffs == []


def _cli_env(stores: Stores, home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ONS_", "DAGSTER_"))}
    env.update(stores.env)
    env.update(
        {
            "DAGSTER_HOME": str(home),
            "TIMESTREAM_DATABASE": stores.database,
            "INFLUXDB_BUCKET": stores.migrated,
            "ONS_PROCESSED_BUCKET": stores.processed,
        }
    )
    return env


def test_cli_partition_range_and_job_backfill(stores: Stores, tmp_path: Path) -> None:
    for day in ("2024-01-01", "2024-01-02", "2024-01-03"):
        stores.load(
            f"dataset=generation/year=2024/month=01/{day}.parquet", long_file(day, 2), stores.direct
        )
    dagster = str(Path(sys.executable).with_name("dagster"))
    env = _cli_env(stores, tmp_path)
    materialize_cmd = [
        dagster,
        "asset",
        "materialize",
        "-m",
        "ons_pipeline.definitions",
        "--select",
        "energy/migration/generation",
        "--partition-range",
        "2024-01-01...2024-01-02",
    ]
    done = subprocess.run(
        materialize_cmd,
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    instance = DagsterInstance.from_config(str(tmp_path))
    assert instance.get_materialized_partitions(GENERATION.key) == {"2024-01-01", "2024-01-02"}

    # Launch the backfill's runs at once (a deployment's daemon dequeues them instead).
    (tmp_path / "dagster.yaml").write_text(
        "run_coordinator:\n  module: dagster._core.run_coordinator\n"
        "  class: DefaultRunCoordinator\n"
    )
    instance = DagsterInstance.from_config(str(tmp_path))
    backfill_cmd = [
        dagster,
        "job",
        "backfill",
        "-m",
        "ons_pipeline.definitions",
        "-j",
        "energy_migration_job",
        "--partitions",
        "2024-01-03",
        "--noprompt",
    ]
    done = subprocess.run(
        backfill_cmd,
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    deadline = time.monotonic() + 240
    runs = []
    while time.monotonic() < deadline:
        runs = instance.get_runs(filters=RunsFilter(job_name="energy_migration_job"))
        if runs and all(run.is_finished for run in runs):
            break
        time.sleep(2)
    assert [run.status for run in runs] == [DagsterRunStatus.SUCCESS], (
        [run.status for run in runs],
        [
            e.dagster_event.step_failure_data.error.to_string()
            for run in runs
            for e in instance.all_logs(run.run_id)
            if e.dagster_event and e.dagster_event.is_step_failure
        ],
        done.stdout[-2000:],
    )
    assert instance.get_materialized_partitions(GENERATION.key) == {
        "2024-01-01",
        "2024-01-02",
        "2024-01-03",
    }
    assert stores.points(stores.migrated) == stores.points(stores.direct)


def test_blue_green_check_fails_the_run_when_the_stores_diverge(stores: Stores) -> None:
    from datetime import UTC, datetime, timedelta

    from dagster import AssetSelection, Definitions, define_asset_job

    from ons_pipeline.energy.migration.assets import blue_green_checks

    yesterday = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%dT12:00:00Z")
    job = define_asset_job("blue_green", selection=AssetSelection.checks(blue_green_checks[0]))

    def run() -> Any:
        defs = Definitions(
            assets=[GENERATION],
            asset_checks=[blue_green_checks[0]],
            jobs=[job],
            resources=stores.resources(stores.migrated),
        )
        return defs.resolve_job_def("blue_green").execute_in_process(raise_on_error=False)

    assert run().success  # both stores empty for yesterday: equal
    stray = pd.DataFrame(
        {
            "timestamp": [pd.Timestamp(yesterday)],
            "region": "only-influx",
            "energy_source": "wind",
            "value": [1.0],
            "unit": "MW",
        }
    )
    stores.load(
        "dataset=generation/year=2026/month=11/stray.parquet", stray, stores.migrated, "influxdb"
    )
    result = run()
    assert not result.success
    error = result.get_step_failure_events()[0].event_specific_data.error.to_string()
    assert "only-influx" in error


def test_influxdb_side_gives_each_series_its_own_count_and_first_and_last_time(
    stores: Stores,
) -> None:
    """Count, first and last time per series must match the points InfluxDB holds."""
    stores.load(
        f"dataset=generation/year=2024/month=01/long_{DAY}.parquet", long_file(DAY), stores.direct
    )
    found = influxdb_stats(
        stores.influxdb(stores.direct), stores.direct, "generation", Window.day(DAY)
    )
    times: dict[tuple[Any, str], list[int]] = {}
    for tags, when, fields in stores.points(stores.direct):
        for name, _ in fields:
            if name != "unit":
                times.setdefault((tags, name), []).append(when)
    assert len(times) > 10
    assert {key: (s.count, s.first, s.last) for key, s in found.items()} == {
        key: (len(values), min(values), max(values)) for key, values in times.items()
    }
