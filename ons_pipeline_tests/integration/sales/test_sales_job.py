"""The sales assets through Dagster against the local stack's moto server, over HTTP."""

from __future__ import annotations

import io
import json
import uuid
from typing import Any

import boto3
import pandas as pd
import pyarrow.parquet as pq
import pytest
from dagster import DagsterInstance, materialize

from ons_pipeline.local.demo.sales_data import Packet, generate_totesys, land_packets
from ons_pipeline.resources import (
    CloudWatchMetricsResource,
    ObjectStoreResource,
    ParameterStoreResource,
    SalesStorageResource,
)
from ons_pipeline.sales.assets import sales_star_schema, totesys_raw
from ons_pipeline.sales.checks import fact_foreign_keys_exist
from ons_pipeline.sales.schema import STAR_KEYS, STAR_SCHEMAS
from ons_pipeline.sales.sensors import packets_run_config
from ons_pipeline.sales.transform import STAR_TABLES, to_star_schema

pytestmark = pytest.mark.integration

REGION = "eu-west-2"


class Lake:
    """A fresh pair of buckets and a Parameter Store prefix for one test."""

    def __init__(self) -> None:
        suffix = uuid.uuid4().hex[:10]
        self.ingestion = f"ingest-{suffix}"
        self.processed = f"processed-{suffix}"
        self.prefix = f"/test-{suffix}"
        self.s3 = boto3.client("s3", region_name=REGION)
        self.ssm = boto3.client("ssm", region_name=REGION)
        for bucket in (self.ingestion, self.processed):
            self.s3.create_bucket(
                Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION}
            )

    def resources(self) -> dict[str, Any]:
        return {
            "s3": ObjectStoreResource(region_name=REGION),
            "ssm": ParameterStoreResource(region_name=REGION),
            "metrics": CloudWatchMetricsResource(region_name=REGION),
            "sales_storage": SalesStorageResource(
                ingestion_bucket=self.ingestion,
                processed_bucket=self.processed,
                ssm_prefix=self.prefix,
            ),
        }

    def run(self, packets: list[tuple[str, int]] | None = None, **kwargs: Any) -> Any:
        config = packets_run_config(packets) if packets is not None else None
        self.instance = DagsterInstance.ephemeral()
        return materialize(
            [totesys_raw, sales_star_schema, fact_foreign_keys_exist],
            resources=self.resources(),
            run_config=config,
            instance=self.instance,
            **kwargs,
        )

    def log_messages(self, run_id: str) -> list[str]:
        return [entry.user_message for entry in self.instance.all_logs(run_id)]

    def objects(self) -> dict[str, bytes]:
        listing = self.s3.list_objects_v2(Bucket=self.processed).get("Contents", [])
        return {
            item["Key"]: self.s3.get_object(Bucket=self.processed, Key=item["Key"])["Body"].read()
            for item in listing
        }

    def star_files(self, table: str) -> list[pd.DataFrame]:
        return [
            pq.read_table(io.BytesIO(body)).to_pandas(types_mapper=pd.ArrowDtype)
            for key, body in sorted(self.objects().items())
            if key.startswith(f"{table}/")
        ]

    def parameter(self, name: str) -> str:
        return self.ssm.get_parameter(Name=f"{self.prefix}/sales/{name}")["Parameter"]["Value"]


def expected_star(packets: list[Packet]) -> dict[str, pd.DataFrame]:
    """The star schema computed independently: json.loads per line, then the pure transform."""
    rows: dict[str, list[dict[str, Any]]] = {}
    for packet in sorted(packets, key=lambda p: (p.table, p.packet_id)):
        for line in packet.body.decode().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            rows.setdefault(packet.table, []).append(record)
    return to_star_schema({table: pd.DataFrame(records) for table, records in rows.items()})


def canonical(frame: pd.DataFrame, table: str) -> pd.DataFrame:
    columns = [field.name for field in STAR_SCHEMAS[table]]
    return frame[columns].astype(str).sort_values(columns).reset_index(drop=True)


@pytest.fixture
def lake(stack_env: dict[str, str]) -> Lake:
    return Lake()


def test_packets_become_the_star_schema(lake: Lake) -> None:
    corpus = generate_totesys(600, packets_per_table=3, seed=3)
    land_packets(lake.s3, lake.ingestion, corpus.packets)

    result = lake.run([(p.table, p.packet_id) for p in corpus.packets])

    assert result.success
    checks = {
        (c.asset_key.to_user_string(), c.check_name): c.passed
        for c in result.get_asset_check_evaluations()
    }
    assert checks[("fact_sales_order", "rows_accounted_for")]
    assert checks[("fact_sales_order", "fact_foreign_keys_exist")]
    assert all(checks.values()), checks
    expected = expected_star(corpus.packets)
    for table in STAR_TABLES:
        files = lake.star_files(table)
        assert len(files) == 1, table
        pd.testing.assert_frame_equal(canonical(files[0], table), canonical(expected[table], table))
        assert pq.read_schema(
            io.BytesIO(
                next(body for key, body in lake.objects().items() if key.startswith(f"{table}/"))
            )
        ).equals(STAR_SCHEMAS[table], check_metadata=False)
    for table in ("sales_order", "staff", "currency", "design"):
        assert lake.parameter(f"last_packet/{table}") == "3"
    assert lake.parameter("output_sequence/fact_sales_order") == "1"


def test_bad_rows_are_quarantined_and_reported(lake: Lake) -> None:
    corpus = generate_totesys(300, packets_per_table=2, seed=5)
    land_packets(lake.s3, lake.ingestion, corpus.packets)

    result = lake.run()  # no payload: every packet after the ones recorded in SSM

    assert result.success
    objects = lake.objects()
    raw_quarantine = [k for k in objects if k.startswith("quarantine/sales/raw/")]
    assert raw_quarantine == ["quarantine/sales/raw/sales_order/sales_order-packet-00000002.jsonl"]
    malformed = [json.loads(line) for line in objects[raw_quarantine[0]].decode().splitlines()]
    assert [(m["reason"], m["packet_id"]) for m in malformed] == [("malformed_json", 2)]
    assert malformed[0]["record"]
    star_quarantine = [k for k in objects if k.startswith("quarantine/sales/star/")]
    assert len(star_quarantine) == 1
    quarantine = pq.read_table(io.BytesIO(objects[star_quarantine[0]])).to_pandas()
    assert sorted(quarantine["reason"].unique()) == [
        "missing_dimension",
        "missing_required_key",
        "negative_units_sold",
        "staff_without_department",
        "unknown_currency_code",
    ]
    assert quarantine["record"].map(lambda r: isinstance(json.loads(r), dict)).all()
    assert quarantine["packet_id"].notna().all() and quarantine["line"].notna().all()
    planted = sum(v for k, v in corpus.bad_rows.items() if k != "duplicate_redelivery")
    assert len(quarantine) + len(malformed) == planted
    metadata = {
        e.asset_key.to_user_string(): e.materialization.metadata
        for e in result.get_asset_materialization_events()
    }
    assert metadata["sales_quarantine"]["by_reason"].value["negative_units_sold"] == 1
    assert metadata["totesys/sales_order"]["rows_quarantined"].value == 1
    fact_metadata = metadata["fact_sales_order"]
    assert fact_metadata["s3_uri"].value.startswith(f"s3://{lake.processed}/fact_sales_order/")
    assert fact_metadata["preview"].value.count("\n") <= 11
    assert fact_metadata["dagster/row_count"].value == len(lake.star_files("fact_sales_order")[0])


def test_rerun_changes_nothing_and_new_packets_add_only_changes(lake: Lake) -> None:
    corpus = generate_totesys(400, packets_per_table=3, seed=9, bad_rows=False)
    first, later = (
        [p for p in corpus.packets if p.packet_id < 3],
        [p for p in corpus.packets if p.packet_id == 3],
    )
    land_packets(lake.s3, lake.ingestion, first)
    assert lake.run([(p.table, p.packet_id) for p in first]).success
    before = lake.objects()
    ssm_before = lake.parameter("last_packet/sales_order")

    again = lake.run([(p.table, p.packet_id) for p in first])

    assert again.success
    assert lake.objects() == before
    assert lake.parameter("last_packet/sales_order") == ssm_before == "2"

    land_packets(lake.s3, lake.ingestion, later)
    assert lake.run([(p.table, p.packet_id) for p in later]).success
    facts = lake.star_files("fact_sales_order")
    assert len(facts) == 2
    expected = expected_star(corpus.packets)["fact_sales_order"]
    union = pd.concat(facts, ignore_index=True)
    pd.testing.assert_frame_equal(
        canonical(union, "fact_sales_order"), canonical(expected, "fact_sales_order")
    )
    assert lake.parameter("output_sequence/fact_sales_order") == "2"
    assert lake.parameter("last_packet/sales_order") == "3"


def test_missing_packet_fails_without_writing_anything(lake: Lake) -> None:
    result = lake.run([("sales_order", 1)], raise_on_error=False)

    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "does not exist" in failure.event_specific_data.error.message
    assert lake.objects() == {}


def test_non_sequential_packet_warns_and_is_recorded(lake: Lake) -> None:
    corpus = generate_totesys(200, packets_per_table=3, seed=1, bad_rows=False)
    land_packets(lake.s3, lake.ingestion, corpus.packets)

    skipped = [(p.table, p.packet_id) for p in corpus.packets if p.packet_id != 2]

    result = lake.run(skipped)

    assert result.success
    messages = lake.log_messages(result.run_id)
    assert "sales_order packets are not sequential: got 3 after 1" in messages
    assert lake.parameter("last_packet/sales_order") == "3"
    checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
    assert checks["rows_accounted_for"]
    assert checks["fact_foreign_keys_exist"]


def newest_stamp(packets: list[Packet]) -> str:
    """The documented name stamp: newest `last_updated` of every line so far, as digits."""
    newest = max(pd.Timestamp(row["last_updated"]) for p in packets for row in lines(p))
    return newest.strftime("%Y%m%dT%H%M%S%f")


def star_keys(lake: Lake) -> dict[str, list[str]]:
    keys = sorted(lake.objects())
    return {t: [k for k in keys if k.startswith(f"{t}/")] for t in STAR_TABLES}


def lines(packet: Packet) -> list[dict[str, Any]]:
    return [json.loads(line) for line in packet.body.decode().splitlines()]


def test_file_names_follow_the_data_and_dimensions_hold_the_latest_version(lake: Lake) -> None:
    corpus = generate_totesys(300, packets_per_table=2, seed=11, bad_rows=False)
    first = [p for p in corpus.packets if p.packet_id == 1]
    land_packets(lake.s3, lake.ingestion, first)
    assert lake.run([(p.table, p.packet_id) for p in first]).success
    stamp = newest_stamp(first)
    assert star_keys(lake) == {
        t: [f"{t}/{t}_packet_00000001_processed_{stamp}.parquet"] for t in STAR_TABLES
    }

    second = [p for p in corpus.packets if p.packet_id == 2]
    land_packets(lake.s3, lake.ingestion, second)
    assert lake.run([(p.table, p.packet_id) for p in second]).success

    before, after = expected_star(first), expected_star(corpus.packets)
    changed = {t for t in STAR_TABLES if not canonical(before[t], t).equals(canonical(after[t], t))}
    assert {"fact_sales_order", "dim_staff", "dim_design"} <= changed
    later = newest_stamp(corpus.packets)
    assert later > stamp
    assert star_keys(lake) == {
        t: [
            f"{t}/{t}_packet_00000001_processed_{stamp}.parquet",
            *([f"{t}/{t}_packet_00000002_processed_{later}.parquet"] if t in changed else []),
        ]
        for t in STAR_TABLES
    }
    # A dimension read file by file in sequence order, the last row per key winning, is the
    # latest version of every key.
    latest = {
        table: pd.concat(lake.star_files(table), ignore_index=True).drop_duplicates(
            subset=list(STAR_KEYS[table]), keep="last"
        )
        for table in STAR_TABLES
        if table != "fact_sales_order"
    }
    for table, frame in latest.items():
        pd.testing.assert_frame_equal(canonical(frame, table), canonical(after[table], table))
    # And straight from the packets: each staff member updated by packet 2 has its new values.
    staff = latest["dim_staff"].set_index("staff_id")
    (update,) = [p for p in second if p.table == "staff"]
    old = {row["staff_id"]: row for row in lines(next(p for p in first if p.table == "staff"))}
    updated = {
        row["staff_id"]: row
        for row in sorted(lines(update), key=lambda row: pd.Timestamp(row["last_updated"]))
    }
    assert any(row["email_address"] != old[i]["email_address"] for i, row in updated.items())
    for staff_id, row in updated.items():
        for column in ("first_name", "last_name", "email_address"):
            assert staff.loc[staff_id, column] == row[column]


@pytest.mark.parametrize(
    ("packets", "problem"),
    [
        ([("widgets", 1)], "unknown ToteSys table 'widgets'"),
        ([("sales_order", -1)], "packet id -1 out of range"),
        ([("sales_order", 0)], "packet id 0 out of range"),
    ],
)
def test_a_payload_that_can_never_be_read_fails_without_retries(
    lake: Lake, packets: list[tuple[str, int]], problem: str
) -> None:
    result = lake.run(packets, raise_on_error=False)

    assert not result.success
    assert not [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    failure = next(e for e in result.all_events if e.is_step_failure)
    data = failure.step_failure_data.user_failure_data
    assert problem in data.description
    assert data.metadata["reason"].value == "invalid_payload"
    assert lake.objects() == {}


def test_keys_that_are_not_packets_appear_in_the_run_metadata(lake: Lake) -> None:
    corpus = generate_totesys(50, packets_per_table=1, seed=2, bad_rows=False)
    land_packets(lake.s3, lake.ingestion, corpus.packets)
    odd = "sales_order/sales_order-packet-0000000\u0663.jsonl"
    lake.s3.put_object(Bucket=lake.ingestion, Key=odd, Body=b"{}\n")
    # No payload: the run discovers packets itself and names what is not one.
    result = lake.run()
    assert result.success
    metadata = result.asset_materializations_for_node("totesys_raw")[0].metadata
    assert "not named" in metadata["not_packets"].value[odd]
