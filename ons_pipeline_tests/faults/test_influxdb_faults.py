"""InfluxDB dropping connections and the worker killed mid-load: after a re-run every point
is present exactly once (counted with InfluxQL)."""

from __future__ import annotations

import multiprocessing
import os
import signal
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import numpy as np
import pandas as pd
import pytest
from dagster import DagsterInstance, materialize

from ons_pipeline.energy.assets import influxdb_points
from ons_pipeline.energy.partitions import energy_objects_partitions, partition_key_for
from ons_pipeline.local.demo.energy_data import to_parquet
from ons_pipeline.resources import (
    CloudWatchMetricsResource,
    EnergyStorageResource,
    InfluxDBResource,
    ObjectStoreResource,
)
from ons_pipeline_tests.faults.harness import REGION, failure_messages, without_retries
from ons_pipeline_tests.faults.proxy import DroppingTcpProxy

pytestmark = pytest.mark.integration

POINTS = 400
KEY = "dataset=generation/year=2026/month=11/faults.parquet"
INFLUX_ASSETS = [without_retries(influxdb_points)]


class EnergyState:
    """A processed bucket holding one file of POINTS distinct points, and an InfluxDB bucket."""

    def __init__(self, env: dict[str, str]) -> None:
        suffix = uuid.uuid4().hex[:10]
        self.env, self.processed, self.influx_bucket = env, f"processed-{suffix}", f"e_{suffix}"
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(
            Bucket=self.processed, CreateBucketConfiguration={"LocationConstraint": REGION}
        )
        start = pd.Timestamp(datetime.now(UTC).replace(microsecond=0)) - timedelta(days=1)
        frame = pd.DataFrame(
            {
                "timestamp": pd.date_range(start, periods=POINTS, freq="1min", unit="us"),
                "region": [f"R{i % 4}" for i in range(POINTS)],
                "energy_source": "wind",
                "value": np.arange(POINTS, dtype=float),
                "unit": "MW",
            }
        )
        s3.put_object(Bucket=self.processed, Key=KEY, Body=to_parquet(frame))

    def influxdb(self, url: str | None = None, writers: int = 4) -> InfluxDBResource:
        return InfluxDBResource(
            region_name=REGION,
            url=url or self.env["INFLUXDB_URL"],
            org=self.env["INFLUXDB_ORG"],
            token_secret_name=self.env["INFLUXDB_TOKEN_SECRET_NAME"],
            query_url=self.env["INFLUXDB_QUERY_URL"],
            query_username=self.env.get("INFLUXDB_QUERY_USERNAME"),
            query_password=self.env.get("INFLUXDB_QUERY_PASSWORD"),
            bucket=self.influx_bucket,
            max_batch_size=50,
            max_retries=2,
            backoff_seconds=0.05,
            write_concurrency=writers,
        )

    def run(self, url: str | None = None, writers: int = 4) -> Any:
        instance = DagsterInstance.ephemeral()
        instance.add_dynamic_partitions(energy_objects_partitions.name, [partition_key_for(KEY)])
        return materialize(
            INFLUX_ASSETS,
            partition_key=partition_key_for(KEY),
            resources={
                "s3": ObjectStoreResource(region_name=REGION),
                "metrics": CloudWatchMetricsResource(region_name=REGION, enabled=False),
                "energy_storage": EnergyStorageResource(processed_bucket=self.processed),
                "influxdb": self.influxdb(url, writers),
            },
            instance=instance,
            raise_on_error=False,
        )

    def count(self) -> tuple[int, int]:
        """(points stored, distinct timestamps among them)."""
        series = self.influxdb().influxql(
            self.influx_bucket, 'SELECT "power_mw" FROM "generation_data"'
        )
        times = [row[0] for item in series for row in item["values"]]
        return len(times), len(set(times))


@pytest.fixture
def energy(stack_env: dict[str, str]) -> EnergyState:
    return EnergyState(stack_env)


def test_dropped_connections_are_retried_or_fail_and_a_rerun_is_exact(
    energy: EnergyState,
) -> None:
    # The health check passes; then writes lose their connections mid-request: the first
    # two runs' worth beyond the client's retries (max_retries=2) fail, later ones heal.
    proxy = DroppingTcpProxy(energy.env["INFLUXDB_URL"], drops=4, after_bytes=300, skip=1)
    try:
        first = energy.run(proxy.url)
        assert proxy.dropped >= 3  # cut mid-request, retried
        if not first.success:  # out of retries: a clear, retryable failure
            assert any("InfluxDB" in message for message in failure_messages(first))
        again = energy.run(proxy.url)  # no more drops
    finally:
        proxy.close()
    assert again.success, failure_messages(again)
    assert energy.count() == (POINTS, POINTS)


def _load_and_die(energy: EnergyState, url: str) -> None:
    energy.run(url, writers=1)  # batches in order, so "part-way" below is a byte count


def test_worker_killed_mid_load_then_rerun_is_exact(energy: EnergyState) -> None:
    child: list[multiprocessing.process.BaseProcess] = []

    def kill_mid_load(sent: int) -> None:
        # Plain (loopback) batches of 50 lines are ~5 kB and the file ~36 kB: past 15 kB at
        # least two batches are complete and several are not yet sent.
        if sent > 15_000 and child and child[0].pid and child[0].exitcode is None:
            os.kill(child[0].pid, signal.SIGKILL)

    proxy = DroppingTcpProxy(energy.env["INFLUXDB_URL"], on_bytes=kill_mid_load)
    try:
        worker = multiprocessing.get_context("fork").Process(
            target=_load_and_die, args=(energy, proxy.url), daemon=True
        )
        child.append(worker)
        worker.start()
        worker.join(240)
    finally:
        proxy.close()
    assert worker.exitcode == -signal.SIGKILL
    stored, _ = energy.count()
    assert 0 < stored < POINTS  # it died part-way through the load

    rerun = energy.run()

    assert rerun.success, failure_messages(rerun)
    assert energy.count() == (POINTS, POINTS)
