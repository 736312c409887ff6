"""Energy Parquet -> validated rows -> InfluxDB line protocol and Timestream records.

Vectorised throughout: tag columns are categoricals, so string rules and escaping run once
per distinct value; per-row work is numpy/pyarrow. No Dagster here.
"""

from __future__ import annotations

import gc
import io
import re
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ons_pipeline.energy.schema import (
    DEFAULT_FIELD,
    DIMENSION,
    MAX_TAG_BYTES,
    MEASUREMENT,
    OPTIONAL_TAGS,
    REASONS,
    UNIT_FIELDS,
    WIDE_FIELDS,
    FileRejectedError,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

# ISO 8601 as `datetime.fromisoformat` reads it (ARCHITECTURE.md section 4): a date alone, or
# with `T` or a space and HH, HH:MM or HH:MM:SS, up to 9 fraction digits after `.` or `,`, and
# `Z` or an offset +HH, +HHMM or +HH:MM. RE2 (pyarrow's regex engine): `\d` is ASCII only.
_ISO_8601_PARTS: Final = (
    r"^(?P<date>\d{4}-\d{2}-\d{2})"
    r"(?:[T ](?P<hour>\d{2})(?::(?P<minute>\d{2})(?::(?P<second>\d{2})"
    r"(?:[.,](?P<fraction>\d{1,9}))?)?)?"
    r"(?:Z|(?P<sign>[+-])(?P<offset_hours>\d{2})(?::?(?P<offset_minutes>\d{2}))?)?)?$"
)
# Margin kept from the int64 limits so that applying an offset (< 1 day) cannot overflow.
_DAY_NS: Final = 86_400 * 10**9
_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f]")
_LP_UNREPRESENTABLE: Final = re.compile(r"[\n\r]|\\(?=[\\,= ]|$)")
_NS_PER_UNIT: Final = {"s": 10**9, "ms": 10**6, "us": 10**3, "ns": 1}
ROW: Final = "_row"
TIME: Final = "time_ns"


@dataclass
class PreparedFile:
    """A file's rows after the rules: what to write, what was folded, what was rejected."""

    dataset: str
    layout: str  # "long" or "wide"
    rows: int
    accepted: pd.DataFrame  # _row, time_ns, tags (categorical, "" = absent), unit?, fields
    rejected: pd.DataFrame  # _row, reason, detail, then the source columns as text
    deduplicated: int
    field_columns: list[str] = field(default_factory=list)

    @property
    def measurement(self) -> str:
        return MEASUREMENT[self.dataset]

    @property
    def tag_columns(self) -> list[str]:
        return ["region", DIMENSION[self.dataset], *OPTIONAL_TAGS]

    def rejected_by_reason(self) -> dict[str, int]:
        if self.rejected.empty:
            return {}
        return {str(k): int(v) for k, v in self.rejected["reason"].value_counts().items()}


def read_parquet(data: bytes, dataset: str) -> pd.DataFrame:
    """The columns the contract uses, read row group by row group, tags dictionary-encoded."""
    file = pq.ParquetFile(io.BytesIO(data))
    names = set(file.schema_arrow.names)
    wanted = [
        c
        for c in (
            "timestamp",
            "region",
            DIMENSION[dataset],
            *OPTIONAL_TAGS,
            "unit",
            "value",
            *WIDE_FIELDS[dataset],
        )
        if c in names
    ]
    string_columns = [
        c
        for c in wanted
        if c not in ("timestamp", "value", *WIDE_FIELDS[dataset])
        and pa.types.is_string(file.schema_arrow.field(c).type)
    ]
    file = pq.ParquetFile(io.BytesIO(data), read_dictionary=string_columns)
    groups = [file.read_row_group(i, columns=wanted) for i in range(file.num_row_groups)]
    table = (
        pa.concat_tables(groups).unify_dictionaries()
        if groups
        else file.schema_arrow.empty_table().select(wanted)
    )
    return table.to_pandas()


def iter_row_groups(data: bytes) -> Iterator[pa.Table]:
    file = pq.ParquetFile(io.BytesIO(data))
    for i in range(file.num_row_groups):
        yield file.read_row_group(i)


def _as_text_categorical(series: pd.Series) -> pd.Series:
    if isinstance(series.dtype, pd.CategoricalDtype):
        cats = series.cat.categories
        if cats.dtype == object and all(isinstance(c, str) for c in cats):
            return series
        return (
            series.astype(object)
            .where(series.notna(), None)
            .map(lambda v: v if v is None else str(v))
            .astype("category")
        )
    text = series.astype(object).where(series.notna(), None)
    text = text.map(lambda v: v if v is None or isinstance(v, str) else str(v))
    return text.astype("category")


def _per_row(series: pd.Series, per_category: np.ndarray, null_value: Any) -> np.ndarray:
    """Expand a per-category array to rows; null rows (code -1) get `null_value`."""
    codes = series.cat.codes.to_numpy()
    extended = np.append(per_category, np.array([null_value], dtype=per_category.dtype))
    return extended[codes]


def unrepresentable(text: str) -> bool:
    """True when line protocol cannot carry `text` as a tag or string field, one way only.

    A newline or carriage return ends the line (the rest would be a new, attacker-chosen
    point). A backslash at the end or before a backslash, comma, equals sign or space is read
    as an escape, and InfluxDB 1.x and 2.x unescape a doubled backslash differently: such a
    value cannot be written so that both read it back unchanged. Line protocol is UTF-8, so
    a lone surrogate cannot be written at all.
    """
    if _LP_UNREPRESENTABLE.search(text):
        return True
    try:
        text.encode()
    except UnicodeEncodeError:
        return True
    return False


def _tag_problems(series: pd.Series, check_tags: bool) -> tuple[np.ndarray, np.ndarray]:
    """(blank, invalid) per row for a text categorical.

    What line protocol cannot carry is invalid whatever `check_tags` says; `check_tags`
    (ENABLE_VALIDATION) adds only the business rules: other control characters, length.
    """
    cats = [str(c) for c in series.cat.categories]
    blank = np.array([c.strip() == "" for c in cats], dtype=bool)
    invalid = np.array(
        [
            unrepresentable(c)
            or (check_tags and (bool(_CONTROL.search(c)) or len(c.encode()) > MAX_TAG_BYTES))
            for c in cats
        ],
        dtype=bool,
    )
    return _per_row(series, blank, True), _per_row(series, invalid, False)


def parse_timestamps(series: pd.Series) -> np.ndarray:
    """Integer nanoseconds since the epoch (UTC); the minimum int64 marks an invalid value."""
    nat = np.iinfo(np.int64).min
    dtype = series.dtype
    if isinstance(dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(dtype):
        index = pd.DatetimeIndex(series)
        raw = index.asi8.copy()
        factor = _NS_PER_UNIT[index.unit]
        valid = raw != nat
        if factor > 1:
            limit = np.iinfo(np.int64).max // factor
            valid &= np.abs(raw) <= limit
            raw = np.where(valid, raw * factor, nat)
        return np.where(valid, raw, nat)
    if pd.api.types.is_object_dtype(dtype) or pd.api.types.is_string_dtype(dtype):
        return _iso_strings_to_ns(_as_strings(series))
    return np.full(len(series), nat, dtype=np.int64)


def _as_strings(series: pd.Series) -> pa.Array:
    """The column as an Arrow string array; values that are not strings become null."""
    try:
        return pa.array(series.to_numpy(dtype=object), type=pa.string(), from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # a column mixing strings and other types
        values = series.to_numpy(dtype=object)
        is_str = np.fromiter((isinstance(v, str) for v in values), bool, len(values))
        return pa.array(np.where(is_str, values, None), type=pa.string(), from_pandas=True)


def _iso_strings_to_ns(values: pa.Array) -> np.ndarray:
    """Nanoseconds (UTC) of ISO 8601 strings; the minimum int64 marks an invalid value.

    Vectorised: one RE2 pass splits every string into its parts, the date and clock are
    parsed in one `to_datetime` call on a normalised `YYYY-MM-DDTHH:MM:SS` (which checks the
    calendar), and the fraction and offset are integer arithmetic, so nanoseconds are exact.
    """
    nat = np.iinfo(np.int64).min
    out = np.full(len(values), nat, dtype=np.int64)
    parts = pc.extract_regex(values, _ISO_8601_PARTS)
    matched = parts.is_valid().to_numpy(zero_copy_only=False)
    if not matched.any():
        return out
    parts = parts.filter(parts.is_valid())

    def text(name: str, default: str) -> pa.Array:
        column = parts.field(name)
        return pc.if_else(pc.equal(column, ""), default, column)

    def number(name: str) -> np.ndarray:
        return pc.cast(text(name, "0"), pa.int64()).to_numpy()

    clock = pc.binary_join_element_wise(
        parts.field("date"),
        "T",
        text("hour", "00"),
        ":",
        text("minute", "00"),
        ":",
        text("second", "00"),
        "",  # the separators are among the joined values
    )
    base = pd.to_datetime(  # an ISO format: pandas' fast parser, which checks the calendar
        pd.Series(clock.to_numpy(zero_copy_only=False), dtype=object),
        format="%Y-%m-%dT%H:%M:%S",
        errors="coerce",
    )
    base_ns = pd.DatetimeIndex(base).as_unit("ns").asi8
    fraction = pc.cast(pc.utf8_rpad(parts.field("fraction"), width=9, padding="0"), pa.int64())
    offset_hours, offset_minutes = number("offset_hours"), number("offset_minutes")
    sign = np.where(parts.field("sign").to_numpy(zero_copy_only=False) == "-", -1, 1)
    offset_ns = sign * (offset_hours * 3600 + offset_minutes * 60) * 10**9
    valid = (
        (base_ns != nat)
        & (base_ns > nat + _DAY_NS)
        & (base_ns < np.iinfo(np.int64).max - _DAY_NS)
        & (offset_hours < 24)
        & (offset_minutes < 60)
    )
    stamps = np.where(valid, base_ns + fraction.to_numpy() - offset_ns, nat)
    out[np.flatnonzero(matched)] = stamps
    return out


def _numeric(series: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(float64 values, non-numeric mask); null stays NaN and is not non-numeric."""
    if pd.api.types.is_bool_dtype(series.dtype):
        return np.full(len(series), np.nan), series.notna().to_numpy()
    if pd.api.types.is_numeric_dtype(series.dtype):
        return series.to_numpy(dtype=np.float64, na_value=np.nan), np.zeros(len(series), bool)
    objects = series.astype(object)
    present = objects.notna().to_numpy()
    is_bool = objects.map(lambda v: isinstance(v, bool | np.bool_)).to_numpy(dtype=bool)
    values = pd.to_numeric(objects.where(~is_bool, None), errors="coerce").to_numpy(
        dtype=np.float64, na_value=np.nan
    )
    return values, present & (np.isnan(values) | is_bool)


def prepare(frame: pd.DataFrame, dataset: str, *, check_tags: bool = True) -> PreparedFile:
    """Apply the section 4 rules; the first failing rule is each rejected row's reason.

    Raises:
        FileRejectedError: `missing_column` when a required column is absent.
    """
    dim = DIMENSION[dataset]
    layout = "long" if "value" in frame.columns else "wide"
    required = ["timestamp", "region", dim]
    required += ["value", "unit"] if layout == "long" else list(WIDE_FIELDS[dataset])
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise FileRejectedError(
            "missing_column", f"{layout} {dataset} file lacks required columns {missing}"
        )
    n = len(frame)
    # 0 = no reason yet, else 1 + index in REASONS (strings only for the rejected rows).
    code = np.zeros(n, dtype=np.int8)

    def flag(mask: np.ndarray, name: str) -> None:
        code[(code == 0) & mask] = REASONS.index(name) + 1

    time_ns = parse_timestamps(frame["timestamp"])
    flag(time_ns == np.iinfo(np.int64).min, "invalid_timestamp")

    tags: dict[str, pd.Series] = {}
    for column in ["region", dim, *OPTIONAL_TAGS]:
        if column in frame.columns:
            tags[column] = _as_text_categorical(frame[column])
        else:
            absent = pd.Categorical.from_codes(np.full(n, -1, dtype=np.int8), categories=[""])
            tags[column] = pd.Series(absent, index=frame.index)
    unit = _as_text_categorical(frame["unit"]) if layout == "long" else None

    blank_required = np.zeros(n, dtype=bool)
    invalid = np.zeros(n, dtype=bool)
    for column, series in tags.items():
        blank, bad = _tag_problems(series, check_tags)
        if column in ("region", dim):
            blank_required |= blank
        invalid |= bad
    if unit is not None:
        blank_unit, bad_unit = _tag_problems(unit, check_tags)
        invalid |= bad_unit
    flag(blank_required, "missing_tag")
    flag(invalid, "invalid_tag")
    if unit is not None:
        flag(blank_unit, "missing_unit")

    field_columns = ["value"] if layout == "long" else list(WIDE_FIELDS[dataset])
    values: dict[str, np.ndarray] = {}
    non_numeric = np.zeros(n, dtype=bool)
    for column in field_columns:
        values[column], bad = _numeric(frame[column])
        non_numeric |= bad
    stacked = np.column_stack([values[c] for c in field_columns]) if n else np.empty((0, 1))
    nulls = np.isnan(stacked) & ~non_numeric[:, None] if n else np.empty((0, 1), bool)
    flag(nulls.all(axis=1) & ~non_numeric if n else np.zeros(0, bool), "missing_value")
    flag(non_numeric, "non_numeric_value")
    flag(np.isinf(stacked).any(axis=1) if n else np.zeros(0, bool), "non_finite_value")

    accepted = pd.DataFrame({ROW: np.arange(n, dtype=np.int64), TIME: time_ns})
    for column, series in tags.items():
        text = series.cat.add_categories([""]) if "" not in series.cat.categories else series
        accepted[column] = text.fillna("").array
    if unit is not None:
        accepted["unit"] = unit.array
    for column in field_columns:
        accepted[column] = values[column]

    # Duplicates among the rows still standing: same series + time; same content folds.
    standing = code == 0
    key_columns = [TIME, *tags]
    content_columns = (["unit"] if unit is not None else []) + field_columns
    deduplicated = 0
    folded = np.zeros(n, dtype=bool)
    if standing.sum() > 1:
        # Cheap prefilter: (series id, time) mixed into one int64; a collision only adds a
        # suspect, which the exact comparison below clears.
        sid, _ = series_ids(accepted, list(tags))
        mixed = time_ns ^ (sid.astype(np.int64) * np.int64(0x9E3779B97F4A7C15 - (1 << 64)))
        mixed = np.where(standing, mixed, np.arange(n) + np.iinfo(np.int64).min // 2)
        suspect_mask = pd.Series(mixed).duplicated(keep=False).to_numpy() & standing
        suspects = accepted[suspect_mask]
        if len(suspects):
            exact = _content_frame(suspects, key_columns, content_columns)
            group = exact.groupby(key_columns, observed=True, sort=False, dropna=False)
            distinct = group["_content"].transform("nunique").to_numpy()
            conflict_rows = suspects[ROW].to_numpy()[distinct > 1]
            flag(np.isin(np.arange(n), conflict_rows), "conflicting_duplicate")
            same = exact[distinct == 1]
            dup = same.duplicated(subset=[*key_columns, "_content"], keep="first").to_numpy()
            folded[same[ROW].to_numpy()[dup]] = True
            deduplicated = int(dup.sum())

    keep = (code == 0) & ~folded
    rejected_mask = code != 0
    names = np.array(["", *REASONS], dtype=object)
    rejected = _rejected_frame(frame, rejected_mask, names[code])
    if keep.all():
        kept = accepted
    else:
        kept = accepted[keep].reset_index(drop=True)
        for column in [*tags, *(["unit"] if unit is not None else [])]:
            kept[column] = kept[column].cat.remove_unused_categories()
    return PreparedFile(
        dataset=dataset,
        layout=layout,
        rows=n,
        accepted=kept,
        rejected=rejected,
        deduplicated=deduplicated,
        field_columns=field_columns,
    )


def _content_frame(
    rows: pd.DataFrame, key_columns: list[str], content_columns: list[str]
) -> pd.DataFrame:
    """Key columns as text plus one `_content` string; floats compared bit for bit."""
    out = pd.DataFrame({ROW: rows[ROW].to_numpy(), TIME: rows[TIME].to_numpy()})
    for column in key_columns[1:]:
        out[column] = rows[column].astype(str).to_numpy()
    parts = []
    for column in content_columns:
        if column == "unit":
            parts.append(rows[column].astype(str).to_numpy(dtype=object))
        else:
            bits = rows[column].to_numpy(dtype=np.float64)
            bits = np.where(np.isnan(bits), np.nan, bits).view(np.int64)
            parts.append(bits.astype(str).astype(object))
    out["_content"] = ["\x1f".join(p) for p in zip(*parts, strict=True)] if parts else ""
    return out


def _rejected_frame(frame: pd.DataFrame, mask: np.ndarray, reason: np.ndarray) -> pd.DataFrame:
    source = frame[mask]
    out = pd.DataFrame(
        {ROW: np.flatnonzero(mask).astype(np.int64), "reason": reason[mask].astype(str)}
    )
    out["detail"] = ""
    for column in source.columns:
        out[f"source_{column}"] = (
            source[column]
            .astype(object)
            .where(source[column].notna(), None)
            .map(lambda v: None if v is None else str(v))
            .to_numpy()
        )
    return out


def rejected_rows(
    prepared: PreparedFile, positions: np.ndarray, reason: str, details: list[str]
) -> pd.DataFrame:
    """Accepted rows (by position) that a store refused, in the quarantine frame's shape."""
    rows = prepared.accepted.iloc[positions]
    out = pd.DataFrame({ROW: rows[ROW].to_numpy(), "reason": reason, "detail": list(details)})
    for column in rows.columns:
        if column != ROW:
            out[f"source_{column}"] = rows[column].astype(str).to_numpy()
    return out


_LP_ESCAPE: Final = re.compile(r"([,= ])")


def escape_key(text: str) -> str:
    """Line protocol tag key/value and field key: backslash before comma, equals, space."""
    return _LP_ESCAPE.sub(r"\\\1", text)


def escape_measurement(text: str) -> str:
    return text.replace(",", "\\,").replace(" ", "\\ ")


def escape_string_field(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def series_ids(frame: pd.DataFrame, columns: list[str]) -> tuple[np.ndarray, pd.DataFrame]:
    """A dense id per distinct combination of categorical columns, and each id's values.

    Mixed-radix over the category codes then a hash factorise: O(rows), no sort.
    """
    combined = np.zeros(len(frame), dtype=np.int64)
    for column in columns:
        codes = frame[column].cat.codes.to_numpy().astype(np.int64) + 1
        combined = combined * (len(frame[column].cat.categories) + 1) + codes
    ids, uniques = pd.factorize(combined)
    first = np.zeros(len(uniques), dtype=np.int64)
    first[ids[::-1]] = np.arange(len(ids) - 1, -1, -1)  # first row of each id
    # Python's str per value: numpy's fixed-width strings would drop trailing NULs.
    values = frame.iloc[first][columns].reset_index(drop=True).astype(object).map(str)
    return ids.astype(np.int32), values


def _decode(ids: np.ndarray, texts: list[str]) -> pa.Array:
    """Per-row strings from per-id strings (a dictionary decode: one memcpy per row)."""
    dictionary = pa.array(texts, type=pa.string())
    return pc.cast(pa.DictionaryArray.from_arrays(pa.array(ids), dictionary), pa.string())


def _floats(values: np.ndarray) -> pa.Array:
    """Shortest round-trip text for each float (bit-exact when parsed back); NaN -> null."""
    array = pa.array(values, type=pa.float64(), from_pandas=True)
    return pc.cast(array, pa.string())


def _head(prepared: PreparedFile, values: pd.DataFrame, row: int) -> str:
    measurement = escape_measurement(prepared.measurement)
    tags = "".join(
        f",{escape_key(column)}={escape_key(values.at[row, column])}"
        for column in prepared.tag_columns
        if values.at[row, column]
    )
    return f"{measurement}{tags} "


def line_protocol(prepared: PreparedFile) -> pa.Array:
    """One line per accepted row, each ending in a newline, aligned with `accepted`.

    Everything constant per series (measurement, escaped tags, the long row's field name
    and unit) is rendered once per series; per row only floats and times are formatted.
    """
    frame = prepared.accepted
    n = len(frame)
    if n == 0:
        return pa.array([], type=pa.string())
    newline = _decode(np.zeros(n, dtype=np.int32), ["\n"])
    times = pc.cast(pa.array(frame[TIME].to_numpy(), type=pa.int64()), pa.string())
    if prepared.layout == "long":
        ids, values = series_ids(frame, [*prepared.tag_columns, "unit"])
        heads, tails = [], []
        for row in range(len(values)):
            unit = values.at[row, "unit"]
            name = escape_key(UNIT_FIELDS.get(unit, DEFAULT_FIELD))
            heads.append(f"{_head(prepared, values, row)}{name}=")
            tails.append(f',unit="{escape_string_field(unit)}" ')
        return pc.binary_join_element_wise(
            _decode(ids, heads),
            _floats(frame["value"].to_numpy()),
            _decode(ids, tails),
            times,
            newline,
            "",
        )
    # Which fields a row has is part of its "series" here, so each field's prefix
    # (`,name=` or nothing) is per-series text too and one join builds every line.
    fields = prepared.field_columns
    present = ~np.isnan(np.column_stack([frame[c].to_numpy() for c in fields]))
    pattern = present.astype(np.int64) @ (1 << np.arange(len(fields)))
    keyed = frame[prepared.tag_columns].assign(_pattern=pd.Categorical(pattern))
    ids, values = series_ids(keyed, [*prepared.tag_columns, "_pattern"])
    heads = [_head(prepared, values, row) for row in range(len(values))]
    prefixes: list[list[str]] = [[] for _ in fields]
    for row in range(len(values)):
        mask = int(values.at[row, "_pattern"])
        first = True
        for index, column in enumerate(fields):
            if mask & (1 << index):
                prefixes[index].append(("" if first else ",") + escape_key(column) + "=")
                first = False
            else:
                prefixes[index].append("")
    pieces: list[pa.Array] = []
    for index, column in enumerate(fields):
        pieces += [_decode(ids, prefixes[index]), _floats(frame[column].to_numpy()).fill_null("")]
    space = _decode(np.zeros(n, dtype=np.int32), [" "])
    return pc.binary_join_element_wise(_decode(ids, heads), *pieces, space, times, newline, "")


# Lines are built this many rows at a time: buffers stay small and the allocator reuses
# them (a fresh 100 MB buffer costs more in page faults than formatting its lines).
CHUNK_ROWS: Final = 131_072


def line_chunks(prepared: PreparedFile, rows: int = CHUNK_ROWS) -> Iterator[tuple[int, pa.Array]]:
    """(first row position, lines) for consecutive slices of `accepted`."""
    for start in range(0, len(prepared.accepted), rows):
        part = replace(prepared, accepted=prepared.accepted.iloc[start : start + rows])
        yield start, line_protocol(part)


def batch_bodies(lines: pa.Array, batch_size: int) -> Iterator[tuple[int, int, bytes]]:
    """(start, stop, body) slices of newline-terminated lines, zero-copy from Arrow's buffer."""
    if isinstance(lines, pa.ChunkedArray):
        lines = lines.combine_chunks()
    offsets = np.frombuffer(lines.buffers()[1], dtype=np.int32)[
        lines.offset : lines.offset + len(lines) + 1
    ]
    data = lines.buffers()[2]
    for start in range(0, len(lines), batch_size):
        stop = min(start + batch_size, len(lines))
        yield start, stop, data[int(offsets[start]) : int(offsets[stop])].to_pybytes()


def body_of(lines: pa.Array, positions: np.ndarray) -> bytes:
    """The newline-terminated lines at `positions` as one body."""
    return "".join(lines.take(pa.array(positions)).to_pylist()).encode()


def expected_series_counts(
    prepared: PreparedFile,
) -> dict[tuple[tuple[str, str], ...], dict[str, int]]:
    """Per series (sorted non-empty tags): how many values each field should hold."""
    frame = prepared.accepted
    result: dict[tuple[tuple[str, str], ...], dict[str, int]] = {}
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
    value_text = {c: _floats(frame[c].to_numpy()).take(take).to_pylist() for c in columns}
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


def quarantine_parquet(rejected: pd.DataFrame) -> bytes:
    """The rejected rows, each with its reason, as Parquet (all source values as text)."""
    buffer = io.BytesIO()
    table = pa.Table.from_pandas(rejected.astype({ROW: "int64"}), preserve_index=False)
    pq.write_table(table, buffer, compression="snappy")
    return buffer.getvalue()


def file_rejection(key: str, reason: str, detail: str, rows: int | None) -> pd.DataFrame:
    """The quarantine record of a file rejected whole: one row, `_row` -1 (the whole file)."""
    return pd.DataFrame(
        {
            ROW: np.array([-1], dtype=np.int64),
            "reason": [reason],
            "detail": [detail],
            "source_key": [key],
            "file_rows": pd.array([rows], dtype="Int64"),
        }
    )


def parquet_row_count(data: bytes) -> int | None:
    """Rows the file's footer declares, or None when it is not readable Parquet."""
    try:
        return int(pq.ParquetFile(io.BytesIO(data)).metadata.num_rows)
    except (pa.ArrowException, OSError):
        return None


def reasons_known(reasons: dict[str, int]) -> bool:
    return set(reasons) <= set(REASONS)
