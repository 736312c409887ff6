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
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ons_pipeline.resources import (
        ObjectStoreResource,
        ParameterStoreResource,
        SalesStorageResource,
    )

MANIFEST_VERSION = 2
QUARANTINE_TABLE = "quarantine"  # a star output with a sequence but no Parameter Store counter


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def manifest_key(storage: SalesStorageResource) -> str:
    return f"{storage.state_prefix}/manifest.json"


def legacy_snapshot_key(storage: SalesStorageResource, table: str) -> str:
    """Where snapshots lived before the protocol (one mutable object per table)."""
    return f"{storage.state_prefix}/star/{table}.parquet"


def snapshot_key(storage: SalesStorageResource, table: str, digest: str) -> str:
    """Content-addressed: a snapshot object never changes once written."""
    return f"{storage.state_prefix}/star/{table}/{digest[:32]}.parquet"


def packet_ranges(ids: list[int]) -> list[list[int]]:
    """Sorted ids as inclusive [first, last] runs: the packets an entry covers, compactly."""
    ranges: list[list[int]] = []
    for packet_id in sorted(set(ids)):
        if ranges and packet_id == ranges[-1][1] + 1:
            ranges[-1][1] = packet_id
        else:
            ranges.append([packet_id, packet_id])
    return ranges


@dataclass
class Manifest:
    """The committed state, the pending entry if a run stopped mid-commit, and the read ETag."""

    entry: int = 0  # number of the last committed entry
    output_sequence: dict[str, int] = field(default_factory=dict)
    snapshots: dict[str, str] = field(default_factory=dict)  # table -> snapshot key
    watermark: str | None = None
    pending: dict[str, Any] | None = None
    etag: str | None = None

    @classmethod
    def load(cls, s3: ObjectStoreResource, storage: SalesStorageResource) -> Manifest:
        stored = s3.get_versioned(storage.processed_bucket, manifest_key(storage))
        if stored is None:
            return cls()
        data = json.loads(stored[0])
        sequences = {k: int(v) for k, v in data.get("output_sequence", {}).items()}
        if data.get("version") != MANIFEST_VERSION:  # written before the protocol existed
            snapshots = {t: legacy_snapshot_key(storage, t) for t in sequences}
            return cls(0, sequences, snapshots, data.get("watermark"), None, stored[1])
        return cls(
            entry=int(data["entry"]),
            output_sequence=sequences,
            snapshots=dict(data["snapshots"]),
            watermark=data.get("watermark"),
            pending=data.get("pending"),
            etag=stored[1],
        )

    def to_bytes(self) -> bytes:
        return json.dumps(
            {
                "version": MANIFEST_VERSION,
                "entry": self.entry,
                "output_sequence": self.output_sequence,
                "snapshots": self.snapshots,
                "watermark": self.watermark,
                "pending": self.pending,
            },
            indent=1,
            sort_keys=True,
        ).encode()

    def save(self, s3: ObjectStoreResource, storage: SalesStorageResource) -> None:
        """Conditional on the ETag last read or written (ConcurrentWriteError if it moved)."""
        self.etag = s3.put_if_match(
            storage.processed_bucket,
            manifest_key(storage),
            self.to_bytes(),
            "application/json",
            self.etag,
        )

    def next_sequence(self, table: str) -> int:
        return self.output_sequence.get(table, 0) + 1

    def committed(self) -> Manifest:
        """The manifest once the pending entry is applied (same ETag, for the commit's PUT)."""
        entry = self.pending
        if entry is None:
            return self
        sequences = dict(self.output_sequence)
        sequences.update({t: int(f["sequence"]) for t, f in entry["files"].items()})
        return Manifest(
            entry=int(entry["entry"]),
            output_sequence=sequences,
            snapshots={**self.snapshots, **entry["snapshots"]},
            watermark=entry["watermark"],
            pending=None,
            etag=self.etag,
        )


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
