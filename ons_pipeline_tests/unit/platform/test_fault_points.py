"""The commit-point hook is inert without its variables; the visits automation setting."""

from __future__ import annotations

import pytest

from ons_pipeline.platform.faults import commit_point
from ons_pipeline.sales.storage import packet_ranges
from ons_pipeline.visits.schedules import automation_running


def test_commit_point_does_nothing_unless_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ONS_FAULT_KILL_AT", raising=False)
    monkeypatch.delenv("ONS_FAULT_PAUSE_AT", raising=False)
    commit_point("sales.after_intent")
    monkeypatch.setenv("ONS_FAULT_KILL_AT", "sales.some_other_point")
    commit_point("sales.after_intent")  # still alive


def test_packet_ranges() -> None:
    assert packet_ranges([3, 1, 2, 2, 7, 9, 8]) == [[1, 3], [7, 9]]
    assert packet_ranges([]) == []


@pytest.mark.parametrize(
    ("value", "running"),
    [(None, True), ("running", True), ("stopped", False), (" Stopped ", False)],
)
def test_visits_automation_setting(
    monkeypatch: pytest.MonkeyPatch, value: str | None, running: bool
) -> None:
    if value is None:
        monkeypatch.delenv("ONS_VISITS_AUTOMATION", raising=False)
    else:
        monkeypatch.setenv("ONS_VISITS_AUTOMATION", value)
    assert automation_running() is running


def test_visits_automation_setting_rejects_other_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ONS_VISITS_AUTOMATION", "paused")
    with pytest.raises(ValueError, match="running' or 'stopped"):
        automation_running()
