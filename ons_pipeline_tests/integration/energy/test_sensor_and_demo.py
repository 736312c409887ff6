"""From arrival to both stores: the sensor over the wire, the demo, Timestream rejections."""

from __future__ import annotations

import io
import re
import uuid
from typing import Any

import boto3
import numpy as np
import pandas as pd
import pytest
from botocore.exceptions import ClientError
from dagster import DagsterInstance, build_sensor_context, materialize

from ons_pipeline.energy.assets import influxdb_points, timestream_records
from ons_pipeline.energy.partitions import partition_key_for
from ons_pipeline.energy.sensors import energy_object_sensor
from ons_pipeline.local.demo.driver import run_energy_demo, stack_definitions, stack_resources
from ons_pipeline.local.demo.energy_data import BUILDERS, demo_days, object_key, to_parquet
from ons_pipeline.resources import EnergyStorageResource, ObjectStoreResource, TimestreamResource

pytestmark = pytest.mark.integration

REGION = "eu-west-2"


def test_sensor_runs_load_every_new_file_into_both_stores(stack_env: dict[str, str]) -> None:
    bucket = f"processed-{uuid.uuid4().hex[:10]}"
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
    influx_bucket = f"sensor_{uuid.uuid4().hex[:8]}"
    resources = stack_resources(stack_env)
    resources["energy_storage"] = EnergyStorageResource(processed_bucket=bucket)
    resources["influxdb"] = resources["influxdb"].model_copy(update={"bucket": influx_bucket})
    instance = DagsterInstance.ephemeral()
    rng = np.random.default_rng(1)
    day = demo_days(1)[0]
    rows = 0
    for dataset, build in BUILDERS.items():
        frame = build(day, rng)
        rows += len(frame)
        s3.put_object(Bucket=bucket, Key=object_key(dataset, day), Body=to_parquet(frame))

    context = build_sensor_context(
        instance=instance,
        resources={
            "s3": ObjectStoreResource(region_name=REGION),
            "energy_storage": resources["energy_storage"],
        },
    )
    result = energy_object_sensor(context)
    assert len(result.run_requests) == 3
    for request in result.dynamic_partitions_requests:
        instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
    written = 0
    for request in result.run_requests:
        run = materialize(
            [influxdb_points, timestream_records],
            partition_key=request.partition_key,
            resources=resources,
            instance=instance,
            tags=request.tags,
        )
        assert run.success
        assert all(c.passed for c in run.get_asset_check_evaluations())
        written += (
            run.asset_materializations_for_node("energy__influxdb_points")[0]
            .metadata["points_written"]
            .value
        )
    assert written == rows
    assert set(instance.get_dynamic_partitions("energy_processed_objects")) == {
        r.partition_key for r in result.run_requests
    }
    again = energy_object_sensor(
        build_sensor_context(
            cursor=result.cursor,
            instance=instance,
            resources={
                "s3": ObjectStoreResource(region_name=REGION),
                "energy_storage": resources["energy_storage"],
            },
        )
    )
    assert not getattr(again, "run_requests", None)


def test_demo_loads_both_stores(
    stack_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_energy_demo(stack_definitions(stack_env), DagsterInstance.ephemeral(), days=1) == 0
    out = capsys.readouterr().out
    assert "0 files failed" in out
    assert "generation_data" in out
    # Each file is named by the partition key the CLI takes (--partition '<key>').
    printed = re.findall(r"^  (\S+): \d+ InfluxDB points", out, flags=re.MULTILINE)
    day = demo_days(1)[0]
    assert sorted(printed) == sorted(
        partition_key_for(object_key(dataset, day)) for dataset in BUILDERS
    )
    assert all(re.fullmatch(r"[a-z]+/\d{4}-\d{2}/[a-z]+_\d{8}", key) for key in printed)


class RejectingClient:
    """Like Timestream: writes the records it accepts, then names the rejected ones."""

    def __init__(self, client: Any, bad_values: set[str]) -> None:
        self.client = client
        self.bad_values = bad_values

    def write_records(self, **kwargs: Any) -> Any:
        records = kwargs["Records"]
        bad = [i for i, r in enumerate(records) if r.get("MeasureValue") in self.bad_values]
        good = [r for i, r in enumerate(records) if i not in bad]
        if good:
            self.client.write_records(**(kwargs | {"Records": good}))
        if bad:
            raise ClientError(
                {
                    "Error": {"Code": "RejectedRecordsException", "Message": "rejected"},
                    "RejectedRecords": [
                        {
                            "RecordIndex": i,
                            "Reason": "The record timestamp is outside the time range",
                        }
                        for i in bad
                    ],
                },
                "WriteRecords",
            )
        return {}


def test_timestream_rejections_map_back_to_rows_and_quarantine(
    stack_env: dict[str, str],
) -> None:
    bucket = f"processed-{uuid.uuid4().hex[:10]}"
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
    frame = pd.DataFrame(
        {
            "timestamp": pd.date_range("2026-01-01", periods=250, freq="min", tz="UTC"),
            "region": "S",
            "energy_source": "wind",
            "value": [float(i) for i in range(250)],
            "unit": "MW",
        }
    )
    key = "dataset=generation/year=2026/month=01/reject.parquet"
    s3.put_object(Bucket=bucket, Key=key, Body=to_parquet(frame))
    rejecting = RejectingClient(boto3.client("timestream-write", region_name=REGION), {"7", "150"})

    class Rejecting(TimestreamResource):
        def get_client(self) -> Any:
            return rejecting

    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("energy_processed_objects", [partition_key_for(key)])
    run = materialize(
        [timestream_records],
        partition_key=partition_key_for(key),
        instance=instance,
        resources={
            "s3": ObjectStoreResource(region_name=REGION),
            "metrics": stack_resources(stack_env)["metrics"],
            "energy_storage": EnergyStorageResource(processed_bucket=bucket),
            "timestream": Rejecting(region_name=REGION),
        },
    )
    assert run.success
    metadata = run.asset_materializations_for_node("energy__timestream_records")[0].metadata
    assert metadata["records_written"].value == 248
    assert metadata["rejected_by_reason"].value == {"timestream_rejected": 2}
    body = s3.get_object(Bucket=bucket, Key=f"quarantine/energy/timestream/{key}")["Body"].read()
    quarantined = pd.read_parquet(io.BytesIO(body))
    assert sorted(quarantined["_row"]) == [7, 150]
    assert set(quarantined["detail"]) == {"The record timestamp is outside the time range"}
    assert all(c.passed for c in run.get_asset_check_evaluations())
