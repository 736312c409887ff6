"""The resources' shared plumbing: one cached client per service, one retry loop."""

from __future__ import annotations

import pytest
from moto import mock_aws

from ons_pipeline.resources import (
    AlertsResource,
    InfluxDBResource,
    NotificationQueueResource,
    ObjectStoreResource,
    TimestreamResource,
)
from ons_pipeline.resources.aws import sharing_session
from ons_pipeline.resources.retry import RetryableFault, call_with_retries


@pytest.fixture(autouse=True)
def _credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")


def test_each_resource_builds_its_client_once_for_its_own_service() -> None:
    s3 = ObjectStoreResource(region_name="eu-west-2")
    assert s3.get_client() is s3.get_client()
    assert s3.get_client().meta.service_model.service_name == "s3"
    assert ObjectStoreResource(region_name="eu-west-2").get_client() is not s3.get_client()
    sns = AlertsResource(region_name="eu-west-2", topic_arn="arn:aws:sns:eu-west-2:1:t")
    assert sns.get_client().meta.service_model.service_name == "sns"
    sqs = NotificationQueueResource(region_name="eu-west-2")
    assert sqs.get_client() is sqs.get_client()
    assert sqs.get_client().meta.service_model.service_name == "sqs"


def test_a_second_service_is_cached_beside_the_first() -> None:
    timestream = TimestreamResource(region_name="eu-west-2")
    write, query = timestream.get_client(), timestream.get_query_client()
    assert write.meta.service_model.service_name == "timestream-write"
    assert query.meta.service_model.service_name == "timestream-query"
    assert (timestream.get_client(), timestream.get_query_client()) == (write, query)
    assert write is not query


def test_influxdb_reads_its_token_from_secrets_manager_once() -> None:
    with mock_aws():
        influxdb = InfluxDBResource(
            region_name="eu-west-2", url="http://127.0.0.1:1", token_secret_name="ons/t"
        )
        influxdb.extra_client("secretsmanager").create_secret(Name="ons/t", SecretString="tok")
        assert influxdb.resolved_token() == "tok"
        influxdb.extra_client("secretsmanager").put_secret_value(
            SecretId="ons/t", SecretString="changed"
        )
        assert influxdb.resolved_token() == "tok"


def test_the_queue_shares_the_object_store_s_session() -> None:
    s3 = ObjectStoreResource(
        region_name="us-east-1", endpoint_url="http://127.0.0.1:9", max_attempts=7
    )
    sqs = sharing_session(NotificationQueueResource, s3)
    assert (sqs.region_name, sqs.endpoint_url, sqs.max_attempts) == (
        "us-east-1",
        s3.endpoint_url,
        7,
    )
    assert sqs.get_client().meta.endpoint_url == "http://127.0.0.1:9"


def test_transient_faults_are_retried_and_counted() -> None:
    outcomes: list[object] = [RetryableFault("429"), RetryableFault("503"), "done"]
    retries: list[int] = []

    def attempt() -> str:
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return str(outcome)

    result = call_with_retries(
        attempt, max_retries=3, backoff_seconds=0, on_retry=lambda: retries.append(1)
    )
    assert (result, len(retries)) == ("done", 2)


def test_exhausted_retries_raise_the_callers_error_with_the_attempt_count() -> None:
    calls: list[int] = []

    def attempt() -> None:
        calls.append(1)
        raise RetryableFault("503 busy")

    with pytest.raises(ConnectionError, match=r"3 attempts: 503 busy") as raised:
        call_with_retries(
            attempt,
            max_retries=2,
            backoff_seconds=0,
            exhausted=lambda n, fault: ConnectionError(f"{n} attempts: {fault}"),
        )
    assert len(calls) == 3
    assert isinstance(raised.value.__cause__, RetryableFault)


def test_other_errors_escape_at_once_and_retry_on_errors_re_raise() -> None:
    calls: list[int] = []

    def refused() -> None:
        calls.append(1)
        raise ValueError("400 bad request")

    with pytest.raises(ValueError, match="400"):
        call_with_retries(refused, max_retries=5, backoff_seconds=0)
    assert len(calls) == 1

    def down() -> None:
        calls.append(1)
        raise TimeoutError("still down")

    with pytest.raises(TimeoutError, match="still down"):
        call_with_retries(down, max_retries=1, backoff_seconds=0, retry_on=(TimeoutError,))
    assert len(calls) == 3


def test_listing_etags_in_a_key_range() -> None:
    with mock_aws():
        s3 = ObjectStoreResource(region_name="eu-west-2")
        client = s3.get_client()
        client.create_bucket(
            Bucket="etags", CreateBucketConfiguration={"LocationConstraint": "eu-west-2"}
        )
        etags = {
            key: client.put_object(Bucket="etags", Key=key, Body=key.encode())["ETag"]
            for key in ["logs/a", "logs/b", "logs/c", "logs/d", "other/e"]
        }
        assert s3.list_etags("etags", "logs/") == {k: v for k, v in etags.items() if "logs" in k}
        assert s3.list_etags("etags", "logs/", after="logs/a", through="logs/c") == {
            "logs/b": etags["logs/b"],
            "logs/c": etags["logs/c"],
        }
        client.put_object(Bucket="etags", Key="logs/b", Body=b"changed")
        assert s3.list_etags("etags", "logs/", after="logs/a", through="logs/b") != {
            "logs/b": etags["logs/b"]
        }


def test_queue_receive_delete_and_release_in_batches() -> None:
    with mock_aws():
        sqs = NotificationQueueResource(region_name="eu-west-2")
        url = sqs.get_client().create_queue(QueueName="q")["QueueUrl"]
        for i in range(23):
            sqs.get_client().send_message(QueueUrl=url, MessageBody=str(i))
        first = sqs.receive(url, limit=15, visibility_timeout=300)
        assert len(first) == 15
        assert all("SentTimestamp" in m["Attributes"] for m in first)
        rest = sqs.receive(url, limit=100, visibility_timeout=300)
        assert len(rest) == 8  # the first 15 stay hidden
        sqs.release(url, [m["ReceiptHandle"] for m in rest])
        sqs.delete(url, [m["ReceiptHandle"] for m in first])
        again = sqs.receive(url, limit=100, visibility_timeout=300)
        assert sorted(m["Body"] for m in again) == sorted(m["Body"] for m in rest)
        with pytest.raises(RuntimeError, match="could not delete SQS messages"):
            sqs.delete(url, ["not-a-receipt-handle"])


def test_queue_receive_without_a_limit_drains_and_a_failed_receive_releases() -> None:
    """The visits run drains the queue; a receive that dies midway must not hide what it took."""
    with mock_aws():
        sqs = NotificationQueueResource(region_name="eu-west-2")
        client = sqs.get_client()
        url = client.create_queue(QueueName="q")["QueueUrl"]
        for i in range(25):
            client.send_message(QueueUrl=url, MessageBody=str(i))
        drained = sqs.receive(url, limit=None, visibility_timeout=300)  # 3 calls of 10
        assert len(drained) == 25
        sqs.release(url, [m["ReceiptHandle"] for m in drained])
        pages = 0

        def fail_the_second_page(**_: object) -> None:
            nonlocal pages
            pages += 1
            if pages == 2:
                raise ConnectionError("the second page is lost")

        client.meta.events.register("before-call.sqs.ReceiveMessage", fail_the_second_page)
        with pytest.raises(ConnectionError, match="second page"):
            sqs.receive(url, limit=None, visibility_timeout=300)
        client.meta.events.unregister("before-call.sqs.ReceiveMessage", fail_the_second_page)
        # The first page's 10 were released at once, not left hidden for 300 s.
        assert len(sqs.receive(url, limit=None, visibility_timeout=300)) == 25
