"""A message is counted as older than a cut-off only when SQS's timestamp shows it."""

from __future__ import annotations

from ons_pipeline.visits.notifications import Notifications


def test_messages_split_at_the_cut_off_and_untimed_ones_are_kept() -> None:
    received = Notifications(
        objects={},
        receipts=["old", "at-cut", "new", "untimed"],
        ignored=0,
        sent_at_ms=[999, 1000, 1001, None],
    )
    assert received.sent_before(1000) == (["old"], ["at-cut", "new", "untimed"])
