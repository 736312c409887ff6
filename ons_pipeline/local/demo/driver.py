"""The quickstart (`ons-stack demo`): every group on its demo data through Dagster, then a report.

Sales is the main job (ToteSys packets to the star schema); energy and visits follow. The
definitions are built from the stack's environment, passed in: nothing here reads or changes
`os.environ`, so what the demo does depends only on the stack it is given.
"""

from __future__ import annotations

import io
import sys
import warnings
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pandas as pd
import pyarrow.parquet as pq
from dagster import BetaWarning, DagsterInstance, materialize

from ons_pipeline.definitions import build_defs
from ons_pipeline.energy.assets import (
    INFLUXDB_KEY,
    TIMESTREAM_KEY,
    influxdb_points,
    timestream_records,
)
from ons_pipeline.energy.partitions import energy_objects_partitions, partition_key_for
from ons_pipeline.energy.schema import MEASUREMENT, detect_dataset
from ons_pipeline.local.demo.energy_data import demo_days, generate_demo_files
from ons_pipeline.local.demo.sales_data import generate_totesys, land_packets
from ons_pipeline.local.demo.visits_data import generate_corpus, land_files
from ons_pipeline.resources import default_resources, defaults
from ons_pipeline.resources.influxql import quote_identifier
from ons_pipeline.visits.checkpoint import checkpoint_from_parquet
from ons_pipeline.visits.storage import Locations

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

    from dagster import Definitions, ExecuteInProcessResult

    from ons_pipeline.resources import InfluxDBResource, ObjectStoreResource

DEMO_ORDER_VERSIONS = 5_000
DEMO_VISITS = 400
# The quickstart's fixed dates, so the partition keys README's CLI
# commands name exist after every `ons-stack demo`. Seven-year bucket retention keeps them.
DEMO_LAST_DAY = datetime(2026, 11, 21, tzinfo=UTC)
VISITS_STATS = (
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
VISITS_ANALYTICS = (
    ("latest_visit_events", "Latest event per (ptid, visit_date, visit_number)"),
    ("monthly_not_pass_qc_by_center", "Not-pass-QC events per center and visit month"),
    ("avg_days_to_qc_by_center", "Average days from visit date to QC event, per center"),
)


def _quiet(level: str) -> dict[str, Any]:
    """Run config that keeps Dagster's console to `level` and above: the report is the output."""
    return {"loggers": {"console": {"config": {"log_level": level}}}}


def _say(text: str = "") -> None:
    """The quickstart's console output."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def stack_resources(stack_env: Mapping[str, str]) -> dict[str, Any]:
    """The code location's resources, pointed at the stack `stack_env` describes."""
    return default_resources(stack_env)


def stack_definitions(stack_env: Mapping[str, str]) -> Definitions:
    """The code location as production builds it, with resources from the stack's environment."""
    return build_defs(resources=stack_resources(stack_env))


def dagster_home(project_dir: Path) -> Path:
    """The local instance directory `dagster dev` and the demo share."""
    home = project_dir / ".local" / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").touch()
    return home


def _failed(result: ExecuteInProcessResult) -> int:
    """Print a failed run's failure events; the demo's exit status."""
    for event in result.all_events:
        if event.is_failure:
            _say(event.message or "")
    return 1


def run_demo(stack_env: Mapping[str, str], project_dir: Path) -> int:
    """Run every asset group on the demo data through the project's instance; print the report.

    Returns:
        0 when every group succeeded, else 1.
    """
    warnings.filterwarnings("ignore", category=BetaWarning)
    home = dagster_home(project_dir)
    defs = stack_definitions(stack_env)
    with DagsterInstance.from_config(str(home)) as instance:
        if run_sales_demo(defs, instance):
            return 1
        _say("\n== Energy: processed Parquet into Timestream and InfluxDB ==")
        energy_status = run_energy_demo(defs, instance, last_day=DEMO_LAST_DAY)
        _say("\n== Visits: event-log checkpoint and analytics ==")
        visits_status = run_visits_demo(defs, instance)
    _say(
        "\nOpen the UI on the same instance:\n"
        f"  DAGSTER_HOME={home} .venv/bin/dagster dev -m ons_pipeline.definitions\n"
        "  then browse http://127.0.0.1:3000 (the .env written by `ons-stack up` points it at "
        "the local stack).\nStop the stack with: .venv/bin/ons-stack down"
    )
    return max(energy_status, visits_status)


def run_sales_demo(defs: Definitions, instance: DagsterInstance) -> int:
    """Land the demo ToteSys packets, run the sales job, print its checks and star files."""
    s3: ObjectStoreResource = defs.resources["s3"]
    storage = defs.resources["sales_storage"]
    corpus = generate_totesys(DEMO_ORDER_VERSIONS)
    keys = land_packets(s3.get_client(), storage.ingestion_bucket, corpus.packets)
    _say(
        f"Landed {len(keys)} ToteSys packets in s3://{storage.ingestion_bucket} "
        f"({sum(corpus.rows_per_table.values()):,} lines, planted bad rows: "
        f"{ {k: v for k, v in corpus.bad_rows.items() if v} })"
    )
    job = defs.resolve_job_def("sales_star_schema_job")
    result = job.execute_in_process(
        instance=instance, raise_on_error=False, run_config=_quiet("WARNING")
    )
    _say(f"\nRun {result.run_id}: {'SUCCESS' if result.success else 'FAILURE'}")
    if not result.success:
        return _failed(result)
    for check in result.get_asset_check_evaluations():
        status = "passed" if check.passed else "FAILED"
        _say(f"  check {check.asset_key.to_user_string()}:{check.check_name} {status}")
    for event in result.get_asset_materialization_events():
        if event.asset_key.to_user_string() == "sales_quarantine":
            reasons = event.materialization.metadata["by_reason"].value
            _say(f"  quarantined rows by reason: {reasons}")

    processed = storage.processed_bucket
    _say(f"\nStar schema files in s3://{processed}:")
    client = s3.get_client()
    for item in client.list_objects_v2(Bucket=processed).get("Contents", []):
        key = item["Key"]
        # The bucket also holds sales state, quarantine and energy input: list the star only.
        if key.split("/", 1)[0] not in defaults.STAR_TABLES or not key.endswith(".parquet"):
            continue
        body = client.get_object(Bucket=processed, Key=key)["Body"].read()
        rows = pq.read_metadata(io.BytesIO(body)).num_rows
        _say(f"  s3://{processed}/{key}  ({rows:,} rows)")
    return 0


def run_energy_demo(
    defs: Definitions,
    instance: DagsterInstance,
    days: int = 3,
    last_day: datetime | None = None,
) -> int:
    """Generate the demo files, load each into Timestream and InfluxDB, print what landed.

    The files cover the `days` days up to `last_day` (default: up to yesterday); each object
    key is added as an energy partition of `instance`, as the sensor would.

    Returns:
        0 when every load succeeded, else 1.
    """
    resources = defs.resources
    s3: ObjectStoreResource = resources["s3"]
    bucket = resources["energy_storage"].processed_bucket
    files = generate_demo_files(days, last_day=last_day)
    for key, body in files.items():
        s3.put_bytes(bucket, key, body, "application/vnd.apache.parquet")
    _say(
        f"Energy demo: wrote {len(files)} Parquet files to s3://{bucket}/dataset=*/; each "
        "file below is named by its energy partition key (dagster ... --partition '<key>')"
    )
    partition_keys = [partition_key_for(key) for key in files]
    instance.add_dynamic_partitions(energy_objects_partitions.name, partition_keys)
    totals = {"points": 0, "records": 0, "rejected": 0}
    failed = 0
    for key in partition_keys:
        result = materialize(
            [influxdb_points, timestream_records],
            partition_key=key,
            resources=resources,
            instance=instance,
            raise_on_error=False,
            run_config=_quiet("WARNING"),
        )
        if not result.success:
            failed += 1
            _say(f"  FAILED {key} (run {result.run_id})")
            continue
        by_key = {
            event.asset_key: event.step_materialization_data.materialization.metadata
            for event in result.get_asset_materialization_events()
        }
        points = by_key[INFLUXDB_KEY]["points_written"].value
        records = by_key[TIMESTREAM_KEY]["records_written"].value
        rejected = by_key[INFLUXDB_KEY]["rejected"].value
        totals["points"] += points
        totals["records"] += records
        totals["rejected"] += rejected
        _say(f"  {key}: {points} InfluxDB points, {records} Timestream records")
    first_day = min(demo_days(days, None if last_day is None else last_day + timedelta(days=1)))
    _report_influxdb(resources["influxdb"], files, first_day, days)
    _say(
        f"Energy demo: {totals['points']} points, {totals['records']} records, "
        f"{totals['rejected']} rows rejected, {failed} files failed"
    )
    return 1 if failed else 0


def _report_influxdb(
    influxdb: InfluxDBResource, files: Mapping[str, bytes], first_day: datetime, days: int
) -> None:
    """What InfluxDB holds over the demo window, per dataset and region (read back, not assumed)."""
    window_start = int(first_day.timestamp()) * 1_000_000_000
    window_stop = window_start + days * 86_400 * 1_000_000_000
    _say("InfluxDB now holds (InfluxQL COUNT over the demo window):")
    for dataset in sorted({detect_dataset(key) for key in files}):
        measurement = MEASUREMENT[dataset]
        series = influxdb.influxql(
            influxdb.bucket_for(measurement),
            f"SELECT COUNT(*) FROM {quote_identifier(measurement)} "  # nosec B608  # quoted name; values bound
            "WHERE time >= $start AND time < $stop GROUP BY region",
            params={"start": window_start, "stop": window_stop},
        )
        counts = {
            s["tags"]["region"]: max(v for v in s["values"][0][1:] if v is not None) for s in series
        }
        _say(f"  bucket {influxdb.bucket_for(measurement)}: {counts} points by region")


def _visits_report(result: ExecuteInProcessResult) -> dict[str, Any]:
    """Print a visits run's stats, rejected files and checks; its checkpoint metadata."""
    metadata: dict[str, Any] = {}
    for event in result.get_asset_materialization_events():
        if event.asset_key.to_user_string() == "visit_events_checkpoint":
            metadata = {k: v.value for k, v in event.materialization.metadata.items()}
    for name in VISITS_STATS:
        _say(f"  {name}: {metadata.get(name)}")
    for rejected in metadata.get("rejected_files") or []:
        _say(f"  rejected {rejected['key']}: {rejected['reason']}")
    for check in result.get_asset_check_evaluations():
        _say(f"  check {check.check_name}: {'passed' if check.passed else 'FAILED'}")
    return metadata


def _frame_text(frame: pd.DataFrame, limit: int = 12) -> str:
    shown = frame.head(limit).to_string(index=False)
    more = f"\n    ... {len(frame) - limit} more rows" if len(frame) > limit else ""
    return "    " + shown.replace("\n", "\n    ") + more


def run_visits_demo(defs: Definitions, instance: DagsterInstance) -> int:
    """Land a demo event corpus, run the visits job twice, print the stats and the analytics."""
    s3: ObjectStoreResource = defs.resources["s3"]
    bucket = defs.resources["visits_storage"].source_bucket
    corpus = generate_corpus(DEMO_VISITS)
    job = defs.resolve_job_def("visits_checkpoint_job")
    metadata: dict[str, Any] = {}
    waves = (("first run", corpus.initial), ("second run, after late arrivals", corpus.late))
    for label, files in waves:
        land_files(s3.get_client(), bucket, files)
        _say(f"\nLanded {len(files)} visit-event files in s3://{bucket}/logs/; {label}:")
        result = job.execute_in_process(
            instance=instance, raise_on_error=False, run_config=_quiet("ERROR")
        )
        if not result.success:
            return _failed(result)
        metadata = _visits_report(result)

    locations = Locations(
        source_bucket=bucket,
        prefix="logs/",
        checkpoint_bucket=str(metadata["checkpoint_bucket"]),
        checkpoint_key=str(metadata["checkpoint_key"]),
    )
    stored = s3.get_bytes(locations.checkpoint_bucket, locations.checkpoint_key)
    if stored is None:
        _say(f"No checkpoint at {locations.checkpoint_uri}")
        return 1
    events = checkpoint_from_parquet(stored)
    _say(f"\nCheckpoint {locations.checkpoint_uri}: {len(events)} events")
    for name, title in VISITS_ANALYTICS:
        key = locations.analytics_key(name)
        body = s3.get_bytes(locations.checkpoint_bucket, key)
        if body is None:
            _say(f"Missing analytics file s3://{locations.checkpoint_bucket}/{key}")
            return 1
        frame = pd.read_parquet(io.BytesIO(body))
        _say(f"\n{title} ({len(frame)} rows, s3://{locations.checkpoint_bucket}/{key}):")
        _say(_frame_text(frame, limit=12 if name == "latest_visit_events" else 40))
    return 0
