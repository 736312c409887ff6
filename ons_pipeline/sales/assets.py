"""Sales asset group: ToteSys packets -> raw history -> star schema Parquet.

Commit order makes every step re-runnable: the raw history absorbs a packet idempotently
(a conditional PUT, so two runs cannot both replace it); the star files follow the commit
protocol in `commit.py` (a write-ahead manifest entry the next run finishes), so a crash at
any point or a concurrent run never duplicates a row or reuses a sequence number. The assets
here are wiring and metadata; reads and writes live in `storage.py`, the protocol in
`commit.py`, the transform in `transform.py`.
"""

import logging
import time
from collections.abc import Iterator

import pandas as pd
from dagster import (
    AssetCheckKey,
    AssetCheckResult,
    AssetExecutionContext,
    AssetKey,
    AssetSpec,
    Config,
    Failure,
    MaterializeResult,
    MetadataValue,
    multi_asset,
)
from pydantic import Field

from ons_pipeline.platform.failures import classified_failures
from ons_pipeline.platform.metadata import (
    AWS_RETRY_POLICY,
    OWNERS,
    asset_tags,
    column_schema_metadata,
    markdown_table,
)
from ons_pipeline.resources import (
    CloudWatchMetricsResource,
    Metric,
    ObjectStoreResource,
    ParameterStoreResource,
    SalesStorageResource,
)
from ons_pipeline.resources.defaults import METRICS_NAMESPACE_SALES
from ons_pipeline.sales.checks import (
    STAR_KEYS_BY_TABLE,
    rows_accounted_for,
    star_check_specs,
    table_checks,
)
from ons_pipeline.sales.commit import Published
from ons_pipeline.sales.packets import history_schema, packet_key
from ons_pipeline.sales.schema import COLUMN_DESCRIPTIONS, QUARANTINE_SCHEMA, STAR_SCHEMAS
from ons_pipeline.sales.star import StarRun, run_star_step
from ons_pipeline.sales.storage import (
    QUARANTINE_TABLE,
    Absorbed,
    absorb_packets,
    discover_packets,
    raw_index_key,
    uri,
)
from ons_pipeline.sales.transform import SOURCE_TABLES, STAR_TABLES

SALES_GROUP = "sales"
RAW_KEYS = {table: AssetKey(["totesys", table]) for table in SOURCE_TABLES}
QUARANTINE_KEY = AssetKey(["sales_quarantine"])

SALES_RETRY_POLICY = AWS_RETRY_POLICY
SALES_TAGS = asset_tags(SALES_GROUP, "totesys")


class PacketRef(Config):
    table: str = Field(description="ToteSys source table, e.g. sales_order.")
    id: int = Field(description="Packet id (sequential per table from 1).")


class PacketsConfig(Config):
    """The seed's trigger payload `{"packets": [{"table": ..., "id": ...}]}`."""

    packets: list[PacketRef] = Field(
        default_factory=list,
        description=(
            "Packets to process. Empty: every packet after the last one recorded in "
            "Parameter Store."
        ),
    )
    not_packets: dict[str, str] = Field(
        default_factory=dict,
        description="Keys in the ingestion bucket that are not packets, with the reason (the "
        "sensor fills it); shown in the run's metadata, never read.",
    )


def invalid_packets(packets: list[tuple[str, int]]) -> list[str]:
    """Why payload entries can never be read: an unknown table or an id out of range."""
    problems = []
    for table, packet_id in packets:
        try:
            packet_key(table, packet_id)
        except ValueError as error:
            problems.append(f"{{'table': {table!r}, 'id': {packet_id}}}: {error}")
    return problems


@multi_asset(
    specs=[
        AssetSpec(
            RAW_KEYS[table],
            group_name=SALES_GROUP,
            description=(
                f"Every distinct ToteSys `{table}` row delivered so far (JSONL packets from "
                "the ingestion bucket), kept as Parquet history so the star schema can join "
                "rows across packets."
            ),
            kinds={"s3", "parquet"},
            owners=OWNERS,
            tags=SALES_TAGS,
            metadata=column_schema_metadata(history_schema(table), COLUMN_DESCRIPTIONS),
            skippable=True,
        )
        for table in SOURCE_TABLES
    ],
    name="totesys_raw",
    retry_policy=SALES_RETRY_POLICY,
    can_subset=False,
)
@classified_failures
def totesys_raw(
    context: AssetExecutionContext,
    config: PacketsConfig,
    s3: ObjectStoreResource,
    ssm: ParameterStoreResource,
    metrics: CloudWatchMetricsResource,
    sales_storage: SalesStorageResource,
) -> Iterator[MaterializeResult]:
    """Absorb the requested packets into each table's raw history and record their ids."""
    storage = sales_storage
    not_packets = dict(config.not_packets)
    requested = [(ref.table, ref.id) for ref in config.packets]
    if not requested:
        requested, found = discover_packets(s3, ssm, storage)
        for key, reason in found.items():
            context.log.warning(f"{key} is not a ToteSys packet: {reason}")
        context.log.info(f"No packets in run config; found {len(requested)} new in the bucket")
        not_packets.update(found)
    problems = invalid_packets(requested)
    if problems:  # no retry can make such a payload readable
        raise Failure(
            description=f"Invalid packets payload, nothing was read: {'; '.join(problems)}",
            metadata={"reason": "invalid_payload", "problems": MetadataValue.json(problems)},
            allow_retries=False,
        )
    by_table: dict[str, list[int]] = {table: [] for table in SOURCE_TABLES}
    for table, packet_id in sorted(set(requested)):
        by_table[table].append(packet_id)

    metric_data: list[Metric] = []
    results: list[MaterializeResult] = []
    changed = False
    for table in SOURCE_TABLES:
        absorbed = absorb_packets(s3, storage, table, by_table[table])
        gaps = _record_packet_ids(context.log, ssm, storage, table, by_table[table])
        metric_data += [
            Metric("NonSequentialPackets", gaps, dimensions={"Table": table}),
            Metric("PacketRowsRead", absorbed.lines, dimensions={"Table": table}),
            Metric(
                "RowsQuarantined", absorbed.quarantined, dimensions={"Table": table, "Stage": "raw"}
            ),
        ]
        changed |= absorbed.changed
        results.append(_raw_result(storage, table, by_table[table], absorbed, not_packets))
    metrics.put(METRICS_NAMESPACE_SALES, metric_data)
    if not changed and not _star_is_behind(context):
        # Nothing to record: one line says so instead of seven "0 new rows" materialisations
        # (and the star step, which would find nothing either, is skipped).
        context.log.info(
            f"No change: the {len(requested)} packet(s) hold no row the raw history lacks and "
            "the star schema is up to date; nothing is materialised."
        )
        return
    yield from results


def _raw_result(
    storage: SalesStorageResource,
    table: str,
    packet_ids: list[int],
    absorbed: Absorbed,
    not_packets: dict[str, str],
) -> MaterializeResult:
    return MaterializeResult(
        asset_key=RAW_KEYS[table],
        metadata={
            "packets": MetadataValue.json(packet_ids),
            "lines_read": absorbed.lines,
            "rows_parsed": absorbed.parsed,
            "rows_quarantined": absorbed.quarantined,
            "rows_already_seen": absorbed.parsed - absorbed.new_rows,
            "new_rows": absorbed.new_rows,
            "dagster/row_count": absorbed.rows,
            "history_index_uri": MetadataValue.path(uri(storage, raw_index_key(storage, table))),
            "quarantine_uris": MetadataValue.json(absorbed.quarantine_uris),
            "not_packets": MetadataValue.json(not_packets),
        },
    )


def _star_is_behind(context: AssetExecutionContext) -> bool:
    """Whether the star step has not finished since the raw history last changed.

    A run whose star step failed after the raw step committed leaves work behind; the next
    run must let the star step run even when it brings no new rows.
    """
    instance = context.instance
    raw_times = [
        event.timestamp
        for key in RAW_KEYS.values()
        if (event := instance.get_latest_materialization_event(key)) is not None
    ]
    # The star step's last check: evaluated at its end, so it marks a finished star step.
    # This run has planned its own evaluation already; the one before it is what counts.
    check = AssetCheckKey(STAR_KEYS_BY_TABLE["fact_sales_order"], "rows_accounted_for")
    history = instance.event_log_storage.get_asset_check_execution_history(check, limit=2)
    previous = [record for record in history if record.run_id != context.run.run_id][:1]
    if not previous or previous[0].event is None or previous[0].status.value == "PLANNED":
        return True
    return bool(raw_times) and max(raw_times) > previous[0].event.timestamp


def _record_packet_ids(
    log: logging.Logger,
    ssm: ParameterStoreResource,
    storage: SalesStorageResource,
    table: str,
    packet_ids: list[int],
) -> int:
    """Move the table's last-packet parameter forward, warning on gaps (the seed's rule).

    Returns how many packets did not follow their predecessor.
    """
    name = storage.last_packet_parameter(table)
    last = ssm.get_int(name) or 0
    gaps = 0
    for packet_id in packet_ids:
        if packet_id <= last:
            log.info(f"{table} packet {packet_id} was already processed (last {last})")
            continue
        if packet_id != last + 1:
            gaps += 1
            log.warning(f"{table} packets are not sequential: got {packet_id} after {last}")
        ssm.put_int(name, packet_id, description=f"Last ToteSys {table} packet processed")
        last = packet_id
    return gaps


@multi_asset(
    specs=[
        *[
            AssetSpec(
                STAR_KEYS_BY_TABLE[table],
                group_name=SALES_GROUP,
                deps=list(RAW_KEYS.values()),
                description=description,
                kinds={"s3", "parquet"},
                owners=OWNERS,
                tags=SALES_TAGS,
                metadata=column_schema_metadata(STAR_SCHEMAS[table], COLUMN_DESCRIPTIONS),
                skippable=True,
            )
            for table, description in {
                "fact_sales_order": "Sales order history: one row per version of an order "
                "(sales_order_id, last_updated), for analysts' revenue and volume questions.",
                "dim_date": "Every calendar date a sales fact refers to, with its parts.",
                "dim_staff": "Latest version of each sales staff member with department.",
                "dim_location": "Latest version of each delivery address.",
                "dim_currency": "Currencies with their ISO 4217 English names.",
                "dim_design": "Latest version of each product design.",
                "dim_counterparty": "Latest version of each counterparty with legal address.",
            }.items()
        ],
        AssetSpec(
            QUARANTINE_KEY,
            group_name=SALES_GROUP,
            deps=list(RAW_KEYS.values()),
            description="Source rows the star schema could not use, each with its reason.",
            kinds={"s3"},
            owners=OWNERS,
            tags=SALES_TAGS,
            metadata=column_schema_metadata(QUARANTINE_SCHEMA, COLUMN_DESCRIPTIONS),
            skippable=True,
        ),
    ],
    check_specs=star_check_specs(),
    name="sales_star_schema",
    retry_policy=SALES_RETRY_POLICY,
    can_subset=False,
)
def sales_star_schema(
    context: AssetExecutionContext,
    s3: ObjectStoreResource,
    ssm: ParameterStoreResource,
    metrics: CloudWatchMetricsResource,
    sales_storage: SalesStorageResource,
) -> Iterator[MaterializeResult | AssetCheckResult]:
    """Build the star schema from the raw history and write what changed as Parquet.

    Follows the commit protocol of `ons_pipeline.sales.commit`: Parameter Store is first
    brought up to the manifest and a pending entry is finished, then new rows become the
    next entry: appended when only new sales_order versions arrived, else a full rebuild
    (`ons_pipeline.sales.star`).
    """
    started = time.monotonic()
    run = run_star_step(context.log, s3, ssm, sales_storage)
    published = run.published
    reasons = run.quarantine["reason"].value_counts().to_dict() if len(run.quarantine) else {}
    if not any(p.changed_rows for p in published.values()):
        context.log.info("No change: every star table already holds these rows; no file written.")
    for table in STAR_TABLES:
        frame, done = run.frames[table], published[table]
        if done.changed_rows:  # a materialisation records a new file; unchanged wrote none
            sequence = done.sequence or run.manifest.output_sequence.get(table, 0)
            yield _star_result(table, frame, done, sequence, reasons, run)
        yield from table_checks(table, frame)
    yield rows_accounted_for(run.accounting)
    quarantine = published[QUARANTINE_TABLE]
    if quarantine.changed_rows:
        yield MaterializeResult(
            asset_key=QUARANTINE_KEY,
            metadata={
                "dagster/row_count": quarantine.rows,
                "new_rows": quarantine.changed_rows,
                "s3_uri": MetadataValue.path(quarantine.uri or "unchanged"),
                "by_reason": MetadataValue.json(reasons),
                "preview": markdown_table(run.quarantine),
            },
        )
    rows_metrics = [
        Metric("RowsProcessed", published[t].changed_rows, dimensions={"Table": t})
        for t in STAR_TABLES
    ]
    metrics.put(
        METRICS_NAMESPACE_SALES,
        [
            *rows_metrics,
            Metric("RowsQuarantined", quarantine.rows, dimensions={"Stage": "star"}),
            Metric("StarSchemaDuration", time.monotonic() - started, unit="Seconds"),
        ],
    )


def _star_result(
    table: str,
    frame: pd.DataFrame,
    published: Published,
    sequence: int,
    reasons: dict[str, int],
    run: StarRun,
) -> MaterializeResult:
    facts_only = {
        "quarantined_by_reason": MetadataValue.json(reasons),
        "accounting": markdown_table(run.accounting),
        "build": "incremental: new versions appended" if run.incremental else "full rebuild",
    }
    return MaterializeResult(
        asset_key=STAR_KEYS_BY_TABLE[table],
        metadata={
            "dagster/row_count": published.rows,
            **column_schema_metadata(STAR_SCHEMAS[table], COLUMN_DESCRIPTIONS),
            "changed_rows": published.changed_rows,
            "s3_uri": MetadataValue.path(published.uri or "unchanged: no file written"),
            "output_sequence": sequence,
            "preview": markdown_table(frame),
            **(facts_only if table == "fact_sales_order" else {}),
        },
    )
