"""The quickstart's visits part: two checkpoint runs on the demo corpus, stats and analytics."""

from __future__ import annotations

import re

import boto3
import pytest
from dagster import DagsterInstance

from ons_pipeline.local.demo.driver import run_visits_demo, stack_definitions
from ons_pipeline.resources import defaults

pytestmark = pytest.mark.integration


def test_demo_runs_twice_and_prints_stats_checks_and_the_three_analytics(
    stack_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_visits_demo(stack_definitions(stack_env), DagsterInstance.ephemeral()) == 0

    out = capsys.readouterr().out
    totals = [int(n) for n in re.findall(r"^  total_events: (\d+)$", out, re.M)]
    new = [int(n) for n in re.findall(r"^  new_events_processed: (\d+)$", out, re.M)]
    assert len(totals) == 2 and new[0] == totals[0] and totals[1] == totals[0] + new[1] > totals[0]
    assert re.findall(r"^  check \w+: (\w+)$", out, re.M) == ["passed"] * 6
    assert "rejected logs/broken/" in out  # the corpus's invalid files are named with reasons
    for title in (
        "Latest event per (ptid, visit_date, visit_number)",
        "Not-pass-QC events per center and visit month",
        "Average days from visit date to QC event, per center",
    ):
        assert re.search(rf"^{re.escape(title)} \([1-9]\d* rows, s3://", out, re.M), title
    # The second run took the late files from the queue and deleted every notification.
    sqs = boto3.client("sqs")
    queue = sqs.get_queue_url(QueueName=defaults.EVENTS_QUEUE_NAME)["QueueUrl"]
    counts = sqs.get_queue_attributes(
        QueueUrl=queue,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    assert counts == {
        "ApproximateNumberOfMessages": "0",
        "ApproximateNumberOfMessagesNotVisible": "0",
    }
