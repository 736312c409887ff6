"""A circuit breaker for InfluxDB: fail fast while it is down, probe once after a cool-down.

closed -> open after `failure_threshold` consecutive failures, or when at least
`rate_min_calls` of the last `rate_window` calls were made and the failure rate is at least
`failure_rate`; open -> half-open once `cooldown_seconds` have passed, when exactly one
caller is let through as the probe; half-open -> closed when the probe succeeds, back to open
when it fails. Every transition is logged and handed to the listeners (the resources publish
it as a CloudWatch metric). One breaker per InfluxDB URL per process (`shared_breaker`), so
the API, the loads and the checks of one process see the same state.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Final, TypeVar

if TYPE_CHECKING:
    from collections.abc import Callable

logger = logging.getLogger(__name__)

CLOSED: Final = "closed"
OPEN: Final = "open"
HALF_OPEN: Final = "half_open"
STATE_VALUES: Final = {CLOSED: 0, HALF_OPEN: 1, OPEN: 2}
T = TypeVar("T")


class CircuitOpenError(RuntimeError):
    """The breaker is open (or a probe is in flight): the call was not attempted."""

    def __init__(self, name: str, retry_after: float) -> None:
        super().__init__(f"circuit {name} is open; retry after {retry_after:.0f}s")
        self.retry_after = retry_after


class CircuitBreaker:
    def __init__(
        self,
        name: str,
        *,
        failure_threshold: int = 3,
        failure_rate: float = 0.5,
        rate_window: int = 20,
        rate_min_calls: int = 10,
        cooldown_seconds: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.failure_threshold = failure_threshold
        self.failure_rate = failure_rate
        self.rate_min_calls = rate_min_calls
        self.cooldown_seconds = cooldown_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._state = CLOSED
        self._consecutive = 0
        self._recent: deque[bool] = deque(maxlen=rate_window)  # True = failure
        self._opened_at = 0.0
        self._probing = False
        self._listeners: list[Callable[[str, str, str, str], None]] = []
        self.transitions: list[tuple[str, str, str]] = []  # (old, new, reason), for reports

    @property
    def state(self) -> str:
        with self._lock:
            return self._state

    def add_listener(self, listener: Callable[[str, str, str, str], None]) -> None:
        """`listener(name, old, new, reason)` after each transition (errors are logged)."""
        with self._lock:
            if listener not in self._listeners:
                self._listeners.append(listener)

    def retry_after(self) -> float:
        """Seconds until the next probe is allowed (0 when closed)."""
        with self._lock:
            if self._state == CLOSED:
                return 0.0
            return max(self.cooldown_seconds - (self._clock() - self._opened_at), 1.0)

    def before_call(self) -> None:
        """Admit a call or fail fast.

        Raises:
            CircuitOpenError: open and cooling down, or half-open with the probe in flight.
        """
        pending: list[tuple[str, str, str]] = []
        try:
            with self._lock:
                if self._state == CLOSED:
                    return
                waited = self._clock() - self._opened_at
                if self._state == OPEN and waited >= self.cooldown_seconds:
                    pending.append(self._move(HALF_OPEN, f"cool-down of {waited:.1f}s over"))
                if self._state == HALF_OPEN and not self._probing:
                    self._probing = True
                    return
                raise CircuitOpenError(self.name, max(self.cooldown_seconds - waited, 1.0))
        finally:
            self._notify(pending)

    def record_success(self) -> None:
        pending: list[tuple[str, str, str]] = []
        with self._lock:
            self._consecutive = 0
            self._recent.append(False)
            if self._state == HALF_OPEN:
                self._probing = False
                self._recent.clear()
                pending.append(self._move(CLOSED, "probe succeeded"))
        self._notify(pending)

    def record_failure(self, error: BaseException | str) -> None:
        pending: list[tuple[str, str, str]] = []
        with self._lock:
            self._consecutive += 1
            self._recent.append(True)
            if self._state == HALF_OPEN:
                self._probing = False
                self._opened_at = self._clock()
                pending.append(self._move(OPEN, f"probe failed: {error}"))
            elif self._state == CLOSED:
                failures = sum(self._recent)
                rate = failures / len(self._recent)
                if self._consecutive >= self.failure_threshold:
                    reason = f"{self._consecutive} consecutive failures, last: {error}"
                elif len(self._recent) >= self.rate_min_calls and rate >= self.failure_rate:
                    reason = f"failure rate {rate:.0%} over {len(self._recent)} calls: {error}"
                else:
                    reason = ""
                if reason:
                    self._opened_at = self._clock()
                    pending.append(self._move(OPEN, reason))
        self._notify(pending)

    def call(self, fn: Callable[[], T], is_failure: Callable[[BaseException], bool]) -> T:
        """Run `fn` through the breaker; errors for which `is_failure` is true count."""
        self.before_call()
        try:
            result = fn()
        except BaseException as error:
            if is_failure(error):
                self.record_failure(error)
            else:
                self.record_success()  # the server answered; the request was at fault
            raise
        self.record_success()
        return result

    def _move(self, new: str, reason: str) -> tuple[str, str, str]:
        old, self._state = self._state, new
        self.transitions.append((old, new, reason))
        return old, new, reason

    def _notify(self, pending: list[tuple[str, str, str]]) -> None:
        for old, new, reason in pending:
            level = logging.WARNING if new != CLOSED else logging.INFO
            logger.log(level, "circuit %s: %s -> %s (%s)", self.name, old, new, reason)
            for listener in list(self._listeners):
                try:
                    listener(self.name, old, new, reason)
                except Exception:
                    logger.exception("circuit %s: transition listener failed", self.name)


_BREAKERS: dict[str, CircuitBreaker] = {}
_REGISTRY_LOCK = threading.Lock()


def shared_breaker(name: str, **settings: float) -> CircuitBreaker:
    """The process-wide breaker for `name` (created with `settings` on first use)."""
    with _REGISTRY_LOCK:
        if name not in _BREAKERS:
            _BREAKERS[name] = CircuitBreaker(name, **settings)  # type: ignore[arg-type]
        return _BREAKERS[name]


def reset_breakers() -> None:
    """Forget every breaker (tests that need a fresh one for a URL)."""
    with _REGISTRY_LOCK:
        _BREAKERS.clear()
