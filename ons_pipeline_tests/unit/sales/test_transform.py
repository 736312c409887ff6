"""The star-schema transform on hand-built ToteSys rows (JSON-native values)."""

from __future__ import annotations

import json
from datetime import date, time
from decimal import Decimal
from typing import Any

import pandas as pd
import pytest

from ons_pipeline.sales.transform import build_star_schema, to_star_schema

TS = "2022-11-03T14:20:49.962000"
STAR = {
    "fact_sales_order",
    "dim_date",
    "dim_staff",
    "dim_location",
    "dim_currency",
    "dim_design",
    "dim_counterparty",
}


def currency(cid: int = 1, code: str = "GBP", updated: str = TS) -> dict[str, Any]:
    return {"currency_id": cid, "currency_code": code, "created_at": TS, "last_updated": updated}


def department(did: int = 1, name: str = "Sales", updated: str = TS) -> dict[str, Any]:
    return {
        "department_id": did,
        "department_name": name,
        "location": "Manchester",
        "manager": "Rhonda Hüls",
        "created_at": TS,
        "last_updated": updated,
    }


def staff(sid: int = 1, dept: int = 1, email: str = "zoe@terrifictotes.com", updated: str = TS):
    return {
        "staff_id": sid,
        "first_name": "Zoë",
        "last_name": "Łukasz",
        "department_id": dept,
        "email_address": email,
        "created_at": TS,
        "last_updated": updated,
    }


def address(aid: int = 1, line2: str | None = None, district: str | None = None):
    return {
        "address_id": aid,
        "address_line_1": "6826 Herzog Via",
        "address_line_2": line2,
        "district": district,
        "city": "São Paulo",
        "postal_code": "28441",
        "country": "Brazil",
        "phone": "1803 637401",
        "created_at": TS,
        "last_updated": TS,
    }


def design(did: int = 1, name: str = "Wooden", updated: str = TS) -> dict[str, Any]:
    return {
        "design_id": did,
        "design_name": name,
        "file_location": "/usr",
        "file_name": "wooden-20220717-npgz.json",
        "created_at": TS,
        "last_updated": updated,
    }


def counterparty(cid: int = 1, address_id: int = 1) -> dict[str, Any]:
    return {
        "counterparty_id": cid,
        "counterparty_legal_name": "Fahey and Sons",
        "legal_address_id": address_id,
        "commercial_contact": None,
        "delegate_contact": "Karen Heaney",
        "created_at": TS,
        "last_updated": TS,
    }


def order(oid: int = 1, updated: str = TS, **changes: Any) -> dict[str, Any]:
    row = {
        "sales_order_id": oid,
        "created_at": TS,
        "last_updated": updated,
        "design_id": 1,
        "staff_id": 1,
        "counterparty_id": 1,
        "units_sold": 42,
        "unit_price": 2.97,
        "currency_id": 1,
        "agreed_delivery_date": "2022-11-10",
        "agreed_payment_date": "2022-11-08",
        "agreed_delivery_location_id": 1,
    }
    row.update(changes)
    return row


def raw(**tables: list[dict[str, Any]]) -> dict[str, pd.DataFrame]:
    base = {
        "currency": [currency()],
        "department": [department()],
        "staff": [staff()],
        "address": [address()],
        "design": [design()],
        "counterparty": [counterparty()],
        "sales_order": [order()],
    }
    base.update(tables)
    # Go through JSON text, as the packets do, so values are exactly what json.loads gives.
    return {
        name: pd.DataFrame([json.loads(json.dumps(row)) for row in rows])
        for name, rows in base.items()
    }


def reasons(result: dict[str, pd.DataFrame]) -> list[tuple[str, str | None, str]]:
    q = result["quarantine"]
    return sorted(zip(q["table"], q["id"], q["reason"], strict=True))


def test_returns_seven_tables_and_quarantine() -> None:
    result = to_star_schema(raw())
    assert set(result) == STAR | {"quarantine"}
    fact = result["fact_sales_order"].iloc[0]
    assert fact["sales_order_id"] == 1
    assert fact["created_date"] == date(2022, 11, 3)
    assert fact["created_time"] == time(14, 20, 49, 962000)
    assert fact["unit_price"] == Decimal("2.97")
    assert fact["agreed_payment_date"] == date(2022, 11, 8)
    assert fact["sales_staff_id"] == 1
    assert result["quarantine"].empty


def test_parquet_types_match_the_contract() -> None:
    result = to_star_schema(raw())
    fact = result["fact_sales_order"]
    assert str(fact["unit_price"].dtype) == "decimal128(10, 2)[pyarrow]"
    assert str(fact["created_time"].dtype) == "time64[us][pyarrow]"
    assert str(fact["created_date"].dtype) == "date32[day][pyarrow]"
    assert str(result["dim_date"]["year"].dtype) == "int64[pyarrow]"


@pytest.mark.parametrize(
    ("price", "expected"),
    [
        (2.97, Decimal("2.97")),
        (3, Decimal("3.00")),
        (0.1, Decimal("0.10")),
        (1234.5, Decimal("1234.50")),
    ],
)
def test_prices_are_exact_decimals(price: float, expected: Decimal) -> None:
    result = to_star_schema(raw(sales_order=[order(unit_price=price)]))
    assert result["fact_sales_order"]["unit_price"].iloc[0] == expected


def test_price_with_more_than_two_decimals_is_quarantined_not_rounded() -> None:
    result = to_star_schema(raw(sales_order=[order(unit_price=2.975)]))
    assert result["fact_sales_order"].empty
    q = result["quarantine"].iloc[0]
    assert (q["reason"], q["detail"]) == ("invalid_value", "unit_price")


def test_timestamp_without_fraction_keeps_microsecond_type() -> None:
    result = to_star_schema(raw(sales_order=[order(updated="2022-11-04T09:05:00")]))
    fact = result["fact_sales_order"].iloc[0]
    assert fact["last_updated_time"] == time(9, 5, 0)
    assert fact["last_updated_date"] == date(2022, 11, 4)
    assert fact["created_time"] == time(14, 20, 49, 962000)


def test_updates_across_packets_keep_fact_history_and_latest_dimensions() -> None:
    later = "2022-11-05T10:00:00.000001"
    result = to_star_schema(
        raw(
            sales_order=[order(units_sold=1), order(updated=later, units_sold=5)],
            staff=[staff(email="new@terrifictotes.com", updated=later), staff()],
            design=[design(), design(name="Steel", updated=later)],
        )
    )
    fact = result["fact_sales_order"].sort_values("last_updated_date")
    assert fact["units_sold"].tolist() == [1, 5]
    assert fact["last_updated_time"].tolist() == [time(14, 20, 49, 962000), time(10, 0, 0, 1)]
    assert result["dim_staff"]["email_address"].tolist() == ["new@terrifictotes.com"]
    assert result["dim_design"]["design_name"].tolist() == ["Steel"]
    assert fact["sales_record_id"].is_unique


def test_identical_redelivery_is_not_a_second_row() -> None:
    result = build_star_schema(raw(sales_order=[order(), order(), order(2)]))
    assert sorted(result.tables["fact_sales_order"]["sales_order_id"]) == [1, 2]
    accounting = result.accounting.set_index("table").loc["sales_order"]
    assert accounting["deduplicated"] == 1
    assert accounting["written"] == 2


def test_conflicting_redelivery_keeps_the_later_one_and_quarantines_the_other() -> None:
    result = to_star_schema(raw(sales_order=[order(units_sold=1), order(units_sold=2)]))
    assert result["fact_sales_order"]["units_sold"].tolist() == [2]
    assert reasons(result) == [("sales_order", "1", "conflicting_version")]


def test_facts_join_dimensions_delivered_in_earlier_packets() -> None:
    # Rows of every table arrive in any packet; the transform sees all rows so far.
    result = to_star_schema(
        raw(sales_order=[order(1), order(2, staff_id=2)], staff=[staff(1), staff(2)])
    )
    assert sorted(result["fact_sales_order"]["sales_staff_id"]) == [1, 2]


@pytest.mark.parametrize(
    ("tables", "expected"),
    [
        (
            {"sales_order": [order(units_sold=-3)]},
            [("sales_order", "1", "negative_units_sold")],
        ),
        (
            {"sales_order": [{k: v for k, v in order().items() if k != "units_sold"}]},
            [("sales_order", "1", "missing_required_key")],
        ),
        (
            {"currency": [currency(), currency(2, "XYZ")], "sales_order": [order(currency_id=2)]},
            [("currency", "2", "unknown_currency_code"), ("sales_order", "1", "missing_dimension")],
        ),
        (
            {"sales_order": [order(design_id=99)]},
            [("sales_order", "1", "missing_dimension")],
        ),
        (
            {"staff": [staff(), staff(2, dept=7)], "sales_order": [order(staff_id=2)]},
            [("sales_order", "1", "missing_dimension"), ("staff", "2", "staff_without_department")],
        ),
        (
            {"counterparty": [counterparty(), counterparty(2, address_id=9)]},
            [("counterparty", "2", "missing_dimension")],
        ),
        (
            {"sales_order": [order(units_sold="ten")]},
            [("sales_order", "1", "invalid_value")],
        ),
        (
            {"sales_order": [order(updated="03/11/2022 14:20")]},
            [("sales_order", "1", "invalid_value")],
        ),
        (
            {"sales_order": [order(agreed_payment_date="2022-02-30")]},
            [("sales_order", "1", "invalid_value")],
        ),
    ],
)
def test_bad_rows_are_quarantined_with_a_reason_and_good_rows_still_written(
    tables: dict[str, list[dict[str, Any]]], expected: list[tuple[str, str, str]]
) -> None:
    good = order(500)
    tables = dict(tables)
    tables["sales_order"] = [*tables.get("sales_order", [order()]), good]
    result = build_star_schema(raw(**tables))
    star = {**result.tables, "quarantine": result.quarantine}
    assert reasons(star) == expected
    assert 500 in result.tables["fact_sales_order"]["sales_order_id"].tolist()
    balance = result.accounting.set_index("table")
    assert (
        balance["rows_in"]
        == balance[["written", "quarantined", "deduplicated", "superseded"]].sum(axis=1)
    ).all()


def test_quarantine_keeps_the_raw_record() -> None:
    result = to_star_schema(raw(sales_order=[order(units_sold=-3)]))
    record = json.loads(result["quarantine"]["record"].iloc[0])
    assert record["sales_order_id"] == 1
    assert record["units_sold"] == -3


def test_unicode_and_null_optional_columns_survive() -> None:
    result = to_star_schema(
        raw(address=[address(1, line2=None, district=None), address(2, "Flat 3", "Île-de-France")])
    )
    location = result["dim_location"].set_index("location_id")
    assert location.loc[1, "address_line_2"] is pd.NA
    assert location.loc[2, "district"] == "Île-de-France"
    assert location.loc[1, "city"] == "São Paulo"
    assert result["dim_staff"]["first_name"].tolist() == ["Zoë"]
    counterparty_row = result["dim_counterparty"].iloc[0]
    assert counterparty_row["counterparty_legal_city"] == "São Paulo"
    assert counterparty_row["counterparty_legal_address_line_2"] is pd.NA


def test_dim_currency_names_and_dim_staff_department() -> None:
    result = to_star_schema(
        raw(currency=[currency(1, "GBP"), currency(2, "USD"), currency(3, "EUR")])
    )
    names = dict(
        zip(
            result["dim_currency"]["currency_code"],
            result["dim_currency"]["currency_name"],
            strict=True,
        )
    )
    assert names == {"GBP": "British Pound", "USD": "US Dollar", "EUR": "Euro"}
    staff_row = result["dim_staff"].iloc[0]
    assert (staff_row["department_name"], staff_row["location"]) == ("Sales", "Manchester")


def test_dim_date_covers_every_referenced_date() -> None:
    result = to_star_schema(
        raw(
            sales_order=[
                order(updated="2022-12-31T23:59:59.999999", agreed_delivery_date="2023-01-02")
            ]
        )
    )
    dates = result["dim_date"].set_index("date_id")
    assert set(dates.index) == {
        date(2022, 11, 3),
        date(2022, 12, 31),
        date(2022, 11, 8),
        date(2023, 1, 2),
    }
    monday = dates.loc[date(2023, 1, 2)]
    assert (monday["day_of_week"], monday["day_name"], monday["quarter"]) == (0, "Monday", 1)
    assert (monday["month_name"], monday["year"], monday["day"]) == ("January", 2023, 2)


def test_empty_input_gives_empty_typed_tables() -> None:
    result = to_star_schema({})
    assert all(result[name].empty for name in STAR)
    assert result["fact_sales_order"].columns[0] == "sales_record_id"


def test_row_order_of_the_history_does_not_change_the_star_tables() -> None:
    """Versions are ranked by key, last_updated and delivery, never by position in the input."""
    later = "2022-11-05T10:00:00.000001"
    rows = [
        order(1, units_sold=1),
        order(2, units_sold=7),
        order(1, updated=later, units_sold=5),
        order(2, units_sold=7),  # an exact re-delivery, not next to its twin
        order(3, units_sold=1),
        order(3, units_sold=2),  # same version, different values: the later delivery wins
        order(1, staff_id=99, updated="2022-11-06T00:00:00"),  # dangling staff
    ]
    staff_rows = [staff(email="old@x.com"), staff(email="tie@x.com"), staff(2)]
    base = raw(sales_order=rows, staff=staff_rows)
    # Delivery provenance, as the packet reader adds it: (packet, line) in list order.
    for frame in base.values():
        frame["_packet_id"] = 1 + pd.RangeIndex(len(frame)) // 2
        frame["_line"] = 1 + pd.RangeIndex(len(frame)) % 2
    shuffled = {name: frame.iloc[::-1].reset_index(drop=True) for name, frame in base.items()}

    first, second = build_star_schema(base), build_star_schema(shuffled)
    for name in STAR:
        pd.testing.assert_frame_equal(first.tables[name], second.tables[name])
    fact = first.tables["fact_sales_order"]
    assert list(zip(fact["sales_order_id"], fact["units_sold"], strict=True)) == [
        (1, 1),
        (1, 5),
        (2, 7),
        (3, 2),
    ]
    assert first.tables["dim_staff"]["email_address"].tolist() == [
        "tie@x.com",
        "zoe@terrifictotes.com",
    ]
    assert reasons(first.tables | {"quarantine": first.quarantine}) == reasons(
        second.tables | {"quarantine": second.quarantine}
    )
    assert sorted(first.quarantine["reason"]) == ["conflicting_version", "missing_dimension"]
    accounting = first.accounting.set_index("table")
    assert accounting.loc["sales_order", "deduplicated"] == 1
    pd.testing.assert_frame_equal(first.accounting, second.accounting)


@pytest.mark.parametrize(
    "bad",
    [
        "2022-11-03T14:20:49+01:00",  # a width the shape allows, an offset it does not
        "2022-11-03T14:20:49.1234567",
        "2022-11-03T14:20:49.",
        "2022-11-03T14:20:4\u0669",  # a digit of another script
        "2022-11-03t14:20:49.962000",
        "2022-11-03T14:20:49.96200 ",
        "2022-11-03",
        "2022-13-03T14:20:49.962000",  # the right shape, an impossible month
    ],
)
def test_malformed_timestamp_is_quarantined_among_both_usual_widths(bad: str) -> None:
    """Text times come in two widths (no fraction when it is zero); a third shape is caught."""
    rows = [
        currency(1, updated="2022-11-03T14:20:49"),
        currency(2, updated=TS),
        currency(3, updated=bad),
        currency(4, updated="2022-11-03 14:20:49.9"),
    ]
    result = build_star_schema({"currency": pd.DataFrame(rows)})
    assert result.quarantine[["id", "reason", "detail"]].values.tolist() == [
        ["3", "invalid_value", "last_updated"]
    ]
    assert result.tables["dim_currency"]["currency_id"].tolist() == [1, 2, 4]
