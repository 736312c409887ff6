"""ensure_bucket gives the seven-year retention to a bucket someone else created."""

from __future__ import annotations

import uuid

import pytest

from ons_pipeline.resources import InfluxDBResource
from ons_pipeline.resources.influxdb import RETENTION_SECONDS

pytestmark = pytest.mark.integration


def _retention(influxdb: InfluxDBResource, name: str) -> list[int]:
    bucket = influxdb.get_client().buckets_api().find_bucket_by_name(name)
    return [rule.every_seconds for rule in bucket.retention_rules if rule.type == "expire"]


def test_an_existing_bucket_without_retention_gets_seven_years(stack_env: dict[str, str]) -> None:
    influxdb = InfluxDBResource(
        region_name="eu-west-2",
        url=stack_env["INFLUXDB_URL"],
        org=stack_env["INFLUXDB_ORG"],
        token=stack_env["INFLUXDB_TOKEN"],
        query_url=stack_env["INFLUXDB_QUERY_URL"],
    )
    name = f"generation_data_{uuid.uuid4().hex[:8]}"
    # As Terraform creates the instance's first bucket: no retention rule (keep forever).
    influxdb.get_client().buckets_api().create_bucket(bucket_name=name, org=influxdb.org)
    assert _retention(influxdb, name) == [0]

    assert influxdb.ensure_bucket(name) is False  # existed: not created
    assert _retention(influxdb, name) == [RETENTION_SECONDS]
    assert influxdb.ensure_bucket(name) is False  # already right: nothing changes
    assert _retention(influxdb, name) == [RETENTION_SECONDS]

    fresh = f"consumption_data_{uuid.uuid4().hex[:8]}"
    assert influxdb.ensure_bucket(fresh) is True
    assert _retention(influxdb, fresh) == [RETENTION_SECONDS]
