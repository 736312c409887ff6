"""Timestream records back into exactly the InfluxDB points a direct load writes.

A page's records are put in the shape of a processed file (timestamp, tags, `unit` and
`value` for single-measure records; the dataset's field columns for multi-measure ones) and
go through the same `prepare` and `line_protocol` as a direct load: the same measurement,
tags, unit-derived field name, shortest round-trip floats and nanosecond times. A record
that cannot map (no `unit` on a single-measure record, a missing tag, a measure name the
loads never write, ...) is quarantined with its reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ons_pipeline.energy.schema import DIMENSION, OPTIONAL_TAGS, WIDE_FIELDS
from ons_pipeline.energy.validation import PreparedFile, prepare

LONG_MEASURE: Final = "value"
LONG_VALUE: Final = "measure_value::double"
_DATUM: Final = pa.list_(pa.struct([("ScalarValue", pa.string()), ("NullValue", pa.bool_())]))


def wide_measure(dataset: str) -> str:
    """The multi-measure record name the Timestream load writes for wide rows."""
    return f"{dataset}_fields"


def page_table(page: dict[str, Any]) -> pa.Table:
    """A Query page as an Arrow table of text columns (null for `NullValue`)."""
    names = [column["Name"] for column in page["ColumnInfo"]]
    rows = page.get("Rows") or []
    if not rows:
        return pa.table({name: pa.array([], pa.string()) for name in names})
    data = pa.array([row["Data"] for row in rows], type=_DATUM)
    width = len(names)
    if pc.any(pc.not_equal(pc.list_value_length(data), width)).as_py():
        raise ValueError("a Query row does not have one datum per column")
    scalars = data.flatten().field("ScalarValue")
    return pa.table(
        {
            name: scalars.take(pa.array(np.arange(index, len(scalars), width)))
            for index, name in enumerate(names)
        }
    )


@dataclass
class MappedPage:
    """What one page becomes: points to write (per layout) and records it cannot map."""

    records: int
    prepared: list[PreparedFile] = field(default_factory=list)
    quarantined: list[pd.DataFrame] = field(default_factory=list)

    @property
    def points(self) -> int:
        return sum(len(p.accepted) for p in self.prepared)

    @property
    def rejected(self) -> int:
        return sum(len(q) for q in self.quarantined)


def _text_column(table: pa.Table, name: str) -> pd.Series:
    """A text column as a pandas categorical (absent column: all null)."""
    if name in table.column_names:
        return table[name].dictionary_encode().combine_chunks().to_pandas()
    return pd.Series(pd.Categorical([None] * len(table), categories=[]))


def _float_column(table: pa.Table, name: str) -> np.ndarray:
    if name not in table.column_names:
        return np.full(len(table), np.nan)
    return pc.cast(table[name], pa.float64()).to_numpy(zero_copy_only=False)


def _file_frame(table: pa.Table, dataset: str, layout: str) -> pd.DataFrame:
    ns = pc.cast(pc.cast(table["time"], pa.timestamp("ns")), pa.int64())
    times = pd.to_datetime(ns.to_numpy(zero_copy_only=False), unit="ns", utc=True)
    frame = pd.DataFrame({"timestamp": times})
    # Categoricals as they are: `prepare` checks each distinct value once, while an object
    # array (what `to_numpy` would give) costs it a Python call per row.
    for tag in ("region", DIMENSION[dataset], *OPTIONAL_TAGS):
        frame[tag] = _text_column(table, tag).array
    if layout == "long":
        frame["unit"] = _text_column(table, "unit").array
        frame["value"] = _float_column(table, LONG_VALUE)
    else:
        for name in WIDE_FIELDS[dataset]:
            frame[name] = _float_column(table, name)
    return frame


def _quarantine(table: pa.Table, reason: str, detail: str) -> pd.DataFrame:
    out = pd.DataFrame({"reason": [reason] * len(table), "detail": [detail] * len(table)})
    for name in table.column_names:
        out[f"source_{name}"] = table[name].to_pylist()
    return out


def map_page(table: pa.Table, dataset: str, *, check_tags: bool = True) -> MappedPage:
    """Points (as `PreparedFile`s) and quarantined records for one page's records."""
    mapped = MappedPage(records=len(table))
    if not len(table):
        return mapped
    names = table["measure_name"] if "measure_name" in table.column_names else None
    layouts = {"long": LONG_MEASURE, "wide": wide_measure(dataset)}
    known = np.zeros(len(table), dtype=bool)
    for layout, measure in layouts.items():
        mask = pc.fill_null(pc.equal(names, measure), False) if names is not None else None
        if mask is None or not pc.any(mask).as_py():
            continue
        part = table.filter(mask)
        known |= mask.to_numpy(zero_copy_only=False)
        prepared = prepare(_file_frame(part, dataset, layout), dataset, check_tags=check_tags)
        mapped.prepared.append(prepared)
        if len(prepared.rejected):
            rejected = part.take(pa.array(prepared.rejected["_row"].to_numpy()))
            quarantine = _quarantine(rejected, "", "")
            quarantine["reason"] = prepared.rejected["reason"].to_numpy()
            mapped.quarantined.append(quarantine)
    if not known.all():
        unknown = table.filter(pa.array(~known))
        mapped.quarantined.append(
            _quarantine(
                unknown,
                "unknown_measure",
                f"measure_name is neither {LONG_MEASURE!r} nor {wide_measure(dataset)!r}",
            )
        )
    return mapped
