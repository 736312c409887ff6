"""Query templates, the translator and the circuit breaker, without servers."""

from __future__ import annotations

import base64
import http.server
import json
import threading
import urllib.parse
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar

import pytest
from pydantic import ValidationError

from ons_pipeline.energy import api
from ons_pipeline.energy.query.breaker import CircuitBreaker, CircuitOpenError
from ons_pipeline.energy.query.service import BackendUnavailableError, QueryService
from ons_pipeline.energy.query.templates import TEMPLATES, parse_template
from ons_pipeline.energy.query.translator import (
    EXAMPLE_QUESTIONS,
    UntranslatableQuestionError,
    translate,
)
from ons_pipeline.resources.influxdb import InfluxDBResource, InfluxQLError

if TYPE_CHECKING:
    from collections.abc import Iterator

NOW = datetime(2026, 11, 29, 12, 30, tzinfo=UTC)
RANGE = {"start": "2024-03-01T00:00:00Z", "stop": "2024-03-08T00:00:00Z"}


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_user_values_travel_as_bind_parameters_only(name: str) -> None:
    params = parse_template(name, {**RANGE, "region": "SE/CO", "dimension": "São Paulo-1_x"})

    statement = params.influxql()
    flux = params.flux()

    for value in ("SE/CO", "São Paulo", "2024"):
        assert value not in statement
        assert value not in flux
    assert params.bind_params() == {
        "start": 1709251200 * 10**9,
        "stop": 1709856000 * 10**9,
        "region": "SE/CO",
        "dimension": "São Paulo-1_x",
    }
    assert "$start" in statement and "$stop" in statement and "$region" in statement
    assert "params.region" in flux
    assert params.flux_params("b")["region"] == "SE/CO"


def test_rendering_uses_contract_names() -> None:
    trend = parse_template("generation_trend", {**RANGE, "window": "15m", "field": "efficiency"})
    assert trend.influxql() == (
        'SELECT MEAN("efficiency") AS "value" FROM "generation_data" '
        'WHERE time >= $start AND time < $stop GROUP BY time(15m), "region" fill(none)'
    )
    series = parse_template("series", {**RANGE, "dataset": "transmission", "limit": 7})
    assert series.influxql().endswith('GROUP BY "region", "line_id" LIMIT 7')


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"start": "2024-03-01"}, "stop"),
        ({**RANGE, "stop": "2024-02-01T00:00:00Z"}, "stop"),
        ({"start": "2023-01-01T00:00:00Z", "stop": "2024-03-01T00:00:00Z"}, "stop"),
        ({**RANGE, "start": 1709251200}, "start"),
        ({**RANGE, "start": "yesterday"}, "start"),
        ({**RANGE, "region": ""}, "region"),
        ({**RANGE, "region": "x" * 65}, "region"),
        ({**RANGE, "region": 5}, "region"),
        ({**RANGE, "field": "demand_mw"}, "field"),  # a consumption field, not generation
        ({**RANGE, "window": "2h"}, "window"),
        ({**RANGE, "bucket": "x"}, "bucket"),
    ],
)
def test_invalid_parameters_name_their_field(params: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_template("generation_trend", params)
    assert field in [str(e["loc"][0]) for e in caught.value.errors()]


def test_naive_timestamps_are_utc() -> None:
    params = parse_template("latest", {"start": "2024-03-01T00:00", "stop": "2024-03-02"})
    assert params.bind_params()["start"] == 1709251200 * 10**9


@pytest.mark.parametrize(
    ("question", "template", "expected"),
    [
        (
            EXAMPLE_QUESTIONS[0],
            "generation_trend",
            {"region": "SE/CO", "dimension": "hydro", "window": "1h"},
        ),
        (
            "When was the peak demand in the northeast in March 2024?",
            "consumption_peak",
            {"region": "NE", "start": "2024-03-01T00:00:00Z", "stop": "2024-04-01T00:00:00Z"},
        ),
        (
            "Total transmission losses in the south between 2024-01-01 and 2024-01-31",
            "transmission_losses",
            {"region": "S", "start": "2024-01-01T00:00:00Z", "stop": "2024-02-01T00:00:00Z"},
        ),
        (
            "latest wind generation in the NE",
            "latest",
            {"dataset": "generation", "dimension": "wind", "region": "NE"},
        ),
        (
            "raw consumption series for the north yesterday",
            "series",
            {"region": "N", "start": "2026-11-28T00:00:00Z", "stop": "2026-11-29T00:00:00Z"},
        ),
        (
            "peak demand in the Sudeste over the last 2 weeks",
            "consumption_peak",
            {"region": "SE/CO", "start": "2026-11-15T12:30:00Z"},
        ),
    ],
)
def test_questions_map_to_templates(question: str, template: str, expected: dict[str, str]) -> None:
    first = translate(question, NOW)
    second = translate(question, NOW)

    assert first == second
    assert first.template == template
    assert expected.items() <= first.params.items()
    first.validated()
    assert 0.5 < first.confidence <= 0.95


def test_stated_parameters_raise_the_confidence() -> None:
    vague = translate("peak demand", NOW)
    precise = translate("peak demand in the north in March 2024", NOW)
    assert precise.confidence > vague.confidence


@pytest.mark.parametrize("question", ["", "   ", "What is the meaning of life?", "hello"])
def test_unmapped_questions_list_answerable_ones(question: str) -> None:
    with pytest.raises(UntranslatableQuestionError) as caught:
        translate(question, NOW)
    assert caught.value.examples == list(EXAMPLE_QUESTIONS)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_breaker_opens_fails_fast_probes_once_and_closes() -> None:
    clock = Clock()
    seen: list[tuple[str, str]] = []
    breaker = CircuitBreaker("t", failure_threshold=3, cooldown_seconds=10, clock=clock)
    breaker.add_listener(lambda _name, old, new, _reason: seen.append((old, new)))

    for _ in range(2):
        breaker.before_call()
        breaker.record_failure("boom")
    breaker.before_call()
    breaker.record_success()  # resets the consecutive count
    for _ in range(3):
        breaker.before_call()
        breaker.record_failure("boom")
    assert breaker.state == "open"
    with pytest.raises(CircuitOpenError) as caught:
        breaker.before_call()
    assert caught.value.retry_after == 10

    clock.now = 10
    breaker.before_call()  # the probe
    assert breaker.state == "half_open"
    with pytest.raises(CircuitOpenError):
        breaker.before_call()  # only one probe at a time
    breaker.record_failure("still down")
    assert breaker.state == "open"
    clock.now = 15
    with pytest.raises(CircuitOpenError):
        breaker.before_call()
    clock.now = 20
    breaker.before_call()
    breaker.record_success()

    assert breaker.state == "closed"
    assert seen == [
        ("closed", "open"),
        ("open", "half_open"),
        ("half_open", "open"),
        ("open", "half_open"),
        ("half_open", "closed"),
    ]


def test_breaker_opens_on_error_rate() -> None:
    breaker = CircuitBreaker(
        "r", failure_threshold=100, failure_rate=0.5, rate_window=10, rate_min_calls=10
    )
    for i in range(10):
        breaker.before_call()
        if i % 2:
            breaker.record_failure("flaky")
        else:
            breaker.record_success()
    assert breaker.state == "open"
    assert "failure rate 50%" in breaker.transitions[-1][2]


def test_a_failing_listener_does_not_break_the_call() -> None:
    breaker = CircuitBreaker("l", failure_threshold=1)

    def broken(*_: Any) -> None:
        raise RuntimeError("metrics down")

    breaker.add_listener(broken)
    breaker.record_failure("x")
    assert breaker.state == "open"


def test_no_backend_gives_503_and_an_unexpected_error_no_trace() -> None:
    class Down:
        def database(self, params: Any) -> str:
            return "db"

        def answer(self, params: Any) -> Any:
            raise BackendUnavailableError("down", 7.2)

    status, body, headers = QueryService(Down(), None).handle(
        {"template": "latest", "params": RANGE}
    )
    assert (status, headers) == (503, {"Retry-After": "8"})

    class Broken(Down):
        def answer(self, params: Any) -> Any:
            raise KeyError("secret detail")

    status, body, _ = QueryService(Broken(), None).handle({"template": "latest", "params": RANGE})
    assert status == 500
    assert "secret detail" not in json.dumps(body)


class Scripted(http.server.BaseHTTPRequestHandler):
    """Answers `/query` with the next scripted status; records what it was sent."""

    script: ClassVar[list[int]] = []
    seen: ClassVar[list[dict[str, list[str]]]] = []

    def do_GET(self) -> None:
        self.seen.append(urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query))
        status = self.script.pop(0) if self.script else 200
        body = {"results": [{"statement_id": 0, "series": [{"name": "m"}]}]}
        if status == 400:
            body = {"error": "error parsing query"}
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def scripted() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Scripted)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    Scripted.script, Scripted.seen = [], []
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_reads_retry_429_and_5xx_with_backoff_and_send_bind_parameters(scripted: str) -> None:
    influxdb = InfluxDBResource(url=scripted, token="t", backoff_seconds=0.001, max_retries=3)
    Scripted.script = [503, 429, 502]

    series = influxdb.influxql("db", "SELECT 1 WHERE region = $r", {"r": "SE/CO'"})

    assert series == [{"name": "m"}]
    assert len(Scripted.seen) == 4
    assert json.loads(Scripted.seen[-1]["params"][0]) == {"r": "SE/CO'"}
    assert Scripted.seen[-1]["q"] == ["SELECT 1 WHERE region = $r"]
    assert influxdb.breaker().state == "closed"


def test_a_refused_statement_is_not_retried_and_does_not_trip_the_breaker(scripted: str) -> None:
    influxdb = InfluxDBResource(url=scripted, token="t", backoff_seconds=0.001, breaker_failures=1)
    Scripted.script = [400, 400]

    for _ in range(2):
        with pytest.raises(InfluxQLError):
            influxdb.influxql("db", "SELEC")

    assert len(Scripted.seen) == 2
    assert influxdb.breaker().state == "closed"


def test_lambda_handler_answers_an_api_gateway_event_with_the_same_handler() -> None:
    class Down:
        def database(self, params: Any) -> str:
            return "db"

        def answer(self, params: Any) -> Any:
            raise BackendUnavailableError("down", 3)

    api._LAMBDA_SERVICE["service"] = QueryService(Down(), None)
    try:
        body = json.dumps({"template": "latest", "params": {**RANGE, "region": "N'"}})
        bad = api.lambda_handler({"body": body, "isBase64Encoded": False}, None)
        encoded = base64.b64encode(json.dumps({"template": "latest", "params": RANGE}).encode())
        down = api.lambda_handler({"body": encoded.decode(), "isBase64Encoded": True}, None)
    finally:
        api._LAMBDA_SERVICE.clear()

    assert bad["statusCode"] == 400
    assert json.loads(bad["body"])["fields"][0]["field"] == "params.region"
    assert down["statusCode"] == 503
    assert down["headers"]["Retry-After"] == "3"
