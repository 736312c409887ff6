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

# What each column means, for the UI's column schema of the checkpoint and the analytics.
COLUMN_DESCRIPTIONS: Final[dict[str, str]] = {
    "action": "What happened to the visit: submit, pass-qc, not-pass-qc or delete.",
    "study": "Study the visit belongs to (adrc unless the event says otherwise).",
    "pipeline_adcid": "ADC id of the center's pipeline.",
    "project_label": "Flywheel project the visit was logged in.",
    "center_label": "Center that recorded the visit.",
    "gear_name": "Flywheel gear that logged the event.",
    "ptid": "Participant id (upper-case letters and digits, at most 10).",
    "visit_date": "Date of the visit.",
    "visit_number": "Visit number within the participant's visits.",
    "datatype": "Kind of data submitted, e.g. form or dicom.",
    "module": "Form module, when the datatype has one (e.g. UDS).",
    "packet": "Form packet, when the datatype has one (e.g. I, F).",
    "timestamp": "When the gear logged the event, UTC.",
    "visit_month": "Month of the visit date, YYYY-MM.",
    "not_pass_qc_count": "Not-pass-QC events for the center in that month.",  # nosec B105  # a column description, not a password
    "avg_qc_days": "Mean whole days from visit date to the QC outcome's UTC date.",
    "qc_events": "QC events (pass-qc and not-pass-qc) averaged.",
}

ANALYTICS_SCHEMAS: Final[dict[str, pa.Schema]] = {
    "latest_visit_events": CHECKPOINT_SCHEMA,
    "monthly_not_pass_qc_by_center": pa.schema(
        [
            pa.field("visit_month", pa.string(), nullable=False),
            pa.field("center_label", pa.string(), nullable=False),
            pa.field("not_pass_qc_count", pa.int64(), nullable=False),
        ]
    ),
    "avg_days_to_qc_by_center": pa.schema(
        [
            pa.field("center_label", pa.string(), nullable=False),
            pa.field("avg_qc_days", pa.float64(), nullable=False),
            pa.field("qc_events", pa.int64(), nullable=False),
        ]
    ),
}
