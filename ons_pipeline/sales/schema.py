"""The ToteSys source contract and the star schema contract (ARCHITECTURE.md section 3)."""

from __future__ import annotations

from typing import Final, Literal

import pyarrow as pa

ColumnKind = Literal["int", "str", "timestamp", "date", "price"]

# Source columns with their JSON kind; `True` marks a column a row cannot do without.
SOURCE_COLUMNS: Final[dict[str, dict[str, tuple[ColumnKind, bool]]]] = {
    "sales_order": {
        "sales_order_id": ("int", True),
        "created_at": ("timestamp", True),
        "last_updated": ("timestamp", True),
        "design_id": ("int", True),
        "staff_id": ("int", True),
        "counterparty_id": ("int", True),
        "units_sold": ("int", True),
        "unit_price": ("price", True),
        "currency_id": ("int", True),
        "agreed_delivery_date": ("date", True),
        "agreed_payment_date": ("date", True),
        "agreed_delivery_location_id": ("int", True),
    },
    "staff": {
        "staff_id": ("int", True),
        "first_name": ("str", True),
        "last_name": ("str", True),
        "department_id": ("int", True),
        "email_address": ("str", True),
        "created_at": ("timestamp", False),
        "last_updated": ("timestamp", True),
    },
    "department": {
        "department_id": ("int", True),
        "department_name": ("str", True),
        "location": ("str", False),
        "manager": ("str", False),
        "created_at": ("timestamp", False),
        "last_updated": ("timestamp", True),
    },
    "address": {
        "address_id": ("int", True),
        "address_line_1": ("str", True),
        "address_line_2": ("str", False),
        "district": ("str", False),
        "city": ("str", True),
        "postal_code": ("str", True),
        "country": ("str", True),
        "phone": ("str", True),
        "created_at": ("timestamp", False),
        "last_updated": ("timestamp", True),
    },
    "currency": {
        "currency_id": ("int", True),
        "currency_code": ("str", True),
        "created_at": ("timestamp", False),
        "last_updated": ("timestamp", True),
    },
    "design": {
        "design_id": ("int", True),
        "design_name": ("str", True),
        "file_location": ("str", True),
        "file_name": ("str", True),
        "created_at": ("timestamp", False),
        "last_updated": ("timestamp", True),
    },
    "counterparty": {
        "counterparty_id": ("int", True),
        "counterparty_legal_name": ("str", True),
        "legal_address_id": ("int", True),
        "commercial_contact": ("str", False),
        "delegate_contact": ("str", False),
        "created_at": ("timestamp", False),
        "last_updated": ("timestamp", True),
    },
}

PRIMARY_KEYS: Final[dict[str, str]] = {
    "sales_order": "sales_order_id",
    "staff": "staff_id",
    "department": "department_id",
    "address": "address_id",
    "currency": "currency_id",
    "design": "design_id",
    "counterparty": "counterparty_id",
}

# Provenance columns the packet reader adds; they order versions delivered with equal timestamps.
PACKET_ID: Final = "_packet_id"
LINE_NO: Final = "_line"

_ARROW_TYPES: Final[dict[ColumnKind, pa.DataType]] = {
    "int": pa.int64(),
    "str": pa.string(),
    "timestamp": pa.string(),
    "date": pa.string(),
    "price": pa.float64(),
}


def source_arrow_schema(table: str) -> pa.Schema:
    """The JSON reader schema of a source table: JSON-native types, times still text."""
    return pa.schema(
        [pa.field(name, _ARROW_TYPES[kind]) for name, (kind, _) in SOURCE_COLUMNS[table].items()]
    )


PRICE_TYPE: Final = pa.decimal128(10, 2)

STAR_SCHEMAS: Final[dict[str, pa.Schema]] = {
    "fact_sales_order": pa.schema(
        [
            pa.field("sales_record_id", pa.int64(), nullable=False),
            pa.field("sales_order_id", pa.int64(), nullable=False),
            pa.field("created_date", pa.date32(), nullable=False),
            pa.field("created_time", pa.time64("us"), nullable=False),
            pa.field("last_updated_date", pa.date32(), nullable=False),
            pa.field("last_updated_time", pa.time64("us"), nullable=False),
            pa.field("sales_staff_id", pa.int64(), nullable=False),
            pa.field("counterparty_id", pa.int64(), nullable=False),
            pa.field("units_sold", pa.int64(), nullable=False),
            pa.field("unit_price", PRICE_TYPE, nullable=False),
            pa.field("currency_id", pa.int64(), nullable=False),
            pa.field("design_id", pa.int64(), nullable=False),
            pa.field("agreed_payment_date", pa.date32(), nullable=False),
            pa.field("agreed_delivery_date", pa.date32(), nullable=False),
            pa.field("agreed_delivery_location_id", pa.int64(), nullable=False),
        ]
    ),
    "dim_date": pa.schema(
        [
            pa.field("date_id", pa.date32(), nullable=False),
            pa.field("year", pa.int64(), nullable=False),
            pa.field("month", pa.int64(), nullable=False),
            pa.field("day", pa.int64(), nullable=False),
            pa.field("day_of_week", pa.int64(), nullable=False),
            pa.field("day_name", pa.string(), nullable=False),
            pa.field("month_name", pa.string(), nullable=False),
            pa.field("quarter", pa.int64(), nullable=False),
        ]
    ),
    "dim_staff": pa.schema(
        [
            pa.field("staff_id", pa.int64(), nullable=False),
            pa.field("first_name", pa.string(), nullable=False),
            pa.field("last_name", pa.string(), nullable=False),
            pa.field("department_name", pa.string(), nullable=False),
            pa.field("location", pa.string()),
            pa.field("email_address", pa.string(), nullable=False),
        ]
    ),
    "dim_location": pa.schema(
        [
            pa.field("location_id", pa.int64(), nullable=False),
            pa.field("address_line_1", pa.string(), nullable=False),
            pa.field("address_line_2", pa.string()),
            pa.field("district", pa.string()),
            pa.field("city", pa.string(), nullable=False),
            pa.field("postal_code", pa.string(), nullable=False),
            pa.field("country", pa.string(), nullable=False),
            pa.field("phone", pa.string(), nullable=False),
        ]
    ),
    "dim_currency": pa.schema(
        [
            pa.field("currency_id", pa.int64(), nullable=False),
            pa.field("currency_code", pa.string(), nullable=False),
            pa.field("currency_name", pa.string(), nullable=False),
        ]
    ),
    "dim_design": pa.schema(
        [
            pa.field("design_id", pa.int64(), nullable=False),
            pa.field("design_name", pa.string(), nullable=False),
            pa.field("file_location", pa.string(), nullable=False),
            pa.field("file_name", pa.string(), nullable=False),
        ]
    ),
    "dim_counterparty": pa.schema(
        [
            pa.field("counterparty_id", pa.int64(), nullable=False),
            pa.field("counterparty_legal_name", pa.string(), nullable=False),
            pa.field("counterparty_legal_address_line_1", pa.string(), nullable=False),
            pa.field("counterparty_legal_address_line_2", pa.string()),
            pa.field("counterparty_legal_district", pa.string()),
            pa.field("counterparty_legal_city", pa.string(), nullable=False),
            pa.field("counterparty_legal_postal_code", pa.string(), nullable=False),
            pa.field("counterparty_legal_country", pa.string(), nullable=False),
            pa.field("counterparty_legal_phone_number", pa.string(), nullable=False),
        ]
    ),
}

STAR_KEYS: Final[dict[str, tuple[str, ...]]] = {
    "fact_sales_order": ("sales_order_id", "last_updated_date", "last_updated_time"),
    "dim_date": ("date_id",),
    "dim_staff": ("staff_id",),
    "dim_location": ("location_id",),
    "dim_currency": ("currency_id",),
    "dim_design": ("design_id",),
    "dim_counterparty": ("counterparty_id",),
}

# Every fact foreign key and the dimension column it must exist in.
FACT_FOREIGN_KEYS: Final[dict[str, tuple[str, str]]] = {
    "sales_staff_id": ("dim_staff", "staff_id"),
    "counterparty_id": ("dim_counterparty", "counterparty_id"),
    "currency_id": ("dim_currency", "currency_id"),
    "design_id": ("dim_design", "design_id"),
    "agreed_delivery_location_id": ("dim_location", "location_id"),
    "created_date": ("dim_date", "date_id"),
    "last_updated_date": ("dim_date", "date_id"),
    "agreed_payment_date": ("dim_date", "date_id"),
    "agreed_delivery_date": ("dim_date", "date_id"),
}

QUARANTINE_SCHEMA: Final = pa.schema(
    [
        pa.field("table", pa.string(), nullable=False),
        pa.field("id", pa.string()),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("detail", pa.string()),
        pa.field("packet_id", pa.int64()),
        pa.field("line", pa.int64()),
        pa.field("record", pa.string(), nullable=False),
    ]
)

# ISO 4217 English names; codes outside this table are quarantined as unknown.
CURRENCY_NAMES: Final[dict[str, str]] = {
    "GBP": "British Pound",
    "USD": "US Dollar",
    "EUR": "Euro",
    "AUD": "Australian Dollar",
    "BRL": "Brazilian Real",
    "CAD": "Canadian Dollar",
    "CHF": "Swiss Franc",
    "CNY": "Chinese Yuan",
    "CZK": "Czech Koruna",
    "DKK": "Danish Krone",
    "HKD": "Hong Kong Dollar",
    "HUF": "Hungarian Forint",
    "INR": "Indian Rupee",
    "JPY": "Japanese Yen",
    "KRW": "South Korean Won",
    "MXN": "Mexican Peso",
    "NOK": "Norwegian Krone",
    "NZD": "New Zealand Dollar",
    "PLN": "Polish Zloty",
    "SEK": "Swedish Krona",
    "SGD": "Singapore Dollar",
    "TRY": "Turkish Lira",
    "ZAR": "South African Rand",
}

# What each column means, for the UI's column schema of every sales asset (raw history, star
# tables, quarantine). One entry per column name: a name means the same in every table.
COLUMN_DESCRIPTIONS: Final[dict[str, str]] = {
    # ToteSys source columns (raw history keeps them as delivered; times stay ISO text).
    "sales_order_id": "ToteSys sales order id.",
    "created_at": "When ToteSys created the row (ISO timestamp text as delivered).",
    "last_updated": "When ToteSys last changed the row (ISO timestamp text); orders versions.",
    "design_id": "Product design id (dim_design).",
    "staff_id": "Staff member id (dim_staff).",
    "counterparty_id": "Counterparty id (dim_counterparty).",
    "units_sold": "Units sold on the order; never negative.",
    "unit_price": "Price per unit in the order's currency, two decimal places.",
    "currency_id": "Currency id (dim_currency).",
    "agreed_delivery_date": "Delivery date agreed with the counterparty.",
    "agreed_payment_date": "Payment date agreed with the counterparty.",
    "agreed_delivery_location_id": "Delivery address id (dim_location).",
    "first_name": "Staff member's first name.",
    "last_name": "Staff member's last name.",
    "department_id": "Department id of the staff member.",
    "email_address": "Staff member's work email address.",
    "department_name": "Name of the staff member's department.",
    "location": "Where the department sits.",
    "manager": "The department's manager.",
    "address_id": "ToteSys address id.",
    "address_line_1": "First line of the address.",
    "address_line_2": "Second line of the address, when there is one.",
    "district": "District of the address, when given.",
    "city": "City of the address.",
    "postal_code": "Postal code of the address.",
    "country": "Country of the address.",
    "phone": "Phone number at the address.",
    "currency_code": "ISO 4217 currency code, e.g. GBP.",
    "design_name": "Name of the product design.",
    "file_location": "Folder holding the design file.",
    "file_name": "File name of the design.",
    "counterparty_legal_name": "Counterparty's legal name.",
    "legal_address_id": "Address id of the counterparty's legal address.",
    "commercial_contact": "Counterparty's commercial contact, when given.",
    "delegate_contact": "Counterparty's delegate contact, when given.",
    PACKET_ID: "Packet the row was delivered in (orders versions with equal timestamps).",
    LINE_NO: "Line of the row within its packet.",
    # Star schema columns.
    "sales_record_id": "Surrogate key of this version of the order (stable across runs).",
    "created_date": "Date part of created_at (dim_date).",
    "created_time": "Time of day part of created_at.",
    "last_updated_date": "Date part of last_updated (dim_date).",
    "last_updated_time": "Time of day part of last_updated.",
    "sales_staff_id": "Staff member who made the sale (dim_staff).",
    "date_id": "The calendar date; fact date columns refer to it.",
    "year": "Calendar year.",
    "month": "Month number, 1-12.",
    "day": "Day of the month, 1-31.",
    "day_of_week": "Day of the week, 0 (Monday) to 6 (Sunday), as the contract states.",
    "day_name": "English name of the weekday.",
    "month_name": "English name of the month.",
    "quarter": "Calendar quarter, 1-4.",
    "location_id": "Address id of the delivery location.",
    "currency_name": "English name of the currency (ISO 4217).",
    "counterparty_legal_address_line_1": "First line of the counterparty's legal address.",
    "counterparty_legal_address_line_2": "Second line of the legal address, when there is one.",
    "counterparty_legal_district": "District of the legal address, when given.",
    "counterparty_legal_city": "City of the legal address.",
    "counterparty_legal_postal_code": "Postal code of the legal address.",
    "counterparty_legal_country": "Country of the legal address.",
    "counterparty_legal_phone_number": "Phone number at the legal address.",
    # Quarantine columns.
    "table": "Source (or star) table the rejected row belongs to.",
    "id": "The row's primary key value, when it could be read.",
    "reason": "Why the row was quarantined, e.g. unknown_currency_code.",
    "detail": "The offending value or a longer explanation.",
    "packet_id": "Packet the row came from.",
    "line": "Line of the row within its packet.",
    "record": "The raw record as delivered (JSON).",
}
