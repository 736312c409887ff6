"""ToteSys packets: keys, JSON-lines parsing and the per-table raw history (no Dagster)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Final

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json

from ons_pipeline.sales.schema import (
    LINE_NO,
    PACKET_ID,
    PRIMARY_KEYS,
    QUARANTINE_SCHEMA,
    SOURCE_COLUMNS,
    source_arrow_schema,
)

_WHITESPACE: Final = np.frombuffer(b" \t\r\n", dtype=np.uint8)
# A refused packet is re-read in this many chunks, so a bad line costs 1/64 of it in Python.
_FALLBACK_CHUNKS: Final = 64
_SCAN_BYTES: Final = 1 << 20
# ASCII digits only: `\d` also matches other scripts' digits, and int() reads them.
_KEY_RE: Final = re.compile(r"(?P<table>[a-z_]+)/(?P=table)-packet-(?P<id>[0-9]{8})\.jsonl")


def packet_key(table: str, packet_id: int) -> str:
    """The ingestion key of a packet; zero-padded so keys sort in arrival order."""
    if table not in SOURCE_COLUMNS:
        raise ValueError(
            f"unknown ToteSys table {table!r}; expected one of {sorted(SOURCE_COLUMNS)}"
        )
    if packet_id < 1 or packet_id > 99_999_999:
        raise ValueError(f"packet id {packet_id} out of range 1..99999999")
    return f"{table}/{table}-packet-{packet_id:08d}.jsonl"


def parse_packet_key(key: str) -> tuple[str, int] | None:
    """(table, packet id) of an ingestion key, or None for any other object."""
    match = _KEY_RE.fullmatch(key)
    if match is None or match["table"] not in SOURCE_COLUMNS or int(match["id"]) < 1:
        return None
    return match["table"], int(match["id"])


def packet_key_problem(key: str) -> str | None:
    """Why an ingestion key is not a packet, or None when it is one."""
    if parse_packet_key(key) is not None:
        return None
    if any(part in {".", ".."} for part in key.split("/")):
        return "a '.' or '..' path segment in the key"
    table, slash, _ = key.partition("/")
    if not slash or table not in SOURCE_COLUMNS:
        return f"not under a ToteSys table prefix ({', '.join(sorted(SOURCE_COLUMNS))})"
    match = _KEY_RE.fullmatch(key)
    if match is not None and match["table"] == table:
        return "packet id 00000000 is out of range 1..99999999"
    return f"not named {table}/{table}-packet-<8 ASCII digits>.jsonl"


@dataclass(frozen=True)
class ParsedPacket:
    table: str
    packet_id: int
    rows: pd.DataFrame
    malformed: pd.DataFrame  # quarantine rows for lines that are not JSON objects
    lines: int


def parse_packet(table: str, packet_id: int, body: bytes) -> ParsedPacket:
    """Read one JSONL packet into typed rows, quarantining lines that are not JSON objects.

    The fast path is Arrow's multi-threaded JSON reader. A packet it refuses (a broken line,
    a value of the wrong JSON type) is cut into chunks of lines; clean chunks still take the
    fast path and only the chunks holding a bad line are read line by line.
    """
    starts, ends = _line_bounds(body)
    if not len(starts):
        return ParsedPacket(table, packet_id, empty_rows(table), _no_quarantine(), 0)
    parts = [_parse_lines(table, packet_id, body, starts, ends, 0, len(starts))]
    if parts[0] is None:
        step = max(1, -(-len(starts) // _FALLBACK_CHUNKS))
        parts = [
            _parse_lines(
                table, packet_id, body, starts, ends, first, min(first + step, len(starts))
            )
            or _parse_line_by_line(table, packet_id, body, starts, ends, first, first + step)
            for first in range(0, len(starts), step)
        ]
    rows = [part[0] for part in parts if len(part[0])]
    malformed = [part[1] for part in parts if len(part[1])]
    return ParsedPacket(
        table,
        packet_id,
        pd.concat(rows, ignore_index=True) if rows else empty_rows(table),
        pd.concat(malformed, ignore_index=True) if malformed else _no_quarantine(),
        len(starts),
    )


def _parse_lines(
    table: str,
    packet_id: int,
    body: bytes,
    starts: np.ndarray,
    ends: np.ndarray,
    first: int,
    stop: int,
) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """Lines [first, stop) through Arrow's reader, or None if any of them is not clean."""
    segment = memoryview(body)[starts[first] : ends[stop - 1]]  # no copy of the packet
    if not _is_utf8(segment):  # Arrow's reader does not validate UTF-8 inside strings
        return None
    try:
        arrow = pa_json.read_json(
            pa.BufferReader(segment),
            parse_options=pa_json.ParseOptions(
                explicit_schema=source_arrow_schema(table), unexpected_field_behavior="ignore"
            ),
        )
    except pa.ArrowInvalid:
        return None
    line_numbers = _record_line_numbers(body, starts, ends, first, stop)
    if arrow.num_rows != len(line_numbers):  # e.g. two objects on one line
        return None
    rows = arrow.to_pandas(types_mapper=pd.ArrowDtype)
    rows[PACKET_ID] = pd.Series(np.int64(packet_id), index=rows.index, dtype="int64[pyarrow]")
    rows[LINE_NO] = pd.Series(line_numbers, dtype="int64[pyarrow]")
    return rows, _no_quarantine()


def empty_rows(table: str) -> pd.DataFrame:
    """A typed, empty raw table (the history before the first packet)."""
    return history_schema(table).empty_table().to_pandas(types_mapper=pd.ArrowDtype)


def _is_utf8(body: bytes | memoryview) -> bool:
    """Whether the bytes are valid UTF-8, checked by Arrow's vectorised validator.

    Casting a one-value binary array over the packet's own buffer to string validates it
    without a copy; decoding it to a Python str cost ten times as much.
    """
    data = pa.py_buffer(body)
    offsets = pa.py_buffer(np.array([0, data.size], dtype=np.int64))
    whole = pa.Array.from_buffers(pa.large_binary(), 1, [None, offsets, data])
    try:
        whole.cast(pa.large_string())
    except pa.ArrowInvalid:
        return False
    return True


def _line_bounds(body: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Start and end byte offsets of every line, found with numpy rather than a loop."""
    data = np.frombuffer(body, dtype=np.uint8)
    if not len(data):
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    # Scanned in 1 MiB slices: a mask of the whole packet would be as large as the packet.
    ends = np.concatenate(
        [
            np.flatnonzero(data[at : at + _SCAN_BYTES] == ord("\n")) + at
            for at in range(0, len(data), _SCAN_BYTES)
        ]
    )
    if data[-1] != ord("\n"):
        ends = np.append(ends, len(data))
    starts = np.concatenate(([0], ends[:-1] + 1)).astype(np.int64)
    return starts, ends.astype(np.int64)


def _record_line_numbers(
    body: bytes, starts: np.ndarray, ends: np.ndarray, first: int, stop: int
) -> np.ndarray:
    """1-based numbers of the lines in [first, stop) that hold something (not blank)."""
    s, e = starts[first:stop], ends[first:stop]
    data = np.frombuffer(body, dtype=np.uint8)
    filled = e > s
    lead = np.zeros(len(s), dtype=bool)
    lead[filled] = np.isin(data[s[filled]], _WHITESPACE)
    for i in np.flatnonzero(lead):  # only lines starting with whitespace: rare
        filled[i] = bool(body[s[i] : e[i]].strip())
    return np.flatnonzero(filled).astype(np.int64) + first + 1


def _parse_line_by_line(
    table: str,
    packet_id: int,
    body: bytes,
    starts: np.ndarray,
    ends: np.ndarray,
    first: int,
    stop: int,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    kinds = SOURCE_COLUMNS[table]
    good: list[dict[str, object]] = []
    good_lines: list[int] = []
    bad: list[dict[str, object]] = []
    for index in range(first, min(stop, len(starts))):
        number = index + 1
        line = body[starts[index] : ends[index]]
        if not line.strip():
            continue
        try:
            # Strict UTF-8: json.loads(bytes) lets encoded surrogates through, which no
            # Arrow string (nor Parquet) can hold.
            record = json.loads(line.decode("utf-8-sig"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            reason, detail = "malformed_json", str(error)
        else:
            if not isinstance(record, dict):
                reason, detail = "malformed_json", f"the line is a JSON {type(record).__name__}"
            else:
                mistyped = next(
                    (
                        name
                        for name, (kind, _) in kinds.items()
                        if not _is_kind(record.get(name), kind)
                    ),
                    None,
                )
                if mistyped is None:
                    good.append(record)
                    good_lines.append(number)
                    continue
                reason, detail = "invalid_value", mistyped
        bad.append(
            {
                "table": table,
                "id": _id_of(record, table) if reason == "invalid_value" else None,
                "reason": reason,
                "detail": detail,
                "packet_id": packet_id,
                "line": number,
                "record": line.decode("utf-8", errors="replace"),
            }
        )
    rows = (
        pa.Table.from_pylist(good, schema=source_arrow_schema(table)).to_pandas(
            types_mapper=pd.ArrowDtype
        )
        if good
        else empty_rows(table).drop(columns=[PACKET_ID, LINE_NO])
    )
    rows[PACKET_ID] = pd.Series(np.int64(packet_id), index=rows.index, dtype="int64[pyarrow]")
    rows[LINE_NO] = pd.Series(np.array(good_lines, dtype=np.int64), dtype="int64[pyarrow]")
    return rows, pd.DataFrame(bad, columns=QUARANTINE_SCHEMA.names)


def _is_kind(value: object, kind: str) -> bool:
    """Whether a JSON value fits a column (null always does: the transform judges nulls)."""
    if value is None:
        return True
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool) and abs(value) < 2**63
    if kind == "price":
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, str)


def _id_of(record: dict[str, object], table: str) -> str | None:
    value = record.get(PRIMARY_KEYS[table])
    return None if value is None else str(value)


def _no_quarantine() -> pd.DataFrame:
    return pd.DataFrame(columns=QUARANTINE_SCHEMA.names)


def merge_history(history: pd.DataFrame, packets: list[ParsedPacket], table: str) -> pd.DataFrame:
    """Every distinct source row seen so far: a re-delivered line adds nothing.

    A row keeps its first delivery's (packet, line), so later versions sort after it.
    """
    frames = [history, *(packet.rows for packet in packets)]
    frames = [frame for frame in frames if not frame.empty]
    if not frames:
        return empty_rows(table)
    merged = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    narrowing = tuple(c for c in (PRIMARY_KEYS[table], "last_updated") if c in merged)
    repeated = duplicated_rows(merged, list(SOURCE_COLUMNS[table]), narrowing)
    return merged[~repeated].reset_index(drop=True) if repeated.any() else merged


def duplicated_rows(
    frame: pd.DataFrame, columns: list[str], narrowing: tuple[str, ...]
) -> np.ndarray:
    """Rows equal in every column to an earlier row, as `DataFrame.duplicated` finds them.

    Equal rows agree on any subset of their columns, so cheap columns (the key, then the
    update time) first narrow the rows that can repeat; only those are compared in full.
    """
    candidates = np.ones(len(frame), dtype=bool)
    mixed = np.zeros(len(frame), dtype=np.uint64)  # the narrowing columns hashed so far
    for name in narrowing:
        if not candidates.any():
            return candidates
        codes = _narrowing_codes(frame[name])[candidates].view(np.uint64)
        mixed[candidates] = mixed[candidates] * _MIX + codes  # wraps: a collision only widens
        repeats = pd.Series(mixed[candidates]).duplicated(keep=False).to_numpy()
        candidates[candidates] = repeats
    repeated = np.zeros(len(frame), dtype=bool)
    if candidates.any():
        repeated[candidates] = frame[candidates].duplicated(subset=columns, keep="first").to_numpy()
    return repeated


_NULL_CODE: Final = np.iinfo(np.int64).min
_MIX: Final = np.uint64(0x9E3779B97F4A7C15)  # odd: multiplying by it loses no bits


def _narrowing_codes(values: pd.Series) -> np.ndarray:
    """int64 codes that are equal wherever the values are (unequal values may share one).

    Sharing a code only widens the narrowing, never changes the answer. Integers are their
    own code and ISO timestamp text its instant: both far cheaper than hashing the values.
    """
    arrow = pa.array(values.array) if isinstance(values.dtype, pd.ArrowDtype) else None
    if arrow is not None and pa.types.is_string(arrow.type):
        try:
            arrow = pc.cast(arrow, pa.timestamp("us"))
        except pa.ArrowInvalid:  # text that is not a timestamp: hash it after all
            arrow = None
    if arrow is not None and (pa.types.is_integer(arrow.type) or pa.types.is_timestamp(arrow.type)):
        filled = pc.fill_null(pc.cast(arrow, pa.int64()), _NULL_CODE)
        return np.asarray(filled.to_numpy(), dtype=np.int64)
    return pd.factorize(values, use_na_sentinel=False)[0].astype(np.int64)


def history_schema(table: str) -> pa.Schema:
    """The Parquet schema of a table's raw history."""
    return (
        source_arrow_schema(table)
        .append(pa.field(PACKET_ID, pa.int64()))
        .append(pa.field(LINE_NO, pa.int64()))
    )
