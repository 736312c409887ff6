"""A local Timestream Query engine over the records the local timestream-write has stored.

moto's timestream-query answers canned results, so nothing stored locally could be read
back. Here each table keeps its records columnar (Arrow), upserted as Timestream does (same
dimensions, measure name and time: the highest version wins, then the latest write), and a
query runs on DuckDB over those tables, with Timestream's few time functions as macros. The
answer keeps the real API's shape: `QueryId`, `ColumnInfo[].Name/Type.ScalarType`,
`Rows[].Data[].ScalarValue | NullValue`, `NextToken` while rows remain, pages of at most
`MaxRows` (1-1000) rows and about 1 MB, and `QueryStatus`. A statement that is not one
SELECT, or that DuckDB cannot bind, gets `ValidationException`.

The table model is Timestream's: one VARCHAR column per dimension, `measure_name`, `time`
(TIMESTAMP, nanoseconds), `measure_value::<type>` for single-measure records and one column
per measure for multi-measure records.

Local stack only (DuckDB is a development dependency); no Dagster here.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
import re
import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

if TYPE_CHECKING:
    from collections.abc import Callable, Hashable, Mapping

    Put = Callable[[str, str, bytes], None]  # (bucket, key, body) into S3

MAX_ROWS_LIMIT: Final = 1000  # the API's MaxRows range is 1..1000
MAX_PAGE_BYTES: Final = 1_000_000  # without MaxRows a page holds about 1 MB
MAX_RECORDS_PER_WRITE: Final = 100
_CACHED_RESULTS: Final = 32
_TIME_FACTORS: Final = {"SECONDS": 10**9, "MILLISECONDS": 10**6, "MICROSECONDS": 10**3}
_TIME_FACTORS_NS: Final = {**_TIME_FACTORS, "NANOSECONDS": 1}
_MEASURE_TYPES: Final = {
    "DOUBLE": pa.float64(),
    "BIGINT": pa.int64(),
    "VARCHAR": pa.string(),
    "BOOLEAN": pa.bool_(),
}
_VERSION: Final = "_version"
_SEQ: Final = "_seq"
# Each table's content gets a number no other content ever had, so a query's catalog can tell
# whether the copy it holds is current (even of a table dropped and made again).
_CONTENT_VERSIONS: Final = itertools.count(1)
# Timestream's time functions that DuckDB spells differently.
_MACROS: Final = (
    "CREATE MACRO from_nanoseconds(n) AS make_timestamp_ns(CAST(n AS BIGINT))",
    "CREATE MACRO from_milliseconds(n) AS make_timestamp_ns(CAST(n AS BIGINT) * 1000000)",
    "CREATE MACRO to_nanoseconds(t) AS epoch_ns(t)",
    "CREATE MACRO to_milliseconds(t) AS epoch_ms(t)",
)


class TimestreamValidationError(ValueError):
    """The request is not one Timestream would run; the message is the API's error text."""


def _convert(value: str, measure_type: str) -> Any:
    if measure_type == "DOUBLE":
        return float(value)
    if measure_type == "BIGINT":
        return int(value)
    if measure_type == "BOOLEAN":
        return value.lower() == "true"
    return value


class TableStore:
    """One table's records, columnar; `snapshot()` is the table as a query sees it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: list[dict[str, Any]] = []
        self._parts: list[pa.Table] = []
        self._current: pa.Table | None = None  # deduplicated, with _version and _seq
        self._seq = 0
        self.version = 0  # of the content `snapshot` returns (`_CONTENT_VERSIONS`)
        self.dimensions: dict[str, None] = {}  # ordered set, in order of first appearance
        self.measures: dict[str, pa.DataType] = {}

    def write(self, records: list[dict[str, Any]], common: Mapping[str, Any]) -> None:
        """Records as WriteRecords sends them; `CommonAttributes` fill what a record omits.

        Raises:
            TimestreamValidationError: too many records, or a record Timestream would refuse.
        """
        if len(records) > MAX_RECORDS_PER_WRITE:
            raise TimestreamValidationError(
                f"WriteRecords takes at most {MAX_RECORDS_PER_WRITE} records, got {len(records)}"
            )
        rows = [self._row({**common, **record}, common) for record in records]
        with self._lock:
            self._pending.extend(rows)

    def _row(self, record: dict[str, Any], common: Mapping[str, Any]) -> dict[str, Any]:
        dimensions = {d["Name"]: d["Value"] for d in common.get("Dimensions", [])}
        dimensions |= {d["Name"]: d["Value"] for d in record.get("Dimensions", [])}
        unit = record.get("TimeUnit", "MILLISECONDS")
        if unit not in _TIME_FACTORS_NS or "Time" not in record or "MeasureName" not in record:
            raise TimestreamValidationError(f"record lacks Time/MeasureName or has {unit=}")
        row: dict[str, Any] = {
            **dimensions,
            "measure_name": record["MeasureName"],
            "time": int(record["Time"]) * _TIME_FACTORS_NS[unit],
            _VERSION: int(record.get("Version", 1)),
        }
        kind = record.get("MeasureValueType", "DOUBLE")
        if kind == "MULTI":
            for measure in record.get("MeasureValues", []):
                row[measure["Name"]] = _convert(measure["Value"], measure["Type"])
                self.measures.setdefault(measure["Name"], _MEASURE_TYPES[measure["Type"]])
        else:
            if kind not in _MEASURE_TYPES:
                raise TimestreamValidationError(f"unsupported MeasureValueType {kind}")
            column = f"measure_value::{kind.lower()}"
            row[column] = _convert(record["MeasureValue"], kind)
            self.measures.setdefault(column, _MEASURE_TYPES[kind])
        for name in dimensions:
            self.dimensions.setdefault(name, None)
        return row

    def append(self, table: pa.Table) -> None:
        """Rows already in the table model (bulk seeding); `_version` optional (default 1).

        Columns other than `measure_name`, `time` and `_version` that are strings are
        dimensions unless named `measure_value::varchar`; the rest are measures.
        """
        for name, kind in zip(table.column_names, table.schema.types, strict=True):
            if name in ("measure_name", "time", _VERSION):
                continue
            if pa.types.is_string(kind) and name != "measure_value::varchar":
                self.dimensions.setdefault(name, None)
            else:
                self.measures.setdefault(name, kind)
        if _VERSION not in table.column_names:
            table = table.append_column(_VERSION, pa.array(np.ones(len(table), np.int64)))
        table = table.set_column(
            table.column_names.index("time"), "time", pc.cast(table["time"], pa.timestamp("ns"))
        )
        with self._lock:
            self._parts.append(self._numbered(table))

    def _numbered(self, table: pa.Table) -> pa.Table:
        seq = np.arange(self._seq, self._seq + len(table), dtype=np.int64)
        self._seq += len(table)
        return table.append_column(_SEQ, pa.array(seq))

    def _pending_table(self) -> pa.Table:
        columns = [*self.dimensions, "measure_name", "time", *self.measures, _VERSION]
        types = {"measure_name": pa.string(), "time": pa.int64(), _VERSION: pa.int64()}
        types |= {d: pa.string() for d in self.dimensions} | dict(self.measures)
        data = {c: [row.get(c) for row in self._pending] for c in columns}
        table = pa.table({c: pa.array(data[c], type=types[c]) for c in columns})
        table = table.set_column(
            columns.index("time"), "time", table["time"].cast(pa.timestamp("ns"))
        )
        return self._numbered(table)

    def snapshot(self) -> pa.Table:
        """The table's live records (one per dimensions + measure name + time)."""
        return self.versioned_snapshot()[1]

    def versioned_snapshot(self) -> tuple[int, pa.Table]:
        """`snapshot()` and its content's version, read together."""
        with self._lock:
            if self._pending:
                self._parts.append(self._pending_table())
                self._pending = []
            if self._parts or not self.version:
                if self._parts:
                    parts = [self._current] if self._current is not None else []
                    combined = pa.concat_tables([*parts, *self._parts], promote_options="default")
                    self._current = self._deduplicated(combined)
                    self._parts = []
                self.version = next(_CONTENT_VERSIONS)
            if self._current is None:
                return self.version, pa.table(
                    {"measure_name": pa.array([], pa.string())}
                ).append_column("time", pa.array([], pa.timestamp("ns")))
            order = [*self.dimensions, "measure_name", "time", *self.measures]
            columns = [c for c in order if c in self._current.column_names]
            return self.version, self._current.select(columns)

    def _deduplicated(self, table: pa.Table) -> pa.Table:
        import duckdb

        keys = [c for c in (*self.dimensions, "measure_name", "time") if c in table.column_names]
        partition = ", ".join(_quote(c) for c in keys)
        with duckdb.connect(config={"enable_external_access": False}) as con:
            con.register("raw", table)
            return con.execute(
                f"SELECT * FROM raw QUALIFY row_number() OVER (PARTITION BY {partition} "  # nosec B608  # fixed column names
                f"ORDER BY {_VERSION} DESC, {_SEQ} DESC) = 1"
            ).to_arrow_table()


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@dataclass
class _Result:
    query_id: str
    query_string: str
    table: pa.Table
    column_info: list[dict[str, Any]]
    bytes_scanned: int
    rows_hint: int = 8192  # rows rendered for the next page: about what fitted last time


def _scalar_type(kind: pa.DataType) -> str:
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return "VARCHAR"
    if pa.types.is_floating(kind):
        return "DOUBLE"
    if pa.types.is_int32(kind) or pa.types.is_int16(kind) or pa.types.is_int8(kind):
        return "INTEGER"
    if pa.types.is_integer(kind) or (pa.types.is_decimal(kind) and kind.scale == 0):
        return "BIGINT"
    if pa.types.is_boolean(kind):
        return "BOOLEAN"
    if pa.types.is_timestamp(kind):
        return "TIMESTAMP"
    if pa.types.is_date(kind):
        return "DATE"
    if pa.types.is_null(kind):
        return "UNKNOWN"
    return "VARCHAR"


def _text(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    """Each value as Timestream prints it (floats round-trip exactly)."""
    kind = column.type
    if pa.types.is_timestamp(kind):
        column = pc.cast(column, pa.timestamp("ns"))
        return pc.strftime(column, format="%Y-%m-%d %H:%M:%S")
    if pa.types.is_date(kind):
        return pc.strftime(column, format="%Y-%m-%d")
    if pa.types.is_boolean(kind):
        return pc.if_else(column, "true", "false")
    if pa.types.is_null(kind):
        return pa.nulls(len(column), pa.string())
    return pc.cast(column, pa.string())


def _json_string_body(text: pa.Array) -> pa.Array:
    """JSON string escaping, vectorised; the rare control character goes through `json`."""
    escaped = pc.replace_substring(pc.replace_substring(text, "\\", "\\\\"), '"', '\\"')
    control = pc.fill_null(pc.match_substring_regex(text, r"[\x00-\x1f]"), False)
    if pc.any(control).as_py():
        values = escaped.to_pylist()
        originals = text.to_pylist()
        for index in np.flatnonzero(control.to_numpy(zero_copy_only=False)):
            values[index] = json.dumps(originals[index])[1:-1]
        escaped = pa.array(values, pa.string())
    return escaped


def render_rows(table: pa.Table) -> pa.Array:
    """One `{"Data":[...]}` JSON text per row."""
    if table.num_columns == 0:
        return pa.array(['{"Data":[]}'] * len(table), pa.string())
    pieces: list[Any] = ['{"Data":[']
    for index, column in enumerate(table.columns):
        text = _json_string_body(_text(column.combine_chunks()))
        datum = pc.binary_join_element_wise('{"ScalarValue":"', text, '"}', "")
        pieces += ["," if index else "", pc.fill_null(datum, '{"NullValue":true}')]
    return pc.binary_join_element_wise(*pieces, "]}", "")


class _Catalog:
    """One DuckDB database holding each stored table sorted by time, copied when it changes.

    Timestream stores records partitioned by time, so a query over a window reads that
    window. A native DuckDB table sorted by time does the same through the min/max it keeps
    per row group, where a view over the Arrow snapshot made every query read every record
    (the migration asks three questions of each day of a table holding years).
    """

    def __init__(self) -> None:
        import duckdb

        self._lock = threading.Lock()
        self._db = duckdb.connect(config={"enable_external_access": False})
        for macro in _MACROS:
            self._db.execute(macro)
        self._db.execute("SET lock_configuration = true")
        self._held: dict[tuple[str, str], int] = {}  # table -> content version copied
        self._schemas: set[str] = set()

    def cursor(self, tables: Mapping[tuple[str, str], TableStore]) -> tuple[Any, int]:
        """A cursor over every table as stored now, and the bytes those tables hold."""
        scanned = 0
        with self._lock:
            for (database, table), store in tables.items():
                version, snapshot = store.versioned_snapshot()
                scanned += snapshot.nbytes
                if self._held.get((database, table)) != version:
                    self._copy(database, table, snapshot)
                    self._held[(database, table)] = version
            for database, table in [key for key in self._held if key not in tables]:
                self._db.execute(f"DROP TABLE IF EXISTS {_quote(database)}.{_quote(table)}")
                del self._held[(database, table)]
            return self._db.cursor(), scanned

    def _copy(self, database: str, table: str, snapshot: pa.Table) -> None:
        if database not in self._schemas:
            self._db.execute(f"CREATE SCHEMA IF NOT EXISTS {_quote(database)}")
            self._schemas.add(database)
        self._db.register("__snapshot", snapshot)
        try:
            self._db.execute(
                f"CREATE OR REPLACE TABLE {_quote(database)}.{_quote(table)} AS "  # nosec B608  # quoted names of stored tables
                "SELECT * FROM __snapshot ORDER BY time"
            )
        finally:
            self._db.unregister("__snapshot")


class TimestreamQueryEngine:
    """Runs queries over table snapshots and serves their pages by `NextToken`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._results: OrderedDict[str, tuple[_Result, int]] = OrderedDict()
        self._catalogs: dict[Hashable, _Catalog] = {}  # per scope

    def query(
        self,
        tables: Mapping[tuple[str, str], TableStore],
        query_string: str,
        max_rows: int | None = None,
        next_token: str | None = None,
        put: Put | None = None,
        scope: Hashable = None,
    ) -> str:
        """The Query response as JSON text; an UNLOAD writes its objects through `put`.

        `scope` names whose tables `tables` are (an account and region): each scope's
        tables are held apart, as Timestream's are.

        Raises:
            TimestreamValidationError: not one SELECT (or UNLOAD of one), unknown table or
                column, bad token, an UNLOAD whose objects cannot be written.
        """
        unload = None if next_token else parse_unload(query_string)
        if unload is not None:
            if put is None:
                raise TimestreamValidationError("UNLOAD is not available here")
            return self._unload(tables, unload, put, scope)
        if max_rows is not None and not 1 <= int(max_rows) <= MAX_ROWS_LIMIT:
            raise TimestreamValidationError(
                f"MaxRows must be between 1 and {MAX_ROWS_LIMIT}, got {max_rows}"
            )
        if next_token:
            result, offset = self._resume(next_token, query_string)
        else:
            result, offset = self._run(tables, query_string, scope), 0
        return self._page(result, offset, int(max_rows) if max_rows else None)

    def _unload(
        self,
        tables: Mapping[tuple[str, str], TableStore],
        request: UnloadRequest,
        put: Put,
        scope: Hashable,
    ) -> str:
        result = self._run(tables, request.select, scope)
        objects, metadata_key, manifest_key = unload_objects(request, result.table, result.query_id)
        for key, body in objects:
            try:
                put(request.bucket, key, body)
            except Exception as error:  # S3's refusal, as the query's error
                raise TimestreamValidationError(
                    f"UNLOAD could not write s3://{request.bucket}/{key}: {error}"
                ) from error
        row = [
            {"ScalarValue": str(len(result.table))},
            {"ScalarValue": f"s3://{request.bucket}/{metadata_key}"},
            {"ScalarValue": f"s3://{request.bucket}/{manifest_key}"},
        ]
        return json.dumps(
            {
                "QueryId": result.query_id,
                "Rows": [{"Data": row}],
                "ColumnInfo": [
                    {"Name": name, "Type": {"ScalarType": kind}} for name, kind in UNLOAD_COLUMNS
                ],
                "QueryStatus": {
                    "ProgressPercentage": 100.0,
                    "CumulativeBytesScanned": result.bytes_scanned,
                    "CumulativeBytesMetered": result.bytes_scanned,
                },
            }
        )

    def cancel(self, query_id: str) -> str:
        with self._lock:
            self._results.pop(query_id, None)
        return json.dumps({"CancellationMessage": f"Query {query_id} cancelled"})

    def _resume(self, token: str, query_string: str) -> tuple[_Result, int]:
        try:
            query_id, offset = json.loads(base64.urlsafe_b64decode(token.encode()))
        except (ValueError, binascii.Error) as error:
            raise TimestreamValidationError("The NextToken is invalid") from error
        with self._lock:
            entry = self._results.get(query_id)
        if entry is None or entry[1] != offset:
            raise TimestreamValidationError("The NextToken has expired or was already used")
        if entry[0].query_string != query_string:
            raise TimestreamValidationError("The QueryString must match the NextToken's query")
        return entry[0], int(offset)

    def _run(
        self, tables: Mapping[tuple[str, str], TableStore], query_string: str, scope: Hashable
    ) -> _Result:
        import duckdb

        try:
            statements = duckdb.extract_statements(query_string)
        except duckdb.Error as error:
            raise TimestreamValidationError(str(error)) from error
        if len(statements) != 1 or statements[0].type != duckdb.StatementType.SELECT:
            raise TimestreamValidationError("Only one SELECT statement is supported")
        with self._lock:
            if scope not in self._catalogs:
                self._catalogs[scope] = _Catalog()
            catalog = self._catalogs[scope]
        cursor, scanned = catalog.cursor(tables)
        try:
            answer = cursor.execute(query_string).to_arrow_table()
        except duckdb.Error as error:
            raise TimestreamValidationError(str(error)) from error
        finally:
            cursor.close()
        column_info = [
            {"Name": name, "Type": {"ScalarType": _scalar_type(kind)}}
            for name, kind in zip(answer.column_names, answer.schema.types, strict=True)
        ]
        result = _Result(str(uuid.uuid4()), query_string, answer, column_info, scanned)
        return result

    def _page(self, result: _Result, offset: int, max_rows: int | None) -> str:
        total = len(result.table)
        limit = max_rows or result.rows_hint
        rows = render_rows(result.table.slice(offset, limit))
        head = {"QueryId": result.query_id}
        info = json.dumps(result.column_info)
        budget = MAX_PAGE_BYTES - len(info) - 512
        sizes = np.cumsum(pc.binary_length(rows).to_numpy(zero_copy_only=False) + 1)
        taken = max(1, int(np.searchsorted(sizes, budget, side="right"))) if len(rows) else 0
        taken = min(taken, len(rows))
        if taken < len(rows) or not max_rows:
            result.rows_hint = max(64, taken + taken // 8)
        end = offset + taken
        listed = pa.ListArray.from_arrays(pa.array([0, taken], pa.int32()), rows.slice(0, taken))
        body = pc.binary_join(listed, ",")[0].as_py()
        status = {
            "ProgressPercentage": 100.0 if end >= total else round(100.0 * end / total, 2),
            "CumulativeBytesScanned": result.bytes_scanned,
            "CumulativeBytesMetered": result.bytes_scanned,
        }
        with self._lock:
            if end < total:
                self._results[result.query_id] = (result, end)
                self._results.move_to_end(result.query_id)
                while len(self._results) > _CACHED_RESULTS:
                    self._results.popitem(last=False)
                token = base64.urlsafe_b64encode(json.dumps([result.query_id, end]).encode())
                head["NextToken"] = token.decode()
            else:
                self._results.pop(result.query_id, None)
        prefix = json.dumps(head)[:-1]
        return f'{prefix},"Rows":[{body}],"ColumnInfo":{info},"QueryStatus":{json.dumps(status)}}}'


# UNLOAD (SELECT ...) TO 's3://bucket/folder/' WITH (option = 'value', ...): the migration's
# shape only. Timestream also offers CSV, partitioned_by, SSE_KMS and more; here they are
# refused rather than half-imitated.
_UNLOAD: Final = re.compile(
    r"^\s*UNLOAD\s*\((?P<select>.+)\)\s*TO\s*'s3://(?P<bucket>[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9])"
    r"/(?P<folder>[A-Za-z0-9_./=\-]*)'\s*WITH\s*\((?P<options>[^()]*)\)\s*;?\s*$",
    re.IGNORECASE | re.DOTALL,
)
_OPTION: Final = re.compile(r"^\s*([a-z_]+)\s*=\s*'([^']*)'\s*$", re.IGNORECASE)
_UNLOAD_OPTIONS: Final = {
    "format": {"PARQUET"},
    "compression": {"GZIP", "NONE"},
    "encryption": {"SSE_S3"},
}
_SIZE_UNITS: Final = {"KB": 10**3, "MB": 10**6, "GB": 10**9}
MIN_FILE_SIZE: Final = 16 * 10**6  # the documented max_file_size range: 16 MB to 78 GB
MAX_FILE_SIZE: Final = 78 * 10**9
UNLOAD_COLUMNS: Final = (
    ("rows", "BIGINT"),
    ("metadataFile", "VARCHAR"),
    ("manifestFile", "VARCHAR"),
)


@dataclass(frozen=True)
class UnloadRequest:
    select: str
    bucket: str
    folder: str  # "" or ending in "/"
    compression: str
    max_file_size: int


def parse_unload(statement: str) -> UnloadRequest | None:
    """The UNLOAD's parts, or None when the statement is not an UNLOAD at all.

    Raises:
        TimestreamValidationError: an UNLOAD outside the supported shape.
    """
    if not statement.lstrip()[:6].upper() == "UNLOAD":
        return None
    match = _UNLOAD.match(statement)
    if match is None:
        raise TimestreamValidationError(
            "UNLOAD must read UNLOAD (SELECT ...) TO 's3://bucket/folder/' WITH (format = "
            "'PARQUET'[, compression = 'GZIP'|'NONE'][, encryption = 'SSE_S3']"
            "[, max_file_size = '<n>MB'])"
        )
    options: dict[str, str] = {}
    for part in filter(str.strip, match["options"].split(",")):
        option = _OPTION.match(part)
        if option is None:
            raise TimestreamValidationError(f"UNLOAD option not understood: {part.strip()!r}")
        name, value = option[1].lower(), option[2].upper()
        if name in options:
            raise TimestreamValidationError(f"UNLOAD option {name} given twice")
        if name == "max_file_size":
            options[name] = value
        elif name not in _UNLOAD_OPTIONS or value not in _UNLOAD_OPTIONS[name]:
            raise TimestreamValidationError(f"UNLOAD option {name} = '{value}' is not supported")
        options[name] = value
    if options.get("format") != "PARQUET":
        raise TimestreamValidationError("UNLOAD needs format = 'PARQUET' here")
    folder = match["folder"]
    if (folder and not folder.endswith("/")) or "//" in folder or folder.startswith("/"):
        raise TimestreamValidationError(f"UNLOAD destination folder must end in '/': {folder!r}")
    return UnloadRequest(
        match["select"],
        match["bucket"],
        folder,
        options.get("compression", "GZIP"),
        _file_size(options.get("max_file_size", "78GB")),
    )


def _file_size(text: str) -> int:
    size = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(KB|MB|GB)", text)
    value = int(float(size[1]) * _SIZE_UNITS[size[2]]) if size else 0
    if not MIN_FILE_SIZE <= value <= MAX_FILE_SIZE:
        raise TimestreamValidationError(
            f"max_file_size must be between 16MB and 78GB, got {text!r}"
        )
    return value


def unload_objects(
    request: UnloadRequest, answer: pa.Table, query_id: str
) -> tuple[list[tuple[str, bytes]], str, str]:
    """(key, body) of each Parquet part, then the metadata and manifest; and their keys.

    Layout as Timestream writes it: parts under `<folder>results/`, then
    `<folder><query id>_<uuid>_metadata.json` (the columns) and `..._manifest.json` (each
    part's url, size and rows, and the totals), the manifest last: it marks a complete export.
    """
    import pyarrow.parquet as pq

    stem = f"{query_id}_{uuid.uuid4().hex}"
    rows_per_part = len(answer) or 1
    if answer.nbytes > request.max_file_size:
        rows_per_part = max(1, len(answer) * request.max_file_size // answer.nbytes)
    objects: list[tuple[str, bytes]] = []
    files = []
    codec = "gzip" if request.compression == "GZIP" else "none"
    for number, offset in enumerate(range(0, len(answer), rows_per_part), start=1):
        part = answer.slice(offset, rows_per_part)
        sink = pa.BufferOutputStream()
        pq.write_table(part, sink, compression=codec)
        body = sink.getvalue().to_pybytes()
        key = f"{request.folder}results/{stem}_part{number}.parquet"
        objects.append((key, body))
        files.append(
            {
                "url": f"s3://{request.bucket}/{key}",
                "file_metadata": {"content_length_in_bytes": len(body), "row_count": len(part)},
            }
        )
    columns = [
        {"Name": name, "Type": {"ScalarType": _scalar_type(kind)}}
        for name, kind in zip(answer.column_names, answer.schema.types, strict=True)
    ]
    metadata = {
        "ColumnInfo": columns,
        "Author": {"Name": "Amazon Timestream", "MetadataFileVersion": "1.0"},
    }
    manifest = {
        "result_files": files,
        "query_metadata": {
            "content_length_in_bytes": sum(len(body) for _, body in objects),
            "total_row_count": len(answer),
            "result_format": "PARQUET",
            "result_version": "Amazon Timestream version 1.0.0",
        },
        "author": {"name": "Amazon Timestream", "manifest_file_version": "1.0"},
    }
    metadata_key = f"{request.folder}{stem}_metadata.json"
    manifest_key = f"{request.folder}{stem}_manifest.json"
    objects.append((metadata_key, json.dumps(metadata).encode()))
    objects.append((manifest_key, json.dumps(manifest).encode()))
    return objects, metadata_key, manifest_key
