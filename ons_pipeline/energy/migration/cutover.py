"""The cutover switch as the energy loads see it (`ONS_ENERGY_SINKS`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dagster import AssetCheckResult, AssetExecutionContext, MaterializeResult

if TYPE_CHECKING:
    from ons_pipeline.resources import EnergyStorageResource


def skipped_by_sinks(
    context: AssetExecutionContext, energy_storage: EnergyStorageResource, store: str
) -> MaterializeResult:
    """What a load reports when the switch leaves its store out: nothing written, and why.

    After a rollback, re-load these partitions (their metadata says `written: false`) so the
    store that was off gets the files it missed.
    """
    reason = f"ONS_ENERGY_SINKS={energy_storage.sinks} does not include {store}"
    return MaterializeResult(
        metadata={
            "energy_sinks": energy_storage.sinks,
            "written": False,
            "skipped": reason,
            "dagster/row_count": 0,
        },
        check_results=[
            AssetCheckResult(check_name=spec.name, passed=True, metadata={"skipped": reason})
            for spec in context.assets_def.check_specs
        ],
    )
