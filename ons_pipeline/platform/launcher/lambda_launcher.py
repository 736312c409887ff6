"""``LambdaRunLauncher``: each run executes in a real ``dagster api execute_run`` worker on Lambda.

Like dagster-aws's ``EcsRunLauncher`` it sends the worker ``ExecuteRunArgs`` (job origin, run
id, instance ref) rather than run config, so the worker loads the code location, reads the
run from the shared instance and writes every event back to it.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any, Literal, Self, overload

import boto3
import yaml
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError
from dagster import (
    Field,
    IntSource,
    Noneable,
    StringSource,
)
from dagster import (
    _check as check,
)
from dagster._core.errors import DagsterLaunchFailedError
from dagster._core.events import EngineEventData
from dagster._core.launcher.base import (
    CheckRunHealthResult,
    LaunchRunContext,
    RunLauncher,
    WorkerStatus,
)
from dagster._core.storage.tags import RUN_WORKER_ID_TAG
from dagster._grpc.types import ExecuteRunArgs
from dagster._serdes import ConfigurableClass, serialize_value
from dagster._serdes.config_class import ConfigurableClassData

from ons_pipeline.platform.launcher import payload
from ons_pipeline.resources import defaults

if TYPE_CHECKING:
    from collections.abc import Mapping

    from botocore.awsrequest import AWSRequest
    from dagster._core.storage.dagster_run import DagsterRun
    from types_boto3_lambda import LambdaClient
    from types_boto3_s3 import S3Client

# Seconds past the invocation's deadline before the health check calls the worker dead: the
# handler's last event writes may still be in flight when Lambda stops it.
DEFAULT_HEALTH_GRACE_SECONDS = 30


class LambdaRunLauncher(RunLauncher, ConfigurableClass):
    """Launches each run as an asynchronous invocation of the run-worker Lambda function."""

    def __init__(
        self,
        inst_data: ConfigurableClassData | None = None,
        function: str = defaults.LAMBDA_RUN_WORKER_FUNCTION,
        region_name: str | None = None,
        endpoint_url: str | None = None,
        payload_bucket: str = defaults.LAUNCHER_PAYLOAD_BUCKET,
        read_timeout: int = 30,
        function_timeout_seconds: int = defaults.LAMBDA_TIMEOUT_SECONDS,
        health_grace_seconds: int = DEFAULT_HEALTH_GRACE_SECONDS,
    ) -> None:
        self._inst_data = inst_data
        self.function = check.str_param(function, "function")
        self.region_name = region_name or None
        self.endpoint_url = endpoint_url or None
        self.payload_bucket = check.str_param(payload_bucket, "payload_bucket")
        self.read_timeout = check.int_param(read_timeout, "read_timeout")
        self.function_timeout_seconds = check.int_param(
            function_timeout_seconds, "function_timeout_seconds"
        )
        self.health_grace_seconds = check.int_param(health_grace_seconds, "health_grace_seconds")
        self._clients: dict[str, Any] = {}
        self._clients_lock = threading.Lock()
        super().__init__()

    @property
    def inst_data(self) -> ConfigurableClassData | None:
        return self._inst_data

    @classmethod
    def config_type(cls) -> dict[str, Field]:
        return {
            "function": Field(
                StringSource,
                is_required=False,
                default_value=defaults.LAMBDA_RUN_WORKER_FUNCTION,
                description=(
                    "Name or ARN of the run-worker Lambda function. A job (or a single run) "
                    f"can choose another with the `{payload.FUNCTION_TAG}` tag."
                ),
            ),
            "region_name": Field(
                Noneable(StringSource),
                is_required=False,
                default_value=None,
                description="AWS region of the function; boto3's default chain when unset.",
            ),
            "endpoint_url": Field(
                Noneable(StringSource),
                is_required=False,
                default_value=None,
                description=(
                    "Lambda endpoint to call instead of AWS: the local stack's endpoint "
                    f"(`{{env: {defaults.LAMBDA_ENDPOINT_URL_ENV}}}`). Unset in production."
                ),
            ),
            "payload_bucket": Field(
                StringSource,
                is_required=False,
                default_value=defaults.LAUNCHER_PAYLOAD_BUCKET,
                description=(
                    "Bucket for invocation payloads over Lambda's 256 KB asynchronous limit; "
                    "the event then carries only a pointer to the object."
                ),
            ),
            "read_timeout": Field(
                IntSource,
                is_required=False,
                default_value=30,
                description="Seconds to wait for Lambda to answer an Invoke call.",
            ),
            "function_timeout_seconds": Field(
                IntSource,
                is_required=False,
                default_value=defaults.LAMBDA_TIMEOUT_SECONDS,
                description=(
                    "The function's configured timeout (900 at most). Used by the health "
                    "check when a run has no deadline recorded by the handler."
                ),
            ),
            "health_grace_seconds": Field(
                IntSource,
                is_required=False,
                default_value=DEFAULT_HEALTH_GRACE_SECONDS,
                description=(
                    "Seconds past an invocation's deadline before run monitoring marks a run "
                    "that has not finished as FAILED."
                ),
            ),
        }

    @classmethod
    def from_config_value(
        cls, inst_data: ConfigurableClassData, config_value: Mapping[str, Any]
    ) -> Self:
        return cls(inst_data=inst_data, **config_value)

    @overload
    def _client(self, service: Literal["lambda"]) -> LambdaClient: ...

    @overload
    def _client(self, service: Literal["s3"]) -> S3Client: ...

    def _client(self, service: Literal["lambda", "s3"]) -> LambdaClient | S3Client:
        """One client per service for the launcher's life (the daemon's), thread-safe."""
        with self._clients_lock:
            if service not in self._clients:
                session = boto3.session.Session(region_name=self.region_name)
                config = Config(
                    retries={"mode": "standard", "max_attempts": 3},
                    connect_timeout=10,
                    read_timeout=self.read_timeout,
                )
                endpoint = self.endpoint_url if service == "lambda" else None
                client = session.client(service, endpoint_url=endpoint, config=config)
                if endpoint:
                    _send_endpoint_secret(client)
                self._clients[service] = client
            return self._clients[service]

    def function_for_run(self, run: DagsterRun) -> str:
        return run.tags.get(payload.FUNCTION_TAG) or self.function

    def build_event(self, context: LaunchRunContext) -> tuple[dict[str, Any], bytes]:
        """The inline event for a run and its encoded bytes; refuses literal secrets."""
        run = context.dagster_run
        job_origin = check.not_none(
            context.job_code_origin, f"run {run.run_id} has no job code origin to execute"
        )
        instance_ref = self._instance.get_ref()
        leaks = sorted(_instance_ref_secrets(instance_ref))
        if leaks:
            raise DagsterLaunchFailedError(
                "The instance configuration holds literal secret values at "
                f"{', '.join(leaks)}; they would be copied into the Lambda payload. Read them "
                "from the environment in dagster.yaml instead (e.g. `password: {env: "
                "DAGSTER_PG_PASSWORD}`)."
            )
        args = ExecuteRunArgs(job_origin=job_origin, run_id=run.run_id, instance_ref=instance_ref)
        event = payload.inline_event(run.run_id, serialize_value(args))
        return event, payload.encode(event)

    def launch_run(self, context: LaunchRunContext) -> None:
        run = context.dagster_run
        function = self.function_for_run(run)
        _, body = self.build_event(context)
        payload_uri = None
        if len(body) > payload.MAX_EVENT_PAYLOAD_BYTES:
            key = payload.payload_key(run.run_id)
            self._put_payload(key, body, len(body))
            payload_uri = f"s3://{self.payload_bucket}/{key}"
            body = payload.encode(payload.pointer_event(run.run_id, self.payload_bucket, key))

        try:
            response = self._client("lambda").invoke(
                FunctionName=function, InvocationType="Event", Payload=body
            )
        except (ClientError, BotoCoreError) as error:
            raise DagsterLaunchFailedError(
                self._invoke_error(error, function, len(body))
            ) from error
        if response.get("FunctionError"):
            raise DagsterLaunchFailedError(
                f"Lambda function {function} refused the run: {response.get('FunctionError')}"
            )
        request_id = response.get("ResponseMetadata", {}).get("RequestId") or ""
        tags = {
            payload.FUNCTION_TAG: function,
            payload.REQUEST_ID_TAG: request_id,
            RUN_WORKER_ID_TAG: uuid.uuid4().hex[:6],
        }
        if payload_uri:
            tags[payload.PAYLOAD_URI_TAG] = payload_uri
        self._instance.add_run_tags(run.run_id, tags)
        metadata = {
            "Lambda function": function,
            "Lambda request id": request_id,
            "Payload bytes": len(body),
        }
        if payload_uri:
            metadata["Payload object"] = payload_uri
        self._instance.report_engine_event(
            message=f"Launched run in Lambda function {function} (request {request_id})",
            dagster_run=run,
            engine_event_data=EngineEventData(metadata),
            cls=self.__class__,
        )

    def _put_payload(self, key: str, body: bytes, size: int) -> None:
        try:
            self._client("s3").put_object(
                Bucket=self.payload_bucket,
                Key=key,
                Body=body,
                ContentType="application/json",
            )
        except (ClientError, BotoCoreError) as error:
            code = _error_code(error)
            hint = {
                "NoSuchBucket": "create it (deploy/terraform) or set run_launcher.config."
                "payload_bucket",
                "AccessDenied": "grant the launcher's role s3:PutObject on it",
            }.get(code, "check the bucket exists and the launcher may write to it")
            raise DagsterLaunchFailedError(
                f"The run's Lambda payload ({size} bytes) is over the 256 KB asynchronous "
                f"limit and could not be stored in s3://{self.payload_bucket}/{key} "
                f"({code or error}): {hint}."
            ) from error

    def _invoke_error(self, error: Exception, function: str, size: int) -> str:
        code = _error_code(error)
        where = f"at {self.endpoint_url}" if self.endpoint_url else f"in {self._region()}"
        if isinstance(error, EndpointConnectionError):
            return (
                f"Cannot reach Lambda {where}: {error}. Locally, start the stack (`ons-stack "
                f"up`) and set endpoint_url from {defaults.LAMBDA_ENDPOINT_URL_ENV}; in "
                "production leave endpoint_url unset."
            )
        if code == "ResourceNotFoundException":
            return (
                f"Lambda function {function} does not exist {where}. Deploy it "
                "(deploy/terraform), or fix run_launcher.config.function or the job's "
                f"`{payload.FUNCTION_TAG}` tag."
            )
        if code in {"AccessDeniedException", "AccessDenied", "UnrecognizedClientException"}:
            return (
                f"Not allowed to invoke Lambda function {function} {where} ({code}): grant "
                "lambda:InvokeFunction on it to the role the webserver and daemon run as."
            )
        if code in {"RequestTooLargeException", "RequestEntityTooLargeException"}:
            return (
                f"Lambda refused the {size}-byte payload for {function} as too large: payloads "
                f"over {payload.MAX_EVENT_PAYLOAD_BYTES} bytes should go through "
                f"s3://{self.payload_bucket}; check payload_bucket is set."
            )
        if code in {"TooManyRequestsException", "ThrottlingException"}:
            return (
                f"Lambda throttled the invocation of {function} ({code}) after retries: lower "
                "the run queue's max_concurrent_runs or raise the function's concurrency."
            )
        return f"Invoking Lambda function {function} {where} failed: {error}"

    def _region(self) -> str:
        return self._client("lambda").meta.region_name or "the default region"

    def terminate(self, run_id: str) -> bool:
        """Mark the run CANCELING; the handler sees it and stops the worker (CANCELED)."""
        check.str_param(run_id, "run_id")
        run = self._instance.get_run_by_id(run_id)
        if not run or run.is_finished:
            return False
        self._instance.report_run_canceling(
            run,
            message=(
                "Canceling run: the Lambda handler "
                f"({run.tags.get(payload.REQUEST_ID_TAG, 'not yet started')}) stops its worker."
            ),
        )
        return True

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: DagsterRun) -> CheckRunHealthResult:
        worker_id = run.tags.get(RUN_WORKER_ID_TAG)
        deadline = self._deadline(run)
        if deadline is None:
            return CheckRunHealthResult(WorkerStatus.RUNNING, run_worker_id=worker_id)
        overdue = time.time() - deadline
        if overdue <= self.health_grace_seconds:
            return CheckRunHealthResult(WorkerStatus.RUNNING, run_worker_id=worker_id)
        function = self.function_for_run(run)
        return CheckRunHealthResult(
            WorkerStatus.FAILED,
            f"The run outlived its Lambda invocation: function {function} (request "
            f"{run.tags.get(payload.REQUEST_ID_TAG, 'unknown')}) was stopped at its timeout "
            f"{overdue:.0f}s ago without the run finishing. Lambda runs at most 15 minutes: "
            f"tag the job `{payload.ROUTE_TAG}: {payload.LONG_RUNNING}` to run it on the "
            "long-running launcher, or make it smaller.",
            run_worker_id=worker_id,
        )

    def _deadline(self, run: DagsterRun) -> float | None:
        recorded = run.tags.get(payload.DEADLINE_TAG)
        if recorded:
            return float(recorded)
        record = self._instance.get_run_record_by_id(run.run_id)
        if record is None or record.start_time is None:
            return None
        return record.start_time + self.function_timeout_seconds


def _send_endpoint_secret(client: LambdaClient | S3Client) -> None:
    """Add the local endpoint's secret (from the environment, as the stack's .env sets it).

    Only for an explicit endpoint_url: the local stack's Lambda endpoint refuses callers
    without it, the way AWS refuses an unsigned request. Production sends nothing extra.
    """
    secret = os.environ.get(defaults.LAMBDA_ENDPOINT_SECRET_ENV)
    if not secret:
        return

    def add_header(request: AWSRequest, **_: Any) -> None:
        request.headers[defaults.LAMBDA_ENDPOINT_SECRET_HEADER] = secret

    client.meta.events.register("before-sign.lambda", add_header)


def _error_code(error: Exception) -> str:
    if isinstance(error, ClientError):
        return str(error.response.get("Error", {}).get("Code", ""))
    return ""


def _instance_ref_secrets(instance_ref: Any) -> list[str]:
    found: list[str] = []
    for name in instance_ref._fields:
        value = getattr(instance_ref, name)
        if isinstance(value, ConfigurableClassData):
            config = yaml.safe_load(value.config_yaml) or {}
            found.extend(f"{name}.{path}" for path in payload.literal_secrets(config))
    found.extend(f"settings.{path}" for path in payload.literal_secrets(instance_ref.settings))
    return found
