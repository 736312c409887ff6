"""The checkpoint's asset checks, evaluated in the step that writes it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dagster import AssetCheckResult, AssetCheckSeverity, AssetCheckSpec

if TYPE_CHECKING:
    from dagster import AssetKey

    from ons_pipeline.visits.storage import CheckpointOutcome

CHECKPOINT_CHECKS = {
    "total_events_never_decreases": "The checkpoint holds at least as many events as after "
    "the last run.",
    "no_duplicate_events": "No two rows are the same normalised event.",
    "files_accounted_for": "Every event file read is either valid or rejected with a reason.",
}


def checkpoint_check_specs(asset: AssetKey) -> list[AssetCheckSpec]:
    return [
        AssetCheckSpec(name, asset=asset, description=description)
        for name, description in CHECKPOINT_CHECKS.items()
    ]


def checkpoint_checks(
    outcome: CheckpointOutcome, previous_total: int | None
) -> list[AssetCheckResult]:
    """ERROR severity: each one failing means an event was lost or counted twice."""
    duplicates = int(outcome.checkpoint.duplicated().sum())
    accounted = outcome.files_valid + outcome.events_failed
    return [
        AssetCheckResult(
            check_name="total_events_never_decreases",
            passed=previous_total is None or outcome.total_events >= previous_total,
            severity=AssetCheckSeverity.ERROR,
            metadata={
                "previous_total_events": "none: first checkpoint"
                if previous_total is None
                else previous_total,
                "total_events": outcome.total_events,
            },
        ),
        AssetCheckResult(
            check_name="no_duplicate_events",
            passed=duplicates == 0,
            severity=AssetCheckSeverity.ERROR,
            metadata={"duplicate_rows": duplicates},
        ),
        AssetCheckResult(
            check_name="files_accounted_for",
            passed=accounted == outcome.files_read,
            severity=AssetCheckSeverity.ERROR,
            metadata={
                "files_read": outcome.files_read,
                "files_valid": outcome.files_valid,
                "events_failed": outcome.events_failed,
            },
        ),
    ]
