"""Pure checkpoint logic: parse event files, merge them into the checkpoint, keep the ledger.

No Dagster and no I/O here: the asset fetches bytes and writes bytes around these functions.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import ValidationError

from ons_pipeline.visits.schema import CHECKPOINT_SCHEMA, EVENT_COLUMNS, VisitEvent

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

LEDGER_SCHEMA: Final = pa.schema(
    [
        pa.field("key", pa.string(), nullable=False),
        pa.field("etag", pa.string(), nullable=False),
        pa.field("status", pa.string(), nullable=False),  # "valid" or "rejected"
    ]
)


class CorruptCheckpointError(ValueError):
    """The stored checkpoint (or ledger) cannot be read as the contract's Parquet."""


@dataclass(frozen=True)
class Rejection:
    key: str
    etag: str
    reason: str


@dataclass(frozen=True)
class ParsedFile:
    key: str
    etag: str
    event: dict[str, Any] | None
    rejection: Rejection | None


def _field_reason(error: Mapping[str, Any]) -> str:
    location = ".".join(str(part) for part in error.get("loc", ())) or "<event>"
    if error.get("type") == "extra_forbidden":
        return f"unknown field {location}"
    if error.get("type") == "missing":
        return f"missing field {location}"
    message = str(error.get("msg", "")).removeprefix("Value error, ")
    return f"invalid {location} ({error.get('type')}): {message}"


def parse_event_file(key: str, etag: str, body: bytes) -> ParsedFile:
    """Validate one event file; a bad file yields a rejection with its reason, never raises."""

    def reject(reason: str) -> ParsedFile:
        return ParsedFile(key, etag, None, Rejection(key, etag, reason))

    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        return reject(f"invalid UTF-8 at byte {error.start}")
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as error:
        return reject(f"malformed JSON: {error.msg} at line {error.lineno} column {error.colno}")
    if not isinstance(payload, dict):
        return reject(f"not a JSON object: got {type(payload).__name__}")
    try:
        event = VisitEvent.model_validate(payload)
    except ValidationError as error:
        return reject("; ".join(_field_reason(e) for e in error.errors()))
    return ParsedFile(key, etag, event.model_dump(), None)


def events_frame(events: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Normalised events as a checkpoint-shaped frame (timestamps UTC microseconds)."""
    table = pa.Table.from_pylist(list(events), schema=CHECKPOINT_SCHEMA)
    return _to_pandas(table)


def empty_checkpoint() -> pd.DataFrame:
    return events_frame([])


def _to_pandas(table: pa.Table) -> pd.DataFrame:
    frame = table.to_pandas()
    frame["timestamp"] = frame["timestamp"].astype("datetime64[us, UTC]")
    return frame


def merge_events(previous: pd.DataFrame, *batches: pd.DataFrame) -> pd.DataFrame:
    """One row per distinct normalised event, in a canonical order.

    The union of sets, so merging is idempotent and independent of batch order; every version
    of a visit (a different timestamp or any other field) stays a row of its own.
    """
    frames = [frame for frame in (previous, *batches) if len(frame)]
    if not frames:
        return empty_checkpoint()
    merged = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0].copy()
    merged = merged.drop_duplicates(subset=list(EVENT_COLUMNS))
    order = ["timestamp", "ptid", "visit_date", "visit_number", "action"]
    order += [column for column in EVENT_COLUMNS if column not in order]
    merged = merged.sort_values(order, kind="stable", na_position="first", ignore_index=True)
    return merged[list(EVENT_COLUMNS)]


def checkpoint_to_parquet(frame: pd.DataFrame) -> bytes:
    table = pa.Table.from_pandas(frame, schema=CHECKPOINT_SCHEMA, preserve_index=False)
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="snappy")
    return sink.getvalue()


def checkpoint_from_parquet(data: bytes) -> pd.DataFrame:
    """Read a stored checkpoint; anything but the contract's Parquet is an error, not empty."""
    try:
        table = pq.read_table(io.BytesIO(data))
    except (pa.ArrowException, OSError) as error:
        raise CorruptCheckpointError(f"not a readable Parquet file: {error}") from error
    missing = [name for name in CHECKPOINT_SCHEMA.names if name not in table.column_names]
    if missing:
        raise CorruptCheckpointError(f"checkpoint lacks columns {missing}")
    try:
        table = table.select(CHECKPOINT_SCHEMA.names).cast(CHECKPOINT_SCHEMA)
    except (pa.ArrowException, ValueError) as error:
        raise CorruptCheckpointError(f"checkpoint columns have the wrong types: {error}") from error
    return _to_pandas(table)


def ledger_to_parquet(entries: Mapping[str, tuple[str, str]]) -> bytes:
    """The ledger: every event object processed, as key -> (ETag, status)."""
    keys = sorted(entries)
    table = pa.table(
        {
            "key": keys,
            "etag": [entries[k][0] for k in keys],
            "status": [entries[k][1] for k in keys],
        },
        schema=LEDGER_SCHEMA,
    )
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="snappy")
    return sink.getvalue()


def ledger_from_parquet(data: bytes) -> dict[str, tuple[str, str]]:
    try:
        table = pq.read_table(io.BytesIO(data)).select(LEDGER_SCHEMA.names)
    except (pa.ArrowException, OSError, KeyError) as error:
        raise CorruptCheckpointError(f"ledger is not a readable Parquet file: {error}") from error
    columns = table.to_pydict()
    return dict(
        zip(columns["key"], zip(columns["etag"], columns["status"], strict=True), strict=True)
    )


def new_objects(
    listing: Mapping[str, str], ledger: Mapping[str, tuple[str, str]]
) -> dict[str, str]:
    """Listed objects whose (key, ETag) the ledger has not seen: new keys and re-uploads."""
    return {
        key: etag
        for key, etag in listing.items()
        if (seen := ledger.get(key)) is None or seen[0] != etag
    }


def sibling_key(checkpoint_key: str, suffix: str) -> str:
    """`checkpoints/events.parquet` + `.ledger.parquet` -> `checkpoints/events.ledger.parquet`."""
    stem = checkpoint_key.removesuffix(".parquet")
    return f"{stem}{suffix}"
