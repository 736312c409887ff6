"""Sales asset group: ToteSys packets -> raw history -> star schema Parquet.

Commit order makes every step re-runnable: the raw history absorbs a packet idempotently
(a conditional PUT, so two runs cannot both replace it); the star files follow the commit
protocol in `commit.py` (a write-ahead manifest entry the next run finishes), so a crash at
any point or a concurrent run never duplicates a row or reuses a sequence number.
"""

import time
from typing import Any

import pandas as pd
from dagster import (
    AssetCheckKey,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
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
from ons_pipeline.platform.faults import commit_point
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
from ons_pipeline.resources.aws import ConcurrentWriteError
from ons_pipeline.resources.defaults import METRICS_NAMESPACE_SALES
from ons_pipeline.sales.commit import (
    QUARANTINE_TABLE,
    Manifest,
    packet_ranges,
    sha256,
    snapshot_key,
    sync_parameters,
    unreferenced_snapshots,
)
from ons_pipeline.sales.outputs import (
    changed_rows,
    from_parquet_bytes,
    newest_update,
    output_key,
    to_parquet_bytes,
)
from ons_pipeline.sales.packets import (
    ParsedPacket,
    empty_rows,
    history_schema,
    merge_history,
    packet_key,
    packet_key_problem,
    parse_packet,
    parse_packet_key,
)
from ons_pipeline.sales.schema import (
    COLUMN_DESCRIPTIONS,
    PACKET_ID,
    QUARANTINE_SCHEMA,
    STAR_KEYS,
    STAR_SCHEMAS,
)
from ons_pipeline.sales.transform import SOURCE_TABLES, STAR_TABLES, build_star_schema

SALES_GROUP = "sales"
RAW_KEYS = {table: AssetKey(["totesys", table]) for table in SOURCE_TABLES}
STAR_KEYS_BY_TABLE = {table: AssetKey([table]) for table in STAR_TABLES}
QUARANTINE_KEY = AssetKey(["sales_quarantine"])

SALES_RETRY_POLICY = AWS_RETRY_POLICY
PARQUET_CONTENT_TYPE = "application/vnd.apache.parquet"
OUTPUT_SCHEMAS = {**STAR_SCHEMAS, QUARANTINE_TABLE: QUARANTINE_SCHEMA}
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


def _history_key(storage: SalesStorageResource, table: str) -> str:
    return f"{storage.state_prefix}/raw/{table}.parquet"


def load_history(
    s3: ObjectStoreResource, storage: SalesStorageResource, table: str
) -> pd.DataFrame:
    return _load_history_versioned(s3, storage, table)[0]


def _load_history_versioned(
    s3: ObjectStoreResource, storage: SalesStorageResource, table: str
) -> tuple[pd.DataFrame, str | None]:
    stored = s3.get_versioned(storage.processed_bucket, _history_key(storage, table))
    return (
        (empty_rows(table), None) if stored is None else (from_parquet_bytes(stored[0]), stored[1])
    )


def _load_parquet(s3: ObjectStoreResource, bucket: str, key: str | None) -> pd.DataFrame | None:
    data = None if key is None else s3.get_bytes(bucket, key)
    return None if data is None else from_parquet_bytes(data)


def load_snapshot(
    s3: ObjectStoreResource, storage: SalesStorageResource, table: str
) -> pd.DataFrame | None:
    """The star table as of the last committed manifest entry."""
    key = Manifest.load(s3, storage).snapshots.get(table)
    return _load_parquet(s3, storage.processed_bucket, key)


def _discover_packets(
    context: AssetExecutionContext,
    s3: ObjectStoreResource,
    ssm: ParameterStoreResource,
    storage: SalesStorageResource,
    not_packets: dict[str, str],
) -> list[tuple[str, int]]:
    """New packets after each table's last recorded one; other keys go to `not_packets`."""
    found: list[tuple[str, int]] = []
    for table in SOURCE_TABLES:
        last = ssm.get_int(storage.last_packet_parameter(table)) or 0
        start_after = packet_key(table, last) if last else None
        listing = s3.list_after(storage.ingestion_bucket, f"{table}/", start_after, max_pages=100)
        for key in listing.keys:
            parsed = parse_packet_key(key)
            if parsed is not None:
                found.append(parsed)
            else:
                not_packets[key] = packet_key_problem(key) or "not a packet"
                context.log.warning(f"{key} is not a ToteSys packet: {not_packets[key]}")
    context.log.info(f"No packets in run config; found {len(found)} new in the bucket")
    return found


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
) -> Any:
    """Absorb the requested packets into each table's raw history and record their ids."""
    storage = sales_storage
    not_packets = dict(config.not_packets)
    requested = [(ref.table, ref.id) for ref in config.packets] or _discover_packets(
        context, s3, ssm, storage, not_packets
    )
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
        packets: list[ParsedPacket] = []
        for packet_id in by_table[table]:
            key = packet_key(table, packet_id)
            body = s3.get_bytes(storage.ingestion_bucket, key)
            if body is None:  # not transient: retrying cannot make the packet appear
                raise Failure(
                    description=f"Packet s3://{storage.ingestion_bucket}/{key} does not exist; "
                    "check the packets payload or the ingestion bucket name",
                    allow_retries=False,
                )
            packets.append(parse_packet(table, packet_id, body))
        history, history_etag = _load_history_versioned(s3, storage, table)
        merged = merge_history(history, packets, table)
        malformed = [p.malformed for p in packets if not p.malformed.empty]
        lines = sum(p.lines for p in packets)
        parsed = sum(len(p.rows) for p in packets)
        quarantined = sum(len(frame) for frame in malformed)
        new_rows = len(merged) - len(history)
        if new_rows:
            try:
                s3.put_if_match(
                    storage.processed_bucket,
                    _history_key(storage, table),
                    to_parquet_bytes(merged, history_schema(table)),
                    PARQUET_CONTENT_TYPE,
                    history_etag,
                )
            except ConcurrentWriteError as error:
                raise Failure(
                    description=f"Another run absorbed packets into the {table} history while "
                    f"this one was merging ({error}); nothing of this run's {table} rows was "
                    "lost or written twice. A retry merges on top of it.",
                    allow_retries=True,
                ) from error
            commit_point("sales.raw.after_history")
        quarantine_uris = []
        for packet in packets:
            if packet.malformed.empty:
                continue
            name = f"{table}-packet-{packet.packet_id:08d}.jsonl"
            key = f"{storage.quarantine_prefix}/raw/{table}/{name}"
            s3.put_bytes(
                storage.processed_bucket,
                key,
                packet.malformed.to_json(orient="records", lines=True).encode(),
                "application/x-ndjson",
            )
            quarantine_uris.append(f"s3://{storage.processed_bucket}/{key}")
        gaps = _record_packet_ids(context, ssm, storage, table, by_table[table])
        metric_data += [
            Metric("NonSequentialPackets", gaps, dimensions={"Table": table}),
            Metric("PacketRowsRead", lines, dimensions={"Table": table}),
            Metric("RowsQuarantined", quarantined, dimensions={"Table": table, "Stage": "raw"}),
        ]
        changed |= bool(new_rows or quarantined)
        results.append(
            MaterializeResult(
                asset_key=RAW_KEYS[table],
                metadata={
                    "packets": MetadataValue.json(by_table[table]),
                    "lines_read": lines,
                    "rows_parsed": parsed,
                    "rows_quarantined": quarantined,
                    "rows_already_seen": parsed - new_rows,
                    "new_rows": new_rows,
                    "dagster/row_count": len(merged),
                    "history_uri": MetadataValue.path(
                        f"s3://{storage.processed_bucket}/{_history_key(storage, table)}"
                    ),
                    "quarantine_uris": MetadataValue.json(quarantine_uris),
                    "not_packets": MetadataValue.json(not_packets),
                },
            )
        )
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
    context: AssetExecutionContext,
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
            context.log.info(f"{table} packet {packet_id} was already processed (last {last})")
            continue
        if packet_id != last + 1:
            gaps += 1
            context.log.warning(f"{table} packets are not sequential: got {packet_id} after {last}")
        ssm.put_int(name, packet_id, description=f"Last ToteSys {table} packet processed")
        last = packet_id
    return gaps


def _star_check_specs() -> list[AssetCheckSpec]:
    specs = [
        AssetCheckSpec(
            "rows_accounted_for",
            asset=STAR_KEYS_BY_TABLE["fact_sales_order"],
            description="Every raw row is written, quarantined, folded as a re-delivery or "
            "superseded by a newer version: none vanish.",
        )
    ]
    for table in STAR_TABLES:
        specs += [
            AssetCheckSpec(
                "keys_unique",
                asset=STAR_KEYS_BY_TABLE[table],
                description=f"{'/'.join(STAR_KEYS[table])} identifies one row.",
            ),
            AssetCheckSpec(
                "required_columns_not_null",
                asset=STAR_KEYS_BY_TABLE[table],
                description="No non-nullable column of the contract holds a null.",
            ),
        ]
    return specs


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
    check_specs=_star_check_specs(),
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
) -> Any:
    """Build the star schema from the raw history and write what changed as Parquet.

    Follows the commit protocol of `ons_pipeline.sales.commit`: Parameter Store is first
    brought up to the manifest and a pending entry is finished, then new rows become the
    next entry.
    """
    started = time.monotonic()
    storage = sales_storage
    manifest = _recover(context, s3, ssm, storage)
    raw = {table: load_history(s3, storage, table) for table in SOURCE_TABLES}
    result = build_star_schema(raw)
    watermark = newest_update(raw)

    written: dict[str, dict[str, Any]] = {}
    payloads: dict[str, bytes] = {}
    entry: dict[str, Any] = {"files": {}, "snapshots": {}, "previous_snapshots": {}}
    outputs = {**result.tables, QUARANTINE_TABLE: result.quarantine}
    for table, frame in outputs.items():
        snapshot = to_parquet_bytes(frame, OUTPUT_SCHEMAS[table])
        previous_key = manifest.snapshots.get(table)
        rows, data = _delta(
            table,
            from_parquet_bytes(snapshot),
            _load_parquet(s3, storage.processed_bucket, previous_key),
        )
        written[table] = {"rows": len(frame), "changed_rows": rows, "uri": None}
        if not rows or watermark is None:
            continue
        sequence = manifest.next_sequence(table)
        key = _output_file_key(storage, table, sequence, watermark)
        key_of_snapshot = snapshot_key(storage, table, sha256(snapshot))
        # Step 1: unreferenced until the entry names it, so a crash here publishes nothing.
        s3.put_bytes_once(storage.processed_bucket, key_of_snapshot, snapshot, PARQUET_CONTENT_TYPE)
        entry["files"][table] = {
            "key": key,
            "sequence": sequence,
            "sha256": sha256(data),
            "rows": rows,
        }
        entry["snapshots"][table] = key_of_snapshot
        entry["previous_snapshots"][table] = previous_key
        payloads[table] = data
        written[table].update(uri=f"s3://{storage.processed_bucket}/{key}", sequence=sequence)

    if payloads:
        manifest.pending = {
            **entry,
            "entry": manifest.entry + 1,
            "watermark": str(watermark),
            "packets": {
                table: packet_ranges(raw[table][PACKET_ID].dropna().astype(int).tolist())
                for table in SOURCE_TABLES
            },
        }
        commit_point("sales.before_intent")
        try:  # Step 2: the write-ahead entry; of two runs on the same state one wins
            manifest.save(s3, storage)
        except ConcurrentWriteError as error:
            sequences = {t: f["sequence"] for t, f in entry["files"].items()}
            raise Failure(
                description=f"Another run holds sales manifest entry {manifest.entry + 1} "
                f"(output sequences {sequences}): the manifest changed after this run read "
                "it, so nothing of this run was published. A retry starts from that run's "
                "result.",
                allow_retries=True,
            ) from error
        commit_point("sales.after_intent")
        for table, data in payloads.items():  # Step 3
            written[table]["outcome"] = s3.put_bytes_once(
                storage.processed_bucket,
                entry["files"][table]["key"],
                data,
                PARQUET_CONTENT_TYPE,
            )
            commit_point("sales.after_first_star_file")
        manifest = _commit(context, s3, ssm, storage, manifest)
    sequences = manifest.output_sequence

    accounting = result.accounting
    reasons = result.quarantine["reason"].value_counts().to_dict() if len(result.quarantine) else {}
    unchanged = [t for t in STAR_TABLES if not written[t]["changed_rows"]]
    if len(unchanged) == len(STAR_TABLES) and not written["quarantine"]["changed_rows"]:
        context.log.info("No change: every star table already holds these rows; no file written.")
    for table in STAR_TABLES:
        frame = result.tables[table]
        entry = written[table]
        if table in unchanged:  # a materialisation records a new file, and none was written
            yield from _table_checks(table, frame)
            continue
        yield MaterializeResult(
            asset_key=STAR_KEYS_BY_TABLE[table],
            metadata={
                "dagster/row_count": len(frame),
                **column_schema_metadata(STAR_SCHEMAS[table], COLUMN_DESCRIPTIONS),
                "changed_rows": entry["changed_rows"],
                "s3_uri": MetadataValue.path(entry["uri"] or "unchanged: no file written"),
                "output_sequence": entry.get("sequence", sequences.get(table, 0)),
                "preview": markdown_table(frame),
                **(
                    {
                        "quarantined_by_reason": MetadataValue.json(reasons),
                        "accounting": markdown_table(accounting),
                    }
                    if table == "fact_sales_order"
                    else {}
                ),
            },
        )
        yield from _table_checks(table, frame)
    balance = accounting["rows_in"] - accounting[
        ["written", "quarantined", "deduplicated", "superseded"]
    ].sum(axis=1)
    yield AssetCheckResult(
        check_name="rows_accounted_for",
        asset_key=STAR_KEYS_BY_TABLE["fact_sales_order"],
        passed=bool((balance == 0).all()),
        severity=AssetCheckSeverity.ERROR,
        metadata={
            "accounting": markdown_table(accounting),
            "unaccounted_rows": int(balance.abs().sum()),
        },
    )
    quarantine = result.quarantine
    if written["quarantine"]["changed_rows"]:
        yield MaterializeResult(
            asset_key=QUARANTINE_KEY,
            metadata={
                "dagster/row_count": len(quarantine),
                "new_rows": written["quarantine"]["changed_rows"],
                "s3_uri": MetadataValue.path(written["quarantine"]["uri"] or "unchanged"),
                "by_reason": MetadataValue.json(reasons),
                "preview": markdown_table(quarantine),
            },
        )
    elapsed = time.monotonic() - started
    metrics.put(
        METRICS_NAMESPACE_SALES,
        [
            *(
                Metric("RowsProcessed", written[t]["changed_rows"], dimensions={"Table": t})
                for t in STAR_TABLES
            ),
            Metric("RowsQuarantined", len(quarantine), dimensions={"Stage": "star"}),
            Metric("StarSchemaDuration", elapsed, unit="Seconds"),
        ],
    )


def _output_file_key(
    storage: SalesStorageResource, table: str, sequence: int, watermark: Any
) -> str:
    key = output_key(table, sequence, watermark)
    if table == QUARANTINE_TABLE:
        return f"{storage.quarantine_prefix}/star/{key.split('/', 1)[1]}"
    return key


def _delta(table: str, current: pd.DataFrame, previous: pd.DataFrame | None) -> tuple[int, bytes]:
    """The changed rows as file bytes.

    A function of the two snapshots only, so a pending entry's file is rebuilt byte for byte
    from the snapshots it names.
    """
    delta = changed_rows(current, previous)
    return len(delta), to_parquet_bytes(delta, OUTPUT_SCHEMAS[table])


def _recover(
    context: AssetExecutionContext,
    s3: ObjectStoreResource,
    ssm: ParameterStoreResource,
    storage: SalesStorageResource,
) -> Manifest:
    """Bring Parameter Store up to the manifest and finish an entry a stopped run left."""
    manifest = Manifest.load(s3, storage)
    behind = sync_parameters(ssm, storage, manifest)
    if behind:
        context.log.warning(
            f"Parameter Store output_sequence disagreed with the manifest for "
            f"{behind}; set from the manifest"
        )
    pending = manifest.pending
    if pending is None:
        return manifest
    context.log.warning(
        f"Manifest entry {pending['entry']} was left pending by a stopped run; finishing it "
        f"(files {sorted(f['key'] for f in pending['files'].values())}) before new packets"
    )
    bucket = storage.processed_bucket
    for table, spec in sorted(pending["files"].items()):
        current = _load_parquet(s3, bucket, pending["snapshots"][table])
        if current is None:
            raise Failure(
                description=f"Snapshot s3://{bucket}/{pending['snapshots'][table]} named by "
                f"pending manifest entry {pending['entry']} is missing; the entry cannot be "
                "finished. Restore the object (bucket versioning) before re-running.",
                allow_retries=False,
            )
        previous = _load_parquet(s3, bucket, pending["previous_snapshots"].get(table))
        _, data = _delta(table, current, previous)
        if sha256(data) != spec["sha256"]:
            raise Failure(
                description=f"Rebuilt {spec['key']} does not match the SHA-256 its pending "
                f"manifest entry {pending['entry']} recorded; refusing to publish it.",
                allow_retries=False,
            )
        s3.put_bytes_once(bucket, spec["key"], data, PARQUET_CONTENT_TYPE)
    return _commit(context, s3, ssm, storage, manifest)


def _commit(
    context: AssetExecutionContext,
    s3: ObjectStoreResource,
    ssm: ParameterStoreResource,
    storage: SalesStorageResource,
    manifest: Manifest,
) -> Manifest:
    """Steps 4 and 5: the pending entry becomes committed, then Parameter Store follows."""
    committed = manifest.committed()
    commit_point("sales.before_commit")
    try:
        committed.save(s3, storage)
    except ConcurrentWriteError as error:
        current = Manifest.load(s3, storage)
        if current.entry < committed.entry:
            raise Failure(
                description=f"Sales manifest entry {committed.entry} could not be committed: "
                f"another run changed the manifest ({error}). A retry finishes it.",
                allow_retries=True,
            ) from error
        context.log.info(f"Manifest entry {committed.entry} was committed by another run")
        return current
    commit_point("sales.after_commit")
    sync_parameters(ssm, storage, committed)
    commit_point("sales.after_parameters")
    s3.delete_keys(storage.processed_bucket, unreferenced_snapshots(manifest, committed))
    return committed


def _table_checks(table: str, frame: pd.DataFrame) -> list[AssetCheckResult]:
    key_columns = list(STAR_KEYS[table])
    duplicates = int(frame.duplicated(subset=key_columns).sum())
    required = [f.name for f in STAR_SCHEMAS[table] if not f.nullable]
    nulls = {column: int(frame[column].isna().sum()) for column in required}
    nulls = {column: count for column, count in nulls.items() if count}
    return [
        AssetCheckResult(
            check_name="keys_unique",
            asset_key=STAR_KEYS_BY_TABLE[table],
            passed=duplicates == 0,
            severity=AssetCheckSeverity.ERROR,
            metadata={"duplicate_keys": duplicates, "key": ", ".join(key_columns)},
        ),
        AssetCheckResult(
            check_name="required_columns_not_null",
            asset_key=STAR_KEYS_BY_TABLE[table],
            passed=not nulls,
            severity=AssetCheckSeverity.ERROR,
            metadata={"null_counts": MetadataValue.json(nulls)},
        ),
    ]
