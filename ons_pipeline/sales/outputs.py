"""Star-table files: naming, deterministic Parquet bytes and what changed since last run."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Final

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

if TYPE_CHECKING:
    from datetime import datetime

TIMESTAMP_FORMAT: Final = "%Y%m%dT%H%M%S%f"


def output_key(star_table: str, sequence: int, watermark: datetime) -> str:
    """`<table>/<table>_packet_<id>_processed_<timestamp>.parquet` (the seed's convention).

    The timestamp is the newest `last_updated` in the data, not the wall clock, so a re-run
    over the same input names (and writes) exactly the same file.
    """
    stamp = watermark.strftime(TIMESTAMP_FORMAT)
    return f"{star_table}/{star_table}_packet_{sequence:08d}_processed_{stamp}.parquet"


def to_parquet_bytes(frame: pd.DataFrame, schema: pa.Schema) -> bytes:
    """Snappy Parquet with no pandas metadata: the same rows always give the same bytes."""
    table = pa.Table.from_pandas(frame, schema=schema, preserve_index=False)
    sink = io.BytesIO()
    pq.write_table(table.replace_schema_metadata(None), sink, compression="snappy")
    return sink.getvalue()


def from_parquet_bytes(data: bytes) -> pd.DataFrame:
    return pq.read_table(io.BytesIO(data)).to_pandas(types_mapper=pd.ArrowDtype)


def changed_rows(current: pd.DataFrame, previous: pd.DataFrame | None) -> pd.DataFrame:
    """Rows of `current` that are not, identically, in `previous` (new or changed rows)."""
    if previous is None or previous.empty or current.empty:
        return current
    now = pd.util.hash_pandas_object(current, index=False)
    before = pd.util.hash_pandas_object(previous[current.columns], index=False)
    return current[~now.isin(before).to_numpy()].reset_index(drop=True)
