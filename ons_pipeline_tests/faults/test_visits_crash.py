"""Visits killed (SIGKILL) at every commit point, then re-run: every event exactly once."""

from __future__ import annotations

import time
from functools import cache

import pytest

from ons_pipeline.visits.demo_data import EventFile, generate_corpus, synthetic_files
from ons_pipeline_tests.faults.harness import (
    VisitsState,
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


@cache
def deliveries() -> tuple[list[EventFile], list[EventFile], list[EventFile]]:
    """Files before the first run, announced before the killed run, and landing after it."""
    corpus = generate_corpus(12, seed=8, late_fraction=0.5)
    return corpus.initial, corpus.late, synthetic_files(5, start=700)


@pytest.fixture(scope="session")
def uninterrupted(local_stack: object) -> dict[bool, VisitsState]:
    with pytest.MonkeyPatch.context() as patch:
        for key, value in local_stack.env.items():  # type: ignore[attr-defined]
            patch.setenv(key, value)
        found = {}
        for new_input in (False, True):
            state = VisitsState.create()
            for files in deliveries()[: 3 if new_input else 2]:
                state.land(files)
                assert run_visits(state).success
            found[new_input] = state
        return found


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
