"""The energy rows-accounted-for check fails when a row goes missing between read and write."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import boto3
import pandas as pd
import pytest
from dagster import DagsterInstance, materialize
from moto import mock_aws

from ons_pipeline.energy import assets, loads
from ons_pipeline.energy.partitions import energy_objects_partitions, partition_key_for
from ons_pipeline.local.demo.energy_data import to_parquet
from ons_pipeline.resources import (
    CloudWatchMetricsResource,
    EnergyStorageResource,
    ObjectStoreResource,
    TimestreamResource,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

REGION = "us-east-1"  # in-process moto has Timestream here
BUCKET = "processed"
KEY = "dataset=generation/year=2024/month=01/generation_20240101.parquet"


def generation_file() -> pd.DataFrame:
    """Six rows: four distinct, one exact duplicate, one with a timestamp that cannot parse."""
    times = [f"2024-01-01T00:0{i}:00Z" for i in range(4)]
    return pd.DataFrame(
        {
            "timestamp": [*times, times[0], "yesterday-ish"],
            "region": "SE",
            "energy_source": "hydro",
            "value": [1.0, 2.0, 3.0, 4.0, 1.0, 5.0],
            "unit": "MW",
        }
    )


@pytest.fixture
def aws() -> Iterator[None]:
    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket=BUCKET)
        s3.put_object(Bucket=BUCKET, Key=KEY, Body=to_parquet(generation_file()))
        timestream = boto3.client("timestream-write", region_name=REGION)
        timestream.create_database(DatabaseName="ons_energy")
        timestream.create_table(DatabaseName="ons_energy", TableName="generation")
        yield


def accounting(aws: None) -> tuple[bool, dict[str, Any]]:
    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(energy_objects_partitions.name, [partition_key_for(KEY)])
    result = materialize(
        [assets.timestream_records],
        partition_key=partition_key_for(KEY),
        instance=instance,
        resources={
            "s3": ObjectStoreResource(region_name=REGION),
            "metrics": CloudWatchMetricsResource(region_name=REGION),
            "energy_storage": EnergyStorageResource(processed_bucket=BUCKET),
            "timestream": TimestreamResource(region_name=REGION),
        },
    )
    assert result.success
    (check,) = [
        c for c in result.get_asset_check_evaluations() if c.check_name == "rows_accounted_for"
    ]
    return check.passed, {name: value.value for name, value in check.metadata.items()}


def test_every_row_written_deduplicated_or_rejected_passes(aws: None) -> None:
    passed, counts = accounting(aws)
    assert counts == {"rows": 6, "written": 4, "deduplicated": 1, "rejected": 1}
    assert passed


def test_a_row_lost_before_the_write_fails_the_check(
    aws: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = loads.timestream_calls

    def lose_one_row(*args: Any, **kwargs: Any) -> list[Any]:
        calls = real(*args, **kwargs)
        calls[-1].records = calls[-1].records[:-1]
        calls[-1].positions = calls[-1].positions[:-1]
        return calls

    monkeypatch.setattr(loads, "timestream_calls", lose_one_row)

    passed, counts = accounting(aws)

    assert counts == {"rows": 6, "written": 3, "deduplicated": 1, "rejected": 1}
    assert not passed
