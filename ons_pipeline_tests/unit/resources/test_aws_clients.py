"""The shared boto3 client: botocore's answers, with listings' timestamps parsed natively."""

from datetime import UTC, datetime

import pytest
from botocore.utils import parse_timestamp
from moto import mock_aws

from ons_pipeline.resources import ObjectStoreResource
from ons_pipeline.resources.aws import parse_aws_timestamp


@pytest.mark.parametrize(
    "value",
    [
        "2026-11-25T00:41:21.000Z",  # ListObjectsV2 LastModified
        "2026-11-25T00:41:21Z",
        "2026-11-25T01:41:21.123456+01:00",
        "Wed, 25 Nov 2026 00:41:21 GMT",  # RFC 1123, as in HTTP headers
        1764031281,  # epoch seconds, as JSON protocols send them
        1764031281.5,
    ],
)
def test_timestamps_parse_to_the_same_instant_as_botocore(value: object) -> None:
    parsed = parse_aws_timestamp(value)
    assert parsed.tzinfo is not None
    assert parsed == parse_timestamp(value)


def test_naive_iso_timestamps_are_utc() -> None:
    assert parse_aws_timestamp("2026-11-25T00:41:21") == datetime(
        2026, 11, 25, 0, 41, 21, tzinfo=UTC
    )


def test_garbage_is_still_an_error() -> None:
    with pytest.raises(ValueError):
        parse_aws_timestamp("not a time")


def test_listing_timestamps_are_aware_datetimes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        client = ObjectStoreResource(region_name="eu-west-2").get_client()
        client.create_bucket(
            Bucket="stamps", CreateBucketConfiguration={"LocationConstraint": "eu-west-2"}
        )
        client.put_object(Bucket="stamps", Key="a", Body=b"x")
        listed = client.list_objects_v2(Bucket="stamps")["Contents"][0]["LastModified"]
        headed = client.head_object(Bucket="stamps", Key="a")["LastModified"]
    assert isinstance(listed, datetime)
    assert listed == headed
    assert abs((datetime.now(UTC) - listed).total_seconds()) < 300
