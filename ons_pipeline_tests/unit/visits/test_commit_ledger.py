"""The ledger a run commits: what it read is recorded, and only a listing forgets keys."""

from __future__ import annotations

import pytest

from ons_pipeline.visits.checkpoint import ParsedFile, Rejection
from ons_pipeline.visits.notifications import Notifications
from ons_pipeline.visits.storage import Discovery, updated_ledger

LEDGER = {"logs/a": ("e1", "valid"), "logs/b": ("e2", "valid"), "logs/gone": ("e3", "valid")}
PARSED = [
    ParsedFile("logs/b", "e2-new", {"ptid": "P1"}, None),
    ParsedFile("logs/c", "e4", None, Rejection("logs/c", "e4", "malformed JSON")),
]


def discovery(candidates: dict[str, str], *, announced: bool) -> Discovery:
    pending = {key: etag for key, etag in candidates.items() if key != "logs/a"}
    notes = Notifications(candidates, ["receipt"], 0) if announced else None
    return Discovery(candidates, pending, 0.0, notes)


@pytest.mark.parametrize("announced", [False, True])
def test_files_read_are_recorded_with_their_etag_and_status(announced: bool) -> None:
    candidates = {"logs/a": "e1", "logs/b": "e2-new", "logs/c": "e4"}
    ledger = updated_ledger(LEDGER, discovery(candidates, announced=announced), PARSED)
    assert ledger["logs/a"] == ("e1", "valid")
    assert ledger["logs/b"] == ("e2-new", "valid")  # a corrected re-upload replaces the entry
    assert ledger["logs/c"] == ("e4", "rejected")  # rejected files are recorded, not re-read
    # A listing shows what exists, so a deleted key leaves the ledger; a notification names
    # only new objects, so the rest of the ledger stays.
    assert ("logs/gone" in ledger) is announced


def test_a_file_that_vanished_before_its_read_is_not_recorded() -> None:
    candidates = {"logs/a": "e1", "logs/b": "e2-new", "logs/c": "e4", "logs/d": "e5"}
    ledger = updated_ledger(LEDGER, discovery(candidates, announced=False), PARSED)
    assert "logs/d" not in ledger  # listed, deleted before the GET: listed again if it returns
