"""A realistic visit-event corpus for the demo, the tests and the benchmark.

Several centers; each visit is logged several times as it moves through QC (submit, a failed
QC, a corrected submit with module/packet filled in, a passed QC); a few invalid files; and a
second wave of late arrivals whose event times are older than events already processed.
"""

from __future__ import annotations

import json
import random
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

CENTERS = (
    (42, "alpha-adrc", "ingest-form-alpha"),
    (43, "beta-adrc", "ingest-form-beta"),
    (44, "gamma-adrc", "ingest-form-gamma"),
    (45, "delta-adrc", "ingest-form-delta"),
)


@dataclass(frozen=True)
class EventFile:
    key: str
    body: bytes


@dataclass(frozen=True)
class VisitCorpus:
    initial: list[EventFile]
    late: list[EventFile]
    invalid_keys: list[str]


def event_key(event: dict[str, Any], prefix: str = "logs/") -> str:
    """`log-{action}-{YYYYMMDD-HHMMSS}-{adcid}-{project_label}-{ptid}-{visit_date}.json`."""
    stamp = datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00"))
    return (
        f"{prefix}log-{event['action']}-{stamp:%Y%m%d-%H%M%S}-{event['pipeline_adcid']}-"
        f"{event['project_label']}-{event['ptid']}-{event['visit_date']}.json"
    )


def _event(
    center: tuple[int, str, str],
    ptid: str,
    visit_date: date,
    visit_number: str,
    action: str,
    at: datetime,
    complete: bool,
) -> dict[str, Any]:
    adcid, center_label, project_label = center
    event: dict[str, Any] = {
        "action": action,
        "study": "adrc",
        "pipeline_adcid": adcid,
        "project_label": project_label,
        "center_label": center_label,
        "gear_name": "form-qc-checker" if "qc" in action else "form-scheduler",
        "ptid": ptid,
        "visit_date": visit_date.isoformat(),
        "visit_number": visit_number,
        "datatype": "form",
        "timestamp": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    if complete:
        event.update(module="UDS", packet="I" if visit_number == "01" else "F")
    return event


def visit_history(rng: random.Random, index: int, start: date) -> list[dict[str, Any]]:
    """The events of one visit: 1-4 versions as it passes (or not) through QC."""
    center = CENTERS[index % len(CENTERS)]
    ptid = f"P{index:06d}"[:10]
    visit_date = start + timedelta(days=rng.randrange(0, 120))
    visit_number = f"{rng.randrange(1, 4):02d}"
    at = datetime(visit_date.year, visit_date.month, visit_date.day, 9, tzinfo=UTC)
    at += timedelta(days=rng.randrange(0, 5), seconds=rng.randrange(0, 36_000))
    events = [_event(center, ptid, visit_date, visit_number, "submit", at, complete=False)]
    if rng.random() < 0.4:
        at += timedelta(days=rng.randrange(1, 10), seconds=rng.randrange(0, 3600))
        events.append(_event(center, ptid, visit_date, visit_number, "not-pass-qc", at, False))
        at += timedelta(days=rng.randrange(1, 10), seconds=rng.randrange(0, 3600))
        events.append(_event(center, ptid, visit_date, visit_number, "submit", at, True))
    if rng.random() < 0.8:
        at += timedelta(days=rng.randrange(0, 14), seconds=rng.randrange(1, 3600))
        events.append(_event(center, ptid, visit_date, visit_number, "pass-qc", at, True))
    return events


def _files(events: list[dict[str, Any]], prefix: str) -> list[EventFile]:
    return [EventFile(event_key(e, prefix), json.dumps(e).encode()) for e in events]


def invalid_files(prefix: str = "logs/") -> list[EventFile]:
    """One file per kind of rejection the checkpoint reports."""
    good = _event(
        CENTERS[0], "BAD001", date(2024, 3, 1), "01", "submit", datetime(2024, 3, 2), True
    )
    lower_ptid = {**good, "ptid": "bad-ptid"}
    typo = {**good, "ptid": "BAD002", "visit_numbr": "01"}
    bad_date = {**good, "ptid": "BAD003", "visit_date": "2024-02-30"}
    return [
        EventFile(f"{prefix}broken/log-submit-truncated.json", b'{"action": "submit", '),
        EventFile(f"{prefix}broken/log-submit-latin1.json", '{"ptid": "Å"}'.encode("latin-1")),
        EventFile(f"{prefix}broken/log-submit-array.json", b"[1, 2, 3]"),
        EventFile(f"{prefix}broken/log-submit-lower-ptid.json", json.dumps(lower_ptid).encode()),
        EventFile(f"{prefix}broken/log-submit-typo.json", json.dumps(typo).encode()),
        EventFile(f"{prefix}broken/log-submit-bad-date.json", json.dumps(bad_date).encode()),
    ]


def generate_corpus(
    visits: int = 200, *, seed: int = 4, prefix: str = "logs/", late_fraction: float = 0.25
) -> VisitCorpus:
    """Initial files, plus late arrivals: new versions of old visits and visits logged late."""
    rng = random.Random(seed)  # nosec B311  # seeded demo data, not a secret
    start = date(2024, 1, 1)
    initial: list[dict[str, Any]] = []
    late: list[dict[str, Any]] = []
    for index in range(visits):
        history = visit_history(rng, index, start)
        if rng.random() < late_fraction:
            # The last version (or the whole visit) lands after the first checkpoint run,
            # with an event time older than files already processed.
            cut = rng.randrange(0, len(history))
            initial += history[:cut]
            late += history[cut:]
        else:
            initial += history
    # A copy of an already-processed event under another key: must not become a second row.
    copies = [
        EventFile(f"{prefix}replayed/{f.key.removeprefix(prefix)}", f.body)
        for f in _files(initial[:3], prefix)
    ]
    bad = invalid_files(prefix)
    return VisitCorpus(
        initial=_files(initial, prefix) + bad[:4],
        late=_files(late, prefix) + copies + bad[4:],
        invalid_keys=[f.key for f in bad],
    )


def synthetic_files(count: int, *, start: int = 0, prefix: str = "logs/") -> list[EventFile]:
    """`count` distinct valid event files, fast to build (benchmark scale)."""
    base = datetime(2024, 1, 1, tzinfo=UTC)
    files = []
    for index in range(start, start + count):
        center = CENTERS[index % len(CENTERS)]
        at = base + timedelta(seconds=index * 37)
        event = _event(
            center,
            f"B{index % 999_999:06d}",
            (base - timedelta(days=index % 90)).date(),
            f"{index % 3 + 1:02d}",
            ("submit", "pass-qc", "not-pass-qc")[index % 3],
            at,
            complete=index % 2 == 0,
        )
        files.append(EventFile(event_key(event, prefix), json.dumps(event).encode()))
    return files


def land_files(client: Any, bucket: str, files: list[EventFile], *, workers: int = 16) -> int:
    """Upload event files in parallel; returns how many were written."""

    def put(item: EventFile) -> None:
        client.put_object(
            Bucket=bucket, Key=item.key, Body=item.body, ContentType="application/json"
        )

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(put, files))
    return len(files)
