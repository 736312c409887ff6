"""A local endpoint that speaks the Lambda Invoke API and runs the project's real handler.

``POST /2015-03-31/functions/<name>/invocations`` with ``X-Amz-Invocation-Type`` ``Event``
(202, run in the background) or ``RequestResponse`` (200 with the handler's result, or the
``X-Amz-Function-Error`` header and Lambda's error body). Each invocation runs the handler in
its own process group, so Lambda's limits hold: request size (256 KB asynchronous, 6 MB
synchronous), the function's timeout (the whole group is killed, worker included) and a
``FunctionError`` for a handler that raises. ``GET .../configuration`` answers
GetFunctionConfiguration. Asynchronous invocations are not retried, matching the deployed
function's event-invoke config (a retried run worker would find its run already started).

Like AWS, which runs a function only for a SigV4-signed request, it runs code only for a
caller that sends the endpoint's secret in the ``X-Ons-Lambda-Secret`` header (401 otherwise):
the secret is ``ONS_LAMBDA_ENDPOINT_SECRET`` from its environment (the local stack makes one
per stack and hands it to the launcher the same way), or a random one it makes itself.

Start it with ``python -m ons_pipeline.local.lambda_endpoint --port N``; the local
stack does (``ONS_LAMBDA_ENDPOINT_URL``).
"""

from __future__ import annotations

import argparse
import contextlib
import hmac
import importlib
import json
import os
import re
import secrets
import signal
import subprocess  # nosec B404  # argv lists only, never a shell
import sys
import tempfile
import threading
import time
import traceback
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from ons_pipeline.platform.launcher import payload
from ons_pipeline.resources import defaults

HANDLER = "ons_pipeline.platform.launcher.handler.handler"
_MODULE = "ons_pipeline.local.lambda_endpoint"  # __name__ is __main__ under -m
ACCOUNT_ID = "123456789012"
_INVOKE_PATH = re.compile(r"^/2015-03-31/functions/([^/]+)/invocations/?$")
_CONFIG_PATH = re.compile(r"^/2015-03-31/functions/([^/]+)/configuration/?$")
_ARN = re.compile(r"^arn:aws[a-z-]*:lambda:[^:]+:\d+:function:([^:]+)(?::[^:]+)?$")


@dataclass
class LocalFunction:
    name: str
    handler: str = HANDLER
    timeout_seconds: int = defaults.LAMBDA_TIMEOUT_SECONDS
    memory_mb: int = defaults.LAMBDA_MEMORY_MB


@dataclass
class InvocationResult:
    request_id: str
    ok: bool
    body: Any
    duration_s: float


class LocalLambda:
    """The endpoint: a threaded HTTP server plus the processes of running invocations."""

    def __init__(
        self,
        functions: list[LocalFunction] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        region: str = defaults.AWS_REGION,
        env: dict[str, str] | None = None,
        secret: str | None = None,
    ) -> None:
        functions = functions or [LocalFunction(defaults.LAMBDA_RUN_WORKER_FUNCTION)]
        source = env if env is not None else os.environ
        self.secret = (
            secret or source.get(defaults.LAMBDA_ENDPOINT_SECRET_ENV) or secrets.token_urlsafe(32)
        )
        self.functions = {f.name: f for f in functions}
        self.region = region
        self.env = env
        self._procs: set[subprocess.Popen[bytes]] = set()
        self._lock = threading.Lock()
        self._stopping = False
        self.results: dict[str, InvocationResult] = {}
        self.server = ThreadingHTTPServer((host, port), _make_handler(self))
        self.server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> LocalLambda:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> LocalLambda:
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and kill every invocation still running (as a shut-down sandbox)."""
        self._stopping = True
        self.server.shutdown()
        self.server.server_close()
        with self._lock:
            procs = list(self._procs)
        for proc in procs:
            _kill_group(proc)

    def resolve(self, name_or_arn: str) -> LocalFunction | None:
        match = _ARN.match(name_or_arn)
        return self.functions.get(match.group(1) if match else name_or_arn)

    def authorized(self, headers: Any) -> bool:
        """Whether the request carries this endpoint's secret (constant-time compare)."""
        sent = headers.get(defaults.LAMBDA_ENDPOINT_SECRET_HEADER) or ""
        return hmac.compare_digest(sent.encode(), self.secret.encode())

    def function_arn(self, function: LocalFunction) -> str:
        return f"arn:aws:lambda:{self.region}:{ACCOUNT_ID}:function:{function.name}"

    def invoke(self, function: LocalFunction, body: bytes, request_id: str) -> InvocationResult:
        """Run the handler once in a subprocess, under the function's timeout."""
        started = time.monotonic()
        deadline_ms = int((time.time() + function.timeout_seconds) * 1000)
        env = {
            **(self.env if self.env is not None else os.environ),
            "AWS_LAMBDA_FUNCTION_NAME": function.name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(function.memory_mb),
            "AWS_LAMBDA_FUNCTION_TIMEOUT": str(function.timeout_seconds),
            "ONS_LOCAL_LAMBDA_REQUEST_ID": request_id,
            "ONS_LOCAL_LAMBDA_DEADLINE_MS": str(deadline_ms),
        }
        with tempfile.TemporaryDirectory(prefix="ons-lambda-") as tmp:
            result_path = Path(tmp) / "result.json"
            proc = subprocess.Popen(  # nosec B603  # argv list, no shell
                [sys.executable, "-m", _MODULE, "run-handler", function.handler, str(result_path)],
                stdin=subprocess.PIPE,
                env=env,
                start_new_session=True,
            )
            with self._lock:
                self._procs.add(proc)
            try:
                with contextlib.suppress(BrokenPipeError):
                    if proc.stdin is not None:  # a pipe: asked for above
                        proc.stdin.write(body)
                        proc.stdin.close()
                try:
                    proc.wait(timeout=function.timeout_seconds)
                except subprocess.TimeoutExpired:
                    _kill_group(proc)
                    return InvocationResult(
                        request_id,
                        ok=False,
                        body={
                            "errorMessage": (
                                f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} "
                                f"{request_id} Task timed out after "
                                f"{function.timeout_seconds:.2f} seconds"
                            ),
                            "errorType": "Sandbox.Timedout",
                        },
                        duration_s=time.monotonic() - started,
                    )
                _kill_group(proc)  # the handler returned: nothing it started outlives it
            finally:
                with self._lock:
                    self._procs.discard(proc)
            try:
                outcome = json.loads(result_path.read_text())
            except (OSError, ValueError):
                outcome = {
                    "ok": False,
                    "body": {
                        "errorMessage": f"RequestId: {request_id} Error: Runtime exited with "
                        f"error: exit status {proc.returncode}",
                        "errorType": "Runtime.ExitError",
                    },
                }
        return InvocationResult(
            request_id, outcome["ok"], outcome["body"], time.monotonic() - started
        )

    def invoke_async(self, function: LocalFunction, body: bytes, request_id: str) -> None:
        def run() -> None:
            result = self.invoke(function, body, request_id)
            self.results[request_id] = result
            if not result.ok and not self._stopping:
                sys.stderr.write(
                    f"local lambda: {function.name} {request_id} failed: "
                    f"{json.dumps(result.body)[:2000]}\n"
                )

        threading.Thread(target=run, name=f"invoke-{request_id}", daemon=True).start()


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)


def _make_handler(endpoint: LocalLambda) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            return

        def _send(
            self,
            status: int,
            body: Any,
            request_id: str,
            headers: dict[str, str] | None = None,
            raw: bytes | None = None,
        ) -> None:
            data = raw if raw is not None else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("x-amzn-RequestId", request_id)
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)

        def _error(self, status: int, code: str, message: str, request_id: str) -> None:
            self._send(
                status,
                {"Type": "User", "message": message},
                request_id,
                headers={"x-amzn-ErrorType": code},
            )

        def _refuse_unauthorized(self, request_id: str) -> bool:
            """Answer 401 unless the caller sent the secret; True when refused."""
            if endpoint.authorized(self.headers):
                return False
            self._error(
                401,
                "UnrecognizedClientException",
                f"The local Lambda endpoint needs its secret in the "
                f"{defaults.LAMBDA_ENDPOINT_SECRET_HEADER} header (the local stack's "
                f"{defaults.LAMBDA_ENDPOINT_SECRET_ENV})",
                request_id,
            )
            return True

        def do_GET(self) -> None:
            request_id = str(uuid.uuid4())
            match = _CONFIG_PATH.match(self.path.split("?")[0])
            if not match:
                self._send(200, {"service": "local lambda"}, request_id)
                return
            if self._refuse_unauthorized(request_id):
                return
            function = endpoint.resolve(match.group(1))
            if function is None:
                self._not_found(match.group(1), request_id)
                return
            self._send(
                200,
                {
                    "FunctionName": function.name,
                    "FunctionArn": endpoint.function_arn(function),
                    "Handler": function.handler,
                    "Timeout": function.timeout_seconds,
                    "MemorySize": function.memory_mb,
                    "PackageType": "Image",
                    "State": "Active",
                },
                request_id,
            )

        def _not_found(self, name: str, request_id: str) -> None:
            self._error(
                404,
                "ResourceNotFoundException",
                f"Function not found: arn:aws:lambda:{endpoint.region}:{ACCOUNT_ID}:"
                f"function:{name}",
                request_id,
            )

        def do_POST(self) -> None:
            request_id = str(uuid.uuid4())
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            if self._refuse_unauthorized(request_id):
                return
            match = _INVOKE_PATH.match(self.path.split("?")[0])
            if not match:
                self._error(404, "UnknownOperationException", "Unknown operation", request_id)
                return
            function = endpoint.resolve(match.group(1))
            if function is None:
                self._not_found(match.group(1), request_id)
                return
            kind = self.headers.get("X-Amz-Invocation-Type") or "RequestResponse"
            limit = {
                "Event": payload.MAX_EVENT_PAYLOAD_BYTES,
                "RequestResponse": payload.MAX_REQUEST_RESPONSE_PAYLOAD_BYTES,
                "DryRun": payload.MAX_REQUEST_RESPONSE_PAYLOAD_BYTES,
            }.get(kind)
            if limit is None:
                self._error(
                    400, "InvalidParameterValueException", f"bad invocation type {kind}", request_id
                )
                return
            if len(body) > limit:
                operation = "InvokeAsync" if kind == "Event" else "Invoke"
                self._error(
                    413,
                    "RequestTooLargeException",
                    f"Request must be smaller than {limit} bytes for the {operation} operation",
                    request_id,
                )
                return
            if body:
                try:
                    json.loads(body)
                except ValueError:
                    self._error(
                        400,
                        "InvalidRequestContentException",
                        "Could not parse request body into json",
                        request_id,
                    )
                    return
            if kind == "DryRun":
                self._send(204, None, request_id, raw=b"")
                return
            if kind == "Event":
                endpoint.invoke_async(function, body, request_id)
                self._send(202, None, request_id, raw=b"")
                return
            result = endpoint.invoke(function, body, request_id)
            headers = {"X-Amz-Executed-Version": "$LATEST"}
            if not result.ok:
                headers["X-Amz-Function-Error"] = "Unhandled"
            self._send(200, result.body, request_id, headers=headers)

    return Handler


class _Context:
    """The handler's ``context``, as Lambda's Python runtime builds it."""

    def __init__(self) -> None:
        self.aws_request_id = os.environ["ONS_LOCAL_LAMBDA_REQUEST_ID"]
        self.function_name = os.environ["AWS_LAMBDA_FUNCTION_NAME"]
        self.memory_limit_in_mb = os.environ["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"]
        self.function_version = "$LATEST"
        self._deadline_ms = int(os.environ["ONS_LOCAL_LAMBDA_DEADLINE_MS"])

    def get_remaining_time_in_millis(self) -> int:
        return max(0, self._deadline_ms - int(time.time() * 1000))


def run_handler(handler: str, result_path: str) -> int:
    """Inside the invocation's process: call ``module.function`` on stdin's event."""
    raw = sys.stdin.buffer.read()
    event = json.loads(raw) if raw else {}
    module_name, _, attr = handler.rpartition(".")
    try:
        function = getattr(importlib.import_module(module_name), attr)
        body, ok = function(event, _Context()), True
    except Exception as error:
        body, ok = (
            {
                "errorMessage": str(error),
                "errorType": type(error).__name__,
                "stackTrace": traceback.format_exception(error),
            },
            False,
        )
        traceback.print_exc()
    Path(result_path).write_text(json.dumps({"ok": ok, "body": body}, default=str))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["run-handler"]:
        return run_handler(argv[1], argv[2])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--region", default=os.environ.get("AWS_REGION", defaults.AWS_REGION))
    parser.add_argument(
        "--function",
        action="append",
        default=[],
        metavar="NAME[:TIMEOUT_SECONDS]",
        help=f"a function to serve (default: {defaults.LAMBDA_RUN_WORKER_FUNCTION})",
    )
    args = parser.parse_args(argv)
    functions = [
        LocalFunction(name, timeout_seconds=int(timeout or defaults.LAMBDA_TIMEOUT_SECONDS))
        for name, _, timeout in (spec.partition(":") for spec in args.function)
    ] or None
    endpoint = LocalLambda(functions, host=args.host, port=args.port, region=args.region)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    endpoint.start()
    sys.stderr.write(f"local lambda listening on {endpoint.url}: {sorted(endpoint.functions)}\n")
    stop.wait()
    endpoint.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
