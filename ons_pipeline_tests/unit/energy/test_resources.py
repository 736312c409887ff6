"""Retry, split and rejection handling of the store resources, with fake clients."""

from __future__ import annotations

import gzip
import time
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from influxdb_client.rest import ApiException
from urllib3.exceptions import NewConnectionError

from ons_pipeline.energy.line_protocol import LineProtocolBatches
from ons_pipeline.resources.influxdb import (
    InfluxDBResource,
    InfluxDBUnavailableError,
    InfluxDBWriteError,
)
from ons_pipeline.resources.timestream import (
    TimestreamResource,
    TimestreamUnavailableError,
    TimestreamWriteError,
)

if TYPE_CHECKING:
    from collections.abc import Iterator


def client_error(code: str, status: int, **extra: Any) -> ClientError:
    response = {
        "Error": {"Code": code, "Message": code},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return ClientError(response | extra, "WriteRecords")


class FakeTimestream:
    def __init__(self, failures: list[Exception]) -> None:
        self.failures = failures
        self.calls: list[dict[str, Any]] = []

    def write_records(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(kwargs)
        if self.failures:
            raise self.failures.pop(0)
        return {"RecordsIngested": {"Total": len(kwargs["Records"])}}


def timestream(fake: FakeTimestream, **settings: Any) -> TimestreamResource:
    resource = TimestreamResource(region_name="eu-west-2", backoff_seconds=0.001, **settings)
    resource.set_client(fake)
    return resource


CALL = ({"Dimensions": [{"Name": "region", "Value": "N"}]}, [{"Time": "1"}, {"Time": "2"}])


def test_throttling_5xx_and_connection_errors_are_retried() -> None:
    fake = FakeTimestream(
        [
            client_error("ThrottlingException", 400),
            client_error("InternalServerException", 500),
            EndpointConnectionError(endpoint_url="http://x"),
        ]
    )
    [result] = timestream(fake).write_calls("generation", [CALL])
    assert (result.written, result.retries, len(fake.calls)) == (2, 3, 4)


def test_retries_stop_at_max_retries() -> None:
    fake = FakeTimestream([client_error("ThrottlingException", 400)] * 5)
    with pytest.raises(TimestreamUnavailableError, match="after 3 attempts"):
        timestream(fake, max_retries=2).write_calls("generation", [CALL])


def test_validation_errors_are_not_retried() -> None:
    fake = FakeTimestream([client_error("ValidationException", 400)])
    with pytest.raises(TimestreamWriteError, match="ValidationException"):
        timestream(fake).write_calls("generation", [CALL])
    assert len(fake.calls) == 1


def test_rejected_records_are_mapped_back_by_index() -> None:
    rejected = client_error(
        "RejectedRecordsException",
        419,
        RejectedRecords=[
            {"RecordIndex": 1, "Reason": "The record timestamp is outside the time range"}
        ],
    )
    fake = FakeTimestream([rejected])
    [result] = timestream(fake).write_calls("consumption", [CALL])
    assert result.written == 1
    assert result.rejected == {1: "The record timestamp is outside the time range"}
    assert fake.calls[0]["TableName"] == "consumption"


class FakeWriteApi:
    """Refuses with 400 any body holding a line with `bad`; scripted failures first."""

    def __init__(self, failures: list[Exception] | None = None) -> None:
        self.failures = failures or []
        self.bodies: list[bytes] = []
        self.stored: list[str] = []

    def post_write(self, org: str, bucket: str, body: bytes, **kwargs: Any) -> None:
        assert kwargs["content_encoding"] == "gzip"
        record = gzip.decompress(body)
        self.bodies.append(record)
        if self.failures:
            raise self.failures.pop(0)
        lines = record.decode().splitlines()
        if any("bad" in line for line in lines):
            raise ApiException(status=400, reason="Bad Request")
        self.stored += lines


def influx(api: FakeWriteApi, **settings: Any) -> InfluxDBResource:
    class FakeInflux(InfluxDBResource):
        def write_service(self) -> Any:
            return api

    return FakeInflux(
        **({"url": "http://unused", "token": "t", "backoff_seconds": 0.001} | settings)
    )


def as_lines(lines: list[str]) -> pa.Array:
    return pa.array([line + "\n" for line in lines], type=pa.string())


def batches(lines: list[str], size: int) -> LineProtocolBatches:
    return LineProtocolBatches([as_lines(lines)], size)


def test_a_400_batch_is_split_until_the_bad_lines_are_isolated() -> None:
    lines = [f"m f={i} {i}" if i not in (5, 6, 37) else f"bad {i}" for i in range(40)]
    api = FakeWriteApi()
    planned = batches(lines, 16)
    outcome = influx(api).write_lines("b", planned)
    assert sorted(outcome.rejected) == [5, 6, 37]
    assert outcome.lines_written == 37
    assert sorted(api.stored) == sorted(line for line in lines if "bad" not in line)
    assert (outcome.batches, outcome.failed_batches) == (3, 2)
    assert len(api.bodies) < 40  # far fewer requests than one per line


def test_429_5xx_and_connection_errors_are_retried_with_backoff() -> None:
    api = FakeWriteApi(
        [
            ApiException(status=429),
            ApiException(status=503),
            NewConnectionError(None, "refused"),  # type: ignore[arg-type]
        ]
    )
    planned = batches(["m f=1 1"], 10)
    outcome = influx(api).write_lines("b", planned)
    assert (outcome.lines_written, outcome.retries) == (1, 3)


def test_retryable_failures_end_as_unavailable() -> None:
    api = FakeWriteApi([ApiException(status=503)] * 10)
    planned = batches(["m f=1 1"], 10)
    with pytest.raises(InfluxDBUnavailableError, match="InfluxDB unavailable"):
        influx(api, max_retries=2).write_lines("b", planned)
    assert len(api.bodies) == 3


def test_auth_errors_fail_without_retry_or_split() -> None:
    api = FakeWriteApi([ApiException(status=401)])
    planned = batches(["m f=1 1", "m f=2 2"], 10)
    with pytest.raises(InfluxDBWriteError, match="401"):
        influx(api).write_lines("b", planned)
    assert len(api.bodies) == 1


class PlainOrGzipWriteApi(FakeWriteApi):
    """Accepts plain bodies too, recording each request's content encoding."""

    def __init__(self, failures: list[Exception] | None = None, delay: float = 0.0) -> None:
        super().__init__(failures)
        self.encodings: list[str | None] = []
        self.delay = delay
        self.finished = 0

    def post_write(self, org: str, bucket: str, body: bytes, **kwargs: Any) -> None:
        encoding = kwargs.pop("content_encoding", None)
        self.encodings.append(encoding)
        time.sleep(self.delay)
        zipped = gzip.compress(body) if encoding is None else body
        try:
            super().post_write(org, bucket, zipped, content_encoding="gzip", **kwargs)
        finally:
            self.finished += 1


@pytest.mark.parametrize(
    ("url", "level"),
    [
        ("http://127.0.0.1:8187", 0),
        ("http://localhost:8086", 0),
        ("http://[::1]:8086", 0),
        ("http://10.0.3.7:8086", 0),
        ("https://192.168.1.20", 0),
        ("https://abc123.eu-west-2.timestream-influxdb.amazonaws.com:8086", 1),
        ("https://8.8.8.8", 1),
    ],
)
def test_auto_compression_is_off_near_and_level_1_remote(url: str, level: int) -> None:
    resource = InfluxDBResource(url=url, token="t")
    assert resource.effective_gzip_level() == level


def test_explicit_gzip_level_wins_and_bad_values_are_refused() -> None:
    assert (
        InfluxDBResource(url="http://127.0.0.1", token="t", gzip_level="6").effective_gzip_level()
        == 6
    )
    assert (
        InfluxDBResource(url="https://x.example", token="t", gzip_level="0").effective_gzip_level()
        == 0
    )
    with pytest.raises(ValueError, match="INFLUXDB_GZIP_LEVEL"):
        InfluxDBResource(url="http://x", token="t", gzip_level="fast").effective_gzip_level()


@pytest.mark.parametrize(
    ("url", "encoding"), [("http://127.0.0.1:1", None), ("http://db.example", "gzip")]
)
def test_bodies_go_plain_to_a_loopback_host_and_gzipped_to_a_remote_one(
    url: str, encoding: str | None
) -> None:
    api = PlainOrGzipWriteApi()
    planned = batches([f"m f={i} {i}" for i in range(10)], 4)
    outcome = influx(api, url=url).write_lines("b", planned)
    assert outcome.lines_written == 10
    assert set(api.encodings) == {encoding}


def test_concurrent_pipelined_writes_keep_split_on_400_and_retry_on_429() -> None:
    bad = {3, 17, 18, 41, 77}
    lines = [f"bad {i}" if i in bad else f"m f={i} {i}" for i in range(80)]
    api = PlainOrGzipWriteApi([ApiException(status=429), ApiException(status=502)], delay=0.002)
    planned = batches(lines, 6)
    outcome = influx(api, write_concurrency=3, write_queue=2).write_lines("b", planned)
    assert sorted(outcome.rejected) == sorted(bad)
    assert outcome.lines_written == 75
    assert outcome.retries == 2
    assert sorted(api.stored) == sorted(line for i, line in enumerate(lines) if i not in bad)
    assert (outcome.batches, outcome.failed_batches) == (14, 5)


def test_a_refused_batch_is_split_within_its_part_and_named_by_its_global_line() -> None:
    """Parts of uneven length (one per page or chunk): positions count across all parts."""
    sizes, bad = [7, 3, 12, 1, 9], {2, 8, 9, 15, 22, 31}
    lines = [f"bad {i}" if i in bad else f"m f={i} {i}" for i in range(sum(sizes))]
    starts = [sum(sizes[:k]) for k in range(len(sizes))]
    parts = [as_lines(lines[lo : lo + n]) for lo, n in zip(starts, sizes, strict=True)]
    api = PlainOrGzipWriteApi(delay=0.001)
    outcome = influx(api, write_concurrency=3).write_lines("b", LineProtocolBatches(parts, 4))
    assert sorted(outcome.rejected) == sorted(bad)
    assert outcome.lines_written == len(lines) - len(bad)
    assert sorted(api.stored) == sorted(line for i, line in enumerate(lines) if i not in bad)
    assert outcome.batches == sum(-(-n // 4) for n in sizes)  # no batch straddles two parts


def test_batches_are_built_only_a_bounded_queue_ahead_of_the_writers() -> None:
    api = PlainOrGzipWriteApi(delay=0.005)
    lines = [f"m f={i} {i}" for i in range(300)]
    ahead: list[int] = []

    def lazily() -> Iterator[pa.Array]:
        for produced, start in enumerate(range(0, len(lines), 5), start=1):
            ahead.append(produced - api.finished)
            yield as_lines(lines[start : start + 5])

    planned = LineProtocolBatches(lazily(), 5)
    outcome = influx(api, write_concurrency=2, write_queue=3).write_lines("b", planned)
    assert outcome.lines_written == 300
    # Never more than the writers, the queue and the batch being built are unwritten.
    assert max(ahead) <= 2 + 3 + 1


def test_a_failing_write_stops_the_pipeline_without_posting_the_rest() -> None:
    api = PlainOrGzipWriteApi([ApiException(status=401)], delay=0.002)
    planned = batches([f"m f={i} {i}" for i in range(500)], 5)
    with pytest.raises(InfluxDBWriteError, match="401"):
        influx(api, write_concurrency=2, write_queue=2).write_lines("b", planned)
    assert len(api.encodings) < 20
