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

import math
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from prewarm_cli.errors import (
    QuotaExhausted,
    RateLimited,
    RateStoreError,
    RetryableError,
)
from prewarm_cli.paths import create_private
from prewarm_cli.plugin import Limits

T = TypeVar("T")

_DAY_SECONDS = 86_400.0
_POLL_SECONDS = 0.2  # how often a wait looks at the stop event


class Interrupted(Exception):
    """A wait was cut short because the run is stopping (Ctrl-C)."""


class PacingError(RateStoreError):
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
        import random  # only once a request is retried

        exponential: float = self.wait_initial * 2.0 ** (retry - 1)
        return min(self.wait_max, exponential) + random.uniform(0, self.wait_initial)


class RetryBudget:
    """What is left of a retry policy: tries and time, counted from its creation."""

    def __init__(self, policy: RetryPolicy, clock: Callable[[], float] = time.monotonic) -> None:
        self.policy = policy
        self.clock = clock
        self.deadline = clock() + policy.timeout
        self.n_retries = 0
        self._tried_from: float | None = None  # when the last wait ended: a try began
        self._last_try = 0.0  # seconds the last try took: a stalled edge takes its timeout

    def left(self) -> float:
        return self.deadline - self.clock()

    def started_late(self, seconds: float) -> None:
        """The next try begins ``seconds`` after its wait ended (it waited for a worker
        busy with other batches): that time is not the vendor's, so the deadline moves by it,
        and the try is timed from now."""
        if seconds > 0:
            self.deadline += seconds
            self._tried_from = self.clock()

    def next_wait(self, retry_after: float | None, *, at_least: bool = False) -> float | None:
        """Seconds to wait before the next try (the vendor's Retry-After, else the backoff);
        None when no try is left, or no time for that wait. A backoff must leave time for a
        try as long as the last one too (a request that stalls to its timeout must not run
        the retries past the limit); a Retry-After that does not fit is the caller's to defer.
        ``at_least``: the Retry-After is a floor under the backoff, not in its place (the
        URLs of a batch sent again together, only some of whose answers said how long).
        """
        now = self.clock()
        if self._tried_from is not None:
            self._last_try = now - self._tried_from
        retry = self.n_retries + 1
        if retry_after is not None and not at_least:
            wait = needs = retry_after
        else:
            wait = self.policy.backoff(retry)
            needs = wait + self._last_try
            if retry_after is not None:
                wait, needs = max(wait, retry_after), max(needs, retry_after)
        if retry >= max(1, self.policy.attempts) or needs > self.left():
            return None
        self.n_retries = retry
        self._tried_from = now + wait
        return wait


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
    retries = RetryBudget(policy, clock)
    while True:
        if stop is not None and stop.is_set():
            raise Interrupted
        if before_attempt is not None:
            before_attempt()
        try:
            return fn()
        except RetryableError as exc:
            if exc.retry_after is not None and exc.retry_after > retries.left():
                raise _retry_later(exc) from exc
            wait = retries.next_wait(exc.retry_after)
            if wait is None:
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
    """Waits before each request so that a provider's limits are never exceeded.

    Each request books a slot in the shared log, then sleeps until it. Windows are kept
    longer than the vendor's by the jitter measured on the way (JitterMargin), not by a
    fixed margin. Booking and sleeping are separate, so workers wait side by side, in
    order, and a stop event ends any wait within _POLL_SECONDS.
    """

    def __init__(
        self,
        limits: Limits,
        key: str | Callable[[], str],
        store: Path | None,
        *,
        stop: threading.Event | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self.limits = limits
        self._stop = stop
        self._clock = clock
        self._sleep = sleep
        self._jitter = JitterMargin()
        # Everything is created here, once, before any worker thread can ask: never lazily.
        # The rate store only where a rate is kept (a provider without `rate` needs none).
        rps, ups = limits.requests_per_second, limits.urls_per_second
        self._store: _Store | None = None
        self._schedules: list[_Schedule] = []
        self._urls: _Schedule | None = None
        # The credential's hash (``key`` may make it) names the limits kept: only if any is.
        keeps = bool(rps or ups or limits.requests_per_day)
        name = (key() if callable(key) else key) if keeps else ""
        try:
            if rps or ups:
                self._store = rate_store = _Store(store, stop)
                if rps:
                    self._schedules.append(_Schedule(rate_store, f"req_us_{name}", rps))
                if ups:
                    self._urls = _Schedule(rate_store, f"url_us_{name}", ups)
            self._daily = (
                DailyBudget(store.with_name("budgets.sqlite3") if store else None, name)
                if limits.requests_per_day
                else None
            )
        except (sqlite3.Error, OSError) as exc:
            raise _store_error(store, exc) from exc
        # No limit to keep: each request only checks the stop.
        self._unlimited = self._store is None and self._daily is None

    @property
    def waits(self) -> bool:
        """Whether acquire() may wait: a rate or a daily budget is kept."""
        return not self._unlimited

    def acquire(self, n_urls: int = 0, meanwhile: Callable[[float], None] | None = None) -> None:
        """Blocks until one request carrying ``n_urls`` URLs may be sent; raises Interrupted
        once the run is stopping, also when no limit would make it wait. ``meanwhile`` is
        called instead of sleeping, with the seconds it may take at most (requests already
        sent are kept going while the next waits)."""
        if self._stop is not None and self._stop.is_set():
            raise Interrupted("stopped")
        if self._unlimited:
            return
        try:
            self._acquire(n_urls, meanwhile)
        except (sqlite3.Error, OSError) as exc:
            raise _store_error(None, exc) from exc

    def _acquire(self, n_urls: int, meanwhile: Callable[[float], None] | None) -> None:
        per_day = self.limits.requests_per_day
        now = self._clock()
        if self._daily is not None and not self._daily.take(per_day, now):
            resets = datetime.fromtimestamp(day_start(now) + _DAY_SECONDS, UTC)
            at = resets.strftime("%Y-%m-%dT%H:%M:%SZ")
            raise QuotaExhausted(
                f"the daily budget of {per_day} requests is used up (it resets {at})",
                hint=f"nothing sent is lost; ask again after {at}",
                resets_at=at,
            )
        # A batch larger than a window's worth of URLs takes several windows and leaves
        # with the last part (for a vendor whose batch is larger than its per-second rate).
        slices = self._urls.slices(n_urls) if self._urls is not None and n_urls else [0]
        for i, n_units in enumerate(slices):
            # The request counts once against the request rate, when it leaves (with the
            # last slice); each slice counts against URLs.
            wanted = [(s, 1) for s in self._schedules] if i == len(slices) - 1 else []
            if n_units:
                assert self._urls is not None
                wanted.append((self._urls, n_units))
            if not wanted:
                continue
            assert self._store is not None  # a schedule is wanted: a rate is kept
            with self._store.locked():
                now = int(self._clock() * _US)
                margin = self._jitter.margin()
                # One slot for every limit the request counts against: it leaves once.
                slot = now
                for schedule, weight in wanted:
                    slot = max(slot, schedule.earliest(slot, weight, margin))
                booked = [
                    (schedule, schedule.book(slot, weight, now)) for schedule, weight in wanted
                ]
            left_at = int(self._wait_until(slot / _US, meanwhile) * _US)
            if left_at - slot > _RESTAMP_US:
                with self._store.locked():
                    for schedule, rows in booked:
                        schedule.restamp(rows, left_at)

    def _wait_until(self, slot: float, meanwhile: Callable[[float], None] | None = None) -> float:
        """Sleeps until ``slot`` (or calls ``meanwhile``, a little at a time); returns when
        the wait really ended."""
        while True:
            if self._stop is not None and self._stop.is_set():
                raise Interrupted("stopped while pacing")
            left = slot - self._clock()
            if left <= 0:
                break
            if meanwhile is not None:
                meanwhile(min(left, _POLL_SECONDS))
            elif self._sleep is not None:
                self._sleep(left)
            else:
                sleep(left, self._stop)
        left_at = self._clock()
        self._jitter.observe(left_at - slot)
        return left_at

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
        if self._daily is not None:
            self._daily.close()


class JitterMargin:
    """How much later than their slot our requests leave, learned from the last waits.

    Vendors count arrivals, and a request that leaves late (a loaded machine, a busy GIL)
    lands closer to the one a window later than their slots say. Rather than one fixed
    margin, windows are stretched by twice the worst lateness seen lately (the send path
    after the wait is as jittery as the wait, and is not seen here): 1 % on a quiet machine,
    at most 3 % on a loaded one, so that pacing stays at 97 % of the vendor's rate or more.
    The fakes, like vendors, allow arrivals 50 ms of jitter on top.
    """

    MIN_MARGIN = 0.01  # a fraction of every interval: 10 ms per second of vendor window
    MAX_MARGIN = 0.03
    WINDOW = 100  # lateness samples kept: 10 s at 10 requests/s

    def __init__(self) -> None:
        self._late: list[float] = []
        self._lock = threading.Lock()

    def observe(self, lateness: float) -> None:
        with self._lock:
            self._late.append(max(0.0, lateness))
            del self._late[: -self.WINDOW]

    def margin(self) -> float:
        with self._lock:
            worst = max(self._late, default=0.0)
        return min(self.MAX_MARGIN, max(self.MIN_MARGIN, 2 * worst))


class _Store:
    """The SQLite file the buckets live in, with the file lock every process takes around it."""

    def __init__(self, path: Path | None, stop: threading.Event | None) -> None:
        self._stop = stop
        self._thread_lock = threading.Lock()
        self._file_lock: Any = None
        if path is None:
            self.conn = sqlite3.connect(":memory:", check_same_thread=False)
            return
        from filelock import FileLock

        path.parent.mkdir(parents=True, exist_ok=True)
        self._file_lock = FileLock(str(path) + ".lock", mode=0o600)
        with self.locked():
            create_private(path)
            self.conn = sqlite3.connect(
                str(path), isolation_level="DEFERRED", check_same_thread=False
            )
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=NORMAL")

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Holds this process's and every other process's lock; waits are interruptible.

        Contention only ever delays: it never reads as a limit reached.
        """
        while not self._thread_lock.acquire(timeout=_POLL_SECONDS):
            self._check_stop()
        try:
            if self._file_lock is not None:
                from filelock import Timeout

                while True:
                    try:
                        self._file_lock.acquire(timeout=_POLL_SECONDS)
                        break
                    except Timeout:
                        self._check_stop()
            try:
                yield
            finally:
                if self._file_lock is not None:
                    self._file_lock.release()
        finally:
            self._thread_lock.release()

    def _check_stop(self) -> None:
        if self._stop is not None and self._stop.is_set():
            raise Interrupted("stopped while waiting for the rate-limit store")

    def bucket(self, table: str, rates: list[Any]) -> Any:
        from pyrate_limiter import SQLiteBucket
        from pyrate_limiter.buckets.sqlite_bucket import Queries

        with self.locked():
            self.conn.execute(Queries.CREATE_BUCKET_TABLE.format(table=table))
            self.conn.execute(
                Queries.CREATE_INDEX_ON_TIMESTAMP.format(
                    index_name=f"idx_{table}_rate_item_timestamp", table_name=table
                )
            )
            self.conn.commit()
        return SQLiteBucket(rates, self.conn, table)

    def close(self) -> None:
        with self._thread_lock:
            self.conn.close()


_US = 1_000_000  # per-second schedules keep microseconds: a millisecond is 2 % of 50 ms
_RESTAMP_US = 1_000  # a request this much later than its slot moves its booking
_LEAK_EVERY = 64  # bookings between clean-ups of entries older than every window


class _Schedule:
    """Slots for one per-second limit, booked in a shared sliding-window log (pyrate-limiter's).

    The rule is pyrate-limiter's sliding window: never more than ``rate`` units in any
    second, so that a quiet limiter lets a burst of up to ``rate`` through at once (what
    API Gateway's burst and the vendors' windows allow). What differs is the booking:
    a slot is taken in the future rather than retried until it is free, so waiters are
    served in order without polling, and windows are stretched by the measured jitter
    (JitterMargin) instead of a fixed margin. Slots are booked in time order, so the
    earliest free slot is read off the newest entries. Microseconds: at 20 requests/s a
    millisecond of rounding per window would be a tenth of the margin.
    """

    def __init__(self, store: _Store, table: str, rate: float) -> None:
        from pyrate_limiter import Rate

        self.rate = rate
        # Below 1/s, e.g. 0.5 requests/s, the window is 1 request per 2 s.
        self.window = Rate(int(rate), _US) if rate >= 1 else Rate(1, math.ceil(_US / rate))
        self._bucket = store.bucket(table, [self.window])
        self._conn = store.conn
        self._table = table
        self._booked = 0

    def slices(self, weight: int) -> list[int]:
        """A batch larger than the window holds is booked in parts; it leaves after the last."""
        full, rest = divmod(weight, self.window.limit)
        return [self.window.limit] * full + ([rest] if rest else [])

    def earliest(self, not_before: int, weight: int, margin: float) -> int:
        """The first time (µs) from ``not_before`` when ``weight`` more units may leave."""
        slot = not_before
        newest = self._bucket.peek(0)
        if newest is not None:
            slot = max(slot, newest.timestamp)  # in time order
        blocking = self._bucket.peek(self.window.limit - weight)
        if blocking is not None:
            # +1: the log's windows include their lower bound.
            stretched = math.ceil(self.window.interval * (1 + margin))
            slot = max(slot, blocking.timestamp + stretched + 1)
        return slot

    def book(self, slot: int, weight: int, now: int) -> list[int]:
        """Books ``weight`` units at ``slot``; returns their rows, for restamp()."""
        from pyrate_limiter import RateItem

        if not self._bucket.put(RateItem("slot", slot, weight)):
            raise AssertionError("a slot found free was refused")  # pragma: no cover
        rows = self._conn.execute(
            f"SELECT rowid FROM '{self._table}' WHERE item_timestamp = ?"
            " ORDER BY rowid DESC LIMIT ?",
            (slot, weight),
        ).fetchall()
        self._booked += 1
        if self._booked % _LEAK_EVERY == 1:
            # Entries a stretched window still counts must stay: keep two windows.
            self._bucket.leak(now - self.window.interval)
        return [row for (row,) in rows]

    def restamp(self, rows: list[int], left_at: int) -> None:
        """Moves a booking to when its request really left, so that the next window counts
        from there: a request that left late must not let the one a window later early."""
        marks = ",".join("?" * len(rows))
        self._conn.execute(
            f"UPDATE '{self._table}' SET item_timestamp = ? WHERE rowid IN ({marks})",
            (left_at, *rows),
        )
        self._conn.commit()


class DailyBudget:
    """Requests per UTC day (an API Gateway usage plan's DAY quota resets at 00:00 UTC),
    counted in SQLite so that runs and processes share it.

    A transaction counts and takes a slot at once; another process holding the file
    only makes this one wait, never reads as "budget used up".
    """

    def __init__(self, path: Path | None, key: str) -> None:
        self.key = key
        if path is not None:
            create_private(path)
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
                    "DELETE FROM requests WHERE key = ? AND t < ?", (self.key, day_start(now))
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


def day_start(moment: float) -> float:
    """00:00 UTC of the day of ``moment`` (seconds since the epoch, which counts UTC days
    whole)."""
    return moment - moment % _DAY_SECONDS


def _store_error(store: Path | None, exc: BaseException) -> PacingError:
    where = f" ({store})" if store else ""
    return PacingError(
        f"the rate-limit store in the state directory{where} failed: {exc}",
        hint="check that the state directory (PREWARM_STATE_DIR) is writable; nothing was sent",
    )
