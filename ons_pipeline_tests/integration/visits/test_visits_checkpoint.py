"""The visits assets through Dagster against the local stack's moto server, over HTTP."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import boto3
import pytest
from dagster import DagsterInstance, Failure, materialize

from ons_pipeline.local.demo.visits_data import EventFile, event_key, generate_corpus, land_files
from ons_pipeline.resources import CloudWatchMetricsResource, ObjectStoreResource
from ons_pipeline.resources.storage import VisitsStorageResource
from ons_pipeline.visits.assets import (
    CHECKPOINT_KEY,
    LATEST_KEY,
    MONTHLY_KEY,
    QC_DAYS_KEY,
    visit_analytics,
    visit_events_checkpoint,
)
from ons_pipeline.visits.checkpoint import checkpoint_from_parquet, ledger_from_parquet
from ons_pipeline.visits.schema import EVENT_COLUMNS

pytestmark = pytest.mark.integration

REGION = "eu-west-2"
CHECKPOINT = "state/events.parquet"
LEDGER = "state/events.ledger.parquet"


def event(ptid: str, at: str, action: str = "submit", **changes: Any) -> dict[str, Any]:
    return {
        "action": action,
        "study": "adrc",
        "pipeline_adcid": 42,
        "project_label": "ingest-form",
        "center_label": "alpha",
        "gear_name": "g",
        "ptid": ptid,
        "visit_date": "2024-01-10",
        "visit_number": "01",
        "datatype": "form",
        "timestamp": at,
        **changes,
    }


def file_of(payload: dict[str, Any], key: str | None = None) -> EventFile:
    return EventFile(key or event_key(payload), json.dumps(payload).encode())


GETS: list[str] = []  # keys the run's S3 client fetched (Dagster copies resources per run)


class InstrumentedStore(ObjectStoreResource):
    """S3 that records GETs and can fail the ledger PUT, as if the process died there."""

    crash_before_ledger: bool = False

    def get_client(self) -> Any:
        if self._client is not None:
            return self._client
        client = super().get_client()

        def count(params: dict[str, Any], **_: Any) -> None:
            GETS.append(params["Key"])

        def crash(params: dict[str, Any], **_: Any) -> None:
            if self.crash_before_ledger and params.get("Key", "").endswith(".ledger.parquet"):
                # allow_retries=False: the run must stop here, not be retried minutes later.
                raise Failure("simulated crash before the ledger write", allow_retries=False)

        client.meta.events.register("before-parameter-build.s3.GetObject", count)
        client.meta.events.register("before-parameter-build.s3.PutObject", crash)
        return client


class Events:
    """A fresh event bucket and checkpoint bucket for one test, and one Dagster instance."""

    def __init__(self) -> None:
        suffix = uuid.uuid4().hex[:10]
        self.source = f"events-{suffix}"
        self.state = f"checkpoints-{suffix}"
        self.s3 = boto3.client("s3", region_name=REGION)
        for bucket in (self.source, self.state):
            self.s3.create_bucket(
                Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION}
            )
        self.instance = DagsterInstance.ephemeral()
        self.gets: list[str] = []

    def land(self, files: list[EventFile]) -> None:
        land_files(self.s3, self.source, files, workers=8)

    def run(self, *, crash: bool = False, analytics: bool = False) -> Any:
        GETS.clear()
        self.gets = GETS
        return materialize(
            [visit_events_checkpoint, *([visit_analytics] if analytics else [])],
            resources={
                "s3": InstrumentedStore(region_name=REGION, crash_before_ledger=crash),
                "metrics": CloudWatchMetricsResource(region_name=REGION),
                "visits_storage": VisitsStorageResource(
                    source_bucket=self.source,
                    prefix="logs/",
                    checkpoint_bucket=self.state,
                    checkpoint_key=CHECKPOINT,
                ),
            },
            instance=self.instance,
            # Failures must show at once, not after RetryPolicy's minutes of back-off.
            run_config={"execution": {"config": {"retries": {"disabled": {}}}}},
            raise_on_error=False,
        )

    def stats(self, result: Any) -> dict[str, Any]:
        (event,) = [
            e for e in result.get_asset_materialization_events() if e.asset_key == CHECKPOINT_KEY
        ]
        return {k: v.value for k, v in event.materialization.metadata.items()}

    def checks(self, result: Any) -> dict[str, bool]:
        return {c.check_name: c.passed for c in result.get_asset_check_evaluations()}

    def get(self, key: str) -> bytes:
        return self.s3.get_object(Bucket=self.state, Key=key)["Body"].read()

    def head(self, key: str) -> dict[str, Any]:
        return self.s3.head_object(Bucket=self.state, Key=key)

    def checkpoint(self) -> Any:
        return checkpoint_from_parquet(self.get(CHECKPOINT))

    def ledger(self) -> dict[str, tuple[str, str]]:
        return ledger_from_parquet(self.get(LEDGER))


@pytest.fixture
def events(stack_env: dict[str, str]) -> Events:
    return Events()


def test_first_run_builds_checkpoint_ledger_errors_and_analytics(events: Events) -> None:
    corpus = generate_corpus(40, seed=1, late_fraction=0)
    events.land(corpus.initial)
    result = events.run(analytics=True)
    assert result.success
    stats = events.stats(result)
    valid = len(corpus.initial) - 4
    assert stats["first_run"] is True
    assert stats["files_read"] == len(corpus.initial)
    assert stats["events_failed"] == 4
    assert stats["new_events_processed"] == stats["total_events"] == valid
    assert {r["key"] for r in stats["rejected_files"]} == set(corpus.invalid_keys[:4])
    assert all(events.checks(result).values())

    frame = events.checkpoint()
    assert list(frame.columns) == list(EVENT_COLUMNS)
    assert len(frame) == valid
    assert str(frame["timestamp"].dtype) == "datetime64[us, UTC]"
    assert len(events.ledger()) == len(corpus.initial)  # rejected files recorded too
    errors_key = stats["errors_uri"].split("/", 3)[3]
    report = json.loads(events.get(errors_key))
    assert {r["key"] for r in report["rejected"]} == set(corpus.invalid_keys[:4])
    assert all(r["reason"] for r in report["rejected"])
    # Nothing was written into the event prefix.
    listed = events.s3.list_objects_v2(Bucket=events.source)["KeyCount"]
    assert listed == len(corpus.initial)
    cloudwatch = boto3.client("cloudwatch", region_name=REGION)
    names = {m["MetricName"] for m in cloudwatch.list_metrics(Namespace="ONS/Visits")["Metrics"]}
    assert {
        "NewEventsProcessed",
        "TotalEvents",
        "EventsFailed",
        "ExecutionTime",
        "CheckpointFileSize",
    } <= names
    analytics = {e.asset_key for e in result.get_asset_materialization_events()}
    assert {LATEST_KEY, MONTHLY_KEY, QC_DAYS_KEY} <= analytics


def test_incremental_run_reads_only_late_and_out_of_order_arrivals(events: Events) -> None:
    early = [file_of(event(f"P{i}", f"2024-03-0{i}T10:00:00Z")) for i in range(1, 6)]
    events.land(early)
    assert events.run().success
    # Late: event times older than anything processed, and keys that sort before old ones.
    late = [
        file_of(event("L1", "2024-01-01T00:00:00Z")),
        file_of(event("L2", "2023-12-31T23:00:00+00:00", action="delete")),
        file_of(event("L3", "2024-02-01T00:00:00Z"), key="logs/2023/nested/log-late.json"),
    ]
    events.land(late)
    result = events.run()
    assert result.success
    stats = events.stats(result)
    assert stats["files_read"] == 3
    assert stats["new_events_processed"] == 3
    assert stats["total_events"] == 8
    fetched = [key for key in events.gets if key.startswith("logs/")]
    assert sorted(fetched) == sorted(f.key for f in late)
    assert set(events.checkpoint()["ptid"]) == {"P1", "P2", "P3", "P4", "P5", "L1", "L2", "L3"}
    assert all(events.checks(result).values())


def test_replayed_and_copied_files_add_nothing(events: Events) -> None:
    files = [file_of(event(f"P{i}", f"2024-03-0{i}T10:00:00Z")) for i in range(1, 4)]
    events.land(files)
    assert events.run().success
    before = events.checkpoint()
    events.land(files)  # the same bytes again: same ETag, not even fetched
    copy = EventFile("logs/replay/" + files[0].key.removeprefix("logs/"), files[0].body)
    events.land([copy])
    result = events.run()
    stats = events.stats(result)
    assert stats["files_read"] == 1
    assert stats["new_events_processed"] == 0
    assert stats["duplicate_events"] == 1
    assert stats["checkpoint_written"] is False
    assert events.checkpoint().equals(before)
    assert all(events.checks(result).values())


def test_corrected_reupload_under_the_same_key_is_processed(events: Events) -> None:
    good = event("P1", "2024-03-01T10:00:00Z")
    bad = {**good, "ptid": "p-1"}
    key = event_key(good)
    events.land([file_of(bad, key), file_of(event("P2", "2024-03-02T10:00:00Z"))])
    first = events.stats(events.run())
    assert first["events_failed"] == 1
    assert first["rejected_files"][0]["key"] == key
    assert "ptid" in first["rejected_files"][0]["reason"]
    events.land([file_of(good, key)])
    result = events.run()
    stats = events.stats(result)
    assert stats["files_read"] == 1
    assert stats["events_failed"] == 0
    assert stats["new_events_processed"] == 1
    assert set(events.checkpoint()["ptid"]) == {"P1", "P2"}
    assert events.ledger()[key][1] == "valid"


def test_corrupt_checkpoint_fails_loudly_and_is_left_untouched(events: Events) -> None:
    events.land([file_of(event("P1", "2024-03-01T10:00:00Z"))])
    assert events.run().success
    ledger_before = events.get(LEDGER)
    events.s3.put_object(Bucket=events.state, Key=CHECKPOINT, Body=b"PAR1 not really PAR1")
    events.land([file_of(event("P2", "2024-03-02T10:00:00Z"))])
    result = events.run()
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "corrupt" in failure.message or "corrupt" in str(failure.event_specific_data)
    assert events.get(CHECKPOINT) == b"PAR1 not really PAR1"
    assert events.get(LEDGER) == ledger_before


def test_a_run_with_nothing_new_writes_nothing(events: Events) -> None:
    events.land([file_of(event("P1", "2024-03-01T10:00:00Z"))])
    assert events.run().success
    before = (events.head(CHECKPOINT)["LastModified"], events.head(LEDGER)["LastModified"])
    time.sleep(1.1)  # LastModified has one-second resolution
    result = events.run()
    assert result.success
    stats = events.stats(result)
    assert stats["files_read"] == 0
    assert stats["checkpoint_written"] is False
    assert stats["total_events"] == 1
    assert (events.head(CHECKPOINT)["LastModified"], events.head(LEDGER)["LastModified"]) == before
    assert [key for key in events.gets if key.startswith("logs/")] == []
    assert all(events.checks(result).values())


def test_crash_between_checkpoint_and_ledger_write_recovers(events: Events) -> None:
    events.land([file_of(event(f"P{i}", f"2024-03-0{i}T10:00:00Z")) for i in range(1, 4)])
    assert events.run().success
    events.land([file_of(event(f"Q{i}", f"2024-01-0{i}T10:00:00Z")) for i in range(1, 4)])
    crashed = events.run(crash=True)
    assert not crashed.success
    assert len(events.checkpoint()) == 6  # the checkpoint was committed ...
    assert len(events.ledger()) == 3  # ... the ledger was not
    result = events.run()
    assert result.success
    stats = events.stats(result)
    assert stats["files_read"] == 3  # re-processed, not skipped
    assert stats["new_events_processed"] == 0
    assert stats["total_events"] == 6
    frame = events.checkpoint()
    assert not frame.duplicated().any()
    assert len(events.ledger()) == 6
    assert all(events.checks(result).values())


def test_analytics_read_the_checkpoint_the_resource_names(events: Events) -> None:
    """Repointed at another checkpoint, the analytics read it, not where the last run wrote."""
    events.land([file_of(event("P1", "2024-03-01T10:00:00Z"))])
    assert events.run().success  # the instance now remembers a run that wrote CHECKPOINT
    moved = "moved/events.parquet"
    source = {"Bucket": events.state, "Key": CHECKPOINT}
    events.s3.copy_object(Bucket=events.state, Key=moved, CopySource=source)

    result = materialize(
        [visit_analytics],
        resources={
            "s3": ObjectStoreResource(region_name=REGION),
            "visits_storage": VisitsStorageResource(
                source_bucket=events.source, checkpoint_bucket=events.state, checkpoint_key=moved
            ),
        },
        instance=events.instance,
        raise_on_error=False,
    )

    assert result.success
    written = events.s3.list_objects_v2(Bucket=events.state, Prefix="moved/events.analytics/")
    assert {o["Key"] for o in written.get("Contents", [])} == {
        f"moved/events.analytics/{name}.parquet"
        for name in (
            "latest_visit_events",
            "monthly_not_pass_qc_by_center",
            "avg_days_to_qc_by_center",
        )
    }
    old = events.s3.list_objects_v2(Bucket=events.state, Prefix="state/events.analytics/")
    assert old["KeyCount"] == 0
