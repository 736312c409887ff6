"""The InfluxDB readback check flags every series or field holding fewer values than written."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ons_pipeline.energy.readback import (
    compare_counts,
    expected_series_counts,
    readback_fields,
    readback_statement,
)
from ons_pipeline.energy.validation import PreparedFile, prepare

SE = (("energy_source", "hydro"), ("region", "SE"))
N = (("energy_source", "hydro"), ("region", "N"))


def test_one_value_short_is_reported() -> None:
    short = compare_counts({SE: {"power_mw": 3}}, {SE: {"power_mw": 2}})
    assert short == [{"series": dict(SE), "field": "power_mw", "written": 3, "read": 2}]


def test_a_missing_series_or_field_reads_as_zero() -> None:
    expected = {SE: {"power_mw": 1, "unit": 1}, N: {"power_mw": 2}}
    short = compare_counts(expected, {SE: {"power_mw": 1}})
    assert [(s["series"]["region"], s["field"], s["read"]) for s in short] == [
        ("SE", "unit", 0),
        ("N", "power_mw", 0),
    ]


def test_as_many_or_more_values_pass() -> None:
    """Other files may add values to the same series and window."""
    assert compare_counts({SE: {"power_mw": 2}}, {SE: {"power_mw": 2}, N: {"x": 1}}) == []
    assert compare_counts({SE: {"power_mw": 2}}, {SE: {"power_mw": 5}}) == []


def long_file(units: list[str]) -> PreparedFile:
    times = pd.date_range("2024-01-01", periods=len(units), freq="min", tz="UTC")
    frame = pd.DataFrame(
        {
            "timestamp": times,
            "region": "SE",
            "energy_source": "hydro",
            "value": np.arange(len(units), dtype=float),
            "unit": units,
        }
    )
    return prepare(frame, "generation")


def wide_file(**fields: list[float]) -> PreparedFile:
    n = len(next(iter(fields.values())))
    times = pd.date_range("2024-01-01", periods=n, freq="min", tz="UTC")
    columns = {"consumption_mwh": [np.nan] * n, "demand_mw": [np.nan] * n}
    columns |= {"load_factor": [np.nan] * n} | fields
    frame = pd.DataFrame({"timestamp": times, "region": "N", "consumer_type": "retail"} | columns)
    return prepare(frame, "consumption")


def test_long_rows_are_proved_by_their_float_fields_not_the_unit_string() -> None:
    prepared = long_file(["MW", "MWh", "MW", "parsecs"])
    assert readback_fields(prepared) == ["energy_mwh", "power_mw", "value"]
    counts = expected_series_counts(prepared, readback_fields(prepared))
    assert counts == {SE: {"power_mw": 2, "energy_mwh": 1, "value": 1}}
    assert expected_series_counts(prepared)[SE]["unit"] == 4


def test_wide_fields_are_chosen_until_every_row_carries_one() -> None:
    nan = np.nan
    everywhere = wide_file(consumption_mwh=[1.0, 2.0], demand_mw=[3.0, 4.0], load_factor=[5, 6])
    assert readback_fields(everywhere) == ["consumption_mwh"]
    # demand_mw is on three rows; the row holding only load_factor needs load_factor too.
    mixed = wide_file(
        consumption_mwh=[1.0, nan, nan, nan],
        demand_mw=[1.0, 2.0, 3.0, nan],
        load_factor=[nan, nan, nan, 4.0],
    )
    fields = readback_fields(mixed)
    assert fields == ["demand_mw", "load_factor"]
    present = ~np.isnan(mixed.accepted[fields].to_numpy())
    assert present.any(axis=1).all()
    counts = expected_series_counts(mixed, fields)
    assert counts == {
        (("consumer_type", "retail"), ("region", "N")): {"demand_mw": 3, "load_factor": 1}
    }


def test_the_statement_counts_each_proving_field_under_its_own_name() -> None:
    statement, params = readback_statement(long_file(["MW", "kV"]))
    assert statement.startswith(
        'SELECT COUNT("power_mw") AS "power_mw", COUNT("voltage_kv") AS "voltage_kv" FROM '
    )
    assert "unit" not in statement.split(" FROM ")[0]
    assert params["high"] - params["low"] == 60 * 10**9
