"""The sales commit protocol: what a sequence holds is decided and recorded before it is written.

One state object, the manifest (`<state_prefix>/manifest.json`), is the truth about the star
files; Parameter Store's `output_sequence/<table>` is derived from it and brought up to it by
every run. A run changes the manifest only by a conditional PUT on the ETag it read, so of two
runs on the same state exactly one wins each step and the other gets a clear error.

A run that has new rows:

1. writes each changed table's new snapshot under a content-addressed key (no one refers to
   it yet, so a crash here leaves only an unreferenced object);
2. writes the *pending entry* into the manifest: the next entry number, the packets it
   covers, each star file's key (sequence and watermark from the data, never the clock),
   SHA-256 and row count, and the snapshots before and after (the write-ahead record);
3. writes the star files (S3 `If-None-Match: *`: identical bytes are a no-op);
4. commits: the manifest's sequences and snapshots move to the entry's, `pending` is cleared;
5. sets Parameter Store from the manifest, then drops the snapshots no longer referenced.

A run that finds a pending entry finishes it before it looks at new packets: it rebuilds each
file from the two snapshots the entry names (immutable objects), checks the SHA-256, writes
the same bytes and commits. So a crash at any step either leaves nothing referenced or an
entry the next run completes exactly; a sequence number is never handed out twice.

The protocol only needs each pending file's bytes to be reproducible from immutable objects
the entry names: a full rebuild's file is the difference of two snapshots, an incremental
entry's file is staged whole as the part it appends to its table.

Incremental runs (`star.py` decides): a star table is its snapshot plus appended parts, and
the manifest records which raw history objects the committed state was built from, the
cumulative accounting and the row counts. When the only new raw objects are sales_order
parts (each holds versions newer than every stored row, `storage.absorb_packets`), the run
reads just those parts and the small dimension tables, builds the rows a full rebuild would
add (`transform.build_star_increment`) and appends them to fact_sales_order, dim_date and
the quarantine: its cost follows the new packets, not the history. Anything else (a new
dimension row, a merged raw history, a version-2 manifest) is a full rebuild whose new
snapshots replace the parts.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Final

from dagster import Failure

from ons_pipeline.platform.faults import commit_point
from ons_pipeline.resources.aws import ConcurrentWriteError
from ons_pipeline.sales.outputs import changed_rows, from_parquet_bytes, to_parquet_bytes
from ons_pipeline.sales.schema import QUARANTINE_SCHEMA, STAR_SCHEMAS
from ons_pipeline.sales.storage import (
    QUARANTINE_TABLE,
    Manifest,
    PendingEntry,
    RawState,
    StarFile,
    load_objects,
    load_parquet,
    output_file_key,
    put_parquet_once,
    snapshot_key,
    uri,
)

if TYPE_CHECKING:
    import logging
    from collections.abc import Mapping
    from datetime import datetime

    import pandas as pd

    from ons_pipeline.resources import (
        ObjectStoreResource,
        ParameterStoreResource,
        SalesStorageResource,
    )

OUTPUT_SCHEMAS: Final = {**STAR_SCHEMAS, QUARANTINE_TABLE: QUARANTINE_SCHEMA}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Published:
    """What a run did for one star output: its size, its changed rows and the file if any."""

    rows: int
    changed_rows: int
    uri: str | None = None
    sequence: int | None = None


@dataclass(frozen=True)
class Entry:
    """What a run records beside its star files: the state its outputs were built from."""

    watermark: datetime | None
    packets: dict[str, list[list[int]]]
    raw: dict[str, RawState]
    accounting: list[dict[str, object]]


def delta(table: str, current: pd.DataFrame, previous: pd.DataFrame | None) -> tuple[int, bytes]:
    """The changed rows as file bytes.

    A function of the two table states only, so a pending entry's file is rebuilt byte for
    byte from the objects it names.
    """
    rows = changed_rows(current, previous)
    return len(rows), to_parquet_bytes(rows, OUTPUT_SCHEMAS[table])


def load_table(
    s3: ObjectStoreResource,
    storage: SalesStorageResource,
    manifest: Manifest,
    table: str,
    keys: list[str] | None = None,
) -> pd.DataFrame | None:
    """A star table from its snapshot and appended parts; None before its first entry.

    `keys` defaults to the committed state `manifest` names. An object gone because another
    run committed (and dropped what it replaced) after this one read the manifest is a
    retryable conflict; gone while the manifest stands, it is lost state.
    """

    def missing(key: str) -> Failure:
        if Manifest.load(s3, storage).etag != manifest.etag:
            return Failure(
                description=f"Another run committed a sales manifest entry while this one "
                f"read the {table} state; nothing of this run was published. A retry "
                "starts from that run's result.",
                allow_retries=True,
            )
        return Failure(
            description=f"s3://{storage.processed_bucket}/{key}, part of the committed "
            f"{table} state, is missing. Restore the object (bucket versioning) before "
            "re-running.",
            allow_retries=False,
        )

    chosen = manifest.table_keys(table) if keys is None else keys
    return load_objects(s3, storage.processed_bucket, chosen, missing)


def publish(
    log: logging.Logger,
    s3: ObjectStoreResource,
    ssm: ParameterStoreResource,
    storage: SalesStorageResource,
    manifest: Manifest,
    entry: Entry,
    replaced: Mapping[str, pd.DataFrame],
    appended: Mapping[str, pd.DataFrame] | None = None,
) -> tuple[Manifest, dict[str, Published]]:
    """Steps 1 to 5; returns the manifest after them.

    `replaced` holds whole tables: each becomes a new snapshot and its file is the rows that
    differ from the committed state. `appended` holds new rows only: step 1 stages them as the
    part their table appends, and the file is exactly that part.
    """
    published: dict[str, Published] = {}
    payloads: dict[str, bytes] = {}
    files: dict[str, StarFile] = {}
    pending = PendingEntry(
        snapshots={}, previous_snapshots={}, previous_appended={}, appended={}, rows={}
    )

    def stage(table: str, rows: int, total: int, data: bytes, staged: str | None) -> None:
        published[table] = Published(total, rows)
        if not rows or entry.watermark is None:
            return
        sequence = manifest.next_sequence(table)
        key = output_file_key(storage, table, sequence, entry.watermark)
        files[table] = StarFile(key=key, sequence=sequence, sha256=sha256(data), rows=rows)
        if staged:
            files[table]["staged"] = staged
        payloads[table] = data
        published[table] = Published(total, rows, uri(storage, key), sequence)

    for table, frame in replaced.items():
        snapshot = to_parquet_bytes(frame, OUTPUT_SCHEMAS[table])
        previous = load_table(s3, storage, manifest, table)
        rows, data = delta(table, from_parquet_bytes(snapshot), previous)
        pending["rows"][table] = len(frame)
        stage(table, rows, len(frame), data, None)
        if table in files:
            key_of_snapshot = snapshot_key(storage, table, sha256(snapshot))
            # Step 1: unreferenced until the entry names it, so a crash here publishes nothing.
            put_parquet_once(s3, storage, key_of_snapshot, snapshot)
            pending["snapshots"][table] = key_of_snapshot
            pending["previous_snapshots"][table] = manifest.snapshots.get(table)
            pending["previous_appended"][table] = manifest.appended.get(table, [])
            pending["appended"][table] = []
    for table, frame in (appended or {}).items():
        total = manifest.rows.get(table, 0) + len(frame)
        pending["rows"][table] = total
        data = to_parquet_bytes(frame, OUTPUT_SCHEMAS[table]) if len(frame) else b""
        part = snapshot_key(storage, table, sha256(data))
        stage(table, len(frame), total, data, part)
        if table in files:
            put_parquet_once(s3, storage, part, data)  # Step 1
            pending["appended"][table] = [*manifest.appended.get(table, []), part]
    pending.update(
        entry=manifest.entry + 1,
        watermark=str(entry.watermark) if entry.watermark else manifest.watermark or "",
        files=files,
        packets=entry.packets,
        raw=entry.raw,
        accounting=entry.accounting,
    )
    return _write(log, s3, ssm, storage, manifest, pending, payloads), published


def _write(
    log: logging.Logger,
    s3: ObjectStoreResource,
    ssm: ParameterStoreResource,
    storage: SalesStorageResource,
    manifest: Manifest,
    pending: PendingEntry,
    payloads: Mapping[str, bytes],
) -> Manifest:
    """Steps 2 to 5; with no file to publish, only the recorded state moves (one PUT)."""
    if not payloads:
        if manifest.raw == pending["raw"] and manifest.accounting == pending["accounting"]:
            return manifest
        settled = replace(
            manifest,
            watermark=pending["watermark"],
            raw=pending["raw"],
            accounting=pending["accounting"],
            rows={**manifest.rows, **pending["rows"]},
        )
        _save_or_fail(
            s3,
            storage,
            settled,
            "Another run changed the sales manifest while this one recorded the raw state "
            "its star tables hold",
        )
        return settled
    manifest.pending = pending
    _record_intent(s3, storage, manifest)
    for table, data in payloads.items():  # Step 3
        put_parquet_once(s3, storage, pending["files"][table]["key"], data)
        commit_point("sales.after_first_star_file")
    return commit(log, s3, ssm, storage, manifest)


def _save_or_fail(
    s3: ObjectStoreResource, storage: SalesStorageResource, manifest: Manifest, conflict: str
) -> None:
    """A conditional manifest PUT; losing it to another run is a retryable Failure."""
    try:
        manifest.save(s3, storage)
    except ConcurrentWriteError as error:
        raise Failure(
            description=f"{conflict} ({error}); nothing of this run was published. A retry "
            "starts from that run's result.",
            allow_retries=True,
        ) from error


def _record_intent(
    s3: ObjectStoreResource, storage: SalesStorageResource, manifest: Manifest
) -> None:
    """Step 2: the write-ahead entry; of two runs on the same state one wins."""
    commit_point("sales.before_intent")
    files = manifest.pending["files"] if manifest.pending else {}
    sequences = {t: f["sequence"] for t, f in files.items()}
    _save_or_fail(
        s3,
        storage,
        manifest,
        f"Another run holds sales manifest entry {manifest.entry + 1} (output sequences "
        f"{sequences}): the manifest changed after this run read it",
    )
    commit_point("sales.after_intent")


def recover(
    log: logging.Logger,
    s3: ObjectStoreResource,
    ssm: ParameterStoreResource,
    storage: SalesStorageResource,
) -> Manifest:
    """Bring Parameter Store up to the manifest and finish an entry a stopped run left."""
    manifest = Manifest.load(s3, storage)
    behind = sync_parameters(ssm, storage, manifest)
    if behind:
        log.warning(
            f"Parameter Store output_sequence disagreed with the manifest for "
            f"{behind}; set from the manifest"
        )
    pending = manifest.pending
    if pending is None:
        return manifest
    log.warning(
        f"Manifest entry {pending['entry']} was left pending by a stopped run; finishing it "
        f"(files {sorted(f['key'] for f in pending['files'].values())}) before new packets"
    )
    for table, spec in sorted(pending["files"].items()):
        data = _pending_bytes(s3, storage, manifest, pending, table, spec)
        if sha256(data) != spec["sha256"]:
            raise Failure(
                description=f"Rebuilt {spec['key']} does not match the SHA-256 its pending "
                f"manifest entry {pending['entry']} recorded; refusing to publish it.",
                allow_retries=False,
            )
        put_parquet_once(s3, storage, spec["key"], data)
    return commit(log, s3, ssm, storage, manifest)


def _pending_bytes(
    s3: ObjectStoreResource,
    storage: SalesStorageResource,
    manifest: Manifest,
    pending: PendingEntry,
    table: str,
    spec: StarFile,
) -> bytes:
    """A pending file's bytes from the immutable objects its entry names."""
    bucket = storage.processed_bucket
    source = spec.get("staged") or pending["snapshots"][table]
    if "staged" in spec:
        data = s3.get_bytes(bucket, source)
    else:
        current = load_parquet(s3, bucket, source)
        previous_keys = [
            *([key] if (key := pending["previous_snapshots"].get(table)) else []),
            *pending.get("previous_appended", {}).get(table, []),
        ]
        data = None
        if current is not None:
            previous = load_table(s3, storage, manifest, table, previous_keys)
            data = delta(table, current, previous)[1]
    if data is None:
        raise Failure(
            description=f"s3://{bucket}/{source} named by pending manifest entry "
            f"{pending['entry']} is missing; the entry cannot be finished. Restore the object "
            "(bucket versioning) before re-running.",
            allow_retries=False,
        )
    return data


def commit(
    log: logging.Logger,
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
        log.info(f"Manifest entry {committed.entry} was committed by another run")
        return current
    commit_point("sales.after_commit")
    sync_parameters(ssm, storage, committed)
    commit_point("sales.after_parameters")
    s3.delete_keys(storage.processed_bucket, unreferenced_snapshots(manifest, committed))
    return committed


def sync_parameters(
    ssm: ParameterStoreResource, storage: SalesStorageResource, manifest: Manifest
) -> list[str]:
    """Set each star table's `output_sequence` parameter to the manifest's; returns the changed."""
    changed = []
    for table, sequence in sorted(manifest.output_sequence.items()):
        if table == QUARANTINE_TABLE:
            continue
        name = storage.output_sequence_parameter(table)
        if ssm.get_int(name) != sequence:
            ssm.put_int(name, sequence, f"Last {table} file (from the sales manifest)")
            changed.append(table)
    return changed


def unreferenced_snapshots(before: Manifest, after: Manifest) -> list[str]:
    """Snapshots and parts the committed entry replaced: no entry can need them again."""
    return sorted(before.referenced() - after.referenced())
