"""Client-side rate limits and retries: the pacing every vendor call goes through.

Limits are token buckets (pyrate-limiter) kept in a SQLite file in the state
directory, keyed by the provider's credential, so that two aliases with the same
key, concurrent prewarm processes on the machine and successive runs (for
per-day budgets) all share one budget. Retries use stamina: exponential backoff
with jitter, honouring the vendor's Retry-After.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from prewarm_cli.errors import QuotaExhausted, RetryableError
from prewarm_cli.plugin import Limits

T = TypeVar("T")

_DAY_MS = 86_400_000
# Tokens are taken before a request leaves, but vendors count arrivals: a request delayed
# on its way (a new connection, a slow thread) lands later than its token says. Windows
# are kept this much longer than the vendor's so that delay never makes two windows one.
WINDOW_MARGIN_MS = 50


@dataclass(frozen=True)
class RetryPolicy:
    """Bounds on retrying one request."""

    attempts: int = 5
    timeout: float = 120.0  # seconds, backoff included
    wait_initial: float = 0.5
    wait_max: float = 30.0


def _retry_hook(exc: Exception) -> bool | float:
    if isinstance(exc, RetryableError):
        return exc.retry_after if exc.retry_after is not None else True
    return False


def call_with_retries(
    policy: RetryPolicy, fn: Callable[[], T], before_attempt: Callable[[], None] | None = None
) -> T:
    """Runs ``fn`` and retries it while it raises RetryableError, within the policy's bounds."""
    import stamina

    for attempt in stamina.retry_context(
        on=_retry_hook,
        attempts=max(1, policy.attempts),
        timeout=policy.timeout,
        wait_initial=policy.wait_initial,
        wait_max=policy.wait_max,
        wait_jitter=policy.wait_initial,
    ):
        with attempt:
            if before_attempt is not None:
                before_attempt()
            return fn()
    raise AssertionError("unreachable: stamina re-raises the last error")  # pragma: no cover


class Pacer:
    """Waits before each request so that a provider's limits are never exceeded."""

    def __init__(self, limits: Limits, key: str, store: Path | None) -> None:
        self.limits = limits
        self._lock = threading.Lock()
        self._requests = _limiter(store, f"req_{key}", limits.requests_per_second, 1000)
        self._urls = _limiter(store, f"url_{key}", limits.urls_per_second, 1000)
        self._daily = _limiter(store, f"day_{key}", limits.requests_per_day, _DAY_MS)

    def acquire(self, urls: int = 0) -> None:
        """Blocks until one request carrying ``urls`` URLs may be sent."""
        if self._daily is not None and not self._take_daily():
            raise QuotaExhausted(
                f"the daily budget of {self.limits.requests_per_day} requests is used up",
                hint="resume later with `prewarm submit --resume JOB`",
            )
        with self._lock:  # one waiter at a time keeps requests in order and fair
            if self._requests is not None:
                self._requests.try_acquire("req", 1, blocking=True)
            if self._urls is not None and urls:
                cap = max(1, int(self.limits.urls_per_second or urls))
                remaining = urls
                while remaining > 0:  # a batch larger than one second's worth waits in slices
                    step = min(remaining, cap)
                    self._urls.try_acquire("url", step, blocking=True)
                    remaining -= step

    def _take_daily(self) -> bool:
        # A short blocking wait rather than blocking=False: pyrate-limiter passes False as
        # the file lock's timeout in non-blocking mode. An exhausted budget answers False
        # once the wait is over; only lock contention raises TimeoutError.
        for _ in range(3):
            try:
                return bool(self._daily.try_acquire("day", 1, blocking=True, timeout=0.5))
            except TimeoutError:
                continue
        return False

    def close(self) -> None:
        for limiter in (self._requests, self._urls, self._daily):
            if limiter is not None:
                limiter.close()


def _limiter(store: Path | None, table: str, per_interval: float | None, interval: int) -> Any:
    if not per_interval:
        return None
    from pyrate_limiter import Limiter, Rate, SQLiteBucket

    margin = WINDOW_MARGIN_MS if interval < _DAY_MS else 0
    if per_interval >= 1:
        rate = Rate(int(per_interval), interval + margin)
    else:  # e.g. 0.5 requests/s = 1 request per 2 s
        rate = Rate(1, int(interval / per_interval) + margin)
    if store is None:
        return Limiter([rate], buffer_ms=5)
    bucket = SQLiteBucket.init_from_file(
        [rate], table=table, db_path=str(store), create_new_table=True, use_file_lock=True
    )
    return Limiter(bucket, buffer_ms=5)
