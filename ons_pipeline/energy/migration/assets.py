"""Dagster wiring: one migration asset per dataset, partitioned by day, backfillable.

`BackfillPolicy.single_run()` lets one run take a range of days (the UI's partition picker,
`dagster asset materialize --partition-range`); the run migrates its windows in order. For
each window the blocking check `window_matches` compares the stores per series; only a window
that matches is reported materialized, so a failed window stays unmigrated and fails the run
(the run-failure sensor then alerts through SNS). Transient faults are retried per request
inside (Timestream throttling/5xx, InfluxDB 429/5xx); a failed window is simply re-run, as
writing the same points again overwrites them.
"""

import warnings
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from dagster import (
    AssetCheckEvaluation,
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetChecksDefinition,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    AssetMaterialization,
    AssetsDefinition,
    AssetSelection,
    AssetSpec,
    BackfillPolicy,
    DailyPartitionsDefinition,
    Failure,
    Output,
    ScheduleDefinition,
    asset_check,
    define_asset_job,
    multi_asset,
)

from ons_pipeline.energy.migration.export import Window
from ons_pipeline.energy.migration.steps import (
    check_window,
    compare_window,
    export_window,
    write_window,
)
from ons_pipeline.energy.migration.window import WriteLane, ahead, overlapped
from ons_pipeline.energy.schema import COLUMN_DESCRIPTIONS, DATASETS, PROCESSED_SCHEMA
from ons_pipeline.platform.metadata import OWNERS, asset_tags, column_schema_metadata
from ons_pipeline.resources import (
    EnergyStorageResource,
    InfluxDBResource,
    ObjectStoreResource,
    TimestreamResource,
    settings,
)

MIGRATION_GROUP = "energy_migration"
WINDOW_CHECK = "window_matches"
BLUE_GREEN_CHECK = "blue_green_last_day"

migration_partitions = DailyPartitionsDefinition(
    start_date=settings.read("ONS_MIGRATION_START_DATE"), timezone="UTC"
)


def migration_key(dataset: str) -> AssetKey:
    return AssetKey(["energy", "migration", dataset])


def build_migration_asset(dataset: str) -> AssetsDefinition:
    key = migration_key(dataset)
    with warnings.catch_warnings():
        # A partitioned check is a Dagster preview; it is what makes the check per window.
        warnings.filterwarnings("ignore", message=r".*partitions_def on an AssetCheckSpec.*")
        window_check = AssetCheckSpec(
            WINDOW_CHECK,
            asset=key,
            blocking=True,
            partitions_def=migration_partitions,
            description="Per series: count, sum and first/last time in Timestream equal those "
            "in InfluxDB for the window; every exported record written or quarantined.",
        )

    @multi_asset(
        name=f"energy_migration_{dataset}",
        specs=[
            AssetSpec(
                key,
                group_name=MIGRATION_GROUP,
                skippable=True,
                kinds={"timestream", "influxdb"},
                owners=OWNERS,
                tags=asset_tags(MIGRATION_GROUP, "timestream"),
                metadata=column_schema_metadata(PROCESSED_SCHEMA, COLUMN_DESCRIPTIONS),
                description=f"{dataset} history moved from Timestream into InfluxDB, one "
                "UTC day per partition.",
            )
        ],
        check_specs=[window_check],
        partitions_def=migration_partitions,
        backfill_policy=BackfillPolicy.single_run(),
        op_tags={"ons/group": MIGRATION_GROUP},
    )
    def migrate(
        context: AssetExecutionContext,
        timestream: TimestreamResource,
        influxdb: InfluxDBResource,
        s3: ObjectStoreResource,
        energy_storage: EnergyStorageResource,
    ) -> Iterator[AssetCheckEvaluation | AssetMaterialization | Output[None]]:
        # Three windows in flight: the next one exported while this one is written and the
        # previous one compared. One write lane for the run: a day is mapped while the day
        # before finishes writing.
        with WriteLane() as lane:
            exported = ahead(
                context.partition_keys,
                lambda day: export_window(dataset, day, timestream, influxdb, s3, energy_storage),
            )
            checked = overlapped(
                exported,
                lambda item: write_window(dataset, item[1], timestream, influxdb, lane),
                lambda _, written: check_window(
                    context, dataset, written, timestream, influxdb, s3, energy_storage
                ),
            )
            for (day, _), (passed, metadata, check_metadata) in checked:
                yield AssetCheckEvaluation(
                    asset_key=key,
                    check_name=WINDOW_CHECK,
                    passed=passed,
                    metadata=check_metadata,
                    severity=AssetCheckSeverity.ERROR,
                    blocking=True,
                    partition=day,
                    description=None if passed else f"{day}: the stores differ; not migrated",
                )
                if passed:
                    yield AssetMaterialization(asset_key=key, partition=day, metadata=metadata)
        # One evaluation per window went out above; the check's output closes the step (a
        # failed blocking evaluation then fails it).
        yield Output(None, output_name=window_check.get_python_identifier())

    return migrate


def build_blue_green_check(dataset: str) -> AssetChecksDefinition:
    @asset_check(
        asset=migration_key(dataset),
        name=BLUE_GREEN_CHECK,
        description="While both stores are written: yesterday (UTC) holds the same series in "
        "Timestream and InfluxDB. A divergence fails the run, which alerts through SNS.",
    )
    def blue_green(
        context: AssetCheckExecutionContext,
        timestream: TimestreamResource,
        influxdb: InfluxDBResource,
        energy_storage: EnergyStorageResource,
    ) -> AssetCheckResult:
        today = datetime.now(UTC).date()
        day = (today - timedelta(days=1)).isoformat()
        sinks = energy_storage.sinks
        if not (energy_storage.writes("timestream") and energy_storage.writes("influxdb")):
            return AssetCheckResult(
                passed=True, metadata={"day": day, "skipped": f"ONS_ENERGY_SINKS={sinks}"}
            )
        diffs, metadata = compare_window(timestream, influxdb, dataset, Window.day(day))
        if diffs:
            raise Failure(
                description=f"{dataset} {day}: Timestream and InfluxDB differ in "
                f"{len(diffs)} series: "
                + "; ".join(f"{d['series']} {d['field']}" for d in diffs[:10]),
                metadata={"day": day, **metadata},
                allow_retries=False,
            )
        return AssetCheckResult(passed=True, metadata={"day": day, **metadata})

    return blue_green


migration_assets = [build_migration_asset(dataset) for dataset in DATASETS]
blue_green_checks = [build_blue_green_check(dataset) for dataset in DATASETS]

energy_migration_job = define_asset_job(
    "energy_migration_job",
    selection=AssetSelection.groups(MIGRATION_GROUP),
    description="Migrate Timestream history into InfluxDB for the selected days.",
    tags={"ons/group": MIGRATION_GROUP},
)
energy_blue_green_job = define_asset_job(
    "energy_blue_green_job",
    selection=AssetSelection.checks(*blue_green_checks),
    description="Compare yesterday in Timestream and InfluxDB while both are written.",
    tags={"ons/group": MIGRATION_GROUP},
)
energy_blue_green_daily = ScheduleDefinition(
    name="energy_blue_green_daily",
    job=energy_blue_green_job,
    cron_schedule="30 1 * * *",
    execution_timezone="UTC",
    description="Daily blue/green comparison of the two energy stores.",
)
