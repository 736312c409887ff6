"""Sales contracts: the star step's own checks and the cross-table check on committed files."""

import pandas as pd
from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetKey,
    MetadataValue,
    asset_check,
)

from ons_pipeline.platform.metadata import markdown_table
from ons_pipeline.resources import ObjectStoreResource, SalesStorageResource
from ons_pipeline.sales.commit import load_table
from ons_pipeline.sales.schema import FACT_FOREIGN_KEYS, STAR_KEYS, STAR_SCHEMAS
from ons_pipeline.sales.storage import Manifest, load_parquet, uri
from ons_pipeline.sales.transform import STAR_TABLES

STAR_KEYS_BY_TABLE = {table: AssetKey([table]) for table in STAR_TABLES}
FACTS_KEY = STAR_KEYS_BY_TABLE["fact_sales_order"]
ACCOUNTED = ["written", "quarantined", "deduplicated", "superseded"]


def star_check_specs() -> list[AssetCheckSpec]:
    """The checks `sales_star_schema` evaluates in its own step, on the frames it built."""
    specs = [
        AssetCheckSpec(
            "rows_accounted_for",
            asset=FACTS_KEY,
            description="Every raw row is written, quarantined, folded as a re-delivery or "
            "superseded by a newer version: none vanish.",
        )
    ]
    for table in STAR_TABLES:
        specs += [
            AssetCheckSpec(
                "keys_unique",
                asset=STAR_KEYS_BY_TABLE[table],
                description=f"{'/'.join(STAR_KEYS[table])} identifies one row.",
            ),
            AssetCheckSpec(
                "required_columns_not_null",
                asset=STAR_KEYS_BY_TABLE[table],
                description="No non-nullable column of the contract holds a null.",
            ),
        ]
    return specs


def table_checks(table: str, frame: pd.DataFrame) -> list[AssetCheckResult]:
    """`keys_unique` and `required_columns_not_null` of one star table."""
    key_columns = list(STAR_KEYS[table])
    duplicates = int(frame.duplicated(subset=key_columns).sum())
    required = [f.name for f in STAR_SCHEMAS[table] if not f.nullable]
    nulls = {column: int(frame[column].isna().sum()) for column in required}
    nulls = {column: count for column, count in nulls.items() if count}
    return [
        AssetCheckResult(
            check_name="keys_unique",
            asset_key=STAR_KEYS_BY_TABLE[table],
            passed=duplicates == 0,
            severity=AssetCheckSeverity.ERROR,
            metadata={"duplicate_keys": duplicates, "key": ", ".join(key_columns)},
        ),
        AssetCheckResult(
            check_name="required_columns_not_null",
            asset_key=STAR_KEYS_BY_TABLE[table],
            passed=not nulls,
            severity=AssetCheckSeverity.ERROR,
            metadata={"null_counts": MetadataValue.json(nulls)},
        ),
    ]


def rows_accounted_for(accounting: pd.DataFrame) -> AssetCheckResult:
    """Per source table: rows in = written + quarantined + deduplicated + superseded."""
    balance = accounting["rows_in"] - accounting[ACCOUNTED].sum(axis=1)
    return AssetCheckResult(
        check_name="rows_accounted_for",
        asset_key=FACTS_KEY,
        passed=bool((balance == 0).all()),
        severity=AssetCheckSeverity.ERROR,
        metadata={
            "accounting": markdown_table(accounting),
            "unaccounted_rows": int(balance.abs().sum()),
        },
    )


@asset_check(
    asset=FACTS_KEY,
    additional_deps=[key for key in STAR_KEYS_BY_TABLE.values() if key != FACTS_KEY],
    description="Every foreign key (staff, counterparty, currency, design, location, dates) "
    "of the facts the last run published exists in its dimension.",
    blocking=False,
)
def fact_foreign_keys_exist(
    context: AssetCheckExecutionContext,
    s3: ObjectStoreResource,
    sales_storage: SalesStorageResource,
) -> AssetCheckResult:
    """The facts the last entry published, against the dimensions as committed now.

    Reading the last fact file, not the whole table, keeps the check's cost per run the
    size of what the run added; every fact was checked by the entry that published it.
    """
    manifest = Manifest.load(s3, sales_storage)
    last_file = manifest.files.get("fact_sales_order")
    facts = load_parquet(s3, sales_storage.processed_bucket, last_file)
    if facts is None:
        return AssetCheckResult(
            passed=False,
            severity=AssetCheckSeverity.WARN,
            metadata={"reason": "fact_sales_order has not been written yet"},
        )
    dims = {
        dim: load_table(s3, sales_storage, manifest, dim)
        for dim, _ in set(FACT_FOREIGN_KEYS.values())
    }
    dangling: dict[str, int] = {}
    for column, (dim, dim_column) in FACT_FOREIGN_KEYS.items():
        known = dims[dim][dim_column] if dims[dim] is not None else facts[column].iloc[:0]
        missing = int((~facts[column].isin(known)).sum())
        if missing:
            dangling[column] = missing
    context.log.info(
        f"Checked {len(facts)} facts of {last_file}; dangling keys: {dangling or 'none'}"
    )
    return AssetCheckResult(
        passed=not dangling,
        severity=AssetCheckSeverity.ERROR,
        metadata={
            "facts_checked": len(facts),
            "fact_file": MetadataValue.path(uri(sales_storage, last_file or "")),
            "dangling_by_column": MetadataValue.json(dangling),
        },
    )
