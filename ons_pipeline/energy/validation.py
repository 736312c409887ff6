"""Energy Parquet -> validated rows (ARCHITECTURE.md section 4) and their quarantine records.

Vectorised throughout: tag columns are categoricals, so string rules run once per distinct
value; per-row work is numpy/pyarrow. No Dagster here. The rows this module accepts become
InfluxDB line protocol (`line_protocol`) and Timestream records (`timestream_records`).
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field, replace
from typing import Any, Final

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ons_pipeline.energy.schema import (
    DIMENSION,
    MAX_TAG_BYTES,
    MEASUREMENT,
    OPTIONAL_TAGS,
    REASONS,
    WIDE_FIELDS,
    FileRejectedError,
)

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
        return count_reasons(self.rejected)

    def without(self, positions: np.ndarray) -> PreparedFile:
        """The file as if the accepted rows at `positions` had never been accepted."""
        if not len(positions):
            return self
        kept = np.setdiff1d(np.arange(len(self.accepted)), positions)
        return replace(self, accepted=self.accepted.iloc[kept])


def count_reasons(rejected: pd.DataFrame) -> dict[str, int]:
    """Rejected rows per reason (the metadata and metrics every load reports)."""
    if rejected.empty:
        return {}
    return {str(k): int(v) for k, v in rejected["reason"].value_counts().items()}


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


def with_refused(
    prepared: PreparedFile, positions: np.ndarray, reason: str, details: list[str]
) -> pd.DataFrame:
    """The file's rejected rows plus the accepted rows a store refused (by position)."""
    if not len(positions):
        return prepared.rejected
    refused = rejected_rows(prepared, positions, reason, details)
    return pd.concat([prepared.rejected, refused], ignore_index=True)


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
