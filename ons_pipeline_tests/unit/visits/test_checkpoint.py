"""Parsing event files, the merge (with Hypothesis properties), the ledger, corrupt files."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ons_pipeline.visits.checkpoint import (
    CorruptCheckpointError,
    checkpoint_from_parquet,
    checkpoint_to_parquet,
    empty_checkpoint,
    events_frame,
    ledger_from_parquet,
    ledger_to_parquet,
    merge_events,
    new_objects,
    parse_event_file,
    sibling_key,
)
from ons_pipeline.visits.schema import CHECKPOINT_SCHEMA, EVENT_COLUMNS

if TYPE_CHECKING:
    import random

EXAMPLES = settings(max_examples=100, deadline=None)


def body(**changes: Any) -> bytes:
    payload = {
        "action": "submit",
        "pipeline_adcid": 42,
        "project_label": "p",
        "center_label": "c",
        "gear_name": "g",
        "ptid": "P1",
        "visit_date": "2024-01-15",
        "visit_number": "01",
        "datatype": "form",
        "timestamp": "2024-01-15T10:00:00Z",
        **changes,
    }
    return json.dumps(payload).encode()


def test_a_valid_file_becomes_a_normalised_event() -> None:
    parsed = parse_event_file("k", '"e"', body(timestamp="2024-01-15T11:00:00+01:00"))
    assert parsed.rejection is None
    assert parsed.event is not None
    assert parsed.event["timestamp"] == datetime(2024, 1, 15, 10, tzinfo=UTC)
    assert parsed.event["study"] == "adrc"
    assert parsed.event["module"] is None


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\xff\xfe{}", "invalid UTF-8"),
        (b'{"action": ', "malformed JSON"),
        (b"", "malformed JSON"),
        (b"[1, 2]", "not a JSON object: got list"),
        (b'"text"', "not a JSON object: got str"),
        (body(ptid="p-1"), "invalid ptid"),
        (body(extra="x"), "unknown field extra"),
        (body(visit_date="2024-02-30"), "invalid visit_date"),
        (json.dumps({"action": "submit"}).encode(), "missing field pipeline_adcid"),
    ],
)
def test_bad_files_are_rejected_with_key_and_reason(data: bytes, reason: str) -> None:
    parsed = parse_event_file("logs/x.json", '"etag"', data)
    assert parsed.event is None
    assert parsed.rejection is not None
    assert parsed.rejection.key == "logs/x.json"
    assert reason in parsed.rejection.reason


def test_every_failing_field_is_named() -> None:
    parsed = parse_event_file("k", "e", body(ptid="bad", pipeline_adcid="42"))
    assert parsed.rejection is not None
    assert "ptid" in parsed.rejection.reason
    assert "pipeline_adcid" in parsed.rejection.reason


event_strategy = st.fixed_dictionaries(
    {
        "action": st.sampled_from(["submit", "pass-qc", "not-pass-qc", "delete"]),
        "study": st.just("adrc"),
        "pipeline_adcid": st.integers(1, 3),
        "project_label": st.just("proj"),
        "center_label": st.sampled_from(["a", "b"]),
        "gear_name": st.just("gear"),
        "ptid": st.sampled_from(["P1", "P2", "P3"]),
        "visit_date": st.dates(date(2024, 1, 1), date(2024, 1, 5)),
        "visit_number": st.sampled_from(["01", "02"]),
        "datatype": st.just("form"),
        "module": st.sampled_from([None, "UDS"]),
        "packet": st.sampled_from([None, "I"]),
        "timestamp": st.integers(0, 5).map(
            lambda s: datetime(2024, 1, 1, tzinfo=UTC) + timedelta(hours=s)
        ),
    }
)
batches_strategy = st.lists(st.lists(event_strategy, max_size=8), max_size=5)


def distinct(events: list[dict[str, Any]]) -> set[tuple[Any, ...]]:
    return {tuple(e[c] for c in EVENT_COLUMNS) for e in events}


def rows(frame: pd.DataFrame) -> list[tuple[Any, ...]]:
    out = []
    for record in frame.to_dict("records"):
        record["timestamp"] = record["timestamp"].to_pydatetime()
        out.append(tuple(None if pd.isna(record[c]) else record[c] for c in EVENT_COLUMNS))
    return out


@EXAMPLES
@given(batches_strategy)
def test_merge_never_loses_or_duplicates_an_event(batches: list[list[dict[str, Any]]]) -> None:
    merged = merge_events(empty_checkpoint(), *(events_frame(b) for b in batches))
    every = [e for batch in batches for e in batch]
    assert len(rows(merged)) == len(set(rows(merged)))
    assert set(rows(merged)) == distinct(every)


@EXAMPLES
@given(batches_strategy, st.randoms(use_true_random=False))
def test_merge_does_not_depend_on_arrival_order(
    batches: list[list[dict[str, Any]]], rng: random.Random
) -> None:
    in_order = merge_events(empty_checkpoint(), *(events_frame(b) for b in batches))
    shuffled = [e for batch in batches for e in batch]
    rng.shuffle(shuffled)
    # Re-batched differently and merged a batch at a time into a growing checkpoint.
    cuts = sorted(rng.sample(range(len(shuffled) + 1), k=min(3, len(shuffled) + 1)))
    checkpoint = empty_checkpoint()
    for start, end in zip([0, *cuts], [*cuts, len(shuffled)], strict=True):
        checkpoint = merge_events(checkpoint, events_frame(shuffled[start:end]))
    pd.testing.assert_frame_equal(in_order, checkpoint)
    assert checkpoint_to_parquet(in_order) == checkpoint_to_parquet(checkpoint)


@EXAMPLES
@given(batches_strategy)
def test_merge_is_idempotent(batches: list[list[dict[str, Any]]]) -> None:
    frames = [events_frame(b) for b in batches]
    once = merge_events(empty_checkpoint(), *frames)
    again = merge_events(once, *frames)
    pd.testing.assert_frame_equal(once, again)
    pd.testing.assert_frame_equal(once, merge_events(once, once))


@EXAMPLES
@given(st.lists(event_strategy, max_size=10))
def test_checkpoint_parquet_round_trips(events: list[dict[str, Any]]) -> None:
    frame = merge_events(empty_checkpoint(), events_frame(events))
    back = checkpoint_from_parquet(checkpoint_to_parquet(frame))
    pd.testing.assert_frame_equal(frame, back)


def test_checkpoint_is_snappy_parquet_with_the_contract_schema() -> None:
    import io

    import pyarrow.parquet as pq

    data = checkpoint_to_parquet(empty_checkpoint())
    meta = pq.ParquetFile(io.BytesIO(data))
    assert meta.schema_arrow.equals(CHECKPOINT_SCHEMA, check_metadata=False)
    one = checkpoint_to_parquet(
        events_frame([parse_event_file("k", "e", body()).event])  # type: ignore[list-item]
    )
    assert pq.ParquetFile(io.BytesIO(one)).metadata.row_group(0).column(0).compression == "SNAPPY"


@pytest.mark.parametrize(
    "data", [b"", b"not parquet at all", b"PAR1garbagePAR1", ledger_to_parquet({"k": ("e", "v")})]
)
def test_a_corrupt_checkpoint_is_an_error_never_empty(data: bytes) -> None:
    with pytest.raises(CorruptCheckpointError):
        checkpoint_from_parquet(data)


def test_ledger_round_trips_and_decides_what_is_new() -> None:
    ledger = {"a": ('"1"', "valid"), "b": ('"2"', "rejected")}
    assert ledger_from_parquet(ledger_to_parquet(ledger)) == ledger
    listing = {"a": '"1"', "b": '"3"', "c": '"4"'}
    assert new_objects(listing, ledger) == {"b": '"3"', "c": '"4"'}
    with pytest.raises(CorruptCheckpointError):
        ledger_from_parquet(b"junk")


def test_state_objects_sit_beside_the_checkpoint() -> None:
    assert sibling_key("checkpoints/events.parquet", ".ledger.parquet") == (
        "checkpoints/events.ledger.parquet"
    )
