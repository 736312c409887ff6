"""Sales killed (SIGKILL) at every commit point, then re-run: exactly once, as if never killed."""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

import boto3
import pytest

from ons_pipeline.sales.demo_data import Packet, generate_totesys, land_packets
from ons_pipeline_tests.faults.harness import (
    REGION,
    SalesState,
    assert_exactly_once,
    failure_messages,
    kill_at,
    output_files,
    run_child,
    run_sales,
)

if TYPE_CHECKING:
    from ons_pipeline.local.stack import LocalStack

pytestmark = pytest.mark.integration

SALES_COMMIT_POINTS = [
    "sales.raw.after_history",
    "sales.before_intent",
    "sales.after_intent",
    "sales.after_first_star_file",
    "sales.before_commit",
    "sales.after_commit",
    "sales.after_parameters",
]
# From the entry on, the re-run finishes the killed run's entry: the same files as no kill.
ENTRY_RECORDED = SALES_COMMIT_POINTS[SALES_COMMIT_POINTS.index("sales.after_intent") :]


@cache
def batches() -> list[list[Packet]]:
    """Three deliveries: packet 1, 2 and 3 of every table (later ones update earlier rows)."""
    corpus = generate_totesys(240, packets_per_table=3, seed=11)
    return [[p for p in corpus.packets if p.packet_id == n] for n in (1, 2, 3)]


def land(state: SalesState, packets: list[Packet]) -> None:
    land_packets(boto3.client("s3", region_name=REGION), state.ingestion, packets)


@pytest.fixture(scope="module")
def runs(local_stack: LocalStack) -> dict[str, SalesState]:
    """After batch 1 (the start of every test), and uninterrupted runs to compare with."""
    with pytest.MonkeyPatch.context() as patch:
        for key, value in local_stack.env.items():
            patch.setenv(key, value)
        first, second, third = batches()
        start = SalesState.create()
        land(start, first)
        assert run_sales(start).success
        found = {"start": start}
        for name, delivered in (("same-input", [second]), ("new-packet", [second, third])):
            state = start.clone()
            for batch in delivered:
                land(state, batch)
                assert run_sales(state).success
            found[name] = state
        return found


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
