"""Visits killed (SIGKILL) at every commit point, then re-run: every event exactly once."""

from __future__ import annotations

import time

import pytest

from ons_pipeline_tests.faults.harness import (
    VisitsState,
    deliveries,
    failure_messages,
    kill_at,
    run_child,
    run_visits,
)

pytestmark = pytest.mark.integration

VISITS_COMMIT_POINTS = [
    "visits.after_receive",
    "visits.after_checkpoint",
    "visits.after_ledger",
    "visits.after_notifications",
]


@pytest.mark.parametrize("new_input", [False, True], ids=["same-input", "new-files"])
@pytest.mark.parametrize("point", VISITS_COMMIT_POINTS)
def test_killed_at_a_commit_point_then_rerun_is_exactly_once(
    stack_env: dict[str, str],
    uninterrupted: dict[bool, VisitsState],
    point: str,
    new_input: bool,
) -> None:
    initial, late, after = deliveries()
    state = VisitsState.create()
    state.land(initial)
    assert run_visits(state).success
    state.land(late)

    code, report = run_child("visits", state, **kill_at(point))
    assert code == -9, f"the run was not killed at {point}: {report}"
    if new_input:
        state.land(after)
    time.sleep(state.visibility_s + 0.5)  # what the killed run received is visible again
    rerun = run_visits(state)

    assert rerun.success, failure_messages(rerun)
    baseline = uninterrupted[new_input]
    checkpoint = state.checkpoint()
    assert not checkpoint.duplicated().any()
    assert checkpoint.equals(baseline.checkpoint())
    assert state.ledger_keys() == baseline.ledger_keys()
    assert state.queued() == 0  # every announcement settled, none left to replay
