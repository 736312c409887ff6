"""Sales killed (SIGKILL) at every commit point, then re-run: exactly once, as if never killed."""

from __future__ import annotations

import pytest

from ons_pipeline_tests.faults.harness import (
    SALES_COMMIT_POINTS,
    SalesState,
    assert_exactly_once,
    batches,
    failure_messages,
    kill_at,
    land,
    output_files,
    run_child,
    run_sales,
)

pytestmark = pytest.mark.integration

# From the entry on, the re-run finishes the killed run's entry: the same files as no kill.
ENTRY_RECORDED = SALES_COMMIT_POINTS[SALES_COMMIT_POINTS.index("sales.after_intent") :]


@pytest.mark.parametrize("new_packet", [False, True], ids=["same-input", "new-packet"])
@pytest.mark.parametrize("point", SALES_COMMIT_POINTS)
def test_killed_at_a_commit_point_then_rerun_is_exactly_once(
    stack_env: dict[str, str], runs: dict[str, SalesState], point: str, new_packet: bool
) -> None:
    _, second, third = batches()
    state = runs["start"].clone()
    land(state, second)

    code, report = run_child("sales", state, **kill_at(point))
    assert code == -9, f"the run was not killed at {point}: {report}"
    if new_packet:
        land(state, third)
    rerun = run_sales(state)

    assert rerun.success, failure_messages(rerun)
    baseline = runs["new-packet" if new_packet else "same-input"]
    assert_exactly_once(state, baseline)
    if not new_packet or point in ENTRY_RECORDED:
        assert output_files(state) == output_files(baseline)


def test_state_written_before_the_protocol_is_taken_over(
    stack_env: dict[str, str], runs: dict[str, SalesState]
) -> None:
    """A manifest and snapshots from before the protocol: the next run carries on from them."""
    import json

    import boto3

    state = runs["start"].clone()
    s3 = boto3.client("s3", region_name="eu-west-2")
    manifest = json.loads(
        s3.get_object(Bucket=state.processed, Key="_state/sales/manifest.json")["Body"].read()
    )
    for table, key in manifest["snapshots"].items():  # the old layout: one object per table
        s3.copy_object(
            Bucket=state.processed,
            Key=f"_state/sales/star/{table}.parquet",
            CopySource={"Bucket": state.processed, "Key": key},
        )
        s3.delete_object(Bucket=state.processed, Key=key)
    legacy = {"output_sequence": manifest["output_sequence"], "watermark": manifest["watermark"]}
    s3.put_object(Bucket=state.processed, Key="_state/sales/manifest.json", Body=json.dumps(legacy))
    land(state, batches()[1])

    rerun = run_sales(state)

    assert rerun.success, failure_messages(rerun)
    assert_exactly_once(state, runs["same-input"])
    assert output_files(state) == output_files(runs["same-input"])
