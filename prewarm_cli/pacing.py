"""Client-side rate limits and retries: the pacing every vendor call goes through.

Limits are token buckets (pyrate-limiter) kept in a SQLite file in the state
directory, keyed by the provider's credential, so that two aliases with the same
key and concurrent prewarm processes on the machine share one budget. Per-day
budgets are counted in a table of their own across runs. Retries back off
exponentially with jitter and honour the vendor's Retry-After.

Every wait here watches a stop event, so that Ctrl-C ends it within a fraction of
a second, whichever thread is waiting.
"""

from __future__ import annotations

import random
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from prewarm_cli.errors import PrewarmError, QuotaExhausted, RateLimited, RetryableError
from prewarm_cli.plugin import Limits

T = TypeVar("T")

_DAY_SECONDS = 86_400.0
# Tokens are taken before a request leaves, but vendors count arrivals: a request delayed
# on its way (a new connection, a busy thread) lands later than its token says. Windows
# are kept this much longer than the vendor's so that the delay never makes two windows one.
WINDOW_MARGIN_MS = 20
_POLL_SECONDS = 0.2  # how often a wait looks at the stop event


class Interrupted(Exception):
    """A wait was cut short because the run is stopping (Ctrl-C)."""


class PacingError(PrewarmError):
    """The rate-limit store in the state directory failed: nothing was sent."""

    code = "pacing"


def sleep(seconds: float, stop: threading.Event | None) -> None:
    """Waits ``seconds``, or raises Interrupted as soon as ``stop`` is set."""
    if stop is None:
        time.sleep(max(0.0, seconds))
    elif stop.wait(max(0.0, seconds)):
        raise Interrupted


@dataclass(frozen=True)
class RetryPolicy:
    """Bounds on retrying one request."""

    attempts: int = 5
    timeout: float = 120.0  # seconds, backoff included
    wait_initial: float = 0.5
    wait_max: float = 30.0

    def backoff(self, retry: int) -> float:
        """Exponential backoff with jitter before retry number ``retry`` (1-based)."""
        exponential: float = self.wait_initial * 2.0 ** (retry - 1)
        return min(self.wait_max, exponential) + random.uniform(0, self.wait_initial)


def call_with_retries(
    policy: RetryPolicy,
    fn: Callable[[], T],
    before_attempt: Callable[[], None] | None = None,
    *,
    stop: threading.Event | None = None,
    on_retry: Callable[[Exception, float], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """Runs ``fn`` and retries it while it raises RetryableError, within the policy's bounds.

    A Retry-After longer than the time left ends the retries at once with RateLimited:
    what was not sent is deferred, to be resumed once the vendor is ready.
    """
    deadline = clock() + policy.timeout
    attempts = max(1, policy.attempts)
    retry = 0
    while True:
        if stop is not None and stop.is_set():
            raise Interrupted
        if before_attempt is not None:
            before_attempt()
        try:
            return fn()
        except RetryableError as exc:
            retry += 1
            left = deadline - clock()
            wait = exc.retry_after if exc.retry_after is not None else policy.backoff(retry)
            if exc.retry_after is not None and exc.retry_after > left:
                raise _retry_later(exc) from exc
            if retry >= attempts or wait > left:
                raise
            if on_retry is not None:
                on_retry(exc, wait)
            sleep(wait, stop)


def _retry_later(exc: RetryableError) -> RateLimited:
    after = exc.retry_after or 0.0
    when = f"{after / 60:.0f} min" if after >= 120 else f"{after:.0f} s"
    return RateLimited(
        f"{exc.message} (the vendor asks to wait {when}, longer than the retry time left)",
        retry_after=after,
        provider=exc.provider,
        request_id=exc.request_id,
        hint=f"resume in {when} or later with `prewarm submit --resume JOB`",
    )


class Pacer:
    """Waits before each request so that a provider's limits are never exceeded."""

    def __init__(
        self,
        limits: Limits,
        key: str,
        store: Path | None,
        *,
        stop: threading.Event | None = None,
    ) -> None:
        self.limits = limits
        self.stop = stop
        self._lock = threading.Lock()
        try:
            self._requests = _limiter(store, f"req_{key}", limits.requests_per_second)
            self._urls = _limiter(store, f"url_{key}", limits.urls_per_second)
            self._daily = (
                DailyBudget(store.with_name("budgets.sqlite3") if store else None, key)
                if limits.requests_per_day
                else None
            )
        except (sqlite3.Error, OSError) as exc:
            raise _store_error(store, exc) from exc

    def acquire(self, urls: int = 0) -> None:
        """Blocks until one request carrying ``urls`` URLs may be sent."""
        try:
            if self._daily is not None and not self._daily.take(self.limits.requests_per_day):
                raise QuotaExhausted(
                    f"the daily budget of {self.limits.requests_per_day} requests is used up",
                    hint="resume later with `prewarm submit --resume JOB`",
                )
            with self._lock:  # one waiter at a time keeps requests in order and fair
                if self._requests is not None:
                    self._wait_for(self._requests, "req", 1)
                if self._urls is not None and urls:
                    cap = max(1, int(self.limits.urls_per_second or urls))
                    remaining = urls
                    while remaining > 0:  # a batch larger than one second's worth waits in slices
                        step = min(remaining, cap)
                        self._wait_for(self._urls, "url", step)
                        remaining -= step
        except (sqlite3.Error, OSError) as exc:
            raise _store_error(None, exc) from exc

    def _wait_for(self, limiter: Any, name: str, weight: int) -> None:
        # Short bounded waits, so that a stop request is seen within _POLL_SECONDS.
        while not limiter.try_acquire(name, weight, blocking=True, timeout=_POLL_SECONDS):
            if self.stop is not None and self.stop.is_set():
                raise Interrupted

    def close(self) -> None:
        for limiter in (self._requests, self._urls):
            if limiter is not None:
                limiter.close()
        if self._daily is not None:
            self._daily.close()


class DailyBudget:
    """Requests per rolling 24 hours, counted in SQLite so that runs and processes share it.

    A transaction counts and takes a slot at once; another process holding the file
    only makes this one wait, never reads as "budget used up".
    """

    def __init__(self, path: Path | None, key: str) -> None:
        self.key = key
        self._db = sqlite3.connect(
            str(path) if path else ":memory:",
            timeout=60.0,
            isolation_level=None,
            check_same_thread=False,
        )
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS requests (key TEXT NOT NULL, t REAL NOT NULL)"
            )
            self._db.execute("CREATE INDEX IF NOT EXISTS requests_by_key ON requests (key, t)")

    def take(self, per_day: int | None, now: float | None = None) -> bool:
        """Takes one request from the budget; False when ``per_day`` are already used."""
        if not per_day:
            return True
        now = time.time() if now is None else now
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute(
                    "DELETE FROM requests WHERE key = ? AND t <= ?", (self.key, now - _DAY_SECONDS)
                )
                used: int
                (used,) = self._db.execute(
                    "SELECT COUNT(*) FROM requests WHERE key = ?", (self.key,)
                ).fetchone()
                taken = used < per_day
                if taken:
                    self._db.execute("INSERT INTO requests (key, t) VALUES (?, ?)", (self.key, now))
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            return taken

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _store_error(store: Path | None, exc: BaseException) -> PacingError:
    where = f" ({store})" if store else ""
    return PacingError(
        f"the rate-limit store in the state directory{where} failed: {exc}",
        hint="check that the state directory (PREWARM_STATE_DIR) is writable; nothing was sent",
    )


def _limiter(store: Path | None, table: str, per_second: float | None) -> Any:
    if not per_second:
        return None
    from pyrate_limiter import Limiter, Rate, SQLiteBucket

    if per_second >= 1:
        rate = Rate(int(per_second), 1000 + WINDOW_MARGIN_MS)
    else:  # e.g. 0.5 requests/s = 1 request per 2 s
        rate = Rate(1, int(1000 / per_second) + WINDOW_MARGIN_MS)
    if store is None:
        return Limiter([rate], buffer_ms=5)
    bucket = SQLiteBucket.init_from_file(
        [rate], table=table, db_path=str(store), create_new_table=True, use_file_lock=True
    )
    return Limiter(bucket, buffer_ms=5)
