"""The energy data contract (ARCHITECTURE.md section 4): datasets, columns, object keys, events.

Pure logic, no Dagster: the sensor, the assets and the tests share it.
"""

from __future__ import annotations

import json
import urllib.parse
from dataclasses import dataclass
from typing import Any, Final

import pyarrow as pa

DATASETS: Final = ("generation", "consumption", "transmission")
DIMENSION: Final = {
    "generation": "energy_source",
    "consumption": "consumer_type",
    "transmission": "line_id",
}
WIDE_FIELDS: Final = {
    "generation": ("power_mw", "capacity_factor", "efficiency"),
    "consumption": ("consumption_mwh", "demand_mw", "load_factor"),
    "transmission": ("flow_mw", "losses_mwh", "voltage_kv"),
}
MEASUREMENT: Final = {name: f"{name}_data" for name in DATASETS}
# Every processed energy object sits under this prefix; the bucket announces what lands there.
DATASET_PREFIX: Final = "dataset="
OPTIONAL_TAGS: Final = ("measurement_type", "quality_flag")
# Long rows: the float field is named from the unit; any other unit gives `value`.
UNIT_FIELDS: Final = {
    "MW": "power_mw",
    "MWh": "energy_mwh",
    "kV": "voltage_kv",
    "A": "current_a",
    "Hz": "frequency_hz",
    "%": "percentage",
    "ratio": "ratio",
}
DEFAULT_FIELD: Final = "value"
# Timestream's limit on a dimension value, and the rule we apply to every tag and unit.
MAX_TAG_BYTES: Final = 2048

# The columns of a processed file, as loaded (a file has its dataset's dimension and either
# `value` + `unit` (long) or its dataset's wide fields), each described for the UI.
PROCESSED_SCHEMA: Final = pa.schema(
    [
        pa.field("timestamp", pa.timestamp("ns", tz="UTC"), nullable=False),
        pa.field("region", pa.string(), nullable=False),
        *(pa.field(DIMENSION[d], pa.string()) for d in DATASETS),
        pa.field("value", pa.float64()),
        pa.field("unit", pa.string()),
        *(pa.field(name, pa.float64()) for d in DATASETS for name in WIDE_FIELDS[d]),
        *(pa.field(name, pa.string()) for name in OPTIONAL_TAGS),
    ]
)
COLUMN_DESCRIPTIONS: Final[dict[str, str]] = {
    "timestamp": "When the value was measured (any unit or zone in the file; loaded as UTC ns).",
    "region": "Grid region, e.g. N, NE, SE/CO, S (a tag in InfluxDB, a dimension in Timestream).",
    "energy_source": "generation only: the source, e.g. hydro, wind, solar (tag/dimension).",
    "consumer_type": "consumption only: residential, industrial or commercial (tag/dimension).",
    "line_id": "transmission only: the line, e.g. SE-S_765kV (tag/dimension).",
    "value": "Long files: the measured value; the field is named from the unit (MW: power_mw).",
    "unit": "Long files: the value's unit (MW, MWh, kV, A, Hz, %, ratio).",
    "power_mw": "generation, wide: power generated, MW.",
    "capacity_factor": "generation, wide: share of installed capacity used, 0-1.",
    "efficiency": "generation, wide: conversion efficiency, 0-1.",
    "consumption_mwh": "consumption, wide: energy consumed in the interval, MWh.",
    "demand_mw": "consumption, wide: demand, MW.",
    "load_factor": "consumption, wide: average over peak load, 0-1.",
    "flow_mw": "transmission, wide: power flowing on the line, MW.",
    "losses_mwh": "transmission, wide: energy lost on the line, MWh.",
    "voltage_kv": "transmission, wide: line voltage, kV.",
    "measurement_type": "Optional tag: what was measured, e.g. power.",
    "quality_flag": "Optional tag: the measurement's quality, e.g. good.",
}


def file_schema(dataset: str, layout: str) -> pa.Schema:
    """The processed-file columns a `dataset` file in `layout` (long or wide) has."""
    fields = ["value", "unit"] if layout == "long" else list(WIDE_FIELDS[dataset])
    names = {"timestamp", "region", DIMENSION[dataset], *fields, *OPTIONAL_TAGS}
    return pa.schema([f for f in PROCESSED_SCHEMA if f.name in names])


REASONS: Final = (
    "invalid_timestamp",
    "missing_tag",
    "invalid_tag",
    "missing_unit",
    "missing_value",
    "non_numeric_value",
    "non_finite_value",
    "conflicting_duplicate",
)


class FileRejectedError(ValueError):
    """The whole file is unusable (unknown dataset, missing column); `reason` says why."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason


def detect_dataset(key: str) -> str:
    """The dataset named by the key's one `dataset=<name>` path segment.

    Raises:
        FileRejectedError: `unknown_dataset` (no segment, or another name such as
            `generation_backup`) or `ambiguous_dataset` (two different names).
    """
    segments = urllib.parse.unquote(key).split("/")
    names = {s.split("=", 1)[1] for s in segments if s.startswith(DATASET_PREFIX)}
    if not names:
        raise FileRejectedError("unknown_dataset", f"no dataset=<name> segment in {key!r}")
    if len(names) > 1:
        raise FileRejectedError(
            "ambiguous_dataset", f"{key!r} names datasets {sorted(names)}; expected one"
        )
    (name,) = names
    if name not in DATASETS:
        raise FileRejectedError(
            "unknown_dataset", f"dataset {name!r} in {key!r} is not one of {list(DATASETS)}"
        )
    return name


@dataclass(frozen=True)
class ObjectRef:
    bucket: str
    key: str


def objects_from_event(event: dict[str, Any]) -> list[ObjectRef]:
    """The objects an event names, in the seeds' two shapes.

    An S3 event notification (`Records[].s3.bucket.name/object.key`, every record; S3 sends
    keys URL-encoded with `+` for spaces) or the Step Functions form `{"bucket", "key"}`
    (keys verbatim).

    Raises:
        ValueError: the event has neither shape.
    """
    if isinstance(event.get("Records"), list):
        refs = []
        for index, record in enumerate(event["Records"]):
            try:
                s3 = record["s3"]
                refs.append(
                    ObjectRef(s3["bucket"]["name"], urllib.parse.unquote_plus(s3["object"]["key"]))
                )
            except (KeyError, TypeError) as error:
                raise ValueError(f"Records[{index}] is not an S3 event record: {error}") from error
        return refs
    if isinstance(event.get("bucket"), str) and isinstance(event.get("key"), str):
        return [ObjectRef(event["bucket"], event["key"])]
    raise ValueError("event is neither an S3 notification (Records) nor {bucket, key}")


def objects_from_message(body: str) -> list[ObjectRef]:
    """The objects an SQS message body names: an S3 notification, SNS-wrapped or not.

    S3's `s3:TestEvent` (sent when a notification is configured) names none.

    Raises:
        ValueError: the body is not JSON or names objects in neither of the seeds' shapes.
    """
    try:
        payload = json.loads(body)
        if isinstance(payload, dict) and "Records" not in payload:
            if isinstance(payload.get("Message"), str):  # delivered through SNS
                payload = json.loads(payload["Message"])
    except json.JSONDecodeError as error:
        raise ValueError(f"body is not JSON: {error}") from error
    if not isinstance(payload, dict):
        raise ValueError(f"body is a JSON {type(payload).__name__}, not an event")
    if payload.get("Event") == "s3:TestEvent":
        return []
    return objects_from_event(payload)


@dataclass(frozen=True)
class LoadPlan:
    partition_keys: list[str]
    skipped: dict[str, str]  # object key (or s3 URI) -> why it is not loaded


# Dagster refuses partition keys containing these.
_BAD_PARTITION_SUBSTRINGS: Final = ("...", "\a", "\b", "\f", "\n", "\r", "\t", "\v", "\0")


def plan_loads(refs: list[ObjectRef], processed_bucket: str) -> LoadPlan:
    """Which objects become energy partitions (object keys), and why the others do not."""
    keys: list[str] = []
    skipped: dict[str, str] = {}
    for ref in refs:
        if ref.bucket != processed_bucket:
            skipped[f"s3://{ref.bucket}/{ref.key}"] = f"not the processed bucket {processed_bucket}"
            continue
        if not ref.key.endswith(".parquet"):
            skipped[ref.key] = "not a .parquet object"
            continue
        if any(s in ref.key for s in _BAD_PARTITION_SUBSTRINGS):
            skipped[ref.key] = "key contains characters Dagster refuses in a partition key"
            continue
        try:
            detect_dataset(ref.key)
        except FileRejectedError as error:
            # Under the dataset= prefixes it still becomes a partition: its load rejects it
            # whole with a quarantine record, so it is accounted for like any other object.
            if not ref.key.startswith(DATASET_PREFIX):
                skipped[ref.key] = str(error)
                continue
        if ref.key not in keys:
            keys.append(ref.key)
    return LoadPlan(partition_keys=keys, skipped=skipped)
