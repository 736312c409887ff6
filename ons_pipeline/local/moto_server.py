"""moto's server as the local stack runs it, with two fixes that make it answer as AWS does.

1. Timestream-write endpoint discovery answers with this server. A client configured only by
   AWS_ENDPOINT_URL still discovers endpoints (botocore skips discovery only for an explicit
   endpoint_url), and stock moto would point it at real AWS.
2. SQS ReceiveMessage reads the queue's retention period directly. moto 5.2 recomputes every
   queue attribute, three scans of the whole queue, for each message it hands out, so draining
   a queue of n messages costs O(n^2): 39 s for 1,000 messages against 1 s with this fix.
   Real SQS has no such cost, and the answer is the same value either way.

    python -m ons_pipeline.local.moto_server -H 127.0.0.1 -p 5000
"""

from __future__ import annotations

import os
import sys
from typing import Any

from moto.core.utils import unix_time
from moto.sqs.models import Message, SQSBackend
from moto.timestreamwrite.models import TimestreamWriteBackend

MOTO_URL_ENV = "ONS_STACK_MOTO_URL"


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


def main(argv: list[str]) -> None:
    apply_fixes()
    from moto.server import main as moto_main

    moto_main(argv)


if __name__ == "__main__":
    main(sys.argv[1:])
