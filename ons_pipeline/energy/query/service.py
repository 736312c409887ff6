"""One request in, one response out: validation, translation, backend choice, response.

The same `QueryService.handle` serves the local ASGI app and the Lambda behind API Gateway.
InfluxDB answers first; when it cannot (down, breaker open, refused), the Parquet lake in S3
answers the same template. Status codes: 200, 400 naming the fields, 503 with a retry delay
when no backend can answer; an unexpected error is logged and returned as a 500 without a
trace.
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, Protocol

from pydantic import ValidationError

from ons_pipeline.energy.query.response import (
    BACKEND_INFLUXDB,
    BACKEND_S3,
    QueryResponse,
    QueryUsed,
    SourceDocument,
    answer_text,
    iso_dt,
    time_series,
)
from ons_pipeline.energy.query.templates import (
    TEMPLATES,
    TemplateParams,
    UnknownTemplateError,
    parse_template,
)
from ons_pipeline.energy.query.translator import (
    EXAMPLE_QUESTIONS,
    UntranslatableQuestionError,
    translate,
)

if TYPE_CHECKING:
    from ons_pipeline.energy.query.fallback import ParquetLake
    from ons_pipeline.energy.query.results import Point

logger = logging.getLogger(__name__)
MAX_QUESTION_CHARS: Final = 1000
DEFAULT_RETRY_AFTER: Final = 30.0


class BackendUnavailableError(RuntimeError):
    """A backend could not answer; `retry_after` seconds is a fair wait."""

    def __init__(self, message: str, retry_after: float = DEFAULT_RETRY_AFTER) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class InfluxBackend(Protocol):
    def database(self, params: TemplateParams) -> str: ...

    def answer(self, params: TemplateParams) -> list[Point]:
        """Raises BackendUnavailableError when InfluxDB cannot answer."""
        ...


class RequestError(ValueError):
    def __init__(self, message: str, fields: list[dict[str, str]], examples: bool = False) -> None:
        super().__init__(message)
        self.fields = fields
        self.examples = examples


Reply = tuple[int, dict[str, Any], dict[str, str]]


class QueryService:
    def __init__(
        self,
        influx: InfluxBackend | None,
        lake: ParquetLake | None,
        bucket: str = "",
        now: Any = None,
        influx_not_current: str | None = None,
    ) -> None:
        self.influx = influx
        self.lake = lake
        self.bucket = bucket
        self._now = now or (lambda: datetime.now(UTC))
        # Why InfluxDB is not the default backend (the loads no longer write it), or None.
        self.influx_not_current = influx_not_current

    def handle(self, body: Any) -> Reply:
        """(status, JSON body, headers) for one request body (already JSON-decoded)."""
        started = time.perf_counter()
        query_id = str(uuid.uuid4())
        try:
            question, params, confidence = self._parse(body)
            return self._answer(query_id, question, params, confidence, started)
        except RequestError as error:
            payload: dict[str, Any] = {
                "error": "invalid_request",
                "message": str(error),
                "fields": error.fields,
                "query_id": query_id,
            }
            if error.examples:
                payload["answerable_questions"] = list(EXAMPLE_QUESTIONS)
                payload["templates"] = {n: t.description for n, t in TEMPLATES.items()}
            return 400, payload, {}
        except BackendUnavailableError as error:
            retry = max(math.ceil(error.retry_after), 1)
            return (
                503,
                {
                    "error": "backend_unavailable",
                    "message": str(error),
                    "retry_after_seconds": retry,
                    "query_id": query_id,
                },
                {"Retry-After": str(retry)},
            )
        except Exception:
            logger.exception("query %s failed unexpectedly", query_id)
            return (
                500,
                {"error": "internal_error", "message": "see the server log", "query_id": query_id},
                {},
            )

    def _parse(self, body: Any) -> tuple[str | None, TemplateParams, float]:
        if not isinstance(body, dict):
            raise RequestError("the body must be a JSON object", [_field("body", "not an object")])
        unknown = sorted(set(body) - {"question", "template", "params"})
        if unknown:
            raise RequestError("unknown keys", [_field(k, "not a request key") for k in unknown])
        question, template = body.get("question"), body.get("template")
        if (question is None) == (template is None):
            raise RequestError(
                "send either `question` or `template` with `params`",
                [_field("question", "question or template required"), _field("template", "")],
                examples=True,
            )
        if question is not None:
            if not isinstance(question, str) or not 1 <= len(question) <= MAX_QUESTION_CHARS:
                raise RequestError(
                    "invalid question",
                    [_field("question", f"a string of 1 to {MAX_QUESTION_CHARS} characters")],
                )
            if "params" in body:
                raise RequestError("`params` goes with `template`", [_field("params", "")])
            try:
                translation = translate(question, self._now())
            except UntranslatableQuestionError as error:
                raise RequestError(
                    f"cannot answer this question: {error}",
                    [_field("question", str(error))],
                    examples=True,
                ) from error
            try:
                params = translation.validated()
            except ValidationError as error:
                raise RequestError(
                    "the question maps to invalid parameters", _fields(error, "question")
                ) from error
            return question, params, translation.confidence
        params_body = body.get("params", {})
        if not isinstance(params_body, dict):
            raise RequestError("`params` must be an object", [_field("params", "not an object")])
        try:
            return None, parse_template(template, params_body), 1.0
        except UnknownTemplateError as error:
            raise RequestError(str(error), [_field("template", str(error))], True) from error
        except ValidationError as error:
            raise RequestError("invalid parameters", _fields(error, "params")) from error

    def _answer(
        self,
        query_id: str,
        question: str | None,
        params: TemplateParams,
        confidence: float,
        started: float,
    ) -> Reply:
        backend, reason = BACKEND_INFLUXDB, None
        points: list[Point]
        retry_after = DEFAULT_RETRY_AFTER
        try:
            if self.influx is None:
                raise BackendUnavailableError("no InfluxDB configured")
            if self.influx_not_current and self.lake is not None:
                raise BackendUnavailableError(self.influx_not_current)
            points = self.influx.answer(params)
        except BackendUnavailableError as error:
            retry_after = error.retry_after
            reason = str(error)
            logger.warning("query %s: InfluxDB cannot answer (%s); using S3", query_id, reason)
            backend = BACKEND_S3
            if self.lake is None:
                raise
            try:
                points = self.lake.answer(params)
            except Exception as lake_error:
                logger.exception("query %s: the S3 fallback failed too", query_id)
                raise BackendUnavailableError(
                    f"InfluxDB: {reason}; S3 fallback: {type(lake_error).__name__}: {lake_error}",
                    retry_after,
                ) from lake_error
        warnings: list[str] = []
        sources: list[SourceDocument] = []
        if self.lake is not None:
            try:
                sources = [
                    SourceDocument(
                        document=f"s3://{self.lake.config.bucket}/{s.key}",
                        relevance_score=s.relevance,
                        time_range=f"{iso_dt(s.start)} to {iso_dt(s.stop)}",
                    )
                    for s in self.lake.sources(params)
                ]
            except Exception as error:
                logger.warning("query %s: sources not listed: %s", query_id, error)
                warnings.append(f"sources not listed: {type(error).__name__}: {error}")
        database = self.influx.database(params) if self.influx else params.measurement
        response = QueryResponse(
            query_id=query_id,
            question=question,
            answer=answer_text(params, points),
            confidence_score=confidence,
            template=params.name,
            params=params.model_dump(mode="json", by_alias=True, exclude_none=True),
            time_series_data=time_series(params, points),
            query_used=QueryUsed(
                database=database, statement=params.influxql(), params=params.bind_params()
            ),
            flux_query_used=params.flux(),
            flux_params=params.flux_params(database),
            sources=sources,
            processing_time_ms=round((time.perf_counter() - started) * 1000, 1),
            timestamp=iso_dt(self._now()),
            backend=backend,
            fallback_reason=reason,
            warnings=warnings,
        )
        return 200, response.model_dump(mode="json"), {}


def _field(name: str, message: str) -> dict[str, str]:
    return {"field": name, "message": message}


def _fields(error: ValidationError, prefix: str) -> list[dict[str, str]]:
    out = []
    for item in error.errors(include_url=False, include_input=False):
        path = ".".join(str(part) for part in item["loc"])
        out.append(_field(f"{prefix}.{path}" if path else prefix, item["msg"]))
    return out
