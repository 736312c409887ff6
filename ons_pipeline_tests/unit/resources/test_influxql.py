from __future__ import annotations

import pandas as pd
import pytest

from ons_pipeline.energy import readback
from ons_pipeline.energy.validation import prepare
from ons_pipeline.local import influx_gateway
from ons_pipeline.resources.influxql import quote_identifier, quote_string


def test_identifiers_escape_backslash_before_quote() -> None:
    # `\"` would otherwise end the identifier: the backslash is escaped first.
    assert quote_identifier('a\\"; DROP DATABASE x; "') == '"a\\\\\\"; DROP DATABASE x; \\""'
    assert quote_identifier("m\\") == '"m\\\\"'
    assert quote_string("it's\\") == "'it\\'s\\\\'"
    with pytest.raises(ValueError, match="control character"):
        quote_identifier("a\nb")


def test_every_query_builder_uses_the_one_helper() -> None:
    assert not hasattr(influx_gateway, "quote_ident")
    assert not hasattr(influx_gateway, "quote_string")

    class Recorder:
        def __init__(self) -> None:
            self.statements: list[str] = []

        def influxql(self, database: str, statement: str, params: object = None) -> list:
            self.statements.append(statement)
            return []

    frame = pd.DataFrame(
        {
            "timestamp": ["2024-01-01T00:00:00Z"],
            "region": ["A"],
            "energy_source": ["wind"],
            "value": [1.0],
            "unit": ["MW"],
        }
    )
    prepared = prepare(frame, "generation")
    recorder = Recorder()
    readback.readback_counts(recorder, "bucket", prepared)  # type: ignore[arg-type]
    power = quote_identifier("power_mw")
    assert recorder.statements[0].startswith(
        f"SELECT COUNT({power}) AS {power} FROM {quote_identifier('generation_data')} WHERE"
    )
