"""A sales run that changes nothing records nothing and says so once; pending work still runs."""

from __future__ import annotations

from typing import Any

import pytest
from dagster import DagsterInstance, materialize

from ons_pipeline.local.demo.sales_data import generate_totesys, land_packets
from ons_pipeline.sales.assets import RAW_KEYS, sales_star_schema, totesys_raw
from ons_pipeline.sales.checks import fact_foreign_keys_exist
from ons_pipeline.sales.sensors import packets_run_config
from ons_pipeline_tests.integration.sales.test_sales_job import Lake

pytestmark = pytest.mark.integration

ASSETS = [totesys_raw, sales_star_schema, fact_foreign_keys_exist]


@pytest.fixture
def lake(stack_env: dict[str, str]) -> Lake:
    return Lake()


def _run(lake: Lake, instance: DagsterInstance, packets: list[tuple[str, int]], **kw: Any) -> Any:
    return materialize(
        kw.pop("assets", ASSETS),
        resources=lake.resources(),
        run_config=packets_run_config(packets),
        instance=instance,
        **kw,
    )


def _messages(instance: DagsterInstance, run_id: str) -> list[str]:
    return [entry.user_message for entry in instance.all_logs(run_id)]


def test_a_run_that_changes_nothing_materialises_nothing(lake: Lake) -> None:
    corpus = generate_totesys(120, packets_per_table=1, seed=3, bad_rows=False)
    land_packets(lake.s3, lake.ingestion, corpus.packets)
    packets = [(p.table, p.packet_id) for p in corpus.packets]
    instance = DagsterInstance.ephemeral()

    first = _run(lake, instance, packets)
    assert first.success
    assert len(first.get_asset_materialization_events()) == 7 + 7  # raw + star (no quarantine)
    before = lake.objects()

    again = _run(lake, instance, packets)

    assert again.success
    assert again.get_asset_materialization_events() == []
    no_change = [m for m in _messages(instance, again.run_id) if m.startswith("No change")]
    assert len(no_change) == 1, no_change
    assert lake.objects() == before


def test_star_work_left_by_a_failed_run_is_done_by_the_next(lake: Lake) -> None:
    corpus = generate_totesys(120, packets_per_table=1, seed=4, bad_rows=False)
    land_packets(lake.s3, lake.ingestion, corpus.packets)
    packets = [(p.table, p.packet_id) for p in corpus.packets]
    instance = DagsterInstance.ephemeral()
    # The raw history commits, the star step never runs (as after a failure).
    raw_only = _run(lake, instance, packets, selection=list(RAW_KEYS.values()))
    assert raw_only.success
    assert lake.star_files("fact_sales_order") == []

    retry = _run(lake, instance, packets)

    assert retry.success
    assert len(lake.star_files("fact_sales_order")) == 1
