"""S3-arrival sensor: new processed energy objects become partitions and runs."""

import json
from collections.abc import Mapping

from dagster import (
    DefaultSensorStatus,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from ons_pipeline.energy.jobs import energy_load_job
from ons_pipeline.energy.partitions import energy_objects_partitions
from ons_pipeline.energy.schema import DATASETS, LoadPlan, ObjectRef, objects_from_event, plan_loads
from ons_pipeline.resources import EnergyStorageResource, ObjectStoreResource

# Listing pages per dataset prefix per tick: bounds a tick's work however much is waiting.
PAGES_PER_DATASET = 5


def new_objects(
    s3: ObjectStoreResource,
    bucket: str,
    cursor: Mapping[str, str],
    *,
    pages_per_dataset: int = PAGES_PER_DATASET,
    page_size: int = 1000,
) -> tuple[list[ObjectRef], dict[str, str], bool]:
    """Objects after each dataset prefix's cursor key, the advanced cursor, all seen or not.

    Keys under `dataset=<name>/year=YYYY/month=MM/` sort in arrival order within a dataset,
    so a `StartAfter` cursor per dataset prefix costs O(new keys), never O(bucket); one
    cursor for all prefixes would skip a consumption file landing after a generation one.
    """
    listed, advanced, exhausted = s3.list_new_per_prefix(
        bucket,
        {dataset: f"dataset={dataset}/" for dataset in DATASETS},
        cursor,
        lambda _dataset, key: key.endswith(".parquet"),
        max_pages=pages_per_dataset,
        page_size=page_size,
    )
    refs = [ObjectRef(bucket, key) for dataset in DATASETS for key in listed[dataset]]
    return refs, advanced, exhausted


def load_requests(plan: LoadPlan) -> SensorResult:
    """Partitions to add and one run per object key (run_key = key)."""
    return SensorResult(
        run_requests=[RunRequest(run_key=key, partition_key=key) for key in plan.partition_keys],
        dynamic_partitions_requests=[
            energy_objects_partitions.build_add_request(plan.partition_keys)
        ]
        if plan.partition_keys
        else [],
    )


def requests_from_event(event: dict[str, object], processed_bucket: str) -> SensorResult:
    """What the sensor would request for an S3 notification or a Step Functions payload."""
    return load_requests(plan_loads(objects_from_event(event), processed_bucket))


@sensor(
    job=energy_load_job,
    minimum_interval_seconds=60,
    default_status=DefaultSensorStatus.STOPPED,
    description="Adds a partition and starts both energy loads for each processed Parquet "
    "object that landed since the last tick.",
)
def energy_object_sensor(
    context: SensorEvaluationContext, s3: ObjectStoreResource, energy_storage: EnergyStorageResource
) -> SensorResult | SkipReason:
    bucket = energy_storage.processed_bucket
    cursor = json.loads(context.cursor) if context.cursor else {}
    refs, advanced, exhausted = new_objects(s3, bucket, cursor)
    plan = plan_loads(refs, bucket)
    for key, why in plan.skipped.items():
        context.log.warning(f"Not loading {key}: {why}")
    if not plan.partition_keys:
        if advanced != cursor:
            return SensorResult(run_requests=[], cursor=json.dumps(advanced, sort_keys=True))
        return SkipReason(f"No new energy objects in s3://{bucket}")
    context.log.info(
        f"{len(plan.partition_keys)} new objects"
        f"{'' if exhausted else ' (more remain for the next tick)'}"
    )
    result = load_requests(plan)
    return SensorResult(
        run_requests=result.run_requests,
        dynamic_partitions_requests=result.dynamic_partitions_requests,
        cursor=json.dumps(advanced, sort_keys=True),
    )
