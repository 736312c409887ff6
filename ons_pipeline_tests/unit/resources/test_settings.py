"""Settings the seeds name, spelled as the seeds spell them, and what they change."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
from dagster import EnvVar
from pydantic import ValidationError

from ons_pipeline.energy.timestream_records import timestream_calls
from ons_pipeline.energy.validation import prepare
from ons_pipeline.platform.metadata import column_schema, readable_type
from ons_pipeline.resources import (
    EnergyStorageResource,
    InfluxDBResource,
    Metric,
    SalesStorageResource,
    SettingError,
    TimestreamResource,
    default_resources,
    settings,
)
from ons_pipeline.resources.aws import with_totals
from ons_pipeline.sales.schema import COLUMN_DESCRIPTIONS, STAR_SCHEMAS

_spec = importlib.util.spec_from_file_location(
    "settings_table", Path(__file__).resolve().parents[3] / "scripts" / "settings_table.py"
)
assert _spec is not None
assert _spec.loader is not None
settings_table = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(settings_table)

SETTINGS = (
    "TIMESTREAM_DATABASE",
    "TIMESTREAM_DATABASE_NAME",
    "TIMESTREAM_MAX_BATCH_SIZE",
    "ENABLE_VALIDATION",
    "DROP_INVALID_RECORDS",
    "MAX_RETRIES",
    "INFLUXDB_WRITE_CONCURRENCY",
    "ONS_RETRY_BACKOFF_SECONDS",
    "INFLUXDB_TOKEN",
    "INFLUXDB_QUERY_PASSWORD",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
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


README = Path(__file__).resolve().parents[3] / "README.md"


def _rows(table: str) -> dict[str, str]:
    """Variable -> default cell of a Configuration table (aliases map to the same cell)."""
    rows: dict[str, str] = {}
    for line in table.splitlines()[2:]:
        names, shown, _ = (cell.strip() for cell in line.strip("|").split("|", 2))
        for name in re.findall(r"`([A-Z_*]+)`", names):
            rows[name] = shown
    return rows


def test_readme_configuration_table_is_the_settings_table() -> None:
    text = README.read_text()
    start, end = settings_table.table_span(text)
    in_readme = _rows(text[start:end])
    in_code = _rows(settings.markdown_table())
    assert set(in_readme) == set(in_code), "run python scripts/settings_table.py"
    assert in_readme == in_code, "run python scripts/settings_table.py"
    assert text[start:end] == settings.markdown_table(), "run python scripts/settings_table.py"


def test_every_variable_default_resources_reads_is_in_the_table(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    read: list[str] = []
    original = settings.BY_NAME.__class__.__getitem__

    class Recording(dict):  # type: ignore[type-arg]
        def __getitem__(self, name: str) -> settings.Setting:
            read.append(name)
            return original(self, name)

    monkeypatch.setattr(settings, "BY_NAME", Recording(settings.BY_NAME))
    default_resources()
    assert {"AWS_REGION", "MAX_RETRIES", "INFLUXDB_TOKEN", "ONS_EVENTS_QUEUE_URL"} <= set(read)
    assert set(read) <= {name for s in settings.SETTINGS for name in s.names}


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("MAX_RETRIES", "three"),
        ("TIMESTREAM_MAX_BATCH_SIZE", "1e2"),
        ("INFLUXDB_WRITE_CONCURRENCY", "4.5"),
        ("ENABLE_VALIDATION", "flase"),
        ("DROP_INVALID_RECORDS", "no thanks"),
        ("ONS_RETRY_BACKOFF_SECONDS", "soon"),
    ],
)
def test_a_malformed_number_or_boolean_fails_at_load_naming_its_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingError, match=rf"\b{variable}='{re.escape(value)}'"):
        default_resources()


def test_booleans_read_the_usual_spellings(monkeypatch: pytest.MonkeyPatch) -> None:
    for text, expected in [("False", False), ("0", False), ("no", False), ("TRUE", True)]:
        monkeypatch.setenv("DROP_INVALID_RECORDS", text)
        assert default_resources()["influxdb"].drop_invalid_records is expected
    monkeypatch.setenv("DROP_INVALID_RECORDS", "")  # empty is unset: the default
    assert default_resources()["influxdb"].drop_invalid_records is True


def test_secrets_reach_config_only_as_env_vars(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFLUXDB_TOKEN", "t0k3n")
    monkeypatch.setenv("INFLUXDB_QUERY_PASSWORD", "pa55")
    influxdb = default_resources()["influxdb"]
    assert influxdb.token == EnvVar("INFLUXDB_TOKEN")
    assert influxdb.query_password == EnvVar("INFLUXDB_QUERY_PASSWORD")
    for setting in settings.SETTINGS:
        if setting.secret:
            assert setting.default is None, setting.env
            if "*" not in setting.env:
                monkeypatch.setenv(setting.env, "x")
                assert settings.config(setting.env) == EnvVar(setting.env)


def test_resource_field_defaults_are_the_settings_defaults() -> None:
    timestream = TimestreamResource()
    influxdb = InfluxDBResource(url="http://127.0.0.1:1")
    energy = EnergyStorageResource(processed_bucket="b")
    assert timestream.database == settings.default("TIMESTREAM_DATABASE")
    assert timestream.max_batch_size == settings.default("TIMESTREAM_MAX_BATCH_SIZE")
    assert timestream.max_retries == influxdb.max_retries == settings.default("MAX_RETRIES")
    assert influxdb.max_batch_size == settings.default("MAX_BATCH_SIZE")
    assert influxdb.org == settings.default("INFLUXDB_ORG")
    assert energy.sinks == settings.default("ONS_ENERGY_SINKS")
    assert SalesStorageResource(ingestion_bucket="i", processed_bucket="p").ssm_prefix == (
        settings.default("ONS_SSM_PREFIX")
    )


def test_unset_settings_give_the_local_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for setting in settings.SETTINGS:
        for name in setting.names:
            monkeypatch.delenv(name, raising=False)
    resources = default_resources()
    assert resources["s3"].region_name == "eu-west-2"
    assert resources["sales_storage"].ingestion_bucket == "ons-ingestion"
    assert resources["visits_storage"].prefix == "logs/"
    assert resources["visits_storage"].notification_queue_url is None
    assert resources["influxdb"].token is None
    assert resources["influxdb"].token_secret_name == "ons/influxdb/token"
    assert resources["alerts"].topic_arn == settings.default("ONS_ALERT_TOPIC_ARN")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")  # the alert topic follows the region
    assert default_resources()["alerts"].topic_arn.startswith("arn:aws:sns:us-east-1:")
