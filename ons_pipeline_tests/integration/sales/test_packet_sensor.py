"""The S3-arrival sensor over several ticks, against moto's server over HTTP."""

from __future__ import annotations

import functools
import json
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import pytest
from botocore.exceptions import ClientError
from dagster import (
    SensorResult,
    SkipReason,
    build_sensor_context,
    validate_run_config,
)

from ons_pipeline.definitions import defs
from ons_pipeline.resources import ObjectStoreResource, SalesStorageResource, build_client
from ons_pipeline.sales.packets import packet_key
from ons_pipeline.sales.sensors import PAGES_PER_TABLE, new_packets, totesys_packet_sensor
from ons_pipeline.sales.transform import SOURCE_TABLES

if TYPE_CHECKING:
    from collections.abc import Iterable

pytestmark = pytest.mark.integration

REGION = "eu-west-2"
PAGE_SIZE = 1000  # S3's ListObjectsV2 maximum, which the sensor asks for

Packet = tuple[str, int]

# ListObjectsV2 calls per counting resource, keyed by its `counter_key`.
LIST_CALLS: Counter[str] = Counter()


def _on_list(counter_key: str, fail_prefix: str, params: dict[str, Any], **_: Any) -> None:
    LIST_CALLS[counter_key] += 1
    if fail_prefix and params.get("Prefix", "").startswith(fail_prefix):
        raise ClientError(
            {"Error": {"Code": "InternalError", "Message": "injected failure"}}, "ListObjectsV2"
        )


class CountingObjectStore(ObjectStoreResource):
    """The real resource, counting its list calls (and failing one prefix when asked)."""

    counter_key: str = ""
    fail_prefix: str = ""

    def get_client(self) -> Any:
        if self._client is None:
            client = build_client(self, "s3")
            client.meta.events.register(
                "provide-client-params.s3.ListObjectsV2",
                functools.partial(_on_list, self.counter_key, self.fail_prefix),
            )
            self._client = client
        return self._client


@pytest.fixture
def s3(stack_env: dict[str, str]) -> Any:
    return ObjectStoreResource(region_name=REGION).get_client()


@pytest.fixture
def bucket(s3: Any) -> str:
    name = f"ons-sensor-test-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": REGION})
    return name


@pytest.fixture
def counter_key() -> str:
    return uuid.uuid4().hex


@pytest.fixture
def store(stack_env: dict[str, str], counter_key: str) -> CountingObjectStore:
    return CountingObjectStore(region_name=REGION, counter_key=counter_key)


@pytest.fixture
def storage(bucket: str) -> SalesStorageResource:
    return SalesStorageResource(ingestion_bucket=bucket, processed_bucket=bucket)


def put_keys(s3: Any, bucket: str, keys: Iterable[str]) -> None:
    def put(key: str) -> None:
        s3.put_object(Bucket=bucket, Key=key, Body=b'{"x": 1}\n')

    with ThreadPoolExecutor(max_workers=24) as pool:
        list(pool.map(put, keys))


def put_packets(s3: Any, bucket: str, table: str, ids: Iterable[int]) -> list[Packet]:
    ids = list(ids)
    put_keys(s3, bucket, (packet_key(table, packet_id) for packet_id in ids))
    return [(table, packet_id) for packet_id in ids]


def tick(
    store: ObjectStoreResource, storage: SalesStorageResource, cursor: str | None
) -> tuple[SensorResult | SkipReason, str | None]:
    """One evaluation; returns the result and the cursor Dagster would keep afterwards."""
    context = build_sensor_context(cursor=cursor, resources={"s3": store, "sales_storage": storage})
    result = totesys_packet_sensor(context)
    cursor_after = context.cursor
    if isinstance(result, SensorResult) and result.cursor is not None:
        cursor_after = result.cursor
    if isinstance(result, SensorResult) and result.skip_reason and not result.run_requests:
        return result.skip_reason, cursor_after
    return result, cursor_after


def requested_packets(result: SensorResult | SkipReason) -> list[Packet]:
    assert isinstance(result, SensorResult), result
    assert len(result.run_requests or []) == 1
    (request,) = result.run_requests or []
    assert set(request.run_config) == {"ops"}
    payload = request.run_config["ops"]["totesys_raw"]["config"]["packets"]
    return [(item["table"], item["id"]) for item in payload]


def drain(
    store: ObjectStoreResource,
    storage: SalesStorageResource,
    cursor: str | None,
    max_ticks: int = 10,
) -> tuple[list[list[Packet]], str | None]:
    """Tick until a SkipReason; every tick's packets, and the cursor afterwards."""
    batches: list[list[Packet]] = []
    for _ in range(max_ticks):
        result, cursor = tick(store, storage, cursor)
        if isinstance(result, SkipReason):
            return batches, cursor
        batches.append(requested_packets(result))
    pytest.fail(f"not caught up after {max_ticks} ticks")


def test_first_tick_on_empty_bucket_skips(
    store: CountingObjectStore, storage: SalesStorageResource, bucket: str
) -> None:
    result, cursor = tick(store, storage, None)
    assert isinstance(result, SkipReason)
    assert bucket in (result.skip_message or "")
    assert cursor is None


def test_packets_become_one_run_request_then_nothing_new_skips(
    s3: Any, store: CountingObjectStore, storage: SalesStorageResource, bucket: str
) -> None:
    expected = sorted(
        put_packets(s3, bucket, "sales_order", [1, 2])
        + put_packets(s3, bucket, "staff", [1])
        + put_packets(s3, bucket, "currency", [7])
    )

    result, cursor = tick(store, storage, None)

    assert isinstance(result, SensorResult)
    (request,) = result.run_requests or []
    assert request.run_config == {
        "ops": {
            "totesys_raw": {
                "config": {"packets": [{"table": t, "id": i} for t, i in expected]},
            }
        }
    }
    assert request.tags.get("ons/packets") == "4"
    assert request.run_key
    # The payload must be accepted by the job the sensor targets.
    validate_run_config(defs.resolve_job_def("sales_star_schema_job"), request.run_config)
    assert cursor is not None
    assert json.loads(cursor) == {
        "sales_order": packet_key("sales_order", 2),
        "staff": packet_key("staff", 1),
        "currency": packet_key("currency", 7),
    }

    again, cursor_after = tick(store, storage, cursor)
    assert isinstance(again, SkipReason)
    assert cursor_after == cursor


def test_new_packets_after_old_are_the_only_ones_requested(
    s3: Any, store: CountingObjectStore, storage: SalesStorageResource, bucket: str
) -> None:
    put_packets(s3, bucket, "sales_order", range(1, 4))
    put_packets(s3, bucket, "design", [1])
    _, cursor = tick(store, storage, None)

    new = put_packets(s3, bucket, "sales_order", [4, 5]) + put_packets(s3, bucket, "address", [1])
    result, cursor = tick(store, storage, cursor)
    assert requested_packets(result) == sorted(new)

    newer = put_packets(s3, bucket, "design", [2])
    result, _ = tick(store, storage, cursor)
    assert requested_packets(result) == newer


def test_unrelated_keys_never_produce_packets(
    s3: Any, store: CountingObjectStore, storage: SalesStorageResource, bucket: str
) -> None:
    put_keys(
        s3,
        bucket,
        [
            "sales_order/readme.txt",
            "other/x.jsonl",
            "other/other-packet-00000001.jsonl",
            "sales_order-packet-00000001.jsonl",
            "sales_order/sales_order-packet-1.jsonl",
            "sales_order/sales_order-packet-00000002.json",
            "sales_order/sales_order-packet-00000002.jsonl.tmp",
            "sales_order/staff-packet-00000001.jsonl",
            "staff/sales_order-packet-00000001.jsonl",
            "staff/staff-packet-0000000x.jsonl",
        ],
    )
    result, cursor = tick(store, storage, None)
    assert isinstance(result, SkipReason)

    real = put_packets(s3, bucket, "sales_order", [3])
    result, cursor = tick(store, storage, cursor)
    assert requested_packets(result) == real

    put_keys(s3, bucket, ["sales_order/sales_order-packet-00000003.jsonl.bak", "staff/notes.md"])
    result, _ = tick(store, storage, cursor)
    assert isinstance(result, SkipReason)


def test_run_key_is_stable_for_the_same_packets(
    s3: Any, store: CountingObjectStore, storage: SalesStorageResource, bucket: str
) -> None:
    put_packets(s3, bucket, "sales_order", [1, 2])
    put_packets(s3, bucket, "counterparty", [1])

    first, _ = tick(store, storage, None)
    second, _ = tick(CountingObjectStore(region_name=REGION), storage, None)
    assert isinstance(first, SensorResult)
    assert isinstance(second, SensorResult)
    key = (first.run_requests or [])[0].run_key
    assert key is not None
    assert (second.run_requests or [])[0].run_key == key

    put_packets(s3, bucket, "sales_order", [3])
    third, _ = tick(store, storage, None)
    assert isinstance(third, SensorResult)
    assert (third.run_requests or [])[0].run_key != key


def test_failed_tick_loses_nothing(
    s3: Any, storage: SalesStorageResource, bucket: str, stack_env: dict[str, str]
) -> None:
    put_packets(s3, bucket, "sales_order", [1])
    _, cursor = tick(CountingObjectStore(region_name=REGION), storage, None)
    expected = sorted(
        put_packets(s3, bucket, "sales_order", [2, 3]) + put_packets(s3, bucket, "staff", [1])
    )

    failing = CountingObjectStore(region_name=REGION, fail_prefix="staff/")
    context = build_sensor_context(
        cursor=cursor, resources={"s3": failing, "sales_storage": storage}
    )
    with pytest.raises(ClientError, match="injected failure"):
        totesys_packet_sensor(context)
    assert context.cursor == cursor

    result, _ = tick(CountingObjectStore(region_name=REGION), storage, cursor)
    assert requested_packets(result) == expected


def test_backlog_drains_over_ticks_then_new_packets_cost_one_page_per_table(
    s3: Any,
    store: CountingObjectStore,
    storage: SalesStorageResource,
    bucket: str,
    counter_key: str,
) -> None:
    # One backlog for both properties: uploads to moto cost ~3 ms each.
    budget = PAGES_PER_TABLE * PAGE_SIZE
    old = put_packets(s3, bucket, "sales_order", range(1, budget + 701))
    others = put_packets(s3, bucket, "staff", [1, 2])

    LIST_CALLS[counter_key] = 0
    first, cursor = tick(store, storage, None)
    first_packets = requested_packets(first)
    # (and one page of the bucket's top level, where keys outside the tables are reported)
    assert LIST_CALLS[counter_key] <= PAGES_PER_TABLE + len(SOURCE_TABLES)
    assert [p for p in first_packets if p[0] == "sales_order"] == old[:budget]

    rest, cursor = drain(store, storage, cursor)
    assert len(rest) == 1, "the 700 left over should come in the next tick"
    seen = first_packets + [p for batch in rest for p in batch]
    assert len(seen) == len(set(seen)), "a packet was requested twice"
    assert sorted(seen) == sorted(old + others)

    new = put_packets(s3, bucket, "sales_order", range(budget + 701, budget + 704))
    LIST_CALLS[counter_key] = 0
    result, _ = tick(store, storage, cursor)
    assert requested_packets(result) == new
    # One page per table and one of the top level, however many packets the bucket holds.
    assert LIST_CALLS[counter_key] <= len(SOURCE_TABLES) + 1


def test_new_packets_respects_page_budget_and_reports_exhaustion(
    s3: Any, store: CountingObjectStore, bucket: str, counter_key: str
) -> None:
    put_packets(s3, bucket, "sales_order", range(1, 26))
    put_packets(s3, bucket, "department", [1, 2, 3])

    cursor: dict[str, str] = {}
    seen: list[Packet] = []
    rounds = 0
    while True:
        LIST_CALLS[counter_key] = 0
        found, cursor, exhausted = new_packets(
            store, bucket, cursor, pages_per_table=2, page_size=4
        )
        rounds += 1
        assert LIST_CALLS[counter_key] <= 2 * len(SOURCE_TABLES)
        assert len([p for p in found if p[0] == "sales_order"]) <= 8
        seen += found
        if exhausted:
            break
        assert rounds < 10
    assert rounds == 4  # 25 sales_order packets at 8 a round
    assert sorted(seen) == [("department", i) for i in (1, 2, 3)] + [
        ("sales_order", i) for i in range(1, 26)
    ]
    assert cursor["sales_order"] == packet_key("sales_order", 25)

    found, again, exhausted = new_packets(store, bucket, cursor, pages_per_table=2, page_size=4)
    assert (found, again, exhausted) == ([], cursor, True)


def test_keys_that_are_not_packets_are_reported_and_block_nothing(
    s3: Any,
    store: CountingObjectStore,
    storage: SalesStorageResource,
    bucket: str,
    capfd: pytest.CaptureFixture[str],
) -> None:
    stray = {
        # An Arabic-Indic digit: `\d` matched it and int() read it as packet 3.
        "sales_order/sales_order-packet-0000000\u0663.jsonl": "not named",
        "sales_order/sales_order-packet-00000003 copy.jsonl": "not named",
        "sales_order/sales_order-packet-00000004/../x.jsonl": "'..' path segment",
        "sales_order/sales_order-packet-00000000.jsonl": "out of range",
        "widgets/widgets-packet-00000001.jsonl": "not a ToteSys table",
    }
    put_keys(s3, bucket, stray)
    real = put_packets(s3, bucket, "sales_order", [1, 2])
    capfd.readouterr()
    result, cursor = tick(store, storage, None)
    assert requested_packets(result) == real
    (request,) = result.run_requests
    reported = request.run_config["ops"]["totesys_raw"]["config"]["not_packets"]
    assert set(reported) == set(stray) - {"widgets/widgets-packet-00000001.jsonl"} | {"widgets/"}
    for key, reason in stray.items():
        assert reason in reported.get(key, reported.get("widgets/", "")), key
    assert request.tags["ons/not_packets"] == "5"
    validate_run_config(defs.resolve_job_def("sales_star_schema_job"), request.run_config)
    log = capfd.readouterr().err
    for key in reported:
        assert f"s3://{bucket}/{key} is not a ToteSys packet" in log
    # Reported once, and the next packet still comes through.
    new = put_packets(s3, bucket, "sales_order", [3])
    result, cursor = tick(store, storage, cursor)
    assert requested_packets(result) == new
    assert "is not a ToteSys packet" not in capfd.readouterr().err
