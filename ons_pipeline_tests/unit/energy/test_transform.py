from __future__ import annotations

import calendar
import struct
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ons_pipeline.energy.line_protocol import batch_bodies, line_protocol
from ons_pipeline.energy.readback import expected_series_counts
from ons_pipeline.energy.schema import FileRejectedError
from ons_pipeline.energy.timestream_records import MAX_RECORDS_PER_CALL, timestream_calls
from ons_pipeline.energy.validation import parse_timestamps, prepare, read_parquet
from ons_pipeline.local.demo.energy_data import to_parquet

T0 = "2024-01-01T00:00:00Z"


def long_frame(**columns: list) -> pd.DataFrame:
    n = max(len(v) for v in columns.values()) if columns else 1
    base = {
        "timestamp": [T0] * n,
        "region": ["SE"] * n,
        "energy_source": ["hydro"] * n,
        "value": [1.0] * n,
        "unit": ["MW"] * n,
    }
    return pd.DataFrame(base | columns)


def reasons(frame: pd.DataFrame, dataset: str = "generation") -> list[str]:
    prepared = prepare(frame, dataset)
    out = [""] * prepared.rows
    for row, reason in zip(prepared.rejected["_row"], prepared.rejected["reason"], strict=True):
        out[row] = reason
    return out


def test_timestamps_any_unit_zone_or_strict_iso_keep_nanoseconds() -> None:
    expected = 1704067200123456789
    assert parse_timestamps(pd.Series(pd.to_datetime([expected]))).tolist() == [expected]
    ms = pd.Series(pd.DatetimeIndex(["2024-01-01T00:00:00.123"]).as_unit("ms"))
    assert parse_timestamps(ms).tolist() == [1704067200123000000]
    tz = pd.Series(pd.DatetimeIndex(["2024-01-01T01:00:00"]).tz_localize("Europe/Paris"))
    assert parse_timestamps(tz).tolist() == [1704067200000000000]
    text = pd.Series(
        [
            "2024-01-01T00:00:00.123456789Z",
            "2024-01-01T02:00:00.123456789+02:00",
            "2024-01-01T00:00:00.123456789",
            "2024-01-01T05:30:00.123456789+0530",
            "2024-01-01 00:00:00.123456789",
            "2024-02-30T00:00:00Z",
            "2024-01-01T00:00:00.1234567891Z",
            None,
            5,
        ],
        dtype=object,
    )
    nat = np.iinfo(np.int64).min
    assert parse_timestamps(text).tolist() == [expected] * 5 + [nat] * 4


ISO_FORMS = [
    "2021-04-03",
    "2021-04-02T06:00",
    "2021-04-02 03:00:00",
    "2021-04-02T12:30:00+0530",
    "2021-04-02T12:30:00+05:30",
    "2021-04-02T12:30:00-08",
    "2021-04-02T06Z",
    "2021-04-02T06:07Z",
    "2021-04-02T06:07:08.5",
    "2021-04-02T06:07:08,25+01:00",
    "2021-04-02T06:07:08.123456",
    "1970-01-01T00:00:00Z",
]
NOT_ISO = [
    "04/02/2021",
    "1617321600",
    "2021-04-02T06:07:08.1234567891",
    "2021-02-30",
    "2021-04-02T24:00:00",
    "2021-04-02T06:07:08+24:00",
    "2021-04-02T06:00:00\u0663",  # an Arabic-Indic digit
    "\u0662021-04-02",
    "2021-04-02T",
    " 2021-04-02",
    "3000-01-01",
    "",
]


@pytest.mark.parametrize("text", ISO_FORMS)
def test_iso_forms_read_as_fromisoformat_reads_them(text: str) -> None:
    value = datetime.fromisoformat(text)
    value = value if value.tzinfo else value.replace(tzinfo=UTC)
    seconds = calendar.timegm(value.utctimetuple())
    expected = seconds * 10**9 + value.microsecond * 1000
    assert parse_timestamps(pd.Series([text], dtype=object)).tolist() == [expected]


@pytest.mark.parametrize("text", NOT_ISO)
def test_everything_else_is_an_invalid_timestamp(text: str) -> None:
    assert parse_timestamps(pd.Series([text], dtype=object)).tolist() == [np.iinfo(np.int64).min]


def test_a_date_alone_is_midnight_and_rows_load_instead_of_quarantine() -> None:
    frame = long_frame(
        timestamp=[
            "2021-04-03",
            "2021-04-02T06:00",
            "2021-04-02 03:00:00",
            "2021-04-02T12:30:00+0530",
        ],
        region=["A", "B", "C", "D"],
        value=[1.0, 2.0, 3.0, 4.0],
        unit=["MW"] * 4,
    )
    assert reasons(frame) == ["", "", "", ""]


def test_each_row_rule_gives_its_reason_first_failing_wins() -> None:
    frame = long_frame(
        timestamp=[T0, None, "not a time", T0, T0, T0, T0, T0, T0, T0, T0, T0, T0, T0],
        region=["A", "B", "C", " ", None, "a\x01", "x\\", "y" * 2049, "D", "E", "F", "G", "H", "I"],
        value=[1.0, 1, 1, 1, 1, 1, 1, 1, 1, np.nan, "abc", np.inf, -np.inf, "2.5"],
        unit=["MW", "MW", "MW", "MW", "MW", "MW", "MW", "MW", " ", "MW", "MW", "MW", "MW", "MW"],
    )
    assert reasons(frame) == [
        "",
        "invalid_timestamp",
        "invalid_timestamp",
        "missing_tag",
        "missing_tag",
        "invalid_tag",
        "invalid_tag",
        "invalid_tag",
        "missing_unit",
        "missing_value",
        "non_numeric_value",
        "non_finite_value",
        "non_finite_value",
        "",
    ]


def test_invalid_optional_tag_and_unit_reject_the_row() -> None:
    frame = long_frame(
        region=["A", "B", "C"], measurement_type=["ok", "bad\n", None], unit=["MW", "MW", "M\x7f"]
    )
    assert reasons(frame) == ["", "invalid_tag", "invalid_tag"]


def test_duplicates_fold_or_conflict() -> None:
    frame = long_frame(
        region=["A", "A", "B", "B", "B", "C", "C"],
        value=[1.0, 1.0, 1.0, 2.0, 1.0, 1.0, 1.0],
        unit=["MW", "MW", "MW", "MW", "MW", "MW", "MWh"],
        quality_flag=[None, "", None, None, None, None, None],
    )
    prepared = prepare(frame, "generation")
    assert reasons(frame) == ["", "", *["conflicting_duplicate"] * 5]
    assert prepared.deduplicated == 1
    assert len(prepared.accepted) == 1
    assert prepared.rows == len(prepared.accepted) + prepared.deduplicated + len(prepared.rejected)


def test_wide_rules() -> None:
    frame = pd.DataFrame(
        {
            "timestamp": [T0] * 4,
            "region": ["A", "B", "C", "D"],
            "line_id": [7, 8, 9, 10],
            "flow_mw": [1.0, np.nan, np.nan, 1.0],
            "losses_mwh": [np.nan, np.nan, 2.0, np.inf],
            "voltage_kv": [np.nan, np.nan, np.nan, 1.0],
        }
    )
    assert reasons(frame, "transmission") == ["", "missing_value", "", "non_finite_value"]
    lines = line_protocol(prepare(frame, "transmission")).to_pylist()
    assert lines == [
        "transmission_data,line_id=7,region=A flow_mw=1 1704067200000000000\n",
        "transmission_data,line_id=9,region=C losses_mwh=2 1704067200000000000\n",
    ]


def test_missing_required_column_rejects_the_file() -> None:
    with pytest.raises(FileRejectedError, match="missing_column"):
        prepare(long_frame().drop(columns=["unit"]), "generation")
    with pytest.raises(FileRejectedError, match="missing_column"):
        prepare(long_frame().drop(columns=["value", "unit"]), "generation")


def test_zero_row_file_succeeds_with_zeros() -> None:
    prepared = prepare(long_frame().iloc[0:0], "generation")
    assert (prepared.rows, len(prepared.accepted), len(prepared.rejected)) == (0, 0, 0)
    assert len(line_protocol(prepared)) == 0
    assert timestream_calls(prepared, 1) == []


def test_line_protocol_escaping_and_unit_fields() -> None:
    frame = long_frame(
        region=["a b,c=d", 'q"é'],
        energy_source=["x\\y", "s"],
        unit=["kV", 'we"ird\\'.rstrip("\\") + "x"],
        quality_flag=["good", ""],
        measurement_type=[None, "power"],
    )
    lines = line_protocol(prepare(frame, "generation")).to_pylist()
    assert lines == [
        "generation_data,energy_source=x\\y,quality_flag=good,region=a\\ b\\,c\\=d "
        'voltage_kv=1,unit="kV" 1704067200000000000\n',
        'generation_data,energy_source=s,measurement_type=power,region=q"é '
        'value=1,unit="we\\"irdx" 1704067200000000000\n',
    ]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=1, max_size=30))
def test_floats_are_bit_exact_in_line_protocol(values: list[float]) -> None:
    frame = long_frame(
        timestamp=[f"2024-01-01T00:00:{i:02d}Z" for i in range(len(values))], value=values
    )
    lines = line_protocol(prepare(frame, "generation")).to_pylist()
    for line, value in zip(lines, values, strict=True):
        text = line.split(" ")[1].split(",")[0].split("=")[1]
        assert struct.pack("<d", float(text)) == struct.pack("<d", value)


@settings(max_examples=50, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["A", "B", " ", None, "x\\"]),
            st.integers(0, 3),
            st.sampled_from([1.0, 2.0, np.nan, np.inf, "z"]),
        ),
        max_size=40,
    )
)
def test_every_row_is_written_deduplicated_or_rejected(rows: list[tuple]) -> None:
    frame = long_frame(
        region=[r[0] for r in rows] or ["A"],
        timestamp=[f"2024-01-01T00:00:0{r[1]}Z" for r in rows] or [T0],
        value=[r[2] for r in rows] or [1.0],
    )
    prepared = prepare(frame, "generation")
    assert prepared.rows == len(prepared.accepted) + prepared.deduplicated + len(prepared.rejected)
    assert not set(prepared.accepted["_row"]) & set(prepared.rejected["_row"])


def test_batches_are_zero_copy_slices_of_whole_lines() -> None:
    lines = pa.array([f"m f={i} {i}\n" for i in range(12)])
    bodies = list(batch_bodies(lines.slice(1, 10), 4))
    assert [(a, b) for a, b, _ in bodies] == [(0, 4), (4, 8), (8, 10)]
    assert (
        b"".join(body for _, _, body in bodies)
        == "".join(f"m f={i} {i}\n" for i in range(1, 11)).encode()
    )


def test_timestream_calls_keep_the_service_rules() -> None:
    n = 1050
    times = pd.date_range("2024-01-01", periods=n, freq="s").as_unit("ns")
    frame = pd.DataFrame(
        {
            "timestamp": times + pd.to_timedelta(np.arange(n) % 2, unit="ns"),
            "region": np.array(["N", "NE", "SE/CO", "S"])[np.arange(n) % 4],
            "energy_source": "hydro",
            "value": np.arange(n) / 3,
            "unit": np.array(["MW", "odd"])[np.arange(n) % 3 % 2],
            "quality_flag": np.array(["good", ""])[np.arange(n) % 5 % 2],
        }
    )
    prepared = prepare(frame, "generation")
    calls = timestream_calls(prepared, version=7)
    seen = 0
    for call in calls:
        assert 1 <= len(call.records) <= MAX_RECORDS_PER_CALL
        dims = call.common["Dimensions"]
        assert all(0 < len(d["Value"].encode()) <= 2048 for d in dims)
        assert {d["Name"] for d in dims} >= {"region", "dataset_type", "energy_source", "unit"}
        keys = [r["Time"] for r in call.records]
        assert len(set(keys)) == len(keys)
        assert all(np.isfinite(float(r["MeasureValue"])) for r in call.records)
        scale = 1 if call.common["TimeUnit"] == "NANOSECONDS" else 1_000_000
        for record, position in zip(call.records, call.positions, strict=True):
            row = prepared.accepted.iloc[position]
            assert int(record["Time"]) * scale == row["time_ns"]
            assert float(record["MeasureValue"]) == row["value"]
        seen += len(call.records)
    assert seen == n


def test_expected_counts_per_series_and_field() -> None:
    frame = long_frame(region=["A", "A", "B"], timestamp=[T0, "2024-01-02T00:00:00Z", T0])
    counts = expected_series_counts(prepare(frame, "generation"))
    assert counts == {
        (("energy_source", "hydro"), ("region", "A")): {"power_mw": 2, "unit": 2},
        (("energy_source", "hydro"), ("region", "B")): {"power_mw": 1, "unit": 1},
    }


def test_read_parquet_reads_row_groups_and_ignores_other_columns() -> None:
    frame = long_frame(region=[f"R{i % 3}" for i in range(100)]).assign(other=1)
    data = to_parquet(frame, row_group_size=10)
    read = read_parquet(data, "generation")
    assert "other" not in read.columns
    assert len(read) == 100
    assert isinstance(read["region"].dtype, pd.CategoricalDtype)
