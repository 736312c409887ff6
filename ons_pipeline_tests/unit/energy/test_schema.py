from __future__ import annotations

import pytest

from ons_pipeline.energy.schema import (
    FileRejectedError,
    ObjectRef,
    detect_dataset,
    objects_from_event,
    plan_loads,
)


@pytest.mark.parametrize(
    ("key", "dataset"),
    [
        ("dataset=generation/year=2024/month=01/file.parquet", "generation"),
        ("energy/dataset=consumption/year=2024/x.parquet", "consumption"),
        ("dataset%3Dtransmission/year=2024/x.parquet", "transmission"),
        ("dataset=generation/dataset=generation/x.parquet", "generation"),
    ],
)
def test_dataset_is_a_whole_path_segment(key: str, dataset: str) -> None:
    assert detect_dataset(key) == dataset


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        ("year=2024/file.parquet", "unknown_dataset"),
        ("dataset=generation_backup/file.parquet", "unknown_dataset"),
        ("xdataset=generation/file.parquet", "unknown_dataset"),
        ("dataset=Generation/file.parquet", "unknown_dataset"),
        ("dataset=generation/dataset=consumption/f.parquet", "ambiguous_dataset"),
    ],
)
def test_unusable_keys_are_rejected_with_a_reason(key: str, reason: str) -> None:
    with pytest.raises(FileRejectedError) as raised:
        detect_dataset(key)
    assert raised.value.reason == reason


def test_s3_notification_every_record_url_decoded() -> None:
    event = {
        "Records": [
            {
                "s3": {
                    "bucket": {"name": "b"},
                    "object": {"key": "dataset%3Dgeneration/a+b.parquet"},
                }
            },
            {
                "s3": {
                    "bucket": {"name": "b"},
                    "object": {"key": "dataset=consumption/%C3%A9.parquet"},
                }
            },
        ]
    }
    assert objects_from_event(event) == [
        ObjectRef("b", "dataset=generation/a b.parquet"),
        ObjectRef("b", "dataset=consumption/é.parquet"),
    ]


def test_step_functions_form_is_verbatim() -> None:
    event = {"bucket": "b", "key": "dataset=generation/a+b.parquet"}
    assert objects_from_event(event) == [ObjectRef("b", "dataset=generation/a+b.parquet")]


def test_other_events_are_refused() -> None:
    with pytest.raises(ValueError, match="neither"):
        objects_from_event({"detail": {}})
    with pytest.raises(ValueError, match=r"Records\[0\]"):
        objects_from_event({"Records": [{"sns": {}}]})


def test_plan_keeps_loadable_objects_and_says_why_not_the_rest() -> None:
    refs = [
        ObjectRef("p", "dataset=generation/a.parquet"),
        ObjectRef("p", "dataset=generation/a.parquet"),
        ObjectRef("other", "dataset=generation/b.parquet"),
        ObjectRef("p", "dataset=generation/c.json"),
        ObjectRef("p", "dataset=generation_backup/d.parquet"),
        ObjectRef("p", "dataset=generation/e...parquet"),
        ObjectRef("p", "generation/f.parquet"),
    ]
    plan = plan_loads(refs, "p")
    # An unknown dataset under dataset= is a partition: its load rejects it with a record.
    assert plan.partition_keys == [
        "dataset=generation/a.parquet",
        "dataset=generation_backup/d.parquet",
    ]
    assert set(plan.skipped) == {
        "s3://other/dataset=generation/b.parquet",
        "dataset=generation/c.json",
        "dataset=generation/e...parquet",
        "generation/f.parquet",
    }
    assert plan.skipped["generation/f.parquet"].startswith("unknown_dataset")
