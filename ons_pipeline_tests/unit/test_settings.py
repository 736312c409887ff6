"""Settings the seeds name, spelled as the seeds spell them, and what they change."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pytest
from dagster import EnvVar
from pydantic import ValidationError

from ons_pipeline.energy.timestream_records import timestream_calls
from ons_pipeline.energy.validation import prepare
from ons_pipeline.platform.metadata import column_schema, readable_type
from ons_pipeline.resources import Metric, TimestreamResource, default_resources
from ons_pipeline.resources.aws import with_totals
from ons_pipeline.sales.schema import COLUMN_DESCRIPTIONS, STAR_SCHEMAS

SETTINGS = (
    "TIMESTREAM_DATABASE",
    "TIMESTREAM_DATABASE_NAME",
    "TIMESTREAM_MAX_BATCH_SIZE",
    "ENABLE_VALIDATION",
)


@pytest.fixture(autouse=True)
def _clean_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in SETTINGS:
        monkeypatch.delenv(name, raising=False)


def test_timestream_database_name_is_an_accepted_alias(monkeypatch: pytest.MonkeyPatch) -> None:
    assert default_resources()["timestream"].database == "ons_energy"
    monkeypatch.setenv("TIMESTREAM_DATABASE_NAME", "seed_db")
    assert default_resources()["timestream"].database == EnvVar("TIMESTREAM_DATABASE_NAME")
    monkeypatch.setenv("TIMESTREAM_DATABASE", "project_db")  # the project's name wins
    assert default_resources()["timestream"].database == EnvVar("TIMESTREAM_DATABASE")


def test_timestream_batch_size_is_settable_up_to_the_api_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert default_resources()["timestream"].max_batch_size == 100
    monkeypatch.setenv("TIMESTREAM_MAX_BATCH_SIZE", "25")
    assert default_resources()["timestream"].max_batch_size == 25
    monkeypatch.setenv("TIMESTREAM_MAX_BATCH_SIZE", "101")
    with pytest.raises(ValidationError, match="less than or equal to 100"):
        default_resources()
    with pytest.raises(ValidationError):
        TimestreamResource(max_batch_size=0)


def test_timestream_calls_honour_the_batch_size() -> None:
    frame = pd.DataFrame(
        {
            "timestamp": pd.date_range("2024-01-01", periods=250, freq="min", tz="UTC"),
            "region": "SE",
            "energy_source": "hydro",
            "value": 1.0,
            "unit": "MW",
        }
    )
    prepared = prepare(frame, "generation")
    assert [len(c.records) for c in timestream_calls(prepared, 1)] == [100, 100, 50]
    assert [len(c.records) for c in timestream_calls(prepared, 1, batch_size=40)] == [40] * 6 + [10]
    with pytest.raises(ValueError, match=r"1\.\.100"):
        timestream_calls(prepared, 1, batch_size=101)


def test_enable_validation_false_writes_rows_the_tag_rules_would_reject(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert default_resources()["influxdb"].enable_validation is True
    monkeypatch.setenv("ENABLE_VALIDATION", "false")
    influxdb = default_resources()["influxdb"]
    assert influxdb.enable_validation is False
    frame = pd.DataFrame(
        {
            "timestamp": ["2024-01-01T00:00:00Z", "2024-01-01T01:00:00Z"],
            "region": ["SE", "x" * 3000],  # over the 2,048-byte tag limit
            "energy_source": ["hydro", "hydro"],
            "value": [1.0, 2.0],
            "unit": ["MW", "MW"],
        }
    )
    assert prepare(frame, "generation").rejected["reason"].tolist() == ["invalid_tag"]
    unchecked = prepare(frame, "generation", check_tags=influxdb.enable_validation)
    assert unchecked.rejected.empty
    assert len(unchecked.accepted) == 2


def test_alarmed_metrics_also_publish_an_undimensioned_total() -> None:
    sent = with_totals(
        [
            Metric("ProcessingErrors", 2, dimensions={"ErrorType": "invalid_tag"}, total=True),
            Metric("ProcessingErrors", 3, dimensions={"ErrorType": "missing_unit"}, total=True),
            Metric("PointsWritten", 7),
        ]
    )
    assert [(m.name, m.value, m.dimensions) for m in sent[2:]] == [
        ("PointsWritten", 7, {}),
        ("ProcessingErrors", 5.0, {}),
    ]


def test_column_types_read_as_a_reader_knows_them() -> None:
    assert readable_type(pa.decimal128(10, 2)) == "decimal(10,2)"
    assert readable_type(pa.date32()) == "date"
    assert readable_type(pa.time64("us")) == "time"
    assert readable_type(pa.timestamp("ns", tz="UTC")) == "timestamp[ns, UTC]"
    assert readable_type(pa.int64()) == "int64"
    assert readable_type(pa.string()) == "string"
    schema = column_schema(STAR_SCHEMAS["fact_sales_order"], COLUMN_DESCRIPTIONS)
    types = {column.name: column.type for column in schema.columns}
    assert types["unit_price"] == "decimal(10,2)"
    assert all(column.description for column in schema.columns)
    with pytest.raises(KeyError):
        column_schema(pa.schema([pa.field("undocumented", pa.int64())]), {})
