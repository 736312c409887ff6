"""The energy query API over the wire: a real uvicorn, a real influxd, moto's S3.

The module starts its own stack, because it stops and restarts that stack's influxd.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import boto3
import numpy as np
import pandas as pd
import pytest
from dagster import DagsterInstance, materialize

from ons_pipeline.energy.assets import influxdb_points, timestream_records
from ons_pipeline.energy.line_protocol import LineProtocolBatches, lines_of_body
from ons_pipeline.energy.partitions import energy_objects_partitions, partition_key_for
from ons_pipeline.energy.query.breaker import reset_breakers
from ons_pipeline.local.demo.driver import run_energy_demo, stack_definitions, stack_resources
from ons_pipeline.local.demo.energy_data import demo_days, to_parquet
from ons_pipeline.local.query_api import ApiProcess, start_api
from ons_pipeline.local.stack import LocalStack, StackError, free_port
from ons_pipeline.resources import InfluxDBResource
from ons_pipeline.resources.influxdb import InfluxDBCircuitOpenError, InfluxDBUnavailableError
from ons_pipeline.resources.influxql import quote_identifier

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

pytestmark = pytest.mark.integration

DAYS = demo_days(2)
START = DAYS[0].isoformat().replace("+00:00", "Z")
STOP = (DAYS[-1] + timedelta(days=1)).isoformat().replace("+00:00", "Z")
EXTRA_KEY = f"dataset=generation/year={DAYS[0]:%Y}/month={DAYS[0]:%m}/generation_extra.parquet"
RANGE = {"start": START, "stop": STOP}
# One request per template (and variants), answered by both backends.
REQUESTS: list[dict[str, Any]] = [
    {"template": "generation_trend", "params": {**RANGE, "region": "N"}},
    {"template": "generation_trend", "params": {**RANGE, "window": "6h", "dimension": "hydro"}},
    {"template": "consumption_peak", "params": RANGE},
    {
        "template": "consumption_peak",
        "params": {**RANGE, "region": "SE/CO", "field": "load_factor"},
    },
    {"template": "transmission_losses", "params": RANGE},
    {"template": "latest", "params": {**RANGE, "dataset": "generation"}},
    {
        "template": "latest",
        "params": {**RANGE, "dataset": "consumption", "field": "demand_mw", "region": "NE"},
    },
    {"template": "series", "params": {**RANGE, "dataset": "transmission", "field": "flow_mw"}},
    {"template": "series", "params": {**RANGE, "dataset": "generation", "limit": 5}},
]
INJECTIONS = [
    "x' OR 1=1 --",
    'x" OR "1"="1',
    "N'; DROP MEASUREMENT generation_data",
    "N; DROP DATABASE generation_data",
    '|> drop(columns: ["_value"])',
    ") |> yield(",
    "SE.*",
    "^N$",
    "N|NE",
    "/.*/",
    "a\nb",
    "N\r\nSHOW DATABASES",
    "$region",
    "\\",
]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    stack = LocalStack(tmp_path_factory.mktemp("query_stack"))
    try:
        stack.start()
    except StackError as err:
        if os.environ.get("CI") == "true":
            pytest.fail(f"local stack could not start: {err}", pytrace=False)
        pytest.skip(f"local stack could not start: {err}")
    try:
        yield stack
    finally:
        stack.stop()


def extra_generation() -> pd.DataFrame:
    """Rows the rules treat specially: duplicates, rejects, another unit, optional tags."""
    base = pd.Timestamp(DAYS[0]) + pd.Timedelta(minutes=30)
    rows = [
        {"timestamp": base, "region": "N", "energy_source": "hydro", "value": 1.5, "unit": "MW"},
        {"timestamp": base, "region": "N", "energy_source": "hydro", "value": 1.5, "unit": "MW"},
        {
            "timestamp": base + pd.Timedelta(hours=1),
            "region": "N",
            "energy_source": "hydro",
            "value": np.nan,
            "unit": "MW",
        },
        {
            "timestamp": base + pd.Timedelta(hours=2),
            "region": "N",
            "energy_source": "hydro",
            "value": np.inf,
            "unit": "MW",
        },
        {
            "timestamp": base + pd.Timedelta(hours=3),
            "region": "N",
            "energy_source": "hydro",
            "value": 7.25,
            "unit": "MWh",
        },
        {
            "timestamp": base + pd.Timedelta(hours=4, microseconds=1),
            "region": "N",
            "energy_source": "hydro",
            "value": 1 / 3,
            "unit": "MW",
            "quality_flag": "estimated",
        },
        {
            "timestamp": base + pd.Timedelta(hours=5),
            "region": "N",
            "energy_source": "hydro",
            "value": 99999.0,
            "unit": "MW",
            "quality_flag": "bad\tflag",
        },
    ]
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def loaded(stack: LocalStack) -> dict[str, str]:
    """The demo's two days plus an awkward file, loaded through the energy assets."""
    env = stack.env
    assert run_energy_demo(stack_definitions(env), DagsterInstance.ephemeral(), days=2) == 0
    resources = stack_resources(env)
    resources["s3"].put_bytes(
        resources["energy_storage"].processed_bucket,
        EXTRA_KEY,
        to_parquet(extra_generation()),
        "application/vnd.apache.parquet",
    )
    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(energy_objects_partitions.name, [partition_key_for(EXTRA_KEY)])
    result = materialize(
        [influxdb_points, timestream_records],
        partition_key=partition_key_for(EXTRA_KEY),
        resources=resources,
        instance=instance,
    )
    assert result.success
    return env


def influx_reader(env: dict[str, str]) -> dict[str, Any]:
    """InfluxDBResource settings that write through the gateway and read the raw influxd."""
    return {
        "url": env["INFLUXDB_URL"],
        "token": env["INFLUXDB_TOKEN"],
        "query_url": env["INFLUXDB_QUERY_URL"],
        "query_username": env.get("INFLUXDB_QUERY_USERNAME"),
        "query_password": env.get("INFLUXDB_QUERY_PASSWORD"),
    }


def api_env(env: dict[str, str], **overrides: str) -> dict[str, str]:
    return {
        **env,
        "MAX_RETRIES": "1",
        "ONS_QUERY_BREAKER_FAILURES": "2",
        "ONS_QUERY_BREAKER_COOLDOWN_SECONDS": "1",
        "ONS_QUERY_INFLUX_TIMEOUT_MS": "3000",
        **overrides,
    }


@pytest.fixture(scope="module")
def api(stack: LocalStack, loaded: dict[str, str], tmp_path_factory: Any) -> Iterator[ApiProcess]:
    log = tmp_path_factory.mktemp("api") / "query_api.log"
    server = start_api(api_env(loaded), free_port(), log)
    try:
        yield server
    finally:
        server.stop()


def post(url: str, body: Any, raw: bytes | None = None) -> tuple[int, dict[str, Any], Any]:
    data = raw if raw is not None else json.dumps(body).encode()
    request = urllib.request.Request(
        f"{url}/query", data=data, headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.load(response), response.headers
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read()), error.headers


def _influx_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("INFLUXDB_", "INFLUXD_"))}


@contextmanager
def influxd_stopped(stack: LocalStack) -> Iterator[None]:
    """Really stop the stack's influxd; start it again (same data, same port) after."""
    proc = stack.processes.procs["influxd"]
    argv = list(proc.args)  # type: ignore[arg-type]
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=30)
    try:
        yield
    finally:
        stack.processes.spawn("influxd", argv, env=_influx_env())
        stack.processes.wait_ready("influxd", f"{stack.influxd_url}/ping", (204,))


def wait_for_backend(url: str, backend: str) -> dict[str, Any]:
    """Ask until `backend` answers (the API's breaker probes after its 1 s cool-down)."""
    deadline = time.monotonic() + 90
    while True:
        status, body, _ = post(url, REQUESTS[0])
        if status == 200 and body["backend"] == backend:
            return body
        assert time.monotonic() < deadline, f"{backend} never answered: {status} {body}"
        time.sleep(0.5)


def test_a_question_gets_the_seed_response(api: ApiProcess) -> None:
    status, body, _ = post(
        api.url, {"question": "When was the peak demand in the northeast over the last 3 days?"}
    )

    assert status == 200, body
    assert {
        "query_id",
        "question",
        "answer",
        "confidence_score",
        "time_series_data",
        "query_used",
        "flux_query_used",
        "sources",
        "processing_time_ms",
        "timestamp",
        "backend",
    } <= set(body)
    assert body["backend"] == "influxdb"
    assert body["template"] == "consumption_peak"
    assert body["params"]["region"] == "NE"
    (peak,) = body["time_series_data"]
    assert peak["tags"] == {"region": "NE"}
    assert peak["measurement"] == "demand_mw"
    assert f"{peak['value']:,.3f}" in body["answer"]
    assert peak["timestamp"] in body["answer"]
    assert "$region" in body["query_used"]["statement"]
    assert "NE" not in body["query_used"]["statement"]
    assert body["query_used"]["params"]["region"] == "NE"
    documents = {s["document"] for s in body["sources"]}
    assert any("dataset=consumption/" in d for d in documents)
    assert not any("dataset=generation/" in d for d in documents)
    assert 0 < body["confidence_score"] <= 1


def test_an_unmapped_question_lists_answerable_ones(api: ApiProcess) -> None:
    status, body, _ = post(api.url, {"question": "What is the meaning of life?"})

    assert status == 400
    assert body["fields"][0]["field"] == "question"
    assert len(body["answerable_questions"]) >= 3
    for question in body["answerable_questions"]:
        assert post(api.url, {"question": question})[0] == 200, question


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (b"{not json", "body"),
        (b"[1, 2]", "body"),
        (json.dumps({"template": "nope", "params": RANGE}).encode(), "template"),
        (json.dumps({"template": "latest", "params": [1]}).encode(), "params"),
        (json.dumps({"template": "latest", "params": {"start": START}}).encode(), "params.stop"),
        (
            json.dumps({"template": "latest", "params": {"start": STOP, "stop": START}}).encode(),
            "params.stop",
        ),
        (
            json.dumps(
                {"template": "latest", "params": {"start": "2020-01-01", "stop": "2024-01-01"}}
            ).encode(),
            "params.stop",
        ),
        (
            json.dumps({"template": "series", "params": {**RANGE, "limit": 10**6}}).encode(),
            "params.limit",
        ),
        (
            json.dumps({"template": "latest", "params": {**RANGE, "extra": 1}}).encode(),
            "params.extra",
        ),
        (json.dumps({"question": "x" * 5000}).encode(), "question"),
    ],
)
def test_invalid_requests_are_400_naming_the_field(api: ApiProcess, raw: bytes, field: str) -> None:
    status, body, _ = post(api.url, None, raw=raw)

    assert status == 400, body
    assert field in [f["field"] for f in body["fields"]]
    assert "Traceback" not in json.dumps(body)


def count_points(env: dict[str, str]) -> int:
    resource = InfluxDBResource(**influx_reader(env))
    total = 0
    for db in ("generation_data", "consumption_data", "transmission_data"):
        series = resource.influxql(db, f"SELECT COUNT(*) FROM {quote_identifier(db)}")
        total += sum(v for v in series[0]["values"][0][1:] if v)
    return total


@pytest.mark.parametrize("payload", INJECTIONS)
def test_injection_through_every_parameter_is_a_400_naming_it(
    api: ApiProcess, loaded: dict[str, str], payload: str
) -> None:
    before = count_points(loaded)
    templates = {
        "generation_trend": ["start", "stop", "region", "dimension", "field", "window"],
        "consumption_peak": ["start", "stop", "region", "dimension", "field"],
        "transmission_losses": ["start", "stop", "region", "dimension", "field"],
        "latest": ["start", "stop", "region", "dimension", "field", "dataset"],
        "series": ["start", "stop", "region", "dimension", "field", "dataset", "limit"],
    }
    for template, names in templates.items():
        for name in names:
            params = {**RANGE, name: payload}
            if name in ("start", "stop"):  # a valid time with the payload appended
                params[name] = RANGE[name] + payload
            status, body, _ = post(api.url, {"template": template, "params": params})
            assert status == 400, (template, name, body)
            assert [f["field"] for f in body["fields"]] == [f"params.{name}"], body

    assert count_points(loaded) == before


def test_injection_inside_a_question_never_reaches_the_query(
    api: ApiProcess, loaded: dict[str, str]
) -> None:
    before = count_points(loaded)
    status, body, _ = post(
        api.url,
        {"question": "peak demand in SE/CO'; DROP DATABASE consumption_data; -- last 3 days"},
    )

    assert status == 200, body
    assert body["params"]["region"] == "SE/CO"
    assert "DROP" not in body["query_used"]["statement"]
    assert count_points(loaded) == before


def values(body: dict[str, Any]) -> list[tuple[str, str, float]]:
    return [
        (p["timestamp"], json.dumps(p["tags"], sort_keys=True), p["value"])
        for p in body["time_series_data"]
    ]


def test_fallback_gives_influxdbs_numbers_when_influxd_is_stopped(
    api: ApiProcess, stack: LocalStack
) -> None:
    wait_for_backend(api.url, "influxdb")
    from_influx = {}
    for request in REQUESTS:
        status, body, _ = post(api.url, request)
        assert status == 200 and body["backend"] == "influxdb", body
        assert body["time_series_data"], request
        from_influx[json.dumps(request)] = body

    with influxd_stopped(stack):
        for request in REQUESTS:
            status, body, _ = post(api.url, request)
            assert status == 200, body
            assert body["backend"] == "s3_parquet"
            assert body["fallback_reason"]
            want = from_influx[json.dumps(request)]
            got_points, want_points = values(body), values(want)
            assert [p[:2] for p in got_points] == [p[:2] for p in want_points], request
            for (_, _, got), (_, _, expected) in zip(got_points, want_points, strict=True):
                # Same points; a mean or sum may differ in the last bit (summation order).
                assert math.isclose(got, expected, rel_tol=1e-12), (request, got, expected)
            assert body["answer"] == want["answer"] or body["template"] in (
                "generation_trend",
                "transmission_losses",
            )
            assert body["sources"] == want["sources"]

    wait_for_backend(api.url, "influxdb")


def test_after_a_rollback_to_timestream_the_s3_fallback_answers_by_default(
    api: ApiProcess, loaded: dict[str, str], tmp_path: Path
) -> None:
    wait_for_backend(api.url, "influxdb")
    request = REQUESTS[0]
    status, current, _ = post(api.url, request)
    assert status == 200 and current["backend"] == "influxdb", current
    server = start_api(
        api_env(loaded, ONS_ENERGY_SINKS="timestream"), free_port(), tmp_path / "api.log"
    )
    try:
        status, body, _ = post(server.url, request)
    finally:
        server.stop()

    assert status == 200, body
    assert body["backend"] == "s3_parquet"  # influxd is up; the switch decides
    assert "ONS_ENERGY_SINKS=timestream" in body["fallback_reason"]
    assert [p[:2] for p in values(body)] == [p[:2] for p in values(current)]


def test_no_backend_is_a_503_with_retry_after(
    stack: LocalStack, loaded: dict[str, str], tmp_path: Path
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    env = api_env(loaded, AWS_ENDPOINT_URL=dead, INFLUXDB_QUERY_URL=dead, INFLUXDB_URL=dead)
    server = start_api(env, free_port(), tmp_path / "api.log")
    try:
        status, body, headers = post(server.url, REQUESTS[2])
    finally:
        server.stop()

    assert status == 503, body
    assert int(headers["Retry-After"]) >= 1
    assert body["error"] == "backend_unavailable"
    assert "Traceback" not in json.dumps(body)


def test_breaker_opens_probes_and_closes_against_a_real_influxd(
    stack: LocalStack, loaded: dict[str, str]
) -> None:
    env = loaded
    reset_breakers()
    influxdb = InfluxDBResource(
        **influx_reader(env),
        region_name=env["AWS_REGION"],
        endpoint_url=env["AWS_ENDPOINT_URL"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        max_retries=0,
        timeout_ms=3000,
        breaker_failures=2,
        breaker_cooldown_seconds=1.0,
    )
    breaker = influxdb.breaker()
    query = ("generation_data", 'SELECT COUNT("power_mw") FROM "generation_data"')
    assert influxdb.influxql(*query)
    assert breaker.state == "closed"

    with influxd_stopped(stack):
        for _ in range(2):
            with pytest.raises(InfluxDBUnavailableError) as refused:
                influxdb.influxql(*query)
            assert not isinstance(refused.value, InfluxDBCircuitOpenError)
        assert breaker.state == "open"
        with pytest.raises(InfluxDBCircuitOpenError):  # fails fast: InfluxDB not called
            influxdb.influxql(*query)
        with pytest.raises(InfluxDBCircuitOpenError):
            influxdb.health()  # the loads' health check goes through the same breaker
        time.sleep(1.1)
        with pytest.raises(InfluxDBUnavailableError) as probe:  # the one probe, refused
            influxdb.influxql(*query)
        assert not isinstance(probe.value, InfluxDBCircuitOpenError)
        assert breaker.state == "open"

    time.sleep(1.1)
    assert influxdb.influxql(*query)  # the probe succeeds
    assert breaker.state == "closed"
    assert [(old, new) for old, new, _ in breaker.transitions] == [
        ("closed", "open"),
        ("open", "half_open"),
        ("half_open", "open"),
        ("open", "half_open"),
        ("half_open", "closed"),
    ]

    cloudwatch = boto3.client(
        "cloudwatch",
        endpoint_url=env["AWS_ENDPOINT_URL"],
        region_name=env["AWS_REGION"],
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    now = datetime.now(UTC)
    stats = cloudwatch.get_metric_statistics(
        Namespace="ONS/InfluxDB",
        MetricName="CircuitState",
        Dimensions=[{"Name": "Circuit", "Value": env["INFLUXDB_URL"]}],
        StartTime=now - timedelta(minutes=10),
        EndTime=now + timedelta(minutes=1),
        Period=3600,
        Statistics=["Minimum", "Maximum", "SampleCount"],
    )["Datapoints"]
    # Five from these transitions (the API server's own breaker for this InfluxDB adds its own).
    assert sum(p["SampleCount"] for p in stats) >= 5
    assert min(p["Minimum"] for p in stats) == 0
    assert max(p["Maximum"] for p in stats) == 2


def test_influxd_honours_bind_parameters_for_tags_and_time_bounds(stack: LocalStack) -> None:
    """The local influxd 1.x applies `$` parameters: exact tag match, half-open ns bounds."""
    env = stack.env
    influxdb = InfluxDBResource(**influx_reader(env))
    influxdb.ensure_bucket("bind_check")
    t0 = int(DAYS[0].timestamp()) * 10**9
    body = (
        f"m,region=a'b v=1 {t0}\n"
        f"m,region=a'b v=2 {t0 + 1}\n"
        f"m,region=a'b v=3 {t0 + 2}\n"
        f"m,region=SE/CO v=4 {t0 + 1}\n"
        f"m,region=a v=5 {t0 + 1}\n"
    ).encode()
    influxdb.write_lines("bind_check", LineProtocolBatches([lines_of_body(body)], 5))
    statement = 'SELECT "v" FROM "m" WHERE "region" = $region AND time >= $start AND time < $stop'

    quoted = influxdb.influxql(
        "bind_check", statement, {"region": "a'b", "start": t0 + 1, "stop": t0 + 2}
    )
    regex_like = influxdb.influxql(
        "bind_check", statement, {"region": "a.*", "start": t0, "stop": t0 + 3}
    )
    injected = influxdb.influxql(
        "bind_check", statement, {"region": "x' OR '1'='1", "start": t0, "stop": t0 + 3}
    )

    assert [row[1:] for row in quoted[0]["values"]] == [[2.0]]
    assert quoted[0]["values"][0][0] == t0 + 1
    assert regex_like == []
    assert injected == []
