"""The seed's three queries on a small hand-made checkpoint."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest

from ons_pipeline.visits.analytics import (
    average_days_to_qc_by_center,
    latest_event_per_visit,
    monthly_not_pass_qc_by_center,
)
from ons_pipeline.visits.checkpoint import empty_checkpoint, events_frame, merge_events
from ons_pipeline.visits.storage import Locations


def ev(action: str, center: str, ptid: str, visit: date, at: datetime, **kw: Any) -> dict:
    return {
        "action": action,
        "study": "adrc",
        "pipeline_adcid": 1,
        "project_label": "p",
        "center_label": center,
        "gear_name": "g",
        "ptid": ptid,
        "visit_date": visit,
        "visit_number": kw.get("visit_number", "01"),
        "datatype": "form",
        "module": kw.get("module"),
        "packet": None,
        "timestamp": at,
    }


EVENTS = [
    ev("submit", "a", "P1", date(2024, 1, 30), datetime(2024, 1, 30, 9, tzinfo=UTC)),
    ev("not-pass-qc", "a", "P1", date(2024, 1, 30), datetime(2024, 2, 1, 23, 59, tzinfo=UTC)),
    ev("submit", "a", "P1", date(2024, 1, 30), datetime(2024, 2, 3, tzinfo=UTC), module="UDS"),
    ev("pass-qc", "a", "P1", date(2024, 1, 30), datetime(2024, 2, 4, 0, 30, tzinfo=UTC)),
    ev("not-pass-qc", "b", "P2", date(2024, 2, 10), datetime(2024, 2, 10, 1, tzinfo=UTC)),
    ev("submit", "b", "P2", date(2024, 2, 10), datetime(2024, 2, 9, tzinfo=UTC), visit_number="02"),
]


def checkpoint():
    return merge_events(empty_checkpoint(), events_frame(EVENTS))


def test_latest_event_per_visit_is_the_newest_version() -> None:
    latest = latest_event_per_visit(checkpoint())
    assert len(latest) == 3
    p1 = latest[latest["ptid"] == "P1"].iloc[0]
    assert p1["action"] == "pass-qc"
    assert latest_event_per_visit(empty_checkpoint()).empty


def test_monthly_not_pass_qc_counts_by_visit_month_and_center() -> None:
    counts = monthly_not_pass_qc_by_center(checkpoint())
    assert counts.to_dict("records") == [
        {"visit_month": "2024-01", "center_label": "a", "not_pass_qc_count": 1},
        {"visit_month": "2024-02", "center_label": "b", "not_pass_qc_count": 1},
    ]
    assert monthly_not_pass_qc_by_center(empty_checkpoint()).empty


def test_average_days_to_qc_uses_utc_calendar_dates() -> None:
    result = average_days_to_qc_by_center(checkpoint()).set_index("center_label")
    # a: 2024-02-01 (23:59 UTC) - 01-30 = 2 days; 2024-02-04 - 01-30 = 5 days -> 3.5
    assert result.loc["a", "avg_qc_days"] == pytest.approx(3.5)
    assert result.loc["a", "qc_events"] == 2
    assert result.loc["b", "avg_qc_days"] == 0
    assert average_days_to_qc_by_center(empty_checkpoint()).empty


def test_state_objects_must_not_live_inside_the_event_prefix() -> None:
    with pytest.raises(ValueError, match="inside the event prefix"):
        Locations("events", "", "events", "checkpoints/events.parquet")
    ok = Locations("events", "logs/", "events", "checkpoints/events.parquet")
    assert ok.ledger_key == "checkpoints/events.ledger.parquet"
