"""The event the launcher sends the run-worker Lambda, and the run tags both sides share.

Pure: no Dagster imports, so the handler and the local endpoint can use it cheaply.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from typing import Any, Final

# Lambda rejects an asynchronous (Event) invoke whose request body is over 256 KB, and a
# synchronous (RequestResponse) one over 6 MB.
MAX_EVENT_PAYLOAD_BYTES: Final = 256 * 1024
MAX_REQUEST_RESPONSE_PAYLOAD_BYTES: Final = 6 * 1024 * 1024
PAYLOAD_VERSION: Final = 1

FUNCTION_TAG: Final = "ons/lambda_function"  # per job: which function runs it
REQUEST_ID_TAG: Final = "ons/lambda_request_id"
DEADLINE_TAG: Final = "ons/lambda_deadline"  # epoch seconds the invocation is killed at
PAYLOAD_URI_TAG: Final = "ons/lambda_payload_uri"
ROUTE_TAG: Final = "ons/launcher"  # "long_running" sends the run to the second launcher
LONG_RUNNING: Final = "long_running"

_SECRET_KEY = re.compile(r"(password|passwd|secret|token|api_key|access_key)", re.IGNORECASE)
_URL_WITH_PASSWORD = re.compile(r"^[a-z][a-z0-9+.-]*://[^/@:\s]+:[^/@\s]+@", re.IGNORECASE)


class PayloadError(ValueError):
    """The event is not one the launcher sends."""


def inline_event(run_id: str, execute_run_args: str) -> dict[str, Any]:
    """The event carrying the serialized ``ExecuteRunArgs`` itself."""
    return {"version": PAYLOAD_VERSION, "run_id": run_id, "execute_run_args": execute_run_args}


def pointer_event(run_id: str, bucket: str, key: str) -> dict[str, Any]:
    """The event for a payload too large to send: where the inline event was stored."""
    return {
        "version": PAYLOAD_VERSION,
        "run_id": run_id,
        "payload_s3": {"bucket": bucket, "key": key},
    }


def payload_key(run_id: str) -> str:
    return f"runs/{run_id}/event.json"


def encode(event: Mapping[str, Any]) -> bytes:
    return json.dumps(event, separators=(",", ":")).encode()


def parse_event(event: Any) -> dict[str, Any]:
    """Validate an event; returns it as a dict with either args or an S3 pointer."""
    if isinstance(event, bytes | str):
        try:
            event = json.loads(event)
        except ValueError as error:
            raise PayloadError(f"the event is not JSON: {error}") from error
    if not isinstance(event, dict) or event.get("version") != PAYLOAD_VERSION:
        raise PayloadError(
            f"not an ons_pipeline launcher event (version {PAYLOAD_VERSION} expected): "
            f"{str(event)[:200]}"
        )
    if not isinstance(event.get("run_id"), str):
        raise PayloadError("the event has no run_id")
    pointer = event.get("payload_s3")
    if pointer is not None:
        if not (isinstance(pointer, dict) and pointer.get("bucket") and pointer.get("key")):
            raise PayloadError(f"malformed payload_s3 pointer: {pointer!r}")
    elif not isinstance(event.get("execute_run_args"), str):
        raise PayloadError("the event carries neither execute_run_args nor payload_s3")
    return event


def literal_secrets(config: Any, path: str = "") -> Iterator[str]:
    """Paths in instance config whose value is a literal secret rather than ``{env: VAR}``.

    The instance ref (storage and launcher config as written in dagster.yaml) travels in the
    payload, so a literal password there would be copied into every invocation event.
    """
    if isinstance(config, Mapping):
        for key, value in config.items():
            child = f"{path}.{key}" if path else str(key)
            if isinstance(value, str) and (
                _SECRET_KEY.search(str(key)) or _URL_WITH_PASSWORD.match(value)
            ):
                yield child
            else:
                yield from literal_secrets(value, child)
    elif isinstance(config, list | tuple):
        for index, value in enumerate(config):
            yield from literal_secrets(value, f"{path}[{index}]")
