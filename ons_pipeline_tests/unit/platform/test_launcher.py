"""The launcher's pure parts: events, secret screening, error messages, health, routing."""

from __future__ import annotations

import time

import pytest
from botocore.exceptions import ClientError
from dagster import DagsterRun
from dagster._core.launcher import DefaultRunLauncher, WorkerStatus

from ons_pipeline.platform.launcher import LambdaRunLauncher, RoutingRunLauncher, payload


def test_inline_and_pointer_events_round_trip() -> None:
    inline = payload.parse_event(payload.encode(payload.inline_event("r1", "{}")))
    assert inline["execute_run_args"] == "{}"
    pointer = payload.parse_event(payload.pointer_event("r1", "b", payload.payload_key("r1")))
    assert pointer["payload_s3"] == {"bucket": "b", "key": "runs/r1/event.json"}


@pytest.mark.parametrize(
    "event",
    [
        {},
        {"version": 1},
        {"version": 1, "run_id": "r"},
        {"version": 1, "run_id": "r", "payload_s3": {}},
    ],
)
def test_foreign_events_are_refused(event: dict[str, object]) -> None:
    with pytest.raises(payload.PayloadError):
        payload.parse_event(event)


def test_literal_secrets_are_found_and_env_references_are_not() -> None:
    config = {
        "postgres_db": {"username": "dagster", "password": {"env": "DAGSTER_PG_PASSWORD"}},
        "other": [{"postgres_url": "postgresql://u:hunter2@db:5432/d"}],
        "api_token": "abc",
    }
    assert sorted(payload.literal_secrets(config)) == ["api_token", "other[0].postgres_url"]


def _client_error(code: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": code}}, "Invoke")


@pytest.mark.parametrize(
    ("code", "fix"),
    [
        ("ResourceNotFoundException", "deploy/terraform"),
        ("AccessDeniedException", "lambda:InvokeFunction"),
        ("RequestTooLargeException", "payload_bucket"),
        ("TooManyRequestsException", "max_concurrent_runs"),
    ],
)
def test_invoke_errors_say_what_to_fix(code: str, fix: str) -> None:
    launcher = LambdaRunLauncher(endpoint_url="http://127.0.0.1:9")
    message = launcher._invoke_error(_client_error(code), "ons-run-worker", 10)
    assert fix in message
    assert "ons-run-worker" in message


def _run(tags: dict[str, str]) -> DagsterRun:
    return DagsterRun(job_name="j", run_id="r", tags=tags)


def test_health_is_running_until_the_deadline_then_failed() -> None:
    launcher = LambdaRunLauncher(health_grace_seconds=5)
    before = _run({payload.DEADLINE_TAG: str(time.time() + 60)})
    assert launcher.check_run_worker_health(before).status == WorkerStatus.RUNNING
    within_grace = _run({payload.DEADLINE_TAG: str(time.time() - 2)})
    assert launcher.check_run_worker_health(within_grace).status == WorkerStatus.RUNNING
    after = _run({payload.DEADLINE_TAG: str(time.time() - 30), payload.REQUEST_ID_TAG: "req"})
    result = launcher.check_run_worker_health(after)
    assert result.status == WorkerStatus.FAILED
    assert "req" in (result.msg or "")
    assert "long_running" in (result.msg or "")


def test_per_job_function_tag_overrides_the_default() -> None:
    launcher = LambdaRunLauncher(function="default-fn")
    assert launcher.function_for_run(_run({})) == "default-fn"
    assert launcher.function_for_run(_run({payload.FUNCTION_TAG: "big-fn"})) == "big-fn"


def test_routing_by_tag() -> None:
    lambda_launcher, default = LambdaRunLauncher(), DefaultRunLauncher()
    router = RoutingRunLauncher(default=lambda_launcher, long_running=default)
    assert router.launcher_for(_run({})) is lambda_launcher
    assert router.launcher_for(_run({payload.ROUTE_TAG: payload.LONG_RUNNING})) is default
    assert router.supports_check_run_worker_health
    result = router.check_run_worker_health(_run({payload.ROUTE_TAG: payload.LONG_RUNNING}))
    assert result.status == WorkerStatus.RUNNING
