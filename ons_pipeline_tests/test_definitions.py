"""The code location loads, resolves, and keeps its names: a rename has to change this file."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from dagster import AssetKey, Definitions

from ons_pipeline.definitions import defs

ASSET_GROUPS = {
    "avg_days_to_qc_by_center": "visits",
    "dim_counterparty": "sales",
    "dim_currency": "sales",
    "dim_date": "sales",
    "dim_design": "sales",
    "dim_location": "sales",
    "dim_staff": "sales",
    "energy/influxdb_points": "energy",
    "energy/migration/consumption": "energy_migration",
    "energy/migration/generation": "energy_migration",
    "energy/migration/transmission": "energy_migration",
    "energy/timestream_records": "energy",
    "fact_sales_order": "sales",
    "latest_visit_events": "visits",
    "monthly_not_pass_qc_by_center": "visits",
    "sales_quarantine": "sales",
    "totesys/address": "sales",
    "totesys/counterparty": "sales",
    "totesys/currency": "sales",
    "totesys/department": "sales",
    "totesys/design": "sales",
    "totesys/sales_order": "sales",
    "totesys/staff": "sales",
    "visit_events_checkpoint": "visits",
}

ASSET_CHECKS = [
    ("dim_counterparty", "keys_unique"),
    ("dim_counterparty", "required_columns_not_null"),
    ("dim_currency", "keys_unique"),
    ("dim_currency", "required_columns_not_null"),
    ("dim_date", "keys_unique"),
    ("dim_date", "required_columns_not_null"),
    ("dim_design", "keys_unique"),
    ("dim_design", "required_columns_not_null"),
    ("dim_location", "keys_unique"),
    ("dim_location", "required_columns_not_null"),
    ("dim_staff", "keys_unique"),
    ("dim_staff", "required_columns_not_null"),
    ("energy/influxdb_points", "readback_matches"),
    ("energy/influxdb_points", "rows_accounted_for"),
    ("energy/migration/consumption", "blue_green_last_day"),
    ("energy/migration/consumption", "window_matches"),
    ("energy/migration/generation", "blue_green_last_day"),
    ("energy/migration/generation", "window_matches"),
    ("energy/migration/transmission", "blue_green_last_day"),
    ("energy/migration/transmission", "window_matches"),
    ("energy/timestream_records", "rows_accounted_for"),
    ("fact_sales_order", "fact_foreign_keys_exist"),
    ("fact_sales_order", "keys_unique"),
    ("fact_sales_order", "required_columns_not_null"),
    ("fact_sales_order", "rows_accounted_for"),
    ("visit_events_checkpoint", "files_accounted_for"),
    ("visit_events_checkpoint", "no_duplicate_events"),
    ("visit_events_checkpoint", "total_events_never_decreases"),
]

JOBS = [
    "energy_blue_green_job",
    "energy_load_job",
    "energy_migration_job",
    "sales_packets_job",
    "sales_star_schema_job",
    "visits_checkpoint_job",
]
JOB_GROUPS = {
    "energy_blue_green_job": "",  # checks only
    "energy_load_job": "energy",
    "energy_migration_job": "energy_migration",
    "sales_packets_job": "sales",
    "sales_star_schema_job": "sales",
    "visits_checkpoint_job": "visits",
}
SENSORS = [
    "energy_object_sensor",
    "run_failure_alert",
    "run_success_metrics",
    "totesys_packet_sensor",
    "visit_events_sensor",
]
SCHEDULES: list[str] = ["energy_blue_green_daily", "visits_checkpoint_hourly"]
RESOURCES = [
    "alerts",
    "energy_storage",
    "influxdb",
    "metrics",
    "s3",
    "sales_storage",
    "sqs",
    "ssm",
    "timestream",
    "visits_storage",
]

SENSOR_TARGETS = {
    "energy_object_sensor": "energy_load_job",
    "totesys_packet_sensor": "sales_star_schema_job",
    "visit_events_sensor": "visits_checkpoint_job",
}

REPO_ROOT = Path(__file__).resolve().parents[1]


def _user_string(key: AssetKey) -> str:
    return key.to_user_string()


def test_definitions_are_loadable() -> None:
    Definitions.validate_loadable(defs)


def test_asset_keys_and_groups_snapshot() -> None:
    graph = defs.resolve_asset_graph()
    keys = sorted(graph.get_all_asset_keys(), key=_user_string)
    assert [_user_string(key) for key in keys] == sorted(ASSET_GROUPS)
    assert {_user_string(key): graph.get(key).group_name for key in keys} == ASSET_GROUPS


def test_asset_check_snapshot() -> None:
    graph = defs.resolve_asset_graph()
    checks = sorted((_user_string(key.asset_key), key.name) for key in graph.asset_check_keys)
    assert checks == ASSET_CHECKS


def test_every_job_resolves() -> None:
    names = sorted(job.name for job in defs.resolve_all_job_defs() if not job.name.startswith("__"))
    assert names == JOBS
    for name in names:
        job = defs.resolve_job_def(name)
        assert job.name == name
        # Each job carries every asset of its group (a missing one would never materialise).
        group = JOB_GROUPS[name]
        selected = {_user_string(key) for key in job.asset_layer.executable_asset_keys}
        assert selected == {key for key, g in ASSET_GROUPS.items() if g == group}


def test_every_sensor_and_schedule_resolves() -> None:
    repo = defs.get_repository_def()
    assert sorted(sensor.name for sensor in repo.sensor_defs) == SENSORS
    assert sorted(schedule.name for schedule in repo.schedule_defs) == SCHEDULES
    for name in SENSORS:
        sensor = defs.resolve_sensor_def(name)
        assert sensor.name == name
        if name in SENSOR_TARGETS:
            assert sensor.job_name == SENSOR_TARGETS[name]
            assert repo.get_job(sensor.job_name).name == SENSOR_TARGETS[name]
    for name in SCHEDULES:
        assert defs.resolve_schedule_def(name).name == name


def test_resource_keys_snapshot() -> None:
    assert sorted(defs.resources or {}) == RESOURCES


def _subprocess_env(**overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ONS_")}
    env.pop("DAGSTER_HOME", None)
    env.update(overrides)
    return env


def test_import_does_no_network_io() -> None:
    # Port 9 (discard) has nothing listening: any client call at import would hang or fail.
    env = _subprocess_env(AWS_ENDPOINT_URL="http://127.0.0.1:9")
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-c", "import ons_pipeline.definitions"],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    assert elapsed < 20, f"import took {elapsed:.1f}s"


def test_dagster_definitions_validate() -> None:
    dagster = Path(sys.executable).with_name("dagster")
    result = subprocess.run(
        [str(dagster), "definitions", "validate", "-m", "ons_pipeline.definitions"],
        env=_subprocess_env(AWS_ENDPOINT_URL="http://127.0.0.1:9"),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# A process that loads the code location, builds every resource (as each step does) and
# resolves the jobs the demos run, with every warning an error.
_CLEAN_START = """
from ons_pipeline.definitions import build_defs
from ons_pipeline.resources import default_resources
defs = build_defs()
for resource in default_resources().values():
    type(resource)(**resource._get_non_default_public_field_values())
for name in ("sales_star_schema_job", "visits_checkpoint_job", "sales_packets_job"):
    defs.resolve_job_def(name)
"""


def test_a_clean_start_warns_nothing() -> None:
    """No BetaWarning from SSMResource at each process and step start, no job warnings."""
    result = subprocess.run(
        [sys.executable, "-W", "error", "-c", _CLEAN_START],
        env=_subprocess_env(AWS_ENDPOINT_URL="http://127.0.0.1:9"),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
