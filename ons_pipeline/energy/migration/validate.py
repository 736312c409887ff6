"""Per-series comparison of a window between Timestream and InfluxDB.

A series is the InfluxDB identity of a point group: tags (non-empty) and the float field.
Both sides give count, sum, first and last time per series; counts and times must be
equal, sums equal to a relative 1e-9 (the stores add in different orders).
"""

from __future__ import annotations

import math
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd
import pyarrow as pa

from ons_pipeline.energy.migration.export import (
    Window,
    columns_query,
    query_pages,
    stats_query,
)
from ons_pipeline.energy.migration.mapping import LONG_MEASURE, LONG_VALUE, page_table, wide_measure
from ons_pipeline.energy.schema import (
    DEFAULT_FIELD,
    DIMENSION,
    MEASUREMENT,
    OPTIONAL_TAGS,
    UNIT_FIELDS,
    WIDE_FIELDS,
)
from ons_pipeline.resources.influxql import quote_identifier

if TYPE_CHECKING:
    from types_boto3_timestream_query import TimestreamQueryClient

    from ons_pipeline.resources.influxdb import InfluxDBResource

SeriesKey = tuple[tuple[tuple[str, str], ...], str]  # (sorted tags, field)


@dataclass
class SeriesStats:
    count: int = 0
    total: float = 0.0
    first: int | None = None
    last: int | None = None

    def add(self, other: SeriesStats) -> None:
        self.count += other.count
        self.total += other.total
        if other.first is not None:
            self.first = other.first if self.first is None else min(self.first, other.first)
        if other.last is not None:
            self.last = other.last if self.last is None else max(self.last, other.last)

    def as_dict(self) -> dict[str, Any]:
        return {"count": self.count, "sum": self.total, "first": self.first, "last": self.last}


def fields_of(dataset: str) -> list[str]:
    """Every float field a point of the dataset can carry."""
    return sorted({*UNIT_FIELDS.values(), DEFAULT_FIELD, *WIDE_FIELDS[dataset]})


def _tags(row: dict[str, Any], dataset: str) -> tuple[tuple[str, str], ...]:
    names = ("region", DIMENSION[dataset], *OPTIONAL_TAGS)
    return tuple(sorted((n, str(row[n])) for n in names if row.get(n)))


def timestream_stats(
    client: TimestreamQueryClient,
    database: str,
    table: str,
    dataset: str,
    window: Window,
    **retry: Any,
) -> tuple[dict[SeriesKey, SeriesStats], Counter[str]]:
    """Per series as InfluxDB would hold it, and the records that map to no series."""
    info = next(query_pages(client, columns_query(database, table, window), **retry))
    columns = {c["Name"]: c["Type"].get("ScalarType") for c in info["ColumnInfo"]}
    skip = {"measure_name", "time", "measure_value::varchar"}
    dimensions = [n for n, t in columns.items() if t == "VARCHAR" and n not in skip]
    measures = [n for n, t in columns.items() if t == "DOUBLE"]
    stats: dict[SeriesKey, SeriesStats] = {}
    unmapped: Counter[str] = Counter()
    if not measures:
        return stats, unmapped
    statement = stats_query(database, table, window, dimensions, measures)
    pages = [page_table(page) for page in query_pages(client, statement, **retry)]
    rows = pa.concat_tables(pages).to_pylist() if pages else []
    for row in rows:
        tags = _tags(row, dataset)
        has_tags = bool(row.get("region")) and bool(row.get(DIMENSION[dataset]))
        for index, measure in enumerate(measures):
            count = int(row[f"n_{index}"] or 0)
            if not count:
                continue
            if measure == LONG_VALUE and row.get("measure_name") == LONG_MEASURE:
                if not row.get("unit"):
                    unmapped["missing_unit"] += count
                    continue
                name = UNIT_FIELDS.get(str(row["unit"]), DEFAULT_FIELD)
            elif measure in WIDE_FIELDS[dataset] and row.get("measure_name") == wide_measure(
                dataset
            ):
                name = measure
            else:
                unmapped["unknown_measure"] += count
                continue
            if not has_tags:
                unmapped["missing_tag"] += count
                continue
            found = SeriesStats(
                count, float(row[f"s_{index}"]), int(row[f"f_{index}"]), int(row[f"l_{index}"])
            )
            stats.setdefault((tags, name), SeriesStats()).add(found)
    return stats, unmapped


def influxdb_stats(
    influxdb: InfluxDBResource, bucket: str, dataset: str, window: Window
) -> dict[SeriesKey, SeriesStats]:
    """Per series and field: count and sum in one query, then first and last per field."""
    measurement = quote_identifier(MEASUREMENT[dataset])
    where = "WHERE time >= $start AND time < $end GROUP BY *"
    params = {"start": window.start_ns, "end": window.end_ns}
    fields = fields_of(dataset)
    select = ", ".join(
        f"count({quote_identifier(f)}) AS {quote_identifier('n_' + f)}, "
        f"sum({quote_identifier(f)}) AS {quote_identifier('s_' + f)}"
        for f in fields
    )
    stats: dict[SeriesKey, SeriesStats] = {}
    present: set[str] = set()
    try:
        counted = influxdb.influxql(bucket, f"SELECT {select} FROM {measurement} {where}", params)  # nosec B608  # quoted names; values bound
    except RuntimeError as error:
        if "database not found" not in str(error):
            raise
        return stats  # nothing was ever written there: it holds no series
    for item in counted:
        tags = tuple(sorted((k, v) for k, v in (item.get("tags") or {}).items() if v))
        values = dict(zip(item["columns"], item["values"][0], strict=True))
        for name in fields:
            if values.get(f"n_{name}"):
                stats[(tags, name)] = SeriesStats(
                    int(values[f"n_{name}"]), float(values[f"s_{name}"] or 0.0)
                )
                present.add(name)
    # first() and last() are separate queries (two selectors in one lose their times); they
    # are asked at once, so the check's wait is one query's, not two per field.
    selections = [(name, selector) for name in sorted(present) for selector in ("first", "last")]

    def select(selection: tuple[str, str]) -> list[dict[str, Any]]:
        name, selector = selection
        statement = f"SELECT {selector}({quote_identifier(name)}) FROM {measurement} {where}"  # nosec B608  # quoted names; values bound
        return influxdb.influxql(bucket, statement, params)

    with ThreadPoolExecutor(max_workers=4, thread_name_prefix="influx-stats") as pool:
        for (name, selector), items in zip(selections, pool.map(select, selections), strict=True):
            for item in items:
                tags = tuple(sorted((k, v) for k, v in (item.get("tags") or {}).items() if v))
                if (tags, name) in stats:
                    setattr(stats[(tags, name)], selector, int(item["values"][0][0]))
    return stats


def differences(
    expected: dict[SeriesKey, SeriesStats], found: dict[SeriesKey, SeriesStats]
) -> list[dict[str, Any]]:
    """Each series whose count, first/last time or sum differs, named with both sides."""
    out = []
    for key in sorted(set(expected) | set(found)):
        want, got = expected.get(key), found.get(key)
        same = (
            want is not None
            and got is not None
            and want.count == got.count
            and want.first == got.first
            and want.last == got.last
            and math.isclose(want.total, got.total, rel_tol=1e-9, abs_tol=1e-9)
        )
        if not same:
            out.append(
                {
                    "series": dict(key[0]),
                    "field": key[1],
                    "timestream": want.as_dict() if want else None,
                    "influxdb": got.as_dict() if got else None,
                }
            )
    return out


def summary(stats: dict[SeriesKey, SeriesStats]) -> pd.DataFrame:
    """A table of the series for UI metadata."""
    return pd.DataFrame(
        [{"series": dict(k[0]), "field": k[1], **v.as_dict()} for k, v in sorted(stats.items())]
    )
