"""What InfluxDB should hold after a load, what it holds, and where the two differ.

One grouped InfluxQL COUNT answers for every series of a file in one round trip, however
many series the file holds (benchmarks/energy_load.py times it against one query per series).

It counts only the float fields that cover every point (`readback_fields`): InfluxDB stores
a line whole or refuses it whole (a field type conflict drops the point, not the field), so
one counted field per point proves the point, and with it the fields written beside it. The
long layout's `unit` string and a wide point's other fields are not counted again; that
halves the query's work on a long file and cuts a wide file's by about three.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np

from ons_pipeline.energy.schema import DEFAULT_FIELD, UNIT_FIELDS
from ons_pipeline.energy.validation import series_ids
from ons_pipeline.resources.influxql import quote_identifier

if TYPE_CHECKING:
    from collections.abc import Collection

    from ons_pipeline.energy.validation import PreparedFile
    from ons_pipeline.resources.influxdb import InfluxDBResource

# Per series (its sorted non-empty tags): values per field.
SeriesCounts: TypeAlias = dict[tuple[tuple[str, str], ...], dict[str, int]]


def readback_fields(prepared: PreparedFile) -> list[str]:
    """Float fields such that every accepted row carries at least one of them.

    Long rows carry exactly one (named by their unit). Wide rows carry those that are not
    NaN: fields are taken greedily, most rows first, until every row has one.
    """
    frame = prepared.accepted
    if frame.empty:
        return []
    if prepared.layout == "long":
        units = frame["unit"].unique()  # a categorical: one pass over its codes
        return sorted({UNIT_FIELDS.get(str(unit), DEFAULT_FIELD) for unit in units})
    fields = prepared.field_columns
    present = ~np.isnan(np.column_stack([frame[c].to_numpy(dtype=np.float64) for c in fields]))
    uncovered = np.ones(len(frame), dtype=bool)
    chosen: list[str] = []
    while uncovered.any():  # at most one round per field
        gains = (present & uncovered[:, None]).sum(axis=0)
        best = int(gains.argmax())
        if not gains[best]:
            break  # rows without any field are never accepted
        chosen.append(fields[best])
        uncovered &= ~present[:, best]
    return sorted(chosen)


def expected_series_counts(
    prepared: PreparedFile, fields: Collection[str] | None = None
) -> SeriesCounts:
    """Per series (sorted non-empty tags): how many values each field should hold.

    With `fields`, only those fields are counted (what `readback_counts` reads back).
    """
    counts = _all_series_counts(prepared)
    if fields is None:
        return counts
    wanted = set(fields)
    kept = {s: {f: n for f, n in by.items() if f in wanted} for s, by in counts.items()}
    return {series: by_field for series, by_field in kept.items() if by_field}


def _all_series_counts(prepared: PreparedFile) -> SeriesCounts:
    """Every field's count per series: rows counted per series id, then a loop per series."""
    frame = prepared.accepted
    result: SeriesCounts = {}
    if frame.empty:
        return result
    tag_columns = prepared.tag_columns
    long = prepared.layout == "long"
    ids, values = series_ids(frame, [*tag_columns, "unit"] if long else tag_columns)
    if long:
        per_field = {"": np.bincount(ids, minlength=len(values))}
    else:
        per_field = {
            name: np.bincount(
                ids, weights=~np.isnan(frame[name].to_numpy(np.float64)), minlength=len(values)
            )
            for name in prepared.field_columns
        }
    for row, tags in enumerate(values[tag_columns].itertuples(index=False, name=None)):
        entry = result.setdefault(_series(tag_columns, list(tags)), {})
        for column, counts in per_field.items():
            count = int(counts[row])
            if not count:
                continue
            name = column
            if long:  # the unit's float field and the unit string, in the same line
                name = UNIT_FIELDS.get(values.at[row, "unit"], DEFAULT_FIELD)
                entry["unit"] = entry.get("unit", 0) + count
            entry[name] = entry.get(name, 0) + count
    return result


def _series(columns: list[str], values: list[Any]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((c, str(v)) for c, v in zip(columns, values, strict=True) if str(v)))


def readback_statement(
    prepared: PreparedFile, fields: Collection[str] | None = None
) -> tuple[str, dict[str, int]]:
    """One InfluxQL COUNT per field grouped by the file's tag set, over its time window.

    `fields` defaults to `readback_fields`; each count is named after its field.
    """
    frame = prepared.accepted
    counted = readback_fields(prepared) if fields is None else list(fields)
    select = ", ".join(
        f"COUNT({quote_identifier(name)}) AS {quote_identifier(name)}" for name in counted
    )
    group_by = ", ".join(quote_identifier(column) for column in prepared.tag_columns)
    statement = (
        f"SELECT {select} FROM {quote_identifier(prepared.measurement)} "  # nosec B608  # quoted names; bounds bound
        f"WHERE time >= $low AND time <= $high GROUP BY {group_by}"
    )
    return statement, {"low": int(frame["time_ns"].min()), "high": int(frame["time_ns"].max())}


def readback_counts(
    influxdb: InfluxDBResource,
    bucket: str,
    prepared: PreparedFile,
    fields: Collection[str] | None = None,
) -> SeriesCounts:
    """Per series and field, how many values InfluxDB holds in the file's time window.

    `fields` defaults to `readback_fields`.
    """
    if prepared.accepted.empty:
        return {}
    statement, params = readback_statement(prepared, fields)
    found: SeriesCounts = {}
    for item in influxdb.influxql(bucket, statement, params):
        tags = tuple(sorted((k, v) for k, v in (item.get("tags") or {}).items() if v))
        counts = dict(zip(item["columns"], item["values"][0], strict=True))
        found[tags] = {
            name: int(value) for name, value in counts.items() if name != "time" and value
        }
    return found


def timed_readback_counts(
    influxdb: InfluxDBResource, bucket: str, prepared: PreparedFile, fields: Collection[str]
) -> tuple[SeriesCounts, float]:
    """`readback_counts` and the seconds it took (the asset runs it beside other work)."""
    started = time.monotonic()
    found = readback_counts(influxdb, bucket, prepared, fields)
    return found, time.monotonic() - started


def compare_counts(expected: SeriesCounts, found: SeriesCounts) -> list[dict[str, Any]]:
    """Series/fields holding fewer values than written (other files may add more)."""
    short = []
    for series, fields in expected.items():
        for name, count in fields.items():
            got = found.get(series, {}).get(name, 0)
            if got < count:
                short.append({"series": dict(series), "field": name, "written": count, "read": got})
    return short
