"""The energy query API: `POST /query`, as an ASGI app (local) and a Lambda handler (AWS).

Both call the same `QueryService.handle`; this module only wires it to the environment
(InfluxDB through `InfluxDBResource`, which retries and sits behind the circuit breaker, and
the processed bucket through pyarrow) and to the two transports. Settings are the project's
environment variables (README "Configuration").
"""

from __future__ import annotations

import base64
import json
import logging
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from ons_pipeline.energy.query.fallback import LakeConfig, ParquetLake
from ons_pipeline.energy.query.results import Point, points_from_influxql
from ons_pipeline.energy.query.service import BackendUnavailableError, QueryService
from ons_pipeline.resources import InfluxDBResource, settings
from ons_pipeline.resources.influxdb import (
    InfluxDBCircuitOpenError,
    InfluxDBUnavailableError,
    InfluxQLError,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

    from starlette.requests import Request

    from ons_pipeline.energy.query.templates import TemplateParams

logger = logging.getLogger(__name__)
MAX_BODY_BYTES = 16_384


class InfluxTemplates:
    """Templates answered by InfluxDB over InfluxQL with bind parameters."""

    def __init__(self, influxdb: InfluxDBResource) -> None:
        self.influxdb = influxdb

    def database(self, params: TemplateParams) -> str:
        return self.influxdb.bucket_for(params.measurement)

    def answer(self, params: TemplateParams) -> list[Point]:
        try:
            series = self.influxdb.influxql(
                self.database(params), params.influxql(), params.bind_params()
            )
        except InfluxDBCircuitOpenError as error:
            raise BackendUnavailableError(str(error), error.retry_after) from error
        except InfluxDBUnavailableError as error:
            raise BackendUnavailableError(
                str(error), self.influxdb.breaker_cooldown_seconds
            ) from error
        except InfluxQLError as error:  # e.g. a database nothing was loaded into yet
            raise BackendUnavailableError(str(error)) from error
        return points_from_influxql(series)


def service_from_env(env: Mapping[str, str] | None = None) -> QueryService:
    """The service pointed wherever the environment says (local stack or AWS).

    Every value is read through the settings table, so its default lives there only.
    """

    def read(name: str) -> Any:
        return settings.read(name, env)

    region: str = read("AWS_REGION")
    endpoint: str | None = read("AWS_ENDPOINT_URL")
    influxdb = InfluxDBResource(
        region_name=region,
        endpoint_url=endpoint,
        url=read("INFLUXDB_URL"),
        org=read("INFLUXDB_ORG"),
        token=read("INFLUXDB_TOKEN"),
        token_secret_name=read("INFLUXDB_TOKEN_SECRET_NAME"),
        query_url=read("INFLUXDB_QUERY_URL"),
        query_username=read("INFLUXDB_QUERY_USERNAME"),
        query_password=read("INFLUXDB_QUERY_PASSWORD"),
        bucket=read("INFLUXDB_BUCKET"),
        max_retries=read("MAX_RETRIES"),
        timeout_ms=read("ONS_QUERY_INFLUX_TIMEOUT_MS"),
        breaker_failures=read("ONS_QUERY_BREAKER_FAILURES"),
        breaker_cooldown_seconds=read("ONS_QUERY_BREAKER_COOLDOWN_SECONDS"),
    )
    bucket: str = read("ONS_PROCESSED_BUCKET")
    lake = ParquetLake(
        LakeConfig(
            bucket=bucket,
            region=region,
            endpoint_url=endpoint,
            access_key=read("AWS_ACCESS_KEY_ID"),
            secret_key=read("AWS_SECRET_ACCESS_KEY"),
            session_token=read("AWS_SESSION_TOKEN"),
        )
    )
    # The query layer's default backend follows the loads' switch: rolled back to Timestream
    # only, InfluxDB misses what arrives from then on, so the processed Parquet answers.
    sinks: str = read("ONS_ENERGY_SINKS")
    stale = None
    if "influxdb" not in {name.strip() for name in sinks.split(",")}:
        stale = (
            f"ONS_ENERGY_SINKS={sinks}: the loads no longer write InfluxDB (rolled back), "
            "so the processed Parquet in S3 is the current store"
        )
    return QueryService(InfluxTemplates(influxdb), lake, bucket, influx_not_current=stale)


def create_app(service: QueryService | None = None) -> Starlette:
    """The ASGI app; `service` defaults to `service_from_env()` at the first request."""
    holder: dict[str, QueryService] = {} if service is None else {"service": service}

    def current() -> QueryService:
        if "service" not in holder:
            holder["service"] = service_from_env()
        return holder["service"]

    async def query(request: Request) -> JSONResponse:
        raw = await request.body()
        status, payload, headers = handle_raw(current(), raw)
        return JSONResponse(payload, status_code=status, headers=headers)

    async def health(_: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    return Starlette(
        routes=[
            Route("/query", query, methods=["POST"]),
            Route("/health", health, methods=["GET"]),
        ]
    )


def handle_raw(service: QueryService, raw: bytes) -> tuple[int, dict[str, Any], dict[str, str]]:
    """Decode the body (size-capped JSON) and hand it to the service."""
    if len(raw) > MAX_BODY_BYTES:
        return 413, {"error": "invalid_request", "message": "body over 16 KiB"}, {}
    try:
        body = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        return (
            400,
            {
                "error": "invalid_request",
                "message": f"the body is not JSON: {error}",
                "fields": [{"field": "body", "message": "not valid JSON"}],
            },
            {},
        )
    return service.handle(body)


_LAMBDA_SERVICE: dict[str, QueryService] = {}


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """API Gateway (REST or HTTP API, proxy integration) -> the same handler."""
    if "service" not in _LAMBDA_SERVICE:  # kept warm across invocations with the breaker
        _LAMBDA_SERVICE["service"] = service_from_env()
    raw = event.get("body") or ""
    data = base64.b64decode(raw) if event.get("isBase64Encoded") else raw.encode("utf-8")
    status, payload, headers = handle_raw(_LAMBDA_SERVICE["service"], data)
    return {
        "statusCode": status,
        "headers": {"Content-Type": "application/json", **headers},
        "body": json.dumps(payload),
    }


app = create_app()
