"""The incremental star entry over the wire: what a full rebuild would publish, exactly once
when killed at any point, and built without reading the history."""

from __future__ import annotations

import io
import json
from typing import TYPE_CHECKING

import boto3
import pandas as pd
import pytest

from ons_pipeline.local.demo.sales_data import Packet, later_versions
from ons_pipeline_tests.faults.harness import (
    REGION,
    SALES_COMMIT_POINTS,
    SalesState,
    assert_exactly_once,
    batches,
    failure_messages,
    kill_at,
    land,
    order_updates,
    output_files,
    race_freely,
    run_child,
    run_sales,
)

if TYPE_CHECKING:
    from ons_pipeline.local.stack import LocalStack

pytestmark = pytest.mark.integration


def manifest_of(state: SalesState) -> dict:
    s3 = boto3.client("s3", region_name=REGION)
    body = s3.get_object(Bucket=state.processed, Key="_state/sales/manifest.json")["Body"]
    return json.loads(body.read())


def test_an_appended_entry_publishes_what_a_full_rebuild_would(
    stack_env: dict[str, str], runs: dict[str, SalesState]
) -> None:
    appended, rebuilt = manifest_of(runs["increment"]), manifest_of(runs["increment-full"])

    assert output_files(runs["increment"]) == output_files(runs["increment-full"])
    appended_tables = {table for table, parts in appended["appended"].items() if parts}
    assert appended_tables == {"fact_sales_order", "dim_date", "quarantine"}
    assert not any(rebuilt["appended"].values())  # the full rebuild wrote new snapshots
    assert appended["accounting"] == rebuilt["accounting"]
    assert appended["rows"] == rebuilt["rows"]
    assert appended["raw"]["sales_order"]["parts"] == 1
    new_files = set(output_files(runs["increment"])) - set(output_files(runs["new-packet"]))
    # 2031-01-01 is a new day; the bad row's quarantine file is under quarantine/sales/star/
    assert sorted(key.split("/")[0] for key in new_files) == [
        "dim_date",
        "fact_sales_order",
        "quarantine",
    ]


@pytest.mark.parametrize("point", SALES_COMMIT_POINTS)
def test_an_appending_run_killed_then_rerun_is_exactly_once(
    stack_env: dict[str, str], runs: dict[str, SalesState], point: str
) -> None:
    state = runs["new-packet"].clone()
    land(state, [order_updates()])

    code, report = run_child("sales", state, **kill_at(point))
    assert code == -9, f"the run was not killed at {point}: {report}"
    rerun = run_sales(state)

    assert rerun.success, failure_messages(rerun)
    assert_exactly_once(state, runs["increment"])
    assert output_files(state) == output_files(runs["increment"])
    assert manifest_of(state)["appended"]["fact_sales_order"]  # it appended, not rebuilt


def test_two_appending_runs_racing_freely_end_exactly_once(
    stack_env: dict[str, str], runs: dict[str, SalesState]
) -> None:
    state = runs["new-packet"].clone()
    land(state, [order_updates()])

    race_freely(state)

    assert run_sales(state).success
    assert_exactly_once(state, runs["increment"])
    assert output_files(state) == output_files(runs["increment"])


def test_a_full_rebuild_after_appended_entries_replaces_their_parts(
    stack_env: dict[str, str], runs: dict[str, SalesState]
) -> None:
    """A late delivery (the quarantined version re-sent valid) needs the whole history."""
    first = next(p for p in batches()[0] if p.table == "sales_order")
    resent = later_versions("sales_order", first.body, 40, 5)
    appended, rebuilt = runs["increment"].clone(), runs["increment-full"].clone()
    parts = manifest_of(appended)["appended"]["fact_sales_order"]

    for state in (appended, rebuilt):
        land(state, [resent])
        result = run_sales(state)
        assert result.success, failure_messages(result)

    assert output_files(appended) == output_files(rebuilt)
    assert_exactly_once(appended, rebuilt)
    after = manifest_of(appended)
    assert after["appended"]["fact_sales_order"] == []  # a new snapshot replaced the part
    assert after["appended"]["dim_date"]  # unchanged tables keep theirs
    assert after["raw"]["sales_order"]["parts"] == 0  # merged into a new base
    s3 = boto3.client("s3", region_name=REGION)
    for key in parts:  # replaced by the new snapshot, then dropped
        with pytest.raises(s3.exceptions.NoSuchKey):
            s3.get_object(Bucket=appended.processed, Key=key)


def _run_both(states: tuple[SalesState, SalesState], packets: list[Packet]) -> None:
    for state in states:
        land(state, packets)
        result = run_sales(state)
        assert result.success, failure_messages(result)


def _packet_of(table: str, batch: int = 0) -> Packet:
    return next(p for p in batches()[batch] if p.table == table)


def test_dimension_updates_merge_without_the_order_history(
    stack_env: dict[str, str], runs: dict[str, SalesState]
) -> None:
    appended, rebuilt = runs["increment"].clone(), runs["increment-full"].clone()
    staff = later_versions("staff", _packet_of("staff").body, 3, 4, changes={"first_name": "Ada"})
    orders = later_versions("sales_order", _packet_of("sales_order").body, 25, 5, day=2)

    _run_both((appended, rebuilt), [staff, orders])

    assert output_files(appended) == output_files(rebuilt)
    assert_exactly_once(appended, rebuilt)
    after = manifest_of(appended)
    assert len(after["appended"]["fact_sales_order"]) == 2  # appended again, not rebuilt
    assert (
        after["snapshots"]["dim_staff"] != manifest_of(runs["increment"])["snapshots"]["dim_staff"]
    )
    assert after["accounting"] == manifest_of(rebuilt)["accounting"]


def test_a_key_a_parked_fact_waits_for_makes_a_full_rebuild(
    stack_env: dict[str, str], runs: dict[str, SalesState]
) -> None:
    """The planted order with an unknown design stays parked until that design arrives."""
    appended, rebuilt = runs["increment"].clone(), runs["increment-full"].clone()
    s3 = boto3.client("s3", region_name=REGION)
    quarantine = [key for key in output_files(appended) if key.startswith("quarantine/sales/star/")]
    parked = pd.concat(
        pd.read_parquet(
            io.BytesIO(s3.get_object(Bucket=appended.processed, Key=key)["Body"].read())
        )
        for key in quarantine
    )
    (record,) = parked[parked["detail"] == "design_id"]["record"]
    design_id = json.loads(record)["design_id"]
    design = later_versions(
        "design", _packet_of("design").body, 1, 4, changes={"design_id": design_id}
    )

    _run_both((appended, rebuilt), [design])

    assert output_files(appended) == output_files(rebuilt)
    assert manifest_of(appended)["appended"]["fact_sales_order"] == []  # rebuilt in full
    new_facts = set(output_files(appended)) - set(output_files(runs["increment"]))
    assert any(key.startswith("fact_sales_order/") for key in new_facts)  # the fact un-parked


@pytest.fixture(scope="module")
def dimension_update(
    local_stack: LocalStack, runs: dict[str, SalesState]
) -> tuple[list[Packet], SalesState]:
    """A staff packet and an order packet, and the state one uninterrupted run leaves."""
    staff = later_versions("staff", _packet_of("staff").body, 3, 4, changes={"first_name": "Ada"})
    orders = later_versions("sales_order", _packet_of("sales_order").body, 25, 5, day=2)
    with pytest.MonkeyPatch.context() as patch:
        for key, value in local_stack.env.items():
            patch.setenv(key, value)
        baseline = runs["increment"].clone()
        _run_both((baseline,), [staff, orders])
    return [staff, orders], baseline


@pytest.mark.parametrize(
    "point", ["sales.after_intent", "sales.after_first_star_file", "sales.before_commit"]
)
def test_an_entry_replacing_dimensions_and_appending_facts_finishes_after_a_kill(
    stack_env: dict[str, str],
    runs: dict[str, SalesState],
    dimension_update: tuple[list[Packet], SalesState],
    point: str,
) -> None:
    """Recovery rebuilds the replaced dimension's file and copies the appended parts."""
    packets, baseline = dimension_update
    state = runs["increment"].clone()
    land(state, packets)

    code, report = run_child("sales", state, **kill_at(point))
    assert code == -9, f"the run was not killed at {point}: {report}"
    rerun = run_sales(state)

    assert rerun.success, failure_messages(rerun)
    assert_exactly_once(state, baseline)
    assert output_files(state) == output_files(baseline)
    assert len(manifest_of(state)["appended"]["fact_sales_order"]) == 2
