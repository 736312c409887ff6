"""The run-failure sensor publishes to the alert topic and counts the failure in CloudWatch."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest
from dagster import (
    DagsterEventType,
    DagsterInstance,
    JobDefinition,
    build_run_status_sensor_context,
    job,
    op,
)
from dagster_aws.utils import ResourceWithBoto3Configuration

from ons_pipeline.platform.alerts import PLATFORM_NAMESPACE, run_failure_alert
from ons_pipeline.resources import AlertsResource, CloudWatchMetricsResource, build_client

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = pytest.mark.integration

REGION = "eu-west-2"
ERROR_TEXT = "the packet bucket is on fire"


def failing_job(name: str) -> JobDefinition:
    @op
    def explode() -> None:
        raise RuntimeError(ERROR_TEXT)

    @job(name=name, tags={"ons/group": "test"})
    def _job() -> None:
        explode()

    return _job


@pytest.fixture
def queue(stack_env: dict[str, str]) -> Iterator[tuple[Any, str]]:
    """A fresh SQS queue subscribed to the alert topic; (client, queue url)."""
    settings = ResourceWithBoto3Configuration(region_name=REGION)
    sqs = build_client(settings, "sqs")
    sns = build_client(settings, "sns")
    url = sqs.create_queue(QueueName=f"ons-alerts-{uuid.uuid4().hex[:12]}")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    subscription = sns.subscribe(
        TopicArn=stack_env["ONS_ALERT_TOPIC_ARN"],
        Protocol="sqs",
        Endpoint=arn,
        Attributes={"RawMessageDelivery": "false"},
        ReturnSubscriptionArn=True,
    )["SubscriptionArn"]
    yield sqs, url
    sns.unsubscribe(SubscriptionArn=subscription)
    sqs.delete_queue(QueueUrl=url)


def receive_alert(sqs: Any, url: str, run_id: str, deadline_s: float = 10.0) -> dict[str, Any]:
    """The SNS envelope whose message names the run (other tests may alert on the topic)."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        response = sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1, VisibilityTimeout=30
        )
        for message in response.get("Messages", []):
            envelope = json.loads(message["Body"])
            if json.loads(envelope["Message"]).get("run_id") == run_id:
                return envelope
    pytest.fail(f"no alert for run {run_id} arrived within {deadline_s}s")


@dataclass(frozen=True)
class Alerted:
    job_name: str
    run_id: str
    envelope: dict[str, Any]
    message: dict[str, Any]


@pytest.fixture
def alerted(queue: tuple[Any, str], stack_env: dict[str, str]) -> Alerted:
    """A job that fails, run through the sensor; the SNS envelope it published."""
    sqs, url = queue
    job_name = f"failing_job_{uuid.uuid4().hex[:8]}"
    instance = DagsterInstance.ephemeral()
    result = failing_job(job_name).execute_in_process(instance=instance, raise_on_error=False)
    assert not result.success
    run = instance.get_run_by_id(result.run_id)
    assert run is not None
    failure = next(
        event for event in result.all_events if event.event_type == DagsterEventType.RUN_FAILURE
    )

    context = build_run_status_sensor_context(
        sensor_name="run_failure_alert",
        dagster_event=failure,
        dagster_instance=instance,
        dagster_run=run,
        resources={
            "alerts": AlertsResource(
                topic_arn=stack_env["ONS_ALERT_TOPIC_ARN"], region_name=REGION
            ),
            "metrics": CloudWatchMetricsResource(region_name=REGION),
        },
    ).for_run_failure()
    assert run_failure_alert(context) is None

    envelope = receive_alert(sqs, url, run.run_id)
    return Alerted(job_name, run.run_id, envelope, json.loads(envelope["Message"]))


def test_failed_run_is_published_to_the_alert_topic(
    alerted: Alerted, stack_env: dict[str, str]
) -> None:
    assert alerted.envelope["TopicArn"] == stack_env["ONS_ALERT_TOPIC_ARN"]
    assert alerted.envelope["Subject"] == f"Dagster run failed: {alerted.job_name}"
    assert alerted.message["job"] == alerted.job_name
    assert alerted.message["run_id"] == alerted.run_id
    assert alerted.message["status"] == "FAILURE"
    assert alerted.message["tags"].get("ons/group") == "test"
    assert "explode" in (alerted.message["error"] or ""), "the alert must name the failed step"


def test_alert_carries_the_step_error(alerted: Alerted) -> None:
    assert ERROR_TEXT in json.dumps(alerted.message)
    assert "RuntimeError" in json.dumps(alerted.message)


def test_failed_run_is_counted_in_cloudwatch(alerted: Alerted, stack_env: dict[str, str]) -> None:
    cloudwatch = build_client(CloudWatchMetricsResource(region_name=REGION), "cloudwatch")
    listed = cloudwatch.list_metrics(
        Namespace=PLATFORM_NAMESPACE,
        MetricName="RunFailed",
        Dimensions=[{"Name": "Job", "Value": alerted.job_name}],
    )["Metrics"]
    assert [m["MetricName"] for m in listed] == ["RunFailed"]
    stats = cloudwatch.get_metric_statistics(
        Namespace=PLATFORM_NAMESPACE,
        MetricName="RunFailed",
        Dimensions=[{"Name": "Job", "Value": alerted.job_name}],
        StartTime=datetime.now(UTC) - timedelta(minutes=10),
        EndTime=datetime.now(UTC) + timedelta(minutes=1),
        Period=60,
        Statistics=["Sum"],
    )["Datapoints"]
    assert sum(point["Sum"] for point in stats) == 1


def test_successful_run_is_counted_with_its_duration(stack_env: dict[str, str]) -> None:
    from ons_pipeline.platform.alerts import run_success_metrics

    @op
    def fine() -> None:
        time.sleep(0.2)

    job_name = f"fine_job_{uuid.uuid4().hex[:8]}"

    @job(name=job_name)
    def _job() -> None:
        fine()

    instance = DagsterInstance.ephemeral()
    result = _job.execute_in_process(instance=instance)
    success = next(e for e in result.all_events if e.event_type == DagsterEventType.RUN_SUCCESS)
    context = build_run_status_sensor_context(
        sensor_name="run_success_metrics",
        dagster_event=success,
        dagster_instance=instance,
        dagster_run=instance.get_run_by_id(result.run_id),
        resources={"metrics": CloudWatchMetricsResource(region_name=REGION)},
    )
    run_success_metrics(context)

    cloudwatch = build_client(CloudWatchMetricsResource(region_name=REGION), "cloudwatch")
    dimensions = [{"Name": "Job", "Value": job_name}]
    window = {
        "StartTime": datetime.now(UTC) - timedelta(minutes=10),
        "EndTime": datetime.now(UTC) + timedelta(minutes=1),
        "Period": 60,
    }
    succeeded = cloudwatch.get_metric_statistics(
        Namespace=PLATFORM_NAMESPACE,
        MetricName="RunSucceeded",
        Dimensions=dimensions,
        Statistics=["Sum"],
        **window,
    )["Datapoints"]
    assert sum(p["Sum"] for p in succeeded) == 1
    duration = cloudwatch.get_metric_statistics(
        Namespace=PLATFORM_NAMESPACE,
        MetricName="RunDuration",
        Dimensions=dimensions,
        Statistics=["Maximum"],
        **window,
    )["Datapoints"]
    assert duration and duration[0]["Maximum"] >= 0.2
