"""Packet keys, the JSONL reader and the raw history merge."""

from __future__ import annotations

import json

import pandas as pd
import pyarrow as pa
import pytest

from ons_pipeline.sales.packets import (
    duplicated_rows,
    empty_rows,
    merge_history,
    packet_key,
    parse_packet,
    parse_packet_key,
)
from ons_pipeline.sales.transform import to_star_schema

ROW = {
    "currency_id": 1,
    "currency_code": "GBP",
    "created_at": "2022-11-03T14:20:49.962000",
    "last_updated": "2022-11-03T14:20:49.962000",
}


def jsonl(*rows: dict | str) -> bytes:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows).encode()


def test_packet_keys_are_zero_padded_and_round_trip() -> None:
    assert packet_key("sales_order", 7) == "sales_order/sales_order-packet-00000007.jsonl"
    assert parse_packet_key("sales_order/sales_order-packet-00000007.jsonl") == ("sales_order", 7)
    assert parse_packet_key("sales_order/staff-packet-00000007.jsonl") is None
    assert parse_packet_key("sales_order/sales_order-packet-7.jsonl") is None
    assert parse_packet_key("widgets/widgets-packet-00000001.jsonl") is None
    with pytest.raises(ValueError, match="unknown ToteSys table"):
        packet_key("widgets", 1)


def test_fast_path_reads_typed_rows_with_provenance() -> None:
    parsed = parse_packet(
        "currency", 3, jsonl(ROW, {**ROW, "currency_id": 2, "currency_code": "USD"})
    )
    assert parsed.malformed.empty
    assert parsed.rows["currency_code"].tolist() == ["GBP", "USD"]
    assert parsed.rows["_packet_id"].tolist() == [3, 3]
    assert parsed.rows["_line"].tolist() == [1, 2]


def test_malformed_and_mistyped_lines_are_quarantined_and_the_rest_kept() -> None:
    body = jsonl(
        ROW,
        '{"currency_id": 2, "currency_code":',
        {**ROW, "currency_id": "x"},
        "[1]",
        {**ROW, "currency_id": 5},
    )
    parsed = parse_packet("currency", 1, body)
    assert parsed.rows["currency_id"].tolist() == [1, 5]
    assert parsed.rows["_line"].tolist() == [1, 5]
    bad = parsed.malformed.set_index("line")
    assert bad.loc[2, "reason"] == "malformed_json"
    assert bad.loc[3, "reason"] == "invalid_value"
    assert bad.loc[3, "detail"] == "currency_id"
    assert bad.loc[4, "reason"] == "malformed_json"
    assert bad.loc[2, "record"] == '{"currency_id": 2, "currency_code":'
    assert parsed.lines == 5


@pytest.mark.parametrize(
    "text",
    [b"\xff", b"\xed\xa0\x80", b"\xc0\xaf", b"\xe2\x82", b"\xf4\x90\x80\x80"],
    ids=["stray byte", "surrogate", "overlong", "truncated", "past U+10FFFF"],
)
def test_invalid_utf8_line_is_quarantined(text: bytes) -> None:
    body = jsonl(ROW) + b'{"currency_code": "' + text + b'"}\n' + jsonl({**ROW, "currency_id": 2})
    parsed = parse_packet("currency", 1, body)
    assert parsed.rows["currency_id"].tolist() == [1, 2]
    assert parsed.malformed[["line", "reason"]].values.tolist() == [[2, "malformed_json"]]


def test_missing_key_is_kept_for_the_transform_to_judge() -> None:
    parsed = parse_packet(
        "currency", 1, jsonl({k: v for k, v in ROW.items() if k != "currency_code"})
    )
    assert len(parsed.rows) == 1
    result = to_star_schema({"currency": parsed.rows})
    assert result["quarantine"]["reason"].tolist() == ["missing_required_key"]


def test_history_absorbs_redelivery_once() -> None:
    first = parse_packet("currency", 1, jsonl(ROW))
    again = parse_packet("currency", 2, jsonl(ROW, {**ROW, "currency_id": 2}))
    history = merge_history(empty_rows("currency"), [first], "currency")
    history = merge_history(history, [again], "currency")
    assert history["currency_id"].tolist() == [1, 2]
    assert history["_packet_id"].tolist() == [1, 2]
    assert merge_history(history, [again], "currency").equals(history)


def test_empty_packet_is_zero_rows() -> None:
    parsed = parse_packet("currency", 1, b"")
    assert parsed.rows.empty and parsed.malformed.empty and parsed.lines == 0


def test_duplicated_rows_finds_what_pandas_finds() -> None:
    frame = pd.DataFrame(
        {
            "id": pd.array([1, 2, 1, None, None, 1, 3, 2], dtype="Int64"),
            "at": ["a", "b", "a", "c", "c", "b", "a", "b"],
            "value": ["x", "y", "x", "z", "z", "x", "x", "q"],
        }
    )
    columns = ["id", "at", "value"]
    expected = frame.duplicated(subset=columns, keep="first").to_numpy()
    assert expected.tolist() == [False, False, True, False, True, False, False, False]
    assert duplicated_rows(frame, columns, ("id", "at")).tolist() == expected.tolist()
    assert not duplicated_rows(frame.iloc[:2], columns, ("id", "at")).any()
    assert duplicated_rows(frame.iloc[:0], columns, ("id",)).tolist() == []


@pytest.mark.parametrize(
    "at",
    [
        ["2022-11-03T14:20:49.962000", "2022-11-03 14:20:49.962", "2022-11-03T14:20:49.962000"],
        ["2022-11-03T14:20:49", "2022-11-03T14:20:49", "not a time"],
        [None, "2022-11-03T14:20:49", None],
    ],
)
def test_duplicated_rows_on_arrow_typed_rows_finds_what_pandas_finds(at: list) -> None:
    """The reader's types: equal instants written differently are different rows."""
    strings = pd.ArrowDtype(pa.string())
    frame = pd.DataFrame(
        {
            "id": pd.array([7, 7, 7, None, None, 8], dtype=pd.ArrowDtype(pa.int64())),
            "at": pd.array([*at, *at], dtype=strings),
            "value": pd.array(["x", "x", "x", "x", "x", "x"], dtype=strings),
        }
    )
    columns = ["id", "at", "value"]
    expected = frame.duplicated(subset=columns, keep="first").to_numpy().tolist()
    assert duplicated_rows(frame, columns, ("id", "at")).tolist() == expected


def test_bad_line_deep_in_a_large_packet_is_named_by_its_line_number() -> None:
    rows = [json.dumps({**ROW, "currency_id": i}) for i in range(1, 30_001)]
    rows[20_000] = '{"currency_id": 20001, "currency_code":'  # line 20,001, past the first MiB
    rows[25_000] = ""  # a blank line holds no row but still counts as a line
    body = ("\n".join(rows) + "\n").encode()
    assert len(body) > 2 * 2**20
    parsed = parse_packet("currency", 4, body)
    assert parsed.lines == 30_000
    assert parsed.malformed[["line", "reason"]].values.tolist() == [[20_001, "malformed_json"]]
    assert len(parsed.rows) == 29_998
    lines = parsed.rows.set_index("currency_id")["_line"]
    assert (lines.loc[20_002], lines.loc[30_000]) == (20_002, 30_000)
    assert 20_001 not in lines.index and 25_001 not in lines.index
