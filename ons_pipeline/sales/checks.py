"""Contracts across sales assets, checked on the files the star schema committed."""

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    MetadataValue,
    asset_check,
)

from ons_pipeline.resources import ObjectStoreResource, SalesStorageResource
from ons_pipeline.sales.assets import STAR_KEYS_BY_TABLE, load_snapshot
from ons_pipeline.sales.schema import FACT_FOREIGN_KEYS


@asset_check(
    asset=STAR_KEYS_BY_TABLE["fact_sales_order"],
    additional_deps=[STAR_KEYS_BY_TABLE[t] for t in STAR_KEYS_BY_TABLE if t != "fact_sales_order"],
    description="Every fact foreign key (staff, counterparty, currency, design, location, "
    "dates) exists in its dimension.",
    blocking=False,
)
def fact_foreign_keys_exist(
    context: AssetCheckExecutionContext,
    s3: ObjectStoreResource,
    sales_storage: SalesStorageResource,
) -> AssetCheckResult:
    facts = load_snapshot(s3, sales_storage, "fact_sales_order")
    if facts is None:
        return AssetCheckResult(
            passed=False,
            severity=AssetCheckSeverity.WARN,
            metadata={"reason": "fact_sales_order has not been written yet"},
        )
    dims = {
        dim: load_snapshot(s3, sales_storage, dim) for dim, _ in set(FACT_FOREIGN_KEYS.values())
    }
    dangling: dict[str, int] = {}
    for column, (dim, dim_column) in FACT_FOREIGN_KEYS.items():
        known = dims[dim][dim_column] if dims[dim] is not None else facts[column].iloc[:0]
        missing = int((~facts[column].isin(known)).sum())
        if missing:
            dangling[column] = missing
    context.log.info(f"Checked {len(facts)} facts; dangling keys: {dangling or 'none'}")
    return AssetCheckResult(
        passed=not dangling,
        severity=AssetCheckSeverity.ERROR,
        metadata={"facts_checked": len(facts), "dangling_by_column": MetadataValue.json(dangling)},
    )
