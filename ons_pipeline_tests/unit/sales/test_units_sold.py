"""Zero units is a valid order (a placeholder or a cancelled line); only negatives are bad."""

from __future__ import annotations

import pytest

from ons_pipeline.sales.transform import build_star_schema
from ons_pipeline_tests.unit.sales.test_transform import order, raw


@pytest.mark.parametrize(("units", "quarantined"), [(0, False), (1, False), (-1, True)])
def test_only_negative_units_are_quarantined(units: int, quarantined: bool) -> None:
    result = build_star_schema(raw(sales_order=[order(1, units_sold=units), order(2)]))
    facts = result.tables["fact_sales_order"].set_index("sales_order_id")
    assert sorted(facts.index) == ([2] if quarantined else [1, 2])
    reasons = result.quarantine["reason"].tolist()
    assert reasons == (["negative_units_sold"] if quarantined else [])
    if not quarantined:
        assert facts.loc[1, "units_sold"] == units
