"""Migrate one window: export page by page, map, write in bounded groups, account for all.

Pages are gathered into groups of about `group_lines` points; each group is written through
`InfluxDBResource.write_lines` (its batching, gzip, concurrency and retries) while the next
group is mapped, one group in flight, so memory is bounded by two groups, not by the window
and the writers do not wait for the mapping. A `WriteLane` shared by a range's windows keeps
that going across them: the next window is read and mapped while this one's last group is
written, and the window's check waits for it (`WindowOutcome.settle`).
"""

from __future__ import annotations

import contextlib
import queue
import threading
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import pandas as pd
import pyarrow as pa

from ons_pipeline.energy.line_protocol import LineProtocolBatches, line_protocol
from ons_pipeline.energy.migration.export import (
    TimestreamQueryError,
    Window,
    query_pages,
    window_query,
)
from ons_pipeline.energy.migration.mapping import MappedPage, map_page, page_table
from ons_pipeline.energy.migration.unload import (
    Export,
    UnloadTarget,
    export_batches,
    unload_window,
)
from ons_pipeline.energy.validation import count_reasons, rejected_rows
from ons_pipeline.resources.influxdb import WriteOutcome

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator

    from types_boto3_timestream_query import TimestreamQueryClient

    from ons_pipeline.energy.validation import PreparedFile
    from ons_pipeline.resources.influxdb import InfluxDBResource


@dataclass
class WindowOutcome:
    records: int = 0
    pages: int = 0
    written: WriteOutcome = field(default_factory=WriteOutcome)
    quarantined: list[pd.DataFrame] = field(default_factory=list)
    export: Export | None = None  # the UNLOAD's objects, when the window was unloaded
    # The window's last group, still being written on a shared lane; `settle` records it.
    pending: Future[tuple[Any, list[pd.DataFrame]]] | None = None

    def settle(self) -> WindowOutcome:
        """Wait for the window's last group and record it: call before reading the counts.

        Raises:
            InfluxDBUnavailableError, InfluxDBWriteError: that group's write failed.
        """
        if self.pending is not None:
            pending, self.pending = self.pending, None
            result, refused = pending.result()
            self.written.add(result)
            self.quarantined += refused
        return self

    @property
    def rejected(self) -> int:
        return sum(len(q) for q in self.quarantined)

    def quarantine(self) -> pd.DataFrame:
        return (
            pd.concat(self.quarantined, ignore_index=True) if self.quarantined else pd.DataFrame()
        )

    def rejected_by_reason(self) -> dict[str, int]:
        return count_reasons(self.quarantine())


def _write_group(
    influxdb: InfluxDBResource, bucket: str, group: list[MappedPage]
) -> tuple[Any, list[pd.DataFrame]]:
    """Write a group's points; returns the write result and the rows InfluxDB refused."""
    parts: list[tuple[PreparedFile, pa.Array]] = [
        (prepared, line_protocol(prepared))
        for page in group
        for prepared in page.prepared
        if len(prepared.accepted)
    ]
    offsets = np.cumsum([0, *(len(lines) for _, lines in parts)])
    batches = LineProtocolBatches([lines for _, lines in parts], influxdb.max_batch_size)
    result = influxdb.write_lines(bucket, batches)
    refused: list[pd.DataFrame] = []
    if result.rejected:
        for index, (prepared, _) in enumerate(parts):
            local = [p - int(offsets[index]) for p in sorted(result.rejected)]
            positions = np.array([p for p in local if 0 <= p < len(prepared.accepted)], np.int64)
            if len(positions):
                details = [result.rejected[int(p) + int(offsets[index])] for p in positions]
                refused.append(rejected_rows(prepared, positions, "influxdb_rejected", details))
    return result, refused


class WriteLane:
    """One group written at a time, shared by the windows of a range, in submission order.

    A window submits a group only once the group before it (its own or the previous
    window's last) is written, so at most one group is written while the next is mapped.
    Waiting does not consume the previous window's result: its check records it.
    """

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="migration-writer")
        self._last: Future[Any] | None = None

    def submit(self, fn: Callable[..., A], *args: Any) -> Future[A]:
        if self._last is not None:
            wait([self._last])
        self._last = self._pool.submit(fn, *args)
        return self._last

    def close(self) -> None:
        """Let the group being written end (an error stays with its window's outcome)."""
        self._pool.shutdown(wait=True)

    def __enter__(self) -> WriteLane:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def prefetched(items: Iterator[Any], depth: int) -> Iterator[Any]:
    """`items` read ahead by a thread, at most `depth` waiting.

    The next pages download while the current group is mapped and written; an error is
    raised where its item would have been.
    """
    if depth <= 0:
        yield from items
        return
    waiting: queue.Queue[tuple[bool, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def read() -> None:
        try:
            for item in items:
                if stop.is_set():
                    return
                waiting.put((True, item))
        except BaseException as error:  # handed to the consumer, re-raised there
            waiting.put((False, error))
            return
        waiting.put((False, None))

    reader = threading.Thread(target=read, name="timestream-pages", daemon=True)
    reader.start()
    try:
        while True:
            ok, item = waiting.get()
            if not ok:
                if item is not None:
                    raise item
                return
            yield item
    finally:
        stop.set()
        while reader.is_alive():
            with contextlib.suppress(queue.Empty):
                waiting.get_nowait()
            reader.join(timeout=0.05)


T = TypeVar("T")
A = TypeVar("A")
B = TypeVar("B")


def overlapped(
    items: Iterable[T], work: Callable[[T], A], check: Callable[[T, A], B]
) -> Iterator[tuple[T, B]]:
    """`(item, check(item, work(item)))` in order, each check running beside the next work.

    Windows are independent, so a window's comparison can run while the next one is exported
    and written. An error of `work` (or of producing the next item) is raised after the
    pending check's result was handed out; an error of `check` is raised where its result
    would have been.
    """
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="window-check") as pool:
        pending: tuple[T, Future[B]] | None = None
        iterator = iter(items)
        while True:
            try:  # `items` may do work of its own (`ahead`): its error is handled like work's
                item = next(iterator)
            except StopIteration:
                break
            except BaseException:
                if pending is not None:
                    yield pending[0], pending[1].result()
                raise
            try:
                done = work(item)
            except BaseException:
                if pending is not None:
                    yield pending[0], pending[1].result()
                raise
            future = pool.submit(check, item, done)
            if pending is not None:
                yield pending[0], pending[1].result()
            pending = (item, future)
        if pending is not None:
            yield pending[0], pending[1].result()


def ahead(items: Iterable[T], first: Callable[[T], A]) -> Iterator[tuple[T, A]]:
    """`(item, first(item))` in order, `first` of the next item running while this one is used.

    The migration UNLOADs the next window while the current one is written: the export is
    mostly waiting on Timestream and S3. An error of `first` is raised where its result
    would have been, so every earlier item is handled first. When the caller stops early,
    an export not yet started is cancelled; one already running finishes, and its objects
    are left to the export prefix's lifecycle rule (as a failed window's are).
    """
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="window-ahead")
    try:
        pending: tuple[T, Future[A]] | None = None
        for item in items:
            future = pool.submit(first, item)
            if pending is not None:
                yield pending[0], pending[1].result()
            pending = (item, future)
        if pending is not None:
            yield pending[0], pending[1].result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def migrate_window(
    client: TimestreamQueryClient,
    influxdb: InfluxDBResource,
    *,
    database: str,
    table: str,
    dataset: str,
    bucket: str,
    window: Window,
    group_lines: int = 100_000,
    prefetch_pages: int = 4,
    check_tags: bool = True,
    retry: dict[str, Any] | None = None,
    unload: UnloadTarget | None = None,
    exported: Export | None = None,
    lane: WriteLane | None = None,
) -> WindowOutcome:
    """Every record of the window written to `bucket` or quarantined with its reason.

    With `unload`, the window is exported by UNLOAD to Parquet and read a batch (of
    `group_lines` rows) at a time; with `exported`, that UNLOAD already ran (`ahead`) and
    `unload.s3` reads it; with neither, the window is read through Query pages. The
    objects are left for the caller to delete once the window is validated
    (`outcome.export`). With a shared `lane`, the window's last group may still be written
    on return: `outcome.settle()` waits for it (the caller must, before the counts).

    Raises:
        TimestreamQueryError, TimestreamQueryUnavailableError: from the export (also when
            the Parquet parts do not hold the rows the manifest counts).
        InfluxDBUnavailableError, InfluxDBWriteError: from the writes.
    """
    outcome = WindowOutcome()
    group: list[pa.Table] = []
    pending = 0
    own_lane = lane is None
    writer = WriteLane() if lane is None else lane

    def flush() -> None:
        # Pages are mapped a group at a time (`prepare` has a fixed cost per call), while the
        # group before is still being written: one group in flight bounds the memory.
        mapped = map_page(pa.concat_tables(group), dataset, check_tags=check_tags)
        outcome.settle()  # the window's group before, so outcomes keep group order
        outcome.records += mapped.records
        outcome.quarantined += mapped.quarantined
        if mapped.points:
            outcome.pending = writer.submit(_write_group, influxdb, bucket, [mapped])

    tables: Iterator[pa.Table]
    if unload is None:
        pages = query_pages(client, window_query(database, table, window), **(retry or {}))
        tables = (page_table(page) for page in pages)
    else:
        outcome.export = exported or unload_window(
            client,
            unload,
            database=database,
            table=table,
            dataset=dataset,
            window=window,
            **(retry or {}),
        )
        tables = export_batches(unload.s3, outcome.export, group_lines)
    try:
        for rows in prefetched(tables, depth=prefetch_pages):
            outcome.pages += 1
            if group and rows.schema != group[0].schema:
                flush()  # the table gained a column mid-window: map what came before apart
                group, pending = [], 0
            group.append(rows)
            pending += len(rows)
            if pending >= group_lines:
                flush()
                group, pending = [], 0
        if pending:
            flush()
        if own_lane:
            outcome.settle()
    finally:
        if own_lane:
            writer.close()  # an error above still lets the write in flight end
    if outcome.export is not None and outcome.records != outcome.export.rows:
        raise TimestreamQueryError(
            f"the UNLOAD's parts hold {outcome.records} records, its manifest "
            f"{outcome.export.rows}; the window is not migrated"
        )
    return outcome
