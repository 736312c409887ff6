"""Every CloudWatch alarm and dashboard metric in Terraform watches a series the code puts.

A CloudWatch alarm matches one series exactly: namespace, metric name and the full set of
dimensions (an alarm without dimensions never sees a point put with a `Job` dimension). The
evidence is what the code really sent: each asset group and both run sensors run here against
the local stack, and moto's server records every PutMetricData, listed back with ListMetrics.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import boto3
import hcl2
import pandas as pd
import pytest
from dagster import (
    DagsterEventType,
    DagsterInstance,
    build_run_status_sensor_context,
    job,
    materialize,
    op,
)

from ons_pipeline.local.demo.sales_data import generate_totesys, land_packets
from ons_pipeline.local.demo.visits_data import invalid_files, land_files, synthetic_files
from ons_pipeline.platform.alerts import run_failure_alert, run_success_metrics
from ons_pipeline.resources import (
    AlertsResource,
    CloudWatchMetricsResource,
    ObjectStoreResource,
    build_client,
)
from ons_pipeline.resources.storage import VisitsStorageResource
from ons_pipeline.visits.assets import visit_events_checkpoint
from ons_pipeline_tests.integration.energy.test_energy_load import Lake as EnergyLake
from ons_pipeline_tests.integration.platform.test_run_failure_alert import failing_job
from ons_pipeline_tests.integration.sales.test_sales_job import Lake as SalesLake

pytestmark = pytest.mark.integration

REGION = "eu-west-2"
TERRAFORM = Path(__file__).resolve().parents[3] / "deploy" / "terraform"

Series = tuple[str, str, frozenset[tuple[str, str]]]  # namespace, metric, dimensions


def _blocks(kind: str) -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in sorted(TERRAFORM.glob("*.tf")):
        with path.open() as handle:
            parsed = hcl2.load(handle)
        for block in parsed.get("resource", []):
            for name, body in block.get(kind, {}).items():
                found.append((name, body))
    return found


def _locals() -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for path in sorted(TERRAFORM.glob("*.tf")):
        with path.open() as handle:
            for block in hcl2.load(handle).get("locals", []):
                merged.update(block)
    return merged


def watched_series() -> dict[str, Series]:
    """Alarm (or dashboard widget) name -> the series it watches, from the .tf files."""
    local = _locals()
    watched: dict[str, Series] = {}
    for name, alarm in _blocks("aws_cloudwatch_metric_alarm"):
        if alarm.get("for_each") == "${local.custom_alarms}":
            for key, item in local["custom_alarms"].items():
                dims = frozenset((item.get("dimensions") or {}).items())
                watched[f"{name}[{key}]"] = (item["namespace"], item["metric"], dims)
        elif "metric_query" in alarm:
            for query in alarm["metric_query"]:
                for metric in query.get("metric", []):
                    dims = frozenset((metric.get("dimensions") or {}).items())
                    watched[f"{name}.{query['id']}"] = (
                        metric["namespace"],
                        metric["metric_name"],
                        dims,
                    )
        else:
            dims = frozenset((alarm.get("dimensions") or {}).items())
            watched[name] = (alarm["namespace"], alarm["metric_name"], dims)
    for widget, body in local["dashboard_widgets"].items():
        for entry in body["metrics"]:
            namespace, metric, *pairs = entry
            dims = frozenset(zip(pairs[::2], pairs[1::2], strict=True))
            watched[f"dashboard.{widget}.{metric}"] = (namespace, metric, dims)
    return watched


def published_series() -> set[Series]:
    """Every series PutMetricData created on the moto server (ListMetrics, all pages)."""
    cloudwatch = build_client(CloudWatchMetricsResource(region_name=REGION), "cloudwatch")
    series: set[Series] = set()
    for page in cloudwatch.get_paginator("list_metrics").paginate():
        for metric in page["Metrics"]:
            dims = frozenset((d["Name"], d["Value"]) for d in metric.get("Dimensions", []))
            series.add((metric["Namespace"], metric["MetricName"], dims))
    return series


def _run_sensors(stack_env: dict[str, str]) -> None:
    """One failed and one successful run through the platform's run sensors."""
    metrics = CloudWatchMetricsResource(region_name=REGION)
    alerts = AlertsResource(topic_arn=stack_env["ONS_ALERT_TOPIC_ARN"], region_name=REGION)
    instance = DagsterInstance.ephemeral()
    failed = failing_job(f"contract_failing_{uuid.uuid4().hex[:8]}").execute_in_process(
        instance=instance, raise_on_error=False
    )
    event = next(e for e in failed.all_events if e.event_type == DagsterEventType.RUN_FAILURE)
    run_failure_alert(
        build_run_status_sensor_context(
            sensor_name="run_failure_alert",
            dagster_event=event,
            dagster_instance=instance,
            dagster_run=instance.get_run_by_id(failed.run_id),
            resources={"alerts": alerts, "metrics": metrics},
        ).for_run_failure()
    )

    @op
    def fine() -> None:
        pass

    @job(name=f"contract_fine_{uuid.uuid4().hex[:8]}")
    def fine_job() -> None:
        fine()

    ok = fine_job.execute_in_process(instance=instance)
    event = next(e for e in ok.all_events if e.event_type == DagsterEventType.RUN_SUCCESS)
    run_success_metrics(
        build_run_status_sensor_context(
            sensor_name="run_success_metrics",
            dagster_event=event,
            dagster_instance=instance,
            dagster_run=instance.get_run_by_id(ok.run_id),
            resources={"metrics": metrics},
        )
    )


def _energy_with_a_rejected_row(stack_env: dict[str, str]) -> None:
    lake = EnergyLake(stack_env)
    frame = pd.DataFrame(
        {
            "timestamp": ["2026-11-21T00:00:00Z", "2026-11-21T01:00:00Z"],
            "region": ["SE", "x" * 3000],  # over the tag limit: rejected as invalid_tag
            "energy_source": ["hydro", "hydro"],
            "value": [1.0, 2.0],
            "unit": ["MW", "MW"],
        }
    )
    key = lake.put("dataset=generation/year=2026/month=11/contract.parquet", frame)
    assert lake.run(key).success


def _sales() -> None:
    lake = SalesLake()
    corpus = generate_totesys(60, packets_per_table=1)
    land_packets(lake.s3, lake.ingestion, corpus.packets)
    assert lake.run().success


def _visits() -> None:
    """A checkpoint run in buckets of its own (the demo's buckets belong to the demo test)."""
    s3 = boto3.client("s3", region_name=REGION)
    suffix = uuid.uuid4().hex[:10]
    source, checkpoint = f"events-{suffix}", f"checkpoints-{suffix}"
    for bucket in (source, checkpoint):
        s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
    land_files(s3, source, [*synthetic_files(5), *invalid_files()])
    result = materialize(
        [visit_events_checkpoint],
        resources={
            "s3": ObjectStoreResource(region_name=REGION),
            "metrics": CloudWatchMetricsResource(region_name=REGION),
            "visits_storage": VisitsStorageResource(
                source_bucket=source, checkpoint_bucket=checkpoint
            ),
        },
        instance=DagsterInstance.ephemeral(),
    )
    assert result.success


@pytest.fixture
def published(stack_env: dict[str, str]) -> set[Series]:
    _run_sensors(stack_env)
    _energy_with_a_rejected_row(stack_env)
    _sales()
    _visits()
    return published_series()


def test_terraform_lists_the_alarms_the_issue_names() -> None:
    watched = watched_series()
    assert ("ONS/Pipeline", "RunFailed", frozenset()) in watched.values()
    assert ("ONS/Visits", "EventsFailed", frozenset()) in watched.values()
    assert ("ONS/Visits", "NewEventsProcessed", frozenset()) in watched.values()
    assert {name.split(".")[1] for name in watched if name.startswith("dashboard.")} >= {
        "sales",
        "energy",
        "visits",
        "launcher",
    }


def test_every_alarm_watches_a_series_the_code_puts(published: set[Series]) -> None:
    watched = watched_series()
    # AWS publishes its own namespaces (Lambda, Timestream); ours must come from the code.
    ours = {name: series for name, series in watched.items() if not series[0].startswith("AWS/")}
    assert ours
    missing = {name: series for name, series in ours.items() if series not in published}
    near = {
        name: sorted(dict(dims) for ns, metric, dims in published if (ns, metric) == series[:2])
        for name, series in missing.items()
    }
    assert not missing, f"watched but never put: {missing}; put with dimensions: {near}"
