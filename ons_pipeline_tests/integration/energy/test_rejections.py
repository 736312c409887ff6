"""Bad energy input over the wire: rejected whole with a record, never retried; ISO forms load."""

from __future__ import annotations

import io
import uuid
from typing import Any

import boto3
import pandas as pd
import pytest
from dagster import DagsterEventType, DagsterInstance, materialize

from ons_pipeline.energy.assets import influxdb_points, timestream_records
from ons_pipeline.energy.partitions import partition_key_for
from ons_pipeline.local.demo.driver import stack_resources
from ons_pipeline.local.demo.energy_data import to_parquet
from ons_pipeline.resources import EnergyStorageResource, TimestreamResource

pytestmark = pytest.mark.integration

REGION = "eu-west-2"


class Processed:
    """A fresh processed bucket and InfluxDB bucket, and a way to load one object."""

    def __init__(self, stack_env: dict[str, str]) -> None:
        suffix = uuid.uuid4().hex[:10]
        self.bucket = f"processed-{suffix}"
        self.s3 = boto3.client("s3", region_name=REGION)
        self.s3.create_bucket(
            Bucket=self.bucket, CreateBucketConfiguration={"LocationConstraint": REGION}
        )
        self.resources = stack_resources(stack_env)
        self.resources["energy_storage"] = EnergyStorageResource(processed_bucket=self.bucket)
        self.resources["influxdb"] = self.resources["influxdb"].model_copy(
            update={"bucket": f"rejections_{suffix}"}
        )
        self.instance = DagsterInstance.ephemeral()

    def load(self, key: str, body: bytes, assets: list[Any], **resources: Any) -> Any:
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=body)
        self.instance.add_dynamic_partitions("energy_processed_objects", [partition_key_for(key)])
        return materialize(
            assets,
            partition_key=partition_key_for(key),
            resources={**self.resources, **resources},
            instance=self.instance,
            raise_on_error=False,
        )

    def quarantine(self, store: str, key: str) -> pd.DataFrame:
        body = self.s3.get_object(Bucket=self.bucket, Key=f"quarantine/energy/{store}/{key}")
        return pd.read_parquet(io.BytesIO(body["Body"].read()))


def failure(run: Any) -> Any:
    """The one step failure, after checking that nothing was retried."""
    assert not run.success
    types = [event.event_type for event in run.all_events]
    assert DagsterEventType.STEP_UP_FOR_RETRY not in types, "a permanent failure was retried"
    (event,) = [e for e in run.all_events if e.event_type == DagsterEventType.STEP_FAILURE]
    return event.step_failure_data


def frame(timestamps: list[str]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "timestamp": timestamps,
            "region": "SE",
            "energy_source": "wind",
            "value": [float(i) for i in range(len(timestamps))],
            "unit": "MW",
        }
    )


@pytest.mark.parametrize(
    ("key", "body", "reason", "rows"),
    [
        (
            "dataset=generation/year=2026/month=11/not_parquet.parquet",
            b'{"this": "is json"}',
            "unreadable_file",
            None,
        ),
        (
            "dataset=generation/year=2026/month=11/no_value.parquet",
            to_parquet(frame(["2026-11-01T00:00:00Z"] * 3).drop(columns=["value"])),
            "missing_column",
            3,
        ),
        (
            "dataset=generation_backup/year=2026/month=11/g.parquet",
            to_parquet(frame(["2026-11-01T00:00:00Z"] * 2)),
            "unknown_dataset",
            2,
        ),
        (
            "dataset=generation/x/dataset=consumption/g.parquet",
            to_parquet(frame(["2026-11-01T00:00:00Z"])),
            "ambiguous_dataset",
            1,
        ),
    ],
)
def test_a_file_rejected_whole_leaves_a_record_and_is_not_retried(
    stack_env: dict[str, str], key: str, body: bytes, reason: str, rows: int | None
) -> None:
    lake = Processed(stack_env)
    run = lake.load(key, body, [influxdb_points])
    data = failure(run)
    metadata = data.user_failure_data.metadata
    assert metadata["reason"].value == reason
    assert metadata["rejected"].value == (rows if rows is not None else "unreadable")
    assert key in data.user_failure_data.description
    record = lake.quarantine("influxdb", key)
    assert record.to_dict("records") == [
        {
            "_row": -1,
            "reason": reason,
            "detail": record["detail"][0],
            "source_key": key,
            "file_rows": rows,
        }
    ]
    assert record["detail"][0].startswith(reason)


def test_a_permanent_timestream_error_fails_naming_the_file_without_retries(
    stack_env: dict[str, str],
) -> None:
    lake = Processed(stack_env)
    key = "dataset=generation/year=2026/month=11/g.parquet"
    timestream = TimestreamResource(region_name=REGION, database="no_such_database")
    run = lake.load(
        key,
        to_parquet(frame(["2026-11-01T00:00:00Z"])),
        [timestream_records],
        timestream=timestream,
    )
    data = failure(run)
    assert key in data.user_failure_data.description
    assert "ResourceNotFound" in data.user_failure_data.description


def test_iso_8601_forms_load_instead_of_being_quarantined(stack_env: dict[str, str]) -> None:
    lake = Processed(stack_env)
    key = "dataset=generation/year=2026/month=11/iso_forms.parquet"
    forms = ["2026-11-03", "2026-11-02T06:00", "2026-11-02 03:00:00", "2026-11-02T12:30:00+0530"]
    run = lake.load(key, to_parquet(frame(forms)), [influxdb_points, timestream_records])
    assert run.success
    for node in ("energy__influxdb_points", "energy__timestream_records"):
        metadata = run.asset_materializations_for_node(node)[0].metadata
        assert metadata["rejected"].value == 0
        assert metadata["dagster/row_count"].value == 4
    assert all(check.passed for check in run.get_asset_check_evaluations())
