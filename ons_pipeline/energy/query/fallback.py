"""Answer a template from the processed Parquet in S3 when InfluxDB cannot.

A pyarrow dataset over `s3://<processed>/dataset=<name>/year=YYYY/month=MM/` (hive
partitions): the year/month partitions outside the range are never opened, and region,
second-tag and timestamp filters are pushed into the Parquet scan. The rows read go through
the same section 4 rules as the loads (`transform.prepare`), so the points aggregated here
are the points InfluxDB holds, and the numbers match.
"""

from __future__ import annotations

import operator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import reduce
from typing import Any, Final

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs

from ons_pipeline.energy.query.results import Point, points_from_frame
from ons_pipeline.energy.query.templates import (
    WINDOWS,
    ConsumptionPeak,
    GenerationTrend,
    Latest,
    Series,
    TemplateParams,
    TransmissionLosses,
    to_ns,
)
from ons_pipeline.energy.schema import (
    DEFAULT_FIELD,
    DIMENSION,
    OPTIONAL_TAGS,
    UNIT_FIELDS,
    WIDE_FIELDS,
    FileRejectedError,
    detect_dataset,
)
from ons_pipeline.energy.validation import TIME, prepare

_NS: Final = {"s": 10**9, "ms": 10**6, "us": 10**3, "ns": 1}
_TEXT_COLUMNS: Final = ("region", *OPTIONAL_TAGS, "unit")
READ_THREADS: Final = 4


@dataclass(frozen=True)
class LakeConfig:
    """Where the processed Parquet lives; credentials from the AWS chain when None."""

    bucket: str
    region: str
    endpoint_url: str | None = None
    access_key: str | None = None
    secret_key: str | None = None
    session_token: str | None = None

    def filesystem(self) -> pafs.S3FileSystem:
        options: dict[str, Any] = {"region": self.region, "connect_timeout": 5.0}
        if self.endpoint_url:
            scheme, _, host = self.endpoint_url.partition("://")
            options |= {"endpoint_override": host.rstrip("/"), "scheme": scheme}
        if self.access_key and self.secret_key:
            options |= {
                "access_key": self.access_key,
                "secret_key": self.secret_key,
                "session_token": self.session_token,
            }
        return pafs.S3FileSystem(**options)


@dataclass(frozen=True)
class SourceObject:
    key: str
    start: datetime
    stop: datetime
    relevance: float


def _months(start: datetime, stop: datetime) -> list[tuple[int, int]]:
    """(year, month) of every month the half-open range touches."""
    months = []
    year, month = start.year, start.month
    last = (stop - timedelta(microseconds=1)).astimezone(UTC)
    while (year, month) <= (last.year, last.month):
        months.append((year, month))
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return months


class ParquetLake:
    """The processed bucket read with pyarrow datasets."""

    def __init__(self, config: LakeConfig) -> None:
        self.config = config
        self._fs: pafs.S3FileSystem | None = None

    @property
    def fs(self) -> pafs.S3FileSystem:
        if self._fs is None:
            self._fs = self.config.filesystem()
        return self._fs

    def fragments(self, params: TemplateParams) -> list[ds.ParquetFileFragment]:
        """The objects of the dataset's partitions that the range touches, by key."""
        base = f"{self.config.bucket}/dataset={params.dataset}"
        if self.fs.get_file_info(self.config.bucket).type == pafs.FileType.NotFound:
            raise FileNotFoundError(f"bucket {self.config.bucket} does not exist")
        try:
            dataset = ds.dataset(base, filesystem=self.fs, format="parquet", partitioning="hive")
        except FileNotFoundError:  # nothing processed for this dataset yet
            return []
        names = set(dataset.schema.names)
        found = dataset.get_fragments(
            filter=_partition_filter(names, params.start.astimezone(UTC), params.stop)
        )
        prefix = f"{self.config.bucket}/"
        kept = []
        for fragment in found:
            try:
                if detect_dataset(fragment.path.removeprefix(prefix)) != params.dataset:
                    continue
            except FileRejectedError:
                continue  # the loads reject it too: InfluxDB holds nothing of it
            kept.append(fragment)
        return sorted(kept, key=lambda f: f.path)

    def sources(self, params: TemplateParams) -> list[SourceObject]:
        """Objects covering the range, with their time range from the Parquet statistics."""
        start, stop = params.start.astimezone(UTC), params.stop.astimezone(UTC)
        out = []
        for fragment in self.fragments(params):
            low, high = _time_bounds(fragment)
            if low is None or high is None:
                continue
            if high < start or low >= stop:
                continue
            span = max((high - low).total_seconds(), 1.0)
            overlap = (min(high, stop) - max(low, start)).total_seconds()
            key = fragment.path.removeprefix(f"{self.config.bucket}/")
            out.append(SourceObject(key, low, high, round(max(min(overlap / span, 1.0), 0.0), 3)))
        return out

    def points(self, params: TemplateParams) -> pd.DataFrame:
        """The points InfluxDB holds for the template's field, range and tags.

        Columns `time_ns`, `value`, `region`, the dataset's second tag and the optional tags;
        a point written twice (same series and time) keeps the later object's value, as
        InfluxDB keeps the last write.
        """
        dim = DIMENSION[params.dataset]
        tag_columns = ["region", dim, *OPTIONAL_TAGS]
        start_ns, stop_ns = to_ns(params.start), to_ns(params.stop)
        fragments = self.fragments(params)
        with ThreadPoolExecutor(max_workers=READ_THREADS) as pool:
            read = pool.map(
                lambda order, f: self._file_points(f, params, start_ns, stop_ns, order),
                range(len(fragments)),
                fragments,
            )
            frames = [frame for frame in read if frame is not None and len(frame)]
        if not frames:
            return pd.DataFrame(columns=["time_ns", "value", *tag_columns])
        points = pd.concat(frames, ignore_index=True)
        in_range = (points["time_ns"] >= start_ns) & (points["time_ns"] < stop_ns)
        if params.region is not None:
            in_range &= points["region"] == params.region
        if params.dimension is not None:
            in_range &= points[dim] == params.dimension
        points = points[in_range].sort_values(["_order", "time_ns"], kind="stable")
        points = points.drop_duplicates(subset=["time_ns", *tag_columns], keep="last")
        return points.drop(columns="_order").reset_index(drop=True)

    def _file_points(
        self,
        fragment: ds.ParquetFileFragment,
        params: TemplateParams,
        start_ns: int,
        stop_ns: int,
        order: int,
    ) -> pd.DataFrame | None:
        """One object's points for the field, after the load rules (None: no such field)."""
        dim = DIMENSION[params.dataset]
        schema = fragment.physical_schema
        table = fragment.to_table(
            columns=_columns(schema, params.dataset),
            filter=_row_filter(schema, params, dim, start_ns, stop_ns),
        )
        if table.num_rows == 0:
            return None
        # Tags as dictionaries, as the loads read them (`transform.read_parquet`).
        for index, name in enumerate(table.column_names):
            if name in (*_TEXT_COLUMNS, dim) and _is_text(table.schema, name):
                if not pa.types.is_dictionary(table.schema.field(name).type):
                    table = table.set_column(index, name, pc.dictionary_encode(table[name]))
        prepared = prepare(table.to_pandas(), params.dataset)
        accepted = prepared.accepted
        if prepared.layout == "long":
            names = accepted["unit"].astype(str).map(UNIT_FIELDS).fillna(DEFAULT_FIELD)
            mask = (names == params.field).to_numpy()
            values = accepted["value"].to_numpy()[mask]
        elif params.field in accepted.columns:
            values = accepted[params.field].to_numpy()
            mask = ~np.isnan(values)
            values = values[mask]
        else:
            return None
        frame = pd.DataFrame({"time_ns": accepted[TIME].to_numpy()[mask], "value": values})
        for column in ["region", dim, *OPTIONAL_TAGS]:
            frame[column] = accepted[column].astype(str).to_numpy()[mask]
        frame["_order"] = order  # key order: the later object wins a duplicate point
        return frame

    def answer(self, params: TemplateParams) -> list[Point]:
        """The template's result, computed as InfluxDB computes it."""
        points = self.points(params)
        group = params.group_tags()
        if points.empty:
            return []
        if isinstance(params, GenerationTrend):
            width = WINDOWS[params.window] * 10**9
            points["time_ns"] = points["time_ns"] - np.mod(points["time_ns"], width)
            result = points.groupby([*group, "time_ns"], as_index=False)["value"].mean()
        elif isinstance(params, ConsumptionPeak):
            ordered = points.sort_values("time_ns", kind="stable")
            result = ordered.loc[ordered.groupby(group)["value"].idxmax()]
        elif isinstance(params, TransmissionLosses):
            result = points.groupby(group, as_index=False)["value"].sum()
            result["time_ns"] = to_ns(params.start)
        elif isinstance(params, Latest):
            ordered = points.sort_values("time_ns", kind="stable")
            result = ordered.groupby(group, as_index=False).tail(1)
        elif isinstance(params, Series):
            ordered = points.sort_values("time_ns", kind="stable")
            result = ordered.groupby(group, as_index=False).head(params.limit)
        else:
            raise TypeError(f"no fallback for {type(params).__name__}")
        return points_from_frame(result, group)


def _partition_filter(names: set[str], start: datetime, stop: datetime) -> ds.Expression | None:
    if not {"year", "month"} <= names:
        return None
    return reduce(
        operator.or_,
        [
            (ds.field("year") == year) & (ds.field("month") == month)
            for year, month in _months(start, stop)
        ],
    )


def _columns(schema: pa.Schema, dataset: str) -> list[str]:
    """The contract's columns the file has (the rest is never read)."""
    wanted = ("timestamp", "region", DIMENSION[dataset], *OPTIONAL_TAGS, "unit", "value")
    return [c for c in (*wanted, *WIDE_FIELDS[dataset]) if c in schema.names]


def _is_text(schema: pa.Schema, name: str) -> bool:
    if name not in schema.names:
        return False
    kind = schema.field(name).type
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    return pa.types.is_string(kind) or pa.types.is_large_string(kind)


def _row_filter(
    schema: pa.Schema, params: TemplateParams, dim: str, start_ns: int, stop_ns: int
) -> ds.Expression | None:
    """Filters pushed into the scan: a superset of the rows wanted, cut exactly later."""
    parts = []
    if params.region is not None and _is_text(schema, "region"):
        parts.append(ds.field("region") == params.region)
    if params.dimension is not None and _is_text(schema, dim):
        parts.append(ds.field(dim) == params.dimension)
    if "timestamp" in schema.names and pa.types.is_timestamp(
        kind := schema.field("timestamp").type
    ):
        per = _NS[kind.unit]
        low = pa.scalar(start_ns // per, pa.int64()).cast(kind)
        high = pa.scalar(-(-stop_ns // per), pa.int64()).cast(kind)
        parts.append((ds.field("timestamp") >= low) & (ds.field("timestamp") <= high))
    return reduce(operator.and_, parts) if parts else None


def _time_bounds(fragment: ds.ParquetFileFragment) -> tuple[datetime | None, datetime | None]:
    """Min and max timestamp from the row-group statistics (no data read)."""
    schema = fragment.physical_schema
    if "timestamp" not in schema.names:
        return None, None
    metadata = fragment.metadata
    column = metadata.schema.to_arrow_schema().get_field_index("timestamp")
    lows, highs = [], []
    for i in range(metadata.num_row_groups):
        stats = metadata.row_group(i).column(column).statistics
        if stats is None or not stats.has_min_max:
            return None, None
        lows.append(stats.min)
        highs.append(stats.max)
    if not lows:
        return None, None
    try:  # timestamps, or ISO-8601 strings (which sort as times when in one format)
        low, high = pd.Timestamp(min(lows)), pd.Timestamp(max(highs))
    except (ValueError, TypeError):
        return None, None
    low = low.tz_localize(UTC) if low.tzinfo is None else low.tz_convert(UTC)
    high = high.tz_localize(UTC) if high.tzinfo is None else high.tz_convert(UTC)
    return low.to_pydatetime(), high.to_pydatetime()
