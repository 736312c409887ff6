"""Accepted energy rows -> Timestream WriteRecords calls, and refused records back to rows.

Records are grouped by shared dimensions so that each call's `CommonAttributes` carry them
and a record holds only its time and value(s). No Dagster here.
"""

from __future__ import annotations

import gc
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ons_pipeline.energy.line_protocol import float_text
from ons_pipeline.energy.validation import TIME, PreparedFile, series_ids

if TYPE_CHECKING:
    from collections.abc import Sequence

    import pandas as pd

    from ons_pipeline.resources.timestream import CallResult


@dataclass
class WriteCall:
    """One Timestream WriteRecords call: at most 100 records sharing their dimensions."""

    common: dict[str, Any]
    records: list[dict[str, Any]]
    positions: np.ndarray  # row positions in `accepted`, aligned with `records`


# The WriteRecords API limit.
MAX_RECORDS_PER_CALL: Final = 100


def timestream_calls(
    prepared: PreparedFile, version: int, batch_size: int = MAX_RECORDS_PER_CALL
) -> list[WriteCall]:
    """Records grouped by shared dimensions into calls of at most `batch_size` (<= 100).

    Long rows: measure `value` (DOUBLE) with the unit as a dimension. Wide rows: one
    multi-measure record of DOUBLE measures, one per non-null field. The time unit is
    milliseconds when a call's times allow it, else nanoseconds (kept exact). Dimensions,
    measure name, type, time unit and version go in `CommonAttributes`, so a record holds
    only its time and value(s).
    """
    if not 1 <= batch_size <= MAX_RECORDS_PER_CALL:
        raise ValueError(f"batch_size must be 1..{MAX_RECORDS_PER_CALL}, got {batch_size}")
    frame = prepared.accepted
    if frame.empty:
        return []
    dims = [*prepared.tag_columns] + (["unit"] if prepared.layout == "long" else [])
    time_ns = frame[TIME].to_numpy()
    whole_ms = (time_ns % 1_000_000) == 0
    ids, values = series_ids(frame, dims)
    group_key = ids.astype(np.int64) * 2 + whole_ms
    if prepared.layout == "wide":
        present = ~np.isnan(np.column_stack([frame[c].to_numpy() for c in prepared.field_columns]))
        pattern = present.astype(np.int64) @ (1 << np.arange(present.shape[1]))
        group_key = group_key * (1 << present.shape[1]) + pattern
    order = np.argsort(group_key, kind="stable")
    sorted_keys = group_key[order]
    boundaries = np.flatnonzero(np.diff(sorted_keys)) + 1
    starts = np.concatenate([[0], boundaries]).tolist()
    stops = np.concatenate([boundaries, [len(order)]]).tolist()
    take = pa.array(order)
    times = pc.cast(pa.array(np.where(whole_ms, time_ns // 1_000_000, time_ns)), pa.string())
    time_text = times.take(take).to_pylist()
    columns = ["value"] if prepared.layout == "long" else prepared.field_columns
    value_text = {c: float_text(frame[c].to_numpy()).take(take).to_pylist() for c in columns}
    # Millions of small dicts would trigger the cyclic GC over and over (they hold no
    # cycles): pause it while building.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _build_calls(
            prepared,
            version,
            starts,
            stops,
            order,
            ids,
            values,
            dims,
            whole_ms,
            time_text,
            value_text,
            batch_size,
        )
    finally:
        if gc_was_enabled:
            gc.enable()


def _build_calls(
    prepared: PreparedFile,
    version: int,
    starts: list[int],
    stops: list[int],
    order: np.ndarray,
    ids: np.ndarray,
    values: pd.DataFrame,
    dims: list[str],
    whole_ms: np.ndarray,
    time_text: list[str],
    value_text: dict[str, list[str]],
    size: int,
) -> list[WriteCall]:
    frame = prepared.accepted
    calls: list[WriteCall] = []
    for start, stop in zip(starts, stops, strict=True):
        first = int(order[start])
        series = int(ids[first])
        dimensions = [{"Name": "dataset_type", "Value": prepared.dataset}] + [
            {"Name": c, "Value": values.at[series, c]} for c in dims if values.at[series, c]
        ]
        common: dict[str, Any] = {
            "Dimensions": dimensions,
            "TimeUnit": "MILLISECONDS" if whole_ms[first] else "NANOSECONDS",
            "Version": version,
        }
        if prepared.layout == "long":
            common |= {"MeasureName": "value", "MeasureValueType": "DOUBLE"}
            measures = value_text["value"]
        else:
            names = [c for c in prepared.field_columns if not np.isnan(frame[c].iat[first])]
            common |= {"MeasureName": f"{prepared.dataset}_fields", "MeasureValueType": "MULTI"}
        for lo in range(start, stop, size):
            hi = min(lo + size, stop)
            if prepared.layout == "long":
                records = [
                    {"Time": t, "MeasureValue": v}
                    for t, v in zip(time_text[lo:hi], measures[lo:hi], strict=True)
                ]
            else:
                measure_lists = [
                    [{"Name": c, "Value": v, "Type": "DOUBLE"} for v in value_text[c][lo:hi]]
                    for c in names
                ]
                records = [
                    {"Time": t, "MeasureValues": list(measures)}
                    for t, measures in zip(
                        time_text[lo:hi], zip(*measure_lists, strict=True), strict=True
                    )
                ]
            calls.append(WriteCall(common=common, records=records, positions=order[lo:hi]))
    return calls


def refused_positions(
    calls: Sequence[WriteCall], results: Sequence[CallResult]
) -> tuple[np.ndarray, list[str]]:
    """(row positions in `accepted`, Timestream's reasons) of the records it refused."""
    positions: list[int] = []
    reasons: list[str] = []
    for call, result in zip(calls, results, strict=True):
        for index, reason in sorted(result.rejected.items()):
            positions.append(int(call.positions[index]))
            reasons.append(reason)
    return np.array(positions, dtype=np.int64), reasons
