"""Range-parallel listing against the local stack's S3 over HTTP, with late keys in every gap."""

from __future__ import annotations

import uuid

import boto3
import pytest

from ons_pipeline.local.demo.visits_data import generate_corpus, land_files
from ons_pipeline.resources import ObjectStoreResource
from ons_pipeline.visits.storage import key_ranges, list_event_objects

pytestmark = pytest.mark.integration

REGION = "eu-west-2"


def test_ranges_from_the_ledger_list_every_object_once(stack_env: dict[str, str]) -> None:
    bucket = f"ranges-{uuid.uuid4().hex[:10]}"
    store = ObjectStoreResource(region_name=REGION)
    client = store.get_client()
    client.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
    corpus = generate_corpus(visits=60, seed=11)
    land_files(client, bucket, corpus.initial, workers=8)
    ledger_keys = [f.key for f in corpus.initial]
    # Late files sort among the processed ones; a folder marker and a key elsewhere are not
    # event objects.
    land_files(client, bucket, corpus.late, workers=8)
    client.put_object(Bucket=bucket, Key="logs/nested/", Body=b"")
    client.put_object(Bucket=bucket, Key="elsewhere/log-submit.json", Body=b"{}")
    client.delete_object(Bucket=bucket, Key=ledger_keys[5])  # in the ledger, gone since
    plain = boto3.client("s3", region_name=REGION)
    expected = {
        item["Key"]: item["ETag"]
        for page in plain.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="logs/")
        for item in page.get("Contents", [])
        if not item["Key"].endswith("/")
    }
    ranges = key_ranges("logs/", ledger_keys, per_range=7)
    assert len(ranges) > 10 and any(r.prefix != "logs/" for r in ranges)
    late_keys = {f.key for f in corpus.late} - set(ledger_keys)
    assert late_keys and len(expected) == len(set(ledger_keys) | late_keys) - 1

    listed = list_event_objects(store, bucket, "logs/", ledger_keys, per_range=7, workers=8)

    assert listed == expected
