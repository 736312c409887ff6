"""What InfluxDB should hold after a load, what it holds, and where the two differ.

One grouped InfluxQL COUNT answers for every series of a file in one round trip, however
many series the file holds (benchmarks/energy_load.py times it against one query per series).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeAlias

from ons_pipeline.energy.schema import DEFAULT_FIELD, UNIT_FIELDS
from ons_pipeline.resources.influxql import quote_identifier

if TYPE_CHECKING:
    from ons_pipeline.energy.validation import PreparedFile
    from ons_pipeline.resources.influxdb import InfluxDBResource

# Per series (its sorted non-empty tags): values per field.
SeriesCounts: TypeAlias = dict[tuple[tuple[str, str], ...], dict[str, int]]


def expected_series_counts(prepared: PreparedFile) -> SeriesCounts:
    """Per series (sorted non-empty tags): how many values each field should hold."""
    frame = prepared.accepted
    result: SeriesCounts = {}
    if frame.empty:
        return result
    tag_columns = prepared.tag_columns
    if prepared.layout == "long":
        names = frame["unit"].map(lambda u: UNIT_FIELDS.get(u, DEFAULT_FIELD)).astype(str)
        counts = (
            frame[tag_columns]
            .assign(_field=names.to_numpy())
            .groupby([*tag_columns, "_field"], observed=True)
            .size()
        )
        for (*tags, name), count in counts.items():
            entry = result.setdefault(_series(tag_columns, tags), {})
            entry[name] = entry.get(name, 0) + int(count)
            entry["unit"] = entry.get("unit", 0) + int(count)
    else:
        counts = frame.groupby(tag_columns, observed=True)[prepared.field_columns].count()
        for tags, row in counts.iterrows():
            tags_tuple = tags if isinstance(tags, tuple) else (tags,)
            result[_series(tag_columns, list(tags_tuple))] = {
                c: int(v) for c, v in row.items() if int(v)
            }
    return result


def _series(columns: list[str], values: list[Any]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((c, str(v)) for c, v in zip(columns, values, strict=True) if str(v)))


def readback_statement(prepared: PreparedFile) -> tuple[str, dict[str, int]]:
    """One InfluxQL COUNT grouped by the file's tag set over its time window, and its params."""
    frame = prepared.accepted
    group_by = ", ".join(quote_identifier(column) for column in prepared.tag_columns)
    statement = (
        f"SELECT COUNT(*) FROM {quote_identifier(prepared.measurement)} "  # nosec B608  # quoted names; bounds bound
        f"WHERE time >= $low AND time <= $high GROUP BY {group_by}"
    )
    return statement, {"low": int(frame["time_ns"].min()), "high": int(frame["time_ns"].max())}


def readback_counts(
    influxdb: InfluxDBResource, bucket: str, prepared: PreparedFile
) -> SeriesCounts:
    """Per series and field, how many values InfluxDB holds in the file's time window."""
    if prepared.accepted.empty:
        return {}
    statement, params = readback_statement(prepared)
    found: SeriesCounts = {}
    for item in influxdb.influxql(bucket, statement, params):
        tags = tuple(sorted((k, v) for k, v in (item.get("tags") or {}).items() if v))
        counts = dict(zip(item["columns"], item["values"][0], strict=True))
        found[tags] = {
            name.removeprefix("count_"): int(value)
            for name, value in counts.items()
            if name != "time" and value
        }
    return found


def compare_counts(expected: SeriesCounts, found: SeriesCounts) -> list[dict[str, Any]]:
    """Series/fields holding fewer values than written (other files may add more)."""
    short = []
    for series, fields in expected.items():
        for name, count in fields.items():
            got = found.get(series, {}).get(name, 0)
            if got < count:
                short.append({"series": dict(series), "field": name, "written": count, "read": got})
    return short
