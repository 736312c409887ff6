"""Line protocol cannot be injected through a tag or field string, whatever the settings.

A strict parser (InfluxDB's line protocol grammar) reads each written line back: one row gives
at most one line, and that line holds exactly the row's measurement, tags and fields.
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from ons_pipeline.energy.line_protocol import line_protocol
from ons_pipeline.energy.schema import (
    DEFAULT_FIELD,
    DIMENSION,
    MEASUREMENT,
    OPTIONAL_TAGS,
    UNIT_FIELDS,
    WIDE_FIELDS,
)
from ons_pipeline.energy.validation import prepare, unrepresentable

T0_NS = 1704067200000000000
# What the validation setting (ENABLE_VALIDATION) can be: the property holds under both.
SETTINGS = (True, False)


class LineProtocolError(ValueError):
    """The text is not one well-formed line of line protocol."""


def _token(text: str, i: int, stops: str, escapable: str) -> tuple[str, int]:
    """One measurement/key/value from `i` to the first unescaped stop character."""
    out: list[str] = []
    while i < len(text):
        char = text[i]
        if char == "\\":
            if i + 1 == len(text):
                raise LineProtocolError(f"trailing backslash in {text!r}")
            if text[i + 1] in escapable:
                out.append(text[i + 1])
                i += 2
                continue
            out.append(char)  # a backslash before anything else is literal
            i += 1
            continue
        if char in stops:
            break
        out.append(char)
        i += 1
    if not out:
        raise LineProtocolError(f"empty element at {i} in {text!r}")
    return "".join(out), i


def _expect(text: str, i: int, char: str) -> int:
    if i >= len(text) or text[i] != char:
        raise LineProtocolError(f"expected {char!r} at {i} in {text!r}")
    return i + 1


def _string_field(text: str, i: int) -> tuple[str, int]:
    i = _expect(text, i, '"')
    out: list[str] = []
    while i < len(text):
        char = text[i]
        if char == "\\" and i + 1 < len(text) and text[i + 1] in '"\\':
            out.append(text[i + 1])
            i += 2
        elif char == '"':
            return "".join(out), i + 1
        else:
            out.append(char)
            i += 1
    raise LineProtocolError(f"unterminated string field in {text!r}")


def parse_line(line: str) -> tuple[str, dict[str, str], dict[str, Any], int]:
    """(measurement, tags, fields, timestamp) of one newline-terminated line, strictly."""
    if not line.endswith("\n") or "\n" in line[:-1] or "\r" in line:
        raise LineProtocolError(f"not exactly one line: {line!r}")
    text = line[:-1]
    measurement, i = _token(text, 0, ", ", ", \\")
    tags: dict[str, str] = {}
    while i < len(text) and text[i] == ",":
        key, i = _token(text, i + 1, "=, ", ",= \\")
        i = _expect(text, i, "=")
        value, i = _token(text, i, ", ", ",= \\")
        if key in tags:
            raise LineProtocolError(f"duplicate tag {key!r}")
        tags[key] = value
    i = _expect(text, i, " ")
    fields: dict[str, Any] = {}
    while True:
        key, i = _token(text, i, "=, ", ",= \\")
        i = _expect(text, i, "=")
        if i < len(text) and text[i] == '"':
            value, i = _string_field(text, i)
        else:
            raw, i = _token(text, i, ", ", "")
            value = float(raw)
        if key in fields:
            raise LineProtocolError(f"duplicate field {key!r}")
        fields[key] = value
        if i < len(text) and text[i] == ",":
            i += 1
            continue
        break
    i = _expect(text, i, " ")
    stamp = text[i:]
    if not stamp.lstrip("-").isdigit():
        raise LineProtocolError(f"bad timestamp {stamp!r}")
    return measurement, tags, fields, int(stamp)


def _bits(value: float) -> bytes:
    return struct.pack("<d", value)


# Any text, with the characters line protocol treats specially drawn often. A list joined, not
# `st.text`: text() would merge the alphabets into one range and the special characters would
# hardly appear.
texts = st.lists(
    st.one_of(st.sampled_from(list(',= \\\n\r"\t\x00#é')), st.characters()),
    max_size=8,
).map("".join)
optional_texts = st.one_of(st.none(), texts)


def check_row(
    dataset: str, layout: str, tags: dict[str, str | None], unit: str, value: float
) -> None:
    dim = DIMENSION[dataset]
    row: dict[str, Any] = {"timestamp": "2024-01-01T00:00:00Z", **tags}
    if layout == "long":
        row |= {"value": value, "unit": unit}
    else:
        row |= dict.fromkeys(WIDE_FIELDS[dataset], value)
    frame = pd.DataFrame([row])
    for check_tags in SETTINGS:
        prepared = prepare(frame, dataset, check_tags=check_tags)
        body = "".join(line_protocol(prepared).to_pylist())
        assert body.count("\n") == len(prepared.accepted) <= 1, (check_tags, body)
        if prepared.accepted.empty:
            reason = prepared.rejected["reason"].iloc[0]
            assert reason in {"missing_tag", "invalid_tag", "missing_unit"}, reason
            strings = [v for v in tags.values() if v] + ([unit] if layout == "long" else [])
            if reason == "invalid_tag" and not check_tags:
                # With validation off only what line protocol cannot carry is refused.
                assert any(unrepresentable(s) for s in strings), strings
            continue
        measurement, got_tags, fields, stamp = parse_line(body)
        assert measurement == MEASUREMENT[dataset]
        assert got_tags == {k: v for k, v in tags.items() if v}
        assert set(got_tags) <= {"region", dim, *OPTIONAL_TAGS}
        assert stamp == T0_NS
        if layout == "long":
            name = UNIT_FIELDS.get(unit, DEFAULT_FIELD)
            assert set(fields) == {name, "unit"}
            assert fields["unit"] == unit
            assert _bits(fields[name]) == _bits(value)
        else:
            assert set(fields) == set(WIDE_FIELDS[dataset])
            assert all(_bits(v) == _bits(value) for v in fields.values())


@settings(max_examples=400, deadline=None)
@given(
    dataset=st.sampled_from(sorted(DIMENSION)),
    layout=st.sampled_from(["long", "wide"]),
    region=texts,
    dim=texts,
    measurement_type=optional_texts,
    quality_flag=optional_texts,
    unit=texts,
    value=st.floats(allow_nan=False, allow_infinity=False),
)
@example(
    dataset="generation",
    layout="long",
    region="north\nevil_measure,region=x value=1",
    dim="wind",
    measurement_type=None,
    quality_flag=None,
    unit="MW",
    value=1.0,
)
@example(
    dataset="generation",
    layout="long",
    region="a\\,b",
    dim="c\\ d",
    measurement_type="e\\=f",
    quality_flag="g\\",
    unit='u"\\',
    value=2.0,
)
def test_one_row_gives_at_most_one_line_that_parses_back_to_the_row(
    dataset: str,
    layout: str,
    region: str,
    dim: str,
    measurement_type: str | None,
    quality_flag: str | None,
    unit: str,
    value: float,
) -> None:
    tags = {
        "region": region,
        DIMENSION[dataset]: dim,
        "measurement_type": measurement_type,
        "quality_flag": quality_flag,
    }
    check_row(dataset, layout, tags, unit, value)


@pytest.mark.parametrize("check_tags", SETTINGS)
@pytest.mark.parametrize(
    "region",
    ["north\nevil_measure,region=x value=1", "north\revil", "north\\", "a\\,b", "a\\ b"],
)
def test_unrepresentable_tag_is_rejected_whatever_the_setting(
    region: str, check_tags: bool
) -> None:
    frame = pd.DataFrame(
        {
            "timestamp": ["2024-01-01T00:00:00Z", "2024-01-01T00:00:00Z"],
            "region": [region, "south"],
            "energy_source": ["wind", "wind"],
            "value": [1.0, 2.0],
            "unit": ["MW", "MW"],
        }
    )
    prepared = prepare(frame, "generation", check_tags=check_tags)
    assert prepared.rejected["reason"].tolist() == ["invalid_tag"]
    lines = line_protocol(prepared).to_pylist()
    assert [parse_line(line)[1]["region"] for line in lines] == ["south"]


def test_business_rules_follow_the_setting() -> None:
    long_tag = "y" * 2049
    frame = pd.DataFrame(
        {
            "timestamp": ["2024-01-01T00:00:00Z"] * 2,
            "region": ["a\x01b", long_tag],
            "energy_source": ["wind", "wind"],
            "value": [1.0, np.float64(2.0)],
            "unit": ["MW", "MW"],
        }
    )
    assert prepare(frame, "generation", check_tags=True).rejected["reason"].tolist() == [
        "invalid_tag",
        "invalid_tag",
    ]
    relaxed = prepare(frame, "generation", check_tags=False)
    assert relaxed.rejected.empty
    regions = [parse_line(line)[1]["region"] for line in line_protocol(relaxed).to_pylist()]
    assert regions == ["a\x01b", long_tag]
