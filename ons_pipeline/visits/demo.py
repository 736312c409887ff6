"""The visits quickstart: land events, checkpoint twice (late arrivals in between), report."""

from __future__ import annotations

import io
import os
import sys
import warnings
from typing import TYPE_CHECKING, Any

import boto3
import pandas as pd
from dagster import BetaWarning, DagsterInstance

from ons_pipeline.resources import defaults
from ons_pipeline.visits.demo_data import generate_corpus, land_files

if TYPE_CHECKING:
    from dagster import ExecuteInProcessResult

DEMO_VISITS = 400
STATS = (
    "new_events_processed",
    "total_events",
    "events_failed",
    "last_processed_timestamp",
    "execution_time_ms",
    "checkpoint_size_bytes",
    "objects_seen",
    "files_read",
    "duplicate_events",
    "checkpoint_written",
    "notifications_deleted",
    "notifications_returned",
)


def _out(text: str = "") -> None:
    sys.stdout.write(text + "\n")


def _frame_text(frame: pd.DataFrame, limit: int = 12) -> str:
    shown = frame.head(limit).to_string(index=False)
    more = f"\n    ... {len(frame) - limit} more rows" if len(frame) > limit else ""
    return "    " + shown.replace("\n", "\n    ") + more


def _report(result: ExecuteInProcessResult) -> dict[str, Any]:
    metadata: dict[str, Any] = {}
    for event in result.get_asset_materialization_events():
        if event.asset_key.to_user_string() == "visit_events_checkpoint":
            metadata = {k: v.value for k, v in event.materialization.metadata.items()}
    for name in STATS:
        _out(f"  {name}: {metadata.get(name)}")
    for rejected in metadata.get("rejected_files") or []:
        _out(f"  rejected {rejected['key']}: {rejected['reason']}")
    for check in result.get_asset_check_evaluations():
        _out(f"  check {check.check_name}: {'passed' if check.passed else 'FAILED'}")
    return metadata


def run_visits_demo(stack_env: dict[str, str]) -> int:
    """Land a demo event corpus, run the visits job twice, print the stats and the analytics."""
    warnings.filterwarnings("ignore", category=BetaWarning)
    os.environ.update(stack_env)
    s3 = boto3.client("s3")
    bucket = stack_env.get("ONS_EVENTS_BUCKET", defaults.EVENTS_BUCKET)
    corpus = generate_corpus(DEMO_VISITS)

    from ons_pipeline.definitions import build_defs

    defs = build_defs()  # resources from the environment that now points at the stack
    from ons_pipeline.visits.checkpoint import checkpoint_from_parquet
    from ons_pipeline.visits.storage import Locations, read_object

    job = defs.resolve_job_def("visits_checkpoint_job")
    quiet = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}
    instance = DagsterInstance.get() if os.environ.get("DAGSTER_HOME") else None
    instance = instance or DagsterInstance.ephemeral()
    metadata: dict[str, Any] = {}
    waves = (("first run", corpus.initial), ("second run, after late arrivals", corpus.late))
    with instance:
        for label, files in waves:
            land_files(s3, bucket, files)
            _out(f"\nLanded {len(files)} visit-event files in s3://{bucket}/logs/; {label}:")
            result = job.execute_in_process(
                instance=instance, raise_on_error=False, run_config=quiet
            )
            if not result.success:
                for event in result.all_events:
                    if event.is_failure:
                        _out(event.message or "")
                return 1
            metadata = _report(result)

    locations = Locations(
        source_bucket=bucket,
        prefix="logs/",
        checkpoint_bucket=str(metadata["checkpoint_bucket"]),
        checkpoint_key=str(metadata["checkpoint_key"]),
    )
    stored = read_object(s3, locations.checkpoint_bucket, locations.checkpoint_key)
    if stored is None:
        _out(f"No checkpoint at {locations.checkpoint_uri}")
        return 1
    events = checkpoint_from_parquet(stored[0])
    _out(f"\nCheckpoint {locations.checkpoint_uri}: {len(events)} events")
    for name, title in (
        ("latest_visit_events", "Latest event per (ptid, visit_date, visit_number)"),
        ("monthly_not_pass_qc_by_center", "Not-pass-QC events per center and visit month"),
        ("avg_days_to_qc_by_center", "Average days from visit date to QC event, per center"),
    ):
        key = locations.analytics_key(name)
        body = read_object(s3, locations.checkpoint_bucket, key)
        if body is None:
            _out(f"Missing analytics file s3://{locations.checkpoint_bucket}/{key}")
            return 1
        frame = pd.read_parquet(io.BytesIO(body[0]))
        _out(f"\n{title} ({len(frame)} rows, s3://{locations.checkpoint_bucket}/{key}):")
        _out(_frame_text(frame, limit=12 if name == "latest_visit_events" else 40))
    return 0
