"""InfluxQL quoting: the one place query text is built from names.

InfluxQL quotes identifiers with double quotes and string literals with single quotes; inside
either, a backslash escapes the next character. Values a user supplies never go through
these helpers: they travel as bind parameters (`/query?params=...`, `$name` in the text).
"""

from __future__ import annotations

import re

_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f]")


def _escaped(text: str, quote: str) -> str:
    if _FORBIDDEN.search(text):
        raise ValueError(f"InfluxQL name or literal contains a control character: {text!r}")
    return text.replace("\\", "\\\\").replace(quote, "\\" + quote)


def quote_identifier(name: str) -> str:
    """`name` as a double-quoted InfluxQL identifier (database, measurement, tag, field)."""
    if not name:
        raise ValueError("InfluxQL identifier must not be empty")
    return '"' + _escaped(name, '"') + '"'


def quote_string(value: str) -> str:
    """`value` as a single-quoted InfluxQL string literal."""
    return "'" + _escaped(value, "'") + "'"
