"""Runs launched from a real instance through the Lambda Invoke API into the real handler."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from dagster import DagsterEventType, DagsterInstance, DagsterRunStatus
from dagster._core.errors import DagsterLaunchFailedError
from dagster._core.launcher import WorkerStatus
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._core.workspace.load_target import WorkspaceFileTarget
from dagster._daemon.monitoring.run_monitoring import monitor_started_run

from ons_pipeline.local.demo.sales_data import generate_totesys, land_packets
from ons_pipeline.local.lambda_endpoint import LocalFunction, LocalLambda
from ons_pipeline.platform.launcher import payload
from ons_pipeline.resources import defaults
from ons_pipeline_tests.integration.platform.conftest import (
    Harness,
    launcher_yaml,
    stack_environment,
    write_workspace,
)
from ons_pipeline_tests.integration.platform.launcher_jobs import FAILURE_TEXT

if TYPE_CHECKING:
    from collections.abc import Iterator

    from ons_pipeline.local.stack import LocalStack

pytestmark = pytest.mark.integration

FINISHED = {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}
SHORT_FUNCTION = "ons-run-worker-short"
SHORT_TIMEOUT_S = 12  # long enough for a worker to start on a busy 2-core machine


def sleep_config(seconds: float) -> dict[str, Any]:
    return {"ops": {"sleepy": {"config": {"seconds": seconds}}}}


def materialized(instance: DagsterInstance, run_id: str) -> list[str]:
    records = instance.get_records_for_run(
        run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION
    ).records
    return sorted(r.asset_key.to_user_string() for r in records if r.asset_key)


def test_launched_run_succeeds_with_events_from_the_worker(sqlite_harness: Harness) -> None:
    run_id = sqlite_harness.launch("ok_job")
    run = sqlite_harness.wait_for(run_id, FINISHED)
    assert run.status == DagsterRunStatus.SUCCESS, sqlite_harness.messages(run_id)
    assert run.tags[payload.FUNCTION_TAG] == defaults.LAMBDA_RUN_WORKER_FUNCTION
    assert run.tags[payload.REQUEST_ID_TAG]
    assert float(run.tags[payload.DEADLINE_TAG]) > time.time()
    assert payload.PAYLOAD_URI_TAG not in run.tags
    assert materialized(sqlite_harness.instance, run_id) == ["launched_asset"]
    messages = sqlite_harness.messages(run_id)
    assert any("Launched run in Lambda function ons-run-worker" in m for m in messages)
    assert any("is starting the run worker" in m for m in messages)


def test_the_real_sales_job_runs_end_to_end_in_the_lambda(
    sqlite_harness: Harness, stack_env: dict[str, str]
) -> None:
    s3 = boto3.client("s3", region_name=defaults.AWS_REGION)
    land_packets(s3, stack_env["ONS_INGESTION_BUCKET"], generate_totesys(300).packets)
    run_id = sqlite_harness.launch("sales_star_schema_job", location="ons_pipeline")
    run = sqlite_harness.wait_for(run_id, FINISHED, timeout=120)
    assert run.status == DagsterRunStatus.SUCCESS, sqlite_harness.messages(run_id)[-20:]
    assets = materialized(sqlite_harness.instance, run_id)
    assert "fact_sales_order" in assets
    assert "dim_date" in assets


def test_failing_run_reaches_failure(sqlite_harness: Harness) -> None:
    run_id = sqlite_harness.launch("failing_job")
    run = sqlite_harness.wait_for(run_id, FINISHED)
    assert run.status == DagsterRunStatus.FAILURE
    failures = sqlite_harness.instance.get_records_for_run(
        run_id, of_type=DagsterEventType.STEP_FAILURE
    ).records
    assert FAILURE_TEXT in str(failures[0].event_log_entry.dagster_event.event_specific_data)


def test_terminated_run_reaches_canceled(sqlite_harness: Harness) -> None:
    run_id = sqlite_harness.launch("slow_job", run_config=sleep_config(60))
    sqlite_harness.wait_for(run_id, {DagsterRunStatus.STARTED, *FINISHED})
    started = time.monotonic()
    assert sqlite_harness.instance.run_launcher.terminate(run_id) is True
    run = sqlite_harness.wait_for(run_id, FINISHED, timeout=40)
    assert run.status == DagsterRunStatus.CANCELED, sqlite_harness.messages(run_id)[-10:]
    assert time.monotonic() - started < 30
    assert sqlite_harness.instance.run_launcher.terminate(run_id) is False


def test_long_running_runs_are_routed_to_the_second_launcher(sqlite_harness: Harness) -> None:
    run_id = sqlite_harness.launch("long_job", run_config=sleep_config(0.1))
    run = sqlite_harness.wait_for(run_id, FINISHED)
    assert run.status == DagsterRunStatus.SUCCESS
    assert run.tags[payload.ROUTE_TAG] == payload.LONG_RUNNING
    assert payload.FUNCTION_TAG not in run.tags  # never sent to Lambda


def test_missing_function_fails_the_launch_with_a_fix(sqlite_harness: Harness) -> None:
    with pytest.raises(DagsterLaunchFailedError, match="does not exist") as raised:
        sqlite_harness.launch("ok_job", tags={payload.FUNCTION_TAG: "no-such-function"})
    assert "deploy/terraform" in str(raised.value)
    runs = sqlite_harness.instance.get_runs()
    assert runs[0].status == DagsterRunStatus.FAILURE


def test_payload_over_256_kb_goes_through_the_bucket(
    big_payload_harness: Harness, stack_env: dict[str, str]
) -> None:
    run_id = big_payload_harness.launch("ok_job")
    run = big_payload_harness.wait_for(run_id, FINISHED)
    assert run.status == DagsterRunStatus.SUCCESS, big_payload_harness.messages(run_id)[-10:]
    uri = run.tags[payload.PAYLOAD_URI_TAG]
    bucket, key = uri.removeprefix("s3://").split("/", 1)
    assert bucket == defaults.LAUNCHER_PAYLOAD_BUCKET
    stored = boto3.client("s3", region_name=defaults.AWS_REGION).get_object(Bucket=bucket, Key=key)
    assert stored["ContentLength"] > payload.MAX_EVENT_PAYLOAD_BYTES
    assert materialized(big_payload_harness.instance, run_id) == ["launched_asset"]


@pytest.fixture
def short_lambda_harness(
    local_stack: LocalStack, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Harness]:
    """A Lambda whose timeout (12 s) is shorter than the run: Lambda kills the worker."""
    home = tmp_path_factory.mktemp("lambda_short_home")
    env = {**__import__("os").environ, **local_stack.env}
    with (
        stack_environment(local_stack),
        LocalLambda(
            [LocalFunction(SHORT_FUNCTION, timeout_seconds=SHORT_TIMEOUT_S)], env=env
        ) as fn,
    ):
        (home / "dagster.yaml").write_text(launcher_yaml(fn.url, function=SHORT_FUNCTION))
        workspace = write_workspace(home)
        with (
            DagsterInstance.from_config(str(home)) as instance,
            WorkspaceProcessContext(instance, WorkspaceFileTarget(paths=[str(workspace)])) as ctx,
        ):
            yield Harness(instance, ctx)


def test_over_time_run_is_reported_failed_by_the_health_check(
    short_lambda_harness: Harness,
) -> None:
    harness = short_lambda_harness
    launcher = harness.instance.run_launcher
    run_id = harness.launch("slow_job", run_config=sleep_config(60))
    run = harness.wait_for(run_id, {DagsterRunStatus.STARTED, *FINISHED})
    assert run.status == DagsterRunStatus.STARTED
    assert launcher.supports_check_run_worker_health
    assert launcher.check_run_worker_health(run).status == WorkerStatus.RUNNING

    deadline = float(run.tags[payload.DEADLINE_TAG])
    time.sleep(max(0.0, deadline - time.time()) + 2.5)  # past the timeout and the 1 s grace
    run = harness.instance.get_run_by_id(run_id)
    assert run is not None
    assert run.status == DagsterRunStatus.STARTED  # the killed worker could not say so
    health = launcher.check_run_worker_health(run)
    assert health.status == WorkerStatus.FAILED
    assert "outlived its Lambda invocation" in (health.msg or "")

    import logging

    record = harness.instance.get_run_record_by_id(run_id)
    with harness.workspace.create_request_context() as request:
        monitor_started_run(harness.instance, request, record, logging.getLogger("test"))
    run = harness.wait_for(run_id, FINISHED, timeout=5)
    assert run.status == DagsterRunStatus.FAILURE


def test_run_on_a_postgres_backed_instance(postgres_harness: Harness) -> None:
    from dagster_postgres import PostgresRunStorage

    from ons_pipeline_tests.integration.platform.postgres import PASSWORD

    instance = postgres_harness.instance
    assert isinstance(instance.run_storage, PostgresRunStorage)
    run_id = postgres_harness.launch("ok_job")
    run = postgres_harness.wait_for(run_id, FINISHED)
    assert run.status == DagsterRunStatus.SUCCESS, postgres_harness.messages(run_id)[-10:]
    assert materialized(instance, run_id) == ["launched_asset"]

    # The payload names the password's environment variable, never its value.
    from dagster._core.launcher import LaunchRunContext

    launcher = instance.run_launcher.default
    _, body = launcher.build_event(LaunchRunContext(run, None))
    assert PASSWORD.encode() not in body
    assert b"ONS_TEST_PG_PASSWORD" in body
