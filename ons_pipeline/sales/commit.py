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
the entry names. Here those are whole-table snapshots; when sales becomes incremental
(appended facts over a partitioned raw history) an entry names the partition objects (or the
staged delta) its files are built from instead, and steps 2-5 stay as they are.

The incremental run (issue 14; the pure part exists, the wiring below does not yet):
`transform.build_star_increment` gives, from a run's new sales_order rows alone, exactly the
rows this protocol's diff publishes (facts, new dim_date days, quarantined rows) and the run's
own accounting, when no dimension source changed and no new valid row shares a
(sales_order_id, last_updated) with a stored one. The usual packet needs no lookup for that:
every row updated after the newest stored one (`newest_version`, `all_newer_than`) repeats
no stored row and shares no stored version. A key index bucketed by id range does not bound
the read: a 1,000-row packet of updates spans the id range, and at 1 M and 4 M versions it
touched most of the 4,096-id buckets (measured with the first version of
`benchmarks/sales_increment.py`). The plan:

1. raw sales_order: one immutable, content-addressed part per packet, named by the manifest
   entry together with the new sales_order watermark, so one conditional PUT serialises the
   raw and star steps; the six dimension histories (small) stay whole;
2. star step, when only sales_order parts are new and every row is past the watermark: the
   increment; the pending entry names the parts and dimension snapshots its files are rebuilt
   from, and the fact table's state is the list of its files (append only);
3. otherwise (a dimension row, a row at or before the watermark, a re-delivery, a version-2
   manifest): the full rebuild over the base history plus the parts, as today;
4. cumulative accounting counts kept in the manifest, the run adding its own; under the
   watermark gate `keys_unique` on the new facts alone is exact (no stored key is as late).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from dagster import Failure

from ons_pipeline.platform.faults import commit_point
from ons_pipeline.resources.aws import ConcurrentWriteError
from ons_pipeline.sales.outputs import (
    changed_rows,
    from_parquet_bytes,
    newest_update,
    to_parquet_bytes,
)
from ons_pipeline.sales.schema import PACKET_ID, QUARANTINE_SCHEMA, STAR_SCHEMAS
from ons_pipeline.sales.storage import (
    QUARANTINE_TABLE,
    Manifest,
    PendingEntry,
    StarFile,
    load_parquet,
    output_file_key,
    put_parquet_once,
    snapshot_key,
    uri,
)
from ons_pipeline.sales.transform import SOURCE_TABLES

if TYPE_CHECKING:
    import logging
    from collections.abc import Mapping

    import pandas as pd

    from ons_pipeline.resources import (
        ObjectStoreResource,
        ParameterStoreResource,
        SalesStorageResource,
    )

OUTPUT_SCHEMAS: Final = {**STAR_SCHEMAS, QUARANTINE_TABLE: QUARANTINE_SCHEMA}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def packet_ranges(ids: list[int]) -> list[list[int]]:
    """Sorted ids as inclusive [first, last] runs: the packets an entry covers, compactly."""
    ranges: list[list[int]] = []
    for packet_id in sorted(set(ids)):
        if ranges and packet_id == ranges[-1][1] + 1:
            ranges[-1][1] = packet_id
        else:
            ranges.append([packet_id, packet_id])
    return ranges


@dataclass(frozen=True)
class Published:
    """What a run did for one star output: its size, its changed rows and the file if any."""

    rows: int
    changed_rows: int
    uri: str | None = None
    sequence: int | None = None


def delta(table: str, current: pd.DataFrame, previous: pd.DataFrame | None) -> tuple[int, bytes]:
    """The changed rows as file bytes.

    A function of the two snapshots only, so a pending entry's file is rebuilt byte for byte
    from the snapshots it names.
    """
    rows = changed_rows(current, previous)
    return len(rows), to_parquet_bytes(rows, OUTPUT_SCHEMAS[table])


def publish(
    log: logging.Logger,
    s3: ObjectStoreResource,
    ssm: ParameterStoreResource,
    storage: SalesStorageResource,
    manifest: Manifest,
    outputs: Mapping[str, pd.DataFrame],
    raw: Mapping[str, pd.DataFrame],
) -> tuple[Manifest, dict[str, Published]]:
    """Steps 1 to 5 for the star outputs built from `raw`; returns the manifest after them."""
    watermark = newest_update(raw)
    published: dict[str, Published] = {}
    payloads: dict[str, bytes] = {}
    files: dict[str, StarFile] = {}
    snapshots: dict[str, str] = {}
    previous_snapshots: dict[str, str | None] = {}
    for table, frame in outputs.items():
        snapshot = to_parquet_bytes(frame, OUTPUT_SCHEMAS[table])
        previous_key = manifest.snapshots.get(table)
        previous = load_parquet(s3, storage.processed_bucket, previous_key)
        rows, data = delta(table, from_parquet_bytes(snapshot), previous)
        published[table] = Published(len(frame), rows)
        if not rows or watermark is None:
            continue
        sequence = manifest.next_sequence(table)
        key = output_file_key(storage, table, sequence, watermark)
        key_of_snapshot = snapshot_key(storage, table, sha256(snapshot))
        # Step 1: unreferenced until the entry names it, so a crash here publishes nothing.
        put_parquet_once(s3, storage, key_of_snapshot, snapshot)
        files[table] = StarFile(key=key, sequence=sequence, sha256=sha256(data), rows=rows)
        snapshots[table] = key_of_snapshot
        previous_snapshots[table] = previous_key
        payloads[table] = data
        published[table] = Published(len(frame), rows, uri(storage, key), sequence)
    if not payloads:
        return manifest, published
    manifest.pending = PendingEntry(
        entry=manifest.entry + 1,
        watermark=str(watermark),
        files=files,
        snapshots=snapshots,
        previous_snapshots=previous_snapshots,
        packets={
            table: packet_ranges(raw[table][PACKET_ID].dropna().astype(int).tolist())
            for table in SOURCE_TABLES
        },
    )
    _record_intent(s3, storage, manifest)
    for table, data in payloads.items():  # Step 3
        put_parquet_once(s3, storage, files[table]["key"], data)
        commit_point("sales.after_first_star_file")
    return commit(log, s3, ssm, storage, manifest), published


def _record_intent(
    s3: ObjectStoreResource, storage: SalesStorageResource, manifest: Manifest
) -> None:
    """Step 2: the write-ahead entry; of two runs on the same state one wins."""
    commit_point("sales.before_intent")
    try:
        manifest.save(s3, storage)
    except ConcurrentWriteError as error:
        files = manifest.pending["files"] if manifest.pending else {}
        sequences = {t: f["sequence"] for t, f in files.items()}
        raise Failure(
            description=f"Another run holds sales manifest entry {manifest.entry + 1} "
            f"(output sequences {sequences}): the manifest changed after this run read "
            "it, so nothing of this run was published. A retry starts from that run's "
            "result.",
            allow_retries=True,
        ) from error
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
    bucket = storage.processed_bucket
    for table, spec in sorted(pending["files"].items()):
        current = load_parquet(s3, bucket, pending["snapshots"][table])
        if current is None:
            raise Failure(
                description=f"Snapshot s3://{bucket}/{pending['snapshots'][table]} named by "
                f"pending manifest entry {pending['entry']} is missing; the entry cannot be "
                "finished. Restore the object (bucket versioning) before re-running.",
                allow_retries=False,
            )
        previous = load_parquet(s3, bucket, pending["previous_snapshots"].get(table))
        _, data = delta(table, current, previous)
        if sha256(data) != spec["sha256"]:
            raise Failure(
                description=f"Rebuilt {spec['key']} does not match the SHA-256 its pending "
                f"manifest entry {pending['entry']} recorded; refusing to publish it.",
                allow_retries=False,
            )
        put_parquet_once(s3, storage, spec["key"], data)
    return commit(log, s3, ssm, storage, manifest)


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
    """Snapshot keys the committed entry replaced: no entry can need them again."""
    kept = set(after.snapshots.values())
    return sorted({key for key in before.snapshots.values() if key not in kept})
