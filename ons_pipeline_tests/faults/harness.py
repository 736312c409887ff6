"""What the fault suite shares: the runs (in this process or a child that can be killed),
fresh state on the local stack, and the exactly-once comparison of sales outputs."""

from __future__ import annotations

import copy
import io
import json
import multiprocessing
import os
import uuid
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

import boto3
import pandas as pd
import pyarrow.parquet as pq
from dagster import AssetsDefinition, DagsterInstance, materialize

from ons_pipeline.local.demo.sales_data import (
    Packet,
    generate_totesys,
    land_packets,
    later_versions,
)
from ons_pipeline.local.demo.visits_data import (
    EventFile,
    generate_corpus,
    land_files,
    synthetic_files,
)
from ons_pipeline.resources import (
    CloudWatchMetricsResource,
    NotificationQueueResource,
    ObjectStoreResource,
    ParameterStoreResource,
    SalesStorageResource,
)
from ons_pipeline.resources.storage import VisitsStorageResource
from ons_pipeline.sales.assets import sales_star_schema, totesys_raw
from ons_pipeline.sales.schema import STAR_KEYS
from ons_pipeline.sales.transform import STAR_TABLES
from ons_pipeline.visits.assets import visit_events_checkpoint
from ons_pipeline.visits.checkpoint import checkpoint_from_parquet, ledger_from_parquet

if TYPE_CHECKING:
    from pathlib import Path

REGION = "eu-west-2"
NO_RETRIES = {"execution": {"config": {"retries": {"disabled": {}}}}}


def without_retries(assets_def: AssetsDefinition) -> AssetsDefinition:
    """The asset with its step RetryPolicy removed: a failing attempt is the run's outcome.

    `materialize` always enables retries, and the production policy waits 30 s; the suite
    wants each attempt's result at once (the re-run it makes is the retry).
    """
    attributes = assets_def.get_attributes_dict()
    node = copy.copy(attributes["node_def"])
    node._retry_policy = None
    return AssetsDefinition.dagster_internal_init(**{**attributes, "node_def": node})


SALES_ASSETS = [without_retries(totesys_raw), without_retries(sales_star_schema)]
VISITS_ASSETS = [without_retries(visit_events_checkpoint)]
CHILD_TIMEOUT_S = 240


@dataclass(frozen=True)
class SalesState:
    """Where one sales test keeps its state: fresh buckets and a Parameter Store prefix."""

    ingestion: str
    processed: str
    ssm_prefix: str

    @classmethod
    def create(cls) -> SalesState:
        suffix = uuid.uuid4().hex[:10]
        state = cls(f"ingest-{suffix}", f"processed-{suffix}", f"/faults-{suffix}")
        s3 = boto3.client("s3", region_name=REGION)
        for bucket in (state.ingestion, state.processed):
            s3.create_bucket(
                Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION}
            )
        return state

    def clone(self) -> SalesState:
        """A copy of this state (objects and parameters) under fresh names."""
        copy = SalesState.create()
        s3 = boto3.client("s3", region_name=REGION)
        for source, target in ((self.ingestion, copy.ingestion), (self.processed, copy.processed)):
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=source):
                for item in page.get("Contents", []):
                    s3.copy_object(
                        Bucket=target,
                        Key=item["Key"],
                        CopySource={"Bucket": source, "Key": item["Key"]},
                    )
        ssm = boto3.client("ssm", region_name=REGION)
        pages = ssm.get_paginator("get_parameters_by_path").paginate(
            Path=self.ssm_prefix, Recursive=True
        )
        for page in pages:
            for parameter in page["Parameters"]:
                ssm.put_parameter(
                    Name=copy.ssm_prefix + parameter["Name"][len(self.ssm_prefix) :],
                    Value=parameter["Value"],
                    Type="String",
                )
        return copy


@dataclass(frozen=True)
class VisitsState:
    """Fresh event and checkpoint buckets, and a queue the event bucket notifies."""

    source: str
    state: str
    queue: str
    prefix: str = "logs/"
    checkpoint_key: str = "state/events.parquet"
    visibility_s: int = 2  # a killed run's messages come back quickly

    @classmethod
    def create(cls) -> VisitsState:
        suffix = uuid.uuid4().hex[:10]
        s3 = boto3.client("s3", region_name=REGION)
        sqs = boto3.client("sqs", region_name=REGION)
        source, state = f"events-{suffix}", f"checkpoints-{suffix}"
        for bucket in (source, state):
            s3.create_bucket(
                Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION}
            )
        queue = sqs.create_queue(QueueName=f"created-{suffix}")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])
        s3.put_bucket_notification_configuration(
            Bucket=source,
            NotificationConfiguration={
                "QueueConfigurations": [
                    {"QueueArn": arn["Attributes"]["QueueArn"], "Events": ["s3:ObjectCreated:*"]}
                ]
            },
        )
        return cls(source, state, queue)

    def land(self, files: list[EventFile]) -> None:
        land_files(boto3.client("s3", region_name=REGION), self.source, files, workers=4)

    def checkpoint(self) -> pd.DataFrame:
        s3 = boto3.client("s3", region_name=REGION)
        frame = checkpoint_from_parquet(_read(s3, self.state, self.checkpoint_key)).astype(str)
        return frame.sort_values(list(frame.columns)).reset_index(drop=True)

    def ledger_keys(self) -> set[str]:
        s3 = boto3.client("s3", region_name=REGION)
        key = self.checkpoint_key.replace(".parquet", ".ledger.parquet")
        return set(ledger_from_parquet(_read(s3, self.state, key)))

    def queued(self) -> int:
        """Messages on the queue, visible or not."""
        attributes = boto3.client("sqs", region_name=REGION).get_queue_attributes(
            QueueUrl=self.queue,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return sum(int(value) for value in attributes.values())


def _aws(endpoint: str | None) -> dict[str, Any]:
    """Client settings; through a fault proxy, few quick attempts (botocore's own retries)."""
    if endpoint is None:
        return {"region_name": REGION}
    return {"region_name": REGION, "endpoint_url": endpoint, "max_attempts": 4}


def run_sales(state: SalesState, endpoint: str | None = None) -> Any:
    """One uninterrupted sales run (everything new since Parameter Store's last packets)."""
    return materialize(
        SALES_ASSETS,
        resources=sales_resources(state, endpoint),
        instance=DagsterInstance.ephemeral(),
        run_config=NO_RETRIES,
        raise_on_error=False,
    )


def sales_resources(state: SalesState, endpoint: str | None = None) -> dict[str, Any]:
    aws = _aws(endpoint)
    return {
        "s3": ObjectStoreResource(**aws),
        "ssm": ParameterStoreResource(**aws),
        "metrics": CloudWatchMetricsResource(region_name=REGION, enabled=False),
        "sales_storage": SalesStorageResource(
            ingestion_bucket=state.ingestion,
            processed_bucket=state.processed,
            ssm_prefix=state.ssm_prefix,
        ),
    }


def run_visits(state: VisitsState, *, reconcile: bool = False, endpoint: str | None = None) -> Any:
    aws = _aws(endpoint)
    return materialize(
        VISITS_ASSETS,
        resources={
            "s3": ObjectStoreResource(**aws),
            "sqs": NotificationQueueResource(**aws),
            "metrics": CloudWatchMetricsResource(region_name=REGION, enabled=False),
            "visits_storage": VisitsStorageResource(
                source_bucket=state.source,
                prefix=state.prefix,
                checkpoint_bucket=state.state,
                checkpoint_key=state.checkpoint_key,
                notification_queue_url=state.queue,
                notification_visibility_seconds=state.visibility_s,
            ),
        },
        instance=DagsterInstance.ephemeral(),
        run_config={
            **NO_RETRIES,
            "ops": {"visit_events_checkpoint": {"config": {"reconcile": reconcile}}},
        },
        raise_on_error=False,
    )


def failure_messages(result: Any) -> list[str]:
    return [
        str(event.event_specific_data.error.message)
        for event in result.all_events
        if event.is_step_failure and event.event_specific_data.error
    ]


def _child_main(group: str, state: SalesState | VisitsState, env: dict[str, str], out: Any) -> None:
    os.environ.update(env)
    result = run_sales(state) if group == "sales" else run_visits(state)  # type: ignore[arg-type]
    out.send({"success": result.success, "failures": failure_messages(result)})


def start_child(
    group: str, state: SalesState | VisitsState, env: dict[str, str] | None = None
) -> tuple[multiprocessing.process.BaseProcess, Any]:
    """The same run in a forked worker process, so SIGKILL ends only the worker.

    Forked rather than spawned: the child starts with everything imported, which keeps the
    suite inside its time budget (a spawned interpreter spends seconds importing Dagster).
    """
    receiver, sender = multiprocessing.get_context("fork").Pipe(duplex=False)
    child = multiprocessing.get_context("fork").Process(
        target=_child_main, args=(group, state, env or {}, sender), daemon=True
    )
    child.start()
    sender.close()
    return child, receiver


def finish_child(started: tuple[Any, Any]) -> tuple[int, dict[str, Any]]:
    """The worker's exit code (-9: killed) and what it reported if it finished."""
    child, receiver = started
    child.join(CHILD_TIMEOUT_S)
    if child.is_alive():
        child.kill()
        raise TimeoutError(f"worker still running after {CHILD_TIMEOUT_S} s")
    try:
        report = receiver.recv() if receiver.poll() else {}
    except EOFError:  # killed before it could report
        report = {}
    return child.exitcode, report


def run_child(group: str, state: SalesState | VisitsState, **env: str) -> tuple[int, dict]:
    return finish_child(start_child(group, state, env))


def kill_at(point: str) -> dict[str, str]:
    return {"ONS_FAULT_KILL_AT": point}


def pause_at(point: str, release: Path) -> dict[str, str]:
    return {"ONS_FAULT_PAUSE_AT": point, "ONS_FAULT_PAUSE_FILE": str(release)}


# The sales outputs, read back and compared.


SALES_COMMIT_POINTS = [
    "sales.raw.after_part",
    "sales.raw.after_history",
    "sales.before_intent",
    "sales.after_intent",
    "sales.after_first_star_file",
    "sales.before_commit",
    "sales.after_commit",
    "sales.after_parameters",
]


def race_freely(state: SalesState) -> None:
    """Two sales runs at once: one at least succeeds, a loser fails naming the other run."""
    racers = [start_child("sales", state), start_child("sales", state)]
    reports = [finish_child(racer) for racer in racers]
    assert any(report["success"] for _, report in reports), reports
    for _, report in reports:
        for message in report["failures"]:
            assert "Another run" in message, message


def _read(s3: Any, bucket: str, key: str) -> bytes:
    return s3.get_object(Bucket=bucket, Key=key)["Body"].read()


def output_files(state: SalesState) -> dict[str, bytes]:
    """Every published file in the processed bucket (star tables and star quarantine)."""
    s3 = boto3.client("s3", region_name=REGION)
    keys = [
        item["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=state.processed)
        for item in page.get("Contents", [])
        if not item["Key"].startswith(("_state/", "quarantine/sales/raw/"))
    ]
    return {key: _read(s3, state.processed, key) for key in keys}


def sequences_of(files: dict[str, bytes], table: str) -> list[int]:
    prefix = f"{table}/{table}_packet_"
    return sorted(
        int(key[len(prefix) :].split("_", 1)[0]) for key in files if key.startswith(prefix)
    )


def table_rows(files: dict[str, bytes], table: str) -> pd.DataFrame:
    """Every row of every file of the table, in sequence order."""
    prefix = f"{table}/"
    frames = [
        pq.read_table(io.BytesIO(body)).to_pandas().astype(str)
        for key, body in sorted(files.items())
        if key.startswith(prefix)
    ]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def latest_state(rows: pd.DataFrame, table: str) -> pd.DataFrame:
    """Each key's row from the newest file: what a reader of the files ends up with."""
    if rows.empty:
        return rows
    keys = list(STAR_KEYS[table])
    latest = rows.drop_duplicates(subset=keys, keep="last")
    return latest.sort_values(list(latest.columns)).reset_index(drop=True)


def assert_exactly_once(state: SalesState, baseline: SalesState) -> None:
    """No duplicate row, no reused or skipped sequence, nothing lost, SSM equals manifest."""
    files, expected = output_files(state), output_files(baseline)
    for table in STAR_TABLES:
        sequences = sequences_of(files, table)
        assert sequences == list(range(1, len(sequences) + 1)), (table, sequences)
        rows = table_rows(files, table)
        duplicated = int(rows.duplicated().sum()) if not rows.empty else 0
        assert duplicated == 0, f"{duplicated} duplicate {table} rows across its files"
        pd.testing.assert_frame_equal(
            latest_state(rows, table), latest_state(table_rows(expected, table), table)
        )
    s3 = boto3.client("s3", region_name=REGION)
    ssm = boto3.client("ssm", region_name=REGION)
    manifest = json.loads(_read(s3, state.processed, "_state/sales/manifest.json"))
    assert manifest.get("pending") is None
    for table in STAR_TABLES:
        name = f"{state.ssm_prefix}/sales/output_sequence/{table}"
        stored = int(ssm.get_parameter(Name=name)["Parameter"]["Value"])
        assert stored == manifest["output_sequence"][table] == max(sequences_of(files, table))


@cache
def batches() -> list[list[Packet]]:
    """Three deliveries: packet 1, 2 and 3 of every table (later ones update earlier rows)."""
    corpus = generate_totesys(240, packets_per_table=3, seed=11)
    return [[p for p in corpus.packets if p.packet_id == n] for n in (1, 2, 3)]


@cache
def order_updates() -> Packet:
    """Sales_order packet 4: later versions of 40 orders, one of them quarantined.

    Delivered after the three batches it only brings newer order versions: the run appends.
    """
    first = next(p for p in batches()[0] if p.table == "sales_order")
    return later_versions("sales_order", first.body, 40, 4, bad={"units_sold": -1})


def forget_raw_state(state: SalesState) -> None:
    """Make the next run rebuild in full, as after a manifest from before the raw state."""
    s3 = boto3.client("s3", region_name=REGION)
    manifest = json.loads(_read(s3, state.processed, "_state/sales/manifest.json"))
    manifest.pop("raw")
    s3.put_object(
        Bucket=state.processed, Key="_state/sales/manifest.json", Body=json.dumps(manifest)
    )


def land(state: SalesState, packets: list[Packet]) -> None:
    land_packets(boto3.client("s3", region_name=REGION), state.ingestion, packets)


@cache
def deliveries() -> tuple[list[EventFile], list[EventFile], list[EventFile]]:
    """Files before the first run, announced before the killed run, and landing after it."""
    corpus = generate_corpus(12, seed=8, late_fraction=0.5)
    return corpus.initial, corpus.late, synthetic_files(5, start=700)
