"""The star step: an incremental entry when only new sales_order versions arrived.

Otherwise a full rebuild; both are published through the commit protocol (`commit.py`).

The incremental path reads the new raw parts and the dimension tables, never the order
history or the fact table, so one packet costs the same on any history (measured by
`benchmarks/sales_increment.py`).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow.json as pa_json

from ons_pipeline.sales.commit import (
    OUTPUT_SCHEMAS,
    Entry,
    Published,
    load_table,
    publish,
    recover,
)
from ons_pipeline.sales.packets import empty_rows
from ons_pipeline.sales.schema import PACKET_ID, STAR_KEYS
from ons_pipeline.sales.storage import (
    QUARANTINE_TABLE,
    Manifest,
    RawIndex,
    RawPart,
    load_histories,
    load_raw,
    packet_ranges,
    watermark_stamp,
)
from ons_pipeline.sales.transform import (
    SOURCE_TABLES,
    STAR_TABLES,
    StarSchemaResult,
    build_star_increment,
    build_star_schema,
    newest_version,
)

if TYPE_CHECKING:
    import logging
    from collections.abc import Mapping
    from datetime import datetime

    from ons_pipeline.resources import (
        ObjectStoreResource,
        ParameterStoreResource,
        SalesStorageResource,
    )

FACTS = "fact_sales_order"
DIMENSIONS = ("dim_staff", "dim_location", "dim_currency", "dim_design", "dim_counterparty")
# A sales_order column, and the dimension key it must exist in (what parks a fact).
SOURCE_FOREIGN_KEYS = {
    "staff_id": ("dim_staff", "staff_id"),
    "counterparty_id": ("dim_counterparty", "counterparty_id"),
    "currency_id": ("dim_currency", "currency_id"),
    "design_id": ("dim_design", "design_id"),
    "agreed_delivery_location_id": ("dim_location", "location_id"),
}


@dataclass(frozen=True)
class StarRun:
    """What the star step built and published, for the asset's checks and metadata.

    `frames` holds each star table whole, except in an incremental run the fact table's new
    rows only (checking those is exact: no stored fact is as late as they are); `quarantine`
    is the rows this run quarantined (a full rebuild: every quarantined row).
    """

    incremental: bool
    frames: dict[str, pd.DataFrame]
    quarantine: pd.DataFrame
    accounting: pd.DataFrame
    published: dict[str, Published]
    manifest: Manifest


@dataclass(frozen=True)
class Plan:
    """What changed since the committed entry, when an incremental run can take it."""

    order_parts: list[RawPart]
    dimensions_changed: bool


def run_star_step(
    log: logging.Logger,
    s3: ObjectStoreResource,
    ssm: ParameterStoreResource,
    storage: SalesStorageResource,
) -> StarRun:
    manifest = recover(log, s3, ssm, storage)
    indexes = {table: RawIndex.load(s3, storage, table) for table in SOURCE_TABLES}
    plan = plan_increment(manifest, indexes)
    if plan is None:
        log.info(
            "Full rebuild: the sales_order history was merged, or no entry records its raw state"
        )
    else:
        rows = sum(part["rows"] for part in plan.order_parts)
        log.info(
            f"Incremental: {len(plan.order_parts)} new sales_order part(s) ({rows} rows), "
            f"dimension histories {'changed' if plan.dimensions_changed else 'unchanged'}"
        )
        run = _incremental(log, s3, ssm, storage, manifest, indexes, plan)
        if run is not None:
            return run
    return _full(log, s3, ssm, storage, manifest, indexes)


def plan_increment(manifest: Manifest, indexes: Mapping[str, RawIndex]) -> Plan | None:
    """The new sales_order parts and whether a dimension moved; None if orders need history.

    None when the sales_order history was merged into a new base (a re-delivery or an older
    version arrived) or the manifest does not record what it was built from (before version
    3, or no entry yet).
    """
    if not manifest.accounting or set(manifest.raw) != set(SOURCE_TABLES):
        return None
    recorded, index = manifest.raw["sales_order"], indexes["sales_order"]
    if recorded["base"] != index.base or recorded["parts"] > len(index.parts):
        return None
    moved = any(manifest.raw[t] != indexes[t].state for t in SOURCE_TABLES if t != "sales_order")
    return Plan(index.parts[recorded["parts"] :], moved)


def _incremental(
    log: logging.Logger,
    s3: ObjectStoreResource,
    ssm: ParameterStoreResource,
    storage: SalesStorageResource,
    manifest: Manifest,
    indexes: Mapping[str, RawIndex],
    plan: Plan,
) -> StarRun | None:
    """New facts appended; changed dimensions rebuilt from their own (small) histories.

    None when a dimension change could move stored facts (see `_needs_history`).
    """
    committed = {table: _load(s3, storage, manifest, table) for table in (*DIMENSIONS, "dim_date")}
    dims = {table: committed[table] for table in DIMENSIONS}
    accounting = pd.DataFrame(manifest.accounting)
    replaced: dict[str, pd.DataFrame] = {}
    sources: dict[str, pd.DataFrame] = {}
    if plan.dimensions_changed:
        sources = {
            table: load_raw(s3, storage, table, indexes[table].keys())
            for table in SOURCE_TABLES
            if table != "sales_order"
        }
        rebuilt = build_star_schema({**sources, "sales_order": empty_rows("sales_order")})
        quarantine = _load(s3, storage, manifest, QUARANTINE_TABLE)  # only a dimension needs it
        reason = _needs_history(dims, rebuilt, quarantine)
        if reason:
            log.info(f"Full rebuild instead: {reason}")
            return None
        replaced = dims = {table: rebuilt.tables[table] for table in DIMENSIONS}
        dimension_counts = rebuilt.accounting[rebuilt.accounting["table"] != "sales_order"]
        accounting = (
            pd.concat([accounting[accounting["table"] == "sales_order"], dimension_counts])
            .set_index("table")
            .loc[list(SOURCE_TABLES)]
            .reset_index()
        )
    known_dates = committed["dim_date"]
    new_rows = {FACTS: _empty(FACTS), "dim_date": _empty("dim_date")}
    new_rows[QUARANTINE_TABLE] = _empty(QUARANTINE_TABLE)
    orders = empty_rows("sales_order")
    if plan.order_parts:
        orders = load_raw(s3, storage, "sales_order", [p["key"] for p in plan.order_parts])
        # No stored version can collide: every part holds rows newer than all stored ones.
        increment = build_star_increment(
            orders, _no_versions(), {**dims, "dim_date": known_dates}, known_dates["date_id"]
        )
        if increment is None:  # only a collision with a stored version returns None
            raise RuntimeError("a sales_order part repeats a stored version; parts never do")
        accounting = _add_accounting(accounting, increment.accounting)
        new_rows = {**increment.tables, QUARANTINE_TABLE: increment.quarantine}
    ranges = [r for part in plan.order_parts for r in part["packets"]]
    packet_ids = [i for first, last in ranges for i in range(first, last + 1)]
    entry = Entry(
        watermark=_newest(
            [watermark_stamp(manifest.watermark), newest_version(orders)]
            + [newest_version(frame) for frame in sources.values() if len(frame)]
        ),
        packets={"sales_order": packet_ranges(packet_ids)},
        raw={table: index.state for table, index in indexes.items()},
        accounting=_records(accounting),
    )
    manifest, published = publish(
        log, s3, ssm, storage, manifest, entry, replaced=replaced, appended=new_rows
    )
    for table in set(STAR_TABLES) - set(published):  # dimensions that did not change
        published[table] = Published(len(dims[table]), 0)
    frames = {**dims, FACTS: new_rows[FACTS]}
    frames["dim_date"] = pd.concat([known_dates, new_rows["dim_date"]], ignore_index=True)
    return StarRun(True, frames, new_rows[QUARANTINE_TABLE], accounting, published, manifest)


def _needs_history(
    committed: Mapping[str, pd.DataFrame], rebuilt: StarSchemaResult, quarantine: pd.DataFrame
) -> str | None:
    """Why changed dimensions could change stored facts or quarantined rows; None if not.

    A rebuild from the dimensions' own histories is exact for the facts when no dimension key
    vanished (no stored fact loses its dimension), the dimension rows quarantined are the
    same, and no fact parked for a missing dimension references a key that just appeared.
    """
    added: dict[str, np.ndarray] = {}
    for table, (key) in ((t, STAR_KEYS[t][0]) for t in DIMENSIONS):
        before = committed[table][key].to_numpy(dtype="int64")
        after = rebuilt.tables[table][key].to_numpy(dtype="int64")
        if not np.isin(before, after).all():
            return f"{table} lost keys a stored fact may reference"
        added[table] = after[~np.isin(after, before)]
    stored_rejects = quarantine[quarantine["table"] != "sales_order"].reset_index(drop=True)
    if not _same_rows(stored_rejects, rebuilt.quarantine):
        return "the dimension rows in quarantine changed"
    parked = quarantine[
        (quarantine["table"] == "sales_order") & (quarantine["reason"] == "missing_dimension")
    ]
    if len(parked) and any(len(keys) for keys in added.values()):
        records = pa_json.read_json(io.BytesIO("\n".join(parked["record"]).encode()))
        for column, (table, _) in SOURCE_FOREIGN_KEYS.items():
            values = records.column(column).to_numpy(zero_copy_only=False)
            if np.isin(values, added[table]).any():
                return f"a fact parked for a missing {column} may now find it in {table}"
    return None


def _same_rows(left: pd.DataFrame, right: pd.DataFrame) -> bool:
    if len(left) != len(right):
        return False
    if not len(left):
        return True
    columns = list(right.columns)
    hashes = [
        pd.util.hash_pandas_object(frame[columns].astype(str), index=False).to_numpy()
        for frame in (left, right)
    ]
    return bool((hashes[0] == hashes[1]).all())


def _no_versions() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "sales_order_id": np.array([], dtype="int64"),
            "last_updated": np.array([], dtype="datetime64[us]"),
        }
    )


def _full(
    log: logging.Logger,
    s3: ObjectStoreResource,
    ssm: ParameterStoreResource,
    storage: SalesStorageResource,
    manifest: Manifest,
    indexes: Mapping[str, RawIndex],
) -> StarRun:
    raw = load_histories(s3, storage, indexes)
    result = build_star_schema(raw)
    outputs = {**result.tables, QUARANTINE_TABLE: result.quarantine}
    entry = Entry(
        watermark=_newest([newest_version(frame) for frame in raw.values() if len(frame)]),
        packets={
            table: packet_ranges(pd.unique(raw[table][PACKET_ID].dropna()).tolist())
            for table in SOURCE_TABLES
        },
        raw={table: index.state for table, index in indexes.items()},
        accounting=_records(result.accounting),
    )
    manifest, published = publish(log, s3, ssm, storage, manifest, entry, replaced=outputs)
    return StarRun(False, result.tables, result.quarantine, result.accounting, published, manifest)


def _load(
    s3: ObjectStoreResource, storage: SalesStorageResource, manifest: Manifest, table: str
) -> pd.DataFrame:
    frame = load_table(s3, storage, manifest, table)
    return frame if frame is not None else _empty(table)


def _empty(table: str) -> pd.DataFrame:
    return OUTPUT_SCHEMAS[table].empty_table().to_pandas(types_mapper=pd.ArrowDtype)


def _newest(stamps: list[np.datetime64 | None]) -> datetime | None:
    """The newest `last_updated` stored: names the entry's files, so re-runs name them alike."""
    known = [stamp for stamp in stamps if stamp is not None]
    return pd.Timestamp(max(known)).to_pydatetime() if known else None


def _records(accounting: pd.DataFrame) -> list[dict[str, object]]:
    return json.loads(accounting.to_json(orient="records"))


def _add_accounting(total: pd.DataFrame, increment: pd.DataFrame) -> pd.DataFrame:
    """The committed per-table accounting plus this run's rows."""
    total = total.set_index("table")
    added = increment.set_index("table").reindex(total.index, fill_value=0)
    return (total + added[total.columns]).reset_index()
