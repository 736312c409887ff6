"""The WriteRecords limit is the literal 100 of the API, not whatever the constant says."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ons_pipeline.energy.timestream_records import timestream_calls
from ons_pipeline.energy.validation import prepare

API_LIMIT = 100  # Timestream refuses a WriteRecords call with more records


def one_series(rows: int) -> pd.DataFrame:
    times = pd.date_range("2024-01-01", periods=rows, freq="s", tz="UTC")
    return pd.DataFrame(
        {
            "timestamp": times.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "region": "SE",
            "energy_source": "hydro",
            "value": np.arange(rows, dtype=float),
            "unit": "MW",
        }
    )


@pytest.mark.parametrize(
    ("rows", "sizes"),
    [(250, [100, 100, 50]), (100, [100]), (101, [100, 1]), (99, [99])],
)
def test_one_series_is_cut_at_exactly_the_api_limit(rows: int, sizes: list[int]) -> None:
    calls = timestream_calls(prepare(one_series(rows), "generation"), version=1)
    assert [len(call.records) for call in calls] == sizes
    assert max(sizes) <= API_LIMIT
    times = [record["Time"] for call in calls for record in call.records]
    assert len(set(times)) == rows  # every row once, none lost at a cut
