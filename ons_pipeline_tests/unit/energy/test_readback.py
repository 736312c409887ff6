"""The InfluxDB readback check flags every series or field holding fewer values than written."""

from __future__ import annotations

from ons_pipeline.energy.readback import compare_counts

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
