"""The visit-event contract (ARCHITECTURE section 5) and the checkpoint's Parquet schema."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from typing import Annotated, Any, Final, Literal

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, field_validator

ACTIONS: Final = ("submit", "pass-qc", "not-pass-qc", "delete")
QC_ACTIONS: Final = ("pass-qc", "not-pass-qc")

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
# A date, a time to at least the minute, then whatever `datetime.fromisoformat` accepts.
_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}.*", re.DOTALL)


class VisitEvent(BaseModel):
    """One visit event as the Flywheel gears log it.

    Strict types: a JSON string is never coerced into a number or the reverse, and an unknown
    field rejects the file (a typo must not silently become a null).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    action: Literal["submit", "pass-qc", "not-pass-qc", "delete"]
    study: StrictStr = "adrc"
    pipeline_adcid: StrictInt
    project_label: StrictStr
    center_label: StrictStr
    gear_name: StrictStr
    ptid: Annotated[StrictStr, Field(pattern=r"^[A-Z0-9]+$", min_length=1, max_length=10)]
    visit_date: date
    visit_number: StrictStr
    datatype: StrictStr
    module: StrictStr | None = None
    packet: StrictStr | None = None
    timestamp: datetime

    @field_validator("visit_date", mode="before")
    @classmethod
    def _iso_date(cls, value: Any) -> date:
        if isinstance(value, date) and not isinstance(value, datetime):
            return value
        if not isinstance(value, str) or not _DATE.fullmatch(value):
            raise ValueError("visit_date must be a string YYYY-MM-DD")
        return date.fromisoformat(value)  # ValueError for 2024-02-30

    @field_validator("timestamp", mode="before")
    @classmethod
    def _iso_timestamp(cls, value: Any) -> datetime:
        if isinstance(value, datetime):
            parsed = value
        elif isinstance(value, str) and _TIMESTAMP.fullmatch(value):
            parsed = datetime.fromisoformat(value)
        else:
            raise ValueError("timestamp must be an ISO 8601 date and time string")
        if parsed.tzinfo is None:
            return parsed.replace(tzinfo=UTC)
        return parsed.astimezone(UTC)


EVENT_COLUMNS: Final = tuple(VisitEvent.model_fields)

CHECKPOINT_SCHEMA: Final = pa.schema(
    [
        pa.field("action", pa.string(), nullable=False),
        pa.field("study", pa.string(), nullable=False),
        pa.field("pipeline_adcid", pa.int64(), nullable=False),
        pa.field("project_label", pa.string(), nullable=False),
        pa.field("center_label", pa.string(), nullable=False),
        pa.field("gear_name", pa.string(), nullable=False),
        pa.field("ptid", pa.string(), nullable=False),
        pa.field("visit_date", pa.date32(), nullable=False),
        pa.field("visit_number", pa.string(), nullable=False),
        pa.field("datatype", pa.string(), nullable=False),
        pa.field("module", pa.string()),
        pa.field("packet", pa.string()),
        pa.field("timestamp", pa.timestamp("us", tz="UTC"), nullable=False),
    ]
)
if tuple(CHECKPOINT_SCHEMA.names) != EVENT_COLUMNS:
    raise RuntimeError("CHECKPOINT_SCHEMA and EVENT_COLUMNS must list the same columns")
