import json
import re
from collections import Counter, defaultdict
from datetime import datetime
from typing import Any

import pytest

from ons_pipeline.local.demo.sales_data import (
    BAD_ROW_REASONS,
    COLUMNS,
    DUPLICATE_REDELIVERY,
    DemoCorpus,
    Packet,
    generate_totesys,
    land_packets,
    packet_key,
)
from ons_pipeline.resources.defaults import SOURCE_TABLES

PACKETS = 3
ID_COLUMN = {table: f"{table}_id" for table in SOURCE_TABLES}
TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{6})?$")
DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
PRICE = re.compile(rb'"unit_price":(-?\d+(?:\.(\d+))?)[,}]')
FACT_KEYS = {
    "design_id": "design",
    "staff_id": "staff",
    "counterparty_id": "counterparty",
    "currency_id": "currency",
    "agreed_delivery_location_id": "address",
}


@pytest.fixture(scope="module")
def corpus() -> DemoCorpus:
    return generate_totesys(2_000, packets_per_table=PACKETS, seed=7)


@pytest.fixture(scope="module")
def clean() -> DemoCorpus:
    return generate_totesys(2_000, packets_per_table=PACKETS, seed=7, bad_rows=False)


def lines(corpus: DemoCorpus) -> list[tuple[str, int, bytes]]:
    """(table, packet_id, line) for every line, newline stripped."""
    return [
        (packet.table, packet.packet_id, line)
        for packet in corpus.packets
        for line in packet.body.splitlines()
    ]


def records(corpus: DemoCorpus) -> dict[str, list[tuple[int, dict[str, Any]]]]:
    """Parsed lines per table with their packet id; malformed lines left out."""
    parsed: dict[str, list[tuple[int, dict[str, Any]]]] = defaultdict(list)
    for table, packet_id, line in lines(corpus):
        try:
            parsed[table].append((packet_id, json.loads(line)))
        except json.JSONDecodeError:
            continue
    return parsed


def planted(corpus: DemoCorpus) -> tuple[Counter, set[tuple[str, int]]]:
    """Classify lines the way the pipeline should: reason counts and where they were found."""
    found: Counter = Counter()
    where: set[tuple[str, int]] = set()
    seen: dict[str, set[bytes]] = defaultdict(set)
    parsed: dict[str, list[tuple[int, dict[str, Any]]]] = defaultdict(list)
    for table, packet_id, line in lines(corpus):
        if line in seen[table]:
            found[DUPLICATE_REDELIVERY] += 1
            where.add((table, packet_id))
            continue
        seen[table].add(line)
        try:
            parsed[table].append((packet_id, json.loads(line)))
        except json.JSONDecodeError:
            found["malformed_json"] += 1
            where.add((table, packet_id))

    ids = {table: {r[ID_COLUMN[table]] for _, r in rows} for table, rows in parsed.items()}
    bad_currencies = {
        r["currency_id"]
        for _, r in parsed["currency"]
        if r["currency_code"] not in {"GBP", "USD", "EUR"}
    }
    homeless_staff = {
        r["staff_id"] for _, r in parsed["staff"] if r["department_id"] not in ids["department"]
    }
    found["unknown_currency_code"] += len(bad_currencies)
    found["staff_without_department"] += len(homeless_staff)
    for table, bad in (("currency", bad_currencies), ("staff", homeless_staff)):
        where.update((table, p) for p, r in parsed[table] if r[ID_COLUMN[table]] in bad)

    for packet_id, order in parsed["sales_order"]:
        if set(order) != set(COLUMNS["sales_order"]):
            reason = "missing_required_key"
        elif order["units_sold"] < 0:
            reason = "negative_units_sold"
        elif order["currency_id"] in bad_currencies:
            reason = "unknown_currency_code"
        elif order["staff_id"] in homeless_staff:
            reason = "staff_without_department"
        elif any(order[column] not in ids[table] for column, table in FACT_KEYS.items()):
            reason = "missing_dimension"
        else:
            continue
        found[reason] += 1
        where.add(("sales_order", packet_id))
    return found, where


def test_keys_are_sequential_per_table_and_packets_sorted(corpus: DemoCorpus) -> None:
    assert [(p.table, p.packet_id) for p in corpus.packets] == sorted(
        (table, packet_id) for table in SOURCE_TABLES for packet_id in range(1, PACKETS + 1)
    )
    for packet in corpus.packets:
        assert packet.key == f"{packet.table}/{packet.table}-packet-{packet.packet_id:08d}.jsonl"
        assert packet.body.endswith(b"\n")
        packet.body.decode("utf-8")
    assert packet_key("sales_order", 12) == "sales_order/sales_order-packet-00000012.jsonl"


def test_rows_per_table_counts_every_line(corpus: DemoCorpus) -> None:
    assert corpus.rows_per_table == dict(Counter(table for table, _, _ in lines(corpus)))
    assert corpus.rows_per_table["sales_order"] == 2_000


def test_dimension_sizes_are_proportionate() -> None:
    big = generate_totesys(100_000, bad_rows=False)
    sizes = {
        table: len({json.loads(line)[ID_COLUMN[table]] for t, _, line in lines(big) if t == table})
        for table in SOURCE_TABLES
        if table != "sales_order"
    }
    assert sizes == {
        "department": 8,
        "currency": 3,
        "staff": 50,
        "address": 100,
        "counterparty": 50,
        "design": 200,
    }


def test_good_rows_have_every_column_in_order(clean: DemoCorpus) -> None:
    for table, rows in records(clean).items():
        for _, row in rows:
            assert tuple(row) == COLUMNS[table]
            assert TIMESTAMP.match(row["created_at"]), row
            assert TIMESTAMP.match(row["last_updated"]), row
            if table == "sales_order":
                assert DATE.match(row["agreed_delivery_date"])
                assert DATE.match(row["agreed_payment_date"])
                assert isinstance(row["units_sold"], int)
                assert row["units_sold"] > 0


def test_timestamps_sometimes_lack_the_fraction(clean: DemoCorpus) -> None:
    stamps = [r["last_updated"] for _, r in records(clean)["sales_order"]]
    whole = sum("." not in s for s in stamps) / len(stamps)
    assert 0.02 < whole < 0.08


def test_foreign_keys_of_good_rows_exist(clean: DemoCorpus) -> None:
    parsed = records(clean)
    ids = {table: {r[ID_COLUMN[table]] for _, r in rows} for table, rows in parsed.items()}
    for _, order in parsed["sales_order"]:
        for column, table in FACT_KEYS.items():
            assert order[column] in ids[table], (column, order)
    assert {r["legal_address_id"] for _, r in parsed["counterparty"]} <= ids["address"]
    assert {r["department_id"] for _, r in parsed["staff"]} <= ids["department"]
    assert {r["currency_code"] for _, r in parsed["currency"]} == {"GBP", "USD", "EUR"}


def test_facts_only_reference_dimension_rows_from_the_first_packet(clean: DemoCorpus) -> None:
    parsed = records(clean)
    first = {
        table: {r[ID_COLUMN[table]] for p, r in rows if p == 1} for table, rows in parsed.items()
    }
    for _, order in parsed["sales_order"]:
        assert all(order[column] in first[table] for column, table in FACT_KEYS.items())


def test_about_70_percent_of_order_versions_are_new(clean: DemoCorpus) -> None:
    orders = records(clean)["sales_order"]
    assert len({r["sales_order_id"] for _, r in orders}) / len(orders) == pytest.approx(0.7, 0.05)


@pytest.mark.parametrize("table", SOURCE_TABLES)
def test_updates_land_in_later_packets_with_later_last_updated(
    clean: DemoCorpus, table: str
) -> None:
    versions: dict[int, list[tuple[int, dict[str, Any]]]] = defaultdict(list)
    for packet_id, row in records(clean)[table]:
        versions[row[ID_COLUMN[table]]].append((packet_id, row))
    updated = {key: rows for key, rows in versions.items() if len(rows) > 1}
    assert updated
    for rows in updated.values():
        packets = [p for p, _ in rows]
        stamps = [datetime.fromisoformat(r["last_updated"]) for _, r in rows]
        assert packets == sorted(set(packets))
        assert stamps == sorted(set(stamps))
        assert len({r["created_at"] for _, r in rows}) == 1
        assert datetime.fromisoformat(rows[0][1]["created_at"]) <= stamps[0]


def test_order_updates_change_units_price_or_dates(clean: DemoCorpus) -> None:
    changing = ("units_sold", "unit_price", "agreed_delivery_date", "agreed_payment_date")
    fixed = ("design_id", "staff_id", "counterparty_id", "currency_id", "created_at")
    previous: dict[int, dict[str, Any]] = {}
    updates = 0
    for _, order in sorted(
        records(clean)["sales_order"], key=lambda pr: datetime.fromisoformat(pr[1]["last_updated"])
    ):
        before = previous.get(order["sales_order_id"])
        if before is not None:
            updates += 1
            assert any(order[c] != before[c] for c in changing)
            assert all(order[c] == before[c] for c in fixed)
        previous[order["sales_order_id"]] = order
    assert updates > 500


def test_dimension_updates_change_something_visible(clean: DemoCorpus) -> None:
    parsed = records(clean)
    for table, column in (("staff", "email_address"), ("design", "design_name")):
        base = {r[ID_COLUMN[table]]: r for p, r in parsed[table] if p == 1}
        later = [r for p, r in parsed[table] if p > 1]
        assert later
        assert any(r[column] != base[r[ID_COLUMN[table]]][column] for r in later)


def test_output_is_deterministic_for_a_seed() -> None:
    first = generate_totesys(500, packets_per_table=4, seed=11)
    second = generate_totesys(500, packets_per_table=4, seed=11)
    other = generate_totesys(500, packets_per_table=4, seed=12)
    assert first == second
    assert [p.body for p in first.packets] != [p.body for p in other.packets]


def test_planted_rows_match_bad_rows_and_sit_in_last_packets(corpus: DemoCorpus) -> None:
    found, where = planted(corpus)
    assert corpus.bad_rows == {
        "malformed_json": 1,
        "missing_required_key": 1,
        "negative_units_sold": 1,
        "unknown_currency_code": 2,
        "missing_dimension": 1,
        "staff_without_department": 2,
        "duplicate_redelivery": 1,
    }
    assert found == Counter(corpus.bad_rows)
    assert {packet_id for _, packet_id in where} == {PACKETS}
    assert corpus.bad_rows_per_table == {
        "sales_order": 6,
        "staff": 1,
        "department": 0,
        "address": 0,
        "currency": 1,
        "design": 0,
        "counterparty": 0,
    }


def test_exactly_one_line_is_malformed(corpus: DemoCorpus) -> None:
    failures = []
    for table, _, line in lines(corpus):
        try:
            json.loads(line)
        except json.JSONDecodeError:
            failures.append(table)
    assert failures == ["sales_order"]


def test_duplicate_repeats_a_first_packet_line(corpus: DemoCorpus) -> None:
    by_packet = defaultdict(set)
    for table, packet_id, line in lines(corpus):
        if table == "sales_order":
            by_packet[packet_id].add(line)
    assert len(by_packet[1] & by_packet[PACKETS]) == 1


def test_no_bad_rows_when_disabled(clean: DemoCorpus) -> None:
    found, _ = planted(clean)
    assert +found == Counter()
    assert set(clean.bad_rows) == {*BAD_ROW_REASONS, DUPLICATE_REDELIVERY}
    assert not any(clean.bad_rows.values())
    assert not any(clean.bad_rows_per_table.values())
    assert clean.rows_per_table["sales_order"] == 2_000


def test_prices_have_at_most_two_decimals_and_some_are_integers(corpus: DemoCorpus) -> None:
    prices = [
        match
        for packet in corpus.packets
        if packet.table == "sales_order"
        for match in PRICE.finditer(packet.body)
    ]
    assert len(prices) >= 1_990
    assert all(m.group(2) is None or len(m.group(2)) <= 2 for m in prices)
    assert any(m.group(2) is None for m in prices)
    assert any(m.group(2) is not None and len(m.group(2)) == 2 for m in prices)


def test_text_is_readable_utf8_with_nulls(clean: DemoCorpus) -> None:
    text = b"".join(p.body for p in clean.packets).decode("utf-8")
    assert "\\/" not in text
    assert "\\u" not in text
    assert re.search("Zoë|Łukasz|Émile|São Paulo|Kraków", text)
    addresses = [r for _, r in records(clean)["address"]]
    assert any(r["address_line_2"] is None for r in addresses)
    assert any(r["district"] is None for r in addresses)
    assert all(r["city"] is not None for r in addresses)


@pytest.mark.parametrize("packets", [1, 2, 7])
def test_other_packet_counts_keep_the_contract(packets: int) -> None:
    corpus = generate_totesys(300, packets_per_table=packets, seed=3)
    assert len(corpus.packets) == packets * len(SOURCE_TABLES)
    assert corpus.rows_per_table["sales_order"] == 300
    found, where = planted(corpus)
    assert found == Counter(corpus.bad_rows)
    assert {packet_id for _, packet_id in where} == {packets}


def test_rejects_too_few_versions_or_packets() -> None:
    with pytest.raises(ValueError, match="n_order_versions"):
        generate_totesys(7)
    with pytest.raises(ValueError, match="packets_per_table"):
        generate_totesys(100, packets_per_table=0)
    assert generate_totesys(1, bad_rows=False).rows_per_table["sales_order"] == 1


def test_land_packets_puts_each_packet() -> None:
    class FakeS3:
        def __init__(self) -> None:
            self.objects: dict[str, bytes] = {}

        def put_object(self, **kwargs: Any) -> dict[str, Any]:
            assert kwargs["Bucket"] == "ingest"
            self.objects[kwargs["Key"]] = kwargs["Body"]
            return {}

    packets = [Packet("staff", 1, b'{"staff_id":1}\n'), Packet("staff", 2, b'{"staff_id":2}\n')]
    client = FakeS3()
    keys = land_packets(client, "ingest", packets)
    assert keys == ["staff/staff-packet-00000001.jsonl", "staff/staff-packet-00000002.jsonl"]
    assert client.objects == {p.key: p.body for p in packets}
