"""Written lines read back unchanged from the real influxd, for generated tag/field strings.

The unit property (`unit/energy/test_line_protocol_injection.py`) parses lines with a strict
parser; here the server itself parses them: what the loader accepts with validation off must
come back from InfluxQL as exactly the row's tags and fields, and nothing else may appear.
"""

from __future__ import annotations

import itertools
import json
import urllib.request
import uuid
from typing import TYPE_CHECKING

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ons_pipeline.energy.line_protocol import line_protocol
from ons_pipeline.energy.schema import DEFAULT_FIELD, UNIT_FIELDS
from ons_pipeline.energy.validation import prepare
from ons_pipeline.resources import InfluxDBResource
from ons_pipeline.resources.influxql import quote_identifier

if TYPE_CHECKING:
    from collections.abc import Iterator

    from ons_pipeline.local.stack import LocalStack

pytestmark = pytest.mark.integration

BASE_NS = int(pd.Timestamp.now(tz="UTC").floor("h").value) - 3600 * 10**9
_clock = itertools.count()
# Mostly the characters line protocol treats specially. A list joined, not `st.text`: text()
# would merge the alphabets into one range and the special characters would hardly appear.
texts = st.lists(
    st.one_of(
        st.sampled_from(list(',= \\\n\r"\t#é☀ab')),
        st.characters(min_codepoint=32, exclude_categories=("Cs",)),
    ),
    min_size=1,
    max_size=6,
).map("".join)


@pytest.fixture(scope="module")
def bucket(local_stack: LocalStack) -> Iterator[tuple[dict[str, str], str]]:
    env = local_stack.env
    name = f"lp_wire_{uuid.uuid4().hex[:8]}"
    resource = InfluxDBResource(
        url=env["INFLUXDB_URL"], org=env["INFLUXDB_ORG"], token=env["INFLUXDB_TOKEN"]
    )
    resource.ensure_bucket(name)
    yield env, name


def write(env: dict[str, str], bucket: str, body: str) -> int:
    request = urllib.request.Request(
        f"{env['INFLUXDB_URL']}/api/v2/write?org={env['INFLUXDB_ORG']}&bucket={bucket}"
        "&precision=ns",
        data=body.encode(),
        headers={"Authorization": f"Token {env['INFLUXDB_TOKEN']}"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as resp:
        return resp.status


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(region=texts, source=texts, quality_flag=texts, unit=texts)
def test_what_is_accepted_reads_back_unchanged(
    bucket: tuple[dict[str, str], str], region: str, source: str, quality_flag: str, unit: str
) -> None:
    env, name = bucket
    stamp = BASE_NS + next(_clock) * 1000
    frame = pd.DataFrame(
        [
            {
                "timestamp": pd.Timestamp(stamp, tz="UTC"),
                "region": region,
                "energy_source": source,
                "quality_flag": quality_flag,
                "value": 1.5,
                "unit": unit,
            }
        ]
    )
    prepared = prepare(frame, "generation", check_tags=False)
    lines = line_protocol(prepared).to_pylist()
    if not lines:
        return
    assert write(env, name, "".join(lines)) == 204
    reader = InfluxDBResource(
        url=env["INFLUXDB_URL"],
        token=env["INFLUXDB_TOKEN"],
        query_url=env["INFLUXDB_QUERY_URL"],
        query_username=env.get("INFLUXDB_QUERY_USERNAME"),
        query_password=env.get("INFLUXDB_QUERY_PASSWORD"),
    )
    series = reader.influxql(
        name, f"SELECT * FROM {quote_identifier('generation_data')} WHERE time = {stamp} GROUP BY *"
    )
    assert len(series) == 1, json.dumps(series)
    tags = {k: v for k, v in series[0]["tags"].items() if v}
    assert tags == {
        k: v
        for k, v in {
            "region": region,
            "energy_source": source,
            "quality_flag": quality_flag,
        }.items()
        if v
    }
    row = dict(zip(series[0]["columns"], series[0]["values"][0], strict=True))
    assert row[UNIT_FIELDS.get(unit, DEFAULT_FIELD)] == 1.5
    assert row["unit"] == unit
    measurements = reader.influxql(name, "SHOW MEASUREMENTS")
    assert [r[0] for s in measurements for r in s["values"]] == ["generation_data"]
