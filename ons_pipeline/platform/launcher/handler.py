"""The run-worker Lambda's handler: runs ``dagster api execute_run`` for one launched run.

The worker is a child process so the handler can stop it: while it runs, the handler polls the
shared instance and, when the run turns CANCELING (``LambdaRunLauncher.terminate``), sends it
SIGTERM (Dagster's run worker treats it as an interrupt and records the run CANCELED).
"""

from __future__ import annotations

import base64
import json
import logging
import os
import signal
import subprocess  # nosec B404  # argv lists only, never a shell
import sys
import threading
import time
import zlib
from typing import TYPE_CHECKING, Any, Protocol

from dagster import DagsterInstance, DagsterRunStatus
from dagster._core.events import EngineEventData
from dagster._grpc.types import ExecuteRunArgs
from dagster._serdes import deserialize_value

from ons_pipeline.platform.launcher import payload

if TYPE_CHECKING:
    from collections.abc import Mapping

    from types_boto3_secretsmanager import SecretsManagerClient

logger = logging.getLogger("ons_pipeline.run_worker")

POLL_SECONDS = 0.5
# Time the worker gets to record the cancellation after SIGTERM before it is killed.
CANCEL_GRACE_SECONDS = 20.0
_STDERR_TAIL_BYTES = 4000
# JSON {"ENV_NAME": "secret id"}: secrets the worker reads through `{env: ...}` in the instance
# config (the Postgres password), fetched from Secrets Manager once per container.
SECRET_ENV_VAR = "ONS_SECRET_ENV"  # nosec B105  # a variable's name, not a secret


class LambdaContext(Protocol):
    aws_request_id: str
    function_name: str

    def get_remaining_time_in_millis(self) -> int: ...


class RunWorkerError(RuntimeError):
    """The run worker could not run; Lambda reports it as a FunctionError."""


def handler(event: Any, context: LambdaContext) -> dict[str, Any]:
    """Lambda entry point (``ons_pipeline.platform.launcher.handler.handler``)."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s %(message)s")
    parsed = payload.parse_event(event)
    args_json = _execute_run_args(parsed)
    args = deserialize_value(args_json, ExecuteRunArgs)
    if args.instance_ref is None:
        raise RunWorkerError(f"run {args.run_id}: the payload has no instance ref")
    deadline = time.time() + context.get_remaining_time_in_millis() / 1000.0
    export_secrets()
    with DagsterInstance.from_ref(args.instance_ref) as instance:
        return run_worker(instance, args.run_id, args_json, context.aws_request_id, deadline)


def run_worker(
    instance: DagsterInstance,
    run_id: str,
    args_json: str,
    request_id: str,
    deadline: float,
) -> dict[str, Any]:
    """Run the worker for ``run_id`` to completion or cancellation; returns a summary."""
    run = instance.get_run_by_id(run_id)
    if run is None:
        raise RunWorkerError(f"run {run_id} is not in the instance the payload points at")
    if run.status == DagsterRunStatus.CANCELING:
        instance.report_run_canceled(run, message="Run canceled before its Lambda worker started.")
        return {"run_id": run_id, "status": DagsterRunStatus.CANCELED.value, "exit_code": None}
    if run.is_finished or run.status == DagsterRunStatus.STARTED:
        # A repeated delivery of the same event: the first worker owns the run.
        logger.warning("run %s is already %s; not starting a second worker", run_id, run.status)
        return {"run_id": run_id, "status": run.status.value, "exit_code": None}

    instance.add_run_tags(
        run_id,
        {payload.REQUEST_ID_TAG: request_id, payload.DEADLINE_TAG: f"{deadline:.3f}"},
    )
    instance.report_engine_event(
        f"Lambda invocation {request_id} is starting the run worker.",
        run,
        EngineEventData({"Lambda request id": request_id, "Deadline (epoch)": deadline}),
    )
    proc = _start_worker(args_json)
    canceled, stderr_tail = _supervise(instance, run_id, proc)

    run = instance.get_run_by_id(run_id)
    if run is None:
        raise RunWorkerError(f"Run {run_id} is no longer in the instance.")
    if run.status == DagsterRunStatus.CANCELING:
        instance.report_run_canceled(run, message="Run worker stopped by the Lambda handler.")
    elif not run.is_finished:
        message = (
            f"The run worker exited with code {proc.returncode} without finishing the run."
            + (f" Its last output:\n{stderr_tail}" if stderr_tail else "")
        )
        instance.report_run_failed(run, message)
        raise RunWorkerError(message)
    run = instance.get_run_by_id(run_id)
    if run is None:
        raise RunWorkerError(f"Run {run_id} is no longer in the instance.")
    summary = {
        "run_id": run_id,
        "status": run.status.value,
        "exit_code": proc.returncode,
        "canceled": canceled,
    }
    logger.info("run worker finished: %s", json.dumps(summary))
    return summary


def export_secrets() -> None:
    """Put the secrets named by ``ONS_SECRET_ENV`` into the environment, if not there yet."""
    spec = os.environ.get(SECRET_ENV_VAR)
    if not spec:
        return
    wanted = {name: sid for name, sid in json.loads(spec).items() if name not in os.environ}
    if not wanted:
        return
    import boto3

    client: SecretsManagerClient = boto3.client("secretsmanager")
    for name, secret_id in wanted.items():
        os.environ[name] = client.get_secret_value(SecretId=secret_id)["SecretString"]


def _execute_run_args(event: Mapping[str, Any]) -> str:
    pointer = event.get("payload_s3")
    if pointer is None:
        return event["execute_run_args"]
    import boto3

    body = (
        boto3.client("s3").get_object(Bucket=pointer["bucket"], Key=pointer["key"])["Body"].read()
    )
    stored = payload.parse_event(body)
    if stored.get("run_id") != event["run_id"] or "execute_run_args" not in stored:
        raise RunWorkerError(
            f"s3://{pointer['bucket']}/{pointer['key']} does not hold run {event['run_id']}"
        )
    return stored["execute_run_args"]


def _start_worker(args_json: str) -> subprocess.Popen[bytes]:
    # Through the environment, compressed: one argv string is capped at 128 KB on Linux and
    # the payload may be larger. The interpreter is this one (the image's), not the path the
    # launching process recorded in the job origin.
    compressed = base64.b64encode(zlib.compress(args_json.encode())).decode()
    env = {**os.environ, "DAGSTER_COMPRESSED_EXECUTE_RUN_ARGS": compressed}
    env.pop("DAGSTER_EXECUTE_RUN_ARGS", None)
    return subprocess.Popen(  # nosec B603  # argv list, no shell
        [sys.executable, "-m", "dagster", "api", "execute_run"],
        env=env,
        stdin=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _supervise(
    instance: DagsterInstance, run_id: str, proc: subprocess.Popen[bytes]
) -> tuple[bool, str]:
    """Wait for the worker, stopping it if the run turns CANCELING.

    Returns:
        Whether it was stopped, and the tail of its stderr (which is also passed through).
    """
    stderr_chunks: list[bytes] = []

    def drain() -> None:
        for line in proc.stderr or ():  # a pipe: _start_worker asks for one
            sys.stderr.buffer.write(line)
            stderr_chunks.append(line)
            if len(stderr_chunks) > 200:
                del stderr_chunks[:100]

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    canceled = False
    while proc.poll() is None:
        time.sleep(POLL_SECONDS)
        if canceled:
            continue
        run = instance.get_run_by_id(run_id)
        if run is not None and run.status == DagsterRunStatus.CANCELING:
            logger.info("run %s is canceling: stopping the worker (pid %s)", run_id, proc.pid)
            canceled = True
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=CANCEL_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                proc.kill()
    proc.wait()
    reader.join(timeout=5)
    tail = b"".join(stderr_chunks)[-_STDERR_TAIL_BYTES:].decode(errors="replace").strip()
    return canceled, tail
