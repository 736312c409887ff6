"""Named query templates over the energy contract, with declared and validated parameters.

A template renders to InfluxQL with bind parameters (`$start`, `$region`, ...; InfluxDB's
`/query?params=`) and to Flux with `params.*` for 2.x servers. Identifiers come from the
contract (`schema.py`) only, through `quote_identifier`; a window or a limit is one of a
fixed set or a validated integer; user text never enters query text. Time bounds are bound
as integer epoch nanoseconds: the local influxd 1.6 applies them (and string tag values)
exactly, half-open; see `test_influxd_honours_bind_parameters_for_tags_and_time_bounds`.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, ClassVar, Final, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
)

from ons_pipeline.energy.schema import (
    DEFAULT_FIELD,
    DIMENSION,
    MEASUREMENT,
    UNIT_FIELDS,
    WIDE_FIELDS,
)
from ons_pipeline.resources.influxql import quote_identifier

MAX_SPAN: Final = timedelta(days=366)
MAX_SERIES_POINTS: Final = 10_000
WINDOWS: Final = {"1m": 60, "5m": 300, "15m": 900, "1h": 3600, "6h": 21600, "1d": 86400}
MAX_TAG_CHARS: Final = 64
# Letters (any script), digits, space, `/`, `_`, `-`: enough for `SE/CO`, `N-SE_500kV`,
# `São Paulo`; no quotes, `;`, `|`, `>`, regex metacharacters or control characters.
_TAG_VALUE: Final = re.compile(r"[^\W]|[ /\-]")


def fields_of(dataset: str) -> tuple[str, ...]:
    """The float fields a dataset's points can carry: wide columns and long unit fields."""
    return tuple(dict.fromkeys([*WIDE_FIELDS[dataset], *UNIT_FIELDS.values(), DEFAULT_FIELD]))


def _tag_value(value: str) -> str:
    if not 1 <= len(value) <= MAX_TAG_CHARS:
        raise ValueError(f"must be 1 to {MAX_TAG_CHARS} characters")
    bad = sorted({c for c in value if not _TAG_VALUE.fullmatch(c)})
    if bad:
        raise ValueError(
            f"contains characters that are not allowed: {bad!r} "
            "(letters, digits, space, '/', '_' and '-' only)"
        )
    return value


def _iso_timestamp(value: Any) -> datetime:
    """ISO-8601 text only (naive = UTC), so `1700000000` or a date object is refused."""
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str) and value.isprintable() and 10 <= len(value) <= 40:
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError as error:
            raise ValueError(f"not an ISO-8601 timestamp: {error}") from None
    else:
        raise ValueError("must be an ISO-8601 timestamp string, e.g. 2024-01-01T00:00:00Z")
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


TagValue = Annotated[str, Field(strict=True), AfterValidator(_tag_value)]
Timestamp = Annotated[datetime, BeforeValidator(_iso_timestamp)]
Window = Literal["1m", "5m", "15m", "1h", "6h", "1d"]
Dataset = Literal["generation", "consumption", "transmission"]


def to_ns(moment: datetime) -> int:
    """Nanoseconds since the epoch (exact for microsecond datetimes)."""
    delta = moment.astimezone(UTC) - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 10**9 + delta.microseconds * 1000


class TemplateParams(BaseModel):
    """Parameters every template shares: a bounded time range and optional tag filters."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: ClassVar[str]
    description: ClassVar[str]
    fixed_dataset: ClassVar[str | None] = None

    start: Timestamp = Field(description="Range start, ISO-8601, inclusive.")
    stop: Timestamp = Field(description="Range stop, ISO-8601, exclusive.")
    region: TagValue | None = Field(default=None, description="Region tag, e.g. SE/CO.")
    dimension: TagValue | None = Field(
        default=None,
        description="The dataset's second tag: energy_source, consumer_type or line_id.",
    )

    @field_validator("stop")
    @classmethod
    def _range(cls, stop: datetime, info: ValidationInfo) -> datetime:
        start = info.data.get("start")
        if start is not None and stop <= start:
            raise ValueError("stop must be after start")
        if start is not None and stop - start > MAX_SPAN:
            raise ValueError(f"the range from start to stop must not exceed {MAX_SPAN.days} days")
        return stop

    @field_validator("field_name", check_fields=False)
    @classmethod
    def _field(cls, name: str, info: ValidationInfo) -> str:
        dataset = cls.fixed_dataset or info.data.get("dataset_name")
        if dataset is None:  # the dataset itself was invalid and is reported
            return name
        allowed = fields_of(dataset)
        if name not in allowed:
            raise ValueError(f"not a field of {dataset}: one of {list(allowed)}")
        return name

    @property
    def dataset(self) -> str:
        return self.fixed_dataset or getattr(self, "dataset_name", "generation")

    @property
    def field(self) -> str:
        return getattr(self, "field_name", DEFAULT_FIELD)

    @property
    def measurement(self) -> str:
        return MEASUREMENT[self.dataset]

    @property
    def dimension_tag(self) -> str:
        return DIMENSION[self.dataset]

    def bind_params(self) -> dict[str, Any]:
        """Every user value, as InfluxQL bind parameters (times as epoch nanoseconds)."""
        params: dict[str, Any] = {"start": to_ns(self.start), "stop": to_ns(self.stop)}
        if self.region is not None:
            params["region"] = self.region
        if self.dimension is not None:
            params["dimension"] = self.dimension
        return params

    def where(self) -> str:
        clauses = ["time >= $start", "time < $stop"]
        if self.region is not None:
            clauses.append(f"{quote_identifier('region')} = $region")
        if self.dimension is not None:
            clauses.append(f"{quote_identifier(self.dimension_tag)} = $dimension")
        return " AND ".join(clauses)

    def group_tags(self) -> list[str]:
        """The tags a result is grouped by (a result series per combination)."""
        return ["region"]

    def select(self) -> str:
        raise NotImplementedError

    def tail(self) -> str:
        return ""

    def influxql(self) -> str:
        """The InfluxQL text: contract identifiers quoted, every value a `$` parameter."""
        group = ", ".join(quote_identifier(t) for t in self.group_tags())
        window = getattr(self, "window", None)
        by = f"time({window}), {group} fill(none)" if window else group
        return (
            f"SELECT {self.select()} FROM {quote_identifier(self.measurement)} "
            f"WHERE {self.where()} GROUP BY {by}{self.tail()}"
        )

    def flux_params(self, bucket: str) -> dict[str, Any]:
        """`params` for a Flux query on a 2.x server (`params.name` in the text)."""
        params: dict[str, Any] = {
            "bucket": bucket,
            "measurement": self.measurement,
            "field": self.field,
            "start": self.start.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "stop": self.stop.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        }
        if self.region is not None:
            params["region"] = self.region
        if self.dimension is not None:
            params["dimension"] = self.dimension
        return params

    def flux_reduce(self) -> str:
        raise NotImplementedError

    def flux(self) -> str:
        """The Flux text; all values arrive as `params` beside it."""
        lines = [
            "from(bucket: params.bucket)",
            "  |> range(start: time(v: params.start), stop: time(v: params.stop))",
            "  |> filter(fn: (r) => r._measurement == params.measurement and "
            "r._field == params.field)",
        ]
        if self.region is not None:
            lines.append("  |> filter(fn: (r) => r.region == params.region)")
        if self.dimension is not None:
            lines.append(
                f"  |> filter(fn: (r) => r[{_flux_string(self.dimension_tag)}] == params.dimension)"
            )
        keys = ", ".join(_flux_string(t) for t in self.group_tags())
        lines.append(f"  |> group(columns: [{keys}])")
        lines.append(f"  |> {self.flux_reduce()}")
        return "\n".join(lines)


def _flux_string(name: str) -> str:
    """A contract name as a Flux string literal (contract names hold no quote or backslash)."""
    if not re.fullmatch(r"[a-z_]+", name):
        raise ValueError(f"not a contract name: {name!r}")
    return f'"{name}"'


class GenerationTrend(TemplateParams):
    name: ClassVar[str] = "generation_trend"
    description: ClassVar[str] = "Mean of a generation field per region and window."
    fixed_dataset: ClassVar[str | None] = "generation"
    field_name: str = Field(strict=True, default="power_mw", alias="field")
    window: Window = Field(default="1h", description=f"One of {list(WINDOWS)}.")

    def select(self) -> str:
        return f"MEAN({quote_identifier(self.field)}) AS {quote_identifier('value')}"

    def flux_reduce(self) -> str:
        return f"aggregateWindow(every: {self.window}, fn: mean, createEmpty: false)"


class ConsumptionPeak(TemplateParams):
    name: ClassVar[str] = "consumption_peak"
    description: ClassVar[str] = "Maximum demand per region, and when it happened."
    fixed_dataset: ClassVar[str | None] = "consumption"
    field_name: str = Field(strict=True, default="demand_mw", alias="field")

    def select(self) -> str:
        return f"MAX({quote_identifier(self.field)}) AS {quote_identifier('value')}"

    def flux_reduce(self) -> str:
        return "max()"


class TransmissionLosses(TemplateParams):
    name: ClassVar[str] = "transmission_losses"
    description: ClassVar[str] = "Total transmission losses per region."
    fixed_dataset: ClassVar[str | None] = "transmission"
    field_name: str = Field(strict=True, default="losses_mwh", alias="field")

    def select(self) -> str:
        return f"SUM({quote_identifier(self.field)}) AS {quote_identifier('value')}"

    def flux_reduce(self) -> str:
        return "sum()"


class Latest(TemplateParams):
    name: ClassVar[str] = "latest"
    description: ClassVar[str] = "The last value of each series (region and second tag)."
    dataset_name: Dataset = Field(default="generation", alias="dataset")
    field_name: str = Field(strict=True, default="power_mw", alias="field")

    def group_tags(self) -> list[str]:
        return ["region", self.dimension_tag]

    def select(self) -> str:
        return f"LAST({quote_identifier(self.field)}) AS {quote_identifier('value')}"

    def flux_reduce(self) -> str:
        return "last()"


class Series(TemplateParams):
    name: ClassVar[str] = "series"
    description: ClassVar[str] = (
        f"Raw points per series, at most `limit` (<= {MAX_SERIES_POINTS}) each."
    )
    dataset_name: Dataset = Field(default="generation", alias="dataset")
    field_name: str = Field(strict=True, default="power_mw", alias="field")
    limit: int = Field(default=1000, ge=1, le=MAX_SERIES_POINTS, strict=True)

    def group_tags(self) -> list[str]:
        return ["region", self.dimension_tag]

    def select(self) -> str:
        return f"{quote_identifier(self.field)} AS {quote_identifier('value')}"

    def tail(self) -> str:
        return f" LIMIT {int(self.limit)}"

    def flux_reduce(self) -> str:
        return f"limit(n: {int(self.limit)})"


TEMPLATES: Final[dict[str, type[TemplateParams]]] = {
    t.name: t for t in (GenerationTrend, ConsumptionPeak, TransmissionLosses, Latest, Series)
}


class UnknownTemplateError(ValueError):
    """The request names no template we have."""


def parse_template(name: Any, params: Any) -> TemplateParams:
    """Validated parameters for `name`.

    Raises:
        UnknownTemplateError: no such template.
        pydantic.ValidationError: a parameter is invalid (its location names the field).
    """
    if not isinstance(name, str) or name not in TEMPLATES:
        raise UnknownTemplateError(f"template must be one of {sorted(TEMPLATES)}")
    return TEMPLATES[name].model_validate(params if params is not None else {})
