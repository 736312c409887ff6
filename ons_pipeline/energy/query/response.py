"""The seed's enhanced API response (seed 003 "API Response Schema"), and its answer text."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pandas as pd
from pydantic import BaseModel, Field

from ons_pipeline.energy.query.templates import (
    ConsumptionPeak,
    GenerationTrend,
    Latest,
    TemplateParams,
    TransmissionLosses,
)

if TYPE_CHECKING:
    from ons_pipeline.energy.query.results import Point

BACKEND_INFLUXDB = "influxdb"
BACKEND_S3 = "s3_parquet"


class TimeSeriesPoint(BaseModel):
    timestamp: str
    measurement: str
    value: float
    tags: dict[str, str]


class SourceDocument(BaseModel):
    document: str = Field(description="s3:// URI of a processed Parquet object.")
    relevance_score: float = Field(description="Share of the object's time range in the query.")
    time_range: str


class QueryUsed(BaseModel):
    language: str = "influxql"
    database: str
    statement: str
    params: dict[str, Any]


class QueryResponse(BaseModel):
    query_id: str
    question: str | None
    answer: str
    confidence_score: float
    template: str
    params: dict[str, Any]
    time_series_data: list[TimeSeriesPoint]
    query_used: QueryUsed
    flux_query_used: str
    flux_params: dict[str, Any]
    sources: list[SourceDocument]
    processing_time_ms: float
    timestamp: str
    backend: str = Field(description="`influxdb`, or `s3_parquet` when InfluxDB could not answer.")
    fallback_reason: str | None = None
    warnings: list[str] = Field(default_factory=list)


def iso(time_ns: int) -> str:
    """RFC 3339 UTC with the nanoseconds kept."""
    return pd.Timestamp(time_ns, tz=UTC).isoformat().replace("+00:00", "Z")


def iso_dt(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def time_series(params: TemplateParams, points: list[Point]) -> list[TimeSeriesPoint]:
    return [
        TimeSeriesPoint(
            timestamp=iso(p.time_ns), measurement=params.field, value=p.value, tags=p.tags
        )
        for p in points
    ]


def _where(params: TemplateParams) -> str:
    parts = []
    if params.dimension:
        parts.append(params.dimension)
    parts.append(f"in {params.region}" if params.region else "across regions")
    return " ".join(parts)


def _label(point: Point) -> str:
    region = point.tags.get("region")
    rest = [v for k, v in point.tags.items() if k != "region"]
    return " ".join([*([region] if region else []), *rest]) or "all"


def answer_text(params: TemplateParams, points: list[Point]) -> str:
    """One sentence from the numbers (no model: the numbers are the answer)."""
    span = f"from {iso_dt(params.start)} to {iso_dt(params.stop)}"
    what = f"{params.dataset} {params.field}"
    if not points:
        return f"No {what} data {_where(params)} {span}."
    if isinstance(params, ConsumptionPeak):
        peak = max(points, key=lambda p: (p.value, -p.time_ns))
        return (
            f"Peak {params.field} {_where(params)} {span} was {peak.value:,.3f} "
            f"at {iso(peak.time_ns)} in {peak.tags.get('region', '?')}."
        )
    if isinstance(params, TransmissionLosses):
        total = sum(p.value for p in points)
        parts = ", ".join(f"{_label(p)} {p.value:,.3f}" for p in points)
        return f"Total {params.field} {_where(params)} {span}: {total:,.3f} ({parts})."
    if isinstance(params, GenerationTrend):
        high = max(points, key=lambda p: p.value)
        low = min(points, key=lambda p: p.value)
        mean = sum(p.value for p in points) / len(points)
        return (
            f"Mean {params.field} per {params.window} {_where(params)} {span}: "
            f"{mean:,.3f} on average over {len(points)} windows, highest {high.value:,.3f} "
            f"at {iso(high.time_ns)} ({_label(high)}), lowest {low.value:,.3f} "
            f"at {iso(low.time_ns)} ({_label(low)})."
        )
    if isinstance(params, Latest):
        shown = "; ".join(f"{_label(p)} {p.value:,.3f} at {iso(p.time_ns)}" for p in points[:5])
        more = f" and {len(points) - 5} more series" if len(points) > 5 else ""
        return f"Latest {what} {_where(params)}: {shown}{more}."
    series = len({tuple(sorted(p.tags.items())) for p in points})
    return f"{len(points)} points of {what} in {series} series {_where(params)} {span}."
