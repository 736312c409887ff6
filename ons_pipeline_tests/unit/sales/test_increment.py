"""The star increment: from the new sales_order rows alone, the same rows a full rebuild adds.

Each case runs the full rebuild twice (before and after the packet) and compares its changed
rows, as Parquet bytes, with what `build_star_increment` builds from the new rows, the stored
versions and the current dimensions.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import numpy as np

from ons_pipeline.local.demo.sales_data import generate_totesys
from ons_pipeline.sales.outputs import changed_rows, from_parquet_bytes, to_parquet_bytes
from ons_pipeline.sales.packets import empty_rows, history_schema, merge_history, parse_packet
from ons_pipeline.sales.schema import LINE_NO, PACKET_ID, QUARANTINE_SCHEMA, STAR_SCHEMAS
from ons_pipeline.sales.transform import (
    SOURCE_TABLES,
    StarIncrement,
    StarSchemaResult,
    all_newer_than,
    build_star_increment,
    build_star_schema,
    newest_version,
    order_versions,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    import pandas as pd

SCHEMAS = {**STAR_SCHEMAS, "quarantine": QUARANTINE_SCHEMA}


def stored(frame: pd.DataFrame, table: str) -> pd.DataFrame:
    """The frame as the raw step stores and the star step reads it back."""
    return from_parquet_bytes(to_parquet_bytes(frame, history_schema(table)))


def histories(bad_rows: bool, hold_back: bool = True) -> tuple[dict[str, pd.DataFrame], bytes, int]:
    """The histories after the packets; the next sales_order packet's body and id.

    With `hold_back` the next packet is the corpus's last sales_order packet (not absorbed);
    without, every packet is absorbed and the next one holds later versions of the last one.
    """
    corpus = generate_totesys(600, packets_per_table=4, seed=5, bad_rows=bad_rows)
    last = max(p.packet_id for p in corpus.packets if p.table == "sales_order")
    held = last if hold_back else None
    raw = {}
    for table in SOURCE_TABLES:
        packets = [
            parse_packet(table, p.packet_id, p.body)
            for p in corpus.packets
            if p.table == table and not (table == "sales_order" and p.packet_id == held)
        ]
        raw[table] = stored(merge_history(empty_rows(table), packets, table), table)
    body = next(p.body for p in corpus.packets if p.table == "sales_order" and p.packet_id == last)
    return (raw, body, last) if hold_back else (raw, later_versions(body), last + 1)


def later_versions(body: bytes) -> bytes:
    """Each order line of the packet one version later (other lines unchanged)."""
    lines = []
    for number, line in enumerate(body.splitlines()):
        try:
            record = json.loads(line)
        except ValueError:
            lines.append(line)
            continue
        if isinstance(record.get("units_sold"), int):
            record["units_sold"] += 1
        record["last_updated"] = f"2031-01-01T00:{number // 60 % 60:02d}:{number % 60:02d}"
        lines.append(json.dumps(record).encode())
    return b"\n".join(lines) + b"\n"


def land(raw: dict[str, pd.DataFrame], body: bytes, packet_id: int) -> pd.DataFrame:
    """Merge the packet into the sales_order history (in place); returns the new rows."""
    history = raw["sales_order"]
    merged = merge_history(history, [parse_packet("sales_order", packet_id, body)], "sales_order")
    raw["sales_order"] = merged
    return merged.iloc[len(history) :].reset_index(drop=True)


def increment_of(
    before: StarSchemaResult, history: pd.DataFrame, new: pd.DataFrame, lookup: bool = True
) -> StarIncrement | None:
    """The increment; without `lookup` the stored versions are not read (the watermark gate)."""
    versions = order_versions(history if lookup else history.iloc[:0])
    snapshots = {  # as the star step reads them back
        table: from_parquet_bytes(to_parquet_bytes(frame, SCHEMAS[table]))
        for table, frame in before.tables.items()
    }
    return build_star_increment(new, versions, snapshots, snapshots["dim_date"]["date_id"])


def assert_same_as_full_rebuild(
    bad_rows: bool,
    hold_back: bool = True,
    body_of: Callable[[bytes], bytes] = bytes,
    lookup: bool = True,
) -> dict[str, int]:
    """Compare the increment with the full rebuild's changed rows; returns new rows by reason."""
    raw, body, packet_id = histories(bad_rows, hold_back)
    before = build_star_schema(raw)
    history = raw["sales_order"]
    new = land(raw, body_of(body), packet_id)
    after = build_star_schema(raw)

    if not lookup:
        assert all_newer_than(new, newest_version(history))
    increment = increment_of(before, history, new, lookup)

    assert increment is not None
    expected = {
        table: changed_rows(after.tables[table], before.tables[table])
        for table in ("fact_sales_order", "dim_date")
    }
    expected["quarantine"] = changed_rows(after.quarantine, before.quarantine)
    got = {**increment.tables, "quarantine": increment.quarantine}
    for table, rows in expected.items():
        assert len(got[table]) == len(rows), table
        assert to_parquet_bytes(got[table], SCHEMAS[table]) == to_parquet_bytes(
            rows, SCHEMAS[table]
        ), table
    for table, frame in after.tables.items():  # no other star table changes
        if table not in expected:
            assert changed_rows(frame, before.tables[table]).empty, table
    cumulative = (
        before.accounting.set_index("table").loc["sales_order"]
        + (increment.accounting.set_index("table").loc["sales_order"])
    )
    assert cumulative.to_dict() == after.accounting.set_index("table").loc["sales_order"].to_dict()
    assert len(expected["fact_sales_order"]) > 0
    return increment.quarantine["reason"].value_counts().to_dict()


def test_clean_packet_adds_the_rows_a_full_rebuild_adds() -> None:
    assert_same_as_full_rebuild(bad_rows=False)


def test_bad_rows_in_the_new_packet_match_the_full_rebuild() -> None:
    """The planted bad orders: invalid values, dangling keys, an orphaned staff member's order."""
    reasons = assert_same_as_full_rebuild(bad_rows=True)
    assert {"missing_required_key", "negative_units_sold", "missing_dimension"} <= set(reasons)


def test_parked_facts_stay_parked_when_no_dimension_arrives() -> None:
    raw, _, _ = histories(bad_rows=True, hold_back=False)
    assert (build_star_schema(raw).quarantine["reason"] == "missing_dimension").any()
    reasons = assert_same_as_full_rebuild(bad_rows=True, hold_back=False)
    assert reasons.get("missing_dimension")


def test_conflicting_versions_inside_the_new_packet_keep_the_later_delivery() -> None:
    def with_conflict(body: bytes) -> bytes:
        first = json.loads(body.splitlines()[0])
        first["units_sold"] += 7
        return body + (json.dumps(first) + "\n").encode()

    reasons = assert_same_as_full_rebuild(bad_rows=False, body_of=with_conflict)
    assert reasons == {"conflicting_version": 1}


def test_a_new_version_equal_to_a_stored_one_needs_the_full_rebuild() -> None:
    """A later delivery of a stored (id, last_updated) replaces a stored fact: no increment."""
    raw, _, packet_id = histories(bad_rows=False)
    before = build_star_schema(raw)
    history = raw["sales_order"]
    stored_fact = before.tables["fact_sales_order"].iloc[0]
    rows = history[history["sales_order_id"] == stored_fact["sales_order_id"]]
    record = json.loads(rows.drop(columns=[PACKET_ID, LINE_NO]).iloc[:1].to_json(orient="records"))[
        0
    ]
    record["units_sold"] += 1
    new = land(raw, (json.dumps(record) + "\n").encode(), packet_id)
    after = build_star_schema(raw)

    assert len(new) == 1
    assert increment_of(before, history, new) is None
    # Why: the full rebuild quarantines the stored version as conflicting_version.
    assert (after.quarantine["reason"] == "conflicting_version").sum() > (
        before.quarantine["reason"] == "conflicting_version"
    ).sum()


def test_order_versions_lists_the_valid_rows_typed() -> None:
    raw, _, _ = histories(bad_rows=True)
    versions = order_versions(raw["sales_order"])
    invalid = build_star_schema(raw).quarantine.query(
        "table == 'sales_order' and reason != 'missing_dimension'"
    )
    assert len(versions) == len(raw["sales_order"]) - len(invalid) > 0
    assert list(versions.columns) == ["sales_order_id", "last_updated"]
    assert str(versions["last_updated"].dtype) == "datetime64[us]"


def test_rows_newer_than_the_stored_watermark_need_no_version_lookup() -> None:
    """The usual packet: updated after every stored row, so no stored version is read."""
    reasons = assert_same_as_full_rebuild(bad_rows=True, hold_back=False, lookup=False)
    assert reasons.get("missing_dimension")


def test_rows_at_the_watermark_or_without_a_readable_time_are_not_newer() -> None:
    raw, _, _ = histories(bad_rows=False)
    orders = raw["sales_order"]
    watermark = newest_version(orders)
    assert watermark is not None
    assert all_newer_than(orders, watermark - np.timedelta64(5000, "D"))
    assert not all_newer_than(orders, watermark)
    newest = orders[orders["last_updated"] == orders["last_updated"].max()]
    assert not all_newer_than(newest, watermark)
    assert not all_newer_than(orders.iloc[:1].assign(last_updated="not a time"), None)
    assert all_newer_than(orders.iloc[:0], watermark)
    assert newest_version(orders.iloc[:0]) is None
