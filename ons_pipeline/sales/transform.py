"""ToteSys source rows to the sales star schema: pure, vectorised, no Dagster.

Every input row ends in exactly one place: a star table, the quarantine (with a reason), or
one of two counted folds (an exact re-delivery, an older version of a dimension row).
`StarSchemaResult.accounting` counts those places per source table so the assets can prove
rows in = rows written + rows quarantined (+ the folds).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ons_pipeline.sales.schema import (
    CURRENCY_NAMES,
    LINE_NO,
    PACKET_ID,
    PRICE_TYPE,
    PRIMARY_KEYS,
    QUARANTINE_SCHEMA,
    SOURCE_COLUMNS,
    STAR_SCHEMAS,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

SOURCE_TABLES: Final = tuple(SOURCE_COLUMNS)
STAR_TABLES: Final = tuple(STAR_SCHEMAS)

_TIMESTAMP_RE: Final = r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d{1,6})?$"
_DATE_RE: Final = r"^\d{4}-\d{2}-\d{2}$"
# The same shapes byte by byte: "d" an ASCII digit (`\d`), else the bytes allowed there. A
# timestamp may stop after the seconds or after one to six digits of their fraction.
_DATE_SHAPE: Final = ("d", "d", "d", "d", "-", "d", "d", "-", "d", "d")
_TIME_SHAPE: Final = (*_DATE_SHAPE, "T ", "d", "d", ":", "d", "d", ":", "d", "d")
_SHAPES: Final = {"date": _DATE_SHAPE, "timestamp": (*_TIME_SHAPE, ".", *"dddddd")}
_WIDTHS: Final = {"date": [10], "timestamp": [19, 21, 22, 23, 24, 25, 26]}
_MAX_PRICE: Final = 99_999_999.99  # decimal(10, 2)
_ORDER: Final = "_order"
_SOURCE_ROW: Final = "_source_row"  # position in the caller's frame, to quarantine the raw row
_INT64: Final = pd.ArrowDtype(pa.int64())

# Which star table a source table's surviving rows end up in (department only feeds dim_staff).
WRITTEN_TO: Final[dict[str, str | None]] = {
    "sales_order": "fact_sales_order",
    "staff": "dim_staff",
    "department": None,
    "address": "dim_location",
    "currency": "dim_currency",
    "design": "dim_design",
    "counterparty": "dim_counterparty",
}


@dataclass(frozen=True)
class StarSchemaResult:
    tables: dict[str, pd.DataFrame]
    quarantine: pd.DataFrame
    accounting: pd.DataFrame


def to_star_schema(raw: Mapping[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """The seven full star tables plus `quarantine` from every source row seen so far.

    `raw` maps source table names to DataFrames of JSON-native values (as `json.loads` gives
    them, or as typed by the packet reader); missing tables count as empty.
    """
    result = build_star_schema(raw)
    return {**result.tables, "quarantine": result.quarantine}


def build_star_schema(raw: Mapping[str, pd.DataFrame]) -> StarSchemaResult:
    """`to_star_schema` with the per-source-table accounting the asset checks use."""
    quarantine: list[pd.DataFrame] = []
    counts: dict[str, dict[str, int]] = {}
    valid: dict[str, pd.DataFrame] = {}
    frames: dict[str, pd.DataFrame] = {}
    for table in SOURCE_TABLES:
        frame = raw.get(table)
        frame = frame if frame is not None else pd.DataFrame()
        frames[table] = frame
        typed, rejected, deduplicated = normalise_source(table, frame)
        quarantine.append(rejected)
        valid[table] = typed
        counts[table] = {
            "rows_in": len(frame),
            "deduplicated": deduplicated,
            "superseded": 0,
        }

    latest: dict[str, pd.DataFrame] = {}
    for table in ("staff", "department", "address", "currency", "design", "counterparty"):
        latest[table] = _latest_versions(valid[table], PRIMARY_KEYS[table])
        counts[table]["superseded"] = len(valid[table]) - len(latest[table])

    departments = latest["department"]
    staff = latest["staff"]
    orphan_staff = ~staff["department_id"].isin(departments["department_id"])
    quarantine.append(
        _reject(
            "staff",
            staff[orphan_staff],
            frames["staff"],
            "staff_without_department",
            "department_id",
        )
    )
    staff = staff[~orphan_staff].merge(
        departments[["department_id", "department_name", "location"]],
        on="department_id",
        how="left",
        validate="many_to_one",
    )

    addresses = latest["address"]
    counterparties = latest["counterparty"]
    homeless = ~counterparties["legal_address_id"].isin(addresses["address_id"])
    quarantine.append(
        _reject(
            "counterparty",
            counterparties[homeless],
            frames["counterparty"],
            "missing_dimension",
            "legal_address_id",
        )
    )
    counterparties = counterparties[~homeless].merge(
        addresses.add_prefix("legal_"),
        left_on="legal_address_id",
        right_on="legal_address_id",
        how="left",
        validate="many_to_one",
    )

    tables: dict[str, pd.DataFrame] = {
        "dim_staff": _frame(
            "dim_staff",
            {
                "staff_id": staff["staff_id"],
                "first_name": staff["first_name"],
                "last_name": staff["last_name"],
                "department_name": staff["department_name"],
                "location": staff["location"],
                "email_address": staff["email_address"],
            },
        ),
        "dim_location": _frame(
            "dim_location",
            {
                "location_id": addresses["address_id"],
                **{
                    column: addresses[column]
                    for column in (
                        "address_line_1",
                        "address_line_2",
                        "district",
                        "city",
                        "postal_code",
                        "country",
                        "phone",
                    )
                },
            },
        ),
        "dim_currency": _frame(
            "dim_currency",
            {
                "currency_id": latest["currency"]["currency_id"],
                "currency_code": latest["currency"]["currency_code"],
                "currency_name": latest["currency"]["currency_code"].map(CURRENCY_NAMES),
            },
        ),
        "dim_design": _frame(
            "dim_design",
            {
                column: latest["design"][column]
                for column in ("design_id", "design_name", "file_location", "file_name")
            },
        ),
        "dim_counterparty": _frame(
            "dim_counterparty",
            {
                "counterparty_id": counterparties["counterparty_id"],
                "counterparty_legal_name": counterparties["counterparty_legal_name"],
                "counterparty_legal_address_line_1": counterparties["legal_address_line_1"],
                "counterparty_legal_address_line_2": counterparties["legal_address_line_2"],
                "counterparty_legal_district": counterparties["legal_district"],
                "counterparty_legal_city": counterparties["legal_city"],
                "counterparty_legal_postal_code": counterparties["legal_postal_code"],
                "counterparty_legal_country": counterparties["legal_country"],
                "counterparty_legal_phone_number": counterparties["legal_phone"],
            },
        ),
    }

    orders, order_rejects = _fact_rows(valid["sales_order"], tables, frames["sales_order"])
    quarantine.append(order_rejects)
    tables["fact_sales_order"] = _fact_frame(orders)
    tables["dim_date"] = _dim_date(tables["fact_sales_order"])
    tables = {name: tables[name] for name in STAR_TABLES}

    quarantine_frame = _frame("quarantine", _concat_quarantine(quarantine))
    per_table = quarantine_frame["table"].value_counts()
    for table in SOURCE_TABLES:
        target = WRITTEN_TO[table]
        counts[table]["quarantined"] = int(per_table.get(table, 0))
        counts[table]["written"] = len(tables[target]) if target else len(departments)
    accounting = pd.DataFrame.from_dict(counts, orient="index").rename_axis("table").reset_index()
    return StarSchemaResult(tables=tables, quarantine=quarantine_frame, accounting=accounting)


def normalise_source(table: str, frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    """Typed valid rows, quarantined rows, and how many exact re-deliveries were folded.

    The first failing rule names a row's reason: `missing_required_key`, then `invalid_value`,
    then the table's own rules (`negative_units_sold`, `unknown_currency_code`).
    """
    columns = SOURCE_COLUMNS[table]
    n = len(frame)
    reason = np.full(n, None, dtype=object)
    detail = np.full(n, None, dtype=object)
    flagged = np.zeros(n, dtype=bool)

    def flag(mask: np.ndarray, code: str, why: str | None) -> None:
        hit = mask & ~flagged
        reason[hit] = code
        detail[hit] = why
        flagged[hit] = True

    typed: dict[str, pd.Series] = {}
    for name, (_, required) in columns.items():
        if required:
            absent = frame[name].isna().to_numpy() if name in frame else np.ones(n, dtype=bool)
            flag(absent, "missing_required_key", name)
    for name, (kind, _) in columns.items():
        if name not in frame.columns:
            typed[name] = pd.Series([None] * n, index=frame.index, dtype=object)
            continue
        values, bad = _coerce(frame[name], kind)
        typed[name] = values
        flag(bad, "invalid_value", name)
    if table == "sales_order":
        flag(
            typed["units_sold"].lt(0).to_numpy(dtype=bool, na_value=False),
            "negative_units_sold",
            None,
        )
    if table == "currency":
        known = typed["currency_code"].isin(list(CURRENCY_NAMES)).to_numpy()
        flag(~known & typed["currency_code"].notna().to_numpy(), "unknown_currency_code", None)

    rejected = _quarantine_rows(
        table, frame[flagged], pd.Series(reason[flagged]), pd.Series(detail[flagged])
    )
    kept = np.flatnonzero(~flagged)
    key = typed[PRIMARY_KEYS[table]].to_numpy(dtype="int64", na_value=0)[kept]
    updated = typed["last_updated"].to_numpy(dtype="datetime64[us]").view(np.int64)[kept]
    order = _delivery_order(frame)[kept]
    # Sorted once here by (key, last_updated, delivery): the latest version of a key is its
    # last row, and exact re-deliveries share a (key, last_updated) run next to each other.
    # np.lexsort is stable, so rows already in delivery order (a first load) need no third key.
    in_order = bool((order[1:] > order[:-1]).all())
    ranked = np.lexsort((updated, key) if in_order else (order, updated, key))
    rows = kept[ranked]
    out = pd.DataFrame(typed, index=frame.index).iloc[rows].reset_index(drop=True)
    out[_ORDER] = order[ranked]
    out[_SOURCE_ROW] = rows.astype(np.int64)
    same = _same_as_next(key[ranked], updated[ranked])
    in_run = np.zeros(len(rows), dtype=bool)
    in_run[:-1] |= same
    in_run[1:] |= same
    repeated = np.zeros(len(rows), dtype=bool)
    if in_run.any():  # only rows sharing (key, last_updated) can be exact re-deliveries
        repeated[in_run] = out[in_run].duplicated(subset=list(columns), keep="first").to_numpy()
    out = out[~repeated].reset_index(drop=True) if repeated.any() else out
    return out, rejected, int(repeated.sum())


def _same_as_next(*keys: np.ndarray) -> np.ndarray:
    """Whether each sorted row but the last has the same keys as the row after it."""
    if not len(keys[0]):
        return np.zeros(0, dtype=bool)
    same = np.ones(len(keys[0]) - 1, dtype=bool)
    for values in keys:
        same &= values[1:] == values[:-1]
    return same


def _delivery_order(frame: pd.DataFrame) -> np.ndarray:
    """Rank rows by delivery (packet, line) so a later delivery wins a tie on last_updated."""
    if PACKET_ID in frame.columns and LINE_NO in frame.columns:
        keys = (frame[LINE_NO].to_numpy(dtype="int64"), frame[PACKET_ID].to_numpy(dtype="int64"))
        if _delivery_sorted(*keys):
            return np.arange(len(frame), dtype=np.int64)
        order = np.empty(len(frame), dtype=np.int64)
        order[np.lexsort(keys)] = np.arange(len(frame))
        return order
    return np.arange(len(frame), dtype=np.int64)


def _delivery_sorted(lines: np.ndarray, packets: np.ndarray) -> bool:
    """Whether rows are already in (packet, line) order, as a history merged in order is."""
    step = packets[1:] - packets[:-1]
    return bool(((step > 0) | ((step == 0) & (lines[1:] > lines[:-1]))).all())


def _coerce(values: pd.Series, kind: str) -> tuple[pd.Series, np.ndarray]:
    """A column in its typed form and the mask of non-null values that are not of its kind."""
    if kind == "int" and values.dtype == _INT64:  # the packet reader's type: nothing to check
        return values, np.zeros(len(values), dtype=bool)
    if kind in {"int", "price"}:
        numeric, bad = _numbers(values)
        if kind == "int":
            fractional = numeric.notna() & (numeric != np.floor(numeric))
            bad |= (fractional | (numeric.abs() >= 2**63)).to_numpy()
            whole = pa.array(numeric.where(~bad).to_numpy(), from_pandas=True).cast(pa.int64())
            return pd.Series(whole, index=values.index, dtype=_INT64), bad
        cents = np.rint(numeric * 100)
        inexact = numeric.notna() & ((cents / 100 != numeric) | (numeric.abs() > _MAX_PRICE))
        bad |= inexact.to_numpy()
        return numeric.where(~bad), bad
    text, bad = _strings(values)
    if kind == "str":
        return pd.Series(text.to_pandas(types_mapper=pd.ArrowDtype), index=values.index), bad
    pattern = _TIMESTAMP_RE if kind == "timestamp" else _DATE_RE
    if _all_shaped(text, kind):
        candidates = text  # every value has the shape (the norm): no copy of the strings
    else:
        shaped = pc.fill_null(pc.match_substring_regex(text, pattern), False)
        candidates = pc.if_else(shaped, text, pa.scalar(None, pa.string()))
    try:
        parsed = pc.cast(candidates, pa.timestamp("us")).to_numpy(zero_copy_only=False)
    except pa.ArrowInvalid:  # a well-shaped but impossible value, e.g. month 13
        parsed = pd.to_datetime(candidates.to_pandas(), format="ISO8601", errors="coerce").to_numpy(
            dtype="datetime64[us]"
        )
    stamps = pd.Series(parsed, index=values.index, dtype="datetime64[us]")
    bad |= values.notna().to_numpy() & stamps.isna().to_numpy()
    return stamps, bad


def _all_shaped(text: pa.Array | pa.ChunkedArray, kind: str) -> bool:
    """Whether every value matches `_TIMESTAMP_RE` (or `_DATE_RE`), checked without a regex.

    The norm is ASCII text of one or two widths (`...:16.797000`, and `...:16` where the
    microseconds are zero): padded to one width, its bytes form a matrix whose columns are
    checked at once, several times faster than the regex per value. False (any null, other
    widths, any other byte) sends the column through the regex, which names the rows.
    """
    # One check over a copy beats one per chunk (the JSON reader makes one per 1 MiB).
    whole = text.combine_chunks() if isinstance(text, pa.ChunkedArray) else text
    return not len(whole) or _chunk_shaped(whole, kind)


def _chunk_shaped(chunk: pa.Array, kind: str) -> bool:
    shape = _SHAPES[kind]
    if chunk.null_count or not pa.types.is_string(chunk.type):
        return False
    lengths = np.diff(_offsets(chunk))
    if not np.isin(lengths, _WIDTHS[kind]).all():
        return False
    if (lengths != lengths[0]).any():
        chunk = pc.ascii_rpad(chunk, len(shape), " ")  # any non-ASCII byte fails below
    bounds = _offsets(chunk)
    width = int(bounds[1] - bounds[0])
    if bounds[-1] - bounds[0] != width * len(chunk):
        return False
    data = np.frombuffer(chunk.buffers()[2], dtype=np.uint8)
    text = data[bounds[0] : bounds[-1]].reshape(len(chunk), width)
    shortest = int(lengths.min())
    for at, allowed in enumerate(shape[:width]):
        column = text[:, at]
        if allowed == "d":
            fits = column - np.uint8(ord("0")) < 10
        else:
            fits = np.zeros(len(column), dtype=bool)
            for byte in allowed.encode():
                fits |= column == byte
        if at >= shortest:  # past a shorter value's end: the padding, not checked
            fits |= lengths <= at
        if not fits.all():
            return False
    return True


def _offsets(chunk: pa.Array) -> np.ndarray:
    """A string array's value offsets, without a copy."""
    offsets = np.frombuffer(chunk.buffers()[1], dtype=np.int32)
    return offsets[chunk.offset : chunk.offset + len(chunk) + 1]


def _numbers(values: pd.Series) -> tuple[pd.Series, np.ndarray]:
    notna = values.notna().to_numpy()
    if pd.api.types.is_bool_dtype(values.dtype):
        return pd.Series(np.nan, index=values.index), notna
    if pd.api.types.is_numeric_dtype(values.dtype):
        return values.astype("float64"), np.zeros(len(values), dtype=bool)
    # Object columns only come from hand-built or line-by-line parsed rows, never the fast path.
    is_number = values.map(
        lambda v: isinstance(v, int | float) and not isinstance(v, bool)
    ).to_numpy(dtype=bool)
    numeric = pd.to_numeric(values.where(is_number), errors="coerce").astype("float64")
    return numeric, notna & ~is_number


def _strings(values: pd.Series) -> tuple[pa.Array, np.ndarray]:
    """The column as an Arrow string array (non-strings nulled) and the non-string mask."""
    dtype = values.dtype
    if isinstance(dtype, pd.ArrowDtype) and pa.types.is_string(dtype.pyarrow_dtype):
        return pa.array(values.array), np.zeros(len(values), dtype=bool)
    if isinstance(dtype, pd.StringDtype):
        return pa.array(values.astype(object), type=pa.string(), from_pandas=True), np.zeros(
            len(values), dtype=bool
        )
    is_text = values.map(lambda v: isinstance(v, str)).to_numpy(dtype=bool)
    text = pa.array(values.where(is_text, None).astype(object), type=pa.string(), from_pandas=True)
    return text, values.notna().to_numpy() & ~is_text


def _latest_versions(frame: pd.DataFrame, key: str) -> pd.DataFrame:
    """The last row of each key (`normalise_source` sorts by key, last_updated, delivery)."""
    keys = frame[key].to_numpy(dtype="int64")
    last = np.append(keys[1:] != keys[:-1], True) if len(keys) else np.zeros(0, dtype=bool)
    return frame[last].reset_index(drop=True)


def _fact_rows(
    orders: pd.DataFrame, dims: Mapping[str, pd.DataFrame], source: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Fact history rows and the quarantined ones (conflicting versions, dangling keys).

    `orders` comes sorted by sales_order_id, last_updated and delivery (`normalise_source`).
    """
    conflicting = np.zeros(len(orders), dtype=bool)  # a later row has the same version
    conflicting[:-1] = _same_as_next(
        orders["sales_order_id"].to_numpy(dtype="int64"),
        orders["last_updated"].to_numpy(dtype="datetime64[us]").view(np.int64),
    )
    rejects = [
        _reject(
            "sales_order",
            orders[conflicting],
            source,
            "conflicting_version",
            "a later delivery of the same sales_order_id and last_updated differs",
        )
    ]
    kept = orders[~conflicting]
    checks = (
        ("staff_id", "dim_staff", "staff_id"),
        ("counterparty_id", "dim_counterparty", "counterparty_id"),
        ("currency_id", "dim_currency", "currency_id"),
        ("design_id", "dim_design", "design_id"),
        ("agreed_delivery_location_id", "dim_location", "location_id"),
    )
    dangling = np.full(len(kept), None, dtype=object)
    for column, dim, dim_key in reversed(checks):  # the first failing check names the row
        known = np.isin(
            kept[column].to_numpy(dtype="int64"), dims[dim][dim_key].to_numpy(dtype="int64")
        )
        dangling[~known] = column
    has_dangling = pd.notna(dangling)
    rejects.append(
        _reject(
            "sales_order",
            kept[has_dangling],
            source,
            "missing_dimension",
            pd.Series(dangling[has_dangling]),
        )
    )
    kept = kept[~has_dangling] if has_dangling.any() else kept
    return kept.reset_index(drop=True), pd.concat(rejects, ignore_index=True)


def _fact_frame(orders: pd.DataFrame) -> pd.DataFrame:
    created = orders["created_at"]
    updated = orders["last_updated"]
    identity = pd.DataFrame(
        {"id": orders["sales_order_id"].astype("int64"), "at": updated.astype("int64")}
    )
    record_id = (
        pd.util.hash_pandas_object(identity, index=False).to_numpy() >> np.uint64(1)
    ).astype(np.int64)
    return _frame(
        "fact_sales_order",
        {
            "sales_record_id": record_id,
            "sales_order_id": orders["sales_order_id"],
            "created_date": _dates(created),
            "created_time": _times(created),
            "last_updated_date": _dates(updated),
            "last_updated_time": _times(updated),
            "sales_staff_id": orders["staff_id"],
            "counterparty_id": orders["counterparty_id"],
            "units_sold": orders["units_sold"],
            "unit_price": pa.array(orders["unit_price"].to_numpy(dtype="float64")).cast(PRICE_TYPE),
            "currency_id": orders["currency_id"],
            "design_id": orders["design_id"],
            "agreed_payment_date": _dates(orders["agreed_payment_date"]),
            "agreed_delivery_date": _dates(orders["agreed_delivery_date"]),
            "agreed_delivery_location_id": orders["agreed_delivery_location_id"],
        },
    )


def _dim_date(facts: pd.DataFrame) -> pd.DataFrame:
    columns = ("created_date", "last_updated_date", "agreed_payment_date", "agreed_delivery_date")
    referenced = pa.chunked_array(
        [pa.array(facts[column].array, type=pa.date32()) for column in columns], type=pa.date32()
    )
    days = pc.unique(referenced).sort()
    stamps = pd.DatetimeIndex(days.cast(pa.timestamp("s")).to_numpy(zero_copy_only=False))
    return _frame(
        "dim_date",
        {
            "date_id": days,
            "year": stamps.year,
            "month": stamps.month,
            "day": stamps.day,
            "day_of_week": stamps.dayofweek,
            "day_name": stamps.day_name(),
            "month_name": stamps.month_name(),
            "quarter": stamps.quarter,
        },
    )


def _dates(stamps: pd.Series) -> pa.Array:
    return pa.array(stamps.to_numpy(dtype="datetime64[us]")).cast(pa.date32())


def _times(stamps: pd.Series) -> pa.Array:
    micros = stamps.to_numpy(dtype="datetime64[us]").astype(np.int64) % 86_400_000_000
    return pa.array(micros, type=pa.int64()).cast(pa.time64("us"))


def _frame(name: str, columns: Mapping[str, object]) -> pd.DataFrame:
    """A star (or quarantine) table with its contract's exact Arrow types."""
    schema = QUARANTINE_SCHEMA if name == "quarantine" else STAR_SCHEMAS[name]
    arrays = []
    for field in schema:
        values = columns[field.name]
        if isinstance(values, pa.Array | pa.ChunkedArray):
            array = values
        elif isinstance(values, pd.Series | pd.Index):
            array = pa.Array.from_pandas(values)
        else:
            array = pa.array(values, from_pandas=True)
        arrays.append(array.cast(field.type))
    return pa.Table.from_arrays(arrays, schema=schema).to_pandas(types_mapper=pd.ArrowDtype)


def _reject(
    table: str,
    rows: pd.DataFrame,
    source: pd.DataFrame,
    reason: str | pd.Series,
    detail: str | pd.Series | None,
) -> pd.DataFrame:
    """Quarantine typed rows as the raw rows they came from (JSON-native, with provenance)."""
    if rows.empty:
        return _quarantine_rows(table, rows, reason, detail)
    original = source.iloc[rows[_SOURCE_ROW].to_numpy()]
    return _quarantine_rows(
        table,
        original,
        reason.set_axis(original.index) if isinstance(reason, pd.Series) else reason,
        detail.set_axis(original.index) if isinstance(detail, pd.Series) else detail,
    )


def _quarantine_rows(
    table: str,
    rows: pd.DataFrame,
    reason: str | pd.Series,
    detail: str | pd.Series | None,
) -> pd.DataFrame:
    """Quarantine entries carrying the row as JSON so nothing about it is lost."""
    if rows.empty:
        return pd.DataFrame(columns=[field.name for field in QUARANTINE_SCHEMA])
    source = [c for c in rows.columns if not c.startswith("_")]
    payload = rows[source].copy()
    for column in payload.columns:
        if pd.api.types.is_datetime64_any_dtype(payload[column]):
            payload[column] = payload[column].dt.strftime("%Y-%m-%dT%H:%M:%S.%f")
    records = payload.to_json(orient="records", lines=True, date_format="iso").splitlines()
    key = PRIMARY_KEYS[table]
    return pd.DataFrame(
        {
            "table": table,
            "id": rows[key].map(_id_text).to_numpy() if key in rows else None,
            "reason": reason.to_numpy() if isinstance(reason, pd.Series) else reason,
            "detail": detail.to_numpy() if isinstance(detail, pd.Series) else detail,
            "packet_id": rows[PACKET_ID].to_numpy() if PACKET_ID in rows else None,
            "line": rows[LINE_NO].to_numpy() if LINE_NO in rows else None,
            "record": records,
        }
    )


def _concat_quarantine(parts: list[pd.DataFrame]) -> dict[str, object]:
    columns = [field.name for field in QUARANTINE_SCHEMA]
    non_empty = [part for part in parts if not part.empty]
    merged = pd.concat(non_empty, ignore_index=True) if non_empty else pd.DataFrame(columns=columns)
    return {column: merged[column] for column in columns}


def _id_text(value: object) -> str | None:
    if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


@dataclass(frozen=True)
class StarIncrement:
    """What new sales_order rows add to the star schema when no dimension source changed.

    `tables` holds only the new rows of `fact_sales_order` and `dim_date` (the other star
    tables cannot change); `accounting` counts this run's rows only, so cumulative figures
    are the previous ones plus these.
    """

    tables: dict[str, pd.DataFrame]
    quarantine: pd.DataFrame
    accounting: pd.DataFrame


def order_versions(orders: pd.DataFrame) -> pd.DataFrame:
    """The typed (sales_order_id, last_updated) of every valid sales_order row.

    The versions a later row can conflict with: what an index of the raw history keeps.
    """
    return _version_keys(normalise_source("sales_order", orders)[0])


def _version_keys(typed: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "sales_order_id": typed["sales_order_id"].to_numpy(dtype="int64"),
            "last_updated": typed["last_updated"].to_numpy(dtype="datetime64[us]"),
        }
    )


def build_star_increment(
    new_orders: pd.DataFrame,
    known_versions: pd.DataFrame,
    dimensions: Mapping[str, pd.DataFrame],
    known_dates: pd.Series,
) -> StarIncrement | None:
    """The rows a full rebuild would add, from the new sales_order rows alone; None if it can't.

    Equal, row for row and in order, to `changed_rows` of `build_star_schema` over the whole
    history when only sales_order rows are new, `new_orders` holds just the rows the raw
    history lacked (identical re-deliveries already folded, as `merge_history` does),
    `known_versions` are the typed versions of the stored rows (`order_versions`),
    `dimensions` the current dimension tables and `known_dates` the current
    `dim_date.date_id`. Facts parked as missing_dimension stay parked because no dimension
    changed. Returns None when a new valid row shares (sales_order_id, last_updated) with a
    stored one: the later delivery would replace a stored fact (the stored one becomes a
    conflicting_version), which only a full rebuild expresses. Delivery order matters only
    for such a collision, so packets arriving out of order need no other care.
    """
    typed, rejected, deduplicated = normalise_source("sales_order", new_orders)
    new_keys = _version_keys(typed)
    known = known_versions.astype({"sales_order_id": "int64", "last_updated": "datetime64[us]"})
    if len(new_keys.merge(known, on=["sales_order_id", "last_updated"], how="inner")):
        return None
    orders, order_rejects = _fact_rows(typed, dimensions, new_orders)
    facts = _fact_frame(orders)
    dates = _dim_date(facts)
    known_days = pa.array(pd.Series(known_dates).array, type=pa.date32())
    is_known = pc.is_in(pa.array(dates["date_id"].array, type=pa.date32()), known_days)
    quarantine = _frame("quarantine", _concat_quarantine([rejected, order_rejects]))
    accounting = pd.DataFrame(
        [
            {
                "table": "sales_order",
                "rows_in": len(new_orders),
                "deduplicated": deduplicated,
                "superseded": 0,
                "quarantined": len(quarantine),
                "written": len(facts),
            }
        ]
    )
    return StarIncrement(
        tables={
            "fact_sales_order": facts,
            "dim_date": dates[~is_known.to_numpy(zero_copy_only=False)].reset_index(drop=True),
        },
        quarantine=quarantine,
        accounting=accounting,
    )


def newest_version(orders: pd.DataFrame) -> np.datetime64 | None:
    """The latest readable `last_updated` of any sales_order row, valid or quarantined.

    Stored beside the history, it makes the usual packet cheap to place: a row updated after
    it can neither repeat a stored row nor share a stored (sales_order_id, last_updated).
    """
    stamps, _ = _coerce(orders["last_updated"], "timestamp") if len(orders) else (None, None)
    newest = None if stamps is None else stamps.max()
    return None if newest is None or pd.isna(newest) else np.datetime64(newest, "us")


def all_newer_than(orders: pd.DataFrame, watermark: np.datetime64 | None) -> bool:
    """Whether every row has a readable `last_updated` later than `watermark` (None: any)."""
    if not len(orders):
        return True
    stamps, _ = _coerce(orders["last_updated"], "timestamp")
    if stamps.isna().any():
        return False
    return watermark is None or bool((stamps.to_numpy(dtype="datetime64[us]") > watermark).all())
