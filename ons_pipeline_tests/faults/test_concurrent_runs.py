"""Two runs on the same state at once: one wins each step, the other fails clearly or
finds its work done; either way the outputs are exactly once."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import pytest

from ons_pipeline_tests.faults.harness import (
    SalesState,
    assert_exactly_once,
    batches,
    failure_messages,
    finish_child,
    land,
    output_files,
    pause_at,
    race_freely,
    run_sales,
    start_child,
)

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.integration


def wait_for(path: Path, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        assert time.monotonic() < deadline, f"the paused run never reached {path.name}"
        time.sleep(0.05)


def interleave(state: SalesState, point: str, release: Path) -> tuple[int, dict, object]:
    """Run A to `point`, run B to the end meanwhile, then let A finish."""
    first = start_child("sales", state, pause_at(point, release))
    wait_for(release.with_name(release.name + ".reached"))
    second = run_sales(state)
    release.touch()
    code, report = finish_child(first)
    return code, report, second


def test_the_loser_of_the_manifest_write_fails_clearly_and_publishes_nothing(
    stack_env: dict[str, str],
    runs: dict[str, SalesState],
    tmp_path: Path,
) -> None:
    state = runs["start"].clone()
    land(state, batches()[1])

    code, report, second = interleave(state, "sales.before_intent", tmp_path / "go")

    assert second.success, failure_messages(second)
    assert code == 0 and not report["success"], report
    (message,) = [m for m in report["failures"] if "Another run holds" in m]
    assert "sales manifest entry 2" in message
    assert run_sales(state).success  # what a retry does: nothing left to publish
    assert_exactly_once(state, runs["same-input"])
    assert output_files(state) == output_files(runs["same-input"])


def test_a_run_that_finds_an_entry_pending_finishes_it_for_the_other(
    stack_env: dict[str, str],
    runs: dict[str, SalesState],
    tmp_path: Path,
) -> None:
    state = runs["start"].clone()
    land(state, batches()[1])

    code, report, second = interleave(state, "sales.after_intent", tmp_path / "go")

    assert second.success, failure_messages(second)
    assert code == 0 and report["success"], report  # its entry was committed for it
    assert_exactly_once(state, runs["same-input"])
    assert output_files(state) == output_files(runs["same-input"])


def test_two_runs_racing_freely_end_exactly_once(
    stack_env: dict[str, str],
    runs: dict[str, SalesState],
) -> None:
    state = runs["start"].clone()
    land(state, batches()[1])

    race_freely(state)

    assert run_sales(state).success
    assert_exactly_once(state, runs["same-input"])
