"""The local stack over the wire: moto's server, influxd 1.x and the v2 gateway."""

from __future__ import annotations

import base64
import gzip
import json
import stat
import threading
import urllib.error
import urllib.parse
import urllib.request
import uuid
import warnings
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from influxdb_client import BucketRetentionRules, InfluxDBClient, Point, WritePrecision
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.rest import ApiException

from ons_pipeline.local.influx_gateway import make_server
from ons_pipeline.local.stack import (
    INFLUXDB_RETENTION_SECONDS,
    INFLUXDB_TOKEN_SECRET_NAME,
    LocalStack,
    free_port,
)
from ons_pipeline.resources import defaults
from ons_pipeline.resources.influxql import quote_identifier

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

pytestmark = pytest.mark.integration

SSM_NAMES = sorted(
    [f"{defaults.SSM_PREFIX}/sales/last_packet/{t}" for t in defaults.SOURCE_TABLES]
    + [f"{defaults.SSM_PREFIX}/sales/output_sequence/{t}" for t in defaults.STAR_TABLES]
)


@pytest.fixture
def influx(stack_env: dict[str, str]) -> Iterator[InfluxDBClient]:
    with InfluxDBClient(
        url=stack_env["INFLUXDB_URL"],
        token=stack_env["INFLUXDB_TOKEN"],
        org=stack_env["INFLUXDB_ORG"],
    ) as client:
        yield client


def basic_auth(env: dict[str, str]) -> dict[str, str]:
    """The raw influxd's credentials, as the stack gives them to its readers."""
    pair = f"{env['INFLUXDB_QUERY_USERNAME']}:{env['INFLUXDB_QUERY_PASSWORD']}".encode()
    return {"Authorization": "Basic " + base64.b64encode(pair).decode()}


def influxql(env: dict[str, str], statement: str, db: str = "generation_data") -> dict[str, Any]:
    params = urllib.parse.urlencode({"db": db, "epoch": "ns", "q": statement})
    request = urllib.request.Request(
        f"{env['INFLUXDB_QUERY_URL']}/query?{params}", headers=basic_auth(env)
    )
    with urllib.request.urlopen(request) as resp:
        return json.load(resp)


def select_all(env: dict[str, str], measurement: str) -> list[dict[str, Any]]:
    """Every row of the measurement, as column -> value dicts (absent columns dropped)."""
    result = influxql(env, f"SELECT * FROM {quote_identifier(measurement)}")["results"][0]
    assert "error" not in result, result
    rows = []
    for series in result.get("series", []):
        for values in series["values"]:
            row = dict(zip(series["columns"], values, strict=True))
            rows.append({k: v for k, v in row.items() if v is not None})
    return rows


def raw_request(
    url: str, data: bytes | None = None, headers: dict[str, str] | None = None, method: str = "GET"
) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=data, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()
    except urllib.error.URLError:
        return 0, b""


def aws_snapshot() -> dict[str, Any]:
    s3 = boto3.client("s3")
    ssm = boto3.client("ssm")
    sns = boto3.client("sns")
    timestream = boto3.client("timestream-write")
    secrets = boto3.client("secretsmanager")
    params = ssm.get_parameters(Names=SSM_NAMES[:10])["Parameters"]
    params += ssm.get_parameters(Names=SSM_NAMES[10:])["Parameters"]
    topic_arn = defaults.local_alert_topic_arn()
    return {
        "buckets": sorted(b["Name"] for b in s3.list_buckets()["Buckets"]),
        "parameters": sorted((p["Name"], p["Value"], p["Version"]) for p in params),
        "topics": sorted(t["TopicArn"] for t in sns.list_topics()["Topics"]),
        "subscriptions": sorted(
            (s["Protocol"], s["Endpoint"])
            for s in sns.list_subscriptions_by_topic(TopicArn=topic_arn)["Subscriptions"]
        ),
        "tables": sorted(
            t["TableName"]
            for t in timestream.list_tables(DatabaseName=defaults.TIMESTREAM_DATABASE)["Tables"]
        ),
        "secret_versions": sorted(
            v["VersionId"]
            for v in secrets.list_secret_version_ids(SecretId=INFLUXDB_TOKEN_SECRET_NAME)[
                "Versions"
            ]
        ),
    }


def test_bootstrap_creates_every_aws_resource(stack_env: dict[str, str]) -> None:
    s3 = boto3.client("s3")
    names = {b["Name"] for b in s3.list_buckets()["Buckets"]}
    assert set(defaults.ALL_BUCKETS) <= names
    for bucket in defaults.ALL_BUCKETS:
        location = s3.get_bucket_location(Bucket=bucket)["LocationConstraint"]
        assert location == "eu-west-2"

    ssm = boto3.client("ssm")
    pages = ssm.get_paginator("get_parameters_by_path").paginate(
        Path=f"{defaults.SSM_PREFIX}/sales", Recursive=True
    )
    found = {p["Name"]: p["Type"] for page in pages for p in page["Parameters"]}
    assert {n: found.get(n) for n in SSM_NAMES} == dict.fromkeys(SSM_NAMES, "String")

    sns = boto3.client("sns")
    topic_arn = stack_env["ONS_ALERT_TOPIC_ARN"]
    assert topic_arn in {t["TopicArn"] for t in sns.list_topics()["Topics"]}
    subscriptions = sns.list_subscriptions_by_topic(TopicArn=topic_arn)["Subscriptions"]
    assert [(s["Protocol"], s["Endpoint"]) for s in subscriptions] == [
        ("email", "admin@example.com")
    ]

    timestream = boto3.client("timestream-write")
    database = timestream.describe_database(DatabaseName=stack_env["TIMESTREAM_DATABASE"])
    assert database["Database"]["DatabaseName"] == defaults.TIMESTREAM_DATABASE
    tables = timestream.list_tables(DatabaseName=defaults.TIMESTREAM_DATABASE)["Tables"]
    assert sorted(t["TableName"] for t in tables) == sorted(defaults.TIMESTREAM_TABLES)

    secrets = boto3.client("secretsmanager")
    secret = secrets.get_secret_value(SecretId=stack_env["INFLUXDB_TOKEN_SECRET_NAME"])
    assert secret["SecretString"] == stack_env["INFLUXDB_TOKEN"]


def test_bootstrap_twice_changes_nothing(
    local_stack: LocalStack, stack_env: dict[str, str]
) -> None:
    before = aws_snapshot()
    with InfluxDBClient(
        url=stack_env["INFLUXDB_URL"], token=stack_env["INFLUXDB_TOKEN"], org=defaults.INFLUXDB_ORG
    ) as client:
        buckets_before = sorted(
            (b.name, b.id) for b in client.buckets_api().find_buckets(limit=100).buckets
        )
        local_stack.bootstrap()
        local_stack.bootstrap()
        buckets_after = sorted(
            (b.name, b.id) for b in client.buckets_api().find_buckets(limit=100).buckets
        )
    assert aws_snapshot() == before
    assert buckets_after == buckets_before


def test_bootstrap_keeps_changed_parameters_and_restores_missing_ones(
    local_stack: LocalStack, stack_env: dict[str, str]
) -> None:
    ssm = boto3.client("ssm")
    changed = f"{defaults.SSM_PREFIX}/sales/last_packet/staff"
    missing = f"{defaults.SSM_PREFIX}/sales/output_sequence/dim_date"
    originals = {n: ssm.get_parameter(Name=n)["Parameter"]["Value"] for n in (changed, missing)}
    try:
        ssm.put_parameter(Name=changed, Value="42", Type="String", Overwrite=True)
        ssm.delete_parameter(Name=missing)
        local_stack.bootstrap()
        assert ssm.get_parameter(Name=changed)["Parameter"]["Value"] == "42"
        assert ssm.get_parameter(Name=missing)["Parameter"]["Value"] == "0"
    finally:
        for name, value in originals.items():
            ssm.put_parameter(Name=name, Value=value, Type="String", Overwrite=True)


def test_awkward_points_round_trip_with_nanosecond_times(
    influx: InfluxDBClient, stack_env: dict[str, str]
) -> None:
    measurement = f"awkward measure,{uuid.uuid4().hex[:8]}"
    base = 1_700_000_000_123_456_789
    tags = [
        {"site name": "Drax, North=1", "région": "Île-de-France ☀"},
        {"site name": "a=b,c d", "région": "日本"},
        {"site name": 'back\\slash "quoted"', "région": "x"},
    ]
    points = [
        Point(measurement)
        .tag("site name", t["site name"])
        .tag("région", t["région"])
        .field("value", float(i) + 0.25)
        .field("note", f'he said "hi" {i}')
        .time(base + i, WritePrecision.NS)
        for i, t in enumerate(tags)
    ]
    influx.write_api(write_options=SYNCHRONOUS).write(
        bucket="generation_data", record=points, write_precision=WritePrecision.NS
    )

    expected = [
        {"time": base + i, "value": float(i) + 0.25, "note": f'he said "hi" {i}', **t}
        for i, t in enumerate(tags)
    ]
    assert sorted(select_all(stack_env, measurement), key=lambda r: r["time"]) == expected


@pytest.mark.parametrize(
    ("precision", "timestamp", "expected_ns"),
    [
        (WritePrecision.S, 1_700_000_001, 1_700_000_001_000_000_000),
        (WritePrecision.MS, 1_700_000_001_002, 1_700_000_001_002_000_000),
        (WritePrecision.US, 1_700_000_001_002_003, 1_700_000_001_002_003_000),
    ],
)
def test_write_precision_is_translated(
    influx: InfluxDBClient,
    stack_env: dict[str, str],
    precision: str,
    timestamp: int,
    expected_ns: int,
) -> None:
    measurement = f"precision_{precision}_{uuid.uuid4().hex[:8]}"
    influx.write_api(write_options=SYNCHRONOUS).write(
        bucket="generation_data",
        record=f"{measurement} value=1 {timestamp}",
        write_precision=precision,
    )
    assert select_all(stack_env, measurement) == [{"time": expected_ns, "value": 1.0}]


def test_gzip_writes(stack_env: dict[str, str]) -> None:
    measurement = f"gzipped_{uuid.uuid4().hex[:8]}"
    with InfluxDBClient(
        url=stack_env["INFLUXDB_URL"],
        token=stack_env["INFLUXDB_TOKEN"],
        org=stack_env["INFLUXDB_ORG"],
        enable_gzip=True,
    ) as client:
        client.write_api(write_options=SYNCHRONOUS).write(
            bucket="consumption_data", record=f"{measurement},k=v value=2 1700000000000000001"
        )
    raw_status, _ = raw_request(
        f"{stack_env['INFLUXDB_URL']}/api/v2/write?org=ons-energy&bucket=consumption_data",
        data=gzip.compress(f"{measurement},k=w value=3 1700000000000000002".encode()),
        headers={
            "Authorization": f"Token {stack_env['INFLUXDB_TOKEN']}",
            "Content-Encoding": "gzip",
        },
        method="POST",
    )
    assert raw_status == 204
    bad_status, bad_body = raw_request(
        f"{stack_env['INFLUXDB_URL']}/api/v2/write?org=ons-energy&bucket=consumption_data",
        data=b"not gzip",
        headers={
            "Authorization": f"Token {stack_env['INFLUXDB_TOKEN']}",
            "Content-Encoding": "gzip",
        },
        method="POST",
    )
    assert bad_status == 400
    assert json.loads(bad_body)["code"] == "invalid"

    result = influxql(
        stack_env, f"SELECT * FROM {quote_identifier(measurement)}", db="consumption_data"
    )
    assert result["results"][0]["series"][0]["values"] == [
        [1700000000000000001, "v", 2.0],
        [1700000000000000002, "w", 3.0],
    ]


def test_health_ping_and_version(influx: InfluxDBClient, stack_env: dict[str, str]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # health() is what 2.x clients call
        health = influx.health()
    assert health.status == "pass"
    assert health.version.startswith(("1.", "v1.", "2.", "v2."))
    assert influx.ping() is True
    status, body = raw_request(f"{stack_env['INFLUXDB_URL']}/health")
    assert status == 200
    assert json.loads(body)["name"] == "influxdb"


def test_bad_token_is_unauthorized(stack_env: dict[str, str]) -> None:
    with InfluxDBClient(
        url=stack_env["INFLUXDB_URL"], token="not-the-token", org=stack_env["INFLUXDB_ORG"]
    ) as client:
        with pytest.raises(ApiException) as write_err:
            client.write_api(write_options=SYNCHRONOUS).write(
                bucket="generation_data", record="m value=1"
            )
        with pytest.raises(ApiException) as list_err:
            client.buckets_api().find_buckets()
    assert write_err.value.status == 401
    assert json.loads(write_err.value.body) == {
        "code": "unauthorized",
        "message": "unauthorized access",
    }
    assert list_err.value.status == 401
    status, _ = raw_request(f"{stack_env['INFLUXDB_URL']}/api/v2/buckets")
    assert status == 401


def test_malformed_line_protocol_is_a_400(influx: InfluxDBClient) -> None:
    with pytest.raises(ApiException) as err:
        influx.write_api(write_options=SYNCHRONOUS).write(
            bucket="generation_data", record="this is not line protocol"
        )
    assert err.value.status == 400
    body = json.loads(err.value.body)
    assert body["code"] == "invalid"
    assert "unable to parse" in body["message"]


def test_partial_write_reports_dropped_points(
    influx: InfluxDBClient, stack_env: dict[str, str]
) -> None:
    measurement = f"conflict_{uuid.uuid4().hex[:8]}"
    write = influx.write_api(write_options=SYNCHRONOUS)
    write.write(bucket="generation_data", record=f"{measurement} value=1 1700000000000000001")
    with pytest.raises(ApiException) as err:
        write.write(
            bucket="generation_data",
            record=[
                f'{measurement} value="text" 1700000000000000002',
                f"{measurement} value=3 1700000000000000003",
            ],
        )
    assert err.value.status == 400
    message = json.loads(err.value.body)["message"]
    assert "partial write" in message
    assert "dropped=1" in message
    assert [row["time"] for row in select_all(stack_env, measurement)] == [
        1700000000000000001,
        1700000000000000003,
    ]


def test_write_to_missing_bucket_is_a_404(influx: InfluxDBClient) -> None:
    with pytest.raises(ApiException) as err:
        influx.write_api(write_options=SYNCHRONOUS).write(bucket="no_such_bucket", record="m v=1")
    assert err.value.status == 404
    assert json.loads(err.value.body) == {
        "code": "not found",
        "message": 'bucket "no_such_bucket" not found',
    }


def test_buckets_api_find_and_create_are_consistent(influx: InfluxDBClient) -> None:
    buckets = influx.buckets_api()
    org_id = influx.organizations_api().find_organizations(org=defaults.INFLUXDB_ORG)[0].id
    for name in defaults.INFLUXDB_BUCKETS:
        bucket = buckets.find_bucket_by_name(name)
        assert bucket is not None
        assert bucket.org_id == org_id
        assert bucket.retention_rules[0].every_seconds == INFLUXDB_RETENTION_SECONDS
    assert buckets.find_bucket_by_name("never_created") is None

    name = f"scratch_{uuid.uuid4().hex[:8]}"
    created = buckets.create_bucket(
        bucket_name=name,
        org=defaults.INFLUXDB_ORG,
        retention_rules=BucketRetentionRules(type="expire", every_seconds=7200),
    )
    found = buckets.find_bucket_by_name(name)
    assert (found.id, found.name, found.retention_rules[0].every_seconds) == (
        created.id,
        name,
        7200,
    )
    assert buckets.find_bucket_by_id(created.id).name == name
    with pytest.raises(ApiException) as err:
        buckets.create_bucket(bucket_name=name, org=defaults.INFLUXDB_ORG)
    assert err.value.status == 422
    assert json.loads(err.value.body) == {
        "code": "conflict",
        "message": f"bucket with name {name} already exists",
    }
    buckets.delete_bucket(created)
    assert buckets.find_bucket_by_name(name) is None


def test_flux_query_is_not_supported(influx: InfluxDBClient) -> None:
    with pytest.raises(ApiException) as err:
        influx.query_api().query('from(bucket: "generation_data") |> range(start: -1h)')
    assert err.value.status == 501
    assert "InfluxQL" in json.loads(err.value.body)["message"]


def test_gateway_reports_an_unreachable_upstream() -> None:
    server = make_server(
        "127.0.0.1", 0, f"http://127.0.0.1:{free_port()}", "tok", defaults.INFLUXDB_ORG
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        status, body = raw_request(f"{url}/health")
        assert status == 503
        assert json.loads(body)["status"] == "fail"
        status, body = raw_request(
            f"{url}/api/v2/write?org=ons-energy&bucket=b",
            data=b"m v=1",
            headers={"Authorization": "Token tok"},
            method="POST",
        )
        assert status == 503
        assert json.loads(body)["code"] == "unavailable"
    finally:
        server.shutdown()
        server.server_close()


def test_env_file_holds_exactly_the_stack_env(local_stack: LocalStack, tmp_path: Path) -> None:
    path = local_stack.write_env_file(tmp_path / ".env")
    lines = path.read_text().splitlines()
    comments = [line for line in lines if line.startswith("#")]
    pairs = dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))
    assert any("ons-stack up" in line for line in comments)
    assert pairs == local_stack.env
    assert pairs["AWS_ENDPOINT_URL"] == local_stack.moto_url
    assert pairs["INFLUXDB_TOKEN_SECRET_NAME"] == "ons/influxdb/token"


def test_detached_stack_is_reused_and_stopped_from_its_state_dir(
    local_stack: LocalStack, tmp_path: Path
) -> None:
    first = LocalStack(tmp_path / "stack", detach=True)
    try:
        first.start()
        # Ports and pids only, owner-only; the secrets live in secrets.json (0600).
        assert stat.S_IMODE(first.state_file.stat().st_mode) == 0o600
        assert first.token not in first.state_file.read_text()
        second = LocalStack(tmp_path / "stack", detach=True).start()
        assert second.reused
        assert second.pids == first.pids
        assert second.env == first.env
        assert second.env["AWS_ENDPOINT_URL"] != local_stack.env["AWS_ENDPOINT_URL"]
        assert raw_request(f"{local_stack.influxdb_url}/ping")[0] == 204
        assert raw_request(f"{second.influxdb_url}/ping")[0] == 204
        status = LocalStack(tmp_path / "stack", detach=True).status()
        assert {n: s["alive"] for n, s in status.items()} == dict.fromkeys(first.pids, True)
        urls = [first.moto_url, first.influxd_url, first.influxdb_url]
        LocalStack(tmp_path / "stack", detach=True).stop()
        assert LocalStack(tmp_path / "stack", detach=True).status() == {}
        assert [raw_request(url)[0] for url in urls] == [0, 0, 0]
    finally:
        first.stop()
