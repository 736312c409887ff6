"""The local stack's fixes to moto answer exactly as stock moto does, only faster."""

import time

import boto3
import pytest
from moto import mock_aws
from moto.moto_api._internal import urls as moto_api_urls
from moto.sqs.models import SQSBackend, sqs_backends
from moto.timestreamwrite.models import TimestreamWriteBackend
from moto.timestreamwrite.responses import TimestreamWriteResponse

from ons_pipeline.local import moto_server

REGION = "eu-west-2"
STOCK_RETENTION_CHECK = SQSBackend.is_message_valid_based_on_retention_period


@pytest.mark.parametrize("age_seconds", [0, 59, 61, 3600])
def test_retention_check_agrees_with_stock_moto(age_seconds: int) -> None:
    with mock_aws():
        sqs = boto3.client("sqs", region_name=REGION)
        url = sqs.create_queue(QueueName="q", Attributes={"MessageRetentionPeriod": "60"})[
            "QueueUrl"
        ]
        sqs.send_message(QueueUrl=url, MessageBody="event")
        backend = sqs_backends["123456789012"][REGION]
        message = backend.get_queue("q")._messages[0]
        message.sent_timestamp = int((time.time() - age_seconds) * 1000)

        stock = STOCK_RETENTION_CHECK(backend, "q", message)
        fixed = moto_server.is_message_valid_based_on_retention_period(backend, "q", message)

    assert fixed == stock == (age_seconds < 60)


def test_fixes_apply_to_the_backends() -> None:
    original = SQSBackend.is_message_valid_based_on_retention_period
    original_discovery = TimestreamWriteBackend.describe_endpoints
    responses = {
        name: getattr(TimestreamWriteResponse, name) for name in ("write_records", "query")
    }
    try:
        moto_server.apply_fixes()
        assert (
            SQSBackend.is_message_valid_based_on_retention_period
            is moto_server.is_message_valid_based_on_retention_period
        )
        assert TimestreamWriteBackend.describe_endpoints is moto_server.describe_endpoints
        assert TimestreamWriteResponse.query is moto_server.query
        assert TimestreamWriteResponse.write_records is moto_server.write_records
        assert moto_api_urls.url_paths["{0}" + moto_server.SEED_PATH] is moto_server.seed_records
    finally:
        SQSBackend.is_message_valid_based_on_retention_period = original  # type: ignore[method-assign]
        TimestreamWriteBackend.describe_endpoints = original_discovery  # type: ignore[method-assign]
        for name, method in responses.items():
            setattr(TimestreamWriteResponse, name, method)
        del TimestreamWriteResponse.cancel_query  # type: ignore[attr-defined]
        moto_api_urls.url_paths.pop("{0}" + moto_server.SEED_PATH)
