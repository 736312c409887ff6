"""moto's server as the local stack runs it, with fixes that make it answer as AWS does.

1. Timestream-write endpoint discovery answers with this server. A client configured only by
   AWS_ENDPOINT_URL still discovers endpoints (botocore skips discovery only for an explicit
   endpoint_url), and stock moto would point it at real AWS.
2. SQS ReceiveMessage reads the queue's retention period directly. moto 5.2 recomputes every
   queue attribute, three scans of the whole queue, for each message it hands out, so draining
   a queue of n messages costs O(n^2): 39 s for 1,000 messages against 1 s with this fix.
   Real SQS has no such cost, and the answer is the same value either way.
3. Timestream keeps what is written and answers queries over it. Stock moto drops
   `CommonAttributes` (where the loads put every dimension) and answers `Query` with canned
   results; here WriteRecords merges them into each record and keeps the table columnar, and
   `Query` runs on DuckDB (`timestream_engine.py`), in the real API's shape. A local-only
   `POST /moto-api/ons/timestream/records?database=&table=` takes an Arrow IPC stream of rows
   in the table model, for seeding large tables (benchmarks) without a million WriteRecords.
   `UNLOAD (SELECT ...) TO 's3://...' WITH (format = 'PARQUET', ...)` runs the SELECT the
   same way and writes the Parquet parts, metadata and manifest into this server's S3.

It also answers only the developer's own programs, not web pages open in their browser: moto's
global CORS is off (no preflight is granted), a request carrying an ``Origin`` header (which
browsers add and AWS SDKs never send) is refused, and so is one whose ``Host`` is not the
loopback address it listens on (DNS rebinding).

    python -m ons_pipeline.local.moto_server -H 127.0.0.1 -p 5000
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.parse
from typing import TYPE_CHECKING, Any

import pyarrow as pa
from moto.core import DEFAULT_ACCOUNT_ID
from moto.core.exceptions import JsonRESTError
from moto.core.utils import unix_time
from moto.moto_api._internal import urls as moto_api_urls
from moto.sqs.models import Message, SQSBackend
from moto.timestreamwrite.models import (
    TimestreamTable,
    TimestreamWriteBackend,
    timestreamwrite_backends,
)
from moto.timestreamwrite.responses import TimestreamWriteResponse

from ons_pipeline.local.timestream_engine import (
    TableStore,
    TimestreamQueryEngine,
    TimestreamValidationError,
)

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


QUERY_ENGINE = TimestreamQueryEngine()
SEED_PATH = "/moto-api/ons/timestream/records"


class ValidationError(JsonRESTError):
    def __init__(self, message: str) -> None:
        super().__init__("ValidationException", message)


def store_of(table: TimestreamTable) -> TableStore:
    """The table's columnar store, created with it (and gone when moto drops the table)."""
    store = table.__dict__.get("_ons_store")
    if store is None:
        store = table.__dict__.setdefault("_ons_store", TableStore())
    return store


def _stores(backend: TimestreamWriteBackend) -> dict[tuple[str, str], TableStore]:
    return {
        (database.name, table.name): store_of(table)
        for database in backend.databases.values()
        for table in database.tables.values()
    }


def write_records(self: TimestreamWriteResponse) -> str:
    table = self.timestreamwrite_backend.describe_table(
        self._get_param("DatabaseName"), self._get_param("TableName")
    )
    records = self._get_param("Records") or []
    try:
        store_of(table).write(records, self._get_param("CommonAttributes") or {})
    except TimestreamValidationError as error:
        raise ValidationError(str(error)) from error
    ingested = {"Total": len(records), "MemoryStore": len(records), "MagneticStore": 0}
    return json.dumps({"RecordsIngested": ingested})


def query(self: TimestreamWriteResponse) -> str:
    from moto.s3.models import s3_backends

    s3 = s3_backends[self.current_account][self.partition]

    def put(bucket: str, key: str, body: bytes) -> None:
        s3.put_object(bucket, key, body)  # a missing bucket raises NoSuchBucket

    try:
        return QUERY_ENGINE.query(
            _stores(self.timestreamwrite_backend),
            self._get_param("QueryString") or "",
            self._get_param("MaxRows"),
            self._get_param("NextToken"),
            put,
            scope=(self.current_account, self.region),
        )
    except TimestreamValidationError as error:
        raise ValidationError(str(error)) from error


def cancel_query(self: TimestreamWriteResponse) -> str:
    return QUERY_ENGINE.cancel(self._get_param("QueryId") or "")


def seed_records(request: Any, full_url: str, headers: Any) -> tuple[int, dict[str, str], str]:
    """Append an Arrow IPC stream of rows to a table (local seeding, not an AWS API)."""
    params = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(full_url).query))
    backend = timestreamwrite_backends[params.get("account_id", DEFAULT_ACCOUNT_ID)][
        params["region"]
    ]
    table = backend.describe_table(params["database"], params["table"])
    rows = pa.ipc.open_stream(request.get_data()).read_all()
    store_of(table).append(rows)
    return 200, {"Content-Type": "application/json"}, json.dumps({"appended": len(rows)})


def apply_fixes() -> None:
    TimestreamWriteBackend.describe_endpoints = describe_endpoints  # type: ignore[method-assign]
    TimestreamWriteResponse.write_records = write_records  # type: ignore[method-assign]
    TimestreamWriteResponse.query = query  # type: ignore[method-assign]
    TimestreamWriteResponse.cancel_query = cancel_query  # type: ignore[attr-defined]
    moto_api_urls.url_paths["{0}" + SEED_PATH] = seed_records
    SQSBackend.is_message_valid_based_on_retention_period = (  # type: ignore[method-assign]
        is_message_valid_based_on_retention_period
    )


def _host_name(host: str) -> str:
    """The name part of a `Host` header (`127.0.0.1:5055` -> `127.0.0.1`, `[::1]:80` -> `[::1]`).

    DNS rebinding is about the name a page used; the port may differ behind a local proxy.
    """
    name, _, port = host.lower().rpartition(":")
    return name if name and port.isdigit() and not host.endswith("]") else host.lower()


class LocalOnly:
    """WSGI middleware: refuse browsers (``Origin``) and foreign ``Host`` names with 403."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        reason = None
        if environ.get("HTTP_ORIGIN") is not None:
            reason = "cross-origin requests are refused by the local AWS endpoint"
        elif _host_name(environ.get("HTTP_HOST", "")) not in _LOOPBACK_NAMES:
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
    app = LocalOnly(werkzeug_app.DomainDispatcherApplication(werkzeug_app.create_backend_app))
    run_simple(
        args.host, args.port, app, threaded=True, request_handler=werkzeug_app.MotoRequestHandler
    )


if __name__ == "__main__":
    main(sys.argv[1:])
