"""What every asset group shares in its Dagster wiring: the retry policy and UI metadata."""

import os
from collections.abc import Mapping

import pandas as pd
from dagster import Backoff, Jitter, MetadataValue, RetryPolicy

RETRY_DELAY_ENV = "ONS_RETRY_DELAY_SECONDS"
DEFAULT_RETRY_DELAY_SECONDS = 30.0


def aws_retry_policy(environ: Mapping[str, str] = os.environ) -> RetryPolicy:
    """Three retries, exponential with jitter, first after `ONS_RETRY_DELAY_SECONDS` (30 s).

    Tests set the delay to 0 so a step failing over and over fails the test at once.

    Raises:
        ValueError: the variable is set but not a number of seconds >= 0.
    """
    text = environ.get(RETRY_DELAY_ENV, "").strip()
    try:
        delay = float(text) if text else DEFAULT_RETRY_DELAY_SECONDS
    except ValueError:
        delay = -1.0
    if not delay >= 0:  # also refuses NaN
        raise ValueError(f"{RETRY_DELAY_ENV} must be a number of seconds >= 0, not {text!r}")
    return RetryPolicy(
        max_retries=3, delay=delay, backoff=Backoff.EXPONENTIAL, jitter=Jitter.PLUS_MINUS
    )


# Transient AWS or InfluxDB trouble (throttling, a blip in S3, a store restarting) is retried
# minutes apart, as the seeds ask; jitter keeps parallel retries from arriving in step.
# Errors that cannot heal (a missing input, bad config) raise Failure(allow_retries=False).
AWS_RETRY_POLICY = aws_retry_policy()


def markdown_table(frame: pd.DataFrame, limit: int = 10) -> MetadataValue:
    """A markdown table of at most `limit` rows for the UI (no tabulate dependency)."""
    head = frame.head(limit).astype(str)
    cells = [list(map(str, head.columns)), ["---"] * len(head.columns), *head.to_numpy().tolist()]
    return MetadataValue.md(
        "\n".join("| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in cells)
    )
