"""Every object the sales group reads or writes, over `ObjectStoreResource`'s safe writes.

Packets are read from the ingestion bucket; the raw history, the manifest and the star
snapshots live under the state prefix of the processed bucket; star files and quarantined
rows are published beside them. State files change only by a conditional PUT on the ETag
that was read, and published objects are created once (identical bytes are a no-op), so two
runs cannot both replace the same state and a re-run never rewrites a file differently.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, TypedDict

import numpy as np
import pandas as pd
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
from ons_pipeline.sales.transform import SOURCE_TABLES, all_newer_than, newest_version

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from datetime import datetime

    from ons_pipeline.resources import (
        ObjectStoreResource,
        ParameterStoreResource,
        SalesStorageResource,
    )
    from ons_pipeline.resources.aws import WriteOutcome

MANIFEST_VERSION: Final = 3
KNOWN_VERSIONS: Final = (2, 3)  # version 2 kept no raw state, appended parts or counts
QUARANTINE_TABLE: Final = "quarantine"  # a star output with a sequence but no SSM counter
# Listing pages per table when a run finds its own packets (1,000 keys a page).
DISCOVERY_PAGES: Final = 100


def history_key(storage: SalesStorageResource, table: str) -> str:
    """Where a table's whole raw history lived before it was kept as a base and parts."""
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


class StarFile(TypedDict, total=False):
    """One star file a pending entry will publish (its bytes are checked by SHA-256).

    `staged` names an immutable object holding exactly the file's bytes (an appended part);
    without it the bytes are rebuilt from the entry's snapshots.
    """

    key: str
    sequence: int
    sha256: str
    rows: int
    staged: str


class PendingEntry(TypedDict, total=False):
    """The write-ahead record of one run's star files, as stored in the manifest's JSON."""

    entry: int
    watermark: str
    files: dict[str, StarFile]
    snapshots: dict[str, str]  # table -> the snapshot after the entry
    previous_snapshots: dict[str, str | None]  # table -> the snapshot its file is a delta of
    previous_appended: dict[str, list[str]]  # table -> parts appended to that snapshot
    appended: dict[str, list[str]]  # table -> parts appended to its snapshot after the entry
    packets: dict[str, list[list[int]]]  # source table -> packet id ranges covered
    raw: dict[str, RawState]  # source table -> the raw history the entry is built from
    accounting: list[dict[str, object]]  # cumulative rows per source table after the entry
    rows: dict[str, int]  # star table -> rows after the entry


@dataclass
class Manifest:
    """The committed state, the pending entry if a run stopped mid-commit, and the read ETag.

    A star table is its snapshot plus the parts appended to it since (`appended`): a full
    rebuild writes a new snapshot, an incremental entry appends its new rows as a part.
    `raw`, `accounting` and `rows` say what the committed state was built from and holds, so
    an incremental run adds to them without reading the history.
    """

    entry: int = 0  # number of the last committed entry
    output_sequence: dict[str, int] = field(default_factory=dict)
    snapshots: dict[str, str] = field(default_factory=dict)  # table -> snapshot key
    watermark: str | None = None
    pending: PendingEntry | None = None
    etag: str | None = None
    appended: dict[str, list[str]] = field(default_factory=dict)
    raw: dict[str, RawState] = field(default_factory=dict)
    accounting: list[dict[str, object]] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)  # table -> its last published file

    @classmethod
    def load(cls, s3: ObjectStoreResource, storage: SalesStorageResource) -> Manifest:
        stored = s3.get_versioned(storage.processed_bucket, manifest_key(storage))
        if stored is None:
            return cls()
        data = json.loads(stored[0])
        sequences = {k: int(v) for k, v in data.get("output_sequence", {}).items()}
        if data.get("version") not in KNOWN_VERSIONS:  # written before the protocol existed
            snapshots = {t: legacy_snapshot_key(storage, t) for t in sequences}
            return cls(0, sequences, snapshots, data.get("watermark"), None, stored[1])
        return cls(  # a version-2 manifest has no `raw`: its next run rebuilds in full
            entry=int(data["entry"]),
            output_sequence=sequences,
            snapshots=dict(data["snapshots"]),
            watermark=data.get("watermark"),
            pending=data.get("pending"),
            etag=stored[1],
            appended=dict(data.get("appended", {})),
            raw=dict(data.get("raw", {})),
            accounting=list(data.get("accounting", [])),
            rows=dict(data.get("rows", {})),
            files=dict(data.get("files", {})),
        )

    def to_bytes(self) -> bytes:
        return json.dumps(
            {
                "version": MANIFEST_VERSION,
                "entry": self.entry,
                "output_sequence": self.output_sequence,
                "snapshots": self.snapshots,
                "appended": self.appended,
                "watermark": self.watermark,
                "pending": self.pending,
                "raw": self.raw,
                "accounting": self.accounting,
                "rows": self.rows,
                "files": self.files,
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

    def table_keys(self, table: str) -> list[str]:
        """The objects that together hold a star table: its snapshot, then appended parts."""
        base = self.snapshots.get(table)
        return [*([base] if base else []), *self.appended.get(table, [])]

    def referenced(self) -> set[str]:
        return {
            key for table in {*self.snapshots, *self.appended} for key in self.table_keys(table)
        }

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
            appended={**self.appended, **entry.get("appended", {})},
            raw=dict(entry.get("raw", self.raw)),
            accounting=list(entry.get("accounting", self.accounting)),
            rows={**self.rows, **entry.get("rows", {})},
            files={**self.files, **{t: f["key"] for t, f in entry["files"].items()}},
        )


def load_parquet(s3: ObjectStoreResource, bucket: str, key: str | None) -> pd.DataFrame | None:
    """A Parquet object as a frame; None when no key is given or the object does not exist."""
    data = None if key is None else s3.get_bytes(bucket, key)
    return None if data is None else from_parquet_bytes(data)


class RawPart(TypedDict):
    """One immutable object of a table's raw history and the packets whose rows it holds."""

    key: str
    packets: list[list[int]]
    rows: int


@dataclass
class RawIndex:
    """A table's raw history: one base object plus the parts appended after it.

    The index is the only mutable raw object (a conditional PUT on the ETag read); the base
    and the parts are content-addressed and never change. A packet whose rows are all updated
    after `watermark` (the newest readable `last_updated` stored) can neither repeat a stored
    row nor share a stored version, so it becomes a new part without reading the history;
    any other packet is merged into the whole history, which becomes the next base.
    """

    base: str | None = None
    parts: list[RawPart] = field(default_factory=list)
    rows: int = 0
    watermark: str | None = None
    etag: str | None = None

    @classmethod
    def load(cls, s3: ObjectStoreResource, storage: SalesStorageResource, table: str) -> RawIndex:
        stored = s3.get_versioned(storage.processed_bucket, raw_index_key(storage, table))
        if stored is None:
            legacy = history_key(storage, table)  # one mutable object per table, before parts
            if s3.get_versioned(storage.processed_bucket, legacy) is None:
                return cls()
            frame = load_parquet(s3, storage.processed_bucket, legacy)
            rows = 0 if frame is None else len(frame)
            watermark = None if frame is None else _text(newest_version(frame))
            return cls(base=legacy, rows=rows, watermark=watermark)
        data = json.loads(stored[0])
        return cls(
            data["base"], list(data["parts"]), int(data["rows"]), data["watermark"], stored[1]
        )

    def save(self, s3: ObjectStoreResource, storage: SalesStorageResource, table: str) -> None:
        body = {
            "base": self.base,
            "parts": self.parts,
            "rows": self.rows,
            "watermark": self.watermark,
        }
        try:
            self.etag = s3.put_if_match(
                storage.processed_bucket,
                raw_index_key(storage, table),
                json.dumps(body, indent=1, sort_keys=True).encode(),
                "application/json",
                self.etag,
            )
        except ConcurrentWriteError as error:
            raise Failure(
                description=f"Another run absorbed packets into the {table} history while "
                f"this one was merging ({error}); nothing of this run's {table} rows was "
                "lost or written twice. A retry merges on top of it.",
                allow_retries=True,
            ) from error

    @property
    def state(self) -> RawState:
        """What a star entry records as built from: the base and how many parts."""
        return {"base": self.base, "parts": len(self.parts)}

    def keys(self) -> list[str]:
        return [key for key in (self.base, *(part["key"] for part in self.parts)) if key]


class RawState(TypedDict):
    base: str | None
    parts: int


def raw_index_key(storage: SalesStorageResource, table: str) -> str:
    return f"{storage.state_prefix}/raw/{table}/index.json"


def raw_object_key(storage: SalesStorageResource, table: str, digest: str) -> str:
    return f"{storage.state_prefix}/raw/{table}/{digest[:32]}.parquet"


def _text(stamp: np.datetime64 | None) -> str | None:
    return None if stamp is None else str(np.datetime64(stamp, "us"))


def watermark_stamp(text: str | None) -> np.datetime64 | None:
    """A stored watermark (ISO text, `T` or a space) as microseconds; None if none is stored."""
    return None if not text else np.datetime64(pd.Timestamp(text), "us")


def load_raw(
    s3: ObjectStoreResource, storage: SalesStorageResource, table: str, keys: list[str]
) -> pd.DataFrame:
    """The raw rows held by these history objects, in order (an empty typed table if none)."""

    def gone(key: str) -> Failure:  # replaced by a concurrent merge after the index was read
        return Failure(
            description=f"Raw history object s3://{storage.processed_bucket}/{key} of "
            f"{table} is gone: another run merged the history after this one read its "
            "index. A retry reads the new index.",
            allow_retries=True,
        )

    rows = load_objects(s3, storage.processed_bucket, keys, gone)
    return empty_rows(table) if rows is None else rows


def load_objects(
    s3: ObjectStoreResource, bucket: str, keys: list[str], missing: Callable[[str], Failure]
) -> pd.DataFrame | None:
    """The Parquet objects' rows in key order; None for no keys; `missing(key)` is raised."""
    frames = []
    for key in keys:
        frame = load_parquet(s3, bucket, key)
        if frame is None:
            raise missing(key)
        if len(frame) or not frames:
            frames.append(frame)
    if not frames:
        return None
    return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)


def load_histories(
    s3: ObjectStoreResource, storage: SalesStorageResource, indexes: Mapping[str, RawIndex]
) -> dict[str, pd.DataFrame]:
    return {table: load_raw(s3, storage, table, indexes[table].keys()) for table in SOURCE_TABLES}


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
    """Add the packets' new rows to the table's raw history and quarantine malformed lines.

    Packets that only bring versions newer than every stored row (the usual delivery) become
    one new part: the run reads and writes only them. Anything else (a re-delivery, an older
    version, an unreadable `last_updated`) is merged into the whole history. Idempotent, and
    the index is replaced only if no other run replaced it since it was read.
    """
    packets = [
        parse_packet(table, packet_id, read_packet(s3, storage, table, packet_id))
        for packet_id in packet_ids
    ]
    index = RawIndex.load(s3, storage, table)
    fresh = merge_history(empty_rows(table), packets, table)
    if len(fresh) and all_newer_than(fresh, watermark_stamp(index.watermark)):
        new_rows = len(fresh)
        part = _put_raw(s3, storage, table, fresh)
        index.parts.append(RawPart(key=part, packets=packet_ranges(packet_ids), rows=new_rows))
        index.rows += new_rows
        index.watermark = _text(newest_version(fresh))
        commit_point("sales.raw.after_part")
        index.save(s3, storage, table)
        commit_point("sales.raw.after_history")
    elif len(fresh):
        history = load_raw(s3, storage, table, index.keys())
        merged = merge_history(history, packets, table)
        new_rows = len(merged) - len(history)
        if new_rows:
            replaced = index.keys()
            index = RawIndex(
                _put_raw(s3, storage, table, merged),
                rows=len(merged),
                watermark=_text(newest_version(merged)),
                etag=index.etag,
            )
            commit_point("sales.raw.after_part")
            index.save(s3, storage, table)
            commit_point("sales.raw.after_history")
            s3.delete_keys(storage.processed_bucket, [k for k in replaced if k != index.base])
    else:
        new_rows = 0
    return Absorbed(
        lines=sum(p.lines for p in packets),
        parsed=sum(len(p.rows) for p in packets),
        quarantined=sum(len(p.malformed) for p in packets),
        new_rows=new_rows,
        rows=index.rows,
        quarantine_uris=write_raw_quarantine(s3, storage, table, packets),
    )


def _put_raw(
    s3: ObjectStoreResource, storage: SalesStorageResource, table: str, rows: pd.DataFrame
) -> str:
    """An immutable raw history object named by its content; unreferenced until indexed."""
    data = to_parquet_bytes(rows, history_schema(table))
    key = raw_object_key(storage, table, hashlib.sha256(data).hexdigest())
    put_parquet_once(s3, storage, key, data)
    return key


def packet_ranges(ids: list[int]) -> list[list[int]]:
    """Sorted ids as inclusive [first, last] runs: the packets an object covers, compactly."""
    ranges: list[list[int]] = []
    for packet_id in sorted(set(ids)):
        if ranges and packet_id == ranges[-1][1] + 1:
            ranges[-1][1] = packet_id
        else:
            ranges.append([packet_id, packet_id])
    return ranges
