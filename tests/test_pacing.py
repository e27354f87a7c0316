"""Pacing and retries in-process: Retry-After within bounds, Ctrl-C ends every wait, budgets."""

from __future__ import annotations

import logging
import multiprocessing
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from prewarm_cli.errors import QuotaExhausted, RateLimited, RetryableError
from prewarm_cli.pacing import (
    DailyBudget,
    Interrupted,
    Pacer,
    PacingError,
    RetryPolicy,
    call_with_retries,
)
from prewarm_cli.plugin import Limits


class RecordingStop(threading.Event):
    """A stop event that records each wait asked of it and returns at once (a fake clock)."""

    def __init__(self) -> None:
        super().__init__()
        self.waits: list[float] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(float(timeout or 0.0))
        return False


def flaky(errors: list[Exception]) -> Callable[[], str]:
    """A call that raises each of ``errors`` in turn, then answers "ok"."""
    pending = list(errors)

    def call() -> str:
        if pending:
            raise pending.pop(0)
        return "ok"

    return call


def test_retry_after_is_waited_exactly() -> None:
    stop = RecordingStop()
    call = flaky(
        [RateLimited("slow down", retry_after=3.0), RetryableError("503", retry_after=0.5)]
    )
    assert call_with_retries(RetryPolicy(attempts=5, timeout=60), call, stop=stop) == "ok"
    assert stop.waits == [3.0, 0.5]  # neither ignored nor stretched


def test_backoff_grows_within_its_bounds_without_retry_after() -> None:
    stop = RecordingStop()
    policy = RetryPolicy(attempts=5, timeout=60, wait_initial=0.5, wait_max=30)
    call = flaky([RetryableError("503")] * 3)
    assert call_with_retries(policy, call, stop=stop) == "ok"
    assert len(stop.waits) == 3
    for retry, waited in enumerate(stop.waits, start=1):
        base = 0.5 * 2 ** (retry - 1)
        assert base <= waited <= base + 0.5


def test_retry_after_longer_than_the_time_left_defers_at_once() -> None:
    stop = RecordingStop()
    call = flaky([RateLimited("throttled", retry_after=3600.0, provider="qiniu")])
    with pytest.raises(RateLimited) as caught:
        call_with_retries(RetryPolicy(attempts=5, timeout=120), call, stop=stop)
    assert stop.waits == []  # not one second slept
    assert caught.value.retry_after == 3600.0
    assert "60 min" in str(caught.value) and "--resume" in (caught.value.hint or "")
    assert caught.value.exit_code == 5


def test_attempts_are_bounded_and_the_last_error_is_raised() -> None:
    stop = RecordingStop()
    calls = 0

    def always_503() -> str:
        nonlocal calls
        calls += 1
        raise RetryableError(f"503 #{calls}")

    with pytest.raises(RetryableError, match="503 #3"):
        call_with_retries(RetryPolicy(attempts=3, timeout=60), always_503, stop=stop)
    assert calls == 3 and len(stop.waits) == 2


def test_retries_are_reported_through_on_retry_and_never_logged(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[tuple[str, float]] = []
    caplog.set_level(logging.DEBUG)
    call = flaky([RetryableError("503 once", retry_after=0.01)])
    call_with_retries(
        RetryPolicy(), call, stop=threading.Event(), on_retry=lambda e, w: seen.append((str(e), w))
    )
    assert seen == [("503 once", 0.01)]
    captured = capsys.readouterr()
    assert captured.out == captured.err == ""
    assert caplog.records == []


def test_stop_ends_a_long_backoff_within_a_second() -> None:
    stop = threading.Event()
    first_attempt = threading.Event()
    outcome: list[BaseException] = []

    def throttled() -> str:
        first_attempt.set()
        raise RateLimited("throttled", retry_after=30.0)

    def run() -> None:
        try:
            call_with_retries(RetryPolicy(attempts=5, timeout=120), throttled, stop=stop)
        except BaseException as exc:
            outcome.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    assert first_attempt.wait(10)
    stopped_at = time.monotonic()
    stop.set()
    worker.join(10)
    assert not worker.is_alive()
    assert isinstance(outcome[0], Interrupted)
    assert time.monotonic() - stopped_at < 1.0  # the backoff was 30 s


def test_stop_ends_a_pacer_wait_within_a_second(tmp_path: Path) -> None:
    stop = threading.Event()
    # one request per 20 s: the second acquire would wait about 20 s
    pacer = Pacer(Limits(max_batch=1, requests_per_second=0.05), "k", None, stop=stop)
    pacer.acquire()
    waiting = threading.Event()
    outcome: list[BaseException] = []

    def second() -> None:
        waiting.set()
        try:
            pacer.acquire()
        except BaseException as exc:
            outcome.append(exc)

    worker = threading.Thread(target=second)
    worker.start()
    assert waiting.wait(10)
    stopped_at = time.monotonic()
    stop.set()
    worker.join(10)
    assert isinstance(outcome[0], Interrupted)
    assert time.monotonic() - stopped_at < 1.0
    pacer.close()


def test_a_broken_rate_limit_store_is_a_pacing_error(tmp_path: Path) -> None:
    store = tmp_path / "ratelimits.sqlite3"
    store.write_bytes(b"not a database, " * 100)
    with pytest.raises(PacingError, match="rate-limit store"):
        Pacer(Limits(max_batch=1, requests_per_second=5), "k", store)


def test_daily_budget_is_used_up_and_says_so(tmp_path: Path) -> None:
    pacer = Pacer(Limits(max_batch=1, requests_per_day=2), "k", tmp_path / "r.sqlite3")
    pacer.acquire()
    pacer.acquire()
    with pytest.raises(QuotaExhausted, match="daily budget of 2"):
        pacer.acquire()
    pacer.close()


def test_daily_budget_rolls_over_after_a_day(tmp_path: Path) -> None:
    budget = DailyBudget(tmp_path / "b.sqlite3", "k")
    assert budget.take(1, now=1000.0)
    assert not budget.take(1, now=1000.0 + 86_399)
    assert budget.take(1, now=1000.0 + 86_401)
    budget.close()


def _take_all(path: str, start: object, results: object) -> None:
    budget = DailyBudget(Path(path), "shared")
    start.wait()  # type: ignore[attr-defined]
    taken = 0
    while budget.take(40):
        taken += 1
    results.put(taken)  # type: ignore[attr-defined]
    budget.close()


def test_eight_processes_share_one_daily_budget_exactly(tmp_path: Path) -> None:
    # Lock contention between processes must make them wait, never read as "used up":
    # together they take exactly the budget, however the machine schedules them.
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Event()
    results = ctx.Queue()
    path = str(tmp_path / "budgets.sqlite3")
    DailyBudget(Path(path), "shared").close()  # the table exists before the race
    procs = [ctx.Process(target=_take_all, args=(path, start, results)) for _ in range(8)]
    for proc in procs:
        proc.start()
    start.set()
    taken = [results.get(timeout=120) for _ in procs]
    for proc in procs:
        proc.join(30)
        assert proc.exitcode == 0
    assert sum(taken) == 40
