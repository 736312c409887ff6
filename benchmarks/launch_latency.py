"""Launch latency: ``launch_run`` to the run worker's first event, Lambda launcher vs default.

One SQLite instance whose routing launcher sends untagged runs through the local Lambda
endpoint (the real handler in a subprocess, as the local stack runs it) and runs tagged
``ons/launcher: long_running`` to Dagster's DefaultRunLauncher (the code server starts the
worker). The same one-asset job is launched alternately through each, and the script prints
the time from ``instance.launch_run`` to the first event the worker process writes and to
RUN_SUCCESS.

    .venv/bin/python benchmarks/launch_latency.py [--runs 5]
"""

import argparse
import os
import secrets
import statistics
import tempfile
import time
from pathlib import Path

from dagster import Definitions, MaterializeResult, asset, define_asset_job, in_process_executor


@asset
def latency_probe() -> MaterializeResult:
    """One trivial materialisation, so the measurement is the launch path alone."""
    return MaterializeResult(metadata={"pid": os.getpid()})


probe_job = define_asset_job("latency_probe_job", selection=[latency_probe])
defs = Definitions(assets=[latency_probe], jobs=[probe_job], executor=in_process_executor)


def _measure(instance, request, tags: dict[str, str]) -> tuple[float, float]:
    from dagster import DagsterEventType

    remote_job = (
        request.get_code_location("latency")
        .get_repository("__repository__")
        .get_full_job(probe_job.name)
    )
    run = instance.create_run_for_job(
        job_def=defs.resolve_job_def(probe_job.name),
        tags=tags,
        remote_job_origin=remote_job.get_remote_origin(),
        job_code_origin=remote_job.get_python_origin(),
    )
    started = time.time()
    instance.launch_run(run.run_id, request)
    deadline = time.monotonic() + 120
    while not instance.get_run_by_id(run.run_id).is_finished:
        if time.monotonic() > deadline:
            raise RuntimeError(f"run {run.run_id} did not finish")
        time.sleep(0.02)
    logs = instance.all_logs(run.run_id)
    events = [e for e in logs if e.dagster_event is not None]
    worker_pid = next(
        e.dagster_event.pid for e in events if e.dagster_event_type == DagsterEventType.RUN_START
    )
    first = min(e.timestamp for e in events if e.dagster_event.pid == worker_pid)
    success = next(
        e.timestamp for e in logs if e.dagster_event_type == DagsterEventType.RUN_SUCCESS
    )
    return first - started, success - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per launcher (default 5)")
    args = parser.parse_args()

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    os.environ.setdefault("AWS_DEFAULT_REGION", "eu-west-2")
    # The endpoint and the launcher share its secret through the environment.
    os.environ.setdefault("ONS_LAMBDA_ENDPOINT_SECRET", secrets.token_urlsafe(32))
    from dagster import DagsterInstance
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import WorkspaceFileTarget

    from ons_pipeline.local.lambda_endpoint import LocalLambda

    with tempfile.TemporaryDirectory(prefix="ons-launch-bench-") as home, LocalLambda() as fn:
        Path(home, "dagster.yaml").write_text(
            f"""
run_launcher:
  module: ons_pipeline.platform.launcher
  class: RoutingRunLauncher
  config:
    default:
      module: ons_pipeline.platform.launcher
      class: LambdaRunLauncher
      config: {{endpoint_url: "{fn.url}", region_name: eu-west-2}}
    long_running: {{module: dagster._core.launcher, class: DefaultRunLauncher}}
telemetry: {{enabled: false}}
"""
        )
        workspace = Path(home, "workspace.yaml")
        workspace.write_text(
            f"load_from:\n  - python_file:\n      relative_path: {Path(__file__).resolve()}\n"
            "      attribute: defs\n      location_name: latency\n"
        )
        with (
            DagsterInstance.from_config(home) as instance,
            WorkspaceProcessContext(instance, WorkspaceFileTarget(paths=[str(workspace)])) as ctx,
        ):
            request = ctx.create_request_context()
            results: dict[str, list[tuple[float, float]]] = {"lambda": [], "default": []}
            _measure(instance, request, {})  # warm-up: first imports, SQLite schema
            for _ in range(args.runs):
                results["lambda"].append(_measure(instance, request, {}))
                results["default"].append(
                    _measure(instance, request, {"ons/launcher": "long_running"})
                )

    print(f"launch_run -> worker's first event / -> RUN_SUCCESS, {args.runs} runs each (s)")
    for name, label in (
        ("lambda", "LambdaRunLauncher via local Lambda endpoint"),
        ("default", "DefaultRunLauncher (code server subprocess)"),
    ):
        first = [f for f, _ in results[name]]
        done = [s for _, s in results[name]]
        print(
            f"  {label:<46} first event median {statistics.median(first):.2f} "
            f"(min {min(first):.2f}, max {max(first):.2f}); "
            f"success median {statistics.median(done):.2f}"
        )


if __name__ == "__main__":
    main()
