"""The sales storage seam: absorbing packets is idempotent, refusals say why and lose nothing."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import boto3
import pytest
from dagster import Failure
from moto import mock_aws

from ons_pipeline.resources import ObjectStoreResource, ParameterStoreResource, SalesStorageResource
from ons_pipeline.sales.outputs import to_parquet_bytes
from ons_pipeline.sales.packets import history_schema, parse_packet
from ons_pipeline.sales.storage import (
    Manifest,
    RawIndex,
    absorb_packets,
    discover_packets,
    history_key,
    legacy_snapshot_key,
    load_raw,
    manifest_key,
    raw_index_key,
    read_packet,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

REGION = "eu-west-2"
STORAGE = SalesStorageResource(ingestion_bucket="ingest", processed_bucket="processed")


def currency_packet(*lines: str) -> bytes:
    return ("\n".join(lines) + "\n").encode()


GBP = json.dumps(
    {"currency_id": 1, "currency_code": "GBP", "last_updated": "2022-11-03T14:20:49.962000"}
)
USD = json.dumps({"currency_id": 2, "currency_code": "USD", "last_updated": "2022-11-03T14:20:50"})


@pytest.fixture
def s3() -> Iterator[ObjectStoreResource]:
    with mock_aws():
        client = boto3.client("s3", region_name=REGION)
        for bucket in ("ingest", "processed"):
            client.create_bucket(
                Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION}
            )
        yield ObjectStoreResource(region_name=REGION)


def land(s3: ObjectStoreResource, key: str, body: bytes) -> None:
    s3.put_bytes("ingest", key, body, "application/x-ndjson")


def test_absorbing_a_packet_twice_adds_its_rows_once(s3: ObjectStoreResource) -> None:
    land(s3, "currency/currency-packet-00000001.jsonl", currency_packet(GBP, "{broken", USD))

    first = absorb_packets(s3, STORAGE, "currency", [1])
    etag = RawIndex.load(s3, STORAGE, "currency").etag
    again = absorb_packets(s3, STORAGE, "currency", [1])

    assert (first.lines, first.parsed, first.quarantined, first.new_rows) == (3, 2, 1, 2)
    assert first.lines == first.parsed + first.quarantined
    assert (again.new_rows, again.rows, again.changed) == (0, 2, True)  # still quarantines
    assert RawIndex.load(s3, STORAGE, "currency").etag == etag  # not rewritten
    (uri,) = again.quarantine_uris
    key = uri.removeprefix("s3://processed/")
    assert key == "quarantine/sales/raw/currency/currency-packet-00000001.jsonl"
    assert b"{broken" in (s3.get_bytes("processed", key) or b"")


def test_an_index_replaced_meanwhile_is_not_overwritten(s3: ObjectStoreResource) -> None:
    land(s3, "currency/currency-packet-00000001.jsonl", currency_packet(GBP))
    index = RawIndex.load(s3, STORAGE, "currency")
    absorb_packets(s3, STORAGE, "currency", [1])  # another run, after this one read
    stored = s3.get_bytes("processed", raw_index_key(STORAGE, "currency"))

    with pytest.raises(Failure, match="Another run absorbed") as raised:
        index.save(s3, STORAGE, "currency")

    assert raised.value.allow_retries
    assert s3.get_bytes("processed", raw_index_key(STORAGE, "currency")) == stored


def test_newer_versions_become_a_part_and_anything_else_a_merged_base(
    s3: ObjectStoreResource,
) -> None:
    def version(currency_id: int, at: str) -> str:
        return json.dumps({"currency_id": currency_id, "currency_code": "GBP", "last_updated": at})

    land(s3, "currency/currency-packet-00000001.jsonl", currency_packet(GBP, USD))
    land(
        s3,
        "currency/currency-packet-00000002.jsonl",
        currency_packet(version(1, "2023-01-01T00:00:00")),
    )
    late = currency_packet(
        version(2, "2022-12-01T00:00:00"), GBP
    )  # an older version and a re-delivery
    land(s3, "currency/currency-packet-00000003.jsonl", late)

    absorb_packets(s3, STORAGE, "currency", [1])
    absorb_packets(s3, STORAGE, "currency", [2])
    appended = RawIndex.load(s3, STORAGE, "currency")
    absorbed = absorb_packets(s3, STORAGE, "currency", [3])
    merged = RawIndex.load(s3, STORAGE, "currency")

    assert appended.base is None and [p["packets"] for p in appended.parts] == [[[1, 1]], [[2, 2]]]
    assert (appended.rows, appended.watermark) == (3, "2023-01-01T00:00:00.000000")
    assert (absorbed.new_rows, merged.rows, merged.parts) == (1, 4, [])
    assert merged.base is not None and merged.watermark == appended.watermark
    rows = load_raw(s3, STORAGE, "currency", merged.keys())
    assert sorted(rows["last_updated"].astype(str)) == sorted(
        [
            "2022-11-03T14:20:49.962000",
            "2022-11-03T14:20:50",
            "2023-01-01T00:00:00",
            "2022-12-01T00:00:00",
        ]
    )
    for key in appended.keys():  # the parts the base replaced are gone
        assert s3.get_bytes("processed", key) is None


def test_a_history_from_before_the_index_is_the_base(s3: ObjectStoreResource) -> None:
    rows = parse_packet("currency", 1, currency_packet(GBP, USD)).rows
    data = to_parquet_bytes(rows, history_schema("currency"))
    s3.put_bytes("processed", history_key(STORAGE, "currency"), data, "application/x-parquet")

    index = RawIndex.load(s3, STORAGE, "currency")

    assert (index.base, index.rows) == (history_key(STORAGE, "currency"), 2)
    assert index.watermark == "2022-11-03T14:20:50.000000"


def test_a_missing_packet_fails_without_retries(s3: ObjectStoreResource) -> None:
    with pytest.raises(Failure, match=r"currency-packet-00000007\.jsonl does not exist") as raised:
        read_packet(s3, STORAGE, "currency", 7)
    assert not raised.value.allow_retries
    assert s3.get_bytes("processed", raw_index_key(STORAGE, "currency")) is None


def test_discovery_starts_after_the_last_packet_and_names_strays(s3: ObjectStoreResource) -> None:
    for packet_id in (1, 2, 3):
        land(s3, f"currency/currency-packet-{packet_id:08d}.jsonl", currency_packet(GBP))
    land(s3, "currency/notes.txt", b"not a packet")
    ssm = ParameterStoreResource(region_name=REGION)
    ssm.put_int(STORAGE.last_packet_parameter("currency"), 1)

    found, not_packets = discover_packets(s3, ssm, STORAGE)

    assert found == [("currency", 2), ("currency", 3)]
    assert list(not_packets) == ["currency/notes.txt"]


def test_a_manifest_from_before_the_protocol_names_the_legacy_snapshots(
    s3: ObjectStoreResource,
) -> None:
    legacy = {"output_sequence": {"dim_currency": 3}, "watermark": "2022-11-03 14:20:50"}
    s3.put_bytes("processed", manifest_key(STORAGE), json.dumps(legacy).encode(), "text/json")

    manifest = Manifest.load(s3, STORAGE)

    assert manifest.entry == 0 and manifest.pending is None
    assert manifest.snapshots == {"dim_currency": legacy_snapshot_key(STORAGE, "dim_currency")}
    assert manifest.next_sequence("dim_currency") == 4
