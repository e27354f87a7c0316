"""Pacing and retries in-process: Retry-After within bounds, Ctrl-C ends every wait, budgets."""

from __future__ import annotations

import logging
import multiprocessing
import random
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from prewarm_cli import pacing
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
    assert time.monotonic() - stopped_at < 15  # the backoff was 30 s (a loaded machine)


def test_a_stopping_run_gets_no_request_even_without_limits() -> None:
    """Direct warming asks the pacer before each request of a batch: after Ctrl-C, none."""
    stop = threading.Event()
    pacer = Pacer(Limits(max_batch=1), "k", None, stop=stop)
    pacer.acquire()  # no limit: at once
    stop.set()
    with pytest.raises(pacing.Interrupted):
        pacer.acquire()


def test_without_a_rate_the_pacer_opens_no_store(tmp_path: Path) -> None:
    store = tmp_path / "ratelimits.sqlite3"
    pacer = Pacer(Limits(max_batch=1), "k", store)
    pacer.acquire()
    pacer.close()
    assert not pacer.waits  # what providers are told: pace() never waits
    assert list(tmp_path.iterdir()) == []  # nothing to keep, nothing opened
    limited = Pacer(Limits(max_batch=1, requests_per_second=5), "k", store)
    limited.close()
    assert limited.waits
    assert store.exists()
    daily = Pacer(Limits(max_batch=1, requests_per_day=9), "k", store)
    daily.close()
    assert daily.waits


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


def test_daily_budget_resets_at_midnight_utc(tmp_path: Path) -> None:
    # As an API Gateway usage plan's DAY quota: at 00:00 UTC, not 24 hours after the use.
    day = 86_400.0 * 20_000  # 2024-10-04T00:00:00Z
    budget = DailyBudget(tmp_path / "b.sqlite3", "k")
    assert budget.take(1, now=day + 23 * 3600)  # 23:00
    assert not budget.take(1, now=day + 86_399)  # 23:59:59, the same day
    assert budget.take(1, now=day + 86_400)  # 00:00 the next day, an hour later
    budget.close()


def test_a_used_up_daily_budget_says_when_it_resets(tmp_path: Path) -> None:
    day = 86_400.0 * 20_000
    pacer = Pacer(
        Limits(max_batch=1, requests_per_day=1), "k", tmp_path / "r.sqlite3", clock=lambda: day
    )
    pacer.acquire()
    with pytest.raises(QuotaExhausted) as info:
        pacer.acquire()
    assert info.value.resets_at == "2024-10-05T00:00:00Z"
    assert "ask again after 2024-10-05T00:00:00Z" in str(info.value.hint)
    pacer.close()


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


# --------------------------------------------------------------------------- more bounds


class FakeTime:
    """A clock that moves only when the code under test sleeps."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.start = start
        self.now = start

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_retry_after_longer_than_what_is_left_of_the_timeout_defers_at_once() -> None:
    fake = FakeTime()
    stop = RecordingStop()
    vendor_error = RateLimited("throttled", retry_after=30.0, request_id="req-1")

    def slow_then_throttled() -> str:
        fake.now += 100.0  # the attempt itself took 100 s of the 120 s
        raise vendor_error

    with pytest.raises(RateLimited) as caught:
        call_with_retries(
            RetryPolicy(attempts=5, timeout=120), slow_then_throttled, stop=stop, clock=fake.clock
        )
    assert stop.waits == []
    assert caught.value.__cause__ is vendor_error
    assert caught.value.request_id == "req-1"
    assert caught.value.retry_after == 30.0


def test_stop_ends_a_pacer_wait_that_has_begun(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C while a pacer waits for the next slot ends the wait: stop is set only once
    the worker is inside it."""
    stop = threading.Event()
    in_wait = threading.Event()
    real_sleep = pacing.sleep

    def signalling_sleep(seconds: float, event: threading.Event | None) -> None:
        in_wait.set()
        real_sleep(seconds, event)

    monkeypatch.setattr(pacing, "sleep", signalling_sleep)
    pacer = Pacer(Limits(max_batch=1, requests_per_second=0.01), "k", None, stop=stop)
    pacer.acquire()  # the next slot is 100 s away
    outcome: list[BaseException | None] = []

    def second() -> None:
        try:
            pacer.acquire()
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    worker = threading.Thread(target=second, daemon=True)
    worker.start()
    assert in_wait.wait(30)
    stopped_at = time.monotonic()
    stop.set()
    worker.join(60)
    assert not worker.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], Interrupted)
    # Generous for a loaded 2-core machine, far below the 100 s the wait had left.
    assert time.monotonic() - stopped_at < 30
    pacer.close()


def _acquire_n(path: str, n: int, start: object, results: object) -> None:
    pacer = Pacer(Limits(max_batch=1, requests_per_day=40), "shared", Path(path))
    start.wait()  # type: ignore[attr-defined]
    outcomes = []
    for _ in range(n):
        try:
            pacer.acquire()
            outcomes.append("ok")
        except QuotaExhausted:
            outcomes.append("exhausted")
    results.put(outcomes)  # type: ignore[attr-defined]
    pacer.close()


def test_eight_processes_never_read_contention_as_an_exhausted_budget(tmp_path: Path) -> None:
    # Exactly as many requests as the budget: every one must be granted, so a single lock
    # wait read as "used up" would show as an "exhausted" here.
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Event()
    results = ctx.Queue()
    store = str(tmp_path / "ratelimits.sqlite3")
    procs = [ctx.Process(target=_acquire_n, args=(store, 5, start, results)) for _ in range(8)]
    for proc in procs:
        proc.start()
    start.set()
    outcomes = [results.get(timeout=120) for _ in procs]
    for proc in procs:
        proc.join(30)
        assert proc.exitcode == 0
    assert [o for per_process in outcomes for o in per_process] == ["ok"] * 40
    pacer = Pacer(Limits(max_batch=1, requests_per_day=40), "shared", Path(store))
    with pytest.raises(QuotaExhausted):
        pacer.acquire()  # the 41st
    pacer.close()


# --------------------------------------------------------------------------- at the limit


def _most_in_any_window(departures: list[tuple[float, int]], window: float) -> int:
    """The most units that leave within any ``window`` seconds (a vendor's sliding count)."""
    most = total = 0
    first = 0
    for t, units in departures:
        total += units
        while departures[first][0] <= t - window:
            total -= departures[first][1]
            first += 1
        most = max(most, total)
    return most


def _run_paced(
    pacers: list[Pacer], fake: FakeTime, weights: list[int], rng: random.Random
) -> list[tuple[float, int]]:
    departures = []
    for weight in weights:
        rng.choice(pacers).acquire(weight)
        departures.append((fake.now, weight))
    return departures


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_no_vendor_window_ever_holds_more_than_the_limit(tmp_path: Path, seed: int) -> None:
    # Two processes' pacers sharing one store (same credential), one fake clock; mixed
    # batch sizes. Vendors count in sliding 1 s windows (the Qiniu and EdgeOne fakes,
    # without their 50 ms slack) or a token bucket (API Gateway): both must hold, exactly.
    rng = random.Random(seed)
    fake = FakeTime()
    limits = Limits(max_batch=60, requests_per_second=20, urls_per_second=240)
    store = tmp_path / "ratelimits.sqlite3"
    pacers = [
        Pacer(limits, "key", store, clock=fake.clock, sleep=fake.sleep),
        Pacer(limits, "key", store, clock=fake.clock, sleep=fake.sleep),
    ]
    weights = [rng.choice([1, 5, 60, 60, 60, 37]) for _ in range(400)]
    departures = _run_paced(pacers, fake, weights, rng)
    for pacer in pacers:
        pacer.close()

    assert _most_in_any_window([(t, 1) for t, _ in departures], 1.0) <= 20
    assert _most_in_any_window(departures, 1.0) <= 240
    tokens, last = 20.0, departures[0][0]  # API Gateway: a burst of 20, refilled at 20/s
    for t, _ in departures:
        tokens = min(20.0, tokens + (t - last) * 20)
        last = t
        assert tokens >= 1.0 - 1e-9
        tokens -= 1.0


@pytest.mark.parametrize(
    ("limits", "weight", "fraction_of"),
    [
        (Limits(max_batch=60, urls_per_second=240), 60, 240),  # Qiniu
        (Limits(max_batch=50, requests_per_second=20), 50, 20),  # EdgeOne
        (Limits(max_batch=100, requests_per_second=10, requests_per_day=1000), 0, 10),  # AWS
    ],
)
def test_full_batches_leave_at_99_percent_of_the_limit_without_jitter(
    tmp_path: Path, limits: Limits, weight: int, fraction_of: float
) -> None:
    fake = FakeTime()
    store = tmp_path / "ratelimits.sqlite3"
    pacers = [Pacer(limits, "key", store, clock=fake.clock, sleep=fake.sleep) for _ in range(2)]
    departures = _run_paced(pacers, fake, [weight] * 200, random.Random(0))
    for pacer in pacers:
        pacer.close()
    if not limits.urls_per_second:  # the vendor counts requests
        departures = [(t, 1) for t, _ in departures]
    assert _most_in_any_window(departures, 1.0) <= fraction_of
    # A window's worth of units later, the vendor's window has turned over once: how long
    # that takes is the rate the vendor sees (for bursts and even spacing alike).
    per_window = int(fraction_of) // departures[0][1]
    turns = [b[0] - a[0] for a, b in zip(departures, departures[per_window:], strict=False)]
    achieved = fraction_of / (sum(turns) / len(turns))
    # With no jitter on the clock, only the smallest margin (1 %) is left.
    assert 0.985 <= achieved / fraction_of <= 1.0


def test_measured_lateness_stretches_the_windows_within_bounds() -> None:
    fake = FakeTime()
    late = [0.0]

    def oversleeping(seconds: float) -> None:
        fake.sleep(seconds + late[0])

    pacer = Pacer(
        Limits(max_batch=1, requests_per_second=20), "k", None, clock=fake.clock, sleep=oversleeping
    )

    def seconds_for(n_requests: int) -> float:
        start = fake.now
        for _ in range(n_requests):
            pacer.acquire()
        return fake.now - start

    seconds_for(40)
    # Five windows of 20 requests: 1 s each, plus the 1 % floor on a quiet machine...
    assert seconds_for(100) == pytest.approx(5.05, abs=0.002)
    late[0] = 0.010  # every wake-up 10 ms late, as on a loaded machine
    seconds_for(100)
    # ...twice the lateness seen (2 %) on a loaded one, and the late wake-ups themselves:
    # a booking moves to when its request really left, the next window counts from there...
    assert seconds_for(100) == pytest.approx(5 * 1.02 + 5 * 0.01, abs=0.015)
    late[0] = 0.050
    seconds_for(100)
    # ...and never more than 3 %, whatever the lateness (here 5 x 50 ms late wake-ups on top).
    assert seconds_for(100) == pytest.approx(5 * 1.03 + 5 * 0.05, abs=0.002)
    pacer.close()


def test_a_batch_larger_than_a_window_waits_for_its_parts() -> None:
    fake = FakeTime()
    limits = Limits(max_batch=500, requests_per_second=5, urls_per_second=240)
    pacer = Pacer(limits, "k", None, clock=fake.clock, sleep=fake.sleep)
    pacer.acquire(500)  # 240 + 240 + 20: leaves once two windows have turned over
    assert fake.now - fake.start >= 2.0
    left_at = fake.now
    pacer.acquire(1)  # the request rate counted the batch when it left: 1/5 s later at most
    assert fake.now - left_at <= 1.02
    pacer.close()


def test_a_request_that_leaves_late_moves_the_next_window(tmp_path: Path) -> None:
    fake = FakeTime()
    store = tmp_path / "ratelimits.sqlite3"
    late = [0.0]

    def oversleeping(seconds: float) -> None:
        fake.sleep(seconds + late[0])

    pacer = Pacer(
        Limits(max_batch=1, requests_per_second=2), "k", store, clock=fake.clock, sleep=oversleeping
    )
    pacer.acquire()
    pacer.acquire()
    late[0] = 0.2  # the third request's wake-up is 200 ms late (a stalled process)
    pacer.acquire()
    third = fake.now
    late[0] = 0.0
    pacer.acquire()  # the fourth fits the same window
    pacer.acquire()
    fifth = fake.now
    pacer.close()
    # Two a second: the fifth waits a full window after the third really left, not after
    # its slot; counting from the slot would send it 200 ms early, three in 0.8 s.
    assert fifth - third >= 1.0


@pytest.mark.parametrize(("rate", "waits"), [("", False), ("rate = 5\n", True)])
def test_a_provider_is_told_whether_its_pacing_can_wait(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rate: str, waits: bool
) -> None:
    """Direct warming records its answers before a wait only where one can come."""
    import io

    from prewarm_cli import config as config_mod
    from prewarm_cli.engine import Workspace
    from prewarm_cli.output import Output

    monkeypatch.setenv("PREWARM_STATE_DIR", str(tmp_path / "state"))
    config = tmp_path / "config.toml"
    config.write_text(f'[providers.direct]\ntype = "direct"\n{rate}')
    config.chmod(0o600)
    ws = Workspace(config_mod.load_config(str(config)), Output("json", stderr=io.StringIO()))
    try:
        session = ws.session("direct")
        assert session.pacer is not None
        assert session.provider.pace_waits is waits
    finally:
        ws.close()


def test_retries_stop_before_a_try_as_long_as_the_last_would_pass_the_time_limit() -> None:
    """A stalled edge takes its whole timeout per try: the retries end within retry_timeout,
    not a try later (30 s tries against 120 s ran to 159 s)."""
    from prewarm_cli.pacing import RetryBudget, RetryPolicy

    now = [0.0]
    budget = RetryBudget(RetryPolicy(attempts=10, timeout=120.0, wait_initial=1.0), lambda: now[0])
    tries = 1  # the first try failed when the budget was made
    while (wait := budget.next_wait(None)) is not None:
        now[0] += wait + 30.0  # the wait, then a try that stalls for 30 s
        tries += 1
        assert now[0] <= 120.0, (tries, now[0])
    assert tries == 4  # 1 + three retries fit: 31, 63, 97 s; a fourth would end near 135 s


def test_a_retry_after_that_fits_is_waited_whatever_the_tries_took() -> None:
    """The try-length rule is for backoffs: a 429 whose Retry-After fits the time left is
    retried (or deferred by the caller when it does not), never given up as failed."""
    from prewarm_cli.pacing import RetryBudget, RetryPolicy

    now = [0.0]
    budget = RetryBudget(RetryPolicy(attempts=5, timeout=120.0), lambda: now[0])
    now[0] += 10.0  # the first try, answered 429
    assert budget.next_wait(50.0) == 50.0
    now[0] += 50.0 + 10.0  # the wait, then a 10 s try answered 429 again
    assert budget.next_wait(45.0) == 45.0  # 45 s fits the 50 s left


def test_a_retry_after_as_a_floor_never_shortens_the_backoff() -> None:
    """A batch's URLs sent again together, one of whose answers said Retry-After: 0 and
    another nothing (a short body): they wait the backoff, not 0 s (five tries in 0.3 s)."""
    from prewarm_cli.pacing import RetryBudget, RetryPolicy

    now = [0.0]
    policy = RetryPolicy(attempts=5, timeout=120.0, wait_initial=1.0)
    budget = RetryBudget(policy, lambda: now[0])
    waits = []
    while (wait := budget.next_wait(0.0, at_least=True)) is not None:
        waits.append(wait)
        now[0] += wait
    assert len(waits) == 4 and all(w >= 2.0**i for i, w in enumerate(waits)), waits
    budget = RetryBudget(policy, lambda: now[0])
    assert budget.next_wait(50.0, at_least=True) == 50.0  # longer than the backoff: waited


def test_rates_and_daily_budgets_are_kept_per_credential_key(tmp_path: Path) -> None:
    """Aliases of one credential (one key) share its limits; another credential has its own."""
    fake = FakeTime()
    store = tmp_path / "ratelimits.sqlite3"
    limits = Limits(max_batch=1, requests_per_second=1.0, requests_per_day=1)

    def pacer(key: str) -> Pacer:
        return Pacer(limits, key, store, clock=fake.clock, sleep=fake.sleep)

    first, other, same = pacer("key-a"), pacer("key-b"), pacer("key-a")
    start = fake.now
    first.acquire()
    other.acquire()  # its own second and its own day: no wait, not refused
    assert fake.now == start
    with pytest.raises(QuotaExhausted):  # the same credential: its one request a day is used
        same.acquire()
    for p in (first, other, same):
        p.close()


def test_aliases_of_one_credential_share_one_key_and_others_do_not() -> None:
    from prewarm_edgeone import EdgeOneProvider
    from prewarm_qiniu import QiniuProvider

    def qiniu(alias: str, access_key: str) -> str:
        return QiniuProvider(alias, {"access_key": access_key, "secret_key": "s"}).rate_key()

    assert qiniu("q1", "ak-1") == qiniu("q2", "ak-1")
    assert qiniu("q1", "ak-1") != qiniu("q1", "ak-2")

    def edgeone(alias: str, secret_id: str) -> str:
        settings = {"zone_id": "zone-2o0example", "secret_id": secret_id, "secret_key": "s"}
        return EdgeOneProvider(alias, settings).rate_key()

    assert edgeone("e1", "AKID1") == edgeone("e2", "AKID1")
    assert edgeone("e1", "AKID1") != edgeone("e1", "AKID2")


def test_a_retry_that_waited_for_a_busy_worker_keeps_its_budget() -> None:
    """A part whose retry was due while its worker sent other batches (a long batch, a
    rate) is sent late: that time is not the vendor's. It was charged to the part's retries,
    which then read as spent ("asked to wait 0.0s, longer than the retries have left") after
    two of five tries."""
    from prewarm_cli import journal as jr
    from prewarm_cli.engine.sender import RetryQueue
    from prewarm_cli.pacing import RetryBudget, RetryPolicy

    now = [0.0]
    budget = RetryBudget(RetryPolicy(attempts=5, timeout=10.0), lambda: now[0])
    queue = RetryQueue(lambda: now[0])
    part = jr.Batch(id=1, provider="p", urls=("https://a.test/x",), created_at="")
    wait = budget.next_wait(None)
    assert wait is not None
    queue.put(part, wait, budget)
    assert queue.take_due() is None  # not due yet
    now[0] += 12.0  # the worker was busy past the whole retry_timeout
    taken = queue.take_due()
    assert taken is not None and taken[0] is part
    now[0] += 0.2  # the try itself
    assert budget.left() == pytest.approx(10.0 - wait - 0.2)  # the wait and the try count
    assert budget.next_wait(None) is not None  # retries left: the next try is waited for


def test_a_worker_waiting_for_a_retry_stops_waiting_when_its_provider_halts() -> None:
    """A deferral halts the provider: the worker waiting for a part's retry (up to 30 s)
    returns at once, and the run ends without waiting that time out."""
    from prewarm_cli import journal as jr
    from prewarm_cli.engine.sender import RetryQueue
    from prewarm_cli.pacing import RetryBudget, RetryPolicy

    queue = RetryQueue()
    part = jr.Batch(id=1, provider="p", urls=("https://a.test/x",), created_at="")
    queue.put(part, 30.0, RetryBudget(RetryPolicy()))
    halted = threading.Event()
    threading.Timer(0.05, halted.set).start()
    started = time.monotonic()
    assert queue.wait(threading.Event(), halted.is_set) is True
    assert time.monotonic() - started < 10  # not the part's 30 s
    assert queue.take_due() is None and queue.drain() == [(part, None)]


@pytest.mark.parametrize("queued", [True, False])
def test_a_part_sent_again_unknown_is_left_unknown_when_the_run_stops(queued: bool) -> None:
    """An unanswered request sent again with --force waits for its retry when the run stops
    (Ctrl-C, a halt): the vendor may hold it, so it stays unknown, and a plain --resume
    leaves it alone. It was released unsent, and that --resume sent it a second time. A
    part whose URLs the vendor refused is released unsent, as before."""
    from types import SimpleNamespace
    from typing import Any

    from prewarm_cli import journal as jr
    from prewarm_cli.engine.sender import BatchSender, Ledger, RetryQueue
    from prewarm_cli.pacing import Interrupted, RetryBudget, RetryPolicy

    released: list[tuple[int, str, str | None]] = []

    class Noted(Ledger):
        def release(self, batch: Any, outcome: str, reason: Any = None, **_: Any) -> None:
            released.append((batch.id, outcome, reason))

    stop = threading.Event()
    sender = BatchSender(
        SimpleNamespace(alias="aws"),  # type: ignore[arg-type]
        Noted(),
        lambda urls: None,  # type: ignore[arg-type,return-value]
        out=None,  # type: ignore[arg-type]
        advance=lambda n: None,
        stop=stop,
        later=RetryQueue() if queued else None,
    )
    maybe_held = jr.Batch(id=1, provider="aws", urls=("https://a.test/1",), created_at="")
    refused = jr.Batch(id=2, provider="aws", urls=("https://a.test/2",), created_at="")
    if queued:
        sender._send_after(maybe_held, 5.0, RetryBudget(RetryPolicy()), unknown="no answer (504)")
        sender._send_after(refused, 5.0, RetryBudget(RetryPolicy()))
        stop.set()
        sender.release_waiting()
    else:
        stop.set()  # the wait ends at once, stopped
        for part, unknown in ((maybe_held, "no answer (504)"), (refused, None)):
            with pytest.raises(Interrupted):
                sender._send_after(part, 5.0, RetryBudget(RetryPolicy()), unknown=unknown)
    assert [(i, outcome) for i, outcome, _ in released] == [(1, jr.UNKNOWN), (2, jr.UNSENT)]
    assert "--resume --force" in str(released[0][2])
