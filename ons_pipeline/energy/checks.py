"""The energy loads' asset checks: every row accounted for, every series read back."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dagster import AssetCheckResult, AssetCheckSeverity, AssetCheckSpec, AssetKey, MetadataValue

from ons_pipeline.energy.readback import compare_counts

if TYPE_CHECKING:
    from ons_pipeline.energy.readback import SeriesCounts

ACCOUNTING_CHECK = "rows_accounted_for"
READBACK_CHECK = "readback_matches"
READBACK_LISTED = 200  # differing series named in the check's metadata


def accounting_spec(asset: AssetKey, written: str) -> AssetCheckSpec:
    """`rows_accounted_for` on `asset`, whose rows become `written` (points, records)."""
    return AssetCheckSpec(
        ACCOUNTING_CHECK,
        asset=asset,
        description=f"Rows = {written} written + exact duplicates folded + rows rejected.",
    )


def readback_spec(asset: AssetKey) -> AssetCheckSpec:
    return AssetCheckSpec(
        READBACK_CHECK,
        asset=asset,
        description="InfluxQL counts per series and field in the file's time window hold "
        "every value written.",
    )


def accounting_check(rows: int, written: int, deduplicated: int, rejected: int) -> AssetCheckResult:
    """`rows_accounted_for`: no row of the file is lost between the rules and the store."""
    return AssetCheckResult(
        check_name=ACCOUNTING_CHECK,
        passed=rows == written + deduplicated + rejected,
        severity=AssetCheckSeverity.ERROR,
        metadata={
            "rows": rows,
            "written": written,
            "deduplicated": deduplicated,
            "rejected": rejected,
        },
    )


def readback_check(expected: SeriesCounts, found: SeriesCounts) -> AssetCheckResult:
    """`readback_matches`, naming each series and field that reads back short."""
    short = compare_counts(expected, found)
    named = [
        ",".join(f"{k}={v}" for k, v in item["series"].items())
        + f" {item['field']}: written {item['written']}, read {item['read']}"
        for item in short[:READBACK_LISTED]
    ]
    return AssetCheckResult(
        check_name=READBACK_CHECK,
        passed=not short,
        severity=AssetCheckSeverity.ERROR,
        description=(
            "every series reads back what was written"
            if not short
            else f"{len(short)} series/fields read back short: " + "; ".join(named[:5])
        ),
        metadata={
            "series_written": len(expected),
            "series_read": len(found),
            "series_short": len(short),
            "short": MetadataValue.json(short[:READBACK_LISTED]),
            "short_series": MetadataValue.md("\n".join(f"- `{n}`" for n in named) or "none"),
        },
    )
