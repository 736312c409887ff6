"""The local Timestream engine's tables: current after every write, apart per account/region."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest

from ons_pipeline.local.timestream_engine import (
    TableStore,
    TimestreamQueryEngine,
    TimestreamValidationError,
)

DAY_NS = 86_400 * 10**9


def store_with(days: int, start_day: int = 0) -> TableStore:
    store = TableStore()
    times = (np.arange(start_day, start_day + days, dtype=np.int64) * DAY_NS).astype(np.int64)
    store.append(
        pa.table(
            {
                "region": ["N"] * days,
                "measure_name": ["value"] * days,
                "time": pa.array(times, pa.timestamp("ns")),
                "measure_value::double": np.arange(days, dtype=np.float64),
            }
        )
    )
    return store


def count(engine: TimestreamQueryEngine, tables: dict, sql: str, scope: object = None) -> int:
    answer = json.loads(engine.query(tables, sql, scope=scope))
    return int(answer["Rows"][0]["Data"][0]["ScalarValue"])


def test_a_window_counts_what_is_stored_now_after_every_write() -> None:
    engine = TimestreamQueryEngine()
    store = store_with(10)
    tables = {("db", "t"): store}
    window = (
        'SELECT count(*) FROM "db"."t" WHERE time >= from_nanoseconds(172800000000000) '
        "AND time < from_nanoseconds(432000000000000)"
    )
    assert count(engine, tables, window) == 3  # days 2, 3 and 4; day 5 is outside
    store.append(store_with(10, start_day=3).snapshot())  # days 3-12: 3 and 4 upserted
    assert count(engine, tables, window) == 3
    assert count(engine, tables, 'SELECT count(*) FROM "db"."t"') == 13
    store.write(
        [
            {
                "Dimensions": [{"Name": "region", "Value": "S"}],
                "MeasureName": "value",
                "MeasureValue": "1.5",
                "Time": "2",
                "TimeUnit": "SECONDS",
            }
        ],
        {},
    )
    assert count(engine, tables, 'SELECT count(*) FROM "db"."t"') == 14


def test_a_dropped_table_is_gone_and_scopes_hold_their_own_tables() -> None:
    engine = TimestreamQueryEngine()
    both = {("db", "t"): store_with(2), ("db", "u"): store_with(5)}
    assert count(engine, both, 'SELECT count(*) FROM "db"."u"', scope="a") == 5
    with pytest.raises(TimestreamValidationError):
        engine.query({("db", "t"): both[("db", "t")]}, 'SELECT * FROM "db"."u"', scope="a")
    with pytest.raises(TimestreamValidationError):  # another account/region: not its table
        engine.query({("db", "t"): store_with(1)}, 'SELECT * FROM "db"."u"', scope="b")
    assert count(engine, {("db", "t"): store_with(7)}, 'SELECT count(*) FROM "db"."t"', "b") == 7
    assert count(engine, both, 'SELECT count(*) FROM "db"."t"', scope="a") == 2
