"""Both energy loads through Dagster against the local stack: moto and a real InfluxDB."""

from __future__ import annotations

import io
import struct
import threading
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from dagster import DagsterInstance, Failure, build_asset_context, materialize

from ons_pipeline.energy.assets import influxdb_points, timestream_records
from ons_pipeline.energy.checks import readback_check
from ons_pipeline.energy.line_protocol import LineProtocolBatches
from ons_pipeline.energy.partitions import energy_objects_partitions, partition_key_for
from ons_pipeline.energy.readback import (
    expected_series_counts,
    readback_counts,
    readback_fields,
)
from ons_pipeline.energy.validation import prepare
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
# Recent, so InfluxDB 1.x's seven-year retention keeps the points.
BASE = pd.Timestamp(datetime.now(UTC).replace(minute=0, second=0, microsecond=0)) - timedelta(
    days=2
)
AWKWARD = ["SE/CO", "a b", "x,y", "k=v", 'say "hi"', "São Paulo ☀", "back\\slash", " lead"]


def bits(value: float) -> int:
    return struct.unpack("<q", struct.pack("<d", value))[0]


class RecordingClient:
    """Forwards to the real timestream-write client and records every call."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.calls: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def write_records(self, **kwargs: Any) -> Any:
        with self.lock:
            self.calls.append(kwargs)
        return self.client.write_records(**kwargs)


class Lake:
    """A fresh processed bucket and InfluxDB bucket for one test."""

    def __init__(self, env: dict[str, str]) -> None:
        suffix = uuid.uuid4().hex[:10]
        self.env = env
        self.processed = f"processed-{suffix}"
        self.influx_bucket = f"energy_{suffix}"
        self.s3 = boto3.client("s3", region_name=REGION)
        self.s3.create_bucket(
            Bucket=self.processed, CreateBucketConfiguration={"LocationConstraint": REGION}
        )
        self.recorder = RecordingClient(boto3.client("timestream-write", region_name=REGION))
        recorder = self.recorder

        class RecordingTimestream(TimestreamResource):
            def get_client(self) -> Any:
                return recorder

        self.timestream_class = RecordingTimestream

    def influxdb(self, **overrides: Any) -> InfluxDBResource:
        settings: dict[str, Any] = {
            "region_name": REGION,
            "url": self.env["INFLUXDB_URL"],
            "org": self.env["INFLUXDB_ORG"],
            "token_secret_name": self.env["INFLUXDB_TOKEN_SECRET_NAME"],
            "query_url": self.env["INFLUXDB_QUERY_URL"],
            "query_username": self.env.get("INFLUXDB_QUERY_USERNAME"),
            "query_password": self.env.get("INFLUXDB_QUERY_PASSWORD"),
            "bucket": self.influx_bucket,
            "max_batch_size": 7,
        }
        return InfluxDBResource(**(settings | overrides))

    def resources(self, **influx: Any) -> dict[str, Any]:
        return {
            "s3": ObjectStoreResource(region_name=REGION),
            "metrics": CloudWatchMetricsResource(region_name=REGION),
            "energy_storage": EnergyStorageResource(processed_bucket=self.processed),
            "influxdb": self.influxdb(**influx),
            "timestream": self.timestream_class(region_name=REGION, threads=3),
        }

    def put(self, key: str, frame: pd.DataFrame) -> str:
        self.s3.put_object(Bucket=self.processed, Key=key, Body=to_parquet(frame))
        return key

    def run(self, key: str, partition: str | None = None, **influx: Any) -> Any:
        """Load object `key` under its partition key (or under `partition`)."""
        partition = partition or partition_key_for(key)
        instance = DagsterInstance.ephemeral()
        instance.add_dynamic_partitions(energy_objects_partitions.name, [partition])
        return materialize(
            [influxdb_points, timestream_records],
            partition_key=partition,
            resources=self.resources(**influx),
            instance=instance,
        )

    def points(self, measurement: str) -> list[dict[str, Any]]:
        series = self.influxdb().influxql(
            self.influx_bucket, f'SELECT * FROM "{measurement}" GROUP BY *'
        )
        out = []
        for item in series:
            tags = {k: v for k, v in (item.get("tags") or {}).items() if v}
            for row in item["values"]:
                record = dict(zip(item["columns"], row, strict=True))
                fields = {k: v for k, v in record.items() if k != "time" and v is not None}
                out.append({"tags": tags, "time": record["time"], "fields": fields})
        return sorted(out, key=lambda p: (sorted(p["tags"].items()), p["time"]))

    def quarantine(self, store: str, key: str) -> pd.DataFrame:
        body = self.s3.get_object(Bucket=self.processed, Key=f"quarantine/energy/{store}/{key}")[
            "Body"
        ].read()
        return pq.read_table(io.BytesIO(body)).to_pandas()


@pytest.fixture
def lake(stack_env: dict[str, str]) -> Lake:
    return Lake(stack_env)


def awkward_generation() -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """A long file with every awkward case and the points InfluxDB must hold afterwards."""
    floats = [0.1, 1 / 3, 1e-300, 5e-324, 1.7976931348623157e308, 123456.789, 2.0**53 + 2]
    rows: list[dict[str, Any]] = []
    expected: list[dict[str, Any]] = []
    for i, region in enumerate(AWKWARD):
        t = BASE + pd.Timedelta(nanoseconds=i * 1_000_000_007 + 1)
        value = floats[i % len(floats)]
        unit = ["MW", "MWh", "kV", "weird unit", 'q"uote'][i % 5]
        rows.append(
            {
                "timestamp": t,
                "region": region,
                "energy_source": f"src,{i} =",
                "value": value,
                "unit": unit,
                "measurement_type": "power" if i % 2 else None,
                "quality_flag": "" if i % 3 else "good",
            }
        )
        field = {"MW": "power_mw", "MWh": "energy_mwh", "kV": "voltage_kv"}.get(unit, "value")
        tags = {"region": region, "energy_source": f"src,{i} ="}
        if i % 2:
            tags["measurement_type"] = "power"
        if not i % 3:
            tags["quality_flag"] = "good"
        expected.append({"tags": tags, "time": t.value, "fields": {field: value, "unit": unit}})
    good = rows[0]
    rows += [
        dict(good),  # exact duplicate: folded
        {**good, "timestamp": BASE + pd.Timedelta(hours=1), "value": np.nan},
        {**good, "timestamp": BASE + pd.Timedelta(hours=2), "value": np.inf},
        {**good, "timestamp": BASE + pd.Timedelta(hours=3), "value": -np.inf},
        {**good, "timestamp": pd.NaT},
        {**good, "timestamp": BASE + pd.Timedelta(hours=4), "region": "  "},
        {**good, "timestamp": BASE + pd.Timedelta(hours=5), "region": "bad\ttab"},
        {**good, "timestamp": BASE + pd.Timedelta(hours=6), "region": "trailing\\"},
        {**good, "timestamp": BASE + pd.Timedelta(hours=7), "unit": None},
        {**good, "timestamp": BASE + pd.Timedelta(hours=8), "value": 1.0},
        {**good, "timestamp": BASE + pd.Timedelta(hours=8), "value": 2.0},
    ]
    return pd.DataFrame(rows), expected


def test_awkward_long_file_round_trips_through_influxdb(lake: Lake) -> None:
    frame, expected = awkward_generation()
    key = lake.put("dataset=generation/year=2026/month=11/awkward file+1.parquet", frame)

    result = lake.run(key)

    assert result.success
    points = lake.points("generation_data")
    assert len(points) == len(expected)
    by_identity = {(tuple(sorted(p["tags"].items())), p["time"]): p for p in points}
    for want in expected:
        got = by_identity[(tuple(sorted(want["tags"].items())), want["time"])]
        assert set(got["fields"]) == set(want["fields"])
        for name, value in want["fields"].items():
            if isinstance(value, float):
                assert bits(float(got["fields"][name])) == bits(value), (name, value)
            else:
                assert got["fields"][name] == value
    influx = result.asset_materializations_for_node("energy__influxdb_points")[0].metadata
    assert influx["rows"].value == len(frame)
    assert influx["points_written"].value == len(expected)
    assert influx["deduplicated"].value == 1
    assert influx["rejected_by_reason"].value == {
        "missing_value": 1,
        "non_finite_value": 2,
        "invalid_timestamp": 1,
        "missing_tag": 1,
        "invalid_tag": 2,
        "missing_unit": 1,
        "conflicting_duplicate": 2,
    }
    checks = {
        (c.asset_key.to_user_string(), c.check_name): c.passed
        for c in result.get_asset_check_evaluations()
    }
    assert checks == {
        ("energy/influxdb_points", "rows_accounted_for"): True,
        ("energy/influxdb_points", "readback_matches"): True,
        ("energy/timestream_records", "rows_accounted_for"): True,
    }
    quarantined = lake.quarantine("influxdb", key)
    assert len(quarantined) == 10
    assert set(quarantined["reason"]) == set(influx["rejected_by_reason"].value)
    assert len(lake.quarantine("timestream", key)) == 10

    # Timestream: the real service's rules on every call moto accepted.
    records = 0
    for call in lake.recorder.calls:
        assert 1 <= len(call["Records"]) <= 100
        dims = call["CommonAttributes"]["Dimensions"]
        assert all(0 < len(d["Value"].encode()) <= 2048 for d in dims)
        values = [float(r["MeasureValue"]) for r in call["Records"]]
        assert all(np.isfinite(values))
        times = [r["Time"] for r in call["Records"]]
        assert len(set(times)) == len(times)
        records += len(call["Records"])
    assert records == len(expected)

    # Re-loading the file leaves exactly the same points.
    again = lake.run(key)
    assert again.success
    assert lake.points("generation_data") == points


def test_wide_file_with_server_rejected_lines_is_split_and_reported(lake: Lake) -> None:
    times = pd.date_range(BASE, periods=30, freq="min")
    frame = pd.DataFrame(
        {
            "timestamp": times.strftime("%Y-%m-%dT%H:%M:%S.%f123Z"),
            "region": "NE",
            "line_id": [f"L{i % 3}" for i in range(30)],
            "flow_mw": np.linspace(-100, 100, 30),
            "losses_mwh": [np.nan if i % 4 == 0 else i / 7 for i in range(30)],
            "voltage_kv": 500.0,
        }
    )
    # A string `flow_mw` already in the shard: InfluxDB refuses float values of that field
    # for series L1 only (field types are per shard and measurement in 1.x, per series here
    # by tag since the conflicting point is in the same shard: every line in it is refused).
    lake.influxdb().ensure_bucket(lake.influx_bucket)
    line = f'transmission_data,region=XX,line_id=Z flow_mw="x" {BASE.value}\n'
    lake.influxdb().write_lines(lake.influx_bucket, LineProtocolBatches([pa.array([line])], 1))
    key = lake.put("dataset=transmission/year=2026/month=11/wide.parquet", frame)

    result = lake.run(key, max_batch_size=8)

    assert result.success
    influx = result.asset_materializations_for_node("energy__influxdb_points")[0].metadata
    assert influx["points_written"].value + influx["rejected"].value == 30
    refused = lake.quarantine("influxdb", key)
    assert influx["rejected"].value == len(refused) == 30
    assert set(refused["reason"]) == {"influxdb_rejected"}
    assert refused["detail"].str.contains("field type conflict").all()
    assert influx["failed_batches"].value == 4
    ts = result.asset_materializations_for_node("energy__timestream_records")[0].metadata
    assert ts["records_written"].value == 30
    multi = [c for c in lake.recorder.calls if c["CommonAttributes"]["MeasureValueType"] == "MULTI"]
    assert sum(len(c["Records"]) for c in multi) == 30
    assert all(c["CommonAttributes"]["TimeUnit"] == "NANOSECONDS" for c in multi)


def test_wide_file_round_trips(lake: Lake) -> None:
    times = pd.date_range(BASE, periods=40, freq="15min", unit="us")
    frame = pd.DataFrame(
        {
            "timestamp": times,
            "region": ["N", "NE", "SE/CO", "S"] * 10,
            "consumer_type": "residential",
            "consumption_mwh": np.arange(40) / 3,
            "demand_mw": [np.nan if i % 5 == 0 else i * 1.1 for i in range(40)],
            "load_factor": 0.5,
            "extra_column": "ignored",
        }
    )
    key = lake.put("dataset=consumption/year=2026/month=11/wide.parquet", frame)
    result = lake.run(key)
    assert result.success
    points = lake.points("consumption_data")
    assert len(points) == 40
    for p in points:
        row = frame[(frame["timestamp"].astype("int64") * 1000 == p["time"])].iloc[0]
        assert p["tags"] == {"region": row["region"], "consumer_type": "residential"}
        assert bits(p["fields"]["consumption_mwh"]) == bits(row["consumption_mwh"])
        assert ("demand_mw" in p["fields"]) == (not np.isnan(row["demand_mw"]))


def test_file_failing_validation_writes_nothing(lake: Lake) -> None:
    frame, _ = awkward_generation()
    key = lake.put("dataset=generation/year=2026/month=11/strict.parquet", frame)
    resources = lake.resources(drop_invalid_records=False)
    with (
        build_asset_context(partition_key=partition_key_for(key), resources=resources) as context,
        pytest.raises(Failure, match="DROP_INVALID_RECORDS is false"),
    ):
        list(influxdb_points(context))
    lake.influxdb().ensure_bucket(lake.influx_bucket)
    assert lake.points("generation_data") == []
    assert len(lake.quarantine("influxdb", key)) == 10


def test_unavailable_influxdb_is_a_retryable_failure(lake: Lake) -> None:
    from ons_pipeline.local.stack import free_port

    key = lake.put("dataset=generation/year=2026/month=11/any.parquet", awkward_generation()[0])
    resources = lake.resources(url=f"http://127.0.0.1:{free_port()}")
    with (
        build_asset_context(partition_key=partition_key_for(key), resources=resources) as context,
        pytest.raises(Failure, match="InfluxDB unavailable") as raised,
    ):
        list(influxdb_points(context))
    assert raised.value.allow_retries


def test_rejected_files(lake: Lake) -> None:
    frame = pd.DataFrame({"timestamp": [BASE], "region": ["N"], "value": [1.0], "unit": ["MW"]})
    for key, reason in [
        (lake.put("dataset=generation/year=2026/month=11/nodim.parquet", frame), "missing_column"),
        (lake.put("dataset=generation_backup/x.parquet", frame), "unknown_dataset"),
        (lake.put("dataset=generation/dataset=consumption/x.parquet", frame), "ambiguous_dataset"),
    ]:
        with (
            build_asset_context(
                partition_key=partition_key_for(key), resources=lake.resources()
            ) as context,
            pytest.raises(Failure) as raised,
        ):
            list(influxdb_points(context))
        assert raised.value.metadata["reason"].value == reason
        assert not raised.value.allow_retries


def test_zero_row_file_succeeds_with_zeros(lake: Lake) -> None:
    frame, _ = awkward_generation()
    key = lake.put("dataset=generation/year=2026/month=11/empty.parquet", frame.iloc[0:0])
    result = lake.run(key)
    assert result.success
    for node in ("energy__influxdb_points", "energy__timestream_records"):
        metadata = result.asset_materializations_for_node(node)[0].metadata
        assert (metadata["rows"].value, metadata["rejected"].value) == (0, 0)
        assert metadata["dagster/row_count"].value == 0
    assert all(c.passed for c in result.get_asset_check_evaluations())


def test_a_partition_added_under_the_full_object_key_still_loads(lake: Lake) -> None:
    """Partitions an older release added under object keys load the same object."""
    frame = pd.DataFrame(
        {"timestamp": [BASE], "region": ["N"], "energy_source": ["wind"], "value": [3.0]}
    ).assign(unit="MW")
    key = lake.put("dataset=generation/year=2026/month=11/old_key.parquet", frame)
    assert partition_key_for(key) != key
    result = lake.run(key, partition=key)
    assert result.success
    for node in ("energy__influxdb_points", "energy__timestream_records"):
        assert result.asset_materializations_for_node(node)[0].metadata["rows"].value == 1
    assert [p["fields"]["power_mw"] for p in lake.points("generation_data")] == [3.0]


def test_validation_off_still_refuses_line_protocol_injection(lake: Lake) -> None:
    """ENABLE_VALIDATION=false: a newline in a tag cannot add a point to the bucket."""
    t = BASE + pd.Timedelta(hours=9)
    injected = 'north\nevil_measure,region=x value=666 1\ngeneration_data,region="'
    regions = [injected, "cr\rlf", "ends\\", "a\\,b", "tab\there", "a\\b", "ctrl\x01char"]
    frame = pd.DataFrame(
        {
            "timestamp": [t + pd.Timedelta(seconds=i) for i in range(len(regions))],
            "region": regions,
            "energy_source": ["wind"] * len(regions),
            "value": [float(i) for i in range(len(regions))],
            "unit": ["MW"] * len(regions),
        }
    )
    key = lake.put("dataset=generation/year=2026/month=11/injection.parquet", frame)

    result = lake.run(key, enable_validation=False)

    assert result.success
    meta = result.asset_materializations_for_node("energy__influxdb_points")[0].metadata
    assert meta["rejected_by_reason"].value == {"invalid_tag": 4}
    measurements = lake.influxdb().influxql(lake.influx_bucket, "SHOW MEASUREMENTS")
    assert [row[0] for s in measurements for row in s["values"]] == ["generation_data"]
    # Business rules are off: the tab and control character are written, verbatim.
    got = {p["tags"]["region"]: p["fields"]["power_mw"] for p in lake.points("generation_data")}
    assert got == {"tab\there": 4.0, "a\\b": 5.0, "ctrl\x01char": 6.0}


def test_readback_is_one_grouped_query_naming_each_short_series(lake: Lake) -> None:
    times = pd.date_range(BASE, periods=12, freq="min")
    written = pd.DataFrame(
        {
            "timestamp": times,
            "region": ["N", "x,y", 'say "hi"'] * 4,
            "consumer_type": "residential",
            "consumption_mwh": np.arange(12) / 3,
            "demand_mw": 1.5,
            "load_factor": 0.5,
        }
    )
    key = lake.put("dataset=consumption/year=2026/month=11/readback.parquet", written)
    assert lake.run(key).success
    # The same window as if two more series had been written: those two read back short.
    missing = written.head(3).assign(consumer_type=["industrial", "industrial", "commercial"])
    claimed = prepare(pd.concat([written, missing], ignore_index=True), "consumption")
    influx = lake.influxdb()
    statements: list[tuple[str, Any]] = []
    original = InfluxDBResource.influxql

    def recording(self: InfluxDBResource, database: str, statement: str, params: Any = None) -> Any:
        statements.append((statement, params))
        return original(self, database, statement, params)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(InfluxDBResource, "influxql", recording)
        found = readback_counts(influx, lake.influx_bucket, claimed)
    assert len(statements) == 1
    assert "GROUP BY" in statements[0][0] and statements[0][1]["low"] == BASE.value
    assert len(found) == 3
    # Every row carries all three fields: one counted field proves each point.
    assert readback_fields(claimed) == ["consumption_mwh"]
    assert all(set(counts) == {"consumption_mwh"} for counts in found.values())

    check = readback_check(expected_series_counts(claimed, ["consumption_mwh"]), found)

    assert not check.passed
    short = {
        (item["series"]["region"], item["series"]["consumer_type"], item["field"])
        for item in check.metadata["short"].value
    }
    assert short == {
        (region, kind, "consumption_mwh")
        for region, kind in (("N", "industrial"), ("x,y", "industrial"), ('say "hi"', "commercial"))
    }
    named = check.metadata["short_series"].value
    for region, kind in (("N", "industrial"), ("x,y", "industrial"), ('say "hi"', "commercial")):
        assert f"consumer_type={kind},region={region} " in named
    assert "residential" not in named
    assert check.metadata["series_short"].value == 3
    written_counts = expected_series_counts(prepare(written, "consumption"), ["consumption_mwh"])
    assert readback_check(written_counts, found).passed
