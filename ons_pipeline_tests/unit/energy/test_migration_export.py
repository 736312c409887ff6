"""The migration's export: safe SQL, every page to the last token, only transient faults retried."""

from __future__ import annotations

import threading
from types import SimpleNamespace
from typing import Any

import pandas as pd
import pyarrow as pa
import pytest
from botocore.exceptions import ClientError

from ons_pipeline.energy.migration.export import (
    TimestreamQueryError,
    TimestreamQueryUnavailableError,
    Window,
    identifier,
    query_pages,
    stats_query,
    window_query,
)


def error(code: str, status: int) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}},
        "Query",
    )


class Script:
    """A query client answering from a script of pages and errors."""

    def __init__(self, answers: list[Any]) -> None:
        self.answers = answers
        self.calls: list[dict[str, Any]] = []

    def query(self, **kwargs: Any) -> Any:
        self.calls.append(kwargs)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def test_windows_are_half_open_days() -> None:
    day, next_day = Window.day("2024-01-01"), Window.day("2024-01-02")
    assert day.end_ns == next_day.start_ns
    assert day.end_ns - day.start_ns == 86_400 * 10**9
    assert window_query("ons_energy", "generation", day) == (
        'SELECT * FROM "ons_energy"."generation" WHERE time >= '
        "from_nanoseconds(1704067200000000000) AND time < from_nanoseconds(1704153600000000000)"
    )


@pytest.mark.parametrize(
    "name", ['gen"; DROP TABLE x; --', "a b", "", "x" * 257, "t'", "db.t\n", "né"]
)
def test_names_that_could_carry_sql_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="not a valid Timestream name"):
        identifier(name)
    with pytest.raises(ValueError):
        window_query("ons_energy", name, Window.day("2024-01-01"))
    with pytest.raises(ValueError):
        stats_query("ons_energy", "t", Window.day("2024-01-01"), [name], ["v"])


def test_pages_are_read_to_the_last_token_including_empty_ones() -> None:
    client = Script(
        [
            {"Rows": [], "NextToken": "a"},  # still running: no rows yet
            {"Rows": [1], "NextToken": "b"},
            {"Rows": [2]},
        ]
    )
    pages = list(query_pages(client, "SELECT 1"))
    assert [p["Rows"] for p in pages] == [[], [1], [2]]
    assert [c.get("NextToken") for c in client.calls] == [None, "a", "b"]
    assert all(c["QueryString"] == "SELECT 1" for c in client.calls)


def test_throttling_and_5xx_are_retried_with_backoff() -> None:
    sleeps: list[float] = []
    client = Script(
        [
            error("ThrottlingException", 400),
            error("InternalServerException", 500),
            {"Rows": [1], "NextToken": "t"},
            error("ServiceUnavailable", 503),
            {"Rows": [2]},
        ]
    )
    pages = list(query_pages(client, "q", backoff_seconds=0.1, sleep=sleeps.append))
    assert [p["Rows"] for p in pages] == [[1], [2]]
    assert len(sleeps) == 3
    assert 0.1 <= sleeps[0] <= 0.2 and 0.2 <= sleeps[1] <= 0.4
    assert client.calls[-1]["NextToken"] == "t"  # the retry resumes the same page


def test_permanent_errors_fail_at_once_and_exhaustion_says_so() -> None:
    client = Script([error("ValidationException", 400)])
    with pytest.raises(TimestreamQueryError, match="ValidationException"):
        list(query_pages(client, "q", sleep=lambda _: None))
    assert len(client.calls) == 1
    client = Script([error("ThrottlingException", 400)] * 3)
    with pytest.raises(TimestreamQueryUnavailableError, match="after 3 attempts"):
        list(query_pages(client, "q", max_retries=2, sleep=lambda _: None))


def test_fast_query_parser_gives_what_botocore_gives() -> None:
    import json

    import botocore.session
    from botocore.parsers import JSONParser

    from ons_pipeline.resources.timestream import QueryParserFactory

    body = {
        "QueryId": "q",
        "NextToken": "t",
        "Rows": [
            {"Data": [{"ScalarValue": 'a "b"'}, {"NullValue": True}]},
            {"Data": [{"ScalarValue": "São"}, {"ScalarValue": "1e-300"}]},
        ],
        "ColumnInfo": [
            {"Name": "region", "Type": {"ScalarType": "VARCHAR"}},
            {"Name": "v", "Type": {"ScalarType": "DOUBLE"}},
        ],
        "QueryStatus": {
            "ProgressPercentage": 50.0,
            "CumulativeBytesScanned": 10,
            "CumulativeBytesMetered": 10,
        },
    }
    model = botocore.session.get_session().get_service_model("timestream-query")
    shape = model.operation_model("Query").output_shape
    response = {"body": json.dumps(body).encode(), "headers": {}, "status_code": 200}
    fast = QueryParserFactory().create_parser("json").parse(dict(response), shape)
    stock = JSONParser().parse(dict(response), shape)
    assert fast == stock
    assert fast["Rows"][0]["Data"][1] == {"NullValue": True}


def test_unload_statement_takes_only_safe_locations() -> None:
    from ons_pipeline.energy.migration.unload import unload_statement

    day = Window.day("2024-01-01")
    statement = unload_statement("ons_energy", "generation", day, "processed", "exports/a/")
    assert statement == (
        f"UNLOAD ({window_query('ons_energy', 'generation', day)}) TO "
        "'s3://processed/exports/a/' WITH (format = 'PARQUET', compression = 'NONE', "
        "max_file_size = '64MB')"
    )
    for bucket, folder in [
        ("processed", "x'/) ; DROP"),
        ("Processed", "a/"),
        ("processed", "../a/"),
        ("processed", "a//b/"),
        ("pro' --", "a/"),
    ]:
        with pytest.raises(ValueError, match="not a safe export location"):
            unload_statement("ons_energy", "generation", day, bucket, folder)


def test_overlapped_windows_report_in_order_and_the_one_before_a_failure() -> None:
    from ons_pipeline.energy.migration.window import overlapped

    def work(day: int) -> int:
        if day == 3:
            raise RuntimeError("window 3 failed")
        return day * 10

    seen: list[tuple[int, int]] = []
    with pytest.raises(RuntimeError, match="window 3 failed"):
        seen.extend(overlapped([1, 2, 3, 4], work, lambda day, done: done + day))
    assert seen == [(1, 11), (2, 22)]  # window 2 checked and reported before the failure

    def check(day: int, done: int) -> int:
        raise ValueError(f"check {day}")

    with pytest.raises(ValueError, match="check 1"):
        list(overlapped([1, 2], lambda day: day, check))


def test_the_next_window_is_exported_while_this_one_is_written() -> None:
    import threading

    from ons_pipeline.energy.migration.window import ahead, overlapped

    second_export_started = threading.Event()
    log: list[str] = []

    def export(day: int) -> str:
        if day == 2:
            second_export_started.set()
        return f"export {day}"

    def work(item: tuple[int, str]) -> int:
        day, exported = item
        assert exported == f"export {day}"
        if day == 1:  # written while the next window's export runs beside it
            assert second_export_started.wait(timeout=10)
        log.append(f"write {day}")
        return day * 10

    seen = list(overlapped(ahead([1, 2, 3], export), work, lambda item, done: done + item[0]))
    assert [(item[0], result) for item, result in seen] == [(1, 11), (2, 22), (3, 33)]
    assert log == ["write 1", "write 2", "write 3"]


def test_a_failed_export_comes_after_the_windows_before_it_are_reported() -> None:
    from ons_pipeline.energy.migration.window import ahead, overlapped

    def export(day: int) -> int:
        if day == 3:
            raise RuntimeError("export 3 failed")
        return day

    seen: list[Any] = []
    with pytest.raises(RuntimeError, match="export 3 failed"):
        seen.extend(
            overlapped(ahead([1, 2, 3, 4], export), lambda item: item[1], lambda i, d: d * 10)
        )
    # Window 2 was written before export 3 failed: its comparison is still reported.
    assert [result for _, result in seen] == [10, 20]


def _faked_migration(
    monkeypatch: pytest.MonkeyPatch, fake_map: Any, fake_write: Any, answers: Any
) -> Any:
    """`migrate_window` on fakes: each window reads the next list of pages from `answers`."""
    from ons_pipeline.energy.migration import window as window_module

    monkeypatch.setattr(window_module, "map_page", fake_map)
    monkeypatch.setattr(window_module, "_write_group", fake_write)
    monkeypatch.setattr(window_module, "query_pages", lambda *a, **k: iter(next(answers)))
    monkeypatch.setattr(window_module, "page_table", lambda page: page)

    def migrate(day: str, **options: Any) -> Any:
        return window_module.migrate_window(
            None,  # type: ignore[arg-type]
            None,  # type: ignore[arg-type]
            database="ons_energy_data",
            table="generation_data",
            dataset="generation",
            bucket="generation_data",
            window=Window.day(day),
            **options,
        )

    return migrate


def test_a_group_is_mapped_while_the_one_before_is_written_and_outcomes_keep_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The writer of group 1 waits until group 2 is being mapped: sequential code would hang."""
    from ons_pipeline.energy.migration.mapping import MappedPage
    from ons_pipeline.resources.influxdb import WriteOutcome

    second_mapped = threading.Event()
    events: list[str] = []

    def fake_map(table: pa.Table, dataset: str, *, check_tags: bool = True) -> MappedPage:
        group = int(table["group"][0].as_py())
        events.append(f"map {group}")
        if group == 2:
            second_mapped.set()
        page = MappedPage(
            records=len(table), quarantined=[pd.DataFrame({"from": [f"map {group}"]})]
        )
        page.prepared = [SimpleNamespace(accepted=[group])]  # type: ignore[list-item]
        return page

    def fake_write(influxdb: object, bucket: str, group: list[MappedPage]) -> tuple:
        number = group[0].prepared[0].accepted[0]
        if number == 1:
            assert second_mapped.wait(10), "group 2 was not mapped while group 1 was written"
        events.append(f"write {number}")
        return WriteOutcome(lines_written=1), [pd.DataFrame({"from": [f"write {number}"]})]

    pages = [pa.table({"group": [1]}), pa.table({"group": [2]}), pa.table({"group": [3]})]
    migrate = _faked_migration(monkeypatch, fake_map, fake_write, iter([pages]))

    outcome = migrate("2024-01-01", group_lines=1)

    assert events.index("map 2") < events.index("write 1")
    assert [q["from"][0] for q in outcome.quarantined] == [
        "map 1",
        "write 1",
        "map 2",
        "write 2",
        "map 3",
        "write 3",
    ]
    assert (outcome.records, outcome.written.lines_written) == (3, 3)


def _two_windows_on_one_lane(
    monkeypatch: pytest.MonkeyPatch, write: Any
) -> tuple[list[str], Any, Any]:
    """Windows 1 and 2 (one page, one group each) migrated on one shared lane, unsettled.

    `write(number, second_mapped)` writes window `number`'s group; `second_mapped` is set once
    window 2 is being mapped.
    """
    from ons_pipeline.energy.migration.mapping import MappedPage
    from ons_pipeline.energy.migration.window import WriteLane

    events: list[str] = []
    second_mapped = threading.Event()

    def fake_map(table: pa.Table, dataset: str, *, check_tags: bool = True) -> MappedPage:
        number = int(table["window"][0].as_py())
        events.append(f"map {number}")
        if number == 2:
            second_mapped.set()
        page = MappedPage(records=len(table))
        page.prepared = [SimpleNamespace(accepted=[number])]  # type: ignore[list-item]
        return page

    def fake_write(influxdb: object, bucket: str, group: list[Any]) -> tuple:
        number = group[0].prepared[0].accepted[0]
        events.append(f"write {number}")
        return write(number, second_mapped)

    answers = iter([[pa.table({"window": [1]})], [pa.table({"window": [2]})]])
    migrate = _faked_migration(monkeypatch, fake_map, fake_write, answers)
    with WriteLane() as lane:
        first, second = (migrate(day, lane=lane) for day in ("2024-01-01", "2024-01-02"))
    return events, first, second


def test_on_a_shared_lane_the_next_window_is_mapped_while_this_ones_last_group_is_written(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Window 1's writer waits until window 2 is mapped: a window that waited for its own
    last group before returning would hang here."""
    from ons_pipeline.resources.influxdb import WriteOutcome

    def write(number: int, second_mapped: threading.Event) -> tuple:
        if number == 1:
            assert second_mapped.wait(10), "window 2 was not mapped while window 1 was written"
        return WriteOutcome(lines_written=10 * number), [pd.DataFrame({"window": [number]})]

    events, first, second = _two_windows_on_one_lane(monkeypatch, write)

    assert sorted(events) == ["map 1", "map 2", "write 1", "write 2"]
    # A window's write is recorded by its own settle, in its own outcome only.
    assert first.settle().written.lines_written == 10
    assert second.settle().written.lines_written == 20
    assert [int(q["window"][0]) for q in first.quarantined] == [1]
    assert [int(q["window"][0]) for q in second.quarantined] == [2]


def test_on_a_shared_lane_a_failed_write_stays_with_its_window(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Window 1's write fails: window 2 still goes, and only window 1's settle raises."""
    from ons_pipeline.resources.influxdb import InfluxDBWriteError, WriteOutcome

    def write(number: int, second_mapped: threading.Event) -> tuple:
        if number == 1:
            raise InfluxDBWriteError("InfluxDB refused the write to generation_data: 403")
        return WriteOutcome(lines_written=number), []

    events, first, second = _two_windows_on_one_lane(monkeypatch, write)

    assert "write 2" in events
    with pytest.raises(InfluxDBWriteError, match="403"):
        first.settle()
    assert second.settle().written.lines_written == 2


def test_exported_parts_are_read_in_batches_with_text_as_dictionaries() -> None:
    """Dimensions come back dictionary-encoded (the mapping need not encode them again);
    every row of every part, in order, and numbers and times untouched."""
    import io

    import boto3
    import pyarrow.parquet as pq
    from moto import mock_aws

    from ons_pipeline.energy.migration.unload import Export, export_batches

    parts = [
        pa.table(
            {
                "region": ["N", "NE", None, "N"][:n],
                "measure_name": ["value"] * n,
                "time": pa.array(range(n), pa.timestamp("ns")),
                "measure_value::double": [0.1 * i for i in range(n)],
            }
        )
        for n in (4, 3)
    ]
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="exports")
        for number, part in enumerate(parts):
            sink = io.BytesIO()
            pq.write_table(part, sink)
            s3.put_object(Bucket="exports", Key=f"w/part{number}", Body=sink.getvalue())
        export = Export("exports", "w/", 7, [f"s3://exports/w/part{i}" for i in (0, 1)], {})
        batches = list(export_batches(s3, export, batch_rows=2))

    assert [len(b) for b in batches] == [2, 2, 2, 1]
    assert all(pa.types.is_dictionary(b.schema.field("region").type) for b in batches)
    assert pa.types.is_float64(batches[0].schema.field("measure_value::double").type)
    read = pa.concat_tables([b.cast(batches[0].schema) for b in batches])
    expected = pa.concat_tables(parts)
    assert read["region"].to_pylist() == expected["region"].to_pylist()
    assert read["time"].to_pylist() == expected["time"].to_pylist()
    assert (
        read["measure_value::double"].to_pylist() == expected["measure_value::double"].to_pylist()
    )
