"""Run-failure alerting: after the last retry, tell the administrators (seed 002)."""

from __future__ import annotations

from dagster import (
    DagsterInstance,
    DagsterRunStatus,
    DefaultSensorStatus,
    RunFailureSensorContext,
    RunStatusSensorContext,
    run_failure_sensor,
    run_status_sensor,
)

from ons_pipeline.resources import AlertsResource, CloudWatchMetricsResource, Metric
from ons_pipeline.resources.defaults import METRICS_NAMESPACE_PIPELINE as PLATFORM_NAMESPACE


@run_failure_sensor(
    name="run_failure_alert",
    monitor_all_code_locations=False,
    default_status=DefaultSensorStatus.RUNNING,
    description="Publishes a failed run to the SNS alert topic and counts it in CloudWatch.",
)
def run_failure_alert(
    context: RunFailureSensorContext,
    alerts: AlertsResource,
    metrics: CloudWatchMetricsResource,
) -> None:
    run = context.dagster_run
    failure = context.failure_event
    step_errors = [
        {
            "step": event.step_key,
            "error": event.event_specific_data.error.to_string()
            if event.event_specific_data and event.event_specific_data.error
            else event.message,
        }
        for event in context.get_step_failure_events()
    ]
    message = {
        "job": run.job_name,
        "run_id": run.run_id,
        "status": run.status.value,
        "error": failure.message if failure else None,
        "step_errors": step_errors,
        "tags": dict(run.tags),
    }
    alerts.publish(f"Dagster run failed: {run.job_name}", message)
    metrics.put(
        PLATFORM_NAMESPACE,
        [
            Metric("RunFailed", 1, dimensions={"Job": run.job_name}, total=True),
            *_duration(context.instance, run.run_id, run.job_name),
        ],
    )


@run_status_sensor(
    run_status=DagsterRunStatus.SUCCESS,
    name="run_success_metrics",
    monitor_all_code_locations=False,
    default_status=DefaultSensorStatus.RUNNING,
    description="Counts successful runs and their duration in CloudWatch.",
)
def run_success_metrics(
    context: RunStatusSensorContext, metrics: CloudWatchMetricsResource
) -> None:
    run = context.dagster_run
    metrics.put(
        PLATFORM_NAMESPACE,
        [
            Metric("RunSucceeded", 1, dimensions={"Job": run.job_name}, total=True),
            *_duration(context.instance, run.run_id, run.job_name),
        ],
    )


def _duration(instance: DagsterInstance, run_id: str, job_name: str) -> list[Metric]:
    stats = instance.get_run_stats(run_id)
    if not stats.start_time or not stats.end_time:
        return []
    seconds = stats.end_time - stats.start_time
    return [Metric("RunDuration", seconds, unit="Seconds", dimensions={"Job": job_name})]
