"""What every asset group shares in its Dagster wiring: the retry policy and UI metadata."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
from dagster import (
    AnchorBasedFilePathMapping,
    AssetsDefinition,
    Backoff,
    BetaWarning,
    Jitter,
    MetadataValue,
    RetryPolicy,
    TableColumn,
    TableColumnConstraints,
    TableSchema,
    link_code_references_to_git,
    with_source_code_references,
)

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    import pandas as pd

RETRY_DELAY_ENV = "ONS_RETRY_DELAY_SECONDS"
DEFAULT_RETRY_DELAY_SECONDS = 30.0


def aws_retry_policy(environ: Mapping[str, str] = os.environ) -> RetryPolicy:
    """Three retries, exponential with jitter, first after `ONS_RETRY_DELAY_SECONDS` (30 s).

    Tests set the delay to 0 so a step failing over and over fails the test at once.

    Raises:
        ValueError: the variable is set but not a number of seconds >= 0.
    """
    text = environ.get(RETRY_DELAY_ENV, "").strip()
    try:
        delay = float(text) if text else DEFAULT_RETRY_DELAY_SECONDS
    except ValueError:
        delay = -1.0
    if not delay >= 0:  # also refuses NaN
        raise ValueError(f"{RETRY_DELAY_ENV} must be a number of seconds >= 0, not {text!r}")
    return RetryPolicy(
        max_retries=3, delay=delay, backoff=Backoff.EXPONENTIAL, jitter=Jitter.PLUS_MINUS
    )


# Transient AWS or InfluxDB trouble (throttling, a blip in S3, a store restarting) is retried
# minutes apart, as the seeds ask; jitter keeps parallel retries from arriving in step.
# Errors that cannot heal (a missing input, bad config) raise Failure(allow_retries=False).
AWS_RETRY_POLICY = aws_retry_policy()


def markdown_table(frame: pd.DataFrame, limit: int = 10) -> MetadataValue:
    """A markdown table of at most `limit` rows for the UI (no tabulate dependency)."""
    head = frame.head(limit).astype(str)
    cells = [list(map(str, head.columns)), ["---"] * len(head.columns), *head.to_numpy().tolist()]
    return MetadataValue.md(
        "\n".join("| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in cells)
    )


# Who answers for the assets, shown on every asset page (Dagster owners: a team or an email).
OWNERS = ["team:ons-data-platform"]


def asset_tags(group: str, source: str) -> dict[str, str]:
    """Tags the UI filters by: which pipeline an asset belongs to and where its data comes from."""
    return {"ons/pipeline": group, "ons/source": source}


def readable_type(data_type: pa.DataType) -> str:
    """The column type as a reader knows it: `decimal(10,2)`, `date`, `time`, `int64`."""
    if pa.types.is_decimal(data_type):
        return f"decimal({data_type.precision},{data_type.scale})"
    if pa.types.is_date(data_type):
        return "date"
    if pa.types.is_time(data_type):
        return "time"
    if pa.types.is_timestamp(data_type):
        zone = f", {data_type.tz}" if data_type.tz else ""
        return f"timestamp[{data_type.unit}{zone}]"
    if pa.types.is_floating(data_type):
        return "float64" if data_type.bit_width == 64 else f"float{data_type.bit_width}"
    return str(data_type)


def column_schema(schema: pa.Schema, descriptions: Mapping[str, str]) -> TableSchema:
    """A Dagster column schema from the Arrow contract, every column described.

    Raises:
        KeyError: a column has no description (caught when the definitions load).
    """
    return TableSchema(
        columns=[
            TableColumn(
                name=f.name,
                type=readable_type(f.type),
                description=descriptions[f.name],
                constraints=TableColumnConstraints(nullable=f.nullable),
            )
            for f in schema
        ]
    )


def column_schema_metadata(schema: pa.Schema, descriptions: Mapping[str, str]) -> dict[str, Any]:
    """`dagster/column_schema` metadata for an asset spec or a materialisation."""
    return {"dagster/column_schema": column_schema(schema, descriptions)}


def with_code_references(assets: Sequence[AssetsDefinition]) -> list[AssetsDefinition]:
    """The assets linked to their source in the UI (Dagster's code references).

    Local file paths by default; with `ONS_CODE_REPOSITORY_URL` (and `ONS_CODE_BRANCH`,
    default main) set, links into the repository instead. Dagster marks both helpers beta;
    the warning is silenced here only.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BetaWarning)
        linked = with_source_code_references(assets)
        url = os.environ.get("ONS_CODE_REPOSITORY_URL")
        if url:
            linked = link_code_references_to_git(
                linked,
                git_url=url,
                git_branch=os.environ.get("ONS_CODE_BRANCH", "main"),
                file_path_mapping=AnchorBasedFilePathMapping(
                    local_file_anchor=Path(__file__).resolve().parents[1],
                    file_anchor_path_in_repository="ons_pipeline",
                ),
            )
    return list(linked)
