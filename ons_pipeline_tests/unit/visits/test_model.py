"""VisitEvent: every rule of the contract (ARCHITECTURE section 5), accepted and rejected."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from ons_pipeline.visits.schema import EVENT_COLUMNS, VisitEvent


def event(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "action": "submit",
        "study": "adrc",
        "pipeline_adcid": 42,
        "project_label": "ingest-form",
        "center_label": "alpha-adrc",
        "gear_name": "form-scheduler",
        "ptid": "ABC123",
        "visit_date": "2024-01-15",
        "visit_number": "01",
        "datatype": "form",
        "module": "UDS",
        "packet": "I",
        "timestamp": "2024-01-15T10:00:00Z",
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not ...}


def errors_of(payload: dict[str, Any]) -> list[tuple[str, str]]:
    with pytest.raises(ValidationError) as info:
        VisitEvent.model_validate(payload)
    return [(".".join(map(str, e["loc"])), e["type"]) for e in info.value.errors()]


def test_a_complete_event_is_valid_and_has_the_thirteen_fields() -> None:
    parsed = VisitEvent.model_validate(event())
    assert len(EVENT_COLUMNS) == 13
    assert parsed.model_dump()["timestamp"] == datetime(2024, 1, 15, 10, tzinfo=UTC)


@pytest.mark.parametrize("action", ["submit", "pass-qc", "not-pass-qc", "delete"])
def test_every_action_is_accepted(action: str) -> None:
    assert VisitEvent.model_validate(event(action=action)).action == action


@pytest.mark.parametrize("action", ["Submit", "pass_qc", "", "approve", 1, None])
def test_other_actions_are_rejected(action: object) -> None:
    assert errors_of(event(action=action))[0][0] == "action"


def test_study_defaults_to_adrc_and_accepts_others() -> None:
    assert VisitEvent.model_validate(event(study=...)).study == "adrc"
    assert VisitEvent.model_validate(event(study="dvcid")).study == "dvcid"
    assert errors_of(event(study=5)) == [("study", "string_type")]


@pytest.mark.parametrize("value", [0, 42, 10_000])
def test_pipeline_adcid_accepts_ints(value: int) -> None:
    assert VisitEvent.model_validate(event(pipeline_adcid=value)).pipeline_adcid == value


@pytest.mark.parametrize("value", ["42", 42.0, 42.5, True, None])
def test_pipeline_adcid_is_strict(value: object) -> None:
    assert errors_of(event(pipeline_adcid=value))[0][0] == "pipeline_adcid"


@pytest.mark.parametrize(
    "name", ["project_label", "center_label", "gear_name", "datatype", "visit_number"]
)
def test_required_strings_are_required_and_strict(name: str) -> None:
    assert errors_of(event(**{name: ...})) == [(name, "missing")]
    assert errors_of(event(**{name: 1})) == [(name, "string_type")]
    assert getattr(VisitEvent.model_validate(event(**{name: "x"})), name) == "x"


@pytest.mark.parametrize("ptid", ["A", "ABC123", "1234567890", "Z9"])
def test_ptid_accepts_upper_alphanumerics_up_to_ten(ptid: str) -> None:
    assert VisitEvent.model_validate(event(ptid=ptid)).ptid == ptid


@pytest.mark.parametrize("ptid", ["", "abc123", "ABC-123", "ABC 123", "12345678901", "É1", 123])
def test_ptid_rejects_everything_else(ptid: object) -> None:
    assert errors_of(event(ptid=ptid))[0][0] == "ptid"


def test_visit_date_accepts_a_real_iso_date() -> None:
    parsed = VisitEvent.model_validate(event(visit_date="2024-02-29"))
    assert parsed.visit_date == date(2024, 2, 29)


@pytest.mark.parametrize(
    "value",
    ["2023-02-29", "2024-13-01", "2024-1-5", "15/01/2024", "2024-01-15T00:00:00", 20240115, None],
)
def test_visit_date_rejects_impossible_or_non_iso_dates(value: object) -> None:
    assert errors_of(event(visit_date=value))[0][0] == "visit_date"


def test_module_and_packet_are_optional_strings() -> None:
    parsed = VisitEvent.model_validate(event(module=..., packet=None))
    assert parsed.module is None
    assert parsed.packet is None
    assert errors_of(event(module=3))[0][0] == "module"
    assert errors_of(event(packet=["I"]))[0][0] == "packet"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2024-01-15T10:00:00Z", datetime(2024, 1, 15, 10, tzinfo=UTC)),
        ("2024-01-15T10:00:00", datetime(2024, 1, 15, 10, tzinfo=UTC)),  # naive = UTC
        ("2024-01-15T12:00:00+02:00", datetime(2024, 1, 15, 10, tzinfo=UTC)),
        ("2024-01-15 10:00:00.123456", datetime(2024, 1, 15, 10, 0, 0, 123456, tzinfo=UTC)),
        ("2024-01-15T10:00", datetime(2024, 1, 15, 10, tzinfo=UTC)),
    ],
)
def test_timestamp_becomes_a_utc_instant(value: str, expected: datetime) -> None:
    parsed = VisitEvent.model_validate(event(timestamp=value)).timestamp
    assert parsed == expected
    assert parsed.utcoffset() is not None
    assert parsed.utcoffset().total_seconds() == 0  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "value", ["2024-01-15", "yesterday", "2024-01-15T25:00:00", 1705312800, "", None]
)
def test_timestamp_rejects_non_iso_values(value: object) -> None:
    assert errors_of(event(timestamp=value))[0][0] == "timestamp"


def test_unknown_fields_reject_the_event() -> None:
    assert errors_of(event(visit_numbr="01")) == [("visit_numbr", "extra_forbidden")]


@pytest.mark.parametrize(
    "name", [c for c in EVENT_COLUMNS if c not in {"study", "module", "packet"}]
)
def test_each_required_field_is_required(name: str) -> None:
    assert errors_of(event(**{name: ...})) == [(name, "missing")]
