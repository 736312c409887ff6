"""Every object the sales group reads or writes, over `ObjectStoreResource`'s safe writes.

Packets are read from the ingestion bucket; the raw history, the manifest and the star
snapshots live under the state prefix of the processed bucket; star files and quarantined
rows are published beside them. State files change only by a conditional PUT on the ETag
that was read, and published objects are created once (identical bytes are a no-op), so two
runs cannot both replace the same state and a re-run never rewrites a file differently.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, TypedDict

from dagster import Failure

from ons_pipeline.platform.faults import commit_point
from ons_pipeline.resources.aws import ConcurrentWriteError
from ons_pipeline.resources.defaults import PARQUET_CONTENT_TYPE
from ons_pipeline.sales.outputs import from_parquet_bytes, output_key, to_parquet_bytes
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
from ons_pipeline.sales.transform import SOURCE_TABLES

if TYPE_CHECKING:
    from datetime import datetime

    import pandas as pd

    from ons_pipeline.resources import (
        ObjectStoreResource,
        ParameterStoreResource,
        SalesStorageResource,
    )
    from ons_pipeline.resources.aws import WriteOutcome

MANIFEST_VERSION: Final = 2
QUARANTINE_TABLE: Final = "quarantine"  # a star output with a sequence but no SSM counter
# Listing pages per table when a run finds its own packets (1,000 keys a page).
DISCOVERY_PAGES: Final = 100


def history_key(storage: SalesStorageResource, table: str) -> str:
    return f"{storage.state_prefix}/raw/{table}.parquet"


def manifest_key(storage: SalesStorageResource) -> str:
    return f"{storage.state_prefix}/manifest.json"


def legacy_snapshot_key(storage: SalesStorageResource, table: str) -> str:
    """Where snapshots lived before the protocol (one mutable object per table)."""
    return f"{storage.state_prefix}/star/{table}.parquet"


def snapshot_key(storage: SalesStorageResource, table: str, digest: str) -> str:
    """Content-addressed: a snapshot object never changes once written."""
    return f"{storage.state_prefix}/star/{table}/{digest[:32]}.parquet"


def output_file_key(
    storage: SalesStorageResource, table: str, sequence: int, watermark: datetime
) -> str:
    """A star file's key; the star quarantine is published under the quarantine prefix."""
    key = output_key(table, sequence, watermark)
    if table == QUARANTINE_TABLE:
        return f"{storage.quarantine_prefix}/star/{key.split('/', 1)[1]}"
    return key


def uri(storage: SalesStorageResource, key: str) -> str:
    return f"s3://{storage.processed_bucket}/{key}"


class StarFile(TypedDict):
    """One star file a pending entry will publish (its bytes are checked by SHA-256)."""

    key: str
    sequence: int
    sha256: str
    rows: int


class PendingEntry(TypedDict):
    """The write-ahead record of one run's star files, as stored in the manifest's JSON."""

    entry: int
    watermark: str
    files: dict[str, StarFile]
    snapshots: dict[str, str]  # table -> the snapshot after the entry
    previous_snapshots: dict[str, str | None]  # table -> the snapshot its file is a delta of
    packets: dict[str, list[list[int]]]  # source table -> packet id ranges covered


@dataclass
class Manifest:
    """The committed state, the pending entry if a run stopped mid-commit, and the read ETag."""

    entry: int = 0  # number of the last committed entry
    output_sequence: dict[str, int] = field(default_factory=dict)
    snapshots: dict[str, str] = field(default_factory=dict)  # table -> snapshot key
    watermark: str | None = None
    pending: PendingEntry | None = None
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


def load_parquet(s3: ObjectStoreResource, bucket: str, key: str | None) -> pd.DataFrame | None:
    """A Parquet object as a frame; None when no key is given or the object does not exist."""
    data = None if key is None else s3.get_bytes(bucket, key)
    return None if data is None else from_parquet_bytes(data)


def load_snapshot(
    s3: ObjectStoreResource, storage: SalesStorageResource, table: str
) -> pd.DataFrame | None:
    """The star table as of the last committed manifest entry."""
    key = Manifest.load(s3, storage).snapshots.get(table)
    return load_parquet(s3, storage.processed_bucket, key)


def load_history_versioned(
    s3: ObjectStoreResource, storage: SalesStorageResource, table: str
) -> tuple[pd.DataFrame, str | None]:
    """Every row of `table` delivered so far, and the ETag a `save_history` must match."""
    stored = s3.get_versioned(storage.processed_bucket, history_key(storage, table))
    if stored is None:
        return empty_rows(table), None
    return from_parquet_bytes(stored[0]), stored[1]


def load_histories(
    s3: ObjectStoreResource, storage: SalesStorageResource
) -> dict[str, pd.DataFrame]:
    return {table: load_history_versioned(s3, storage, table)[0] for table in SOURCE_TABLES}


def save_history(
    s3: ObjectStoreResource,
    storage: SalesStorageResource,
    table: str,
    merged: pd.DataFrame,
    etag: str | None,
) -> None:
    """Replace the table's history only if no other run replaced it since it was read."""
    try:
        s3.put_if_match(
            storage.processed_bucket,
            history_key(storage, table),
            to_parquet_bytes(merged, history_schema(table)),
            PARQUET_CONTENT_TYPE,
            etag,
        )
    except ConcurrentWriteError as error:
        raise Failure(
            description=f"Another run absorbed packets into the {table} history while "
            f"this one was merging ({error}); nothing of this run's {table} rows was "
            "lost or written twice. A retry merges on top of it.",
            allow_retries=True,
        ) from error


def read_packet(
    s3: ObjectStoreResource, storage: SalesStorageResource, table: str, packet_id: int
) -> bytes:
    key = packet_key(table, packet_id)
    body = s3.get_bytes(storage.ingestion_bucket, key)
    if body is None:  # not transient: retrying cannot make the packet appear
        raise Failure(
            description=f"Packet s3://{storage.ingestion_bucket}/{key} does not exist; "
            "check the packets payload or the ingestion bucket name",
            allow_retries=False,
        )
    return body


def discover_packets(
    s3: ObjectStoreResource, ssm: ParameterStoreResource, storage: SalesStorageResource
) -> tuple[list[tuple[str, int]], dict[str, str]]:
    """Packets after each table's last recorded one, and the other keys with why they are not."""
    found: list[tuple[str, int]] = []
    not_packets: dict[str, str] = {}
    for table in SOURCE_TABLES:
        last = ssm.get_int(storage.last_packet_parameter(table)) or 0
        start_after = packet_key(table, last) if last else None
        listing = s3.list_after(
            storage.ingestion_bucket, f"{table}/", start_after, max_pages=DISCOVERY_PAGES
        )
        for key in listing.keys:
            parsed = parse_packet_key(key)
            if parsed is not None:
                found.append(parsed)
            else:
                not_packets[key] = packet_key_problem(key) or "not a packet"
    return found, not_packets


def write_raw_quarantine(
    s3: ObjectStoreResource,
    storage: SalesStorageResource,
    table: str,
    packets: list[ParsedPacket],
) -> list[str]:
    """Each packet's malformed lines as JSONL beside the history; returns their URIs.

    One object per packet, named by it, so a re-run writes the same lines to the same key.
    """
    uris = []
    for packet in packets:
        if packet.malformed.empty:
            continue
        name = f"{table}-packet-{packet.packet_id:08d}.jsonl"
        key = f"{storage.quarantine_prefix}/raw/{table}/{name}"
        body = packet.malformed.to_json(orient="records", lines=True).encode()
        s3.put_bytes(storage.processed_bucket, key, body, "application/x-ndjson")
        uris.append(uri(storage, key))
    return uris


def put_parquet_once(
    s3: ObjectStoreResource, storage: SalesStorageResource, key: str, data: bytes
) -> WriteOutcome:
    """Publish an immutable Parquet object (a star file or a snapshot)."""
    return s3.put_bytes_once(storage.processed_bucket, key, data, PARQUET_CONTENT_TYPE)


@dataclass(frozen=True)
class Absorbed:
    """What one table's packets brought to its raw history."""

    lines: int
    parsed: int
    quarantined: int
    new_rows: int
    rows: int  # the history's size after the merge
    quarantine_uris: list[str]

    @property
    def changed(self) -> bool:
        return bool(self.new_rows or self.quarantined)


def absorb_packets(
    s3: ObjectStoreResource,
    storage: SalesStorageResource,
    table: str,
    packet_ids: list[int],
) -> Absorbed:
    """Merge the packets into the table's raw history and quarantine their malformed lines.

    Idempotent: rows the history holds already are folded, and the history is replaced only
    if no other run replaced it since it was read.
    """
    packets = [
        parse_packet(table, packet_id, read_packet(s3, storage, table, packet_id))
        for packet_id in packet_ids
    ]
    history, etag = load_history_versioned(s3, storage, table)
    merged = merge_history(history, packets, table)
    new_rows = len(merged) - len(history)
    if new_rows:
        save_history(s3, storage, table, merged, etag)
        commit_point("sales.raw.after_history")
    return Absorbed(
        lines=sum(p.lines for p in packets),
        parsed=sum(len(p.rows) for p in packets),
        quarantined=sum(len(p.malformed) for p in packets),
        new_rows=new_rows,
        rows=len(merged),
        quarantine_uris=write_raw_quarantine(s3, storage, table, packets),
    )
