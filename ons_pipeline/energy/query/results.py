"""Template results in one shape, whichever backend computed them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class Point:
    time_ns: int
    value: float
    tags: dict[str, str]


def points_from_influxql(series: list[dict[str, Any]]) -> list[Point]:
    """InfluxQL series (`epoch=ns`, a `value` column) as points, null values left out."""
    points = []
    for item in series:
        tags = _tags(item.get("tags") or {})
        column = item["columns"].index("value")
        points.extend(
            Point(int(row[0]), float(row[column]), tags)
            for row in item["values"]
            if row[column] is not None
        )
    return sort_points(points)


def points_from_frame(frame: pd.DataFrame, tag_columns: list[str]) -> list[Point]:
    """Rows (`time_ns`, `value`, tags) as points."""
    times = frame["time_ns"].to_numpy(dtype=np.int64).tolist()
    values = frame["value"].to_numpy(dtype=np.float64).tolist()
    tags = frame[tag_columns].astype(str).to_dict("records") if len(frame) else []
    return sort_points(
        [Point(t, v, _tags(tag)) for t, v, tag in zip(times, values, tags, strict=True)]
    )


def _tags(tags: dict[str, str]) -> dict[str, str]:
    """Non-empty tags in key order, so both backends' points compare and print alike."""
    return {k: tags[k] for k in sorted(tags) if tags[k]}


def sort_points(points: list[Point]) -> list[Point]:
    return sorted(points, key=lambda p: (sorted(p.tags.items()), p.time_ns))
