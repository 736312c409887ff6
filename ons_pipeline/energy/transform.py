"""Deprecated home of the energy logic, kept while other branches still import from it.

Import from `validation`, `line_protocol`, `timestream_records` and `readback` instead.
"""

from ons_pipeline.energy.line_protocol import batch_bodies, line_chunks, line_protocol
from ons_pipeline.energy.readback import expected_series_counts
from ons_pipeline.energy.timestream_records import MAX_RECORDS_PER_CALL, timestream_calls
from ons_pipeline.energy.validation import (
    TIME,
    PreparedFile,
    parse_timestamps,
    prepare,
    quarantine_parquet,
    read_parquet,
    rejected_rows,
)

__all__ = [
    "MAX_RECORDS_PER_CALL",
    "TIME",
    "PreparedFile",
    "batch_bodies",
    "expected_series_counts",
    "line_chunks",
    "line_protocol",
    "parse_timestamps",
    "prepare",
    "quarantine_parquet",
    "read_parquet",
    "rejected_rows",
    "timestream_calls",
]
