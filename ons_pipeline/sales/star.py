"""The star step: an incremental entry when only new sales_order versions arrived.

Otherwise a full rebuild; both are published through the commit protocol (`commit.py`).

The incremental path reads the new raw parts and the dimension tables, never the order
history or the fact table, so one packet costs the same on any history (measured by
`benchmarks/sales_increment.py`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ons_pipeline.sales.commit import (
    OUTPUT_SCHEMAS,
    Entry,
    Published,
    load_table,
    publish,
    publish_increment,
    recover,
)
from ons_pipeline.sales.schema import PACKET_ID
from ons_pipeline.sales.storage import (
    QUARANTINE_TABLE,
    Manifest,
    RawIndex,
    RawPart,
    load_histories,
    load_raw,
    packet_ranges,
)
from ons_pipeline.sales.transform import (
    SOURCE_TABLES,
    STAR_TABLES,
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
# Star tables an incremental entry appends to; the other dimensions cannot change in one.
APPENDED = (FACTS, "dim_date", QUARANTINE_TABLE)


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


def run_star_step(
    log: logging.Logger,
    s3: ObjectStoreResource,
    ssm: ParameterStoreResource,
    storage: SalesStorageResource,
) -> StarRun:
    manifest = recover(log, s3, ssm, storage)
    indexes = {table: RawIndex.load(s3, storage, table) for table in SOURCE_TABLES}
    parts = new_order_parts(manifest, indexes)
    if parts:
        log.info(
            f"Incremental: {len(parts)} new sales_order part(s), "
            f"{sum(p['rows'] for p in parts)} rows; the history is not read"
        )
        return _incremental(log, s3, ssm, storage, manifest, indexes, parts)
    log.info("Full rebuild: the raw history changed beyond new sales_order versions")
    return _full(log, s3, ssm, storage, manifest, indexes)


def new_order_parts(manifest: Manifest, indexes: Mapping[str, RawIndex]) -> list[RawPart] | None:
    """The sales_order parts the committed state lacks, if they are the only raw change.

    None when anything else moved (a dimension's history, a merged sales_order base) or the
    manifest does not record what it was built from (before version 3, or no entry yet).
    """
    if not manifest.accounting or set(manifest.raw) != set(SOURCE_TABLES):
        return None
    if any(manifest.raw[t] != indexes[t].state for t in SOURCE_TABLES if t != "sales_order"):
        return None
    recorded, index = manifest.raw["sales_order"], indexes["sales_order"]
    if recorded["base"] != index.base or recorded["parts"] > len(index.parts):
        return None
    return index.parts[recorded["parts"] :]


def _incremental(
    log: logging.Logger,
    s3: ObjectStoreResource,
    ssm: ParameterStoreResource,
    storage: SalesStorageResource,
    manifest: Manifest,
    indexes: Mapping[str, RawIndex],
    parts: list[RawPart],
) -> StarRun:
    orders = load_raw(s3, storage, "sales_order", [part["key"] for part in parts])
    dims = {
        table: load_table(s3, storage, manifest, table) for table in STAR_TABLES if table != FACTS
    }
    dims = {table: frame if frame is not None else _empty(table) for table, frame in dims.items()}
    # No stored version can collide: every part holds rows newer than all stored ones.
    no_versions = pd.DataFrame(
        {
            "sales_order_id": np.array([], dtype="int64"),
            "last_updated": np.array([], dtype="datetime64[us]"),
        }
    )
    increment = build_star_increment(orders, no_versions, dims, dims["dim_date"]["date_id"])
    assert increment is not None  # only a stored version collision returns None
    accounting = _add_accounting(manifest.accounting, increment.accounting)
    entry = Entry(
        watermark=_newest([_stamp(manifest.watermark), newest_version(orders)]),
        packets={"sales_order": packet_ranges([i for p in parts for r in p["packets"] for i in r])},
        raw={table: index.state for table, index in indexes.items()},
        accounting=_records(accounting),
    )
    new_rows = {
        FACTS: increment.tables[FACTS],
        "dim_date": increment.tables["dim_date"],
        QUARANTINE_TABLE: increment.quarantine,
    }
    manifest, published = publish_increment(log, s3, ssm, storage, manifest, new_rows, entry)
    for table in set(STAR_TABLES) - set(published):  # dimensions an append cannot change
        published[table] = Published(len(dims[table]), 0)
    frames = {**dims, FACTS: increment.tables[FACTS]}
    frames["dim_date"] = pd.concat([dims["dim_date"], increment.tables["dim_date"]])
    return StarRun(True, frames, increment.quarantine, accounting, published, manifest)


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
    manifest, published = publish(log, s3, ssm, storage, manifest, outputs, entry)
    return StarRun(False, result.tables, result.quarantine, result.accounting, published, manifest)


def _empty(table: str) -> pd.DataFrame:
    return OUTPUT_SCHEMAS[table].empty_table().to_pandas(types_mapper=pd.ArrowDtype)


def _stamp(text: str | None) -> np.datetime64 | None:
    return None if not text else np.datetime64(pd.Timestamp(text), "us")


def _newest(stamps: list[np.datetime64 | None]) -> datetime | None:
    """The newest `last_updated` stored: names the entry's files, so re-runs name them alike."""
    known = [stamp for stamp in stamps if stamp is not None]
    return pd.Timestamp(max(known)).to_pydatetime() if known else None


def _records(accounting: pd.DataFrame) -> list[dict[str, object]]:
    return json.loads(accounting.to_json(orient="records"))


def _add_accounting(cumulative: list[dict[str, object]], increment: pd.DataFrame) -> pd.DataFrame:
    """The committed per-table accounting plus this run's rows."""
    total = pd.DataFrame(cumulative).set_index("table")
    added = increment.set_index("table").reindex(total.index, fill_value=0)
    return (total + added[total.columns]).reset_index()
