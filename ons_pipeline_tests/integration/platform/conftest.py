"""A real Dagster instance whose run launcher invokes the run worker through Lambda's API."""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from dagster import DagsterInstance, DagsterRun, DagsterRunStatus
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._core.workspace.load_target import WorkspaceFileTarget

from ons_pipeline.local.lambda_endpoint import LocalLambda
from ons_pipeline.resources import defaults
from ons_pipeline_tests.integration.platform.postgres import (
    PASSWORD,
    PASSWORD_ENV,
    Postgres,
    PostgresUnavailable,
    postgres_server,
)
from ons_pipeline_tests.servers import server_unavailable

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

    from ons_pipeline.local.stack import LocalStack

REPO_ROOT = Path(__file__).resolve().parents[3]
TEST_LOCATION = "launcher_tests"
TEST_MODULE = "ons_pipeline_tests.integration.platform.launcher_jobs"
FINISHED = {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}


def launcher_yaml(lambda_url: str, function: str = defaults.LAMBDA_RUN_WORKER_FUNCTION) -> str:
    """The run_launcher block of dagster.yaml, as deploy/dagster.yaml has it but local."""
    return f"""
run_launcher:
  module: ons_pipeline.platform.launcher
  class: RoutingRunLauncher
  config:
    default:
      module: ons_pipeline.platform.launcher
      class: LambdaRunLauncher
      config:
        function: {function}
        endpoint_url: {lambda_url}
        region_name: {defaults.AWS_REGION}
        health_grace_seconds: 1
    long_running:
      module: dagster._core.launcher
      class: DefaultRunLauncher
telemetry:
  enabled: false
"""


def write_workspace(directory: Path, with_project: bool = False) -> Path:
    entries = [(TEST_MODULE, TEST_LOCATION)]
    if with_project:
        entries.append(("ons_pipeline.definitions", "ons_pipeline"))
    load_from = [
        {
            "python_module": {
                "module_name": module,
                "location_name": name,
                "working_directory": str(REPO_ROOT),
            }
        }
        for module, name in entries
    ]
    path = directory / "workspace.yaml"
    path.write_text(json.dumps({"load_from": load_from}))
    return path


@dataclass
class Harness:
    """An instance plus a workspace, launching runs the way the UI and schedules do."""

    instance: DagsterInstance
    workspace: WorkspaceProcessContext

    def launch(
        self,
        job_name: str,
        *,
        location: str = TEST_LOCATION,
        run_config: Mapping[str, Any] | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> str:
        request = self.workspace.create_request_context()
        code_location = request.get_code_location(location)
        repository = code_location.get_repository("__repository__")
        remote_job = repository.get_full_job(job_name)
        if location == TEST_LOCATION:
            from ons_pipeline_tests.integration.platform.launcher_jobs import defs
        else:
            from ons_pipeline.definitions import defs
        run = self.instance.create_run_for_job(
            job_def=defs.resolve_job_def(job_name),
            run_config=run_config,
            tags={**remote_job.tags, **(tags or {})},
            remote_job_origin=remote_job.get_remote_origin(),
            job_code_origin=remote_job.get_python_origin(),
        )
        # What the queued run coordinator's daemon does once the run is dequeued.
        self.instance.launch_run(run.run_id, request)
        return run.run_id

    def wait_for(
        self, run_id: str, statuses: set[DagsterRunStatus], timeout: float = 60.0
    ) -> DagsterRun:
        deadline = time.monotonic() + timeout
        while True:
            run = self.instance.get_run_by_id(run_id)
            assert run is not None
            if run.status in statuses:
                return run
            if time.monotonic() > deadline:
                messages = self.messages(run_id)[-15:]
                raise AssertionError(
                    f"run {run_id} is {run.status}, not {statuses}, after {timeout}s:\n"
                    + "\n".join(messages)
                )
            time.sleep(0.2)

    def messages(self, run_id: str) -> list[str]:
        return [
            entry.dagster_event.message or "" if entry.dagster_event else entry.user_message
            for entry in self.instance.all_logs(run_id)
        ]


@pytest.fixture(scope="module")
def sqlite_harness(
    local_stack: LocalStack, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Harness]:
    """SQLite-backed instance configured with the routing + Lambda launcher."""
    home = tmp_path_factory.mktemp("lambda_home")
    (home / "dagster.yaml").write_text(launcher_yaml(local_stack.lambda_url))
    workspace = write_workspace(home, with_project=True)
    with (
        stack_environment(local_stack),
        DagsterInstance.from_config(str(home)) as instance,
        WorkspaceProcessContext(instance, WorkspaceFileTarget(paths=[str(workspace)])) as ctx,
    ):
        yield Harness(instance, ctx)


@contextlib.contextmanager
def stack_environment(stack: LocalStack, extra: Mapping[str, str] | None = None) -> Iterator[None]:
    """The stack's environment for a whole fixture (monkeypatch is per test)."""
    values = {**stack.env, **(extra or {})}
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="module")
def big_payload_harness(
    local_stack: LocalStack, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Harness]:
    """A code server whose container context makes every launch payload over 256 KB.

    Deployments set ``DAGSTER_CONTAINER_CONTEXT`` on code servers and it rides along in the
    job origin the launcher sends. One environment variable is capped at 128 KB on Linux, so
    the context is 60,000 non-ASCII characters (120 KB): JSON-escaped twice (``\\u00e9``) in
    the event, they take 420 KB.
    """
    home = tmp_path_factory.mktemp("lambda_big_home")
    (home / "dagster.yaml").write_text(launcher_yaml(local_stack.lambda_url))
    workspace = write_workspace(home)
    context = json.dumps({"lambda": {"notes": "\u00e9" * 60_000}}, ensure_ascii=False)
    with contextlib.ExitStack() as stack:
        stack.enter_context(stack_environment(local_stack))
        instance = stack.enter_context(DagsterInstance.from_config(str(home)))
        # Only the code server this context starts may see the variable.
        with stack_environment(local_stack, {"DAGSTER_CONTAINER_CONTEXT": context}):
            ctx = stack.enter_context(
                WorkspaceProcessContext(instance, WorkspaceFileTarget(paths=[str(workspace)]))
            )
        yield Harness(instance, ctx)


def postgres_yaml(server: Postgres) -> str:
    return f"""
storage:
  postgres:
    postgres_db:
      username: {server.user}
      password:
        env: {PASSWORD_ENV}
      hostname: {server.host}
      port: {server.port}
      db_name: {server.db_name}
      scheme: postgresql+psycopg2  # SQLAlchemy 2.1 would pick psycopg 3, not installed
"""


@pytest.fixture(scope="module")
def postgres_harness(
    local_stack: LocalStack, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Harness]:
    """A Postgres-backed instance (dagster-postgres, the production storage).

    The password reaches the launcher and the Lambda only through ``{env: ...}``, as in
    production; the Lambda here is a local endpoint whose environment holds it.
    """
    try:
        server_cm = postgres_server()
        server = server_cm.__enter__()
    except PostgresUnavailable as error:
        server_unavailable(str(error))
    home = tmp_path_factory.mktemp("lambda_pg_home")
    workspace = write_workspace(home)
    env = {**os.environ, **local_stack.env, PASSWORD_ENV: PASSWORD}
    try:
        with (
            stack_environment(local_stack, {PASSWORD_ENV: PASSWORD}),
            LocalLambda(env=env) as endpoint,
        ):
            (home / "dagster.yaml").write_text(launcher_yaml(endpoint.url) + postgres_yaml(server))
            with (
                DagsterInstance.from_config(str(home)) as instance,
                WorkspaceProcessContext(
                    instance, WorkspaceFileTarget(paths=[str(workspace)])
                ) as ctx,
            ):
                yield Harness(instance, ctx)
    finally:
        server_cm.__exit__(None, None, None)
