"""What every asset group shares in its Dagster wiring: the retry policy and UI metadata."""

import pandas as pd
from dagster import Backoff, Jitter, MetadataValue, RetryPolicy

# Transient AWS or InfluxDB trouble (throttling, a blip in S3, a store restarting) is retried
# minutes apart, as the seeds ask; jitter keeps parallel retries from arriving in step.
# Errors that cannot heal (a missing input, bad config) raise Failure(allow_retries=False).
AWS_RETRY_POLICY = RetryPolicy(
    max_retries=3, delay=30, backoff=Backoff.EXPONENTIAL, jitter=Jitter.PLUS_MINUS
)


def markdown_table(frame: pd.DataFrame, limit: int = 10) -> MetadataValue:
    """A markdown table of at most `limit` rows for the UI (no tabulate dependency)."""
    head = frame.head(limit).astype(str)
    cells = [list(map(str, head.columns)), ["---"] * len(head.columns), *head.to_numpy().tolist()]
    return MetadataValue.md(
        "\n".join("| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in cells)
    )
