"""The resources' one retry loop: exponential backoff with jitter, transient faults only.

Callers decide what is transient: an attempt raises `RetryableFault` (or an exception in
`retry_on`) for throttling, 5xx and dropped connections, and anything else escapes at once.
"""

from __future__ import annotations

import random
import time
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from collections.abc import Callable

T = TypeVar("T")


class RetryableFault(Exception):
    """An attempt met a transient fault; the message says which (for the final error)."""


def call_with_retries(
    attempt: Callable[[], T],
    *,
    max_retries: int,
    backoff_seconds: float,
    jitter: float = 1.0,
    retry_on: tuple[type[BaseException], ...] = (RetryableFault,),
    on_retry: Callable[[], None] | None = None,
    exhausted: Callable[[int, BaseException], BaseException] | None = None,
) -> T:
    """`attempt()`, retried up to `max_retries` times while it raises one of `retry_on`.

    The n-th retry waits `backoff_seconds * 2**n` plus up to `jitter` times that again.
    Once retries run out, `exhausted(attempts, fault)` is raised (from the fault), or the
    fault itself when `exhausted` is None.
    """
    retries = 0
    while True:
        try:
            return attempt()
        except retry_on as fault:
            if retries >= max_retries:
                if exhausted is None:
                    raise
                raise exhausted(retries + 1, fault) from fault
        delay = backoff_seconds * (2**retries)
        time.sleep(delay + random.uniform(0, delay * jitter))  # nosec B311  # backoff jitter, not a secret
        retries += 1
        if on_retry is not None:
            on_retry()
