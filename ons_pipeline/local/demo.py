"""The quickstart: demo packets into the local stack, the sales job through Dagster, a report."""

from __future__ import annotations

import io
import os
import warnings
from typing import TYPE_CHECKING

import boto3
import pyarrow.parquet as pq
from dagster import BetaWarning, DagsterInstance

from ons_pipeline.resources import defaults
from ons_pipeline.sales.demo_data import generate_totesys, land_packets

if TYPE_CHECKING:
    from pathlib import Path

DEMO_ORDER_VERSIONS = 5_000


def dagster_home(project_dir: Path) -> Path:
    """The local instance directory `dagster dev` and the demo share."""
    home = project_dir / ".local" / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").touch()
    return home


def run_demo(stack_env: dict[str, str], project_dir: Path) -> int:
    """Run every asset group on the demo data through a real instance and print what it wrote.

    Sales is the main job (ToteSys packets to the star schema); energy and visits follow.
    """
    warnings.filterwarnings("ignore", category=BetaWarning)
    os.environ.update(stack_env)
    home = dagster_home(project_dir)
    os.environ["DAGSTER_HOME"] = str(home)
    s3 = boto3.client("s3")
    ingestion = stack_env.get("ONS_INGESTION_BUCKET", defaults.INGESTION_BUCKET)
    processed = stack_env.get("ONS_PROCESSED_BUCKET", defaults.PROCESSED_BUCKET)

    corpus = generate_totesys(DEMO_ORDER_VERSIONS)
    keys = land_packets(s3, ingestion, corpus.packets)
    print(
        f"Landed {len(keys)} ToteSys packets in s3://{ingestion} "
        f"({sum(corpus.rows_per_table.values()):,} lines, planted bad rows: "
        f"{ {k: v for k, v in corpus.bad_rows.items() if v} })"
    )

    from ons_pipeline.definitions import build_defs

    defs = build_defs()  # resources from the environment that now points at the stack

    job = defs.resolve_job_def("sales_star_schema_job")
    with DagsterInstance.get() as instance:
        result = job.execute_in_process(
            instance=instance,
            raise_on_error=False,
            run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
        )
    print(f"\nRun {result.run_id}: {'SUCCESS' if result.success else 'FAILURE'}")
    if not result.success:
        for event in result.all_events:
            if event.is_failure:
                print(event.message)
        return 1
    for check in result.get_asset_check_evaluations():
        status = "passed" if check.passed else "FAILED"
        print(f"  check {check.asset_key.to_user_string()}:{check.check_name} {status}")

    for event in result.get_asset_materialization_events():
        if event.asset_key.to_user_string() == "sales_quarantine":
            reasons = event.materialization.metadata["by_reason"].value
            print(f"  quarantined rows by reason: {reasons}")

    print(f"\nStar schema files in s3://{processed}:")
    listing = s3.list_objects_v2(Bucket=processed)
    for item in listing.get("Contents", []):
        key = item["Key"]
        # The bucket also holds sales state, quarantine and energy input: list the star only.
        if key.split("/", 1)[0] not in defaults.STAR_TABLES or not key.endswith(".parquet"):
            continue
        body = s3.get_object(Bucket=processed, Key=key)["Body"].read()
        rows = pq.read_metadata(io.BytesIO(body)).num_rows
        print(f"  s3://{processed}/{key}  ({rows:,} rows)")
    print("\n== Energy: processed Parquet into Timestream and InfluxDB ==")
    from ons_pipeline.energy.demo import DEMO_LAST_DAY, run_energy_demo

    energy_status = run_energy_demo(stack_env, last_day=DEMO_LAST_DAY)
    print("\n== Visits: event-log checkpoint and analytics ==")
    from ons_pipeline.visits.demo import run_visits_demo

    visits_status = run_visits_demo(stack_env)
    print(
        "\nOpen the UI on the same instance:\n"
        f"  DAGSTER_HOME={home} .venv/bin/dagster dev -m ons_pipeline.definitions\n"
        "  then browse http://127.0.0.1:3000 (the .env written by `ons-stack up` points it at "
        "the local stack).\nStop the stack with: .venv/bin/ons-stack down"
    )
    return max(energy_status, visits_status)
