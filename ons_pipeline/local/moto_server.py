"""moto's server as the local stack runs it, with two fixes that make it answer as AWS does.

1. Timestream-write endpoint discovery answers with this server. A client configured only by
   AWS_ENDPOINT_URL still discovers endpoints (botocore skips discovery only for an explicit
   endpoint_url), and stock moto would point it at real AWS.
2. SQS ReceiveMessage reads the queue's retention period directly. moto 5.2 recomputes every
   queue attribute, three scans of the whole queue, for each message it hands out, so draining
   a queue of n messages costs O(n^2): 39 s for 1,000 messages against 1 s with this fix.
   Real SQS has no such cost, and the answer is the same value either way.

It also answers only the developer's own programs, not web pages open in their browser: moto's
global CORS is off (no preflight is granted), a request carrying an ``Origin`` header (which
browsers add and AWS SDKs never send) is refused, and so is one whose ``Host`` is not the
loopback address it listens on (DNS rebinding).

    python -m ons_pipeline.local.moto_server -H 127.0.0.1 -p 5000
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING, Any

from moto.core.utils import unix_time
from moto.sqs.models import Message, SQSBackend
from moto.timestreamwrite.models import TimestreamWriteBackend

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

MOTO_URL_ENV = "ONS_STACK_MOTO_URL"
_LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")


def describe_endpoints(self: TimestreamWriteBackend) -> dict[str, Any]:
    return {"Endpoints": [{"Address": os.environ[MOTO_URL_ENV], "CachePeriodInMinutes": 1440}]}


def is_message_valid_based_on_retention_period(
    self: SQSBackend, queue_name: str, message: Message
) -> bool:
    retention_seconds = int(self.get_queue(queue_name).message_retention_period)  # type: ignore[attr-defined]
    return retention_seconds + message.sent_timestamp / 1000 > unix_time()  # type: ignore[operator]


def apply_fixes() -> None:
    TimestreamWriteBackend.describe_endpoints = describe_endpoints  # type: ignore[method-assign]
    SQSBackend.is_message_valid_based_on_retention_period = (  # type: ignore[method-assign]
        is_message_valid_based_on_retention_period
    )


class LocalOnly:
    """WSGI middleware: refuse browsers (``Origin``) and foreign ``Host`` names with 403."""

    def __init__(self, app: Callable[..., Iterable[bytes]], port: int) -> None:
        self.app = app
        self.hosts = {f"{name}:{port}" for name in _LOOPBACK_NAMES}

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        reason = None
        if environ.get("HTTP_ORIGIN") is not None:
            reason = "cross-origin requests are refused by the local AWS endpoint"
        elif environ.get("HTTP_HOST", "").lower() not in self.hosts:
            reason = "the local AWS endpoint answers only on its loopback address"
        if reason is None:
            return self.app(environ, start_response)
        body = reason.encode()
        start_response(
            "403 Forbidden",
            [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))],
        )
        return [body]


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, required=True)
    args = parser.parse_args(argv)
    os.environ.setdefault("MOTO_PORT", str(args.port))
    apply_fixes()
    from moto.moto_server import werkzeug_app
    from werkzeug.serving import run_simple

    # No blanket Access-Control-Allow-Origin on every answer (moto.settings read it at import).
    werkzeug_app.DISABLE_GLOBAL_CORS = True
    app = LocalOnly(
        werkzeug_app.DomainDispatcherApplication(werkzeug_app.create_backend_app), args.port
    )
    run_simple(
        args.host, args.port, app, threaded=True, request_handler=werkzeug_app.MotoRequestHandler
    )


if __name__ == "__main__":
    main(sys.argv[1:])
