"""S3, SSM and SQS errors injected by a proxy on 127.0.0.1 in front of moto: transient errors
are retried, a failing attempt hands its work back, and the result is exact."""

from __future__ import annotations

import dataclasses
import json
from typing import TYPE_CHECKING

import boto3
import pytest

from ons_pipeline_tests.faults.harness import (
    REGION,
    SalesState,
    VisitsState,
    assert_exactly_once,
    batches,
    deliveries,
    failure_messages,
    land,
    output_files,
    run_sales,
    run_visits,
)
from ons_pipeline_tests.faults.proxy import Fault, FaultProxy

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = pytest.mark.integration


@pytest.fixture
def proxy(stack_env: dict[str, str]) -> Iterator[FaultProxy]:
    proxy = FaultProxy(stack_env["AWS_ENDPOINT_URL"])
    try:
        yield proxy
    finally:
        proxy.close()


def test_sales_through_failing_s3_and_ssm_is_exact(
    proxy: FaultProxy, runs: dict[str, SalesState]
) -> None:
    state = runs["start"].clone()
    land(state, batches()[1])
    proxy.faults = [
        Fault("GET", "/_state/sales/raw/", 503, times=2),
        Fault("PUT", "/_state/sales/raw/", "lost_response"),  # history written, reply lost
        Fault("PUT", "/fact_sales_order/", "reset"),
        Fault("PUT", "/_state/sales/manifest.json", "lost_response", times=2),  # entry, commit
        Fault("POST", "AmazonSSM.PutParameter", 500),
    ]

    result = run_sales(state, endpoint=proxy.url)

    assert result.success, failure_messages(result)
    assert [fault.hits for fault in proxy.faults] == [fault.times for fault in proxy.faults]
    assert_exactly_once(state, runs["same-input"])
    assert output_files(state) == output_files(runs["same-input"])


@pytest.fixture
def visits_state(stack_env: dict[str, str]) -> VisitsState:
    # The production visibility timeout: only a hand-back makes the messages visible again.
    state = dataclasses.replace(VisitsState.create(), visibility_s=900)
    initial, late, _ = deliveries()
    state.land(initial)
    assert run_visits(state).success
    state.land(late)
    return state


def visible(state: VisitsState) -> int:
    attributes = boto3.client("sqs", region_name=REGION).get_queue_attributes(
        QueueUrl=state.queue, AttributeNames=["ApproximateNumberOfMessages"]
    )
    return int(attributes["Attributes"]["ApproximateNumberOfMessages"])


def test_a_failing_visits_attempt_hands_its_notifications_back(
    proxy: FaultProxy, visits_state: VisitsState, uninterrupted: dict[bool, VisitsState]
) -> None:
    announced = visible(visits_state)
    proxy.faults = [Fault("GET", f"/{visits_state.source}/logs/", 500, times=10_000)]

    failed = run_visits(visits_state, endpoint=proxy.url)

    assert not failed.success  # it had candidates and could not read them
    assert visible(visits_state) == announced  # at once, not after 900 s
    proxy.faults = []
    retried = run_visits(visits_state, endpoint=proxy.url)
    assert retried.success, failure_messages(retried)
    assert visits_state.checkpoint().equals(uninterrupted[False].checkpoint())
    assert visits_state.queued() == 0


def test_visits_through_failing_sqs_is_exact(
    proxy: FaultProxy, visits_state: VisitsState, uninterrupted: dict[bool, VisitsState]
) -> None:
    proxy.faults = [
        Fault("POST", "AmazonSQS.ReceiveMessage", 503),
        Fault("POST", "AmazonSQS.ReceiveMessage", "reset"),
        Fault("POST", "AmazonSQS.DeleteMessageBatch", 500),
        Fault("PUT", f"/{visits_state.state}/", 503),
    ]

    result = run_visits(visits_state, endpoint=proxy.url)

    assert result.success, failure_messages(result)
    assert all(fault.hits for fault in proxy.faults)
    assert visits_state.checkpoint().equals(uninterrupted[False].checkpoint())
    assert visits_state.queued() == 0


def s3_notification(bucket: str, key: str) -> str:
    record = {"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": bucket}}}
    record["s3"]["object"] = {"key": key, "eTag": "0123"}  # type: ignore[index]
    return json.dumps({"Records": [record]})


def test_messages_for_another_bucket_or_prefix_stay_on_the_queue(
    visits_state: VisitsState, uninterrupted: dict[bool, VisitsState]
) -> None:
    sqs = boto3.client("sqs", region_name=REGION)
    foreign = {
        s3_notification("ons-visit-events", "logs/elsewhere.json"),  # the default bucket
        s3_notification(visits_state.source, "archive/old.json"),  # another prefix
    }
    for body in foreign:
        sqs.send_message(QueueUrl=visits_state.queue, MessageBody=body)

    result = run_visits(visits_state)

    assert result.success, failure_messages(result)
    assert visits_state.checkpoint().equals(uninterrupted[False].checkpoint())
    left = sqs.receive_message(QueueUrl=visits_state.queue, MaxNumberOfMessages=10)
    assert {message["Body"] for message in left.get("Messages", [])} == foreign
